"""MXNet for em: callbacks for ``Module.fit`` and a logger for hand-written Gluon loops.

Example (Module API)::

    import em_core as em
    from integrations.mxnet import (EMBatchEndCallback, EMEpochEndCallback,
                                    EMEvalEndCallback, log_fit_args)

    run = em.create_run(name='mlp')
    batch_cb = EMBatchEndCallback(run, batch_size=32, frequent=50, module=mod)
    mod.fit(train_iter, eval_data=val_iter,
            **log_fit_args(run, optimizer='sgd', optimizer_params={'learning_rate': 0.1},
                           num_epoch=3),
            batch_end_callback=[batch_cb, mx.callback.Speedometer(32, 50)],
            epoch_end_callback=EMEpochEndCallback(run, batch_end=batch_cb,
                                                  checkpoint_prefix='ckpt/mlp', period=1),
            eval_end_callback=EMEvalEndCallback(run, batch_end=batch_cb))
    run.finish()

Example (Gluon loop)::

    logger = EMGluonLogger(run, trainer=trainer, batch_size=32, frequent=50)
    for epoch in range(3):
        for i, (x, y) in enumerate(train_data):
            ...
            trainer.step(32)
            metric.update(y, out)
            logger.batch_end(epoch, i, metric, loss=loss.mean())
        logger.epoch_end(epoch, train=metric, val={'accuracy': val_acc})

On ranks other than 0 ``em.create_run`` returns an ``em.NoOpRun``; every hook here then
returns at once and writes nothing (checkpoints are not saved by em either).
MXNet is imported only when a callback is created (``pip install 'em[mxnet]'``).
"""

from __future__ import annotations

import os
import time
import weakref
from collections.abc import Mapping
from typing import Any

import em_core as em
from em_core.sanitize import json_safe

__all__ = ["EMBatchEndCallback", "EMEpochEndCallback", "EMEvalEndCallback", "EMGluonLogger",
           "log_fit_args", "log_trainer_hparams"]


def _require_mxnet() -> Any:
    try:
        import mxnet
    except ModuleNotFoundError as exc:
        raise ModuleNotFoundError("integrations.mxnet needs MXNet: pip install 'em[mxnet]'"
                                  ) from exc
    return mxnet


def _name_values(metric: Any, *, whole: bool = False) -> dict[str, Any]:
    """``{name: value}`` of an ``EvalMetric`` or a mapping. ``whole``: the value since the
    last ``reset()`` (``get_global_name_value``, what MXNet prints as ``Train-...`` at the end
    of an epoch), not since the last ``reset_local()`` (which ``Speedometer`` calls every
    ``frequent`` batches)."""
    if metric is None:
        return {}
    if isinstance(metric, Mapping):
        return dict(metric)
    get = getattr(metric, "get_global_name_value", None) if whole else None
    return {str(k): v for k, v in (get or metric.get_name_value)()}


def _positive_int(value: Any, name: str, *, optional: bool = False) -> None:
    if optional and value is None:
        return
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be an int >= 1{' or None' if optional else ''}, "
                         f"got {value!r}")


def _scheduler(sched: Any) -> Any:
    if sched is None:
        return None
    out: dict[str, Any] = {"type": type(sched).__name__}
    for key in ("base_lr", "step", "factor", "stop_factor_lr", "max_update", "final_lr",
                "pwr", "warmup_steps", "warmup_begin_lr", "warmup_mode"):
        value = getattr(sched, key, None)
        if isinstance(value, (int, float, str, list, tuple)):
            out[key] = json_safe(value, key)
    return out


def _optimizer_hparams(opt: Any) -> dict[str, Any]:
    """What an ``mx.optimizer.Optimizer`` holds: its kind and settings."""
    out: dict[str, Any] = {"optimizer": type(opt).__name__.lower()}
    try:
        out["learning_rate"] = float(opt.learning_rate)
    except (AttributeError, TypeError, ValueError, RuntimeError):
        pass
    for key in ("wd", "momentum", "rescale_grad", "clip_gradient", "beta1", "beta2",
                "epsilon", "multi_precision", "begin_num_update"):
        value = getattr(opt, key, None)
        if isinstance(value, (int, float, bool)):
            out[key] = value
    if getattr(opt, "lr_scheduler", None) is not None:
        out["lr_scheduler"] = _scheduler(opt.lr_scheduler)
    return out


