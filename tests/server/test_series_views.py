"""Downsampled series views read from per-chunk summaries keep the exact minimum and maximum
point of every bucket, over the whole series and zoomed to a step or epoch range; chunks
stored before the summaries existed get them from the Alembic migration."""

from __future__ import annotations

import bisect
import math
import random
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa

import em_core as em
from em_core._metricfile import _valid_end
from em_server import db, summaries
from em_server.metrics import parse, read_points

from .conftest import Server
from .test_api import boundaries

OCT = {"Content-Type": "application/octet-stream"}
N = 20_000


def _values(n: int) -> np.ndarray:
    rng = np.random.default_rng(7)
    v = np.round(rng.normal(size=n), 1)  # many ties
    v[rng.choice(n, 300, replace=False)] = np.nan
    v[4000:4500] = np.nan  # whole blocks of NaN
    v[[5, 9000, 15001]] = [np.inf, -np.inf, np.inf]
    return v


def _metrics_bin() -> tuple[dict[str, Any], bytes]:
    run = em.create_run(name="views")
    vals = _values(N)
    for i in range(N):
        run.log("train", {"loss": float(vals[i])}, step=i, epoch=i // 1000)
        if i % 7 == 0:  # another series in between: positions are per series
            run.log("val", {"loss": float(i)}, step=i)
    run.finish()
    path = Path(run.local) / "metrics.bin"
    end, _ = _valid_end(str(path))
    return {"name": "views", "alternative_name": run.alternative_name}, \
        path.read_bytes()[:end]


def _expected(vals: np.ndarray, in_range: np.ndarray, width: int) -> list[int]:
    """Positions of each bucket's first minimum and first maximum (NaN neither), by brute
    force over the points in range."""
    keep: set[int] = set()
    pos = np.flatnonzero(in_range)
    for b in np.unique(pos // width):
        idx = pos[pos // width == b]
        v = vals[idx]
        keep.add(int(idx[np.argmin(np.where(np.isnan(v), np.inf, v))]))
        keep.add(int(idx[np.argmax(np.where(np.isnan(v), -np.inf, v))]))
    return sorted(keep)


def _json(v: float) -> Any:
    return v if math.isfinite(v) else ("NaN" if math.isnan(v) else
                                       ("Infinity" if v > 0 else "-Infinity"))


@pytest.fixture(scope="module")
def uploaded(server: Server, alice: str) -> str:
    meta, data = _metrics_bin()
    cuts = boundaries(data)
    rnd = random.Random(3)
    with server.client(alice) as c:
        rid = c.post("/runs", json={"folder": "/alice/views", "make_folder": True,
                                    "meta": meta}).json()["id"]
        lo = 0
        while lo < len(data):  # ranges of random sizes: chunks start at odd positions
            want = lo + rnd.randint(1, 60_000)
            hi = cuts[bisect.bisect_left(cuts, want)] if want < len(data) else len(data)
            assert c.put(f"/runs/{rid}/metrics", params={"offset": lo}, content=data[lo:hi],
                         headers=OCT).status_code == 200
            lo = hi
    return str(rid)


@pytest.mark.parametrize("query,max_points", [
    ({}, 100), ({}, 1000), ({}, 3), ({"start": 1234, "end": 17_000}, 100),
    ({"start": 4100.5}, 64), ({"x": "epoch", "start": 3, "end": 7}, 40),
    ({"start": 10, "end": 900}, 40),
])
def test_view_keeps_each_buckets_exact_extremes(server: Server, alice: str, uploaded: str,
                                                query: dict[str, Any], max_points: int) -> None:
    vals = _values(N)
    steps = np.arange(N)
    axis = steps // 1000 if query.get("x") == "epoch" else steps
    in_range = (axis >= query.get("start", -1)) & (axis <= query.get("end", N))
    with server.client(alice) as c:
        got = c.get(f"/runs/{uploaded}/series/points", params={
            "type": "train", "name": "loss", "max_points": max_points, **query}).json()
    width = got["bucket_width"]
    assert got["downsampled"] is True and got["count"] == int(in_range.sum())
    pos = np.flatnonzero(in_range)
    assert len(np.unique(pos // width)) <= max_points // 2  # the promised bound
    assert len(got["step"]) <= max_points
    want = _expected(vals, in_range, width)
    assert got["step"] == want  # step == position in this series
    assert got["value"] == [_json(float(vals[i])) for i in want]
    assert got["epoch"] == [i // 1000 for i in want]


@pytest.mark.parametrize("seed", range(20))
def test_summaries_give_the_same_view_as_every_point(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 3000))
    vals = np.round(rng.normal(size=n), int(rng.integers(0, 3)))
    vals[rng.random(n) < rng.random() * 0.5] = np.nan
    steps = np.arange(n, dtype=np.int64)
    cuts = np.unique(np.concatenate([[0, n], rng.integers(0, n, int(rng.integers(0, 20)))]))
    width = summaries.BLOCK * int(rng.integers(1, 12))
    units = summaries.Units()
    for a, b in zip(cuts[:-1], cuts[1:], strict=True):  # chunks of random sizes
        cols = [steps[a:b], steps[a:b] // 7, steps[a:b] * 0.5, vals[a:b]]
        units.add_summary(summaries.summarize(int(a), *cols)["summary"])
    pos, st, ep, tm, v = units.view(width)
    want = _expected(vals, np.ones(n, dtype=bool), width)
    assert pos.tolist() == want and st.tolist() == want
    assert ep.tolist() == [i // 7 for i in want] and tm.tolist() == [i * 0.5 for i in want]
    assert np.array_equal(v, vals[want], equal_nan=True)


def test_summaries_are_used_for_wide_buckets_and_points_for_narrow_ones() -> None:
    assert summaries.uses_summaries(summaries.bucket_width(0, 999_999, 1000))
    assert not summaries.uses_summaries(summaries.bucket_width(0, 9_999, 1000))


def test_chunks_from_before_summaries_get_them_from_the_migration(tmp_path: Path) -> None:
    meta, data = _metrics_bin()
    points, _ = parse(data, 0, {})
    steps, epochs, times, vals = points[("train", "loss")]
    engine = db.make_engine(f"sqlite:///{tmp_path / 'old.sqlite3'}")
    db.upgrade(engine, "0002")
    old = sa.table("chunks", *(sa.column(n) for n in (
        "series_id", "n", "steps", "epochs", "times", "vals")))
    with engine.begin() as conn:  # as the server before 0003 stored them
        conn.execute(sa.insert(db.users).values(name="old", created_at=1.0))
        conn.execute(sa.insert(db.runs).values(
            id="r", folder="/old", name="v", alternative_name="v_1", labels="[]",
            description="", meta="{}", metrics_length=len(data), schemas="{}", last="{}"))
        conn.execute(sa.insert(db.series).values(id=1, run_id="r", type="train", name="loss"))
        for i in range(0, N, 7_000):
            conn.execute(sa.insert(old).values(
                series_id=1, n=len(steps[i:i + 7000]), steps=steps[i:i + 7000].tobytes(),
                epochs=epochs[i:i + 7000].tobytes(), times=times[i:i + 7000].tobytes(),
                vals=vals[i:i + 7000].tobytes()))
    db.upgrade(engine)
    with engine.connect() as conn:
        assert conn.execute(sa.select(db.chunk_summaries.c.start).order_by(
            db.chunk_summaries.c.chunk_id)).scalars().all() == [0, 7000, 14000]
        got = read_points(conn, 1, "step", 1234, None, 100)
    assert summaries.uses_summaries(got["bucket_width"])
    in_range = np.arange(N) >= 1234
    want = _expected(vals, in_range, got["bucket_width"])
    assert got["step"].tolist() == want
    assert np.array_equal(got["value"], vals[want], equal_nan=True)
