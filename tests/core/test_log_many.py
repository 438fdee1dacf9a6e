"""Run.log_many: the same records as one Run.log call per row, packed at once, by the C loop
(em_core/_packrows.c) and by the Python one."""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import em_core as em
import em_core.run as run_module
from em_core import _logmany, _metricfile, errors
from tests.conftest import REPO

NOW = 1_700_000_000.25


@pytest.fixture(autouse=True, params=["c", "python"])
def packing(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every test twice: with the C packing loop (built by pip install: it must be here) and
    with the Python one."""
    monkeypatch.setattr(errors, "_warned", set())  # warn-once starts afresh for each
    if request.param == "c":
        assert _logmany._native_pack is not None, "em_core._packrows is not built"
    else:
        monkeypatch.setattr(_logmany, "_native_pack", None)
    return str(request.param)


def test_the_c_loop_is_built_from_this_source() -> None:
    from em_core import _packrows

    built = Path(_packrows.__file__).stat().st_mtime
    # whole seconds: the build copies the module with its time rounded down
    assert built >= int((REPO / "em_core" / "_packrows.c").stat().st_mtime), \
        "em_core/_packrows.c changed after it was built: pip install -e . again"


@pytest.fixture
def frozen(monkeypatch: pytest.MonkeyPatch) -> None:
    """One clock for both paths, so that their metric logs can be compared byte for byte."""
    monkeypatch.setattr(run_module, "_time", lambda: NOW)
    monkeypatch.setattr(_metricfile.time, "time", lambda: NOW)


def _bytes(run: em.Run) -> bytes:
    run.finish()
    return (Path(run.local) / "metrics.bin").read_bytes()


def _rows(n: int) -> tuple[list[int], list[int], list[float], list[int]]:
    steps = list(range(0, 3 * n, 3))
    epochs = [s // 40 for s in steps]
    return steps, epochs, [math.sin(s) for s in steps], [s * s for s in steps]


@pytest.mark.usefixtures("frozen")
@pytest.mark.parametrize("n", [1, 63, 64, 65, 1000, 30_000])  # chunks, remainders, windows
def test_same_bytes_as_one_log_call_per_row(n: int) -> None:
    steps, epochs, xs, ys = _rows(n)
    one = em.create_run(name="per-call")
    for s, e, x, y in zip(steps, epochs, xs, ys):
        one.log("train", {"x": x, "y": y}, s, e)
        one.log("train", {"loss": x}, s, e)
    one.log("val", {"acc": 0.5}, steps[-1])
    many = em.create_run(name="many")
    many.log_many("train", steps, [{"x": xs, "y": ys}, {"loss": xs}], epochs)
    many.log_many("val", [steps[-1]], {"acc": [0.5]})
    assert _bytes(many) == _bytes(one)
    assert many.last_point("train") == (steps[-1], epochs[-1])
    assert [r["sequence"]["step"] for r in many.metrics["train"]][:4] == [0, 0, 3, 3][:2 * n]


@pytest.mark.usefixtures("frozen")
def test_one_epoch_for_all_rows_none_and_a_known_layout() -> None:
    one = em.create_run(name="per-call")
    many = em.create_run(name="many")
    for run in (one, many):
        run.log("train", {"a": 1.0}, 0)  # the layout is known before log_many
    for s in (1, 2, 3):
        one.log("train", {"a": s / 2}, s, 7)
    many.log_many("train", (1, 2, 3), {"a": (0.5, 1.0, 1.5)}, 7)
    for s in (4, 5):
        one.log("train", {"a": float(s)}, s)
    many.log_many("train", [4, 5], {"a": [4.0, 5.0]})
    assert _bytes(many) == _bytes(one)


@pytest.mark.usefixtures("frozen")
def test_mixed_and_bad_values_go_row_by_row_with_log_s_warnings(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EM_STRICT", "0")
    steps = [0, 1, 2, 3]
    values = [1.0, 2, "bad", 4.0]  # float, int, a string log() refuses, float
    one = em.create_run(name="per-call")
    with pytest.warns(UserWarning) as one_warned:
        for s, v in zip(steps, values):
            one.log("train", {"v": v, "w": 0.5}, s)
    monkeypatch.setattr(errors, "_warned", set())  # warn-once, again for the second run
    many = em.create_run(name="many")
    with pytest.warns(UserWarning) as many_warned:
        many.log_many("train", steps, {"v": values, "w": [0.5] * 4})
    assert [str(w.message) for w in many_warned] == [str(w.message) for w in one_warned]
    assert _bytes(many) == _bytes(one)


def test_strict_raises_what_log_raises() -> None:
    run = em.create_run(name="strict")
    with pytest.raises(ValueError, match="step"):
        run.log_many("train", [0, -1], {"v": [1.0, 2.0]})
    assert [r["sequence"]["step"] for r in run.metrics["train"]] == [0]
    with pytest.raises(ValueError, match="one value per step"):
        run.log_many("train", [0, 1], {"v": [1.0]})
    with pytest.raises(TypeError, match="steps must be a sequence"):
        run.log_many("train", 5, {"v": [1.0]})  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="epoch"):  # a bool is no epoch, as in log()
        run.log_many("train", [3, 4], {"v": [1.0, 2.0]}, epochs=True)  # type: ignore[arg-type]
    run.finish()
    with pytest.raises(em.RunFinishedError):
        run.log_many("train", [9], {"v": [1.0]})


def test_noop_run_records_nothing() -> None:
    em.NoOpRun().log_many("train", [0], {"v": [1.0]})


def test_rows_are_in_the_page_cache_when_it_returns(tmp_path: Path) -> None:
    """SIGKILL right after log_many returns loses nothing."""
    script = textwrap.dedent("""
        import os, signal, sys
        import em_core as em
        run = em.create_run(name="killed")
        run.log_many("train", list(range(5000)), {"a": [0.5] * 5000, "b": [1] * 5000}, 2)
        print(run.local, flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    res = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         env=env, timeout=60)
    assert res.returncode == -signal.SIGKILL
    run = em.load_run(res.stdout.strip())
    got = run.metrics["train"]
    assert len(got) == 5000 and got[-1]["value"] == {"a": 0.5, "b": 1}
    assert run.last_point("train") == (4999, 2)


_VALUES = st.one_of(st.floats(), st.integers(-2**64, 2**64), st.booleans(),
                    st.sampled_from([np.float32(1.5), np.int64(-3), np.float64(2.25), "x",
                                     None, float("nan")]))


@pytest.mark.usefixtures("frozen")
@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(-2, 2**63 + 1), st.integers(0, 9), _VALUES, _VALUES),
                min_size=1, max_size=40),
       st.sampled_from(["column", "one", "none"]))
def test_any_rows_give_the_bytes_of_one_log_call_each(
        rows: list[tuple[int, int, object, object]], epochs_as: str) -> None:
    """Whatever the values (classes mixed within a column, ints out of range, bools, NumPy
    scalars, values log() refuses) and steps, the metric log holds what log() per row
    writes."""
    epochs: list[int] | int | None = ([r[1] for r in rows] if epochs_as == "column"
                                      else rows[0][1] if epochs_as == "one" else None)
    old_strict = os.environ["EM_STRICT"]
    os.environ["EM_STRICT"] = "0"  # bad values warn and are dropped, as in training
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            one = em.create_run(name="per-call")
            for i, (step, _, a, b) in enumerate(rows):
                epoch = epochs[i] if isinstance(epochs, list) else epochs
                one.log("train", {"a": a}, step, epoch)
                one.log("train", {"b": b, "c": 0.5}, step, epoch)
            many = em.create_run(name="many")
            many.log_many("train", [r[0] for r in rows],
                          [{"a": [r[2] for r in rows]},
                           {"b": [r[3] for r in rows], "c": [0.5] * len(rows)}], epochs)
    finally:
        os.environ["EM_STRICT"] = old_strict
    assert _bytes(many) == _bytes(one)
