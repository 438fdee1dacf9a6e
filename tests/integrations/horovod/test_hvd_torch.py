"""Horovod with PyTorch: ``run.hparams.parse(dist_hvd=...)`` in this process (Horovod of
size 1), and jobs of 2 ranks under ``horovodrun --gloo`` that must write one run."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import horovod.torch as hvd
import pytest
import torch

import em_core as em
from integrations.torch import describe_optimizer

REPO = Path(__file__).resolve().parents[3]
NP = 2  # ranks per job (conftest.launch)


@pytest.fixture
def hvd_init() -> Iterator[Any]:
    hvd.init()
    yield hvd
    hvd.shutdown()


@pytest.fixture
def run(em_dirs: Path) -> Iterator[Any]:
    r = em.create_run(name="hvd-unit")
    yield r
    r.finish()


def _sgd() -> tuple[torch.nn.Module, torch.optim.Optimizer]:
    model = torch.nn.Sequential(torch.nn.Linear(3, 5), torch.nn.ReLU(), torch.nn.Linear(5, 1))
    return model, torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, nesterov=True)


def test_module_gives_topology_and_build(hvd_init: Any, run: Any) -> None:
    run.hparams.parse(dist_hvd=hvd)
    got = run.hparams.as_dict()["distributed"]["horovod"]
    assert got["framework"] == "torch"
    assert got["version"] == "0.28.1"
    assert (got["size"], got["rank"], got["local_size"], got["local_rank"]) == (1, 0, 1, 0)
    assert (got["cross_size"], got["cross_rank"]) == (1, 0)
    # Built by the nox session with Gloo only, for CPU.
    assert got["controllers_built"] == {"mpi": False, "gloo": True}
    assert got["collectives_built"] == {"nccl": False, "ddl": False, "ccl": False,
                                        "mpi": False, "gloo": True}
    assert got["gpu_built"] == {"cuda": False, "rocm": False}
    assert got["controller"] == "gloo"
    assert "wrapper" not in got
    # What agrees with Horovod's own answers, whatever the build.
    assert got["controllers_built"]["gloo"] is hvd.gloo_built()
    assert got["collectives_built"]["nccl"] is bool(hvd.nccl_built())


def test_distributed_optimizer_settings_and_wrapped_hparams(hvd_init: Any, run: Any) -> None:
    model, sgd = _sgd()
    opt = hvd.DistributedOptimizer(sgd, named_parameters=model.named_parameters(),
                                   compression=hvd.Compression.fp16, op=hvd.Sum,
                                   backward_passes_per_step=3)
    run.hparams.parse(dist_hvd=opt)
    got = run.hparams.as_dict()["distributed"]["horovod"]
    assert got["size"] == 1 and got["framework"] == "torch"
    wrapper = got["wrapper"]
    assert wrapper["kind"] == "DistributedOptimizer"
    assert wrapper["compression"] == "fp16"
    assert wrapper["op"] == "Sum"
    assert wrapper["backward_passes_per_step"] == 3
    assert wrapper["gradient_predivide_factor"] == 1.0
    assert wrapper["sparse_as_dense"] is False
    assert wrapper["process_set"] == "global"
    assert wrapper["groups"] is None
    inner = wrapper["optimizer"]
    assert inner["class"] == "SGD"
    assert (inner["lr"], inner["momentum"], inner["nesterov"]) == (0.05, 0.9, True)
    assert inner["num_tensors"] == 4 and inner["num_elements"] == 3 * 5 + 5 + 5 + 1
    # The same description the PyTorch integration gives of the optimizer.
    assert inner == describe_optimizer(opt)
    assert run.hparams.get("distributed.horovod.wrapper.optimizer.lr") == 0.05


@pytest.mark.parametrize("op_name", ["Average", "Adasum"])
def test_reduction_op_and_predivide(hvd_init: Any, run: Any, op_name: str) -> None:
    model, sgd = _sgd()
    kwargs: dict[str, Any] = {"gradient_predivide_factor": 4.0} if op_name == "Average" else {}
    opt = hvd.DistributedOptimizer(sgd, named_parameters=model.named_parameters(),
                                   op=getattr(hvd, op_name), **kwargs)
    run.hparams.parse(dist_hvd=opt)
    wrapper = run.hparams.get("distributed.horovod.wrapper")
    assert wrapper["op"] == op_name
    assert wrapper["compression"] == "none"
    assert wrapper["gradient_predivide_factor"] == (4.0 if op_name == "Average" else 1.0)


def test_two_param_groups_are_listed(hvd_init: Any, run: Any) -> None:
    model, _ = _sgd()
    sgd = torch.optim.SGD([{"params": model[0].parameters(), "lr": 0.1},
                           {"params": model[2].parameters()}], lr=0.01, momentum=0.5)
    opt = hvd.DistributedOptimizer(sgd, named_parameters=model.named_parameters())
    run.hparams.parse(dist_hvd=opt)
    inner = run.hparams.get("distributed.horovod.wrapper.optimizer")
    assert inner["momentum"] == 0.5
    assert [g["lr"] for g in inner["param_groups"]] == [0.1, 0.01]


def test_before_init_is_a_value_error_naming_the_module(run: Any) -> None:
    assert not hvd.is_initialized()
    with pytest.raises(ValueError, match=r"horovod\.torch.*not initialized.*hvd\.init\(\)"):
        run.hparams.parse(dist_hvd=hvd)
    assert "distributed" not in run.hparams


@pytest.mark.parametrize("bad, named", [
    (torch.distributed, "module torch.distributed"),
    (3, "builtins.int"),
    ("horovod.torch", "builtins.str"),
])
def test_not_horovod_is_a_type_error_naming_it(run: Any, bad: Any, named: str) -> None:
    with pytest.raises(TypeError, match=named):
        run.hparams.parse(dist_hvd=bad)


def test_unwrapped_optimizer_is_a_type_error_with_a_hint(hvd_init: Any, run: Any) -> None:
    _, sgd = _sgd()
    with pytest.raises(TypeError, match=r"torch\.optim\.sgd\.SGD.*not wrapped by "
                                        r"hvd\.DistributedOptimizer"):
        run.hparams.parse(dist_hvd=sgd)


def test_import_of_em_core_does_not_import_horovod() -> None:
    code = ("import sys, em_core; from em_core import _horovod; "
            "sys.exit(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('horovod', 'torch', 'tensorflow')) or 0)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=False)
    assert proc.returncode == 0, proc.stderr


def test_horovodrun_job_writes_one_run_from_rank_0(tmp_path: Path, launch: Any,
                                                   the_run: Any) -> None:
    out = tmp_path / "ranks"
    out.mkdir()
    launch(Path(__file__).parent / "job_torch.py", str(out), cwd=tmp_path)
    run = the_run(tmp_path)
    ranks = [json.loads((out / f"rank{k}.json").read_text()) for k in range(NP)]
    assert [r["noop"] for r in ranks] == [False] + [True] * (NP - 1)
    assert ranks[0]["run_dir"] == run.local

    got = run.hparams.as_dict()["distributed"]
    assert got["env"]["launcher"] == "horovod" and got["env"]["world_size"] == NP
    hv = got["horovod"]
    assert (hv["framework"], hv["size"], hv["rank"], hv["local_size"]) == ("torch", NP, 0, NP)
    assert hv["controller"] == "gloo"
    assert hv["wrapper"]["compression"] == "fp16" and hv["wrapper"]["op"] == "Average"
    assert hv["wrapper"]["gradient_predivide_factor"] == 2.0
    assert hv["wrapper"]["optimizer"]["lr"] == pytest.approx(0.05 * NP)

    # Every step once (not once per rank), valued at the mean of the ranks' local losses.
    train = run.metrics["train"]
    steps = run.hparams["steps"]
    assert [p["sequence"]["step"] for p in train] == list(range(1, steps + 1))
    means = [sum(r["local"][i] for r in ranks) / NP for i in range(steps)]
    assert [p["value"]["loss"] for p in train] == pytest.approx(means, rel=1e-5)
    assert ranks[0]["local"] != ranks[1]["local"]  # the mean is not one rank's value
    assert run.status is em.Status.COMPLETE


def test_example_horovod_torch(tmp_path: Path, launch: Any, the_run: Any) -> None:
    epochs = 2
    launch(REPO / "examples" / "horovod_torch.py", "--epochs", str(epochs), "--name",
           "hvd-example", cwd=tmp_path)
    run = the_run(tmp_path)
    assert run.name == "hvd-example" and run.status is em.Status.COMPLETE
    assert run.hparams.get("distributed.horovod.size") == NP
    assert run.hparams.get("distributed.horovod.wrapper.op") == "Average"
    assert run.hparams.get("optimizer.class") == "SGD"
    assert [p["sequence"]["epoch"] for p in run.metrics["val"]] == list(range(1, epochs + 1))
    train = run.metrics["train"]
    assert train[-1]["value"]["loss"] < train[0]["value"]["loss"]
    assert set(run.metrics["test"][0]["value"]) == {"loss", "accuracy"}
