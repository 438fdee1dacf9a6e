"""Two server processes on one database: two clients uploading at once, each to its own
server, the same runs and the same metric byte ranges: nothing lost, nothing doubled. Then
the scaled-out set-up: PostgreSQL and S3 (SeaweedFS), servers with no directory in common,
runs with metrics and artifacts sharing bytes, and a chunked upload resumed elsewhere."""

from __future__ import annotations

import hashlib
import io
import multiprocessing
import os
import random
import shutil
import socket
import subprocess
import sys
import tarfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from em_server.s3store import S3Store

from .conftest import (
    BUCKET,
    REPO,
    SeaweedFS,
    Server,
    _fresh_pg_db,
    _kinds,
    start_server,
    stop,
    wait_until_up,
)
from .test_api import boundaries, local_run

OCT = {"Content-Type": "application/octet-stream"}


@pytest.fixture(scope="module")
def pair(db_kind: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Server]]:
    tmp = tmp_path_factory.mktemp("pair")
    first = start_server(tmp, db_kind)
    second = start_server(tmp, db_kind, args=first.admin_args)
    yield [first, second]
    stop(first)
    stop(second)


def test_two_servers_two_clients_nothing_lost_nothing_doubled(pair: list[Server],
                                                              tmp_path: Path) -> None:
    key = pair[0].admin("user", "add", "dana")
    runs = [local_run(n=600) for _ in range(3)]
    errors: list[BaseException] = []

    def client(srv: Server, seed: int) -> None:
        rnd = random.Random(seed)
        try:
            with srv.client(key) as c:
                for meta, data in runs:
                    made = c.post("/runs", json={"folder": "/dana/scaled", "meta": meta,
                                                 "conflict_strategy": "new"})
                    assert made.status_code in (200, 201), made.text
                    rid = made.json()["id"]
                    cuts = boundaries(data)
                    picks = sorted(rnd.sample(cuts[1:-1], 8)) + [len(data)]
                    lo = 0
                    for hi in picks:
                        r = c.put(f"/runs/{rid}/metrics", params={"offset": lo},
                                  content=data[lo:hi], headers=OCT)
                        if r.status_code == 409:  # the other client is behind us: resend
                            lo = r.json()["length"]
                            r = c.put(f"/runs/{rid}/metrics", params={"offset": lo},
                                      content=data[lo:hi], headers=OCT)
                        assert r.status_code == 200, r.text
                        lo = r.json()["length"]
                        assert lo >= hi
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=client, args=(srv, i)) for i, srv in enumerate(pair)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    with pair[1].client(key) as c:
        listed = c.get("/runs", params={"folder": "/dana/scaled"}).json()
        assert listed["total"] == 3
        by_alt = {r["alternative_name"]: r["id"] for r in listed["runs"]}
        for meta, data in runs:
            rid = by_alt[meta["alternative_name"]]
            assert c.get(f"/runs/{rid}/metrics.bin").content == data
            series = {(s["type"], s["name"]): s["count"]
                      for s in c.get(f"/runs/{rid}/series").json()["series"]}
            assert series == {("train", "loss"): 600, ("train", "acc"): 600, ("val", "loss"): 6}
            pts = c.get(f"/runs/{rid}/series/points", params={"type": "train", "name": "loss"})
            assert pts.json()["step"] == list(range(600))


# ---------------------------------------------------------------------------------------------
# Scaled out: PostgreSQL (SQLite where the session has none) + S3 (SeaweedFS), two servers
# with data directories of their own, one of them running two worker processes.

CLIENT = """
import json, sys
import em_core as em
from em_core import _upload
from em_core._upload import upload

_upload.SINGLE_PUT = 256 << 10  # files over 256 KiB go in resumable chunks
_upload.CHUNK = 64 << 10
tag, host, key = sys.argv[1], sys.argv[2], sys.argv[3]


def blob(n, seed):
    import hashlib
    out, h = bytearray(), hashlib.sha256(seed.encode())
    while len(out) < n:
        h = hashlib.sha256(h.digest())
        out += h.digest() * 64
    return bytes(out[:n])


for r in range(2):
    run = em.create_run(name=f"{tag}-{r}", hparams={"tag": tag, "r": r})
    for i in range(2000):
        run.log("train", {"loss": 1.0 / (i + 1), "acc": float(i)}, step=i)
        if i % 100 == 99:
            run.log("val", {"loss": 2.0 / (i + 1)}, step=i)
    art = em.create_artifact(f"model-{tag}-{r}")
    for name, data in (("shared.bin", blob(600 << 10, "shared")),  # in every artifact
                       ("small.txt", b"the same few bytes everywhere"),
                       (f"own-{r}.bin", blob(300 << 10, f"{tag}-{r}"))):
        with open(name, "wb") as fh:
            fh.write(data)
        art.add_file(name)
    run.mark_output(art)
    run.finish()
if host != "-":
    em.login(host, key)
    print(json.dumps(upload(".em", folder="scaled", make_folder=True)))
"""


