"""A Horovod PyTorch training loop for test_hvd_torch.py (run under horovodrun -np 2).

Every rank calls em exactly as rank 0 does; em hands ranks above 0 a NoOpRun. Each rank also
writes what it saw (its local losses, whether its run records) to ``<out>/rank<k>.json`` so
the test can check that rank 0 logged the average over ranks.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import horovod.torch as hvd
import torch

import em_core as em

STEPS = 4


def main(out: Path) -> None:
    hvd.init()
    torch.manual_seed(0)
    run = em.create_run(name="hvd-torch", hparams={"steps": STEPS})
    model = torch.nn.Linear(4, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.05 * hvd.size(), momentum=0.9)
    opt = hvd.DistributedOptimizer(opt, named_parameters=model.named_parameters(),
                                   compression=hvd.Compression.fp16, op=hvd.Average,
                                   gradient_predivide_factor=2.0)
    hvd.broadcast_parameters(model.state_dict(), root_rank=0)
    hvd.broadcast_optimizer_state(opt, root_rank=0)
    run.hparams.parse(dist_hvd=opt)

    g = torch.Generator().manual_seed(100 + hvd.rank())  # each rank its own shard
    x = torch.randn(32, 4, generator=g)
    y = x.sum(dim=1, keepdim=True) + 0.1 * torch.randn(32, 1, generator=g)
    local = []
    for step in range(1, STEPS + 1):
        opt.zero_grad()
        loss = torch.nn.functional.mse_loss(model(x), y)
        loss.backward()
        opt.step()
        local.append(loss.item())
        run.log("train", {"loss": hvd.allreduce(loss.detach(), name="loss")}, step=step)
    run.finish()
    (out / f"rank{hvd.rank()}.json").write_text(json.dumps(
        {"local": local, "noop": isinstance(run, em.NoOpRun), "run_dir": run.local}))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
