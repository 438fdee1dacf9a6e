"""``em mxnet`` never copies a secret from a printed ``Namespace(...)`` into the run."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import em_core as em

REPO = Path(__file__).resolve().parents[3]


def test_namespace_secrets_are_masked(tmp_path: Path) -> None:
    log = (b"INFO:root:Namespace(api_key='mx-secret-1', password='mx-secret-2', lr=0.1, "
           b"batch_size=64)\n"
           b"INFO:root:Epoch[0] Batch [20]\tSpeed: 1000.00 samples/sec\taccuracy=0.500000\n"
           b"INFO:root:Epoch[0] Train-accuracy=0.600000\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get(
        "PYTHONPATH", "")])}
    res = subprocess.run([sys.executable, "-m", "integrations.mxnet_log", "--name", "sec"],
                         input=log, capture_output=True, env=env, cwd=tmp_path, check=False)
    assert res.returncode == 0 and res.stdout == log  # the log itself passes unchanged
    (run_dir,) = (tmp_path / "runs").iterdir()
    text = (run_dir / "run.json").read_text()
    assert "mx-secret-1" not in text and "mx-secret-2" not in text
    hp = em.load_run(run_dir).hparams
    assert hp["api_key"] == "***" and hp["password"] == "***" and hp["lr"] == 0.1