@pytest.fixture(scope="module")
def s3_pair(seaweedfs: SeaweedFS, tmp_path_factory: pytest.TempPathFactory
            ) -> Iterator[tuple[list[Server], S3Store]]:
    tmp = tmp_path_factory.mktemp("s3pair")
    pg = os.environ.get("EM_TEST_PG_URL")
    dburl = _fresh_pg_db(pg) if pg else f"sqlite:///{tmp / 'shared.sqlite3'}"
    objects = f"s3://{BUCKET}/{uuid.uuid4().hex}"
    # started at once: on PostgreSQL both upgrade the fresh database at the same time
    first = start_server(tmp, "", workers=2, args=["--data", str(tmp / "a"), "--db", dburl],
                         start_args=["--objects", objects, "--s3-endpoint", seaweedfs.endpoint],
                         env=seaweedfs.env, wait=not pg)
    second = start_server(tmp, "", args=["--data", str(tmp / "b"), "--db", dburl],
                          start_args=["--objects", objects],  # the endpoint from the env
                          env={**seaweedfs.env, "EM_S3_ENDPOINT": seaweedfs.endpoint},
                          wait=False)
    wait_until_up(first)
    wait_until_up(second)
    env = dict(os.environ)
    os.environ.update(seaweedfs.env)  # S3Store (the test's view of the bucket) signs with them
    try:
        store = S3Store.from_url(objects, seaweedfs.endpoint)
    finally:
        os.environ.clear()
        os.environ.update(env)
    yield [first, second], store
    stop(first)
    stop(second)
    for srv in (first, second):  # no credential in any server log
        log = srv.log.read_text(errors="replace")
        assert seaweedfs.env["AWS_SECRET_ACCESS_KEY"] not in log
        assert objects in log  # it did say where the bytes go


def _s3_keys(store: S3Store, under: str) -> list[str]:
    keys = []
    pages = store.client.get_paginator("list_objects_v2").paginate(
        Bucket=store.bucket, Prefix=store.prefix + under)
    for page in pages:
        keys += [o["Key"] for o in page.get("Contents", [])]
    return keys


def _client_env(tmp: Path) -> dict[str, str]:
    e = {**os.environ, "PYTHONPATH": str(REPO), "EM_CONFIG": str(tmp / "config.yaml"),
         "EM_RUN_PARENT_DIR": str(tmp / ".em/runs"),
         "EM_ARTIFACT_PARENT_DIR": str(tmp / ".em/artifacts")}
    for k in ("EM_HOST", "EM_API_KEY", "EM_STRICT"):
        e.pop(k, None)
    return e


def test_s3_two_servers_two_clients_runs_and_artifacts_nothing_lost_nothing_doubled(
        s3_pair: tuple[list[Server], S3Store], tmp_path: Path) -> None:
    servers, store = s3_pair
    key = servers[0].admin("user", "add", "erin")
    common = tmp_path / "common"
    common.mkdir()
    made = subprocess.run([sys.executable, "-c", CLIENT, "common", "-", "-"], cwd=common,
                          env=_client_env(common), capture_output=True, text=True, timeout=120)
    assert made.returncode == 0, made.stderr
    procs = []
    for tag, srv in zip(("c0", "c1"), servers):
        work = tmp_path / tag
        shutil.copytree(common / ".em", work / ".em")  # both upload the same common runs too
        procs.append(subprocess.Popen([sys.executable, "-c", CLIENT, tag, srv.url, key],
                                      cwd=work, env=_client_env(work), stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True))
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
        assert key not in out + err

    local_runs = {p.name: p for work in ("common", "c0", "c1")
                  for p in (tmp_path / work / ".em/runs").iterdir()}
    local_arts = {p.name: p for work in ("common", "c0", "c1")
                  for p in (tmp_path / work / ".em/artifacts").iterdir()}
    assert len(local_runs) == 6 and len(local_arts) == 6
    shas: set[str] = set()
    for srv in servers:
        with srv.client(key) as c:
            runs = c.get("/runs", params={"folder": "/erin/scaled"}).json()
            assert runs["total"] == 6  # the common runs once, each client's own once
            assert {r["alternative_name"] for r in runs["runs"]} == set(local_runs)
            for r in runs["runs"]:
                local = local_runs[r["alternative_name"]]
                assert c.get(f"/runs/{r['id']}/metrics.bin").content == \
                    (local / "metrics.bin").read_bytes()
                series = {(s["type"], s["name"]): s["count"]
                          for s in c.get(f"/runs/{r['id']}/series").json()["series"]}
                assert series == {("train", "loss"): 2000, ("train", "acc"): 2000,
                                  ("val", "loss"): 20}
                pts = c.get(f"/runs/{r['id']}/series/points",
                            params={"type": "train", "name": "loss"}).json()
                assert pts["step"] == list(range(2000))
            arts = c.get("/artifacts", params={"folder": "/erin/scaled"}).json()
            assert arts["total"] == 6
            assert {a["alternative_name"] for a in arts["artifacts"]} == set(local_arts)
            for a in arts["artifacts"]:
                files = {k: v for k, v in a["objects"].items() if v["kind"] == "file"}
                assert len(files) == 3
                for path, o in files.items():
                    got = c.get(f"/artifacts/{a['id']}/files/{path}")
                    assert got.status_code == 200
                    assert hashlib.sha256(got.content).hexdigest() == o["sha256"]
                    assert len(got.content) == o["size"]
                    shas.add(o["sha256"])
    # the servers share nothing but the database and the bucket: their --data is never made
    assert not any(Path(srv.admin_args[1]).exists() for srv in servers)
    # each distinct content stored once, nothing partial left behind
    assert len(shas) == 2 + 6  # shared.bin, small.txt, and each artifact's own file
    stored = [k.rsplit("/", 1)[1] for k in _s3_keys(store, "objects/")]
    assert sorted(stored) == sorted(shas)
    assert _s3_keys(store, "uploads/") == []
    pending = store.client.list_multipart_uploads(Bucket=store.bucket, Prefix=store.prefix)
    assert pending.get("Uploads", []) == []


