"""Metric byte ranges (a run's metrics.bin, applied exactly once) and series reads.

A range is parsed with the record format of :mod:`em_core._metricfile`; its points are stored
column-wise (``chunks`` rows of packed int64/float64 arrays per series) in the same
transaction that advances the run's ``metrics_length`` from exactly the range's offset, so two
server processes can never both apply one range.
"""

# ruff: noqa: B008  # FastAPI's dependency idiom: Depends()/Query() as defaults

from __future__ import annotations

import json
import math
import struct
from typing import Any, Literal

import numpy as np
from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response
from sqlalchemy import and_, insert, or_, select, update
from sqlalchemy.engine import Connection

from em_core._metricfile import HEADER, MAGIC, TRAILER_XOR, VERSION

from . import db, summaries
from .app import binary_body
from .auth import User, authenticate
from .runs import get_run, jsonable

router = APIRouter()
_HEAD = struct.Struct("<II")
_TRAIL = struct.Struct("<I")
CHUNK = 10_000


def _dtype(kinds: str) -> np.dtype[Any]:
    fields = [("size", "<u4"), ("sid", "<u4"), ("step", "<i8"), ("epoch", "<i8"),
              ("time", "<f8")] + [(f"v{i}", "<f8" if k == "d" else "<i8")
                                  for i, k in enumerate(kinds)] + [("trail", "<u4")]
    return np.dtype(fields)  # packed, like the file's records


def _schema(raw: bytes, offset: int) -> tuple[str, dict[str, Any]]:
    """The id and schema of a schema record's JSON body (found at ``offset``); raises
    ValueError naming the offset when it is not one."""
    try:
        sch = json.loads(raw.decode("utf-8"))
        sk = str(int(sch["id"]))
        if not isinstance(sch["type"], str) or not isinstance(sch["names"], list) \
                or len(sch["names"]) != len(sch["kinds"]) \
                or set(sch["kinds"]) - {"d", "q"} or int(sk) <= 0:
            raise ValueError
        struct.Struct("<" + sch["kinds"])
    except (ValueError, KeyError, TypeError, UnicodeDecodeError):
        raise ValueError(f"invalid schema record at offset {offset}") from None
    return sk, {"type": sch["type"], "names": [str(x) for x in sch["names"]],
                "kinds": sch["kinds"]}


def _header(data: bytes) -> int:
    """The size of the metric file's header that starts ``data``; raises ValueError when
    it is not one."""
    if len(data) < HEADER.size:
        raise ValueError("a range at offset 0 must start with the 16-byte header")
    magic, version, hsize = HEADER.unpack_from(data, 0)
    if magic != MAGIC or version != VERSION or hsize != HEADER.size:
        raise ValueError("bad metrics.bin header at offset 0")
    return int(HEADER.size)


def _same_records(data: bytes, pos: int, dt: np.dtype[Any], size: int, sid: int) -> Any:
    """The records of schema ``sid`` that follow each other from ``pos`` (the one at ``pos``
    is known good), as one structured array: records of one shape usually come in runs, so
    a run is taken at once, in windows growing fourfold."""
    most = (len(data) - pos) // size
    w = min(64, most)
    while True:
        arr = np.frombuffer(data, dtype=dt, count=w, offset=pos)
        ok = (arr["size"] == size) & (arr["sid"] == sid) & (arr["trail"] == size ^ TRAILER_XOR)
        if not ok.all():
            return arr[:int(np.argmin(ok))]
        if w == most:
            return arr
        w = min(w * 4, most)


def parse(data: bytes, at: int, schemas: dict[str, Any]
          ) -> tuple[dict[tuple[str, str], tuple[np.ndarray, ...]], int]:
    """Parse complete records of ``data`` (which starts at file offset ``at``).

    Returns the points per (type, name) and the number of records; ``schemas`` (sid ->
    schema) is updated in place. Raises ValueError naming the offset of the first bad byte.
    """
    pos = _header(data) if at == 0 else 0
    segs: dict[tuple[str, str], list[tuple[np.ndarray, ...]]] = {}
    structs: dict[str, tuple[np.dtype[Any], list[tuple[str, str]]]] = {}
    n = 0
    end = len(data)
    while pos < end:
        if end - pos < 12:
            raise ValueError(f"incomplete record at offset {at + pos}")
        size, sid = _HEAD.unpack_from(data, pos)
        if size < 12 or pos + size > end or \
                _TRAIL.unpack_from(data, pos + size - 4)[0] != size ^ TRAILER_XOR:
            raise ValueError(f"invalid record at offset {at + pos}")
        if sid == 0:
            sk, schema = _schema(data[pos + 8:pos + size - 4], at + pos)
            schemas[sk] = schema
        else:
            key = str(sid)
            got = structs.get(key)
            if got is None:
                sch = schemas.get(key)
                if sch is None:
                    raise ValueError(f"record of undeclared schema {sid} at offset {at + pos}")
                got = (_dtype(sch["kinds"]), [(sch["type"], nm) for nm in sch["names"]])
                structs[key] = got
            dt, keys = got
            if size != dt.itemsize:
                raise ValueError(f"record of schema {sid} has the wrong size at offset {at + pos}")
            arr = _same_records(data, pos, dt, size, sid)
            w = len(arr)
            for i, k in enumerate(keys):
                segs.setdefault(k, []).append(
                    (arr["step"], arr["epoch"], arr["time"], arr[f"v{i}"].astype(np.float64)))
            n += w - 1
            pos += size * (w - 1)
        n += 1
        pos += size
    points = {k: tuple(np.concatenate([sg[j] for sg in v]) for j in range(4))
              for k, v in segs.items()}
    return points, n


