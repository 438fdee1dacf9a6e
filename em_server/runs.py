"""Runs: upload (idempotent on the run's alternative name, with conflict strategies), list,
read, update and delete."""

# ruff: noqa: B008  # FastAPI's dependency idiom: Depends()/Query() as defaults

from __future__ import annotations

import json
import math
import uuid
from datetime import datetime, timezone
from typing import Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Request, Response
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import and_, delete, func, insert, select, update
from sqlalchemy.engine import Connection

from . import db
from .auth import User, access, authenticate, check_name, check_path, require
from .placing import open_folder, place

router = APIRouter()
Strategy = Literal["skip", "error", "new", "replace"]


class RunCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    folder: str
    make_folder: bool = True
    conflict_strategy: Strategy = "error"
    meta: dict[str, Any]


class RunMeta(BaseModel):
    model_config = ConfigDict(extra="forbid")
    meta: dict[str, Any]


class RunPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    labels: list[str] | None = None
    description: str | None = Field(default=None, max_length=100_000)


def jsonable(v: Any) -> Any:
    """``v`` with non-finite floats as the strings "NaN", "Infinity", "-Infinity"."""
    if isinstance(v, float):
        if v != v:
            return "NaN"
        if v in (float("inf"), float("-inf")):
            return "Infinity" if v > 0 else "-Infinity"
        return v
    if isinstance(v, dict):
        return {k: jsonable(x) for k, x in v.items()}
    if isinstance(v, list):
        return [jsonable(x) for x in v]
    return v


def _meta_fields(meta: dict[str, Any]) -> dict[str, Any]:
    labels = meta.get("labels") or []
    if not isinstance(labels, list) or not all(isinstance(x, str) for x in labels):
        raise HTTPException(400, f"meta.labels {labels!r}: expected a list of strings")
    desc = meta.get("description") or ""
    if not isinstance(desc, str):
        raise HTTPException(400, f"meta.description {desc!r}: expected a string")
    status = meta.get("status")
    if status is not None and not isinstance(status, str):
        raise HTTPException(400, f"meta.status {status!r}: expected a string")
    out: dict[str, Any] = {"status": status, "labels": json.dumps(labels),
                           "description": desc, "meta": json.dumps(meta)}
    for k in ("start_timestamp", "end_timestamp"):
        out[k] = _epoch(meta.get(k))
    return out


def _epoch(v: Any) -> float | None:
    """Unix time of a run.json timestamp (ISO 8601, as em writes it, or a number)."""
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return float(v) if math.isfinite(v) else None
    if isinstance(v, str):
        try:
            t = datetime.fromisoformat(v)
        except ValueError:
            return None
        if t.tzinfo is None:
            t = t.replace(tzinfo=timezone.utc)
        return t.timestamp()
    return None


def summary(row: Any) -> dict[str, Any]:
    """The run summary of a ``runs`` row."""
    return jsonable({"id": row.id, "path": f"{row.folder}/{row.name}", "folder": row.folder,
                     "name": row.name, "alternative_name": row.alternative_name,
                     "status": row.status, "labels": json.loads(row.labels),
                     "description": row.description, "start_timestamp": row.start_timestamp,
                     "end_timestamp": row.end_timestamp, "duration": duration(row),
                     "last": json.loads(row.last)})


def duration(row: Any) -> float | None:
    """Seconds from start to end (to now while the run has no end), or None."""
    if row.start_timestamp is None:
        return None
    end = row.end_timestamp if row.end_timestamp is not None else db.now()
    return max(0.0, end - row.start_timestamp)


def full(row: Any) -> dict[str, Any]:
    """Everything about a run."""
    meta = json.loads(row.meta)
    out = summary(row)
    out.update(jsonable({k: meta.get(k) for k in ("hparams", "platform", "git", "error")}))
    out["associations"] = jsonable(meta.get("associations") or [])
    out["metrics_length"] = row.metrics_length
    out["console_length"] = row.console_length
    out["meta"] = jsonable(meta)
    return out


def get_run(conn: Connection, user: User, run_id: str, write: bool = False) -> Any:
    """The run row, 404 when absent or unreadable, 403 when not writable and ``write``."""
    row = conn.execute(select(db.runs).where(db.runs.c.id == run_id)).first()
    if row is None or not access(conn, user, row.folder)[0]:
        raise HTTPException(404, f"run {run_id!r} not found")
    if write:
        require(conn, user, row.folder, write=True)
    return row


def delete_runs(conn: Connection, ids: list[str]) -> None:
    """Delete runs with their metric bytes, series and chunks."""
    if not ids:
        return
    sids = select(db.series.c.id).where(db.series.c.run_id.in_(ids))
    conn.execute(delete(db.chunks).where(db.chunks.c.series_id.in_(sids)))
    conn.execute(delete(db.series).where(db.series.c.run_id.in_(ids)))
    conn.execute(delete(db.metric_bytes).where(db.metric_bytes.c.run_id.in_(ids)))
    conn.execute(delete(db.console_bytes).where(db.console_bytes.c.run_id.in_(ids)))
    conn.execute(delete(db.runs).where(db.runs.c.id.in_(ids)))


