"""Horovod with PyTorch: one em run records the whole job, from rank 0.

    horovodrun -np 2 -H localhost:2 --gloo python examples/horovod_torch.py --epochs 2
    python examples/horovod_torch.py                 # one process works too (size 1)

Every rank runs the same code and calls em the same way: ``em.create_run`` returns the real
run on rank 0 and an ``em.NoOpRun`` (which writes nothing) on the others, so there is no
``if hvd.rank() == 0`` around em calls. Recorded: the arguments, the optimizer's settings
(through ``integrations.torch``), the Horovod job and its ``DistributedOptimizer`` settings
(``run.hparams.parse(dist_hvd=optimizer)``), the training loss averaged over ranks every
``--log-every`` steps, validation metrics per epoch (each rank evaluates its shard, then
the sums are reduced) and the test metrics at the end. The data are generated: nothing is
downloaded.
"""

from __future__ import annotations

import argparse

import horovod.torch as hvd
import torch
from torch import nn
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


def evaluate(model: nn.Module, loader: DataLoader) -> dict[str, torch.Tensor]:
    """Loss and accuracy over every rank's shard (all ranks must call it)."""
    model.eval()
    totals = torch.zeros(3)  # loss sum, correct, count
    with torch.no_grad():
        for x, y in loader:
            out = model(x)
            totals += torch.tensor([nn.functional.cross_entropy(out, y, reduction="sum").item(),
                                    (out.argmax(1) == y).sum().item(), len(y)])
    model.train()
    totals = hvd.allreduce(totals, op=hvd.Sum, name="eval_totals")
    return {"loss": totals[0] / totals[2], "accuracy": totals[1] / totals[2]}


def sharded(data: TensorDataset, batch_size: int, *, shuffle: bool) -> DataLoader:
    sampler = DistributedSampler(data, num_replicas=hvd.size(), rank=hvd.rank(),
                                 shuffle=shuffle)
    return DataLoader(data, batch_size=batch_size, sampler=sampler)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--lr", type=float, default=0.02, help="per rank; scaled by the size")
    p.add_argument("--log-every", type=int, default=5)
    p.add_argument("--name", default="horovod_torch")
    args = p.parse_args(argv)

    hvd.init()
    torch.manual_seed(0)
    torch.set_num_threads(1)  # ranks share the machine's cores

    train = sharded(make_data(480, 1), args.batch_size, shuffle=True)
    val = sharded(make_data(160, 2), 80, shuffle=False)
    test = sharded(make_data(160, 3), 80, shuffle=False)
    model = nn.Sequential(nn.Linear(20, 32), nn.ReLU(), nn.Linear(32, 4))
    # Horovod's usual recipe: scale the learning rate by the number of ranks.
    optimizer = torch.optim.SGD(model.parameters(), lr=args.lr * hvd.size(), momentum=0.9)
    optimizer = hvd.DistributedOptimizer(optimizer, named_parameters=model.named_parameters(),
                                         op=hvd.Average)
    hvd.broadcast_parameters(model.state_dict(), root_rank=0)
    hvd.broadcast_optimizer_state(optimizer, root_rank=0)

    run = em.create_run(name=args.name, labels=["example", "torch", "horovod"])
    run.hparams.update(args)
    run.hparams.update(torch_hparams(model=model, optimizer=optimizer))
    run.hparams.parse(dist_hvd=optimizer)

    step = 0
    for epoch in range(1, args.epochs + 1):
        train.sampler.set_epoch(epoch)  # type: ignore[attr-defined]
        for x, y in train:
            optimizer.zero_grad()
            loss = nn.functional.cross_entropy(model(x), y)
            loss.backward()
            optimizer.step()
            step += 1
            if step % args.log_every == 0:
                # Every rank takes part in the reduction; only rank 0's run records it.
                mean_loss = hvd.allreduce(loss.detach(), name="train_loss")
                run.log("train", {"loss": mean_loss}, step=step, epoch=epoch)
        run.log("val", evaluate(model, val), step=step, epoch=epoch)
    run.log("test", evaluate(model, test), step=step, epoch=args.epochs)
    run.finish()
    if hvd.rank() == 0:
        print(f"run recorded at {run.local}")


if __name__ == "__main__":
    main()
