"""Run.log: types, values, bad input (strict and lenient), timestamps, the metric file."""

from __future__ import annotations

import math
import os
import re
import struct
import threading
import warnings
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import em_core as em
from em_core import _metricfile

pytestmark = pytest.mark.usefixtures("fast_platform")

# Each test that checks a bad input runs it twice: on a fresh run (the validating path) and
# after a good call of the same shape (the cached fast path must refuse it too).
WARM = pytest.mark.parametrize("warm", [False, True], ids=["cold", "warm"])


def _records(run: em.Run) -> list[_metricfile.Record]:
    return _metricfile.read_records(Path(run.local, "metrics.bin"))


def _values(run: em.Run, type_: str = "train") -> list[dict[str, Any]]:
    return [p["value"] for p in run.metrics.get(type_, [])]


# --------------------------------------------------------------------------- types


@pytest.mark.parametrize(("given", "stored"), [
    ("train", "train"), ("training", "train"), ("Training", "train"),
    ("val", "val"), ("validate", "val"), ("validation", "val"),
    ("test", "test"), ("testing", "test"), ("eval", "test"), ("evaluate", "test"),
    ("evaluation", "test"), ("EVAL", "test"),
    ("custom", "custom"), ("Sampling Stage 2", "Sampling Stage 2"),
])
def test_type_aliases_normalised(run: em.Run, given: str, stored: str) -> None:
    run.log(given, {"m": 1.0}, step=0)
    run.log(given, {"m": 2.0}, step=1)  # second call takes the cached path
    assert list(run.metrics) == [stored]
    assert _values(run, stored) == [{"m": 1.0}, {"m": 2.0}]


def test_metrics_grouped_by_type_in_order(run: em.Run) -> None:
    run.log("train", {"loss": 3.0}, step=0)
    run.log("val", {"loss": 2.5}, step=0)
    run.log("training", {"loss": 2.0}, step=1)
    run.log("evaluation", {"acc": 0.7}, step=1)
    m = run.metrics
    assert [p["value"]["loss"] for p in m["train"]] == [3.0, 2.0]
    assert [p["sequence"]["step"] for p in m["train"]] == [0, 1]
    assert m["val"][0]["value"] == {"loss": 2.5}
    assert m["test"][0]["value"] == {"acc": 0.7}


# --------------------------------------------------------------------------- values


def test_ints_stay_ints_floats_stay_floats(run: em.Run) -> None:
    run.log("train", {"n": 3, "loss": 0.25, "flag": True, "whole": 2.0}, step=0)
    (v,) = _values(run)
    assert v == {"n": 3, "loss": 0.25, "flag": 1, "whole": 2.0}
    assert type(v["n"]) is int
    assert type(v["flag"]) is int
    assert type(v["loss"]) is float
    assert type(v["whole"]) is float


def test_int64_limits_and_beyond(run: em.Run) -> None:
    big = 2**63 - 1
    run.log("train", {"x": big}, step=0)
    run.log("train", {"x": -(2**63)}, step=1)
    run.log("train", {"x": 2**70}, step=2)  # beyond int64: kept as a float
    vals = [v["x"] for v in _values(run)]
    assert vals[:2] == [big, -(2**63)]
    assert type(vals[0]) is int
    assert vals[2] == float(2**70) and type(vals[2]) is float


def test_numpy_scalars_and_one_element_arrays(run: em.Run) -> None:
    run.log("train", {
        "f64": np.float64(0.125), "f32": np.float32(0.1), "f16": np.float16(1.5),
        "i64": np.int64(-7), "i32": np.int32(9), "u8": np.uint8(255),
        "b": np.bool_(True),
        "arr1": np.array([2.5]), "arr0": np.array(4.0), "arr11": np.array([[7]]),
    }, step=0)
    (v,) = _values(run)
    assert v["f64"] == 0.125 and type(v["f64"]) is float
    assert v["f32"] == float(np.float32(0.1)) and type(v["f32"]) is float
    assert v["f16"] == 1.5
    assert v["i64"] == -7 and type(v["i64"]) is int
    assert v["i32"] == 9 and type(v["i32"]) is int
    assert v["u8"] == 255 and type(v["u8"]) is int
    assert v["b"] == 1
    assert v["arr1"] == 2.5 and type(v["arr1"]) is float
    assert v["arr0"] == 4.0
    assert v["arr11"] == 7 and type(v["arr11"]) is int


