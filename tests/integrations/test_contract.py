"""The contract every integration passes (issue 14): the same questions to each.

* ``logs``: after a tiny real training, which metric types and names landed in the run.
* ``rank``: on a rank above 0 it writes nothing (no run directory, no file).
* ``pickle``: where the framework pickles it (Lightning's ``ddp_spawn``), it survives
  pickling and the copy records into the same run.
* ``warn_once`` / ``strict``: a bad value reaching it during training warns once outside
  ``EM_STRICT`` (training goes on) and raises inside it.
* ``end_success`` / ``end_exception`` / ``end_sigint``: the run's status when training
  ends normally, by an exception, and by Ctrl-C (SIGINT sent to a real subprocess).

Cases are chosen by the nox session, not by what imports: ``EM_CONTRACT`` names the
frameworks of the session (``keras``, ``lightning``, ``mxnet``, ``pipes``, ``horovod``;
comma-separated). A question a framework has no use for (pickling where nothing pickles the
integration; bad values for the log pipes, which take numbers only from a parser) is not
asked of it, rather than skipped.
"""

from __future__ import annotations

import os
import pickle
import signal
import subprocess
import sys
import textwrap
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import em_core as em

REPO = Path(__file__).resolve().parents[2]
SELECTED = {s.strip() for s in os.environ.get("EM_CONTRACT", "").split(",") if s.strip()}
if not SELECTED:
    raise RuntimeError("tests/integrations/test_contract.py runs in a framework's nox session, "
                       "which sets EM_CONTRACT (keras, lightning, mxnet, pipes, horovod)")

BASE_QUESTIONS = ("logs", "rank", "warn_once", "strict", "end_success", "end_exception",
                  "end_sigint")


@dataclass
class Case:
    """One integration under the contract."""

    name: str
    session: str
    expected: dict[str, set[str]]  # metric type -> names that must be logged under it
    train: Callable[[Path], list[Any]]  # a tiny training; returns the runs it recorded into
    bad_value: Callable[[Path], None] | None  # pushes one bad value through a training hook
    script: Callable[[str], list[str]]  # argv of a process ending in the given mode
    pickles: Callable[[Path], None] | None = None
    endings: bool = True  # False: ending a run is another case's (same process, same code)

    def questions(self) -> list[str]:
        qs = [q for q in BASE_QUESTIONS if (self.bad_value is not None
                                            or q not in ("warn_once", "strict"))
              and (self.endings or not q.startswith("end_"))]
        return qs + (["pickle"] if self.pickles is not None else [])


def _python(code: str) -> list[str]:
    return [sys.executable, "-c", textwrap.dedent(code)]


# ---------------------------------------------------------------------------- Keras
def _keras() -> Any:
    if os.environ.get("TF_USE_LEGACY_KERAS") in ("true", "True", "1"):
        import tf_keras

        return tf_keras
    import keras

    return keras


_KERAS_MODEL = """
import os, sys, time
import numpy as np
import em_core as em
from integrations.keras import EMEvalCallback, EMFitCallback
if os.environ.get("TF_USE_LEGACY_KERAS") in ("true", "True", "1"):
    import tf_keras as K
else:
    import keras as K
rng = np.random.default_rng(0)
x = rng.normal(size=(16, 4)).astype("float32")
y = (x[:, 0] > 0).astype("int64")
model = K.Sequential([K.Input((4,)), K.layers.Dense(2, activation="softmax")])
model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
"""


def _keras_train(evaluate: bool) -> Callable[[Path], list[Any]]:
    def train(tmp: Path) -> list[Any]:
        ns: dict[str, Any] = {}
        exec(_KERAS_MODEL, ns)
        run = em.create_run(name="contract-keras")
        fit = ns["EMFitCallback"](run)
        ns["model"].fit(ns["x"], ns["y"], epochs=2, batch_size=8, validation_split=0.25,
                        verbose=0, callbacks=[fit] if not evaluate else [])
        if evaluate:
            ns["model"].evaluate(ns["x"], ns["y"], verbose=0,
                                 callbacks=[ns["EMEvalCallback"](run)])
        run.finish()
        return [run]
    return train


