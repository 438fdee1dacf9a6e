"""Artifacts and blobs on the real server: sha256 checked, content stored once, resumable
uploads, conflict strategies, downloads; the Alembic upgrade from the first migration."""

from __future__ import annotations

import hashlib
import io
import tarfile
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from em_server import db

from .conftest import Server

OCT = {"Content-Type": "application/octet-stream"}


def sha(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


def _meta(name: str, alt: str, objects: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "alternative_name": alt, "labels": [], "description": "",
            "objects": objects, "associations": {}}


def test_blobs_are_checked_stored_once_and_downloadable(server: Server, alice: str) -> None:
    data = b"model weights " * 1000
    with server.client(alice) as c:
        assert c.head(f"/blobs/{sha(data)}").status_code == 404
        r = c.put(f"/blobs/{sha(b'other')}", content=data, headers=OCT)
        assert r.status_code == 400 and "nothing stored" in r.json()["detail"]
        assert c.head(f"/blobs/{sha(b'other')}").status_code == 404
        assert c.head(f"/blobs/{sha(data)}").status_code == 404
        assert c.put(f"/blobs/{sha(data)}", content=data, headers=OCT).status_code == 201
        assert c.put(f"/blobs/{sha(data)}", content=data, headers=OCT).status_code == 200
        assert c.head(f"/blobs/{sha(data)}").status_code == 200
        objs = {"model.bin": {"kind": "file", "size": len(data), "sha256": sha(data)},
                "dir/copy.bin": {"kind": "file", "size": len(data), "sha256": sha(data)},
                "data": {"kind": "reference", "uri": "s3://bucket/x"}}
        r = c.post("/artifacts", json={"folder": "/alice/arts", "meta": _meta("m", "m_1", objs)})
        assert r.status_code == 201
        aid = r.json()["id"]
        assert c.get(f"/artifacts/{aid}/files/dir/copy.bin").content == data
        tar = tarfile.open(fileobj=io.BytesIO(c.get(f"/artifacts/{aid}/archive").content))
        assert sorted(tar.getnames()) == ["dir/copy.bin", "model.bin"]
        assert tar.extractfile("model.bin").read() == data  # type: ignore[union-attr]
        assert c.get("/folders", params={"path": "/alice/arts"}).json()["artifacts"] == 1
    stored = list((server_data(server) / "objects").rglob("*"))
    assert [p.name for p in stored if p.is_file()].count(sha(data)) == 1


def server_data(server: Server) -> Path:
    return Path(server.admin_args[server.admin_args.index("--data") + 1])


def test_a_resumable_upload_survives_a_lost_chunk_and_shows_nothing_until_complete(
        server: Server, alice: str) -> None:
    data = bytes(range(256)) * 4000
    h = sha(data)
    with server.client(alice) as c:
        up = c.post("/uploads", json={"sha256": h, "size": len(data)}).json()
        uid = up["upload_id"]
        assert c.put(f"/uploads/{uid}", params={"offset": 0}, content=data[:300_000],
                     headers=OCT).json() == {"offset": 300_000}
        r = c.put(f"/uploads/{uid}", params={"offset": 500_000}, content=data[500_000:],
                  headers=OCT)
        assert r.status_code == 409 and r.json()["offset"] == 300_000
        assert c.head(f"/blobs/{h}").status_code == 404
        assert c.get(f"/uploads/{uid}").json()["offset"] == 300_000
        assert c.post(f"/uploads/{uid}/complete").status_code == 400  # short: not visible
        assert c.head(f"/blobs/{h}").status_code == 404
        assert c.put(f"/uploads/{uid}", params={"offset": 300_000}, content=data[300_000:],
                     headers=OCT).json() == {"offset": len(data)}
        assert c.post(f"/uploads/{uid}/complete").json() == {"sha256": h}
        assert c.head(f"/blobs/{h}").status_code == 200


def test_artifact_conflicts_and_missing_blobs(server: Server, alice: str, bob: str) -> None:
    with server.client(alice) as c:
        absent = sha(b"never uploaded")
        r = c.post("/artifacts", json={"folder": "/alice/ac", "meta": _meta(
            "a", "a_1", {"x": {"kind": "file", "size": 1, "sha256": absent}})})
        assert r.status_code == 409 and r.json()["missing"] == [absent]
        ref = {"r": {"kind": "reference", "uri": "file:///x"}}
        body = {"folder": "/alice/ac", "conflict_strategy": "error", "meta": _meta("a", "a_1",
                                                                                    ref)}
        first = c.post("/artifacts", json=body).json()
        assert c.post("/artifacts", json=body).json()["state"] == "existing"
        other = dict(body, meta=_meta("a", "a_2", ref))
        assert c.post("/artifacts", json=other).status_code == 409
        assert c.post("/artifacts", json=dict(other, conflict_strategy="skip")).json()["id"] \
            == first["id"]
        assert c.post("/artifacts", json=dict(other, conflict_strategy="new")).json()["path"] \
            == "/alice/ac/a_2"
        r = c.post("/artifacts", json=dict(body, conflict_strategy="replace",
                                           meta=_meta("a", "a_3", ref)))
        assert r.status_code == 201 and c.get(f"/artifacts/{first['id']}").status_code == 404
        assert c.get("/artifacts", params={"folder": "/alice/ac"}).json()["total"] == 2
        for bad in ("../etc/passwd", "/abs", "a/../../b", "a\x00b"):
            r = c.post("/artifacts", json={"folder": "/alice/ac", "meta": _meta(
                "b", "b_1", {bad: {"kind": "reference", "uri": "x"}})})
            assert r.status_code == 400, bad
        aid = c.get("/artifacts/by-path", params={"path": "/alice/ac/a"}).json()["id"]
    with server.client(bob) as b:
        assert b.get(f"/artifacts/{aid}").status_code == 404


def test_a_database_made_by_the_first_migration_is_upgraded(tmp_path: Path) -> None:
    engine = db.make_engine(f"sqlite:///{tmp_path / 'old.sqlite3'}")
    db.upgrade(engine, "0001")
    assert "artifacts" not in sa.inspect(engine).get_table_names()
    with engine.begin() as conn:
        conn.execute(sa.insert(db.users).values(name="old", created_at=1.0))
    db.upgrade(engine)
    names = sa.inspect(engine).get_table_names()
    assert {"artifacts", "uploads", "runs", "chunks"} <= set(names)
    with engine.connect() as conn:
        assert conn.execute(sa.select(db.users.c.name)).scalars().all() == ["old"]