def _kvstore_hparams(kv: Any) -> dict[str, Any]:
    if kv is None:
        return {}
    if isinstance(kv, str):
        return {"kvstore": kv}
    out: dict[str, Any] = {"kvstore": str(getattr(kv, "type", type(kv).__name__))}
    workers = getattr(kv, "num_workers", None)
    if isinstance(workers, int) and ("dist" in out["kvstore"]
                                     or out["kvstore"].startswith(("horovod", "byteps"))):
        out["kvstore_num_workers"] = workers
    return out


def log_fit_args(run: Any, **fit_kwargs: Any) -> dict[str, Any]:
    """Record ``Module.fit`` arguments as given, and return them unchanged for ``fit(**...)``.

    Recorded as hyperparameters, when present: ``optimizer`` (a name, or an
    ``mx.optimizer.Optimizer``: its lowercased class name, and its settings as
    ``optimizer_params`` since MXNet then ignores the ``optimizer_params`` argument),
    ``optimizer_params`` (a dict or ``(name, value)`` pairs, as ``fit`` takes them),
    ``num_epoch``, ``begin_epoch``, ``kvstore`` (a name, or a KVStore: its type, and the
    worker count when distributed) and ``initializer`` (its class name). Other keyword
    arguments pass through unrecorded.

    Raises:
        TypeError: ``optimizer_params`` is neither a mapping nor (name, value) pairs.
    """
    rec: dict[str, Any] = {}
    for key in ("optimizer", "num_epoch", "begin_epoch", "kvstore", "initializer"):
        if key in fit_kwargs:
            value = fit_kwargs[key]
            rec[key] = json_safe(value, key)  # an object (initializer...): its class name
    if "optimizer_params" in fit_kwargs:
        params = fit_kwargs["optimizer_params"]
        try:
            pairs = dict(params)
        except (TypeError, ValueError) as exc:
            raise TypeError(f"optimizer_params must be a dict or a sequence of (name, value) "
                            f"pairs, as Module.fit takes it; got {params!r}") from exc
        rec["optimizer_params"] = {str(k): json_safe(v, f"optimizer_params.{k}")
                                   for k, v in pairs.items()}
    opt = fit_kwargs.get("optimizer")
    if opt is not None and not isinstance(opt, str):  # an Optimizer: what it holds
        held = _optimizer_hparams(opt)
        rec["optimizer"] = held.pop("optimizer")
        rec["optimizer_params"] = held
    kv = fit_kwargs.get("kvstore")
    if kv is not None and not isinstance(kv, str):
        rec.update(_kvstore_hparams(kv))
    if rec:
        try:
            run.hparams.update(rec)
        except Exception as exc:  # noqa: BLE001 - recording must not stop the training
            em.handle_problem(exc, key="mxnet-fit-args")
    return fit_kwargs


def log_trainer_hparams(run: Any, trainer: Any) -> None:
    """Record a Gluon ``Trainer``: optimizer, learning rate, weight decay, momentum,
    rescale_grad, lr scheduler, and the kvstore (type, and workers when distributed)."""
    try:
        opt = trainer.optimizer
        hp = _optimizer_hparams(opt)
        hp["learning_rate"] = float(trainer.learning_rate)
        kv = getattr(trainer, "_kvstore", None)  # private; set once the trainer has stepped
        if kv is None:
            params = getattr(trainer, "_kvstore_params", None) or {}
            kv = params.get("kvstore") if isinstance(params.get("kvstore"), str) else None
        hp.update(_kvstore_hparams(kv))
        run.hparams.update(hp)
    except Exception as exc:  # noqa: BLE001 - a changed Trainer must not stop training
        em.handle_problem(exc, key="mxnet-trainer-hparams")


class _Progress:
    """The global step, shared by the callbacks of one run."""

    def __init__(self) -> None:
        self.step = -1  # index of the last batch seen, counted across epochs
        self.metric: Any = None  # the training EvalMetric fit() uses


# The callbacks of one run find each other's progress through the run: the epoch-end and
# eval-end callbacks then share the batch callback's step axis and metric without batch_end=.
_PROGRESS: weakref.WeakKeyDictionary[Any, _Progress] = weakref.WeakKeyDictionary()


