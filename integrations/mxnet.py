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
from collections.abc import Mapping
from typing import Any

import em_core as em

from .mxnet_hparams import (
    kvstore_hparams,
    log_fit_args,
    log_trainer_hparams,
    optimizer_hparams,
)

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


class _Progress:
    """The global step of one :class:`EMBatchEndCallback`, which the epoch-end and eval-end
    callbacks given it as ``batch_end=`` share."""

    def __init__(self) -> None:
        self.step = -1  # index of the last batch seen, counted across epochs
        self.metric: Any = None  # the training EvalMetric fit() uses
        self.started = False


def _last_train_step(run: Any) -> int | None:
    """The step of the run's last 'train' record (``Run.last_point``: cheap, whoever logged
    it); None when there is none or the run cannot tell."""
    try:
        point = run.last_point("train")
    except (em.EmError, OSError, AttributeError) as exc:
        em.handle_problem(exc, key="mxnet-last-point")
        return None
    return None if point is None else int(point.step)


def _step(run: Any, progress: _Progress | None, epoch: int) -> int:
    """The step for an epoch-end or eval-end point: the batch callback's; else the run's
    last training step or the epoch, whichever is larger (an epoch-end callback alone logs
    at step=epoch, as before)."""
    if progress is not None and progress.step >= 0:
        return progress.step
    last = _last_train_step(run)
    return epoch if last is None else max(last, epoch)


def _check_batch_end(batch_end: Any) -> None:
    if batch_end is not None and not isinstance(batch_end, EMBatchEndCallback):
        raise TypeError(f"batch_end must be the run's EMBatchEndCallback or None, got "
                        f"{batch_end!r}")


_PROGRESS_ATTR = "_em_mxnet_batch_progress"


class _SharesProgress:
    """Epoch-end and eval-end callbacks: on the step axis of the run's batch callback."""

    run: Any
    _progress: _Progress | None

    @property
    def progress(self) -> _Progress | None:
        """The batch callback's progress: ``batch_end``'s, else the run's batch callback's."""
        return self._progress or getattr(self.run, _PROGRESS_ATTR, None)


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
        self.progress = _Progress()
        self._off = isinstance(run, em.NoOpRun)
        if not self._off:
            # the run carries it, so that the run's epoch-end and eval-end callbacks made
            # without batch_end= still share this step axis and see this metric
            try:
                setattr(run, _PROGRESS_ATTR, self.progress)
            except AttributeError:  # an object that takes no attributes: batch_end= only
                pass
        self._tic = time.perf_counter()
        self._since = 0

    def __call__(self, param: Any) -> None:
        if self._off:
            return
        prog = self.progress
        if not prog.started:  # a run that has training points already: continue after them
            prog.started = True
            last = _last_train_step(self.run)
            if last is not None and last > prog.step:
                prog.step = last
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
            hp = optimizer_hparams(opt)
            hp.update(kvstore_hparams(getattr(module, "_kvstore", None)))
            self.run.hparams["module_optimizer"] = hp
        except Exception as exc:  # noqa: BLE001 - a private attribute may change
            em.handle_problem(exc, key="mxnet-module-optimizer")


class EMEvalEndCallback(_SharesProgress):
    """``eval_end_callback`` for ``Module.fit``: validation metrics as type ``'val'``.

    Fires once per epoch after ``fit`` scored ``eval_data``; logs the eval metric's
    name/value pairs at ``epoch=param.epoch`` and at the global step of the run's
    :class:`EMBatchEndCallback` (``batch_end``, else the last one made for this run); with
    none, at the step of the run's last training
    point (``run.last_point('train')``) or at ``step=epoch``, whichever is larger.

    Args:
        run: The em run.
        batch_end: The run's :class:`EMBatchEndCallback`, to share its step axis exactly.
    """

    def __init__(self, run: Any, *, batch_end: EMBatchEndCallback | None = None) -> None:
        _require_mxnet()
        _check_batch_end(batch_end)
        self.run = run
        self._progress = batch_end.progress if batch_end is not None else None
        self._off = isinstance(run, em.NoOpRun)

    def __call__(self, param: Any) -> None:
        if self._off:
            return
        try:
            values = _name_values(param.eval_metric)
            step = _step(self.run, self.progress, param.epoch)
            if values:
                self.run.log("val", values, step=step, epoch=param.epoch)
        except Exception as exc:  # noqa: BLE001 - logging must not stop training
            em.handle_problem(exc, key="mxnet-eval-end")


class EMEpochEndCallback(_SharesProgress):
    """``epoch_end_callback`` for ``Module.fit``: the epoch's training metrics, checkpoints.

    Fires after each epoch with ``(epoch, symbol, arg_params, aux_params)``. Logs as type
    ``'train'`` the training metric over the whole epoch (what MXNet prints as
    ``Train-...``; read from ``eval_metric``, or from the metric ``batch_end`` saw) at the
    global step of ``batch_end``; without it, at the step of the run's last training point
    (``run.last_point('train')``) or at ``step=epoch``, whichever is larger. MXNet does not
    hand the metric to epoch-end callbacks: without ``eval_metric`` or ``batch_end`` there is
    nothing to log and em warns once. With ``checkpoint_prefix``, every ``period``
    epochs the files ``<prefix>-symbol.json`` and ``<prefix>-<epoch+1:04d>.params`` (MXNet's
    ``do_checkpoint`` names) are copied into an output artifact ``<run name>-checkpoints``;
    em saves them itself unless this run wrote them already (``do_checkpoint`` earlier in the
    list): files left by an earlier run are overwritten, never recorded.

    Args:
        run: The em run.
        batch_end: The run's :class:`EMBatchEndCallback`: its step axis and the metric it saw.
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
        self._progress = batch_end.progress if batch_end is not None else None
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
            metric = self.eval_metric
            progress = self.progress
            if metric is None and progress is not None:
                metric = progress.metric
            if metric is None:
                raise ValueError("EMEpochEndCallback has no training metric to log (MXNet does "
                                 "not pass it to epoch-end callbacks): pass "
                                 "batch_end=<the run's EMBatchEndCallback> or eval_metric=")
            values = _name_values(metric, whole=True)
            step = _step(self.run, progress, epoch)
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
