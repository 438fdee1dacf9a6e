"""run.hparams: access, nesting, ingestion, sanitising, persistence, parse()."""

from __future__ import annotations

import argparse
import copy
import dataclasses
import enum
import json
import math
import os
import pickle
import subprocess
import sys
import textwrap
import warnings
from collections import namedtuple
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from omegaconf import OmegaConf

import em_core as em
from em_core import hparams as hparams_module
from em_core.hparams import Hyperparameters

pytestmark = pytest.mark.usefixtures("fast_platform")
REPO = Path(__file__).resolve().parents[2]


def on_disk(run: em.Run) -> dict[str, Any]:
    """The hyperparameters as saved in run.json."""
    meta = json.loads(Path(run.local, "run.json").read_text(encoding="utf-8"))
    hp: dict[str, Any] = meta["hparams"]
    return hp


# --------------------------------------------------------------------------- access


def test_item_and_attribute_access(run: em.Run) -> None:
    run.hparams["lr"] = 0.1
    run.hparams.batch = 32
    assert run.hparams.lr == 0.1
    assert run.hparams["batch"] == 32
    assert "lr" in run.hparams and "nope" not in run.hparams
    assert len(run.hparams) == 2
    assert sorted(run.hparams) == ["batch", "lr"]
    assert dict(run.hparams.items()) == {"lr": 0.1, "batch": 32}
    assert on_disk(run) == {"lr": 0.1, "batch": 32}
    del run.hparams["lr"]
    del run.hparams.batch
    assert on_disk(run) == {}
    with pytest.raises(AttributeError, match="'missing'"):
        _ = run.hparams.missing
    with pytest.raises(KeyError, match="'missing'"):
        _ = run.hparams["missing"]


def test_nested_section_views_persist(run: em.Run) -> None:
    run.hparams["optim"] = {"lr": 0.1, "sched": {"gamma": 0.5}}
    run.hparams["optim"]["lr"] = 0.2
    run.hparams.optim.sched.gamma = 0.9
    run.hparams["optim"]["sched"]["warmup"] = 100
    assert on_disk(run) == {"optim": {"lr": 0.2, "sched": {"gamma": 0.9, "warmup": 100}}}
    assert run.hparams["optim.sched.gamma"] == 0.9
    assert run.hparams.optim == {"lr": 0.2, "sched": {"gamma": 0.9, "warmup": 100}}
    del run.hparams["optim"]["sched"]
    assert on_disk(run) == {"optim": {"lr": 0.2}}


def test_dotted_get(run: em.Run) -> None:
    run.hparams.update({"optim": {"lr": 0.1, "betas": [0.9, 0.99]}, "a.b": 1})
    assert run.hparams.get("optim.lr") == 0.1
    assert run.hparams.get("optim.betas") == [0.9, 0.99]
    assert run.hparams.get("a.b") == 1  # a key with a dot in it is found first
    assert run.hparams.get("optim.wd") is None
    assert run.hparams.get("optim.wd", 5e-4) == 5e-4
    assert run.hparams.get("nothing.here", "d") == "d"
    with pytest.raises(KeyError, match="'optim.wd'"):
        _ = run.hparams["optim.wd"]
    with pytest.raises(KeyError, match="'optim.lr.x'"):
        _ = run.hparams["optim.lr.x"]


def test_update_override_and_keep(run: em.Run) -> None:
    run.hparams.update({"lr": 0.1, "optim": {"name": "sgd", "momentum": 0.9}})
    run.hparams.update({"lr": 0.5, "bs": 64, "optim": {"momentum": 0.0, "nesterov": True}},
                       override=False)
    assert on_disk(run) == {"lr": 0.1, "bs": 64,
                            "optim": {"name": "sgd", "momentum": 0.9, "nesterov": True}}
    run.hparams.update({"lr": 0.5, "optim": {"momentum": 0.0}})
    assert on_disk(run) == {"lr": 0.5, "bs": 64,
                            "optim": {"name": "sgd", "momentum": 0.0, "nesterov": True}}
    run.hparams.update(seed=7)
    assert run.hparams.seed == 7 and on_disk(run)["seed"] == 7


def test_as_dict_is_a_deep_copy(run: em.Run) -> None:
    run.hparams["optim"] = {"lr": 0.1, "layers": [1, 2]}
    d = run.hparams.as_dict()
    d["optim"]["lr"] = 99
    d["optim"]["layers"].append(3)
    assert run.hparams.as_dict() == {"optim": {"lr": 0.1, "layers": [1, 2]}}
    assert type(d["optim"]) is dict


def test_callers_objects_are_copied_not_kept(run: em.Run) -> None:
    given = {"optim": {"lr": 0.1}, "layers": [1, 2]}
    run.hparams.update(given)
    given["optim"]["lr"] = 5.0
    given["layers"].append(3)  # type: ignore[attr-defined]
    assert run.hparams.as_dict() == {"optim": {"lr": 0.1}, "layers": [1, 2]}
    assert given == {"optim": {"lr": 5.0}, "layers": [1, 2, 3]}  # and never changed by em


