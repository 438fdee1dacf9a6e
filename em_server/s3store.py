"""Artifact bytes in an S3-compatible object store (``em server start --objects
s3://bucket/prefix``), for several server processes or machines side by side.

Layout under ``prefix``:

- ``objects/ab/<sha256>``: the blobs, written only after their sha256 was checked. A blob
  sent in one request goes up as a multipart upload straight to its key and is completed
  only when the hash matches (aborted otherwise), so S3 itself never shows it half-written.
- ``uploads/<upload id>/<offset>``: the chunks of a resumable upload, one object per chunk,
  named by its offset (zero-padded). The upload's offset lives in the database, so any server
  process can take the next chunk. ``complete`` walks the chunks in order, hashes them and
  assembles the blob at its key as a multipart upload (server-side copies of the chunks
  when they are large enough, else re-sent in 8 MiB parts), completed only when size and
  hash match; then the chunks are deleted.

Endpoint: ``--s3-endpoint``, else ``EM_S3_ENDPOINT``, else boto3's own settings
(``AWS_ENDPOINT_URL``, ``AWS_ENDPOINT_URL_S3``, the config file). Credentials and region:
boto3's usual chain (``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``, ``AWS_PROFILE``,
instance roles...). No credential is ever logged or put in an error message: errors name
only the operation and S3's error code.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator
from typing import Any
from urllib.parse import urlsplit

from fastapi import HTTPException
from starlette.concurrency import run_in_threadpool

from .storage import BLOCK, Digest, check_sha

PART = 8 << 20  # bytes per multipart part sent by this server
MIN_PART = 5 << 20  # S3's smallest part (all but the last)
MAX_PARTS = 10_000


def _code(e: BaseException) -> str:
    """S3's error code (or the exception's class): never a message that could echo a URL
    with credentials or a signature."""
    resp = getattr(e, "response", None)
    if isinstance(resp, dict):
        return str(resp.get("Error", {}).get("Code") or type(e).__name__)
    return type(e).__name__


def _missing(e: BaseException) -> bool:
    return _code(e) in ("404", "NoSuchKey", "NotFound", "NoSuchBucket", "NoSuchUpload")


def _safe_endpoint(url: str | None) -> str:
    if not url:
        return "the default AWS endpoint"
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname}" + (f":{parts.port}" if parts.port else "")


class S3Store:
    """Objects in an S3 bucket under a prefix."""

    def __init__(self, bucket: str, prefix: str = "", endpoint: str | None = None) -> None:
        import boto3
        from botocore.config import Config

        if not 3 <= len(bucket) <= 63:
            raise ValueError(f"S3 bucket name {bucket!r}: expected 3-63 characters")
        self.bucket = bucket
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        session = boto3.session.Session()
        self.region = session.region_name or "us-east-1"
        self.endpoint = endpoint or session.client("s3", region_name=self.region) \
            .meta.endpoint_url
        custom = bool(endpoint) or "amazonaws.com" not in (self.endpoint or "")
        # S3-compatible servers (SeaweedFS, MinIO, Ceph) want path-style addressing
        config = Config(max_pool_connections=64, retries={"max_attempts": 5, "mode": "standard"},
                        s3={"addressing_style": "path" if custom else "auto"})
        self.client: Any = session.client("s3", region_name=self.region, endpoint_url=endpoint,
                                          config=config)

    @classmethod
    def from_url(cls, url: str, endpoint: str | None = None) -> S3Store:
        """From ``s3://bucket/prefix``."""
        parts = urlsplit(url)
        if parts.scheme != "s3" or not parts.netloc or parts.query or parts.fragment:
            raise ValueError(f"--objects {url!r}: expected s3://bucket/prefix")
        return cls(parts.netloc, parts.path, endpoint)

    def describe(self) -> str:
        return f"s3://{self.bucket}/{self.prefix} at {_safe_endpoint(self.endpoint)}"

    # ------------------------------------------------------------------ plumbing
    @contextlib.contextmanager
    def _errors(self, what: str) -> Iterator[None]:
        """S3 failures become 503 (the client retries) naming only the error code."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            yield
        except (ClientError, BotoCoreError) as e:
            raise HTTPException(503, f"object store unavailable ({what}: {_code(e)})") from None

    def key(self, sha: str) -> str:
        """The key of the object with this sha256."""
        return f"{self.prefix}objects/{sha[:2]}/{sha}"

    def _chunk_key(self, upload_id: str, offset: int) -> str:
        return f"{self.prefix}uploads/{upload_id}/{offset:020d}"

    def prepare(self) -> None:
        from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

        where = f"S3 bucket {self.bucket!r} at {_safe_endpoint(self.endpoint)}"
        try:
            try:
                self.client.head_bucket(Bucket=self.bucket)
                return
            except ClientError as e:
                if not _missing(e):
                    raise
            kw: dict[str, Any] = {"Bucket": self.bucket}
            if self.region != "us-east-1":
                kw["CreateBucketConfiguration"] = {"LocationConstraint": self.region}
            try:
                self.client.create_bucket(**kw)
            except ClientError as e:
                if _code(e) not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                    raise
            self.client.head_bucket(Bucket=self.bucket)
        except NoCredentialsError:
            raise SystemExit(f"em server: no S3 credentials for {where} (set "
                             "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or AWS_PROFILE)") from None
        except (ClientError, BotoCoreError) as e:
            raise SystemExit(f"em server: cannot use {where} ({_code(e)}): check the bucket, "
                             "the endpoint and the credentials") from None

    # ------------------------------------------------------------------ blobs
    def has(self, sha: str) -> bool:
        from botocore.exceptions import ClientError

        with self._errors("HEAD object"):
            try:
                self.client.head_object(Bucket=self.bucket, Key=self.key(check_sha(sha)))
            except ClientError as e:
                if _missing(e):
                    return False
                raise
        return True

    def size(self, sha: str) -> int:
        with self._errors("HEAD object"):
            head = self.client.head_object(Bucket=self.bucket, Key=self.key(check_sha(sha)))
        return int(head["ContentLength"])

    def iter_bytes(self, sha: str) -> Iterator[bytes]:
        # the GET is sent now, so that a failure is an error answer, not a cut-off download
        with self._errors("GET object"):
            body = self.client.get_object(Bucket=self.bucket, Key=self.key(check_sha(sha)))["Body"]
        return self._stream(body)

    def _stream(self, body: Any) -> Iterator[bytes]:
        try:
            with self._errors("GET object"):
                yield from body.iter_chunks(BLOCK)
        finally:
            body.close()

    async def put_stream(self, sha: str, chunks: AsyncIterator[bytes], limit: int) -> bool:
        check_sha(sha)
        digest = Digest(limit)
        if await run_in_threadpool(self.has, sha):
            async for part in chunks:  # the hash is still checked: a wrong body is a 400
                digest.update(part)
            digest.verify(sha)
            return False
        writer = _Writer(self, self.key(sha))
        try:
            buf: list[bytes] = []
            held = 0
            async for part in chunks:
                digest.update(part)
                buf.append(part)
                held += len(part)
                if held >= PART:
                    await run_in_threadpool(writer.send, b"".join(buf))
                    buf, held = [], 0
            digest.verify(sha)
            await run_in_threadpool(writer.finish, b"".join(buf))
            return True
        finally:
            if not writer.done:
                await run_in_threadpool(writer.abort)

    # ------------------------------------------------------------------ resumable uploads
    def begin_upload(self, upload_id: str) -> None:
        pass  # chunks are objects of their own: nothing to set up

    def write_chunk(self, upload_id: str, offset: int, data: bytes) -> None:
        # a retry at the same offset overwrites the same key; a chunk written past the
        # committed offset by a failed try is never reached by complete()'s walk
        with self._errors("PUT chunk"):
            self.client.put_object(Bucket=self.bucket, Key=self._chunk_key(upload_id, offset),
                                   Body=data)

    def _chunk_sizes(self, upload_id: str) -> dict[int, int]:
        sizes: dict[int, int] = {}
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=f"{self.prefix}uploads/{upload_id}/")
        for page in pages:
            for obj in page.get("Contents", []):
                sizes[int(obj["Key"].rsplit("/", 1)[1])] = int(obj["Size"])
        return sizes

    def _chain(self, upload_id: str, size: int) -> list[tuple[int, int]] | None:
        """(offset, length) of the chunks from 0 on, in order, up to ``size`` bytes at most;
        None when there are no chunks (never begun or already completed)."""
        sizes = self._chunk_sizes(upload_id)
        if not sizes:
            return None
        chain = []
        offset = 0
        while offset < size and sizes.get(offset):
            chain.append((offset, sizes[offset]))
            offset += sizes[offset]
        return chain

    def complete(self, upload_id: str, sha: str, size: int) -> None:
        with self._errors("complete upload"):
            chain = self._chain(upload_id, size)
            if chain is None:
                if self.has(sha):  # completed before (the answer was lost): done
                    return
                if size:
                    raise HTTPException(400, f"upload {upload_id}: got 0 bytes, expected "
                                             f"{size} bytes with {sha}; nothing stored")
                chain = []
            got = sum(n for _, n in chain)
            if got != size:
                raise HTTPException(400, f"upload {upload_id}: got {got} contiguous bytes, "
                                         f"expected {size} bytes with {sha}; nothing stored")
            if self.has(sha):
                self._hash_chunks(upload_id, chain).verify_upload(upload_id, sha, size)
            else:
                self._assemble(upload_id, chain, sha, size)
            self._drop_chunks(upload_id)

    def _read_chunk(self, upload_id: str, offset: int) -> Iterator[bytes]:
        return self._stream(self.client.get_object(
            Bucket=self.bucket, Key=self._chunk_key(upload_id, offset))["Body"])

    def _hash_chunks(self, upload_id: str, chain: list[tuple[int, int]]) -> Digest:
        digest = Digest()
        for offset, _ in chain:
            for block in self._read_chunk(upload_id, offset):
                digest.update(block)
        return digest

    def _assemble(self, upload_id: str, chain: list[tuple[int, int]], sha: str,
                  size: int) -> None:
        digest = Digest()
        writer = _Writer(self, self.key(sha), part=max(PART, -(-size // (MAX_PARTS - 1))))
        # server-side copies when every chunk but the last is a valid part on its own
        copy = len(chain) <= MAX_PARTS and all(n >= MIN_PART for _, n in chain[:-1]) \
            and len(chain) > 1
        try:
            for offset, _ in chain:
                if copy:
                    writer.copy(self._chunk_key(upload_id, offset))
                for block in self._read_chunk(upload_id, offset):
                    digest.update(block)
                    if not copy:
                        writer.feed(block)
            digest.verify_upload(upload_id, sha, size)
            writer.finish(b"")
        finally:
            if not writer.done:
                writer.abort()

    def _drop_chunks(self, upload_id: str) -> None:
        keys = [self._chunk_key(upload_id, o) for o in self._chunk_sizes(upload_id)]
        for i in range(0, len(keys), 1000):
            self.client.delete_objects(Bucket=self.bucket, Delete={
                "Objects": [{"Key": k} for k in keys[i:i + 1000]], "Quiet": True})


class _Writer:
    """One object written in parts: a plain PUT when it all fits in one part, else a
    multipart upload that S3 shows only once ``finish`` completes it."""

    def __init__(self, store: S3Store, key: str, part: int = PART) -> None:
        self.store, self.key, self.part = store, key, part
        self.upload_id: str | None = None
        self.parts: list[dict[str, Any]] = []
        self.pending: list[bytes] = []
        self.held = 0
        self.done = False

    @property
    def _s3(self) -> Any:
        return self.store.client

    def _start(self) -> str:
        if self.upload_id is None:
            with self.store._errors("start multipart upload"):
                self.upload_id = self._s3.create_multipart_upload(
                    Bucket=self.store.bucket, Key=self.key)["UploadId"]
        return self.upload_id

    def send(self, data: bytes) -> None:
        """Upload ``data`` as the next part."""
        uid = self._start()
        n = len(self.parts) + 1
        with self.store._errors("upload part"):
            etag = self._s3.upload_part(Bucket=self.store.bucket, Key=self.key, UploadId=uid,
                                        PartNumber=n, Body=data)["ETag"]
        self.parts.append({"PartNumber": n, "ETag": etag})

    def feed(self, block: bytes) -> None:
        """Buffer ``block``; a full part goes up."""
        self.pending.append(block)
        self.held += len(block)
        if self.held >= self.part:
            self.send(b"".join(self.pending))
            self.pending, self.held = [], 0

    def copy(self, src_key: str) -> None:
        """The whole object ``src_key`` (same bucket) as the next part, copied by S3."""
        uid = self._start()
        n = len(self.parts) + 1
        with self.store._errors("copy part"):
            res = self._s3.upload_part_copy(
                Bucket=self.store.bucket, Key=self.key, UploadId=uid, PartNumber=n,
                CopySource={"Bucket": self.store.bucket, "Key": src_key})
        self.parts.append({"PartNumber": n, "ETag": res["CopyPartResult"]["ETag"]})

    def finish(self, last: bytes) -> None:
        """Send what is left and make the object visible."""
        data = b"".join([*self.pending, last])
        self.pending, self.held = [], 0
        if self.upload_id is None:
            with self.store._errors("PUT object"):
                self._s3.put_object(Bucket=self.store.bucket, Key=self.key, Body=data)
        else:
            if data:
                self.send(data)
            with self.store._errors("complete multipart upload"):
                self._s3.complete_multipart_upload(
                    Bucket=self.store.bucket, Key=self.key, UploadId=self.upload_id,
                    MultipartUpload={"Parts": self.parts})
        self.done = True

    def abort(self) -> None:
        """Drop the parts sent so far (nothing becomes visible)."""
        self.done = True
        if self.upload_id is not None:
            with contextlib.suppress(Exception):  # best effort: S3 expires them anyway
                self._s3.abort_multipart_upload(Bucket=self.store.bucket, Key=self.key,
                                                UploadId=self.upload_id)