def _series_id(conn: Connection, run_id: str, type_: str, name: str) -> int:
    c = db.series.c
    sid = conn.execute(select(c.id).where(and_(c.run_id == run_id, c.type == type_,
                                               c.name == name))).scalar()
    if sid is None:
        sid = conn.execute(insert(db.series).values(run_id=run_id, type=type_, name=name)) \
            .inserted_primary_key[0]
    return int(sid)


@router.get("/runs/{run_id}/metrics/length")
def metrics_length(run_id: str, request: Request,
                   user: User = Depends(authenticate)) -> dict[str, int]:
    with request.app.state.engine.connect() as conn:
        return {"length": get_run(conn, user, run_id).metrics_length}


@router.put("/runs/{run_id}/metrics")
async def put_metrics(run_id: str, request: Request, offset: int = Query(ge=0),
                      user: User = Depends(authenticate)) -> dict[str, int]:
    body = await binary_body(request)
    from starlette.concurrency import run_in_threadpool

    return await run_in_threadpool(_apply, request.app.state.engine, user, run_id, offset,
                                   body)


def _apply(engine: Any, user: User, run_id: str, offset: int, body: bytes) -> dict[str, int]:
    with engine.connect() as conn:
        row = get_run(conn, user, run_id, write=True)
    length = row.metrics_length
    if offset > length:
        raise HTTPException(409, f"offset {offset} is past the accepted length {length}",
                            headers={"x-em-length": str(length)})
    if offset + len(body) <= length:
        return {"length": length, "applied": 0}
    data = body[length - offset:]
    schemas = json.loads(row.schemas)
    try:
        points, nrec = parse(data, length, schemas)
    except ValueError as e:
        raise HTTPException(400, f"metrics range at offset {offset}: {e}; nothing applied") \
            from None
    last = json.loads(row.last)
    new_len = length + len(data)
    with engine.begin() as conn:
        for (type_, name), cols in points.items():
            last[f"{type_}/{name}"] = float(cols[3][-1])
        done = conn.execute(update(db.runs).where(and_(
            db.runs.c.id == run_id, db.runs.c.metrics_length == length)).values(
            metrics_length=new_len, schemas=json.dumps(schemas),
            last=json.dumps(jsonable(last)))).rowcount
        if done != 1:  # another request applied (part of) it first: answer as a retry would
            conn.rollback()
            return _apply(engine, user, run_id, offset, body)
        conn.execute(insert(db.metric_bytes).values(run_id=run_id, offset=length, data=data))
        rows, sums = [], []
        cs = db.chunk_summaries.c
        for (type_, name), cols in points.items():
            sid = _series_id(conn, run_id, type_, name)
            pos = conn.execute(select(cs.start + cs.n).where(cs.series_id == sid).order_by(
                cs.chunk_id.desc()).limit(1)).scalar() or 0
            for i in range(0, len(cols[0]), CHUNK):
                part = [a[i:i + CHUNK] for a in cols]
                rows.append({"series_id": sid, "n": len(part[0]), "steps": part[0].tobytes(),
                             "epochs": part[1].tobytes(), "times": part[2].tobytes(),
                             "vals": part[3].tobytes()})
                sums.append({"series_id": sid, "n": len(part[0]),
                             **summaries.summarize(pos, *part)})
                pos += len(part[0])
        if rows:
            ids = conn.execute(insert(db.chunks).returning(
                db.chunks.c.id, sort_by_parameter_order=True), rows).scalars().all()
            for cid, sm in zip(ids, sums, strict=True):
                sm["chunk_id"] = cid
            conn.execute(insert(db.chunk_summaries), sums)
    return {"length": new_len, "applied": nrec}


