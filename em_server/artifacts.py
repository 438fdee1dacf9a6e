"""Artifacts: upload (same identity and conflict rules as runs; file objects must be stored
as blobs first), list, read, download files or a .tar of them, delete."""

# ruff: noqa: B008  # FastAPI's dependency idiom: Depends()/Query() as defaults

from __future__ import annotations

import json
import tarfile
import uuid
from collections.abc import Iterator
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict
from sqlalchemy import and_, delete, insert, or_, select
from sqlalchemy.engine import Connection

from . import db
from .auth import User, access, authenticate, check_name, check_path, require
from .placing import open_folder, place
from .runs import Strategy, jsonable
from .storage import check_sha

router = APIRouter()


class ArtifactCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    folder: str
    make_folder: bool = True
    conflict_strategy: Strategy = "error"
    meta: dict[str, Any]


def _objects(meta: dict[str, Any]) -> dict[str, dict[str, Any]]:
    objs = meta.get("objects")
    if not isinstance(objs, dict):
        raise HTTPException(400, f"meta.objects {objs!r}: expected an object of obj_path -> "
                                 "{kind, size, sha256 | uri}")
    for path, o in objs.items():
        parts = path.split("/")
        if not path or path.startswith("/") or any(p in ("", ".", "..") for p in parts) or \
                any(ord(ch) < 32 or ord(ch) == 127 for ch in path) or "\\" in path:
            raise HTTPException(400, f"invalid object path {path!r}: expected a relative path "
                                     "without '..', '.', empty parts or control characters")
        if not isinstance(o, dict) or o.get("kind") not in ("file", "reference"):
            raise HTTPException(400, f"object {path!r}: expected kind 'file' or 'reference'")
        if o["kind"] == "file":
            check_sha(o.get("sha256"))
    return objs


def _row(row: Any) -> dict[str, Any]:
    meta = json.loads(row.meta)
    return jsonable({"id": row.id, "path": f"{row.folder}/{row.name}", "folder": row.folder,
                     "name": row.name, "alternative_name": row.alternative_name,
                     "labels": json.loads(row.labels), "description": row.description,
                     "objects": meta.get("objects", {}),
                     "associations": meta.get("associations") or {}, "meta": meta})


def _by(conn: Connection, folder: str, **kw: str) -> Any:
    cond = [db.artifacts.c.folder == folder] + [getattr(db.artifacts.c, k) == v
                                                  for k, v in kw.items()]
    return conn.execute(select(db.artifacts).where(and_(*cond))).first()


def _answer(state: str, row: Any) -> dict[str, Any]:
    return {"state": state, "id": row.id, "path": f"{row.folder}/{row.name}"}


@router.post("/artifacts", status_code=201)
def create_artifact(body: ArtifactCreate, request: Request, response: Response,
                    user: User = Depends(authenticate)) -> Any:
    folder = check_path(body.folder)
    meta = body.meta
    name = check_name(meta.get("name"), "meta.name")
    alt = check_name(meta.get("alternative_name"), "meta.alternative_name")
    objs = _objects(meta)
    labels = meta.get("labels") or []
    if not isinstance(labels, list) or not all(isinstance(x, str) for x in labels):
        raise HTTPException(400, f"meta.labels {labels!r}: expected a list of strings")
    desc = meta.get("description") or ""
    if not isinstance(desc, str):
        raise HTTPException(400, f"meta.description {desc!r}: expected a string")
    store = request.app.state.store
    missing = sorted({o["sha256"] for o in objs.values()
                      if o["kind"] == "file" and not store.has(o["sha256"])})

    def attempt() -> Any:
        with request.app.state.engine.begin() as conn:
            open_folder(conn, user, folder, body.make_folder)
            same = _by(conn, folder, alternative_name=alt)
            if same is not None:
                response.status_code = 200
                return _answer("existing", same)
            if missing:
                return JSONResponse({"detail": f"{len(missing)} file object(s) not uploaded yet",
                                     "missing": missing}, status_code=409)
            state, found = place(
                conn, "artifact", folder, name, alt, body.conflict_strategy,
                lambda c, n: _by(c, folder, name=n),
                lambda c, row: c.execute(delete(db.artifacts).where(db.artifacts.c.id == row.id)))
            if state != "create":
                response.status_code = 200
                return _answer(state, found)
            art_id = str(uuid.uuid4())
            conn.execute(insert(db.artifacts).values(
                id=art_id, folder=folder, name=found, alternative_name=alt,
                labels=json.dumps(labels), description=desc, meta=json.dumps(meta)))
            return _answer("created", conn.execute(select(db.artifacts).where(
                db.artifacts.c.id == art_id)).one())

    return db.retrying(attempt)


