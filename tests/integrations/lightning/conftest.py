"""Both Lightning flavours (``lightning.pytorch`` and ``pytorch_lightning``), a tiny model
and generated data, shared by the Lightning tests."""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset


@dataclass
class Flavour:
    pl: Any          # the Lightning package (lightning.pytorch or pytorch_lightning)
    EMLogger: type   # the matching EMLogger
    Model: type      # a tiny LightningModule of that package

    def trainer(self, logger: Any, **kwargs: Any) -> Any:
        opts = {"max_epochs": 2, "log_every_n_steps": 2, "enable_progress_bar": False,
                "enable_model_summary": False, "accelerator": "cpu", "devices": 1,
                "enable_checkpointing": False}
        opts.update(kwargs)
        return self.pl.Trainer(logger=logger, **opts)

    @staticmethod
    def data(n: int = 32, seed: int = 0) -> DataLoader:
        return data(n, seed)


def data(n: int = 32, seed: int = 0) -> DataLoader:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 4, generator=g)
    return DataLoader(TensorDataset(x, (x[:, 0] > 0).long()), batch_size=8)


def _model_class(pl: Any) -> type:
    class Tiny(pl.LightningModule):
        def __init__(self, lr: float = 0.1, hidden: int = 8, fail_at: int = -1,
                     interrupt_at: int = -1) -> None:
            super().__init__()
            self.save_hyperparameters()
            self.net = nn.Sequential(nn.Linear(4, hidden), nn.ReLU(), nn.Linear(hidden, 2))

        def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
            if self.global_step == self.hparams.fail_at:
                raise RuntimeError("boom in training_step")
            if self.global_step == self.hparams.interrupt_at:
                raise KeyboardInterrupt
            x, y = batch
            loss = nn.functional.cross_entropy(self.net(x), y)
            self.log("train_loss", loss, on_step=True, on_epoch=True)
            self.log("train/acc", 0.5)  # a second self.log call in the same step
            return loss

        def validation_step(self, batch: Any, batch_idx: int) -> None:
            x, y = batch
            self.log("val_loss", nn.functional.cross_entropy(self.net(x), y))
            self.log("score", 1.0)  # unprefixed: typed by the trainer's stage

        def test_step(self, batch: Any, batch_idx: int) -> None:
            x, y = batch
            self.log("test_loss", nn.functional.cross_entropy(self.net(x), y))

        def configure_optimizers(self) -> Any:
            opt = torch.optim.SGD(self.parameters(), lr=self.hparams.lr, momentum=0.9)
            return {"optimizer": opt,
                    "lr_scheduler": torch.optim.lr_scheduler.StepLR(opt, step_size=1)}

    return Tiny


@pytest.fixture(params=["lightning.pytorch", "pytorch_lightning"])
def flavour(request: pytest.FixtureRequest) -> Flavour:
    pl = importlib.import_module(request.param)
    mod = "pytorch" if request.param == "lightning.pytorch" else "pytorch_lightning"
    logger_mod = importlib.import_module(f"integrations.lightning.{mod}")
    return Flavour(pl=pl, EMLogger=logger_mod.EMLogger, Model=_model_class(pl))