@router.get("/runs/{run_id}/metrics.bin")
def metrics_bin(run_id: str, request: Request, user: User = Depends(authenticate)) -> Response:
    with request.app.state.engine.connect() as conn:
        get_run(conn, user, run_id)
        parts = conn.execute(select(db.metric_bytes.c.data).where(
            db.metric_bytes.c.run_id == run_id).order_by(db.metric_bytes.c.offset)).scalars()
        data = b"".join(parts)
    return Response(data, media_type="application/octet-stream")


_COLS = ((np.int64, "steps"), (np.int64, "epochs"), (np.float64, "times"),
         (np.float64, "vals"))


def _load(conn: Connection, series_id: int) -> tuple[np.ndarray, ...]:
    rows = conn.execute(select(db.chunks.c.steps, db.chunks.c.epochs, db.chunks.c.times,
                               db.chunks.c.vals).where(db.chunks.c.series_id == series_id)
                        .order_by(db.chunks.c.id)).all()
    cols = []
    for i, (dt, _name) in enumerate(_COLS):
        cols.append(np.frombuffer(b"".join(r[i] for r in rows), dtype=dt))
    return tuple(cols)


def _by_id(conn: Connection, ids: list[int], *names: str, table: Any = db.chunks) -> \
        dict[int, Any]:
    """Columns ``names`` of the chunks ``ids`` (a few hundred ids per query)."""
    out: dict[int, Any] = {}
    c = table.c
    key = c.id if table is db.chunks else c.chunk_id
    for i in range(0, len(ids), 500):
        for row in conn.execute(select(key, *(getattr(c, nm) for nm in names)).where(
                key.in_(ids[i:i + 500]))).all():
            out[row[0]] = row[1:]
    return out


def _points_of(conn: Connection, ids: list[int]) -> dict[int, list[np.ndarray]]:
    got = _by_id(conn, ids, *(nm for _, nm in _COLS))
    return {k: [np.frombuffer(b, dtype=dt) for b, (dt, _) in zip(v, _COLS, strict=True)]
            for k, v in got.items()}


def read_points(conn: Connection, series_id: int, x: str = "step",  # noqa: C901 - one pass over the chunks choosing, per chunk, whole or cut and summary or points; split, the parts would pass all of that state around
                start: float | None = None, end: float | None = None,
                max_points: int | None = None) -> dict[str, Any]:
    """The points of a series whose ``x`` (step, epoch or time) lies in [start, end], or a
    downsampled view of at most ``max_points`` keeping each bucket's extremes
    (:mod:`em_server.summaries`): a chunk wholly in the range is then read from its summary.

    Returns ``count`` (points in range), ``downsampled``, ``bucket_width`` (None when not
    downsampled) and the arrays ``step``, ``epoch``, ``time``, ``value``.
    """
    c = db.chunk_summaries.c
    lo, hi = getattr(c, f"{x}_lo"), getattr(c, f"{x}_hi")
    q = select(c.chunk_id.label("id"), c.start, c.n, lo, hi).where(c.series_id == series_id)
    if start is not None:
        q = q.where(or_(hi.is_(None), hi >= start))
    if end is not None:
        q = q.where(or_(lo.is_(None), lo <= end))
    rows = conn.execute(q.order_by(c.chunk_id)).all()
    whole = {r.id for r in rows if r[3] is not None and r[4] is not None
             and (start is None or r[3] >= start) and (end is None or r[4] <= end)}
    cut = _points_of(conn, [r.id for r in rows if r.id not in whole])
    kept: dict[int, np.ndarray] = {}  # chunk id -> indices in range, for the cut ones
    count, first, last = 0, 0, -1
    for r in rows:
        if r.id in whole:
            idx = None
        else:
            axis = cut[r.id][{"step": 0, "epoch": 1, "time": 2}[x]]
            mask = np.ones(len(axis), dtype=bool)
            if start is not None:
                mask &= axis >= start
            if end is not None:
                mask &= axis <= end
            idx = kept[r.id] = np.flatnonzero(mask)
        n = r.n if idx is None else len(idx)
        if n:
            pos0 = r.start + (0 if idx is None else int(idx[0]))
            first = pos0 if count == 0 else first
            last = r.start + (r.n - 1 if idx is None else int(idx[-1]))
            count += n
    width = None
    if max_points is not None and count > max_points:
        width = summaries.bucket_width(first, last, max_points)
    use_summary = width is not None and summaries.uses_summaries(width)
    full = {} if use_summary else _points_of(conn, sorted(whole))
    blobs = _by_id(conn, sorted(whole), "summary", table=db.chunk_summaries) if use_summary \
        else {}
    units = summaries.Units()
    parts: list[list[np.ndarray]] = []
    for r in rows:
        if r.id in whole and use_summary:
            units.add_summary(blobs[r.id][0])
            continue
        cols = full[r.id] if r.id in whole else [a[kept[r.id]] for a in cut[r.id]]
        if width is None:
            parts.append(cols)
        else:
            p = np.arange(len(cols[0]), dtype=np.int64) if r.id in whole else kept[r.id]
            units.add_points(r.start + p, *cols)
    if width is not None:
        _pos, steps, epochs, times, vals = units.view(width)
    else:
        steps, epochs, times, vals = (np.concatenate([p[i] for p in parts]) if parts else
                                      np.zeros(0, dtype=dt) for i, (dt, _) in enumerate(_COLS))
    return {"count": count, "downsampled": width is not None, "bucket_width": width,
            "step": steps, "epoch": epochs, "time": times, "value": vals}


