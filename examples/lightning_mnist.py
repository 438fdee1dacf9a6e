"""Lightning on MNIST-shaped generated data, recorded by EMLogger; also with DDP.

    python examples/lightning_mnist.py --epochs 2
    python examples/lightning_mnist.py --strategy ddp --devices 2        # CPU, gloo
    python examples/lightning_mnist.py --strategy ddp_spawn --devices 2
    python examples/lightning_mnist.py --device cuda                     # one GPU
    python examples/lightning_mnist.py --flavour pytorch_lightning       # the other package

One em run records the job, whatever the strategy: the module's hyperparameters, the
Trainer set-up (optimizer, scheduler, precision, strategy and world size), train metrics
every ``--log-every`` steps, val per epoch, and with ``--test`` the test metrics; the best
checkpoint becomes an output artifact. Nothing is downloaded.
"""

from __future__ import annotations

import argparse
import atexit
import importlib
import sys

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, TensorDataset


def make_data(n: int, seed: int) -> TensorDataset:
    """``n`` 1x28x28 images in 10 classes: a per-class pattern plus noise."""
    patterns = torch.randn(10, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 10, (n,), generator=g)
    return TensorDataset(patterns[labels] + 0.8 * torch.randn(n, 1, 28, 28, generator=g), labels)


def _flavour(argv: list[str]) -> str:
    # Chosen before the classes below are defined: ddp_spawn workers re-import this module
    # (same argv) and must find the same LightningModule class by name to unpickle it.
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--flavour", default="lightning", choices=["lightning", "pytorch_lightning"])
    return p.parse_known_args(argv)[0].flavour


if _flavour(sys.argv[1:]) == "lightning":
    import lightning.pytorch as pl

    from integrations.lightning.pytorch import EMLogger
else:
    pl = importlib.import_module("pytorch_lightning")
    from integrations.lightning.pytorch_lightning import EMLogger  # type: ignore[assignment]


def _destroy_process_group() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


class LitCNN(pl.LightningModule):  # type: ignore[name-defined, misc]
    def __init__(self, lr: float = 0.05, channels: int = 8) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.net = nn.Sequential(nn.Conv2d(1, channels, 3, padding=1), nn.ReLU(),
                                 nn.MaxPool2d(4), nn.Flatten(), nn.Linear(channels * 7 * 7, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def setup(self, stage: str) -> None:
        # Lightning destroys only NCCL process groups at exit. A gloo one left to interpreter
        # shutdown can abort the worker ("terminate called without an active exception",
        # SIGABRT: pytorch/pytorch#179291), as a ddp_spawn worker once did here on CPU.
        if dist.is_available() and dist.is_initialized():
            atexit.unregister(_destroy_process_group)  # setup runs per stage: one is enough
            atexit.register(_destroy_process_group)

    def _shared(self, batch: tuple[torch.Tensor, torch.Tensor], stage: str) -> torch.Tensor:
        x, y = batch
        out = self(x)
        loss = nn.functional.cross_entropy(out, y)
        on_step = stage == "train"
        self.log(f"{stage}_loss", loss, on_step=on_step, on_epoch=True, sync_dist=True)
        self.log(f"{stage}/acc", (out.argmax(1) == y).float().mean(), on_step=on_step,
                 on_epoch=not on_step, sync_dist=True)
        return loss

    def training_step(self, batch, batch_idx):
        return self._shared(batch, "train")

    def validation_step(self, batch, batch_idx):
        self._shared(batch, "val")

    def test_step(self, batch, batch_idx):
        self._shared(batch, "test")

    def configure_optimizers(self):
        opt = torch.optim.SGD(self.parameters(), lr=self.hparams.lr, momentum=0.9)
        sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.7)
        return {"optimizer": opt, "lr_scheduler": sched}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--log-every", type=int, default=5)
    p.add_argument("--train-size", type=int, default=320)
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--devices", type=int, default=1)
    p.add_argument("--strategy", default="auto", help="auto, ddp, ddp_spawn")
    p.add_argument("--flavour", default="lightning", choices=["lightning", "pytorch_lightning"])
    p.add_argument("--log-checkpoints", default="best")
    p.add_argument("--test", action="store_true", help="also run trainer.test after fit")
    p.add_argument("--name", default="lightning_mnist")
    args = p.parse_args(argv)

    pl.seed_everything(0)
    logger = EMLogger(name=args.name, labels=["example", "lightning", args.strategy],
                      log_checkpoints=args.log_checkpoints)
    trainer = pl.Trainer(
        max_epochs=args.epochs, accelerator="gpu" if args.device.startswith("cuda") else "cpu",
        devices=args.devices, strategy=args.strategy, logger=logger,
        log_every_n_steps=args.log_every, enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[pl.callbacks.ModelCheckpoint(monitor="val_loss", mode="min")])
    model = LitCNN(lr=args.lr)
    train = DataLoader(make_data(args.train_size, 1), batch_size=args.batch_size, shuffle=True)
    val = DataLoader(make_data(128, 2), batch_size=64)
    trainer.fit(model, train, val)
    if args.test:
        trainer.test(model, DataLoader(make_data(128, 3), batch_size=64))
    # With ddp_spawn this (main) process did not train: the run lives in the worker's logger.
    if args.strategy != "ddp_spawn" and trainer.is_global_zero:
        print(f"run recorded at {logger.save_dir}")


if __name__ == "__main__":
    main()
