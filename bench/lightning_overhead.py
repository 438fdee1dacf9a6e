"""Lightning ``fit`` overhead of loggers on CPU, and the cost of ``run.log`` with a 0-d tensor.

    python bench/lightning_overhead.py [--repeats 5] [--steps 200]

Each repetition fits the same tiny MLP for ``--steps`` steps with ``log_every_n_steps=1`` and
two ``self.log`` values per step (the worst case for a logger), in one process, once per
logger: none, CSVLogger, TensorBoardLogger, EMLogger, WandbLogger (offline; skipped when
wandb or tensorboard is not installed). Order is rotated between repetitions; medians are
reported, and the overhead is the median minus the no-logger median.

Then ``run.log('train', {'loss': tensor}, step=i)`` is timed for a 0-d CPU tensor, a Python
float and a 1-element tensor, per call (median of batches of 1000 calls).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
import warnings
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset


def _setup(tmp: str) -> tuple[Any, Any, Any]:
    import lightning.pytorch as L

    class Tiny(L.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.net = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 2))

        def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
            x, y = batch
            loss = nn.functional.cross_entropy(self.net(x), y)
            self.log("train_loss", loss)
            self.log("train_acc", 0.5)
            return loss

        def configure_optimizers(self) -> Any:
            return torch.optim.SGD(self.parameters(), lr=0.1)

    g = torch.Generator().manual_seed(0)
    x = torch.randn(4096, 16, generator=g)
    data = DataLoader(TensorDataset(x, (x[:, 0] > 0).long()), batch_size=8)
    return L, Tiny, data


def _loggers(tmp: str) -> dict[str, Any]:
    from lightning.pytorch.loggers import CSVLogger

    from integrations.lightning.pytorch import EMLogger

    out: dict[str, Any] = {"none": lambda: False,
                           "CSVLogger": lambda: CSVLogger(tmp, name="csv"),
                           "EMLogger": lambda: EMLogger(name="bench")}
    try:
        import tensorboard  # noqa: F401
        from lightning.pytorch.loggers import TensorBoardLogger

        out["TensorBoardLogger"] = lambda: TensorBoardLogger(tmp, name="tb")
    except ImportError:
        pass
    try:
        import wandb  # noqa: F401
        from lightning.pytorch.loggers import WandbLogger

        out["WandbLogger(offline)"] = lambda: WandbLogger(save_dir=tmp, offline=True,
                                                          project="bench")
    except ImportError:
        pass
    return out


def bench_fit(repeats: int, steps: int) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        os.environ.setdefault("EM_RUN_PARENT_DIR", os.path.join(tmp, "runs"))
        os.environ.update(WANDB_MODE="offline", WANDB_SILENT="true", TMPDIR=tmp,
                          WANDB_DIR=tmp)
        L, Tiny, data = _setup(tmp)
        makers = _loggers(tmp)
        names = list(makers)
        for r in range(repeats + 1):  # repetition 0 warms up imports and caches
            for name in names[r % len(names):] + names[:r % len(names)]:
                torch.manual_seed(0)
                trainer = L.Trainer(max_steps=steps, logger=makers[name](),
                                    log_every_n_steps=1, enable_progress_bar=False,
                                    enable_model_summary=False, enable_checkpointing=False,
                                    accelerator="cpu", devices=1)
                model = Tiny()
                t0 = time.perf_counter()
                trainer.fit(model, data)
                dt = time.perf_counter() - t0
                if r:
                    times.setdefault(name, []).append(dt)
                if name.startswith("Wandb"):
                    import wandb

                    wandb.finish()
    return times


def bench_log(calls: int = 1000, batches: int = 15) -> dict[str, float]:
    import em_core as em

    out: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["EM_RUN_PARENT_DIR"] = tmp
        values = {"python float": 0.25, "0-d tensor": torch.tensor(0.25),
                  "1-element tensor": torch.tensor([0.25])}
        for label, value in values.items():
            run = em.create_run(name="log_bench")
            per_call = []
            step = 0
            for _ in range(batches):
                t0 = time.perf_counter()
                for _ in range(calls):
                    run.log("train", {"loss": value}, step=step)
                    step += 1
                per_call.append((time.perf_counter() - t0) / calls)
            run.finish()
            out[label] = statistics.median(per_call[1:])
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--steps", type=int, default=200)
    args = p.parse_args()
    warnings.filterwarnings("ignore")
    torch.set_num_threads(1)
    times = bench_fit(args.repeats, args.steps)
    base = statistics.median(times["none"])
    print(f"| logger | median fit s ({args.steps} steps, {args.repeats} runs) | overhead s | "
          "per step us |")
    print("|---|---|---|---|")
    for name, ts in times.items():
        med = statistics.median(ts)
        per_step = (med - base) / args.steps * 1e6
        print(f"| {name} | {med:.3f} | {med - base:+.3f} | {per_step:+.0f} |")
    print()
    print("| run.log value | median us per call |")
    print("|---|---|")
    for label, sec in bench_log().items():
        print(f"| {label} | {sec * 1e6:.2f} |")


if __name__ == "__main__":
    main()
