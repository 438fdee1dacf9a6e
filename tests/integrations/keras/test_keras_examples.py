"""examples/keras_mnist.py run as a user would, then read back from disk; the import
without Keras."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import em_core as em

REPO = Path(__file__).resolve().parents[3]


def test_keras_mnist_example_records_a_complete_run(tmp_path, legacy, backend):
    env = dict(os.environ, PYTHONPATH=str(REPO), EM_RUN_PARENT_DIR=str(tmp_path / "runs"),
               TF_CPP_MIN_LOG_LEVEL="2")
    epochs, batch = 2, 32
    proc = subprocess.run([sys.executable, str(REPO / "examples" / "keras_mnist.py"),
                           "--epochs", str(epochs), "--samples", "320", "--batch-size",
                           str(batch), "--log-every-n-batches", "4", "--name", "mnist"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
                          check=False)
    assert proc.returncode == 0, proc.stderr[-4000:]
    (run_dir,) = (tmp_path / "runs").iterdir()
    run = em.load_run(run_dir)
    assert run.status is em.Status.COMPLETE
    hp = run.hparams
    assert hp["batch_size"] == batch  # given by the script
    assert hp["keras"]["framework"]["flavour"] == ("tf_keras" if legacy else "keras")
    assert hp["keras"]["framework"]["backend"] == backend
    assert hp["keras"]["loss"] == "sparse_categorical_crossentropy"
    assert hp["keras"]["metrics"] == ["accuracy", "loss"]
    assert hp["keras"]["steps_per_epoch"] == 8  # 256 training images after the 20% split
    train, val, test = run.metrics["train"], run.metrics["val"], run.metrics["test"]
    epoch_points = [p for p in train if p["sequence"]["step"] % 8 == 0]
    assert [p["sequence"]["step"] for p in train] == [4, 8, 8, 12, 16, 16]
    assert [p["sequence"]["epoch"] for p in val] == [1, 2]
    assert epoch_points[-1]["value"]["loss"] < epoch_points[0]["value"]["loss"]  # it learned
    assert len(test) == 1 and test[0]["sequence"]["step"] == 16
    assert set(test[0]["value"]) == {"loss", "accuracy"}


def test_import_without_keras_names_the_extra():
    # A child process where neither Keras can be imported.
    code = ("import sys; sys.modules['keras'] = None; sys.modules['tf_keras'] = None\n"
            "try:\n    import integrations.keras\nexcept ModuleNotFoundError as e:\n"
            "    print('MNF', e.name, e)\nelse:\n    print('imported')\n")
    proc = subprocess.run([sys.executable, "-c", code], env=dict(os.environ, PYTHONPATH=str(REPO)),
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("MNF keras ")
    assert "pip install 'em[keras]'" in proc.stdout
