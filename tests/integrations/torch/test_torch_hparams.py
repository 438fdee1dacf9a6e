"""integrations.torch: optimizer, scheduler, parameter and DDP descriptions, read back from a
run on disk."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.distributed as dist
from torch import nn
from torch.optim import lr_scheduler as sched

import em_core as em
from integrations.torch import (
    count_parameters,
    describe_optimizer,
    describe_scheduler,
    describe_torch_model,
    torch_hparams,
)


def _model() -> nn.Module:
    return nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))  # 15 + 8 elements


def test_sgd_single_group_settings_at_top_level() -> None:
    opt = torch.optim.SGD(_model().parameters(), lr=0.1, momentum=0.9, nesterov=True,
                          weight_decay=1e-4)
    d = describe_optimizer(opt)
    assert d["class"] == "SGD"
    assert (d["lr"], d["momentum"], d["nesterov"], d["weight_decay"]) == (0.1, 0.9, True, 1e-4)
    assert (d["num_tensors"], d["num_elements"]) == (4, 23)
    assert "param_groups" not in d


def test_adam_groups_split_common_and_differing_settings() -> None:
    m = _model()
    opt = torch.optim.Adam([{"params": m[0].parameters(), "lr": 1e-3},
                            {"params": m[2].parameters(), "lr": torch.tensor(1e-2)}],
                           betas=(0.8, 0.99), eps=1e-7, amsgrad=True)
    d = describe_optimizer(opt)
    assert d["betas"] == [0.8, 0.99] and d["eps"] == 1e-7 and d["amsgrad"] is True
    assert "lr" not in d  # it differs per group
    assert [g["lr"] for g in d["param_groups"]] == [1e-3, pytest.approx(1e-2)]
    assert [g["num_elements"] for g in d["param_groups"]] == [15, 8]
    assert d["num_elements"] == 23


def test_describe_optimizer_rejects_other_objects() -> None:
    with pytest.raises(TypeError, match="torch.optim.Optimizer"):
        describe_optimizer(_model())


@pytest.fixture
def opt() -> torch.optim.Optimizer:
    return torch.optim.SGD(_model().parameters(), lr=0.1)


def test_scheduler_arguments_without_progress(opt: torch.optim.Optimizer) -> None:
    s = sched.StepLR(opt, step_size=3, gamma=0.5)
    opt.step()
    s.step()
    d = describe_scheduler(s)
    assert d == {"class": "StepLR", "step_size": 3, "gamma": 0.5, "base_lrs": [0.1]}


def test_plateau_multistep_lambda(opt: torch.optim.Optimizer) -> None:
    p = describe_scheduler(sched.ReduceLROnPlateau(opt, mode="max", factor=0.2, patience=3))
    assert (p["mode"], p["factor"], p["patience"]) == ("max", 0.2, 3)
    assert "best" not in p and "num_bad_epochs" not in p
    assert describe_scheduler(sched.MultiStepLR(opt, [4, 2]))["milestones"] == [2, 4]

    def warmup(epoch: int) -> float:
        return min(1.0, (epoch + 1) / 5)

    assert describe_scheduler(sched.LambdaLR(opt, warmup))["lr_lambdas"] == [warmup.__name__]


def test_sequential_and_one_cycle(opt: torch.optim.Optimizer) -> None:
    seq = sched.SequentialLR(opt, [sched.LinearLR(opt, start_factor=0.1, total_iters=2),
                                   sched.ExponentialLR(opt, gamma=0.9)], milestones=[2])
    d = describe_scheduler(seq)
    assert [s["class"] for s in d["schedulers"]] == ["LinearLR", "ExponentialLR"]
    assert d["milestones"] == [2] and d["schedulers"][1]["gamma"] == 0.9
    one = describe_scheduler(sched.OneCycleLR(opt, max_lr=1.0, total_steps=10,
                                              anneal_strategy="linear"))
    assert one["total_steps"] == 10 and one["anneal_strategy"] == "linear"
    with pytest.raises(TypeError):
        describe_scheduler(None)


def test_count_parameters_frozen_and_shared() -> None:
    m = _model()
    m[0].requires_grad_(False)
    shared = nn.ModuleList([m, m[2]])  # m[2] reachable twice: counted once
    assert count_parameters(shared) == {"total": 23, "trainable": 8, "non_trainable": 15}
    with pytest.raises(TypeError):
        count_parameters("model")  # type: ignore[arg-type]


def test_unwrapped_and_data_parallel_models() -> None:
    assert describe_torch_model(_model()) == {"kind": "not distributed", "model": "Sequential"}
    d = describe_torch_model(nn.DataParallel(_model()))  # no GPU: wraps without devices
    assert d["kind"] == "DataParallel" and d["model"] == "Sequential" and d["replicas"] >= 1


def test_single_process_ddp_recorded_through_a_run(tmp_path: Path) -> None:
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0,
                            world_size=1)
    try:
        ddp = nn.parallel.DistributedDataParallel(_model(), bucket_cap_mb=4,
                                                  find_unused_parameters=True)
        d = describe_torch_model(ddp)
        opt = torch.optim.SGD(ddp.parameters(), lr=0.1)
        with em.create_run(name="ddp1") as run:
            run.hparams.update(torch_hparams(model=ddp, optimizer=opt))
            run.hparams.parse(dist_torch_model=ddp)
    finally:
        dist.destroy_process_group()
    assert (d["kind"], d["world_size"], d["rank"], d["backend"]) == (
        "DistributedDataParallel", 1, 0, "gloo")
    assert d["bucket_cap_mb"] == 4 and d["find_unused_parameters"] is True
    back = em.load_run(run.local)
    assert back.hparams.get("model.parameters.total") == 23
    assert back.hparams.get("distributed.torch.kind") == "DistributedDataParallel"
    assert back.hparams.get("optimizer.lr") == 0.1


def test_parse_unwrapped_model_records_not_distributed() -> None:
    with em.create_run(name="plain") as run:
        run.hparams.parse(dist_torch_model=_model())
    assert em.load_run(run.local).hparams.get("distributed.torch.kind") == "not distributed"


def test_zero_dim_tensor_metrics_read_back_as_floats() -> None:
    torch.manual_seed(0)
    m = _model()
    opt = torch.optim.SGD(m.parameters(), lr=0.1)
    x, y = torch.randn(32, 4), torch.randint(0, 2, (32,))
    with em.create_run(name="loop") as run:
        for step in range(1, 6):
            opt.zero_grad()
            loss = nn.functional.cross_entropy(m(x), y)
            loss.backward()
            opt.step()
            run.log("train", {"loss": loss.detach(), "count": torch.tensor(step)}, step=step)
    points = em.load_run(run.local).metrics["train"]
    assert [p["sequence"]["step"] for p in points] == [1, 2, 3, 4, 5]
    assert all(isinstance(p["value"]["loss"], float) for p in points)
    assert [p["value"]["count"] for p in points] == [1, 2, 3, 4, 5]
    assert points[-1]["value"]["loss"] < points[0]["value"]["loss"]
    with em.create_run(name="bad") as run, pytest.raises(ValueError, match="shape"):
        run.log("train", {"vec": torch.ones(3)}, step=0)  # EM_STRICT=1: raises
