"""tf.distribute: MirroredStrategy in-process, MultiWorkerMirroredStrategy with two worker
processes on 127.0.0.1 (the example script launches them)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import em_core as em
from integrations.keras import EMFitCallback

REPO = Path(__file__).resolve().parents[3]
EXAMPLE = REPO / "examples" / "keras_multiworker.py"

# tf.distribute needs the TensorFlow backend: the keras_torch session deselects these.
pytestmark = pytest.mark.tf_backend


def test_mirrored_strategy_records_two_replicas(K, run, data, series):
    import tensorflow as tf

    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    with strategy.scope():
        model = K.Sequential([K.Input((8,)), K.layers.Dense(3)])
        model.compile(optimizer="sgd", metrics=["accuracy"],
                      loss=K.losses.SparseCategoricalCrossentropy(from_logits=True))
    x, y = data
    model.fit(x, y, batch_size=8, epochs=2, verbose=0, callbacks=EMFitCallback(run))

    dist = em.load_run(run.local).hparams["distributed"]["tf"]
    assert dist["kind"] == "MirroredStrategy"
    assert dist["replicas"] == 2
    assert len(dist["devices"]) == 2
    assert [r["sequence"]["epoch"] for r in series(run, "train")] == [1, 2]


def _multiworker(tmp_path: Path, mode: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(REPO), EM_RUN_PARENT_DIR=str(tmp_path / "runs"),
               TF_CPP_MIN_LOG_LEVEL="2")
    env.pop("TF_CONFIG", None)
    return subprocess.run([sys.executable, str(EXAMPLE), "--mode", mode, "--epochs", "2",
                           "--steps", "3", "--timeout", "240"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
                          check=False)


def _check_one_chief_run(tmp_path: Path, proc: subprocess.CompletedProcess[str]) -> em.Run:
    assert proc.returncode == 0, proc.stderr[-4000:]
    runs = list((tmp_path / "runs").iterdir())
    assert len(runs) == 1, runs  # the chief's; the other worker got an em.NoOpRun
    run = em.load_run(runs[0])
    assert run.status is em.Status.COMPLETE
    dist = run.hparams["distributed"]
    assert dist["env"]["rank"] == 0 and dist["env"]["world_size"] == 2
    assert dist["tf"]["workers"] == 2
    assert dist["tf"]["task_type"] == "worker" and dist["tf"]["task_id"] == 0
    assert dist["tf"]["replicas"] == 2
    return run


@pytest.mark.tf_keras  # tf-keras cannot be installed beside tensorflow-cpu
def test_multiworker_tf_keras_fit_writes_one_run(tmp_path):
    run = _check_one_chief_run(tmp_path, _multiworker(tmp_path, "fit"))
    assert run.hparams["keras"]["framework"]["flavour"] == "tf_keras"
    train = run.metrics["train"]
    assert [(p["sequence"]["step"], p["sequence"]["epoch"]) for p in train] == [(3, 1), (6, 2)]
    assert {"loss", "accuracy", "learning_rate"} == set(train[0]["value"])


def test_multiworker_keras3_custom_loop_writes_one_run(tmp_path):
    run = _check_one_chief_run(tmp_path, _multiworker(tmp_path, "loop"))
    train = run.metrics["train"]
    assert [p["sequence"]["step"] for p in train] == list(range(1, 7))
    assert [p["sequence"]["epoch"] for p in train] == [1, 1, 1, 2, 2, 2]
