"""A Horovod TensorFlow custom loop with a Keras 3 model and ``hvd.DistributedGradientTape``,
for test_hvd_tf.py (run under horovodrun -np 2).

Keras 3 variables are not ``tf.Variable``s (Horovod calls ``.ref()`` on what it is given):
give Horovod the TensorFlow variables behind them, ``[v.value for v in ...]``. Each rank
writes its local losses to ``<out>/rank<k>.json`` so the test can check the logged mean.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import horovod.tensorflow as hvd
import keras
import tensorflow as tf

import em_core as em

STEPS = 4


def main(out: Path) -> None:
    hvd.init()
    keras.utils.set_random_seed(0)
    run = em.create_run(name="hvd-tf-tape", hparams={"steps": STEPS})
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, activation="relu"),
                              keras.layers.Dense(1)])
    opt = keras.optimizers.SGD(learning_rate=0.02 * hvd.size())
    loss_fn = keras.losses.MeanSquaredError()
    rng = tf.random.Generator.from_seed(100 + hvd.rank())  # each rank its own shard
    x = rng.normal((32, 4))
    y = tf.reduce_sum(x, axis=1, keepdims=True)
    hvd.broadcast_variables([v.value for v in model.variables], root_rank=0)

    local = []
    for step in range(1, STEPS + 1):
        with tf.GradientTape() as tape:
            loss = loss_fn(y, model(x, training=True))
        tape = hvd.DistributedGradientTape(tape, compression=hvd.Compression.fp16,
                                           op=hvd.Average, gradient_predivide_factor=2.0)
        grads = tape.gradient(loss, [v.value for v in model.trainable_variables])
        opt.apply_gradients(zip(grads, model.trainable_variables))
        if step == 1:
            run.hparams.parse(dist_hvd=tape)
        local.append(float(loss))
        run.log("train", {"loss": hvd.allreduce(loss, op=hvd.Average, name="loss")}, step=step)
    run.finish()
    (out / f"rank{hvd.rank()}.json").write_text(json.dumps(
        {"local": local, "noop": isinstance(run, em.NoOpRun), "run_dir": run.local}))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
