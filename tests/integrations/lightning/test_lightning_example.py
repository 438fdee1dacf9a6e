"""examples/lightning_mnist.py on one process, run as a user would, then read back."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import em_core as em

REPO = Path(__file__).resolve().parents[3]


def test_lightning_mnist_example(tmp_path: Path) -> None:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.run([sys.executable, str(REPO / "examples" / "lightning_mnist.py"),
                           "--epochs", "2", "--log-every", "5", "--train-size", "320", "--test"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
                          check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (run_dir,) = (tmp_path / "runs").iterdir()
    run = em.load_run(run_dir)
    assert run.status is em.Status.COMPLETE
    assert run.hparams["lr"] == 0.05 and run.hparams.get("optimizer.class") == "SGD"
    steps = [p["sequence"]["step"] for p in run.metrics["train"] if "loss" in p["value"]]
    assert steps == [5, 10, 15, 20]
    assert [p["sequence"]["epoch"] for p in run.metrics["val"]] == [0, 1]
    assert set(run.metrics["test"][0]["value"]) == {"loss", "acc"}
    (out,) = run.associations["outputs"]
    assert len(em.load_artifact(out["local"]).objects) == 1