def test_hparams_from_create_run_argument_not_aliased() -> None:
    given = {"lr": 0.1}
    run = em.create_run(hparams=given)
    run.hparams["lr"] = 0.2
    run.finish()
    assert given == {"lr": 0.1}


# --------------------------------------------------------------------------- ingestion


def test_argparse_namespace(run: em.Run) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--layers", type=int, nargs="+", default=[64, 64])
    parser.add_argument("--name")
    run.hparams.update(parser.parse_args(["--lr", "0.3"]))
    assert on_disk(run) == {"lr": 0.3, "layers": [64, 64], "name": None}


@dataclasses.dataclass
class _Optim:
    lr: float = 0.1
    betas: tuple[float, float] = (0.9, 0.999)


@dataclasses.dataclass
class _Config:
    epochs: int = 3
    optim: _Optim = dataclasses.field(default_factory=_Optim)
    path: Path = Path("/data/x")


class _Color(enum.Enum):
    RED = "red"


def test_dataclass_nested(run: em.Run) -> None:
    run.hparams.update(_Config())
    assert on_disk(run) == {"epochs": 3, "optim": {"lr": 0.1, "betas": [0.9, 0.999]},
                            "path": "/data/x"}
    with pytest.raises(TypeError, match="_Config"):
        run.hparams.update(_Config)  # the class, not an instance


def test_namedtuple(run: em.Run) -> None:
    point = namedtuple("point", ["x", "y"])
    run.hparams.update(point(1, 2))
    assert on_disk(run) == {"x": 1, "y": 2}


def test_omegaconf_interpolation_resolved(run: em.Run) -> None:
    cfg = OmegaConf.create({"model": {"width": 64, "hidden": "${model.width}"},
                            "lr": 0.1, "tags": ["a", "${model.width}"],
                            "name": "w${model.width}"})
    run.hparams.update(cfg)
    assert on_disk(run) == {"model": {"width": 64, "hidden": 64}, "lr": 0.1,
                            "tags": ["a", 64], "name": "w64"}


def test_omegaconf_nested_in_dict_and_listconfig(run: em.Run) -> None:
    run.hparams["cfg"] = OmegaConf.create({"a": 1, "b": "${a}"})
    run.hparams["lst"] = OmegaConf.create([1, {"c": 2}])
    assert on_disk(run) == {"cfg": {"a": 1, "b": 1}, "lst": [1, {"c": 2}]}


def test_omegaconf_hparams_in_create_run() -> None:
    run = em.create_run(hparams=OmegaConf.create({"x": 2, "y": "${x}"}))
    run.finish()
    assert em.load_run(run.local).hparams.as_dict() == {"x": 2, "y": 2}


def test_values_made_json_compatible(run: em.Run) -> None:
    run.hparams.update({
        "f": np.float32(0.5), "i": np.int64(3), "b": np.bool_(True), "arr1": np.array([2]),
        "arr": np.array([[1, 2], [3, 4]]), "t": (1, (2, 3)), "s": {3, 1, 2},
        "p": Path("/tmp/x"), "e": _Color.RED, "none": None, "nan": float("nan"),
        "inf": -math.inf,
    })
    d = on_disk(run)
    nan = d.pop("nan")
    assert math.isnan(nan)
    assert d == {"f": 0.5, "i": 3, "b": True, "arr1": 2, "arr": [[1, 2], [3, 4]],
                 "t": [1, [2, 3]], "s": [1, 2, 3], "p": "/tmp/x", "e": "red", "none": None,
                 "inf": -math.inf}
    assert type(d["f"]) is float and type(d["i"]) is int and type(d["b"]) is bool


def test_unknown_object_stored_as_repr_with_one_warning(run: em.Run, lenient: None) -> None:
    class Opaque:
        def __repr__(self) -> str:
            return "<Opaque thing>"

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run.hparams["obj"] = Opaque()
        run.hparams["again"] = Opaque()
        run.hparams.update({"nested": {"x": Opaque()}})
    assert on_disk(run) == {"obj": "<Opaque thing>", "again": "<Opaque thing>",
                            "nested": {"x": "<Opaque thing>"}}
    em_warnings = [w for w in caught if issubclass(w.category, em.EmWarning)]
    assert len(em_warnings) == 1
    assert "'obj'" in str(em_warnings[0].message) and "Opaque" in str(em_warnings[0].message)


def test_unknown_object_warns_under_the_default_filters(run: em.Run,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hparams_module, "_warned_types", set())

    class Opaque2:
        pass

    with pytest.warns(em.EmWarning, match="Opaque2"):
        run.hparams["o"] = Opaque2()


@pytest.mark.parametrize("bad", [{1: "a"}, {"ok": {2.5: "b"}}, {("t",): 1}])
def test_non_string_keys_rejected(run: em.Run, bad: dict[Any, Any]) -> None:
    run.hparams["kept"] = 1
    with pytest.raises(TypeError, match="keys must be strings"):
        run.hparams.update(bad)
    assert on_disk(run) == {"kept": 1}


