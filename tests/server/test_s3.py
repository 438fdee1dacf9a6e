"""The blob stores' shared behaviour, on the local directory and on SeaweedFS (a real S3
server, never a mock): put/has/size/stream, a wrong or interrupted body leaves nothing
visible, resumable uploads complete only when whole and verified (also when repeated), and
the S3 bucket is made when missing without a credential in any message."""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from fastapi import HTTPException

from em_server.s3store import S3Store
from em_server.storage import BLOCK, LocalStore, ObjectStore, open_store

from .conftest import BUCKET, SeaweedFS, free_port

MIB = 1 << 20


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def blob(n: int, seed: int = 0) -> bytes:
    """n pseudo-random bytes (incompressible, distinct per seed)."""
    out = bytearray()
    h = hashlib.sha256(f"{seed}".encode())
    while len(out) < n:
        h = hashlib.sha256(h.digest())
        out += h.digest() * 128
    return bytes(out[:n])


async def _pieces(data: bytes, size: int = 256 << 10, fail_after: int | None = None
                  ) -> AsyncIterator[bytes]:
    for i in range(0, len(data), size):
        if fail_after is not None and i >= fail_after:
            raise ConnectionResetError("client went away")
        yield data[i:i + size]


def put(store: ObjectStore, data: bytes, digest: str | None = None, limit: int = 1 << 30,
        fail_after: int | None = None) -> bool:
    return asyncio.run(store.put_stream(digest or sha(data), _pieces(data, fail_after=fail_after),
                                        limit))


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path,
          monkeypatch: pytest.MonkeyPatch) -> Iterator[ObjectStore]:
    if request.param == "local":
        st: ObjectStore = LocalStore(tmp_path / "data")
    else:
        weed: SeaweedFS = request.getfixturevalue("seaweedfs")
        for k, v in weed.env.items():
            monkeypatch.setenv(k, v)
        st = open_store(tmp_path, f"s3://{BUCKET}/{uuid.uuid4().hex}", weed.endpoint)
    st.prepare()
    yield st


def leftovers(store: ObjectStore) -> list[str]:
    """What the store holds besides complete objects: temporary files, upload parts, S3
    multipart uploads in progress."""
    if isinstance(store, LocalStore):
        return [str(p) for d in (store.tmp, store.uploads) for p in d.iterdir()]
    assert isinstance(store, S3Store)
    s3 = store.client
    pending = s3.list_multipart_uploads(Bucket=store.bucket, Prefix=store.prefix)
    listed = s3.list_objects_v2(Bucket=store.bucket, Prefix=store.prefix + "uploads/")
    return [u["Key"] for u in pending.get("Uploads", [])] + \
        [o["Key"] for o in listed.get("Contents", [])]


def stored(store: ObjectStore) -> list[str]:
    """The names of the complete objects."""
    if isinstance(store, LocalStore):
        return sorted(p.name for p in (store.root / "objects").rglob("*") if p.is_file())
    assert isinstance(store, S3Store)
    listed = store.client.list_objects_v2(Bucket=store.bucket, Prefix=store.prefix + "objects/")
    return sorted(o["Key"].rsplit("/", 1)[1] for o in listed.get("Contents", []))


def test_put_has_size_stream_and_stored_once(store: ObjectStore) -> None:
    small, large = b"hello em", blob(12 * MIB + 5, seed=1)  # large: several S3 parts
    for data in (small, large):
        assert not store.has(sha(data))
        assert put(store, data) is True
        assert store.has(sha(data)) and store.size(sha(data)) == len(data)
        blocks = list(store.iter_bytes(sha(data)))
        assert b"".join(blocks) == data
        assert max(len(b) for b in blocks) <= BLOCK  # streamed in blocks
        assert put(store, data) is False  # the same bytes again: stored once
    assert stored(store) == sorted([sha(small), sha(large)])
    assert leftovers(store) == []


