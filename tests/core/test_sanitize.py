"""em_core.sanitize.json_safe: the one set of rules every integration and run.hparams use."""

from __future__ import annotations

import argparse
import dataclasses
import enum
import json
import math
import re
from collections import namedtuple
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import pytest

from em_core.sanitize import json_safe, keras_serialized


class Color(enum.Enum):
    RED = "red"


class Level(enum.IntEnum):
    HIGH = 3


@dataclasses.dataclass
class Optim:
    lr: float = 0.1
    betas: tuple[float, float] = (0.9, 0.99)


class Described:
    def __repr__(self) -> str:
        return "Described(k=1)"


class Printed:
    def __str__(self) -> str:
        return "printed"


class Opaque:
    pass


def lr_lambda(epoch: int) -> float:
    return 0.5 ** epoch


def _only_plain(v: Any) -> bool:
    if isinstance(v, dict):
        return all(type(k) is str and _only_plain(x) for k, x in v.items())
    if isinstance(v, list):
        return all(_only_plain(x) for x in v)
    return v is None or type(v) in (bool, int, float, str)


@pytest.mark.parametrize(("given", "expected"), [
    (None, None), (True, True), (3, 3), ("s", "s"), (0.5, 0.5),
    (Color.RED, "red"), (Level.HIGH, 3),
    (Path("/tmp/x"), "/tmp/x"), (PurePosixPath("a/b"), "a/b"),
    ((1, (2, 3)), [1, [2, 3]]), ({3, 1, 2}, [1, 2, 3]), (frozenset({"b", "a"}), ["a", "b"]),
    (argparse.Namespace(lr=0.1, opt="sgd"), {"lr": 0.1, "opt": "sgd"}),
    (Optim(), {"lr": 0.1, "betas": [0.9, 0.99]}),
    (namedtuple("P", "x y")(1, 2), {"x": 1, "y": 2}),
    (b"ab\xff", "ab\\xff"),
    (np.float32(0.5), 0.5), (np.int64(7), 7), (np.bool_(True), True), (np.str_("n"), "n"),
    (np.array([4]), 4), (np.array([[1, 2], [3, 4]]), [[1, 2], [3, 4]]),
    (lr_lambda, "lr_lambda"), (lambda x: x, "<lambda>"), (Opaque, "Opaque"), (len, "len"),
    (Described(), "Described(k=1)"), (Printed(), "printed"),
    (Opaque(), "Opaque"),  # the default repr is only an address: the class name instead
])
def test_rules(given: Any, expected: Any) -> None:
    out = json_safe(given)
    assert out == expected
    assert type(out) is type(expected)
    assert _only_plain(out)


def test_non_finite_floats_stay_floats_and_round_trip_through_run_json() -> None:
    out = json_safe({"nan": float("nan"), "inf": math.inf, "ninf": np.float64(-math.inf)})
    assert math.isnan(out["nan"]) and out["inf"] == math.inf and out["ninf"] == -math.inf
    back = json.loads(json.dumps(out))  # how run.json is written and read
    assert math.isnan(back["nan"]) and back["inf"] == math.inf


def test_what_was_given_is_not_changed() -> None:
    given = {"a": [1, {"b": (2, 3)}], "s": {1}}
    before = repr(given)
    out = json_safe(given)
    assert repr(given) == before
    out["a"][1]["b"].append(4)
    assert given["a"][1]["b"] == (2, 3)  # type: ignore[index]


def test_torch_like_and_tf_like_values_by_module_without_importing_them() -> None:
    class FakeTensor:  # as torch.Tensor: numel() is a method
        __module__ = "torch"

        def __init__(self, values: list[float]) -> None:
            self.values = values

        def numel(self) -> int:
            return len(self.values)

        def item(self) -> float:
            return self.values[0]

        def tolist(self) -> list[float]:
            return list(self.values)

    class FakeVariable:  # as tf.Variable: read through numpy()
        __module__ = "tensorflow.python.ops"

        def numpy(self) -> Any:
            return np.float32(0.25)

    assert json_safe(FakeTensor([2.0])) == 2.0
    assert json_safe(FakeTensor([1.0, 2.0])) == [1.0, 2.0]
    assert json_safe(FakeVariable()) == 0.25


def test_unknown_hook_is_called_with_the_path() -> None:
    seen: list[tuple[str, str]] = []
    json_safe({"a": {"b": Opaque()}}, "cfg", on_unknown=lambda p, v: seen.append(
        (p, type(v).__name__)))
    assert seen == [("cfg.a.b", "Opaque")]


@pytest.mark.parametrize("key", [1, 2.5, ("t",), None])
def test_non_string_keys_are_refused_naming_the_key(key: Any) -> None:
    with pytest.raises(TypeError, match=re.escape(f"key {key!r}") + ".*keys must be strings"):
        json_safe({"ok": {key: 1}}, "cfg")


def test_cycles_and_huge_ints_are_refused_naming_where() -> None:
    loop: dict[str, Any] = {}
    loop["self"] = loop
    with pytest.raises(ValueError, match="cfg.self: contains itself"):
        json_safe(loop, "cfg")
    with pytest.raises(ValueError, match="cfg: an int of"):
        json_safe(10 ** 5000, "cfg")


def test_keras_serialized_objects_are_shortened() -> None:
    config = {"learning_rate": {"module": "keras.optimizers.schedules", "class_name":
                                "ExponentialDecay", "config": {"decay_rate": 0.9},
                                "registered_name": None}, "beta_1": 0.9}
    assert json_safe(keras_serialized(config)) == {
        "learning_rate": {"class": "ExponentialDecay", "config": {"decay_rate": 0.9}},
        "beta_1": 0.9}


def test_hparams_use_the_same_rules(run: Any) -> None:
    given = {"p": Path("/x"), "e": Color.RED, "f": lr_lambda, "a": np.arange(3)}
    run.hparams.update(given)
    assert run.hparams.as_dict() == json_safe(given) == {"p": "/x", "e": "red", "f": "lr_lambda",
                                                         "a": [0, 1, 2]}


def test_no_integration_keeps_its_own_copy() -> None:
    root = Path(__file__).resolve().parents[2]
    mine = ["integrations/torch.py", "integrations/mxnet_hparams.py",
            "integrations/keras/_describe.py",
            "integrations/lightning/_setup.py", "em_core/_horovod.py", "em_core/hparams.py"]
    for rel in mine:
        text = (root / rel).read_text()
        assert "json_safe" in text, rel
        assert "def _plain(value: Any) -> Any:" not in text, rel
