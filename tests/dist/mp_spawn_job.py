"""A plain DDP job started with torch.multiprocessing.spawn (gloo, CPU) that calls em on
EVERY rank, without gating and without setting RANK: em must still record one run.
Run by tests/dist/test_torch_ddp.py as ``python mp_spawn_job.py <port>``."""

from __future__ import annotations

import os
import sys

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

import em_core as em

WORLD_SIZE, STEPS = 2, 4


def worker(rank: int, port: str) -> None:
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                            world_size=WORLD_SIZE)
    torch.manual_seed(rank)
    model = nn.parallel.DistributedDataParallel(nn.Linear(4, 2))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    run = em.create_run(name="mp_spawn")
    run.hparams.update({"lr": 0.1, "world_size": WORLD_SIZE})
    run.hparams.parse(dist_torch_model=model)
    for step in range(1, STEPS + 1):
        opt.zero_grad()
        loss = model(torch.randn(8, 4)).pow(2).mean()
        loss.backward()
        opt.step()
        run.log("train", {"loss": loss.detach()}, step=step)
    run.finish()
    # both ranks reach the teardown together: gloo can abort a rank ('terminate called
    # without an active exception', SIGABRT) that destroys its group while the other
    # rank is still in finish() (rank 0 writes the run, rank 1 has nothing to do)
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    mp.spawn(worker, args=(sys.argv[1],), nprocs=WORLD_SIZE, join=True)