def test_duck_typed_tensor_without_framework(run: em.Run) -> None:
    class FakeTensor:  # what em sees of a one-element torch tensor: shape + item()
        shape = (1, 1)

        def item(self) -> float:
            return 0.75

    run.log("train", {"t": FakeTensor()}, step=0)
    run.log("train", {"t": FakeTensor()}, step=1)
    assert _values(run) == [{"t": 0.75}, {"t": 0.75}]


def test_nan_and_infinities_read_back_exactly(run: em.Run) -> None:
    run.log("train", {"nan": float("nan"), "pinf": math.inf, "ninf": -math.inf,
                      "npnan": np.float32("nan"), "negzero": -0.0}, step=0)
    run.finish()
    (v,) = _values(em.load_run(run.local))
    assert math.isnan(v["nan"]) and math.isnan(v["npnan"])
    assert v["pinf"] == math.inf
    assert v["ninf"] == -math.inf
    assert v["negzero"] == 0.0 and math.copysign(1.0, v["negzero"]) == -1.0


@WARM
def test_multi_element_array_rejected_naming_its_shape(run: em.Run, warm: bool) -> None:
    if warm:
        run.log("train", {"w": np.array([1.0])}, step=0)
    with pytest.raises(ValueError, match=r"\(2, 3\)"):
        run.log("train", {"w": np.zeros((2, 3))}, step=1)
    with pytest.raises(ValueError, match=r"\(0,\)"):
        run.log("train", {"w": np.zeros(0)}, step=1)
    assert len(_records(run)) == (1 if warm else 0)


@pytest.mark.parametrize("bad", ["0.5", None, b"1", [1.0], {"a": 1}, object()])
def test_non_number_value_rejected(run: em.Run, bad: Any) -> None:
    with pytest.raises(TypeError, match="'loss'"):
        run.log("train", {"loss": bad}, step=0)
    assert _records(run) == []


# --------------------------------------------------------------------------- bad arguments


@WARM
@pytest.mark.parametrize(("kwargs", "exc", "quoted"), [
    ({"step": -1}, ValueError, "-1"),
    ({"step": "3"}, TypeError, "'3'"),
    ({"step": 1.5}, TypeError, "1.5"),
    ({"step": None}, TypeError, "None"),
    ({"step": True}, TypeError, "True"),
    ({"step": 2**64}, ValueError, str(2**64)),
    ({"epoch": -1}, ValueError, "-1"),
    ({"epoch": "1"}, TypeError, "'1'"),
    ({"epoch": 0.5}, TypeError, "0.5"),
    ({"epoch": False}, TypeError, "False"),
])
def test_bad_step_or_epoch_quotes_value(run: em.Run, warm: bool, kwargs: dict[str, Any],
                                        exc: type[Exception], quoted: str) -> None:
    if warm:
        run.log("train", {"loss": 1.0}, step=0, epoch=0)
    args: dict[str, Any] = {"step": 1, "epoch": 0, **kwargs}
    with pytest.raises(exc) as ei:
        run.log("train", {"loss": 2.0}, **args)
    assert quoted in str(ei.value)
    assert _values(run) == ([{"loss": 1.0}] if warm else [])


@pytest.mark.parametrize(("metrics", "exc", "quoted"), [
    ([1, 2], TypeError, "[1, 2]"),
    ({}, ValueError, "empty"),
    (None, TypeError, "None"),
    ({"": 1.0}, TypeError, "''"),
    ({3: 1.0}, TypeError, "3"),
])
def test_bad_metrics_argument(run: em.Run, metrics: Any, exc: type[Exception],
                              quoted: str) -> None:
    with pytest.raises(exc) as ei:
        run.log("train", metrics, step=0)
    assert quoted in str(ei.value)


@pytest.mark.parametrize(("type_", "exc"), [
    ("", ValueError), ("   ", ValueError), (None, TypeError), (3, TypeError),
    ("x" * 65, ValueError), ("bad\nname", ValueError),
])
def test_bad_metric_type(run: em.Run, type_: Any, exc: type[Exception]) -> None:
    with pytest.raises(exc) as ei:
        run.log(type_, {"a": 1}, step=0)
    assert repr(type_)[:40] in str(ei.value)


