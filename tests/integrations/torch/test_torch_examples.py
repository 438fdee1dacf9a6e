"""The single-process PyTorch examples, run as a user would, then read back from disk."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import em_core as em

REPO = Path(__file__).resolve().parents[3]


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300, check=False)


def test_torch_mnist_example(tmp_path: Path) -> None:
    epochs, log_every = 2, 5
    proc = _run([str(REPO / "examples" / "torch_mnist.py"), "--epochs", str(epochs),
                 "--log-every", str(log_every), "--train-size", "320"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    (run_dir,) = (tmp_path / "runs").iterdir()
    run = em.load_run(run_dir)
    assert run.status is em.Status.COMPLETE
    assert run.hparams["epochs"] == epochs and run.hparams.get("optimizer.momentum") == 0.9
    assert run.hparams.get("lr_scheduler.class") == "StepLR"
    train = run.metrics["train"]
    assert [p["sequence"]["step"] for p in train] == list(range(log_every, 20 + 1, log_every))
    assert [p["sequence"]["epoch"] for p in run.metrics["val"]] == [1, 2]
    assert set(run.metrics["test"][0]["value"]) == {"loss", "accuracy"}
    (out,) = run.associations["outputs"]
    assert list(em.load_artifact(out["local"]).objects) == ["model/mnist_cnn.pt"]


def test_torch_ddp_example_single_process(tmp_path: Path) -> None:
    proc = _run([str(REPO / "examples" / "torch_ddp.py"), "--epochs", "1"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    (run_dir,) = (tmp_path / "runs").iterdir()
    run = em.load_run(run_dir)
    assert run.status is em.Status.COMPLETE
    assert run.hparams.get("distributed.torch.kind") == "not distributed"
    assert len(run.metrics["val"]) == 1 and len(run.metrics["test"]) == 1
