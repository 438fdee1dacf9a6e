"""A run's ``console.log`` (what the training printed, or the log that passed through
``em caffe`` / ``em mxnet``): appended by byte ranges exactly once, like the metric file,
and read back whole or as numbered lines with a search.
"""

# ruff: noqa: B008  # FastAPI's dependency idiom: Depends()/Query() as defaults

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response
from sqlalchemy import and_, insert, select, update
from sqlalchemy.engine import Engine

from . import db
from .app import binary_body
from .auth import User, authenticate
from .runs import get_run

router = APIRouter()


@router.get("/runs/{run_id}/console/length")
def console_length(run_id: str, request: Request,
                   user: User = Depends(authenticate)) -> dict[str, int]:
    """How many bytes of the run's console.log the server holds."""
    with request.app.state.engine.connect() as conn:
        return {"length": get_run(conn, user, run_id).console_length}


@router.put("/runs/{run_id}/console")
async def put_console(run_id: str, request: Request, offset: int = Query(ge=0),
                      user: User = Depends(authenticate)) -> dict[str, int]:
    """Bytes ``[offset, offset+len)`` of the local console.log. A range already held is
    acknowledged and not stored again; one starting past the held length is a 409 that
    carries the length to resume from."""
    body = await binary_body(request)
    from starlette.concurrency import run_in_threadpool

    return await run_in_threadpool(_append, request.app.state.engine, user, run_id, offset,
                                   body)


def _append(engine: Engine, user: User, run_id: str, offset: int, body: bytes) -> dict[str, int]:
    def attempt() -> dict[str, int]:
        with engine.begin() as conn:
            length = get_run(conn, user, run_id, write=True).console_length
            if offset > length:
                raise HTTPException(409, f"offset {offset} is past the held length {length}",
                                    headers={"x-em-length": str(length)})
            data = body[length - offset:]
            if not data:
                return {"length": length}
            done = conn.execute(update(db.runs).where(and_(
                db.runs.c.id == run_id, db.runs.c.console_length == length)).values(
                console_length=length + len(data))).rowcount
            if done != 1:  # a concurrent request got there first: try again from its length
                raise db.Retry()
            conn.execute(insert(db.console_bytes).values(run_id=run_id, offset=length,
                                                         data=data))
            return {"length": length + len(data)}

    return db.retrying(attempt)


def _text(engine: Engine, user: User, run_id: str) -> bytes:
    with engine.connect() as conn:
        get_run(conn, user, run_id)
        parts = conn.execute(select(db.console_bytes.c.data).where(
            db.console_bytes.c.run_id == run_id).order_by(db.console_bytes.c.offset)).scalars()
        return b"".join(parts)


@router.get("/runs/{run_id}/console.log")
def console_bytes(run_id: str, request: Request, user: User = Depends(authenticate)) -> Response:
    """The console.log bytes held so far."""
    data = _text(request.app.state.engine, user, run_id)
    return Response(data, media_type="text/plain; charset=utf-8",
                    headers={"X-Content-Type-Options": "nosniff"})


@router.get("/runs/{run_id}/log")
def log_lines(run_id: str, request: Request, q: str | None = Query(None, max_length=1000),
              start_line: int = Query(1, ge=1), limit: int = Query(500, ge=1, le=5000),
              user: User = Depends(authenticate)) -> dict[str, Any]:
    """Numbered lines (from 1) of the run's console.log: ``limit`` lines from ``start_line``,
    or with ``q`` the matching lines (case-insensitive) from ``start_line`` on. ``total`` is
    the number of lines, or of matches with ``q``. 404 when the run has no log."""
    data = _text(request.app.state.engine, user, run_id)
    if not data:
        raise HTTPException(404, f"run {run_id!r} has no console log")
    lines = data.decode("utf-8", "replace").splitlines()
    numbered = list(enumerate(lines, 1))
    if q:
        needle = q.lower()
        numbered = [(n, t) for n, t in numbered if needle in t.lower()]
    picked = [(n, t) for n, t in numbered if n >= start_line][:limit]
    return {"lines": [{"n": n, "text": t} for n, t in picked], "total": len(numbered)}