def test_wrong_interrupted_or_oversized_bodies_leave_nothing(store: ObjectStore) -> None:
    data = blob(10 * MIB, seed=2)
    with pytest.raises(HTTPException) as info:
        put(store, data, digest=sha(b"other bytes"))
    assert info.value.status_code == 400 and "nothing stored" in str(info.value.detail)
    with pytest.raises(ConnectionResetError):
        put(store, data, fail_after=9 * MIB)  # past the first S3 part
    with pytest.raises(HTTPException) as info:
        put(store, data, limit=MIB)
    assert info.value.status_code == 413
    assert not store.has(sha(data))
    assert stored(store) == [] and leftovers(store) == []
    # an object that exists still gets its body checked
    assert put(store, data) is True
    with pytest.raises(HTTPException) as info:
        asyncio.run(store.put_stream(sha(data), _pieces(data[:-1] + b"x"), 1 << 30))
    assert info.value.status_code == 400


@pytest.mark.parametrize("chunk", [MIB + 7, 6 * MIB])  # S3: re-sent parts / server-side copies
def test_resumable_upload_completes_only_when_whole(store: ObjectStore, chunk: int) -> None:
    data = blob(13 * MIB + 3, seed=chunk)
    digest, uid = sha(data), str(uuid.uuid4())
    store.begin_upload(uid)
    cuts = list(range(0, len(data), chunk)) + [len(data)]
    store.write_chunk(uid, 0, b"x" * 100)  # a failed try at offset 0, then the real chunk
    for lo, hi in zip(cuts[:2], cuts[1:3]):
        store.write_chunk(uid, lo, data[lo:hi])
    with pytest.raises(HTTPException) as info:  # not all there: nothing visible
        store.complete(uid, digest, len(data))
    assert info.value.status_code == 400 and "nothing stored" in str(info.value.detail)
    assert not store.has(digest)
    for lo, hi in zip(cuts[2:], cuts[3:]):  # resumed
        store.write_chunk(uid, lo, data[lo:hi])
    with pytest.raises(HTTPException) as info:  # the wrong hash: nothing visible
        store.complete(uid, sha(b"x"), len(data))
    assert info.value.status_code == 400 and not store.has(digest)
    store.complete(uid, digest, len(data))
    assert b"".join(store.iter_bytes(digest)) == data
    store.complete(uid, digest, len(data))  # repeated (its answer was lost): still fine
    assert stored(store) == [digest] and leftovers(store) == []
    # the same bytes uploaded again: verified, not stored twice
    again = str(uuid.uuid4())
    store.begin_upload(again)
    store.write_chunk(again, 0, data)
    store.complete(again, digest, len(data))
    assert stored(store) == [digest] and leftovers(store) == []


def test_empty_object(store: ObjectStore) -> None:
    assert put(store, b"") is True
    uid = str(uuid.uuid4())
    store.begin_upload(uid)
    store.complete(uid, sha(b""), 0)
    assert list(store.iter_bytes(sha(b""))) in ([], [b""]) and store.size(sha(b"")) == 0


def test_s3_bucket_made_when_missing_and_errors_name_no_secret(
        seaweedfs: SeaweedFS, monkeypatch: pytest.MonkeyPatch) -> None:
    for k, v in seaweedfs.env.items():
        monkeypatch.setenv(k, v)
    bucket = "em-fresh-" + uuid.uuid4().hex[:8]
    with pytest.raises(Exception):  # noqa: B017  # botocore's NoSuchBucket/404
        seaweedfs.client().head_bucket(Bucket=bucket)
    monkeypatch.setenv("EM_S3_ENDPOINT", seaweedfs.endpoint)  # the endpoint from the env
    st = open_store(Path("unused"), f"s3://{bucket}/p")
    st.prepare()
    seaweedfs.client().head_bucket(Bucket=bucket)
    st.prepare()  # exists now: fine
    assert put(st, b"abc") and st.has(sha(b"abc"))
    # nothing listens there: a clear error naming the bucket, never the secret
    secret = seaweedfs.env["AWS_SECRET_ACCESS_KEY"]
    bad = S3Store(bucket, "p", f"http://em-test-id:{secret}@127.0.0.1:{free_port()}")
    with pytest.raises(SystemExit) as info:
        bad.prepare()
    msg = str(info.value)
    assert bucket in msg and "endpoint" in msg and secret not in msg
    with pytest.raises(HTTPException) as err:
        bad.has(sha(b"abc"))
    assert err.value.status_code == 503 and secret not in str(err.value.detail)
    with pytest.raises(ValueError, match="expected s3://bucket/prefix"):
        open_store(Path("unused"), "gs://elsewhere/p")
    with pytest.raises(ValueError, match="3-63 characters"):
        open_store(Path("unused"), "s3://ab/p")

