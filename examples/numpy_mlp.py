"""Train a small NumPy MLP on generated data and record it with em, end to end.

What it records: hyperparameters (from argparse), training loss/accuracy every
``--log-every`` steps (type 'train'), validation per epoch ('val'), a final test pass
('test'), and the trained weights as an output artifact. Then ``em show <run>`` prints it.

    python examples/numpy_mlp.py --epochs 5
"""

from __future__ import annotations

import argparse
import os
import tempfile

import numpy as np

import em_core as em


def make_data(rng: np.random.Generator, n: int, dim: int) -> tuple[np.ndarray, np.ndarray]:
    """Two interleaved spirals-ish classes: linearly inseparable, learnable by an MLP."""
    x = rng.normal(size=(n, dim)).astype(np.float64)
    y = ((x[:, 0] * x[:, 1] + 0.5 * np.sin(3 * x[:, 2])) > 0).astype(np.int64)
    return x, y


class MLP:
    def __init__(self, rng: np.random.Generator, dim: int, hidden: int) -> None:
        self.w1 = rng.normal(scale=1 / np.sqrt(dim), size=(dim, hidden))
        self.b1 = np.zeros(hidden)
        self.w2 = rng.normal(scale=1 / np.sqrt(hidden), size=(hidden, 2))
        self.b2 = np.zeros(2)

    def forward(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        h = np.maximum(x @ self.w1 + self.b1, 0)
        logits = h @ self.w2 + self.b2
        logits -= logits.max(axis=1, keepdims=True)
        p = np.exp(logits)
        return h, p / p.sum(axis=1, keepdims=True)

    def loss_acc(self, x: np.ndarray, y: np.ndarray) -> tuple[np.float64, np.float64]:
        _, p = self.forward(x)
        loss = -np.log(p[np.arange(len(y)), y] + 1e-12).mean()
        return loss, (p.argmax(axis=1) == y).mean()

    def step(self, x: np.ndarray, y: np.ndarray, lr: float, wd: float) -> np.float64:
        h, p = self.forward(x)
        loss = -np.log(p[np.arange(len(y)), y] + 1e-12).mean()
        g = p.copy()
        g[np.arange(len(y)), y] -= 1
        g /= len(y)
        gw2, gb2 = h.T @ g + wd * self.w2, g.sum(0)
        gh = (g @ self.w2.T) * (h > 0)
        gw1, gb1 = x.T @ gh + wd * self.w1, gh.sum(0)
        for param, grad in ((self.w1, gw1), (self.b1, gb1), (self.w2, gw2), (self.b2, gb2)):
            param -= lr * grad
        return loss


def main(argv: list[str] | None = None) -> str:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--lr", type=float, default=0.1)
    ap.add_argument("--weight-decay", type=float, default=1e-4)
    ap.add_argument("--hidden", type=int, default=64)
    ap.add_argument("--samples", type=int, default=4000)
    ap.add_argument("--log-every", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--name", default="numpy-mlp")
    args = ap.parse_args(argv)

    rng = np.random.default_rng(args.seed)
    dim = 8
    x, y = make_data(rng, args.samples, dim)
    n_train, n_val = int(0.7 * len(x)), int(0.15 * len(x))
    xtr, ytr = x[:n_train], y[:n_train]
    xva, yva = x[n_train:n_train + n_val], y[n_train:n_train + n_val]
    xte, yte = x[n_train + n_val:], y[n_train + n_val:]

    with em.create_run(name=args.name, hparams=args, labels=["example", "numpy"],
                       description="NumPy MLP on generated data") as run:
        run.hparams.update({"model": {"kind": "mlp", "input_dim": dim, "hidden": args.hidden},
                            "data": {"train": n_train, "val": n_val, "test": len(xte)}})
        model = MLP(rng, dim, args.hidden)
        step = 0
        for epoch in range(1, args.epochs + 1):
            order = rng.permutation(n_train)
            for i in range(0, n_train, args.batch_size):
                idx = order[i:i + args.batch_size]
                loss = model.step(xtr[idx], ytr[idx], args.lr, args.weight_decay)
                step += 1
                if step % args.log_every == 0:
                    run.log("train", {"loss": loss, "lr": args.lr}, step=step, epoch=epoch)
            val_loss, val_acc = model.loss_acc(xva, yva)
            run.log("val", {"loss": val_loss, "accuracy": val_acc}, step=step, epoch=epoch)
            print(f"epoch {epoch}: val loss {val_loss:.4f} accuracy {val_acc:.3f}")
        test_loss, test_acc = model.loss_acc(xte, yte)
        run.log("test", {"loss": test_loss, "accuracy": test_acc}, step=step)

        weights = os.path.join(tempfile.mkdtemp(), "mlp.npz")
        np.savez(weights, w1=model.w1, b1=model.b1, w2=model.w2, b2=model.b2)
        artifact = em.create_artifact(f"{args.name}-weights", labels=["model"])
        artifact.add_file(weights, obj_path="model/")
        run.mark_output(artifact)
        print(f"test accuracy {test_acc:.3f}; run recorded in {run.local}")
        return run.local


if __name__ == "__main__":
    main()