def _keras_bad(evaluate: bool) -> Callable[[Path], None]:
    def bad(tmp: Path) -> None:
        from integrations.keras import EMEvalCallback, EMFitCallback

        run = em.create_run(name="contract-keras-bad")
        try:
            for epoch in (0, 1):
                if evaluate:
                    EMEvalCallback(run, step=epoch).on_test_end({"loss": "not a number"})
                else:
                    EMFitCallback(run, log_learning_rate=False).on_epoch_end(
                        epoch, {"loss": "not a number"})
        finally:
            run.finish()
    return bad


def _keras_script(evaluate: bool) -> Callable[[str], list[str]]:
    def script(mode: str) -> list[str]:
        return _python(_KERAS_MODEL + f"""
class Stop(K.callbacks.Callback):
    def on_train_batch_end(self, batch, logs=None):
        if {mode!r} == "exception":
            raise RuntimeError("boom in training")
        if {mode!r} == "sigint":
            print("READY", flush=True)
            time.sleep(60)
run = em.create_run(name="ending")
print("RUN", run.local, flush=True)
model.fit(x, y, epochs=2, batch_size=8, verbose=0,
          callbacks=[EMFitCallback(run), Stop()])
if {evaluate!r}:
    model.evaluate(x, y, verbose=0, callbacks=[EMEvalCallback(run)])
""")
    return script


# ---------------------------------------------------------------------------- Lightning
def _lightning_src(namespace: str) -> str:
    flavour = "pytorch" if namespace == "lightning.pytorch" else "pytorch_lightning"
    return f"""
import sys, time
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset
import {namespace} as L
import em_core as em
from integrations.lightning.{flavour} import EMLogger
MODE = "success"

class Tiny(L.LightningModule):
    def __init__(self):
        super().__init__()
        self.net = nn.Linear(4, 2)
    def training_step(self, batch, i):
        if MODE == "exception":
            raise RuntimeError("boom in training")
        if MODE == "sigint":
            print("READY", flush=True)
            time.sleep(60)
        x, y = batch
        loss = nn.functional.cross_entropy(self.net(x), y)
        self.log("train_loss", loss)
        return loss
    def validation_step(self, batch, i):
        x, y = batch
        self.log("val_loss", nn.functional.cross_entropy(self.net(x), y))
    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)

g = torch.Generator().manual_seed(0)
data = TensorDataset(torch.randn(16, 4, generator=g), torch.randint(0, 2, (16,), generator=g))
def trainer(logger):
    return L.Trainer(max_epochs=1, limit_train_batches=2, limit_val_batches=1, logger=logger,
                     enable_checkpointing=False, enable_progress_bar=False,
                     enable_model_summary=False, accelerator="cpu", log_every_n_steps=1,
                     num_sanity_val_steps=0)
def fit(logger):
    trainer(logger).fit(Tiny(), DataLoader(data, batch_size=8), DataLoader(data, batch_size=8))
"""


def _lightning_train(namespace: str) -> Callable[[Path], list[Any]]:
    def train(tmp: Path) -> list[Any]:
        ns: dict[str, Any] = {}
        exec(_lightning_src(namespace), ns)
        logger = ns["EMLogger"](name="contract-lightning")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Lightning's hints about workers and batches
            ns["fit"](logger)
        return [em.load_run(logger.save_dir)]
    return train


def _lightning_bad(namespace: str) -> Callable[[Path], None]:
    def bad(tmp: Path) -> None:
        flavour = "pytorch" if namespace == "lightning.pytorch" else "pytorch_lightning"
        mod = __import__(f"integrations.lightning.{flavour}", fromlist=["EMLogger"])
        logger = mod.EMLogger(name="contract-lightning-bad")
        try:
            for step in (0, 1):
                logger.log_metrics({"train_loss": "not a number"}, step=step)
        finally:
            logger.finalize("success")
    return bad


