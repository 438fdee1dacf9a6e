"""examples/lightning_mnist.py with Lightning's ddp and ddp_spawn on CPU (2 processes): one
run, the world size recorded, every metric once."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import em_core as em

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(("strategy", "flavour"), [("ddp", "lightning"),
                                                   ("ddp_spawn", "lightning"),
                                                   ("ddp", "pytorch_lightning")])
def test_lightning_ddp_one_run(tmp_path: Path, strategy: str, flavour: str) -> None:
    epochs, log_every = 2, 2
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    proc = subprocess.run(
        [sys.executable, str(REPO / "examples" / "lightning_mnist.py"), "--strategy", strategy,
         "--devices", "2", "--epochs", str(epochs), "--log-every", str(log_every),
         "--train-size", "256", "--flavour", flavour, "--test"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=400, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (run_dir,) = (tmp_path / "runs").iterdir()
    run = em.load_run(run_dir)
    assert run.status is em.Status.COMPLETE
    assert run.hparams.get("distributed.world_size") == 2
    assert run.hparams.get("distributed.torch.kind") == "DistributedDataParallel"
    assert run.hparams.get("distributed.backend") == "gloo"
    # 256 samples / 2 ranks / batch 32 = 4 steps per epoch.
    train_steps = [p["sequence"]["step"] for p in run.metrics["train"] if "loss" in p["value"]]
    assert train_steps == list(range(log_every, 4 * epochs + 1, log_every))
    assert [p["sequence"]["epoch"] for p in run.metrics["val"]] == list(range(epochs))
    assert len(run.metrics["test"]) == 1
    (out,) = run.associations["outputs"]
    assert len(em.load_artifact(out["local"]).objects) == 1  # log_checkpoints='best'