@router.get("/artifacts")
def list_artifacts(request: Request, folder: str, name: str | None = None,
                   label: str | None = None, recursive: bool = False,
                   page: int = Query(1, ge=1), page_size: int = Query(50, ge=1, le=1000),
                   user: User = Depends(authenticate)) -> dict[str, Any]:
    folder = check_path(folder)
    c = db.artifacts.c
    cond = [or_(c.folder == folder, c.folder.startswith(folder + "/", autoescape=True))
            if recursive else c.folder == folder]
    if name:
        cond.append(c.name == name)
    if label:
        cond.append(c.labels.contains(json.dumps(label), autoescape=True))
    with request.app.state.engine.connect() as conn:
        require(conn, user, folder)
        rows = conn.execute(select(db.artifacts).where(*cond).order_by(c.name, c.id)).all()
        rows = [r for r in rows if access(conn, user, r.folder)[0]]
    start = (page - 1) * page_size
    return {"artifacts": [_row(r) for r in rows[start:start + page_size]], "total": len(rows),
            "page": page, "page_size": page_size}


def get_artifact(conn: Connection, user: User, art_id: str, write: bool = False) -> Any:
    """The artifact row; 404 when absent or unreadable, 403 when not writable and ``write``."""
    row = conn.execute(select(db.artifacts).where(db.artifacts.c.id == art_id)).first()
    if row is None or not access(conn, user, row.folder)[0]:
        raise HTTPException(404, f"artifact {art_id!r} not found")
    if write:
        require(conn, user, row.folder, write=True)
    return row


@router.get("/artifacts/by-path")
def artifact_by_path(path: str, request: Request,
                     user: User = Depends(authenticate)) -> dict[str, Any]:
    path = check_path(path)
    folder, name = path.rsplit("/", 1)
    with request.app.state.engine.connect() as conn:
        row = _by(conn, folder, name=name) if folder else None
        if row is None or not access(conn, user, folder)[0]:
            raise HTTPException(404, f"artifact {path!r} not found")
        return _resolved(conn, user, row)


@router.get("/artifacts/{art_id}")
def read_artifact(art_id: str, request: Request,
                  user: User = Depends(authenticate)) -> dict[str, Any]:
    with request.app.state.engine.connect() as conn:
        return _resolved(conn, user, get_artifact(conn, user, art_id))


def _resolved(conn: Connection, user: User, row: Any) -> dict[str, Any]:
    from .graph import resolve

    out = _row(row)
    out["associations"] = resolve(conn, user, out["associations"], row.folder)
    return out


@router.get("/artifacts/{art_id}/files/{obj_path:path}")
def download_file(art_id: str, obj_path: str, request: Request,
                  user: User = Depends(authenticate)) -> Response:
    with request.app.state.engine.connect() as conn:
        row = get_artifact(conn, user, art_id)
    obj = json.loads(row.meta).get("objects", {}).get(obj_path)
    if obj is None or obj.get("kind") != "file":
        raise HTTPException(404, f"no file {obj_path!r} in artifact {art_id!r}")
    return StreamingResponse(request.app.state.store.iter_bytes(obj["sha256"]),
                             media_type="application/octet-stream")


@router.get("/artifacts/{art_id}/archive")
def download_archive(art_id: str, request: Request,
                     user: User = Depends(authenticate)) -> Response:
    with request.app.state.engine.connect() as conn:
        row = get_artifact(conn, user, art_id)
    objs = json.loads(row.meta).get("objects", {})
    store = request.app.state.store

    def gen() -> Iterator[bytes]:
        # a tar stream written block by block: each file's bytes are streamed from the store
        # (never a whole file in memory), as tarfile's "w|" mode would lay them out
        for path, o in sorted(objs.items()):
            if o.get("kind") != "file":
                continue
            info = tarfile.TarInfo(path)
            info.size = store.size(o["sha256"])
            yield info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")
            yield from store.iter_bytes(o["sha256"])
            yield b"\0" * (-info.size % tarfile.BLOCKSIZE)
        yield b"\0" * (2 * tarfile.BLOCKSIZE)  # the end-of-archive marker

    return StreamingResponse(gen(), media_type="application/x-tar")


@router.delete("/artifacts/{art_id}", status_code=204)
def delete_artifact(art_id: str, request: Request,
                    user: User = Depends(authenticate)) -> Response:
    with request.app.state.engine.begin() as conn:
        get_artifact(conn, user, art_id, write=True)
        conn.execute(delete(db.artifacts).where(db.artifacts.c.id == art_id))
    return Response(status_code=204)