def _lightning_pickles(namespace: str) -> Callable[[Path], None]:
    def check(tmp: Path) -> None:
        flavour = "pytorch" if namespace == "lightning.pytorch" else "pytorch_lightning"
        mod = __import__(f"integrations.lightning.{flavour}", fromlist=["EMLogger"])
        logger = mod.EMLogger(name="contract-pickle")
        logger.log_metrics({"train_loss": 1.0}, step=0)
        copy = pickle.loads(pickle.dumps(logger))  # what ddp_spawn does to the Trainer
        copy.log_metrics({"train_loss": 0.5}, step=1)
        copy.finalize("success")
        runs = list((tmp / "runs").iterdir())
        assert len(runs) == 1
        back = em.load_run(runs[0])
        assert [r["sequence"]["step"] for r in back.metrics["train"]] == [0, 1]
        assert back.status is em.Status.COMPLETE
    return check


def _lightning_script(namespace: str) -> Callable[[str], list[str]]:
    def script(mode: str) -> list[str]:
        return _python(_lightning_src(namespace) + f"""
MODE = {mode!r}
logger = EMLogger(name="ending")
print("RUN", logger.save_dir, flush=True)
fit(logger)
""")
    return script


# ---------------------------------------------------------------------------- MXNet
_MXNET_SRC = """
import sys, time
import numpy as np
import mxnet as mx
import em_core as em
from integrations.mxnet import (EMBatchEndCallback, EMEpochEndCallback, EMEvalEndCallback,
                                EMGluonLogger)
MODE = "success"
rng = np.random.default_rng(0)
x = rng.normal(size=(16, 4)).astype("float32")
y = (x[:, 0] > 0).astype("float32")

def stop(*args):
    if MODE == "exception":
        raise RuntimeError("boom in training")
    if MODE == "sigint":
        print("READY", flush=True)
        time.sleep(60)

def module_fit(run):
    data = mx.sym.Variable("data")
    out = mx.sym.SoftmaxOutput(mx.sym.FullyConnected(data, num_hidden=2), name="softmax")
    mod = mx.mod.Module(out, context=mx.cpu())
    batch = EMBatchEndCallback(run, batch_size=8, frequent=1, module=mod)
    mod.fit(mx.io.NDArrayIter(x, y, batch_size=8), eval_data=mx.io.NDArrayIter(x, y, 8),
            num_epoch=1, optimizer_params={"learning_rate": 0.1},
            batch_end_callback=[batch, stop],
            epoch_end_callback=EMEpochEndCallback(run, batch_end=batch),
            eval_end_callback=EMEvalEndCallback(run, batch_end=batch))

def gluon_fit(run):
    from mxnet import autograd, gluon
    net = gluon.nn.Dense(2)
    net.initialize()
    trainer = gluon.Trainer(net.collect_params(), "sgd", {"learning_rate": 0.1})
    logger = EMGluonLogger(run, trainer=trainer, batch_size=8, frequent=1)
    loss_fn = gluon.loss.SoftmaxCrossEntropyLoss()
    metric = mx.metric.Accuracy()
    for i in range(2):
        xb, yb = mx.nd.array(x[8 * i:8 * i + 8]), mx.nd.array(y[8 * i:8 * i + 8])
        with autograd.record():
            out = net(xb)
            loss = loss_fn(out, yb)
        loss.backward()
        trainer.step(8)
        metric.update(yb, out)
        stop()
        logger.batch_end(0, i, metric, loss=loss.mean())
    logger.epoch_end(0, train=metric, val={"accuracy": 0.5})
"""


def _mxnet_train(fit: str) -> Callable[[Path], list[Any]]:
    def train(tmp: Path) -> list[Any]:
        ns: dict[str, Any] = {}
        exec(_MXNET_SRC, ns)
        run = em.create_run(name="contract-mxnet")
        ns[fit](run)
        run.finish()
        return [run]
    return train


