"""Data flow: runs and artifacts joined by ``mark_input`` / ``mark_output``.

A run's ``run.json`` names its inputs and outputs by their alternative names (the local
unique names), and an artifact names the runs it was input or output of. The server
resolves those names among the runs and artifacts the caller may read, so each association
gains the ``id`` and ``path`` of the other side once that side is uploaded.
"""

# ruff: noqa: B008  # FastAPI's dependency idiom: Depends()/Query() as defaults

from __future__ import annotations

import json
from collections import deque
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from sqlalchemy import select
from sqlalchemy.engine import Connection

from . import db
from .auth import User, access, authenticate

router = APIRouter()
# association list name -> (kind of the other side, edge direction seen from this side)
_RUN_SIDES = {"inputs": ("artifact", "input"), "outputs": ("artifact", "output")}
_ART_SIDES = {"input_of": ("run", "input"), "output_of": ("run", "output")}


def _table(kind: str) -> Any:
    return db.runs if kind == "run" else db.artifacts


def _find(conn: Connection, user: User, kind: str, alt: str, near: str) -> Any:
    """The readable run/artifact with alternative name ``alt``, preferring ``near``'s folder."""
    t = _table(kind)
    rows = conn.execute(select(t).where(t.c.alternative_name == alt).order_by(t.c.folder)).all()
    rows = [r for r in rows if access(conn, user, r.folder)[0]]
    rows.sort(key=lambda r: r.folder != near)
    return rows[0] if rows else None


def resolve(conn: Connection, user: User, assoc: Any, folder: str) -> Any:
    """``assoc`` (a run's or artifact's associations) with ``id`` and ``path`` added to each
    entry whose other side the caller can read on this server."""
    if not isinstance(assoc, dict):
        return assoc
    out: dict[str, Any] = {}
    for key, entries in assoc.items():
        res = []
        for e in entries if isinstance(entries, list) else []:
            e = dict(e) if isinstance(e, dict) else {"value": e}
            e.pop("local", None)  # a path on the uploader's machine: meaningless here
            alt, kind = e.get("alternative_name"), e.get("kind")
            row = _find(conn, user, kind, alt, folder) if isinstance(alt, str) and \
                kind in ("run", "artifact") else None
            if row is not None:
                e["id"], e["path"] = row.id, f"{row.folder}/{row.name}"
            res.append(e)
        out[key] = res
    return out


def _node(kind: str, row: Any) -> dict[str, Any]:
    n = {"id": row.id, "kind": kind, "name": row.name, "path": f"{row.folder}/{row.name}",
         "uploaded": True}
    if kind == "run":
        n["status"] = row.status
    return n


def _lookup(conn: Connection, user: User, node_id: str) -> tuple[str, Any]:
    for kind in ("run", "artifact"):
        t = _table(kind)
        row = conn.execute(select(t).where(t.c.id == node_id)).first()
        if row is not None and access(conn, user, row.folder)[0]:
            return kind, row
    raise HTTPException(404, f"run or artifact {node_id!r} not found")


@router.get("/graph")
def graph(request: Request, node_id: str = Query(alias="id", max_length=100),
          depth: int = Query(2, ge=1, le=6),
          user: User = Depends(authenticate)) -> dict[str, Any]:
    """The data-flow graph around a run or artifact, ``depth`` edges out: nodes (runs and
    artifacts; ones named but not uploaded have ``uploaded`` false) and edges (``input``:
    artifact to run, ``output``: run to artifact)."""
    nodes: dict[str, dict[str, Any]] = {}
    edges: set[tuple[str, str, str]] = set()
    with request.app.state.engine.connect() as conn:
        kind, row = _lookup(conn, user, node_id)
        nodes[row.id] = _node(kind, row)
        todo = deque([(kind, row, 0)])
        while todo:
            kind, row, d = todo.popleft()
            if d >= depth:
                continue
            sides = _RUN_SIDES if kind == "run" else _ART_SIDES
            assoc = json.loads(row.meta).get("associations") or {}
            for key, (other, direction) in sides.items():
                for e in assoc.get(key) or []:
                    alt = e.get("alternative_name") if isinstance(e, dict) else None
                    if not isinstance(alt, str):
                        continue
                    found = _find(conn, user, other, alt, row.folder)
                    oid = found.id if found is not None else f"unresolved:{other}:{alt}"
                    if oid not in nodes:
                        nodes[oid] = _node(other, found) if found is not None else {
                            "id": oid, "kind": other, "name": e.get("name", alt),
                            "path": None, "uploaded": False}
                        if found is not None:
                            todo.append((other, found, d + 1))
                    run_id, art_id = (row.id, oid) if kind == "run" else (oid, row.id)
                    edges.add((art_id, run_id, "input") if direction == "input"
                              else (run_id, art_id, "output"))
    return {"nodes": list(nodes.values()),
            "edges": [{"from": f, "to": t, "kind": k} for f, t, k in sorted(edges)]}
