"""Horovod with Keras ``fit`` (tf_keras): one em run records the whole job, from rank 0.

    horovodrun -np 2 -H localhost:2 --gloo python examples/horovod_keras.py --epochs 2
    python examples/horovod_keras.py                 # one process works too (size 1)

Needs ``pip install tensorflow tf-keras`` and Horovod built with TensorFlow (docs/horovod.md):
Horovod's Keras support (``horovod.tensorflow.keras``) works with legacy tf_keras, not with
Keras 3, so this script sets ``TF_USE_LEGACY_KERAS=1`` before TensorFlow is imported.

The callbacks, in this order:

1. ``BroadcastGlobalVariablesCallback(0)``: every rank starts from rank 0's weights.
2. ``MetricAverageCallback()``: replaces each epoch's metrics by their mean over ranks.
3. ``EMFitCallback(run)``: records them. After ``MetricAverageCallback`` it records the
   averages; before it, rank 0's own values.

Every rank calls em the same way: ``em.create_run`` gives rank 0 the real run and the other
ranks an ``em.NoOpRun`` that writes nothing (``EMFitCallback`` is then inactive there).
The data are generated: nothing is downloaded.
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")  # before TensorFlow is imported

import horovod.tensorflow.keras as hvd
import horovod.tensorflow.keras.callbacks as hvd_callbacks
import numpy as np
import tf_keras as keras

import em_core as em
from integrations.keras import EMEvalCallback, EMFitCallback

# Horovod 0.28.1 takes Keras 3's backend for MetricAverageCallback even when tf.keras is
# tf_keras; give it tf_keras' backend, or averaging fails.
hvd_callbacks.K = keras.backend


def make_data(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` points in 4 classes around fixed centres in 20 dimensions."""
    centres = np.random.default_rng(0).normal(size=(4, 20)) * 2
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 4, size=n)
    return (centres[labels] + rng.normal(size=(n, 20))).astype("float32"), labels


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--lr", type=float, default=0.005, help="per rank; scaled by the size")
    p.add_argument("--name", default="horovod_keras")
    args = p.parse_args(argv)

    hvd.init()
    keras.utils.set_random_seed(0)
    # Each rank trains on its own shard and evaluates on its own part of the validation set.
    x, y = make_data(480, 1)
    x, y = x[hvd.rank()::hvd.size()], y[hvd.rank()::hvd.size()]
    x_val, y_val = make_data(160, 2)
    x_val, y_val = x_val[hvd.rank()::hvd.size()], y_val[hvd.rank()::hvd.size()]
    x_test, y_test = make_data(160, 3)

    model = keras.Sequential([keras.layers.Dense(32, activation="relu", input_shape=(20,)),
                              keras.layers.Dense(4)])
    # Horovod's usual recipe: scale the learning rate by the number of ranks.
    optimizer = hvd.DistributedOptimizer(keras.optimizers.Adam(args.lr * hvd.size()))
    model.compile(optimizer=optimizer, metrics=["accuracy"],
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))

    run = em.create_run(name=args.name, labels=["example", "keras", "horovod"])
    run.hparams.update(args)
    run.hparams.parse(dist_hvd=optimizer)
    callbacks = [hvd.callbacks.BroadcastGlobalVariablesCallback(0),
                 hvd.callbacks.MetricAverageCallback(),  # before EMFitCallback: averages
                 EMFitCallback(run)]
    model.fit(x, y, batch_size=args.batch_size, epochs=args.epochs,
              validation_data=(x_val, y_val), callbacks=callbacks, verbose=0)
    # The test set is whole on every rank: rank 0's evaluation is the job's.
    model.evaluate(x_test, y_test, verbose=0, callbacks=[EMEvalCallback(run)])
    run.finish()
    if hvd.rank() == 0:
        print(f"run recorded at {run.local}")


if __name__ == "__main__":
    main()