def _mxnet_bad(fit: str) -> Callable[[Path], None]:
    def bad(tmp: Path) -> None:
        import mxnet as mx

        from integrations.mxnet import EMBatchEndCallback, EMGluonLogger

        run = em.create_run(name="contract-mxnet-bad")
        try:
            for i in (0, 1):
                if fit == "module_fit":
                    EMBatchEndCallback(run, frequent=1)(mx.model.BatchEndParam(
                        epoch=0, nbatch=i, eval_metric={"accuracy": "bad"}, locals=None))
                else:
                    EMGluonLogger(run, frequent=1).batch_end(0, i, {"accuracy": "bad"})
        finally:
            run.finish()
    return bad


def _mxnet_script(fit: str) -> Callable[[str], list[str]]:
    def script(mode: str) -> list[str]:
        return _python(_MXNET_SRC + f"""
MODE = {mode!r}
run = em.create_run(name="ending")
print("RUN", run.local, flush=True)
{fit}(run)
""")
    return script


# ---------------------------------------------------------------------------- log pipes
_LOGS = {
    "caffe": """\
I1205 10:00:00.000000  1234 solver.cpp:218] Iteration 0 (0 iter/s, 0.01s/10 iters), loss = 2.30
I1205 10:00:00.000000  1234 solver.cpp:237]     Train net output #0: loss = 2.30 (* 1 = 2.30 loss)
I1205 10:00:00.000000  1234 sgd_solver.cpp:105] Iteration 0, lr = 0.01
I1205 10:00:01.000000  1234 solver.cpp:330] Iteration 10, Testing net (#0)
I1205 10:00:01.000000  1234 solver.cpp:397]     Test net output #0: accuracy = 0.5
I1205 10:00:01.000000  1234 solver.cpp:397]     Test net output #1: loss = 1.9 (* 1 = 1.9 loss)
I1205 10:00:01.000000  1234 solver.cpp:218] Iteration 10 (10 iter/s, 1s/10 iters), loss = 1.5
I1205 10:00:01.000000  1234 solver.cpp:237]     Train net output #0: loss = 1.5 (* 1 = 1.5 loss)
I1205 10:00:02.000000  1234 solver.cpp:310] Optimization Done.
""",
    "mxnet": """\
INFO:root:Epoch[0] Batch [0-50]\tSpeed: 707.55 samples/sec\taccuracy=0.500000
INFO:root:Epoch[0] Batch [50-100]\tSpeed: 717.55 samples/sec\taccuracy=0.600000
INFO:root:Epoch[0] Train-accuracy=0.610000
INFO:root:Epoch[0] Validation-accuracy=0.550000
""",
}


def _em(*args: str) -> list[str]:
    return [sys.executable, "-m", "em_core.cli", *args]


def _pipe_train(kind: str) -> Callable[[Path], list[Any]]:
    def train(tmp: Path) -> list[Any]:
        proc = subprocess.run(_em(kind, "--name", f"contract-{kind}"), input=_LOGS[kind],
                              text=True, capture_output=True, env=_env(), timeout=120,
                              check=False)
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout == _LOGS[kind]  # the log passes through unchanged
        return [em.load_run(p) for p in (tmp / "runs").iterdir()]
    return train


def _pipe_script(kind: str) -> Callable[[str], list[str]]:
    def script(mode: str) -> list[str]:
        body = {"success": f"import sys; sys.stdout.write({_LOGS[kind]!r})",
                "exception": (f"import sys; sys.stdout.write({_LOGS[kind]!r}); "
                              "raise RuntimeError('boom in training')"),
                "sigint": ("import sys, time; print('READY', flush=True); time.sleep(60)")}
        return _em(kind, "run", "--name", "ending", "--", sys.executable, "-c", body[mode])
    return script


# ---------------------------------------------------------------------------- Horovod
_HVD_SRC = """
import sys, time
import torch
import horovod.torch as hvd
import em_core as em
MODE = "success"
hvd.init()
model = torch.nn.Linear(4, 2)
opt = hvd.DistributedOptimizer(torch.optim.SGD(model.parameters(), lr=0.1),
                               named_parameters=model.named_parameters())
def fit(run):
    run.hparams.parse(dist_hvd=hvd)
    for step in range(2):
        if MODE == "exception":
            raise RuntimeError("boom in training")
        if MODE == "sigint":
            print("READY", flush=True)
            time.sleep(60)
        opt.zero_grad()
        loss = model(torch.randn(8, 4)).pow(2).mean()
        loss.backward()
        opt.step()
        run.log("train", {"loss": loss}, step=step)
"""


