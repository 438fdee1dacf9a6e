"""Multi-worker training with tf.distribute.MultiWorkerMirroredStrategy, recorded as one run.

    python examples/keras_multiworker.py --mode fit    # tf_keras model.fit + EMFitCallback
    python examples/keras_multiworker.py --mode loop   # Keras 3 model, custom loop + run.log

Started without TF_CONFIG, the script launches two worker processes of itself on
127.0.0.1 (free ports) and waits for them. Each worker reads its place in the cluster from
TF_CONFIG; ``em.create_run`` returns a real run on the chief (worker 0) and an
``em.NoOpRun`` on the other worker, so exactly one run is written.

Keras 3's ``fit`` fails under MultiWorkerMirroredStrategy (keras-team/keras#20585), hence
the two modes: ``fit`` needs the tf-keras package and runs with TF_USE_LEGACY_KERAS=1 (set
for the workers by the launcher); ``loop`` is a custom training loop with
``strategy.run`` that calls ``run.log`` itself.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys

import numpy as np

WORKERS = 2
FEATURES, CLASSES = 8, 3


def free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def launch(argv: list[str], mode: str, timeout: float) -> int:
    """Start the workers with TF_CONFIG and wait; the exit status is the worst of theirs."""
    hosts = [f"127.0.0.1:{port}" for port in free_ports(WORKERS)]
    procs = []
    for index in range(WORKERS):
        env = dict(os.environ, TF_CONFIG=json.dumps(
            {"cluster": {"worker": hosts}, "task": {"type": "worker", "index": index}}))
        if mode == "fit":
            env["TF_USE_LEGACY_KERAS"] = "1"
        procs.append(subprocess.Popen([sys.executable, os.path.abspath(__file__), *argv],
                                      env=env))
    codes = []
    for proc in procs:
        try:
            codes.append(proc.wait(timeout=timeout))
        except subprocess.TimeoutExpired:
            for p in procs:
                p.kill()
            print(f"workers did not finish within {timeout}s", file=sys.stderr)
            return 1
    return max(codes, key=abs)


def make_data(n: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, FEATURES)).astype("float32")
    y = ((x[:, 0] > 0).astype("int64") + (x[:, 1] > 0.5)).astype("int64")
    return x, y


def worker(args: argparse.Namespace) -> None:
    import tensorflow as tf

    import em_core as em

    # The strategy must exist before any other TensorFlow op (it starts the collective
    # runtime); em_core reads the rank from TF_CONFIG on its own.
    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    run = em.create_run(name=args.name, labels=["keras", "multi-worker"],
                        hparams={"global_batch_size": args.global_batch, "mode": args.mode})
    x, y = make_data(args.global_batch * args.steps)
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).repeat().batch(args.global_batch)
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    dataset = dataset.with_options(options)
    with run:
        if args.mode == "fit":
            fit_with_tf_keras(args, strategy, run, dataset)
        else:
            custom_loop(args, strategy, run, dataset)
    print(f"worker done; this rank's run: {run!r}")


def fit_with_tf_keras(args: argparse.Namespace, strategy: object, run: object,
                      dataset: object) -> None:
    import tf_keras as keras

    from integrations.keras import EMFitCallback

    with strategy.scope():  # type: ignore[attr-defined]
        model = keras.Sequential([keras.Input((FEATURES,)),
                                  keras.layers.Dense(16, activation="relu"),
                                  keras.layers.Dense(CLASSES)])
        model.compile(optimizer=keras.optimizers.SGD(0.1), metrics=["accuracy"],
                      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    # EMFitCallback records the strategy (workers, task, replicas) at the start of fit.
    model.fit(dataset, epochs=args.epochs, steps_per_epoch=args.steps, verbose=0,
              callbacks=[EMFitCallback(run)])


def custom_loop(args: argparse.Namespace, strategy: object, run: object,
                dataset: object) -> None:
    import keras
    import tensorflow as tf

    with strategy.scope():  # type: ignore[attr-defined]
        model = keras.Sequential([keras.Input((FEATURES,)),
                                  keras.layers.Dense(16, activation="relu"),
                                  keras.layers.Dense(CLASSES)])
        optimizer = keras.optimizers.SGD(learning_rate=0.1)
        loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True,
                                                             reduction=None)
    run.hparams.parse(dist_tf_strategy=strategy)  # type: ignore[attr-defined]
    run.hparams.update({"optimizer": {"class": "SGD", "learning_rate": 0.1},  # type: ignore[attr-defined]
                        "epochs": args.epochs, "steps_per_epoch": args.steps})
    iterator = iter(strategy.experimental_distribute_dataset(dataset))  # type: ignore[attr-defined]

    def step_fn(x: tf.Tensor, y: tf.Tensor) -> tf.Tensor:
        with tf.GradientTape() as tape:
            per_example = loss_fn(y, model(x, training=True))
            loss = tf.nn.compute_average_loss(per_example, global_batch_size=args.global_batch)
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        return loss

    @tf.function
    def train_step() -> tf.Tensor:
        per_replica = strategy.run(step_fn, args=next(iterator))  # type: ignore[attr-defined]
        return strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica,  # type: ignore[attr-defined]
                               axis=None)

    step = 0
    for epoch in range(1, args.epochs + 1):
        for _ in range(args.steps):
            loss = train_step()
            step += 1
            # Every worker calls log; on the non-chief it is an em.NoOpRun and does nothing.
            run.log("train", {"loss": loss}, step=step, epoch=epoch)  # type: ignore[attr-defined]


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=("fit", "loop"), default="loop")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--steps", type=int, default=4, help="steps per epoch")
    parser.add_argument("--global-batch", type=int, default=16)
    parser.add_argument("--name", default="keras-multiworker")
    parser.add_argument("--timeout", type=float, default=300.0)
    args = parser.parse_args(argv)
    if "TF_CONFIG" not in os.environ:
        return launch(argv, args.mode, args.timeout)
    worker(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
