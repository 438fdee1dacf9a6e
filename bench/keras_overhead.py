"""Overhead of EMFitCallback on ``model.fit`` of a small CNN on CPU, against Keras' own
CSVLogger and wandb's WandbMetricsLogger (offline).

Usage::

    python bench/keras_overhead.py                      # print the table
    python bench/keras_overhead.py --repeat 9 --write-results   # also bench/RESULTS_keras.md

One process, one model: after a warm-up fit (tf.function tracing), each repetition runs one
``fit`` per variant, in an order rotated every repetition so that drift of a shared machine
falls on all variants alike. Every variant gets a fresh callback per fit (set-up costs such as
recording hyperparameters are counted). The table gives the median and minimum wall time of
``fit`` per variant and the median's overhead against no callback.

Wall-time differences below ~1-2% are within the noise of a shared machine, so the script
also times each callback's hooks directly (``on_epoch_end``/``on_train_batch_end`` with the
logs of a real epoch, the model attached) and turns that into the share of a fit's time.
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

import numpy as np  # noqa: E402

NOTES = """How to read it: "fit median/min" is the wall time of one ``fit`` (noisy on a shared
machine: compare the load average above; differences of a few percent, or negative ones,
are noise); "fit CPU" is the process's CPU time (all threads; wandb's helper processes
excluded), less sensitive to other jobs. "epoch hook"/"batch hook" are the median cost of
one call of the callback's ``on_epoch_end``/``on_train_batch_end`` with a real epoch's logs
and the model attached, timed directly; "hooks' share of a fit" = (epoch hook x epochs +
batch hook x batches) / median fit time of no callback. Not in the hook times: with any
per-batch callback, Keras 3 runs batch hooks synchronously and converts the batch logs to
Python numbers every batch (that cost is Keras', the same for every per-batch logger).
wandb runs offline (``WandbMetricsLogger``, ``log_freq='epoch'``/``'batch'``); its helper
processes are not counted in the hook times.
"""

VARIANTS = ["none", "csvlogger", "em_epoch", "em_batch", "wandb_epoch", "wandb_batch"]


def make_data(n: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 10, size=n)
    x = rng.uniform(0, 0.5, size=(n, 28, 28, 1)).astype("float32")
    for i, label in enumerate(y):
        x[i, int(label) * 2:int(label) * 2 + 2] += 0.5
    return x, y


def build(keras: Any) -> Any:
    model = keras.Sequential([
        keras.Input((28, 28, 1)),
        keras.layers.Conv2D(8, 3, activation="relu"),
        keras.layers.MaxPooling2D(2),
        keras.layers.Conv2D(16, 3, activation="relu"),
        keras.layers.MaxPooling2D(2),
        keras.layers.Flatten(),
        keras.layers.Dense(32, activation="relu"),
        keras.layers.Dense(10),
    ])
    model.compile(optimizer="adam", metrics=["accuracy"],
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


def wandb_factory(workdir: str) -> tuple[Callable[[str], Any], Callable[[], None]] | None:
    try:
        import wandb
        from wandb.integration.keras import WandbMetricsLogger
    except ImportError:
        return None
    os.environ.setdefault("WANDB_SILENT", "true")
    os.environ["TMPDIR"] = workdir  # wandb's helper processes write there
    wrun = wandb.init(mode="offline", dir=workdir, project="keras-overhead")
    return (lambda freq: WandbMetricsLogger(log_freq=freq)), wrun.finish


def hook_cost(cb: Any, model: Any, logs: dict[str, float], calls: int) -> tuple[float, float]:
    """Median µs of one on_epoch_end and one on_train_batch_end of ``cb``."""
    cb.set_model(model)
    cb.set_params({"epochs": 1, "steps": calls, "verbose": 0})
    cb.on_train_begin()
    cb.on_epoch_begin(0)
    out = []
    for hook in ("on_epoch_end", "on_train_batch_end"):
        fn = getattr(cb, hook)
        times = []
        for i in range(calls):
            t = time.perf_counter_ns()
            fn(i, dict(logs))
            times.append(time.perf_counter_ns() - t)
        out.append(statistics.median(times) / 1000)
    return out[0], out[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=4096)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--variants", nargs="*", default=VARIANTS)
    parser.add_argument("--write-results", action="store_true")
    args = parser.parse_args()

    import keras

    import em_core as em
    from integrations.keras import EMFitCallback

    workdir = tempfile.mkdtemp(prefix="keras-overhead-")
    os.environ["EM_RUN_PARENT_DIR"] = os.path.join(workdir, "runs")
    keras.utils.set_random_seed(0)
    x, y = make_data(args.samples)
    model = build(keras)
    steps = args.samples // args.batch_size
    model.fit(x, y, batch_size=args.batch_size, epochs=1, verbose=0)  # warm-up: tracing

    run = em.create_run(name="keras-overhead")
    wandb = wandb_factory(workdir) if any(v.startswith("wandb") for v in args.variants) \
        else None
    variants = [v for v in args.variants if wandb is not None or not v.startswith("wandb")]
    factories: dict[str, Callable[[], list[Any]]] = {
        "none": lambda: [],
        "csvlogger": lambda: [keras.callbacks.CSVLogger(os.path.join(workdir, "log.csv"))],
        "em_epoch": lambda: [EMFitCallback(run)],
        "em_batch": lambda: [EMFitCallback(run, log_every_n_batches=1)],
    }
    if wandb is not None:
        factories["wandb_epoch"] = lambda: [wandb[0]("epoch")]
        factories["wandb_batch"] = lambda: [wandb[0]("batch")]

    times: dict[str, list[float]] = {v: [] for v in variants}
    cpu: dict[str, list[float]] = {v: [] for v in variants}
    for rep in range(args.repeat):
        k = rep % len(variants)
        for v in variants[k:] + variants[:k]:
            callbacks = factories[v]()
            t, c = time.perf_counter(), time.process_time()
            model.fit(x, y, batch_size=args.batch_size, epochs=args.epochs, verbose=0,
                      callbacks=callbacks)
            times[v].append(time.perf_counter() - t)
            cpu[v].append(time.process_time() - c)
        print(f"repetition {rep + 1}/{args.repeat} done", file=sys.stderr)

    logs = {k: float(v[-1]) for k, v in model.history.history.items()}
    costs = {v: hook_cost(factories[v]()[0], model, logs, 2000)
             for v in variants if v != "none"}
    if wandb is not None:
        wandb[1]()
    run.finish()

    base = statistics.median(times["none"])
    base_cpu = statistics.median(cpu["none"])
    fit_calls = args.epochs * steps
    rows = ["| variant | fit median (s) | fit min (s) | overhead of median | fit CPU median (s) "
            "| CPU overhead | epoch hook (µs) | batch hook (µs) | hooks' share of a fit |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for v in variants:
        med, low = statistics.median(times[v]), min(times[v])
        over = f"{(med - base) / base * 100:+.1f}%" if v != "none" else "—"
        cmed = statistics.median(cpu[v])
        cover = f"{(cmed - base_cpu) / base_cpu * 100:+.1f}%" if v != "none" else "—"
        if v in costs:
            epoch_us, batch_us = costs[v]
            per_batch = v.endswith("_batch")
            total_us = epoch_us * args.epochs + (batch_us * fit_calls if per_batch else 0)
            share = f"{total_us / 1e6 / base * 100:.3f}%"
            hooks = (f"{epoch_us:.1f}", f"{batch_us:.1f}" if per_batch else "—", share)
        else:
            hooks = ("—", "—", "—")
        rows.append(f"| {v} | {med:.3f} | {low:.3f} | {over} | {cmed:.3f} | {cover} | "
                    + " | ".join(hooks) + " |")
    command = "python bench/keras_overhead.py " + " ".join(sys.argv[1:])
    header = (f"Keras {keras.__version__} ({keras.backend.backend()}), CNN 28x28x1 -> 10, "
              f"{args.samples} samples, batch {args.batch_size} ({steps} steps/epoch), "
              f"{args.epochs} epochs per fit, {args.repeat} fits per variant.\n")
    table = "\n".join(rows)
    print(header + "\n" + table)
    if args.write_results:
        import _results

        path = os.path.join(HERE, "RESULTS_keras.md")
        with open(path, "w", encoding="utf-8") as f:
            f.write("# Keras callback overhead\n\n" + _results.stamp(command) + "\n" + header
                    + "\n" + table + "\n\n" + NOTES)
    with open(os.path.join(workdir, "log.csv"), encoding="utf-8") as f:  # CSVLogger wrote
        assert sum(1 for _ in csv.reader(f)) > 1
    shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
