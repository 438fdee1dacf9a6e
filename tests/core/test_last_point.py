"""Run.last_point (issue 14, item 5): the last step per metric type, kept up to date by
reading only what was appended, right after load_run, resume and a crash."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import em_core as em
from em_core import _metricread

REPO = Path(__file__).resolve().parents[2]


def _reads(run: em.Run) -> int:
    lp = run._last_points
    return 0 if lp is None else lp.records_read


def test_last_point_per_type_with_aliases(run: em.Run) -> None:
    assert run.last_point("train") is None
    run.log("training", {"loss": 1.0}, step=3, epoch=0)
    run.log("validation", {"acc": 0.5}, step=3, epoch=0)
    run.log("train", {"loss": 0.5}, step=7)
    run.log("custom kind", {"x": 1}, step=9, epoch=2)
    assert run.last_point("train") == (7, None)
    assert run.last_point("training").step == 7  # type: ignore[union-attr]
    assert run.last_point("val") == em.run.Point(3, 0)
    assert run.last_point("custom kind") == (9, 2)
    assert run.last_point("test") is None
    with pytest.raises(TypeError, match="metric type must be a string"):
        run.last_point(3)  # type: ignore[arg-type]


@pytest.mark.parametrize("before", [10, 5000])
def test_cost_follows_what_was_logged_since_not_the_run(run: em.Run, before: int) -> None:
    for i in range(before):
        run.log("train", {"loss": float(i)}, step=i)
    assert run.last_point("train") == (before - 1, None)
    assert _reads(run) == before  # the first call reads the log once
    for epoch in range(5):
        first = _reads(run)
        for j in range(3):  # one "epoch" of three records
            run.log("train", {"loss": 0.0}, step=before + epoch * 3 + j, epoch=epoch)
        assert run.last_point("train") == (before + epoch * 3 + 2, epoch)
        assert _reads(run) - first == 3  # the same, after 10 records or after 5000
    calls = []
    real = _metricread.iter_records
    _metricread.iter_records = lambda *a, **k: calls.append(a) or real(*a, **k)  # type: ignore
    try:
        run.last_point("train")
    finally:
        _metricread.iter_records = real
    assert calls == []  # never a whole read-back


def test_right_after_load_and_resume(run: em.Run) -> None:
    for i in range(4):
        run.log("train", {"loss": 1.0}, step=10 * i, epoch=i)
    run.log("val", {"acc": 1.0}, step=30, epoch=3)
    run.finish()
    loaded = em.load_run(run.local)  # type: ignore[arg-type]
    assert loaded.last_point("train") == (30, 3) and loaded.last_point("val") == (30, 3)
    loaded.resume()
    loaded.log("train", {"loss": 0.5}, step=40, epoch=4)
    assert loaded.last_point("train") == (40, 4)
    loaded.finish()
    fresh = em.load_run(run.local)  # type: ignore[arg-type]
    assert fresh.last_point("train") == (40, 4)
    fresh.resume()  # resumed before any last_point call: read once, then kept up to date
    assert fresh.last_point("train") == (40, 4)
    fresh.log("train", {"loss": 0.25}, step=41)
    assert fresh.last_point("train") == (41, None)
    fresh.finish()


_CRASH = """
import os, signal, sys
import em_core as em
run = em.create_run(name="crash")
for i in range(500):
    run.log("train", {"loss": float(i)}, step=i, epoch=i // 100)
print(run.local, flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_right_after_a_crash_and_a_torn_tail(tmp_path: Path) -> None:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.run([sys.executable, "-c", _CRASH], env=env, capture_output=True,
                          text=True, timeout=60, check=False)
    assert proc.returncode == -signal.SIGKILL
    path = Path(proc.stdout.strip())
    with open(path / "metrics.bin", "r+b") as f:  # tear the last record (as a crash can)
        data = bytearray(f.read())
    end = len(data.rstrip(b"\0"))
    data[end - 2:end] = b"\xff\xff"
    (path / "metrics.bin").write_bytes(bytes(data))
    run = em.load_run(path)
    assert run.status is em.Status.CRASHED
    assert run.last_point("train") == (498, 4)  # the torn 499 is skipped
    run.resume()
    run.log("train", {"loss": 0.0}, step=499, epoch=4)
    assert run.last_point("train") == (499, 4)
    run.finish()


def test_noop_run_has_no_last_point(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    run: Any = em.create_run(name="r1")
    assert isinstance(run, em.NoOpRun) and run.last_point("train") is None
