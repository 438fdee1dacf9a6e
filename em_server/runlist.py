"""Listing runs for the console and the client: search, filters, sorting by any
hyperparameter or last metric value, and paging, all done by the database.

Hyperparameters and last values are read from the run's stored JSON with the database's own
JSON functions (SQLite ``json_extract``, PostgreSQL ``jsonb``), so a sort over 10,000 runs
never loads them into Python.
"""

# ruff: noqa: B008  # FastAPI's dependency idiom: Depends()/Query() as defaults

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from sqlalchemy import case, func, literal, or_, select
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.sql.elements import ColumnElement

from . import db
from .auth import User, authenticate, check_path, require
from .folders import exists
from .runs import jsonable, summary

router = APIRouter()
COLUMNS_SCAN = 1000  # /runs/columns looks at the most recent runs only
MAX_DEPTH = 64  # levels of a dotted hyperparameter key to sort by


def _json_path(col: Any, parts: list[str], dialect: str) -> ColumnElement[Any]:
    if dialect == "postgresql":
        return func.jsonb_extract_path(col.cast(JSONB), *parts)
    return func.json_extract(col, "$" + "".join(f'."{p}"' for p in parts))


def _sort_key(key: str, dialect: str) -> ColumnElement[Any]:
    c = db.runs.c
    if key == "start":
        return c.start_timestamp
    if key == "name":
        return c.name
    if key == "status":
        return c.status
    if key == "duration":
        return func.coalesce(c.end_timestamp, literal(db.now())) - c.start_timestamp
    kind, _, rest = key.partition(":")
    if not rest or '"' in rest or kind not in ("hparam", "metric"):
        raise HTTPException(400, f"invalid sort {key!r}: expected start, duration, name, "
                                 "status, hparam:<dotted.key> or metric:<type>/<name>")
    if kind == "hparam":
        parts = rest.split(".")
        if len(parts) > MAX_DEPTH:  # PostgreSQL takes at most 100 arguments per function
            raise HTTPException(400, f"invalid sort {key[:80]!r}...: a hyperparameter key "
                                     f"deeper than {MAX_DEPTH} levels")
        return _json_path(c.meta, ["hparams", *parts], dialect)
    return _json_path(c.last, [rest], dialect)


def _leaves(d: Any, prefix: str = "") -> list[str]:
    if not isinstance(d, dict):
        return [prefix[:-1]] if prefix else []
    out: list[str] = []
    for k, v in d.items():
        out += _leaves(v, f"{prefix}{k}.")
    return out


def _column(row: Any, key: str) -> Any:
    kind, _, rest = key.partition(":")
    if kind == "metric":
        return json.loads(row.last).get(rest)
    v: Any = json.loads(row.meta).get("hparams") or {}
    for part in rest.split("."):
        v = v.get(part) if isinstance(v, dict) else None
    return v


@router.get("/runs")
def list_runs(request: Request, folder: str, recursive: bool = False, name: str | None = None,  # noqa: C901 - one optional filter per query parameter
              label: str | None = None, status: str | None = None, q: str | None = None,
              page: int = Query(1, ge=1, le=1_000_000),
              page_size: int = Query(50, ge=1, le=1000),
              sort: str = Query("-start", max_length=500),
              columns: str | None = Query(None, max_length=5000),
              user: User = Depends(authenticate)) -> dict[str, Any]:
    """Runs of ``folder`` (and its sub-folders when ``recursive``), filtered and sorted.

    ``q`` matches name, labels and description, case-insensitively. ``sort``: ``start``,
    ``duration``, ``name``, ``status``, ``hparam:<dotted.key>`` or ``metric:<type>/<name>``
    (its last value), with a leading ``-`` for descending; runs without the value come last.
    ``columns`` (comma-separated sort keys of the last two kinds) adds their values to each
    run as ``columns``.
    """
    folder = check_path(folder)
    for what, value in (("name", name), ("label", label), ("status", status), ("q", q),
                        ("sort", sort), ("columns", columns)):
        if value is not None and "\x00" in value:  # PostgreSQL text cannot hold NUL
            raise HTTPException(400, f"invalid {what} {value!r}: NUL is not allowed")
    c = db.runs.c
    cond = [or_(c.folder == folder, c.folder.startswith(folder + "/", autoescape=True))
            if recursive else c.folder == folder]
    if name:
        cond.append(c.name == name)
    if status:
        cond.append(c.status == status)
    if label:
        cond.append(c.labels.contains(json.dumps(label), autoescape=True))
    if q:
        cond.append(or_(c.name.icontains(q, autoescape=True),
                        c.alternative_name.icontains(q, autoescape=True),
                        c.labels.icontains(q, autoescape=True),
                        c.description.icontains(q, autoescape=True)))
    wanted = [k for k in (columns or "").split(",") if k]
    engine = request.app.state.engine
    dialect = engine.dialect.name
    for k in wanted:
        if not k.startswith(("hparam:", "metric:")):
            raise HTTPException(400, f"invalid column {k!r}: expected hparam:<dotted.key> "
                                     "or metric:<type>/<name>")
        _sort_key(k, dialect)
    desc = sort.startswith("-")
    key = _sort_key(sort.lstrip("-"), dialect)
    order = [case((key.is_(None), 1), else_=0), key.desc() if desc else key.asc(), c.id]
    with engine.connect() as conn:
        # reading a folder gives every folder under it (grants and owners hold downward)
        require(conn, user, folder)
        total = conn.execute(select(func.count()).select_from(db.runs).where(*cond)).scalar_one()
        if not total and not exists(conn, folder):  # an unknown folder, not an empty one
            raise HTTPException(404, f"folder {folder!r} not found")
        # sort and page the ids alone, then read the page's rows: the sort then carries no
        # run JSON along (4x quicker over 10,000 runs, bench/console_list.py)
        ids = [r[0] for r in conn.execute(select(c.id).where(*cond).order_by(*order)
                                          .limit(page_size).offset((page - 1) * page_size))]
        found = {r.id: r for r in conn.execute(select(db.runs).where(c.id.in_(ids)))}
        rows = [found[i] for i in ids if i in found]
    out = []
    for r in rows:
        s = summary(r)
        if wanted:
            s["columns"] = jsonable({k: _column(r, k) for k in wanted})
        out.append(s)
    return {"runs": out, "total": int(total), "page": page, "page_size": page_size}


@router.get("/runs/columns")
def run_columns(request: Request, folder: str, recursive: bool = True,
                user: User = Depends(authenticate)) -> dict[str, list[str]]:
    """The hyperparameter keys (dotted) and metric names (``type/name``) found in the most
    recent 1,000 runs of ``folder``: what the run list can show and sort by."""
    folder = check_path(folder)
    c = db.runs.c
    cond = (or_(c.folder == folder, c.folder.startswith(folder + "/", autoescape=True))
            if recursive else c.folder == folder)
    with request.app.state.engine.connect() as conn:
        require(conn, user, folder)
        rows = conn.execute(select(c.meta, c.last).where(cond).order_by(
            c.start_timestamp.desc()).limit(COLUMNS_SCAN)).all()
        if not rows and not exists(conn, folder):
            raise HTTPException(404, f"folder {folder!r} not found")
    hp: set[str] = set()
    mt: set[str] = set()
    for meta, last in rows:
        hp.update(_leaves(json.loads(meta).get("hparams") or {}))
        mt.update(json.loads(last))
    return {"hparams": sorted(hp), "metrics": sorted(mt)}