def _progress_of(run: Any) -> _Progress:
    try:
        return _PROGRESS.setdefault(run, _Progress())
    except TypeError:  # a run that cannot be weakly referenced: this callback alone
        return _Progress()


def _check_batch_end(batch_end: Any) -> None:
    if batch_end is not None and not isinstance(batch_end, EMBatchEndCallback):
        raise TypeError(f"batch_end must be the run's EMBatchEndCallback or None, got "
                        f"{batch_end!r}")


class EMBatchEndCallback:
    """``batch_end_callback`` for ``Module.fit``: training metrics every ``frequent`` batches.

    Fires after every batch (MXNet calls it with a ``BatchEndParam``; only ``epoch``,
    ``nbatch`` and ``eval_metric`` are read). Every ``frequent`` batches it logs the eval
    metric's name/value pairs and ``samples_per_sec`` (with ``batch_size``) as type
    ``'train'``, at ``epoch=param.epoch`` and a global ``step``: the number of batches
    seen so far across epochs, minus one. With ``module=`` it records once, after the first
    batch, the optimizer as the Module holds it (``mod._optimizer``, private: read with care)
    and the kvstore, under hyperparameter ``module_optimizer``.

    Args:
        run: The em run (an ``em.NoOpRun`` on ranks > 0: nothing happens).
        batch_size: Samples per batch, for ``samples_per_sec`` (None: not logged).
        frequent: Log every this many batches.
        module: The ``mx.mod.Module`` being fitted, for its optimizer settings.
    """

    def __init__(self, run: Any, batch_size: int | None = None, *, frequent: int = 50,
                 module: Any = None) -> None:
        _require_mxnet()
        _positive_int(frequent, "frequent")
        _positive_int(batch_size, "batch_size", optional=True)
        self.run = run
        self.batch_size = batch_size
        self.frequent = frequent
        self.module = module
        self.progress = _progress_of(run)
        self._off = isinstance(run, em.NoOpRun)
        self._tic = time.perf_counter()
        self._since = 0

    def __call__(self, param: Any) -> None:
        if self._off:
            return
        prog = self.progress
        prog.step += 1
        prog.metric = param.eval_metric
        if param.nbatch == 0:  # speed is measured from the end of an epoch's first batch
            self._tic, self._since = time.perf_counter(), 0
        else:
            self._since += 1
        if self.module is not None:
            self._module_hparams()
        if (param.nbatch + 1) % self.frequent:
            return
        try:
            values = _name_values(param.eval_metric)
            now = time.perf_counter()
            if self.batch_size is not None and self._since and now > self._tic:
                values["samples_per_sec"] = self._since * self.batch_size / (now - self._tic)
            self._tic, self._since = now, 0
            if values:
                self.run.log("train", values, step=prog.step, epoch=param.epoch)
        except Exception as exc:  # noqa: BLE001 - logging must not stop training
            em.handle_problem(exc, key="mxnet-batch-end")

    def _module_hparams(self) -> None:
        module, self.module = self.module, None  # once
        try:
            opt = getattr(module, "_optimizer", None)
            if opt is None:
                raise AttributeError("the Module has no _optimizer after init_optimizer(); "
                                     "module_optimizer is not recorded")
            hp = _optimizer_hparams(opt)
            hp.update(_kvstore_hparams(getattr(module, "_kvstore", None)))
            self.run.hparams["module_optimizer"] = hp
        except Exception as exc:  # noqa: BLE001 - a private attribute may change
            em.handle_problem(exc, key="mxnet-module-optimizer")


class EMEvalEndCallback:
    """``eval_end_callback`` for ``Module.fit``: validation metrics as type ``'val'``.

    Fires once per epoch after ``fit`` scored ``eval_data``; logs the eval metric's
    name/value pairs at ``epoch=param.epoch`` and at the global step of the run's
    :class:`EMBatchEndCallback` (found through the run; ``step=epoch`` when the run has none).

    Args:
        run: The em run.
        batch_end: The run's :class:`EMBatchEndCallback` (optional: found through the run).
    """

    def __init__(self, run: Any, *, batch_end: EMBatchEndCallback | None = None) -> None:
        _require_mxnet()
        _check_batch_end(batch_end)
        self.run = run
        self.progress = batch_end.progress if batch_end is not None else _progress_of(run)
        self._off = isinstance(run, em.NoOpRun)

    def __call__(self, param: Any) -> None:
        if self._off:
            return
        try:
            values = _name_values(param.eval_metric)
            step = self.progress.step if self.progress.step >= 0 else param.epoch
            if values:
                self.run.log("val", values, step=step, epoch=param.epoch)
        except Exception as exc:  # noqa: BLE001 - logging must not stop training
            em.handle_problem(exc, key="mxnet-eval-end")