def _by_name(conn: Connection, folder: str, name: str) -> Any:
    return conn.execute(select(db.runs).where(and_(db.runs.c.folder == folder,
                                                   db.runs.c.name == name))).first()


def _answer(state: str, row: Any) -> dict[str, Any]:
    return {"state": state, "id": row.id, "path": f"{row.folder}/{row.name}",
            "metrics_length": row.metrics_length, "console_length": row.console_length}


@router.post("/runs", status_code=201)
def create_run(body: RunCreate, request: Request, response: Response,
               user: User = Depends(authenticate)) -> dict[str, Any]:
    folder = check_path(body.folder)
    meta = body.meta
    name = check_name(meta.get("name"), "meta.name")
    alt = check_name(meta.get("alternative_name"), "meta.alternative_name")
    fields = _meta_fields(meta)

    def attempt() -> Any:
        with request.app.state.engine.begin() as conn:
            open_folder(conn, user, folder, body.make_folder)
            same = conn.execute(select(db.runs).where(and_(
                db.runs.c.folder == folder, db.runs.c.alternative_name == alt))).first()
            if same is not None:
                response.status_code = 200
                return _answer("existing", same)
            state, found = place(conn, "run", folder, name, alt, body.conflict_strategy,
                                 lambda c, n: _by_name(c, folder, n),
                                 lambda c, row: delete_runs(c, [row.id]))
            if state != "create":
                response.status_code = 200
                return _answer(state, found)
            run_id = str(uuid.uuid4())
            conn.execute(insert(db.runs).values(id=run_id, folder=folder, name=found,
                                                alternative_name=alt, metrics_length=0,
                                                schemas="{}", last="{}", **fields))
            row = conn.execute(select(db.runs).where(db.runs.c.id == run_id)).one()
        return _answer("created", row)

    return db.retrying(attempt)


@router.get("/runs/by-path")
def run_by_path(path: str, request: Request, user: User = Depends(authenticate)) -> dict[str, Any]:
    path = check_path(path)
    folder, name = path.rsplit("/", 1)
    if folder.count("/") < 1 or not folder:
        raise HTTPException(404, f"run {path!r} not found")
    with request.app.state.engine.connect() as conn:
        row = _by_name(conn, folder, name)
        if row is None or not access(conn, user, folder)[0]:
            raise HTTPException(404, f"run {path!r} not found")
        return _resolved(conn, user, row)


@router.get("/runs/{run_id}")
def read_run(run_id: str, request: Request, user: User = Depends(authenticate)) -> dict[str, Any]:
    with request.app.state.engine.connect() as conn:
        return _resolved(conn, user, get_run(conn, user, run_id))


def _resolved(conn: Connection, user: User, row: Any) -> dict[str, Any]:
    from .graph import resolve

    out = full(row)
    out["associations"] = resolve(conn, user, out["associations"], row.folder)
    return out


@router.put("/runs/{run_id}/meta")
def put_meta(run_id: str, body: RunMeta, request: Request,
             user: User = Depends(authenticate)) -> dict[str, Any]:
    fields = _meta_fields(body.meta)
    with request.app.state.engine.begin() as conn:
        get_run(conn, user, run_id, write=True)
        conn.execute(update(db.runs).where(db.runs.c.id == run_id).values(**fields))
        return full(get_run(conn, user, run_id))


@router.patch("/runs/{run_id}")
def patch_run(run_id: str, body: RunPatch, request: Request,
              user: User = Depends(authenticate)) -> dict[str, Any]:
    with request.app.state.engine.begin() as conn:
        row = get_run(conn, user, run_id, write=True)
        meta = json.loads(row.meta)
        if body.labels is not None:
            meta["labels"] = body.labels
        if body.description is not None:
            meta["description"] = body.description
        conn.execute(update(db.runs).where(db.runs.c.id == run_id).values(**_meta_fields(meta)))
        return full(get_run(conn, user, run_id))


@router.delete("/runs/{run_id}", status_code=204)
def delete_run(run_id: str, request: Request, user: User = Depends(authenticate)) -> Response:
    with request.app.state.engine.begin() as conn:
        get_run(conn, user, run_id, write=True)
        delete_runs(conn, [run_id])
    return Response(status_code=204)


def count_runs(conn: Connection, folder: str) -> int:
    """Runs directly in ``folder``."""
    return int(conn.execute(select(func.count()).select_from(db.runs)
                            .where(db.runs.c.folder == folder)).scalar_one())