@pytest.mark.parametrize("bad", [1, "", None])
def test_bad_set_key(run: em.Run, bad: Any) -> None:
    with pytest.raises(TypeError, match=repr(bad)):
        run.hparams[bad] = 1


@pytest.mark.parametrize("bad", [[1, 2], "lr=0.1", 3])
def test_update_with_non_mapping(run: em.Run, bad: Any) -> None:
    with pytest.raises(TypeError, match="expected a dict"):
        run.hparams.update(bad)


# --------------------------------------------------------------------------- persistence


def test_every_change_persisted_and_survives_load(run: em.Run) -> None:
    run.hparams["a"] = 1
    assert on_disk(run) == {"a": 1}
    run.hparams.update({"b": {"c": 2}})
    assert on_disk(run) == {"a": 1, "b": {"c": 2}}
    run.hparams.b.c = 3
    assert on_disk(run) == {"a": 1, "b": {"c": 3}}
    run.hparams.setdefault("d", 4)
    assert on_disk(run)["d"] == 4
    run.hparams.pop("a")
    assert "a" not in on_disk(run)
    run.finish()
    back = em.load_run(run.local)
    assert back.hparams.as_dict() == {"b": {"c": 3}, "d": 4}
    assert back.hparams.b.c == 3


def test_copy_deepcopy_and_pickle_give_detached_copies(run: em.Run) -> None:
    run.hparams.update({"lr": 0.1, "optim": {"betas": [0.9, 0.99]}})
    for dup in (copy.copy(run.hparams), copy.deepcopy(run.hparams),
                pickle.loads(pickle.dumps(run.hparams)), copy.deepcopy(run.hparams.optim)):
        assert isinstance(dup, Hyperparameters)
        dup["lr"] = 5.0  # changes the copy only
    assert on_disk(run) == {"lr": 0.1, "optim": {"betas": [0.9, 0.99]}}
    assert copy.deepcopy(run.hparams) == {"lr": 0.1, "optim": {"betas": [0.9, 0.99]}}


def test_standalone_hyperparameters() -> None:
    hp = Hyperparameters({"optim": {"lr": 0.1}})
    assert hp.get("optim.lr") == 0.1 and hp.optim.lr == 0.1
    hp.update({"optim": {"lr": 0.5, "momentum": 0.9}}, override=False)
    assert hp.as_dict() == {"optim": {"lr": 0.1, "momentum": 0.9}}
    assert hp == {"optim": {"lr": 0.1, "momentum": 0.9}}


# --------------------------------------------------------------------------- parse()


def test_parse_without_objects_records_environment(run: em.Run) -> None:
    run.hparams.parse()
    assert on_disk(run)["distributed"] == {
        "env": {"rank": 0, "world_size": 1, "local_rank": None, "launcher": None}}


def test_parse_reads_launcher_environment(run: em.Run, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("LOCAL_RANK", "0")
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "abc")
    run.hparams.parse()
    assert on_disk(run)["distributed"]["env"] == {"rank": 0, "world_size": 4,
                                                  "local_rank": 0, "launcher": "torchrun"}


def test_parse_non_distributed_model(run: em.Run) -> None:
    class Net:
        pass

    run.hparams.parse(dist_torch_model=Net())
    assert on_disk(run)["distributed"]["torch"] == {"kind": "not distributed", "model": "Net"}


def test_parse_duck_typed_strategy(run: em.Run) -> None:
    class MirroredStrategy:  # read by duck typing: TensorFlow is not imported
        num_replicas_in_sync = 2

    run.hparams.parse(dist_tf_strategy=MirroredStrategy())
    d = on_disk(run)["distributed"]
    assert d["tf"] == {"kind": "MirroredStrategy", "class": "MirroredStrategy", "replicas": 2}
    assert d["env"]["rank"] == 0


# --------------------------------------------------------------------------- imports


def test_import_em_core_imports_no_framework_and_changes_nothing(tmp_path: Path) -> None:
    code = textwrap.dedent("""
        import signal, sys
        import em_core as em
        heavy = ('numpy', 'torch', 'tensorflow', 'jax', 'mxnet', 'omegaconf', 'pandas')
        print('import', sorted(m for m in heavy if m in sys.modules))
        # no side effects at import: hooks are installed by the first create_run
        print('hooks', sys.excepthook is sys.__excepthook__,
              signal.getsignal(signal.SIGTERM) is signal.SIG_DFL)
        run = em.create_run(name='light', hparams={'lr': 0.1})
        run.hparams.update({'a': {'b': 1}})
        run.hparams.parse()
        run.log('train', {'loss': 0.5}, step=0)
        run.finish()
        print('use', sorted(m for m in heavy if m in sys.modules))
        """)
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env["EM_RUN_PARENT_DIR"] = str(tmp_path / "runs")
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                          text=True, timeout=60, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["import []", "hooks True True", "use []"]