class EMEpochEndCallback:
    """``epoch_end_callback`` for ``Module.fit``: the epoch's training metrics, checkpoints.

    Fires after each epoch with ``(epoch, symbol, arg_params, aux_params)``. Logs as type
    ``'train'`` the training metric over the whole epoch (what MXNet prints as
    ``Train-...``; read from ``eval_metric``, or from the metric the run's
    :class:`EMBatchEndCallback` saw) at that callback's global step (``step=epoch`` when the
    run has none). MXNet does not hand the metric to epoch-end callbacks: without either,
    there is nothing to log and em warns once. With ``checkpoint_prefix``, every ``period``
    epochs the files ``<prefix>-symbol.json`` and ``<prefix>-<epoch+1:04d>.params`` (MXNet's
    ``do_checkpoint`` names) are copied into an output artifact ``<run name>-checkpoints``;
    em saves them itself unless this run wrote them already (``do_checkpoint`` earlier in the
    list): files left by an earlier run are overwritten, never recorded.

    Args:
        run: The em run.
        batch_end: The run's :class:`EMBatchEndCallback` (optional: found through the run).
        eval_metric: The training ``EvalMetric`` given to ``fit`` (instead of the one the
            batch callback saw).
        checkpoint_prefix: Where checkpoints are (or are to be) saved.
        period: Checkpoint every this many epochs.
    """

    def __init__(self, run: Any, *, batch_end: EMBatchEndCallback | None = None,
                 eval_metric: Any = None, checkpoint_prefix: str | os.PathLike[str] | None = None,
                 period: int = 1) -> None:
        _require_mxnet()
        _check_batch_end(batch_end)
        _positive_int(period, "period")
        if checkpoint_prefix is not None and not isinstance(checkpoint_prefix,
                                                            (str, os.PathLike)):
            raise TypeError(f"checkpoint_prefix must be a path (str or os.PathLike) or None, "
                            f"got {checkpoint_prefix!r}")
        self.run = run
        self.progress = batch_end.progress if batch_end is not None else _progress_of(run)
        self.eval_metric = eval_metric
        self.checkpoint_prefix = (os.fspath(checkpoint_prefix) if checkpoint_prefix is not None
                                  else None)
        self.period = period
        self.artifact: Any = None
        self._off = isinstance(run, em.NoOpRun)
        # checkpoint files as an earlier run left them: unchanged, they are not this run's
        self._before = self._checkpoint_files() if self.checkpoint_prefix else {}

    def __call__(self, epoch: int, symbol: Any = None, arg_params: Any = None,
                 aux_params: Any = None) -> None:
        if self._off:
            return
        try:
            metric = self.eval_metric if self.eval_metric is not None else self.progress.metric
            if metric is None:
                raise ValueError("EMEpochEndCallback has no training metric to log (MXNet does "
                                 "not pass it to epoch-end callbacks): put an "
                                 "EMBatchEndCallback for this run in batch_end_callback, or "
                                 "pass eval_metric=")
            values = _name_values(metric, whole=True)
            step = self.progress.step if self.progress.step >= 0 else epoch
            if values:
                self.run.log("train", values, step=step, epoch=epoch)
        except Exception as exc:  # noqa: BLE001 - logging must not stop training
            em.handle_problem(exc, key="mxnet-epoch-end")
        if self.checkpoint_prefix and (epoch + 1) % self.period == 0:
            self._checkpoint(epoch, symbol, arg_params, aux_params)

    def _checkpoint(self, epoch: int, symbol: Any, arg_params: Any, aux_params: Any) -> None:
        prefix = self.checkpoint_prefix
        files = [f"{prefix}-symbol.json", f"{prefix}-{epoch + 1:04d}.params"]
        try:
            if arg_params is not None and not self._written_by_this_run(files[1]):
                mx = _require_mxnet()
                folder = os.path.dirname(str(prefix))
                if folder:
                    os.makedirs(folder, exist_ok=True)
                mx.model.save_checkpoint(prefix, epoch + 1, symbol, arg_params,
                                         aux_params or {})
            if self.artifact is None:
                self.artifact = em.create_artifact(f"{self.run.name}-checkpoints",
                                                   description="MXNet checkpoints")
                self.run.mark_output(self.artifact)
            for path in files:
                if self._written_by_this_run(path):
                    self.artifact.add_file(path)
        except Exception as exc:  # noqa: BLE001 - a full disk must not stop training
            em.handle_problem(exc, key="mxnet-checkpoint")

    def _checkpoint_files(self) -> dict[str, tuple[int, int, int]]:
        folder, stem = os.path.split(str(self.checkpoint_prefix))
        try:
            names = [n for n in os.listdir(folder or ".") if n.startswith(stem + "-")]
        except OSError:
            return {}
        found = {}
        for name in names:
            path = os.path.join(folder, name)
            try:
                found[path] = _identity(path)
            except OSError:
                continue
        return found

    def _written_by_this_run(self, path: str) -> bool:
        try:
            return self._before.get(path) != _identity(path)
        except OSError:
            return False