def _cut_off_chunk(url: str, key: str, path: str, data: bytes) -> None:
    """Send a PUT whose body stops halfway, then drop the connection."""
    parts = urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port), timeout=10) as s:
        head = (f"PUT /api/v1{path} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
                f"Authorization: Bearer {key}\r\nContent-Type: application/octet-stream\r\n"
                f"Content-Length: {len(data)}\r\n\r\n")
        s.sendall(head.encode() + data[:len(data) // 2])


def test_s3_interrupted_chunked_upload_resumed_through_the_other_server(
        s3_pair: tuple[list[Server], S3Store]) -> None:
    (a, b), store = s3_pair
    key = a.admin("user", "add", "fred")
    chunk = 256 << 10
    data = os.urandom(3 * chunk + 1000)
    digest = hashlib.sha256(data).hexdigest()
    with a.client(key) as ca, b.client(key) as cb:
        uid = ca.post("/uploads", json={"sha256": digest, "size": len(data)}).json()["upload_id"]
        assert ca.put(f"/uploads/{uid}", params={"offset": 0}, content=data[:chunk],
                      headers=OCT).json() == {"offset": chunk}
        _cut_off_chunk(a.url, key, f"/uploads/{uid}?offset={chunk}", data[chunk:2 * chunk])
        # the other server sees where the upload stands; nothing is visible as complete
        deadline = time.monotonic() + 10
        while cb.get(f"/uploads/{uid}").json()["offset"] != chunk:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        for c in (ca, cb):
            assert c.head(f"/blobs/{digest}").status_code == 404
        early = cb.post(f"/uploads/{uid}/complete")
        assert early.status_code == 400 and "nothing stored" in early.json()["detail"]
        assert ca.head(f"/blobs/{digest}").status_code == 404
        # resumed on the other server
        offset = cb.get(f"/uploads/{uid}").json()["offset"]
        while offset < len(data):
            r = cb.put(f"/uploads/{uid}", params={"offset": offset},
                       content=data[offset:offset + chunk], headers=OCT)
            assert r.status_code == 200, r.text
            offset = r.json()["offset"]
        assert cb.post(f"/uploads/{uid}/complete").status_code == 201
        assert ca.post(f"/uploads/{uid}/complete").status_code == 201  # a retry elsewhere
        assert ca.head(f"/blobs/{digest}").status_code == 200
        made = ca.post("/artifacts", json={"folder": "/fred/up", "meta": {
            "name": "w", "alternative_name": "w-1", "labels": [], "description": "",
            "associations": {}, "objects": {"w.bin": {"kind": "file", "size": len(data),
                                                      "sha256": digest}}}})
        assert made.status_code == 201, made.text
        for c in (ca, cb):
            got = c.get(f"/artifacts/{made.json()['id']}/files/w.bin").content
            assert hashlib.sha256(got).hexdigest() == digest
            with tarfile.open(fileobj=io.BytesIO(
                    c.get(f"/artifacts/{made.json()['id']}/archive").content)) as tar:
                member = tar.extractfile("w.bin")
                assert member is not None and member.read() == data
    assert [k for k in _s3_keys(store, "objects/") if k.endswith(digest)] != []
    assert _s3_keys(store, "uploads/") == []


def _upgrade(url: str, barrier: Any) -> None:
    from em_server import db

    engine = db.make_engine(db.db_url(None, url))
    barrier.wait(30)
    db.upgrade(engine)


@pytest.mark.parametrize("kind", [k for k in _kinds() if k == "postgresql"])
def test_servers_starting_at_once_upgrade_a_fresh_database_once(kind: str) -> None:
    # on a new database every process that starts runs the migrations: they queue on a lock
    # (before, most tries had one of four fail on a duplicate CREATE TABLE)
    url = _fresh_pg_db(os.environ["EM_TEST_PG_URL"])
    ctx = multiprocessing.get_context("fork")
    barrier = ctx.Barrier(4)
    procs = [ctx.Process(target=_upgrade, args=(url, barrier)) for _ in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0, 0, 0, 0]
