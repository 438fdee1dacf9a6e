"""Round trip: arbitrary hyperparameters and metric sequences read back exactly, by em's
reader and by an independent decoder of the metric file written from its format doc."""

from __future__ import annotations

import json
import math
import struct
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import em_core as em
from em_core._secrets import is_secret_name

pytestmark = pytest.mark.usefixtures("fast_platform")

INT64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)
INDEX = st.integers(min_value=0, max_value=2**63 - 1)
FLOATS = st.floats(allow_nan=True, allow_infinity=True)

# The seed API's metric type aliases, written out again here rather than imported.
ALIASES = {"train": "train", "training": "train", "val": "val", "validate": "val",
           "validation": "val", "test": "test", "testing": "test", "eval": "test",
           "evaluate": "test", "evaluation": "test"}


# --------------------------------------------------------------------------- comparing


def same(a: Any, b: Any) -> bool:
    """Exact equality of JSON-like data: types match, NaN equals NaN, -0.0 is not 0.0."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        if math.isnan(a) or math.isnan(b):
            return math.isnan(a) and math.isnan(b)
        return a == b and math.copysign(1.0, a) == math.copysign(1.0, b)
    if isinstance(a, dict):
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return bool(a == b)


def test_same_helper() -> None:
    assert same({"a": [math.nan, 1]}, {"a": [math.nan, 1]})
    assert not same(1, 1.0)
    assert not same(0.0, -0.0)
    assert not same({"a": 1, "b": 2}, {"b": 2, "a": 1})
    assert not same([1], [1, 2])


# --------------------------------------------------------------------------- the decoder


def decode_metrics(path: Path) -> list[tuple[str, int, int | None, float, dict[str, Any]]]:
    """An independent reader of metrics.bin, following the format in _metricfile's doc:

    header b"EMMETRIC" | u32 version | u32 header size; then records
    u32 size | u32 sid | body | u32 (size ^ 0xE3A1B2C3); sid 0 declares a schema in JSON,
    sid k is (i64 step, i64 epoch or -1, f64 time, values by kinds 'd'/'q').
    """
    data = path.read_bytes()
    assert data[:8] == b"EMMETRIC"
    assert int.from_bytes(data[8:12], "little") == 1
    pos = int.from_bytes(data[12:16], "little")
    schemas: dict[int, dict[str, Any]] = {}
    out = []
    while pos + 12 <= len(data):
        size = int.from_bytes(data[pos:pos + 4], "little")
        sid = int.from_bytes(data[pos + 4:pos + 8], "little")
        if size < 12 or pos + size > len(data):
            break
        if int.from_bytes(data[pos + size - 4:pos + size], "little") != size ^ 0xE3A1B2C3:
            break
        body = data[pos + 8:pos + size - 4]
        pos += size
        if sid == 0:
            schema = json.loads(body.decode("utf-8"))
            schemas[schema["id"]] = schema
            continue
        schema = schemas[sid]
        step = int.from_bytes(body[0:8], "little", signed=True)
        epoch = int.from_bytes(body[8:16], "little", signed=True)
        (ts,) = struct.unpack("<d", body[16:24])
        values: dict[str, Any] = {}
        off = 24
        for name, kind in zip(schema["names"], schema["kinds"]):
            chunk = body[off:off + 8]
            off += 8
            values[name] = (struct.unpack("<d", chunk)[0] if kind == "d"
                            else int.from_bytes(chunk, "little", signed=True))
        assert off == len(body)
        out.append((schema["type"], step, None if epoch == -1 else epoch, ts, values))
    return out


# --------------------------------------------------------------------------- strategies


# secret-named keys are masked on the way in (tested in test_faults_secrets.py)
HP_KEYS = st.text(max_size=10).filter(lambda k: not is_secret_name(k))
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | INT64 | FLOATS | st.text(max_size=20),
    lambda children: (st.lists(children, max_size=4)
                      | st.dictionaries(HP_KEYS, children, max_size=4)),
    max_leaves=10,
)
HPARAMS = st.dictionaries(HP_KEYS, JSON_VALUES, max_size=6)


def _custom_type_ok(t: str) -> bool:
    return (bool(t.strip()) and t.strip().lower() not in ALIASES
            and not any(ord(c) < 32 for c in t))


METRIC_TYPES = (st.sampled_from(sorted(ALIASES) + ["Train", "EVAL"])
                | st.text(min_size=1, max_size=64).filter(_custom_type_ok))
CALLS = st.lists(
    st.tuples(METRIC_TYPES,
              st.dictionaries(st.text(min_size=1, max_size=12), INT64 | FLOATS,
                              min_size=1, max_size=5),
              INDEX,
              st.none() | INDEX),
    min_size=1, max_size=12,
)


def _normal(t: str) -> str:
    return ALIASES.get(t.strip().lower(), t)


# --------------------------------------------------------------------------- the property


@settings(max_examples=40, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(hp_arg=HPARAMS, hp_update=HPARAMS, calls=CALLS)
def test_roundtrip(hp_arg: dict[str, Any], hp_update: dict[str, Any],
                   calls: list[tuple[str, dict[str, Any], int, int | None]]) -> None:
    run = em.create_run(name="prop", hparams=hp_arg)
    assert isinstance(run, em.Run)
    run.hparams.update(hp_update)
    expected_hp = {**hp_arg}
    for k, v in hp_update.items():  # update() merges nested dicts key by key
        if isinstance(v, dict) and isinstance(expected_hp.get(k), dict):
            expected_hp[k] = _merged(expected_hp[k], v)
        else:
            expected_hp[k] = v

    # every call twice: the second round goes through the cached fast path
    logged = [(t, m, s + r, e) for r in (0, 1) for t, m, s, e in calls
              if s + r <= 2**63 - 1]
    for t, m, s, e in logged:
        run.log(t, m, step=s, epoch=e)
    expected = [(_normal(t), s, e, m) for t, m, s, e in logged]
    metrics_path = Path(run.local, "metrics.bin")

    def check(records: list[tuple[str, int, int | None, float, dict[str, Any]]]) -> None:
        assert len(records) == len(expected)
        for (rt, rs, re_, _, rv), (et, es, ee, ev) in zip(records, expected):
            assert (rt, rs, re_) == (et, es, ee)
            assert same(rv, ev), (rv, ev)

    check(decode_metrics(metrics_path))  # while running: the file is zero padded
    run.finish()
    check(decode_metrics(metrics_path))

    back = em.load_run(run.local)
    assert same(back.hparams.as_dict(), expected_hp)
    raw = json.loads(Path(run.local, "run.json").read_text(encoding="utf-8"))
    assert same(raw["hparams"], expected_hp)
    check([(r.type, r.step, r.epoch, r.time, r.values) for r in back.metric_records()])
    # run.metrics groups by type, keeping order within each type
    for type_ in {t for t, _, _, _ in expected}:
        mine = [(s, e, v) for t, s, e, v in expected if t == type_]
        theirs = back.metrics[type_]
        assert len(theirs) == len(mine)
        for point, (s, e, v) in zip(theirs, mine):
            assert point["sequence"]["step"] == s and point["sequence"]["epoch"] == e
            assert same(point["value"], v)


def _merged(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    out = dict(old)
    for k, v in new.items():
        out[k] = _merged(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) \
            else v
    return out


def test_decoder_agrees_on_a_known_file(tmp_path: Path) -> None:
    run = em.create_run()
    run.log("train", {"loss": 0.5, "n": 3}, step=1, epoch=0)
    run.log("validation", {"acc": 0.75}, step=2)
    run.finish()
    recs = decode_metrics(Path(run.local, "metrics.bin"))
    assert [(t, s, e, v) for t, s, e, _, v in recs] == [
        ("train", 1, 0, {"loss": 0.5, "n": 3}), ("val", 2, None, {"acc": 0.75})]
    assert type(recs[0][4]["n"]) is int