def _identity(path: str) -> tuple[int, int, int]:
    st = os.stat(path)
    return st.st_ino, st.st_size, st.st_mtime_ns




class EMGluonLogger:
    """Logging from a hand-written Gluon training loop.

    Call :meth:`batch_end` after each batch and :meth:`epoch_end` after each epoch. Every
    ``frequent`` batches, ``batch_end`` logs the metric values (an ``EvalMetric`` or a
    mapping), extra scalars given as keywords (``loss=...``; one-element NDArrays are
    fine), the trainer's current ``lr`` and ``samples_per_sec`` as type ``'train'`` at a
    global step counting batches across epochs. ``epoch_end`` logs ``train=`` as
    ``'train'`` and ``val=`` as ``'val'`` at the same step (an ``EvalMetric``'s value since
    its last ``reset()``, or a mapping). The trainer's settings are
    recorded once, at the first batch (see :func:`log_trainer_hparams`).
    """

    def __init__(self, run: Any, *, trainer: Any = None, batch_size: int | None = None,
                 frequent: int = 50) -> None:
        _require_mxnet()
        _positive_int(frequent, "frequent")
        _positive_int(batch_size, "batch_size", optional=True)
        self.run = run
        self.trainer = trainer
        self.batch_size = batch_size
        self.frequent = frequent
        self.step = -1
        self._hparams_done = trainer is None
        self._off = isinstance(run, em.NoOpRun)
        self._tic = time.perf_counter()
        self._since = 0

    def batch_end(self, epoch: int, nbatch: int, metric: Any = None, **scalars: Any) -> None:
        """After batch ``nbatch`` (0-based within the epoch) of ``epoch``."""
        if self._off:
            return
        self.step += 1
        if nbatch == 0:  # speed is measured from the end of an epoch's first batch
            self._tic, self._since = time.perf_counter(), 0
        else:
            self._since += 1
        if not self._hparams_done:
            self._hparams_done = True
            log_trainer_hparams(self.run, self.trainer)
        if (nbatch + 1) % self.frequent:
            return
        try:
            values = _name_values(metric)
            values.update(scalars)
            if self.trainer is not None:
                values["lr"] = float(self.trainer.learning_rate)
            now = time.perf_counter()
            if self.batch_size is not None and self._since and now > self._tic:
                values["samples_per_sec"] = self._since * self.batch_size / (now - self._tic)
            self._tic, self._since = now, 0
            if values:
                self.run.log("train", values, step=self.step, epoch=epoch)
        except Exception as exc:  # noqa: BLE001 - logging must not stop training
            em.handle_problem(exc, key="mxnet-gluon-batch")

    def epoch_end(self, epoch: int, *, train: Any = None, val: Any = None) -> None:
        """After ``epoch``: its training and validation metrics."""
        if self._off:
            return
        try:
            step = max(self.step, 0)
            for kind, metric in (("train", train), ("val", val)):
                values = _name_values(metric, whole=True)
                if values:
                    self.run.log(kind, values, step=step, epoch=epoch)
        except Exception as exc:  # noqa: BLE001 - logging must not stop training
            em.handle_problem(exc, key="mxnet-gluon-epoch")
