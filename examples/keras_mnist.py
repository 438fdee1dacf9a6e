"""Train the seed tutorial's CNN on generated MNIST-shaped data and record it with em.

    python examples/keras_mnist.py --epochs 3
    TF_USE_LEGACY_KERAS=1 python examples/keras_mnist.py     # the same with tf_keras
    KERAS_BACKEND=torch python examples/keras_mnist.py       # Keras 3 on PyTorch

The images are random 28x28 grey images whose label is the brightest of ten horizontal
bands, so the network has something to learn; nothing is downloaded. The run is written
under $EM_RUN_PARENT_DIR (default .em/runs).
"""

from __future__ import annotations

import argparse
import os

import numpy as np

import em_core as em
from integrations.keras import EMEvalCallback, EMFitCallback

if os.environ.get("TF_USE_LEGACY_KERAS") in ("true", "True", "1"):
    import tf_keras as keras
else:
    import keras


def make_data(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` noisy images; the label is the band (rows 0-1, 3-4, ... 27) made brightest."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, size=n)
    images = rng.uniform(0.0, 0.5, size=(n, 28, 28, 1)).astype("float32")
    for i, label in enumerate(labels):
        row = int(label) * 28 // 10
        images[i, row:row + 2] += 0.5
    return images, labels.astype("int64")


def build_model() -> keras.Model:
    # The seed tutorial's network: three convolutions, then two dense layers.
    return keras.Sequential([
        keras.Input((28, 28, 1)),
        keras.layers.Conv2D(32, 3, activation="relu"),
        keras.layers.MaxPooling2D(2),
        keras.layers.Conv2D(64, 3, activation="relu"),
        keras.layers.MaxPooling2D(2),
        keras.layers.Conv2D(64, 3, activation="relu"),
        keras.layers.Flatten(),
        keras.layers.Dense(64, activation="relu"),
        keras.layers.Dense(10, activation="softmax"),
    ])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--samples", type=int, default=1024, help="training images")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--log-every-n-batches", type=int, default=None)
    parser.add_argument("--name", default="keras-mnist")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    keras.utils.set_random_seed(args.seed)

    train_images, train_labels = make_data(args.samples, seed=0)
    test_images, test_labels = make_data(max(args.samples // 4, 32), seed=1)

    # batch_size is ours to record: Keras 3 does not pass it to callbacks.
    run = em.create_run(name=args.name, labels=["keras", "mnist"],
                        hparams={"batch_size": args.batch_size, "samples": args.samples},
                        description="CNN on generated MNIST-shaped data")
    with run:  # Complete on success, Failed (with the error) on an exception
        model = build_model()
        model.compile(optimizer=keras.optimizers.Adam(learning_rate=args.lr),
                      loss="sparse_categorical_crossentropy", metrics=["accuracy"])
        model.fit(train_images, train_labels, epochs=args.epochs, batch_size=args.batch_size,
                  validation_split=0.2, verbose=2,
                  callbacks=EMFitCallback(run, log_every_n_batches=args.log_every_n_batches))
        model.evaluate(test_images, test_labels, verbose=2, callbacks=EMEvalCallback(run))
    print(f"run recorded in {run.local}")


if __name__ == "__main__":
    main()