def test_nothing_recorded_is_lost_by_bad_calls(run: em.Run) -> None:
    run.log("train", {"loss": 1.0}, step=0)
    run.hparams["lr"] = 0.1
    for bad in ({"step": -1}, {"step": "x"}, {"epoch": -3}):
        with pytest.raises((TypeError, ValueError)):
            run.log("train", {"loss": 2.0}, **{"step": 1, **bad})
    with pytest.raises(ValueError):
        run.log("train", {"loss": np.ones(4)}, step=1)
    with pytest.raises(TypeError):
        run.log("train", [("loss", 1.0)], step=1)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        run.hparams.update({"bad": {1: 2}})
    run.log("train", {"loss": 3.0}, step=2)
    run.finish()
    back = em.load_run(run.local)
    assert _values(back) == [{"loss": 1.0}, {"loss": 3.0}]
    assert back.hparams.as_dict() == {"lr": 0.1}


# --------------------------------------------------------------------------- lenient mode


@pytest.mark.usefixtures("lenient")
def test_lenient_bad_value_warns_once_and_keeps_good_values(run: em.Run) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for step in range(5):
            run.log("train", {"loss": 0.5 + step, "acc": "high", "w": np.ones(3)}, step=step)
    em_warnings = [w for w in caught if issubclass(w.category, em.EmWarning)]
    assert len(em_warnings) == 2, [str(w.message) for w in em_warnings]
    texts = sorted(str(w.message) for w in em_warnings)
    assert "'acc'" in texts[0] or "'acc'" in texts[1]
    assert any("(3,)" in t for t in texts)
    assert _values(run) == [{"loss": 0.5 + s} for s in range(5)]