def _floats(a: np.ndarray) -> list[Any]:
    out = a.tolist()
    if not np.isfinite(a).all():
        out = [jsonable(x) for x in out]
    return out


def _series_stats(conn: Connection, series_id: int) -> dict[str, Any] | None:
    """Count, first/last step, last value and finite min/max of a series, from its chunk
    summaries and its first and last chunk: a live run's page polls this, so it must not
    read every point (only a series holding an infinity is read whole, to skip it)."""
    cs = db.chunk_summaries.c
    rows = conn.execute(select(cs.chunk_id, cs.n, cs.summary).where(
        cs.series_id == series_id).order_by(cs.chunk_id)).all()
    count = sum(r.n for r in rows)
    if not count:
        return None
    ends = _points_of(conn, sorted({rows[0].chunk_id, rows[-1].chunk_id}))
    first, last = ends[rows[0].chunk_id], ends[rows[-1].chunk_id]
    u = np.frombuffer(b"".join(r.summary for r in rows), dtype=summaries.SUMMARY)
    lo, hi = u["min_val"], u["max_val"]
    if np.isinf(lo).any() or np.isinf(hi).any():
        vals = _load(conn, series_id)[3]
        lo = hi = vals[np.isfinite(vals)]
    else:  # a block's extremes skip NaN; a block of NaN alone has NaN for both
        lo, hi = lo[~np.isnan(lo)], hi[~np.isnan(hi)]
    return {"count": count, "first_step": int(first[0][0]), "last_step": int(last[0][-1]),
            "last": float(last[3][-1]),
            "min": float(lo.min()) if len(lo) else math.nan,
            "max": float(hi.max()) if len(hi) else math.nan}


@router.get("/runs/{run_id}/series")
def list_series(run_id: str, request: Request,
                user: User = Depends(authenticate)) -> dict[str, Any]:
    """Every metric series of a run, with its point count, first and last step, last value
    and the minimum and maximum of its finite values."""
    out = []
    with request.app.state.engine.connect() as conn:
        get_run(conn, user, run_id)
        for sid, type_, name in conn.execute(select(db.series.c.id, db.series.c.type,
                                                    db.series.c.name).where(
                db.series.c.run_id == run_id).order_by(db.series.c.id)).all():
            stats = _series_stats(conn, sid)
            if stats is not None:
                out.append(jsonable({"type": type_, "name": name, **stats}))
    return {"series": out}


@router.get("/runs/{run_id}/series/points")
def points(run_id: str, request: Request, name: str, type_: str = Query(alias="type"),
           start: float | None = None, end: float | None = None,
           max_points: int | None = Query(None, ge=2, le=1_000_000),
           x: Literal["step", "epoch", "time"] = "step", after: float | None = None,
           user: User = Depends(authenticate)) -> dict[str, Any]:
    if after is not None and not math.isfinite(after):
        raise HTTPException(400, f"after={after!r}: expected a finite number")
    if after is not None:  # a live tail: only what came after the last point the page has
        nxt = after + 1 if x != "time" else math.nextafter(after, math.inf)
        start = nxt if start is None else max(start, nxt)
    with request.app.state.engine.connect() as conn:
        get_run(conn, user, run_id)
        sid = conn.execute(select(db.series.c.id).where(and_(
            db.series.c.run_id == run_id, db.series.c.type == type_,
            db.series.c.name == name))).scalar()
        if sid is None:
            raise HTTPException(404, f"no series {type_!r}/{name!r} in run {run_id!r}")
        got = read_points(conn, sid, x, start, end, max_points)
    steps, epochs, times, vals = got["step"], got["epoch"], got["time"], got["value"]
    ep: list[Any] | None = None if (epochs < 0).all() and len(epochs) else epochs.tolist()
    if ep is not None:
        ep = [None if e < 0 else e for e in ep]
    return {"type": type_, "name": name, "downsampled": got["downsampled"],
            "count": got["count"], "bucket_width": got["bucket_width"],
            "step": steps.tolist(), "epoch": ep, "time": _floats(times),
            "value": _floats(vals)}
