"""A seed-style em training script that runs unchanged on one process or under torchrun.

    python examples/torch_ddp.py --epochs 2                          # one process
    torchrun --nproc_per_node 2 examples/torch_ddp.py --epochs 2     # DDP, gloo on CPU
    torchrun --nproc_per_node 2 examples/torch_ddp.py --device cuda  # DDP, nccl

Every em call is gated on rank 0, as a script written for the seed SDK does (em would also
hand ranks above 0 a NoOpRun by itself). One run records the job: hyperparameters including
the DDP set-up (world size, backend, bucket size, launcher), train metrics every
``--log-every`` steps (the loss averaged over ranks), val per epoch, test at the end, and the
saved state_dict as an output artifact. The data are generated, so nothing is downloaded.
"""

from __future__ import annotations

import argparse
import os
import tempfile

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, TensorDataset
from torch.utils.data.distributed import DistributedSampler

import em_core as em
from integrations.torch import torch_hparams


def make_data(n: int, seed: int) -> TensorDataset:
    """``n`` points in 4 classes around fixed centres in 20 dimensions."""
    centres = torch.randn(4, 20, generator=torch.Generator().manual_seed(0)) * 2
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 4, (n,), generator=g)
    return TensorDataset(centres[labels] + torch.randn(n, 20, generator=g), labels)


def evaluate(model: nn.Module, loader: DataLoader, device: torch.device) -> dict[str, float]:
    model.eval()
    loss, correct, n = 0.0, 0, 0
    with torch.no_grad():
        for x, y in loader:
            x, y = x.to(device), y.to(device)
            out = model(x)
            loss += nn.functional.cross_entropy(out, y, reduction="sum").item()
            correct += (out.argmax(1) == y).sum().item()
            n += len(y)
    model.train()
    return {"loss": loss / n, "accuracy": correct / n}


def main(argv: list[str] | None = None) -> None:  # noqa: C901 - an example: the whole training script in one place for the reader
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--log-every", type=int, default=5)
    p.add_argument("--device", default="cpu", help="cpu or cuda (one GPU per process)")
    p.add_argument("--name", default="torch_ddp")
    args = p.parse_args(argv)

    distributed = "WORLD_SIZE" in os.environ  # set by torchrun
    rank, world_size = 0, 1
    if distributed:
        dist.init_process_group("nccl" if args.device.startswith("cuda") else "gloo")
        rank, world_size = dist.get_rank(), dist.get_world_size()
    if args.device.startswith("cuda"):
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
    torch.manual_seed(0)

    train_data = make_data(480, 1)
    sampler = DistributedSampler(train_data, shuffle=True) if distributed else None
    train = DataLoader(train_data, batch_size=args.batch_size, sampler=sampler,
                       shuffle=sampler is None)
    val = DataLoader(make_data(160, 2), batch_size=80)
    test = DataLoader(make_data(160, 3), batch_size=80)
    model: nn.Module = nn.Sequential(nn.Linear(20, 32), nn.ReLU(), nn.Linear(32, 4)).to(device)
    if distributed:
        model = DistributedDataParallel(model, device_ids=[device] if device.type == "cuda"
                                        else None)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)

    if rank == 0:
        run = em.create_run(name=args.name, labels=["example", "torch", "ddp"])
        run.hparams.update(args)
        run.hparams.update(torch_hparams(model=model, optimizer=optimizer))
        run.hparams.parse(dist_torch_model=model)

    step = 0
    for epoch in range(1, args.epochs + 1):
        if sampler is not None:
            sampler.set_epoch(epoch)
        for x, y in train:
            x, y = x.to(device), y.to(device)
            optimizer.zero_grad()
            loss = nn.functional.cross_entropy(model(x), y)
            loss.backward()
            optimizer.step()
            step += 1
            if step % args.log_every == 0:
                mean_loss = loss.detach().clone()
                if distributed:  # every rank takes part in the reduction
                    dist.all_reduce(mean_loss)
                    mean_loss /= world_size
                if rank == 0:
                    run.log("train", {"loss": mean_loss}, step=step, epoch=epoch)
        if rank == 0:
            run.log("val", evaluate(model, val, device), step=step, epoch=epoch)
    if rank == 0:
        run.log("test", evaluate(model, test, device), step=step, epoch=args.epochs)
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "model.pt")
            plain = model.module if isinstance(model, DistributedDataParallel) else model
            torch.save(plain.state_dict(), path)
            artifact = em.create_artifact(name="ddp_model", labels=["model"])
            artifact.add_file(path, obj_path="model/")
            run.mark_output(artifact)
        run.finish()
        print(f"run recorded at {run.local}")
    if distributed:
        dist.barrier()
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