@pytest.mark.usefixtures("lenient")
def test_lenient_bad_step_warns_once_and_drops_call(run: em.Run) -> None:
    run.log("train", {"loss": 1.0}, step=0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(3):
            run.log("train", {"loss": 9.0}, step=-1)
    assert len([w for w in caught if issubclass(w.category, em.EmWarning)]) == 1
    assert "-1" in str(caught[0].message)
    run.log("train", {"loss": 2.0}, step=1)
    assert _values(run) == [{"loss": 1.0}, {"loss": 2.0}]


@pytest.mark.filterwarnings("default::em_core.errors.EmWarning")
@pytest.mark.usefixtures("lenient")
def test_lenient_log_after_finish_warns(run: em.Run) -> None:
    run.finish()
    with pytest.warns(em.EmWarning, match="ended"):
        run.log("train", {"a": 1}, step=0)


def test_strict_mode_is_on_in_tests() -> None:
    assert os.environ["EM_STRICT"] == "1"
    from em_core.errors import strict_mode

    assert strict_mode()


@pytest.mark.usefixtures("lenient")
def test_handle_problem_warns_once_per_key() -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(3):
            em.handle_problem(ValueError("bad thing"), key="k1")
        em.handle_problem(ValueError("other"), key="k2")
    assert [str(w.message) for w in caught] == [
        "em: bad thing (further occurrences are not reported)",
        "em: other (further occurrences are not reported)"]
    assert all(w.category is em.EmWarning for w in caught)


def test_handle_problem_raises_in_strict_mode() -> None:
    with pytest.raises(KeyError):
        em.handle_problem(KeyError("x"))


# --------------------------------------------------------------------------- lifecycle


def test_log_after_finish_raises(run: em.Run) -> None:
    run.log("train", {"a": 1.0}, step=0)
    run.finish()
    with pytest.raises(em.RunFinishedError, match=run.alternative_name):
        run.log("train", {"a": 1.0}, step=1)  # same shape as before: the cached path too
    with pytest.raises(em.RunFinishedError):
        run.log("val", {"b": 2}, step=1)
    assert _values(run) == [{"a": 1.0}]


def test_timestamps_iso_and_non_decreasing(run: em.Run) -> None:
    before = datetime.now().astimezone()
    for i in range(50):
        run.log("train", {"i": i}, step=i, epoch=i // 10)
    after = datetime.now().astimezone()
    seq = [p["sequence"] for p in run.metrics["train"]]
    stamps = [datetime.fromisoformat(s["timestamp"]) for s in seq]
    assert all(t.tzinfo is not None for t in stamps)
    assert stamps == sorted(stamps)
    assert before.replace(microsecond=0) <= stamps[0] and stamps[-1] <= after
    assert [s["step"] for s in seq] == list(range(50))
    assert [s["epoch"] for s in seq] == [i // 10 for i in range(50)]


def test_epoch_none_reads_back_none(run: em.Run) -> None:
    run.log("train", {"a": 1}, step=5)
    run.log("train", {"a": 1}, step=6, epoch=0)
    seq = [p["sequence"] for p in run.metrics["train"]]
    assert [(s["step"], s["epoch"]) for s in seq] == [(5, None), (6, 0)]


def test_numpy_int_step_accepted(run: em.Run) -> None:
    run.log("train", {"a": 1}, step=np.int64(3), epoch=np.int32(1))
    seq = run.metrics["train"][0]["sequence"]
    assert (seq["step"], seq["epoch"]) == (3, 1)
    assert type(seq["step"]) is int


# --------------------------------------------------------------------------- the file


def test_many_calls_across_mmap_windows(run: em.Run) -> None:
    names = [f"m{i:03d}" for i in range(100)]
    record_size = 4 + 4 + 8 + 8 + 8 + 8 * 100 + 4
    calls = 2 * (_metricfile._WINDOW // record_size) + 500  # crosses the window twice
    for step in range(calls):
        run.log("train", dict.fromkeys(names, float(step)), step=step)
    size_running = os.path.getsize(Path(run.local, "metrics.bin"))
    assert size_running > 2 * _metricfile._WINDOW
    run.finish()
    recs = _records(em.load_run(run.local))
    assert len(recs) == calls
    assert [r.step for r in recs] == list(range(calls))
    assert all(r.values == dict.fromkeys(names, float(r.step)) for r in recs)


def test_metric_kind_change_keeps_types(run: em.Run) -> None:
    run.log("train", {"x": 1}, step=0)
    run.log("train", {"x": 1.5}, step=1)
    run.log("train", {"x": 2}, step=2)
    run.log("train", {"x": np.float32(2.5)}, step=3)
    run.log("train", {"x": 3}, step=4)
    vals = [v["x"] for v in _values(run)]
    assert vals == [1, 1.5, 2, 2.5, 3]
    assert [type(v) for v in vals] == [int, float, int, float, int]


def test_changing_metric_names_between_calls(run: em.Run) -> None:
    run.log("train", {"a": 1.0, "b": 2.0}, step=0)
    run.log("train", {"b": 3.0, "a": 4.0}, step=1)
    run.log("train", {"a": 5.0}, step=2)
    assert _values(run) == [{"a": 1.0, "b": 2.0}, {"b": 3.0, "a": 4.0}, {"a": 5.0}]
    assert list(_values(run)[1]) == ["b", "a"]


def test_threads_logging_concurrently(run: em.Run) -> None:
    n_threads, n_calls = 4, 5000
    errors: list[BaseException] = []

    def work(t: int) -> None:
        try:
            for i in range(n_calls):
                run.log("train", {"thread": t, "i": i, "x": float(i * t)}, step=i)
        except BaseException as e:  # reported by the assertion below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(n_threads)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert errors == []
    run.finish()
    recs = _records(em.load_run(run.local))
    assert len(recs) == n_threads * n_calls
    per_thread: dict[int, list[int]] = {}
    for r in recs:
        assert r.step == r.values["i"]
        assert r.values["x"] == float(r.values["i"] * r.values["thread"])
        per_thread.setdefault(int(r.values["thread"]), []).append(int(r.values["i"]))
    assert per_thread == {t: list(range(n_calls)) for t in range(n_threads)}


def test_file_header_and_version(run: em.Run) -> None:
    run.log("train", {"a": 1}, step=0)
    run.finish()
    data = Path(run.local, "metrics.bin").read_bytes()
    magic, version, hsize = struct.unpack_from("<8sII", data)
    assert (magic, version, hsize) == (b"EMMETRIC", 1, 16)


def test_finished_file_has_no_padding(run: em.Run) -> None:
    run.log("train", {"a": 1}, step=0)
    run.finish()
    data = Path(run.local, "metrics.bin").read_bytes()
    size = struct.unpack_from("<I", data, len(data) - 4)[0] ^ _metricfile.TRAILER_XOR
    assert 12 <= size < len(data)  # the file ends exactly with a record's trailer


def test_zero_padding_of_running_file_is_ignored(run: em.Run) -> None:
    for i in range(10):
        run.log("train", {"a": i}, step=i)
    path = Path(run.local, "metrics.bin")
    data = path.read_bytes()  # still running: the mapped window is zero padded
    assert len(data) >= _metricfile._WINDOW
    assert data[-1000:] == bytes(1000)
    assert [r.values["a"] for r in _metricfile.read_records(path)] == list(range(10))


def _finished_run_with(n: int) -> Path:
    run = em.create_run()
    for i in range(n):
        run.log("train", {"a": i, "b": float(i)}, step=i)
    run.finish()
    return Path(run.local, "metrics.bin")


@pytest.mark.parametrize("cut", [1, 4, 12, 20, 39])
def test_torn_last_record_is_skipped(cut: int) -> None:
    path = _finished_run_with(5)
    data = path.read_bytes()
    # each data record: u32 size, u32 sid, step, epoch, time, a, b, u32 trailer = 52 bytes
    assert struct.unpack_from("<I", data, len(data) - 52)[0] == 52
    path.write_bytes(data[:-cut])
    assert [r.values["a"] for r in _metricfile.read_records(path)] == [0, 1, 2, 3]


def test_torn_record_with_zero_tail_is_skipped() -> None:
    path = _finished_run_with(5)
    data = bytearray(path.read_bytes())
    data[-30:] = bytes(30)  # a record whose end never reached the page cache
    data += bytes(4096)
    path.write_bytes(bytes(data))
    assert [r.values["a"] for r in _metricfile.read_records(path)] == [0, 1, 2, 3]


def test_overwritten_trailer_ends_the_log() -> None:
    path = _finished_run_with(5)
    data = bytearray(path.read_bytes())
    data[-4:] = b"\x01\x02\x03\x04"
    path.write_bytes(bytes(data))
    recs = _metricfile.read_records(path)
    assert [r.values["a"] for r in recs] == [0, 1, 2, 3]
    assert em.load_run(path.parent).metrics["train"][-1]["value"] == {"a": 3, "b": 3.0}


def test_bad_magic_is_an_error(tmp_path: Path) -> None:
    bad = tmp_path / "metrics.bin"
    bad.write_bytes(b"NOTMETRC" + bytes(8))
    with pytest.raises(em.CorruptRunError, match="magic") as ei:
        _metricfile.read_records(bad)
    assert str(bad) in str(ei.value)


def test_damaged_metric_log_of_a_run_names_the_file(run: em.Run) -> None:
    run.log("train", {"a": 1}, step=0)
    run.finish()
    path = Path(run.local, "metrics.bin")
    path.write_bytes(b"garbage garbage garbage")
    back = em.load_run(run.local)
    with pytest.raises(em.CorruptRunError, match=re.escape(str(path))):
        _ = back.metrics
    assert path.read_bytes() == b"garbage garbage garbage"


def test_newer_file_version_is_an_error(tmp_path: Path) -> None:
    bad = tmp_path / "metrics.bin"
    bad.write_bytes(struct.pack("<8sII", b"EMMETRIC", 2, 16))
    with pytest.raises(em.CorruptRunError, match="version 2"):
        _metricfile.read_records(bad)


def test_flush_is_harmless(run: em.Run) -> None:
    run.log("train", {"a": 1}, step=0)
    run.flush()
    run.log("train", {"a": 2}, step=1)
    run.finish()
    run.flush()  # after finish: a no-op
    assert _values(run) == [{"a": 1}, {"a": 2}]


def test_wide_call_with_unicode_names(run: em.Run) -> None:
    metrics = {f"层/{i}/ü": float(i) for i in range(1000)}
    run.log("train", metrics, step=0)
    run.log("train", metrics, step=1)
    run.finish()
    vals = _values(em.load_run(run.local))
    assert vals == [metrics, metrics]
