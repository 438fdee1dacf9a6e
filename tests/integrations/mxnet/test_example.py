"""examples/mxnet_mnist.py run as a user would, then read back from disk."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import em_core as em

REPO = Path(__file__).resolve().parents[3]


def test_mxnet_mnist_example(tmp_path: Path) -> None:
    epochs, batch, log_every, n = 2, 64, 4, 512
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.run(
        [sys.executable, str(REPO / "examples" / "mxnet_mnist.py"), "--epochs", str(epochs),
         "--batch-size", str(batch), "--log-every", str(log_every), "--train-size", str(n),
         "--checkpoint-dir", str(tmp_path / "ckpt")],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr
    assert "Speed:" in proc.stderr  # MXNet's Speedometer still runs beside em's callback
    (run_dir,) = (tmp_path / "runs").iterdir()
    run = em.load_run(run_dir)
    assert run.status is em.Status.COMPLETE and run.labels == ["mxnet", "example"]
    per_epoch = n // batch
    batch_recs = [r for r in run.metrics["train"] if "samples_per_sec" in r["value"]]
    assert [r["sequence"]["step"] for r in batch_recs] == [
        e * per_epoch + b for e in range(epochs) for b in range(log_every - 1, per_epoch,
                                                                log_every)]
    val = run.metrics["val"]
    assert [r["sequence"]["epoch"] for r in val] == list(range(epochs))
    assert val[-1]["value"]["accuracy"] > 0.5  # the patterns are easy to learn
    assert run.hparams["optimizer_params"]["learning_rate"] == 0.05
    assert run.hparams["module_optimizer"]["momentum"] == 0.9
    (out,) = run.associations["outputs"]
    art = em.load_artifact(out["local"])
    assert sorted(art.objects) == ["mnist-0001.params", "mnist-0002.params", "mnist-symbol.json"]
