"""Train an MLP on MNIST-shaped generated data with MXNet's ``Module.fit``, recorded by em.

The images are generated (each class is a fixed random pattern plus noise), so nothing is
downloaded.

    python examples/mxnet_mnist.py --epochs 2 --batch-size 64

Records: the ``fit`` arguments (optimizer and its parameters) and the optimizer as the Module
holds it, train metrics every ``--log-every`` batches on a global step axis, the epoch's
train metrics, validation metrics per epoch, and the checkpoints (``mnist-symbol.json``,
``mnist-NNNN.params``) as an output artifact. The run lands in ``$EM_RUN_PARENT_DIR``
(default ``.em/runs``). MXNet 1.9 needs ``numpy<1.24``.
"""

from __future__ import annotations

import argparse
import logging
import os
import tempfile

import mxnet as mx
import numpy as np

import em_core as em
from integrations.mxnet import (
    EMBatchEndCallback,
    EMEpochEndCallback,
    EMEvalEndCallback,
    log_fit_args,
)


def make_data(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` flattened 28x28 images in 10 classes: a per-class pattern plus noise."""
    patterns = np.random.default_rng(0).normal(size=(10, 784)).astype("float32")
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, size=n)
    images = patterns[labels] + 0.8 * rng.normal(size=(n, 784)).astype("float32")
    return images, labels.astype("float32")


def mlp(hidden: int) -> mx.sym.Symbol:
    net = mx.sym.FullyConnected(mx.sym.Variable("data"), num_hidden=hidden, name="fc1")
    net = mx.sym.Activation(net, act_type="relu", name="relu1")
    net = mx.sym.FullyConnected(net, num_hidden=10, name="fc2")
    return mx.sym.SoftmaxOutput(net, name="softmax")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--hidden", type=int, default=64)
    p.add_argument("--train-size", type=int, default=1024)
    p.add_argument("--log-every", type=int, default=4)
    p.add_argument("--name", default="mxnet-mnist")
    p.add_argument("--checkpoint-dir", default=None, help="default: a temporary folder")
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO)  # MXNet's own Speedometer lines, as usual

    x, y = make_data(args.train_size, seed=1)
    vx, vy = make_data(256, seed=2)
    train = mx.io.NDArrayIter(x, y, batch_size=args.batch_size, shuffle=True)
    val = mx.io.NDArrayIter(vx, vy, batch_size=args.batch_size)
    mod = mx.mod.Module(mlp(args.hidden), context=mx.cpu())

    ckpt_dir = args.checkpoint_dir or tempfile.mkdtemp(prefix="mxnet-mnist-")
    os.makedirs(ckpt_dir, exist_ok=True)
    prefix = os.path.join(ckpt_dir, "mnist")
    with em.create_run(name=args.name, hparams=vars(args), labels=["mxnet", "example"]) as run:
        batch_cb = EMBatchEndCallback(run, batch_size=args.batch_size,
                                      frequent=args.log_every, module=mod)
        mod.fit(train, eval_data=val, eval_metric=["acc", "ce"],
                **log_fit_args(run, optimizer="sgd", num_epoch=args.epochs,
                               optimizer_params={"learning_rate": args.lr, "momentum": 0.9,
                                                 "wd": 1e-4}),
                batch_end_callback=[batch_cb,
                                    mx.callback.Speedometer(args.batch_size, args.log_every)],
                epoch_end_callback=EMEpochEndCallback(run, batch_end=batch_cb,
                                                      checkpoint_prefix=prefix),
                eval_end_callback=EMEvalEndCallback(run, batch_end=batch_cb))
    print(f"run recorded in {run.local}")


if __name__ == "__main__":
    main()