def _hvd_train(tmp: Path) -> list[Any]:
    ns: dict[str, Any] = {}
    exec(_HVD_SRC, ns)
    run = em.create_run(name="contract-hvd")
    ns["fit"](run)
    assert run.hparams.get("distributed.horovod.size") == 1
    run.finish()
    return [run]


def _hvd_script(mode: str) -> list[str]:
    return _python(_HVD_SRC + f"""
MODE = {mode!r}
run = em.create_run(name="ending")
print("RUN", run.local, flush=True)
fit(run)
""")


# ---------------------------------------------------------------------------- the cases
CASES = [
    Case("keras_fit", "keras", {"train": {"loss", "accuracy", "learning_rate"},
                                "val": {"loss", "accuracy"}},
         _keras_train(False), _keras_bad(False), _keras_script(False)),
    # Neither Keras callback ends a run (the script's run ends by em's exit hooks), so the
    # endings are asked once, of fit: each costs a process importing TensorFlow.
    Case("keras_evaluate", "keras", {"test": {"loss", "accuracy"}},
         _keras_train(True), _keras_bad(True), _keras_script(True), endings=False),
    Case("lightning.pytorch", "lightning", {"train": {"loss"}, "val": {"loss"}},
         _lightning_train("lightning.pytorch"), _lightning_bad("lightning.pytorch"),
         _lightning_script("lightning.pytorch"), _lightning_pickles("lightning.pytorch")),
    Case("pytorch_lightning", "lightning", {"train": {"loss"}, "val": {"loss"}},
         _lightning_train("pytorch_lightning"), _lightning_bad("pytorch_lightning"),
         _lightning_script("pytorch_lightning"), _lightning_pickles("pytorch_lightning")),
    Case("mxnet_module", "mxnet", {"train": {"accuracy", "samples_per_sec"},
                                   "val": {"accuracy"}},
         _mxnet_train("module_fit"), _mxnet_bad("module_fit"), _mxnet_script("module_fit")),
    Case("mxnet_gluon", "mxnet", {"train": {"accuracy", "loss", "lr", "samples_per_sec"},
                                  "val": {"accuracy"}},
         _mxnet_train("gluon_fit"), _mxnet_bad("gluon_fit"), _mxnet_script("gluon_fit")),
    Case("em_caffe", "pipes", {"train": {"loss", "lr"}, "test": {"accuracy", "loss"}},
         _pipe_train("caffe"), None, _pipe_script("caffe")),
    Case("em_mxnet", "pipes", {"train": {"accuracy", "samples_per_sec"}, "val": {"accuracy"}},
         _pipe_train("mxnet"), None, _pipe_script("mxnet")),
    Case("horovod_torch", "horovod", {"train": {"loss"}}, _hvd_train, None, _hvd_script),
]
PARAMS = [pytest.param(c, q, id=f"{c.name}-{q}",
                       marks=[pytest.mark.slow] if q.startswith("end_") else [])
          for c in CASES if c.session in SELECTED for q in c.questions()]


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "EM_ALL_RANKS")}
    return {**env, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1", **extra}


def _runs(tmp: Path) -> list[Path]:
    root = tmp / "runs"
    return sorted(root.iterdir()) if root.exists() else []


@pytest.mark.parametrize(("case", "question"), PARAMS)
def test_contract(case: Case, question: str, tmp_path: Path,
                  monkeypatch: pytest.MonkeyPatch) -> None:
    {"logs": _logs, "rank": _rank, "pickle": _pickle, "warn_once": _warn_once,
     "strict": _strict}.get(question, _ending)(case, question, tmp_path, monkeypatch)


def _logs(case: Case, question: str, tmp: Path, mp: pytest.MonkeyPatch) -> None:
    reads: list[int] = []
    real = em.Run.metric_records
    with pytest.MonkeyPatch.context() as m:
        m.setattr(em.Run, "metric_records", lambda self: reads.append(1) or real(self))
        runs = case.train(tmp)
    assert not reads, "an integration read the whole metric log back while training"
    logged: dict[str, set[str]] = {}
    for run in runs:
        for type_, records in em.load_run(run.local).metrics.items():
            for r in records:
                logged.setdefault(type_, set()).update(r["value"])
    assert set(logged) == set(case.expected), logged
    for type_, names in case.expected.items():
        assert names <= logged[type_], (type_, logged[type_])
    assert all(em.load_run(r.local).status is em.Status.COMPLETE for r in runs)


def _rank(case: Case, question: str, tmp: Path, mp: pytest.MonkeyPatch) -> None:
    mp.setenv("RANK", "1")
    mp.setenv("WORLD_SIZE", "2")
    if case.session == "lightning":
        from lightning_utilities.core.rank_zero import rank_zero_only

        mp.setattr(rank_zero_only, "rank", 1, raising=False)
        flavour = "pytorch" if case.name == "lightning.pytorch" else "pytorch_lightning"
        logger = __import__(f"integrations.lightning.{flavour}",
                            fromlist=["EMLogger"]).EMLogger(name="r1")
        logger.log_hyperparams({"lr": 0.1})
        logger.log_metrics({"train_loss": 1.0}, step=0)
        logger.finalize("success")
        assert logger.save_dir is None and logger.version is None
        assert isinstance(logger.run, em.NoOpRun)
    elif case.session == "pipes":
        kind = case.name.split("_", 1)[1]
        proc = subprocess.run(_em(kind, "--name", "r1"), input=_LOGS[kind], text=True,
                              capture_output=True, env=_env(RANK="1", WORLD_SIZE="2"),
                              timeout=120, check=False)
        assert proc.returncode == 0 and proc.stdout == _LOGS[kind], proc.stderr
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            case.train(tmp)
    assert _runs(tmp) == [] and not (tmp / "artifacts").exists()


def _pickle(case: Case, question: str, tmp: Path, mp: pytest.MonkeyPatch) -> None:
    assert case.pickles is not None
    case.pickles(tmp)


def _warn_once(case: Case, question: str, tmp: Path, mp: pytest.MonkeyPatch) -> None:
    assert case.bad_value is not None
    mp.setenv("EM_STRICT", "0")
    mp.setattr(em.errors, "_warned", set())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        case.bad_value(tmp)  # the same bad value twice: training goes on, one warning
    said = [str(w.message) for w in caught if issubclass(w.category, em.EmWarning)]
    assert len(said) == 1, said
    assert "not a number" in said[0] or "bad" in said[0]


def _strict(case: Case, question: str, tmp: Path, mp: pytest.MonkeyPatch) -> None:
    assert case.bad_value is not None
    mp.setenv("EM_STRICT", "1")
    with pytest.raises((TypeError, ValueError)):
        case.bad_value(tmp)


_STATUS = {"end_success": em.Status.COMPLETE, "end_exception": em.Status.FAILED,
           "end_sigint": em.Status.KILLED}


def _ending(case: Case, question: str, tmp: Path, mp: pytest.MonkeyPatch) -> None:
    mode = question[len("end_"):]
    proc = subprocess.Popen(case.script(mode), env=_env(EM_STRICT="0"), cwd=tmp,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        if mode == "sigint":
            assert proc.stdout is not None
            deadline = time.monotonic() + 120
            for line in proc.stdout:  # training has started and is inside a hook
                if "READY" in line or time.monotonic() > deadline:
                    break
            proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    runs = _runs(tmp)
    assert len(runs) == 1, (runs, err[-2000:])
    status = em.load_run(runs[0]).status
    assert status is _STATUS[question], (status, proc.returncode, err[-2000:])
    assert (proc.returncode == 0) == (mode == "success"), (proc.returncode, err[-2000:])
