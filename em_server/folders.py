"""Folders: create (with parents), list, move, delete."""

# ruff: noqa: B008  # FastAPI's dependency idiom: Depends()/Query() as defaults

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Request, Response
from pydantic import BaseModel, ConfigDict
from sqlalchemy import delete, func, insert, or_, select, update
from sqlalchemy.engine import Connection

from . import db
from .auth import User, authenticate, check_path, require

router = APIRouter()


class FolderCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    path: str
    parents: bool = False
    exist_ok: bool = False


class FolderMove(BaseModel):
    model_config = ConfigDict(extra="forbid")
    src: str
    dst: str


def exists(conn: Connection, path: str) -> bool:
    """Whether the folder exists."""
    return conn.execute(select(db.folders.c.path).where(db.folders.c.path == path)).first() \
        is not None


def make(conn: Connection, user: User, path: str, parents: bool, exist_ok: bool) -> None:
    """Create ``path`` (and its missing parents when ``parents``), checking write access."""
    require(conn, user, path, write=True)
    if exists(conn, path):
        if not exist_ok:
            raise HTTPException(409, f"folder {path!r} already exists")
        return
    parent = path.rsplit("/", 1)[0]
    if not exists(conn, parent):
        if not parents:
            raise HTTPException(404, f"parent folder {parent!r} not found")
        make(conn, user, parent, True, True)
    conn.execute(insert(db.folders).values(path=path, owner=path.split("/")[1],
                                           created_at=db.now()))


def _under(col: Any, path: str) -> Any:
    return or_(col == path, col.startswith(path + "/", autoescape=True))


@router.post("/folders", status_code=201)
def create_folder(body: FolderCreate, request: Request,
                  user: User = Depends(authenticate)) -> dict[str, str]:
    path = check_path(body.path)
    if path.count("/") < 2:
        raise HTTPException(409, f"folder {path!r} is a user's root folder")
    with request.app.state.engine.begin() as conn:
        make(conn, user, path, body.parents, body.exist_ok)
    return {"path": path}


@router.get("/folders")
def list_folder(path: str, request: Request, user: User = Depends(authenticate)) -> dict[str, Any]:
    path = check_path(path)
    with request.app.state.engine.connect() as conn:
        require(conn, user, path)
        if not exists(conn, path):
            raise HTTPException(404, f"folder {path!r} not found")
        kids = conn.execute(select(db.folders.c.path).where(
            db.folders.c.path.startswith(path + "/", autoescape=True))
            .order_by(db.folders.c.path)).scalars().all()
        nruns = conn.execute(select(func.count()).select_from(db.runs)
                             .where(db.runs.c.folder == path)).scalar_one()
        narts = conn.execute(select(func.count()).select_from(db.artifacts)
                             .where(db.artifacts.c.folder == path)).scalar_one()
    direct = [p for p in kids if "/" not in p[len(path) + 1:]]
    return {"path": path, "folders": [{"path": p, "name": p.rsplit("/", 1)[1]} for p in direct],
            "runs": nruns, "artifacts": narts}


@router.get("/folders/tree")
def folder_tree(path: str, request: Request, user: User = Depends(authenticate)) -> dict[str, Any]:
    """Every folder under ``path`` as a nested tree (``folders`` of each node), with the
    number of runs directly in each."""
    path = check_path(path)
    with request.app.state.engine.connect() as conn:
        require(conn, user, path)
        if not exists(conn, path):
            raise HTTPException(404, f"folder {path!r} not found")
        paths = conn.execute(select(db.folders.c.path).where(
            db.folders.c.path.startswith(path + "/", autoescape=True))
            .order_by(db.folders.c.path)).scalars().all()
        counts = dict(conn.execute(select(db.runs.c.folder, func.count()).where(or_(
            db.runs.c.folder == path, db.runs.c.folder.startswith(path + "/", autoescape=True)))
            .group_by(db.runs.c.folder)).all())
    root: dict[str, Any] = {"path": path, "name": path.rsplit("/", 1)[1],
                            "runs": counts.get(path, 0), "folders": []}
    nodes = {path: root}
    for p in paths:  # sorted, so a parent always comes before its children
        parent = nodes.get(p.rsplit("/", 1)[0])
        if parent is None:
            continue
        node = {"path": p, "name": p.rsplit("/", 1)[1], "runs": counts.get(p, 0), "folders": []}
        parent["folders"].append(node)
        nodes[p] = node
    return root


@router.post("/folders/move")
def move_folder(body: FolderMove, request: Request,
                user: User = Depends(authenticate)) -> dict[str, str]:
    src, dst = check_path(body.src), check_path(body.dst)
    if src.count("/") < 2 or dst.count("/") < 2:
        raise HTTPException(409, "a user's root folder cannot be moved or replaced")
    if dst == src or dst.startswith(src + "/"):
        raise HTTPException(409, f"cannot move {src!r} into itself ({dst!r})")
    with request.app.state.engine.begin() as conn:
        require(conn, user, src, write=True)
        if not exists(conn, src):
            raise HTTPException(404, f"folder {src!r} not found")
        parent = dst.rsplit("/", 1)[0]
        require(conn, user, parent, write=True)
        if not exists(conn, parent):
            raise HTTPException(404, f"parent folder {parent!r} not found")
        if exists(conn, dst):
            raise HTTPException(409, f"folder {dst!r} already exists")
        n = len(src)
        for table, col in ((db.folders, db.folders.c.path), (db.runs, db.runs.c.folder),
                           (db.artifacts, db.artifacts.c.folder)):
            rows = conn.execute(select(col).where(_under(col, src)).distinct()).scalars().all()
            for old in rows:
                values: dict[str, Any] = {col.name: dst + old[n:]}
                if table is db.folders:
                    values["owner"] = dst.split("/")[1]
                conn.execute(update(table).where(col == old).values(**values))
    return {"path": dst}


@router.delete("/folders", status_code=204)
def delete_folder(path: str, request: Request, recursive: bool = False,
                  user: User = Depends(authenticate)) -> Response:
    path = check_path(path)
    if path.count("/") < 2:
        raise HTTPException(409, f"folder {path!r} is a user's root folder")
    with request.app.state.engine.begin() as conn:
        require(conn, user, path, write=True)
        if not exists(conn, path):
            raise HTTPException(404, f"folder {path!r} not found")
        inside = conn.execute(select(db.runs.c.id).where(_under(db.runs.c.folder, path))) \
            .scalars().all()
        arts = conn.execute(select(db.artifacts.c.id).where(
            _under(db.artifacts.c.folder, path))).scalars().all()
        subs = conn.execute(select(func.count()).select_from(db.folders).where(
            db.folders.c.path.startswith(path + "/", autoescape=True))).scalar_one()
        if (inside or arts or subs) and not recursive:
            raise HTTPException(409, f"folder {path!r} is not empty")
        from .runs import delete_runs

        delete_runs(conn, list(inside))
        conn.execute(delete(db.artifacts).where(_under(db.artifacts.c.folder, path)))
        conn.execute(delete(db.folders).where(_under(db.folders.c.path, path)))
        conn.execute(delete(db.grants).where(_under(db.grants.c.folder, path)))
    return Response(status_code=204)
