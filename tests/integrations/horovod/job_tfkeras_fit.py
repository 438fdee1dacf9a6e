"""tf_keras ``fit`` under Horovod with Horovod's callbacks and ``EMFitCallback``, for
test_hvd_tf.py (run under horovodrun -np 2 with ``TF_USE_LEGACY_KERAS=1``).

Argument 2 is the callback order: ``average-first`` puts ``MetricAverageCallback`` before
``EMFitCallback`` (the run records metrics averaged over ranks), ``em-first`` after it (the
run records rank 0's own values). A probe callback placed before both writes every rank's
own epoch metrics to ``<out>/rank<k>.json``.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")  # before TensorFlow is imported

import horovod.tensorflow.keras as hvd
import horovod.tensorflow.keras.callbacks as hvd_callbacks
import numpy as np
import tf_keras as keras

import em_core as em
from integrations.keras import EMFitCallback

# Horovod 0.28.1 binds K to Keras 3's backend even when tf.keras is tf_keras; its
# MetricAverageCallback needs tf_keras' backend.
hvd_callbacks.K = keras.backend

EPOCHS = 2


class Probe(keras.callbacks.Callback):
    """Keeps this rank's own epoch metrics (before any averaging)."""

    def __init__(self) -> None:
        super().__init__()
        self.epochs: list[dict[str, float]] = []

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self.epochs.append({k: float(v) for k, v in (logs or {}).items()})


def main(out: Path, order: str) -> None:
    hvd.init()
    keras.utils.set_random_seed(0)
    run = em.create_run(name="hvd-keras-fit", hparams={"order": order, "epochs": EPOCHS})
    model = keras.Sequential([keras.layers.Dense(8, activation="relu", input_shape=(4,)),
                              keras.layers.Dense(1)])
    opt = hvd.DistributedOptimizer(keras.optimizers.SGD(learning_rate=0.02 * hvd.size()),
                                   backward_passes_per_step=1)
    model.compile(optimizer=opt, loss="mse", metrics=["mae"])
    run.hparams.parse(dist_hvd=opt)

    rng = np.random.default_rng(100 + hvd.rank())  # each rank its own shard
    x = rng.normal(size=(64, 4)).astype("float32")
    y = (x.sum(axis=1, keepdims=True) * (1 + hvd.rank())).astype("float32")

    probe = Probe()
    average, em_cb = hvd.callbacks.MetricAverageCallback(), EMFitCallback(run)
    tail = [average, em_cb] if order == "average-first" else [em_cb, average]
    callbacks = [hvd.callbacks.BroadcastGlobalVariablesCallback(0), probe, *tail]
    model.fit(x, y, batch_size=16, epochs=EPOCHS, callbacks=callbacks, verbose=0)
    run.finish()
    (out / f"rank{hvd.rank()}.json").write_text(json.dumps(
        {"epochs": probe.epochs, "noop": isinstance(run, em.NoOpRun)}))


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2])
