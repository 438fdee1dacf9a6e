"""``EMFitCallback`` and ``EMEvalCallback``: record a Keras ``fit``/``evaluate`` in an em run."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import em_core as em

from . import _describe
from ._base import DualProtocolCallback

__all__ = ["EMEvalCallback", "EMFitCallback"]

def _check_run(run: Any, who: str) -> bool:
    """Validate ``run``; True when it records (False for a rank's ``NoOpRun``)."""
    if isinstance(run, em.NoOpRun):
        return False
    if not isinstance(run, em.Run):
        raise TypeError(f"{who} needs the em run to record into (from em.create_run()), got "
                        f"{type(run).__name__}: {run!r:.100}")
    status = run.status
    if status is not em.Status.RUNNING or run.end_timestamp is not None:
        raise ValueError(f"{who}: run {run.alternative_name!r} has ended (status "
                         f"{status.value!r}); create a new run with em.create_run()")
    return True


def _last_train_point(run: Any) -> tuple[int, int | None] | None:
    """The run's last 'train' point (step, epoch), whoever logged it (a Keras callback, a
    custom loop's ``run.log``, an earlier process of a resumed run). ``Run.last_point``
    reads only what was logged since its previous call: no cost that grows with the run."""
    try:
        return run.last_point("train")  # type: ignore[no-any-return]
    except (em.EmError, OSError) as exc:
        em.handle_problem(exc, key="keras:last-point")
        return None


def _log(run: Any, type_: str, metrics: dict[str, Any], step: int, epoch: int | None) -> None:
    # Bad values are the core's to report (warn once and drop, or raise under EM_STRICT=1);
    # here we only keep a failing write (disk full, run finished meanwhile) from ending fit().
    if not metrics:
        return
    try:
        run.log(type_, metrics, step, epoch)
    except (em.EmError, OSError, TypeError, ValueError) as exc:
        em.handle_problem(exc, key=f"keras:log:{type_}:{type(exc).__name__}")


class EMFitCallback(DualProtocolCallback):
    """Records a ``model.fit`` in an em run: its set-up as hyperparameters, its metrics.

    Works with Keras 3 (TensorFlow, torch or JAX backend) and legacy tf_keras
    (``TF_USE_LEGACY_KERAS=1``): the class subclasses the ``Callback`` that ``tf.keras``
    resolves to and also implements the other Keras' callback protocol.

    Hooks:
        * ``on_train_begin``: the run's hyperparameters gain, under ``hparams_key``
          (default ``'keras'``): ``framework`` (Keras flavour, version, backend),
          ``optimizer`` (class and full config; a learning-rate schedule as its class,
          config and current ``value``), ``loss`` (a name, a Loss's class and config, a
          function's name; per output for multi-output models), ``epochs``,
          ``steps_per_epoch`` (and ``batch_size`` where Keras passes it to callbacks, which
          Keras 3 does not), ``trainable_params`` and ``non_trainable_params``. A
          ``tf.distribute`` strategy other than the default is recorded under
          ``distributed`` by ``run.hparams.parse(dist_tf_strategy=...)``.
        * ``on_train_batch_end`` (only with ``log_every_n_batches``): every N batches, the
          running training metrics as type ``'train'`` (without the learning rate: reading
          it costs a device read per batch).
        * ``on_epoch_end``: the training metrics as type ``'train'`` plus
          ``learning_rate``; the ``val_``-prefixed ones as type ``'val'`` with the prefix
          removed. After the first epoch, the names Keras reported are stored as
          ``metrics`` in the hyperparameters (Keras 3 only knows them once a step ran).

    Every point has ``step`` = the optimizer's global iteration count and ``epoch`` =
    Keras' epoch index + 1. The step axis of a run never goes back: when ``fit`` starts with
    an optimizer behind the run's last logged step (a re-created model, or ``initial_epoch``
    with a fresh optimizer), steps are offset to continue after it.

    A value Keras reports that is not a number (a string, a multi-element tensor) warns
    once and is skipped; the callback never stops training (``EM_STRICT=1`` aside).

    On ranks other than 0, ``em.create_run`` returns an ``em.NoOpRun`` and this callback
    does nothing at all.

    Args:
        run: The run to record into, from ``em.create_run()``.
        log_every_n_batches: Also log the running training metrics every N batches, on
            the same step axis. None (default) logs once per epoch only.
        log_learning_rate: Add ``learning_rate`` to the training metrics.
        hparams_key: Section of the hyperparameters for the set-up; None merges it at the
            top level (``run.hparams['optimizer']``...).

    Raises:
        TypeError: ``run`` is not an em run, or ``log_every_n_batches`` is not an int.
        ValueError: the run has ended, or ``log_every_n_batches`` < 1.

    Example:
        >>> run = em.create_run(name='mnist')                     # doctest: +SKIP
        >>> model.fit(x, y, epochs=10, validation_split=0.2,       # doctest: +SKIP
        ...           callbacks=EMFitCallback(run))
    """

    def __init__(self, run: Any, *, log_every_n_batches: int | None = None,
                 log_learning_rate: bool = True, hparams_key: str | None = "keras") -> None:
        super().__init__()
        self._active = _check_run(run, "EMFitCallback")
        if log_every_n_batches is not None and (
                isinstance(log_every_n_batches, bool) or not isinstance(log_every_n_batches, int)):
            raise TypeError("EMFitCallback: log_every_n_batches must be an int >= 1 or None, "
                            f"got {type(log_every_n_batches).__name__}: {log_every_n_batches!r}")
        if log_every_n_batches is not None and log_every_n_batches < 1:
            raise ValueError("EMFitCallback: log_every_n_batches must be >= 1 or None, got "
                             f"{log_every_n_batches}")
        if hparams_key is not None and (not isinstance(hparams_key, str) or not hparams_key):
            raise TypeError(f"EMFitCallback: hparams_key must be a non-empty str or None, got "
                            f"{hparams_key!r}")
        self.run = run
        self.log_every_n_batches = log_every_n_batches
        self.log_learning_rate = bool(log_learning_rate)
        self.hparams_key = hparams_key
        self._batch_hooks = self._active and log_every_n_batches is not None
        self._offset = 0
        self._offset_pending = False
        self._epoch = 0
        self._bucket = 0
        self._epoch_start_step = 0
        self._names_recorded = False

    # ----------------------------------------------------------------- helpers
    def _record_hparams(self, values: Mapping[str, Any]) -> None:
        # Values replace what an earlier fit recorded (never a key-by-key merge, which
        # would mix two optimizers' configs).
        try:
            if self.hparams_key is None:
                for key, value in values.items():
                    self.run.hparams[key] = value
            else:
                section = self.run.hparams.as_dict().get(self.hparams_key)
                merged = dict(section) if isinstance(section, dict) else {}
                merged.update(values)
                self.run.hparams[self.hparams_key] = merged
        except (TypeError, ValueError, OSError, em.EmError) as exc:
            em.handle_problem(exc, key="keras:hparams")

    def _step(self) -> int:
        its = _describe.iterations(self.model)
        return (its or 0) + self._offset

    def _compute_offset(self, initial_epoch: int) -> None:
        start = _describe.iterations(self.model) or 0
        floor = 0
        last = _last_train_point(self.run)
        if last is not None:
            floor = last[0]
        steps = (self.params or {}).get("steps")
        if start == 0 and initial_epoch > 0 and isinstance(steps, int):
            floor = max(floor, initial_epoch * steps)
        self._offset = max(0, floor - start)

    def _with_lr(self, metrics: dict[str, Any]) -> dict[str, Any]:
        if self.log_learning_rate:
            lr = _describe.current_lr(self.model)
            if lr is not None:
                metrics["learning_rate"] = lr
        return metrics

    # ----------------------------------------------------------------- hooks
    def on_train_begin(self, logs: Mapping[str, Any] | None = None) -> None:
        """Record the optimizer, loss, epochs, steps, parameter counts and strategy."""
        if not self._active:
            return
        self._offset_pending = True
        self._names_recorded = False
        try:
            described = _describe.describe_fit(self.model, self.params)
            strategy = _describe.distribute_strategy(self.model)
        except (AttributeError, TypeError, ValueError, NotImplementedError) as exc:
            em.handle_problem(exc, key="keras:describe")
            return
        self._record_hparams(described)
        if strategy is not None:
            try:
                self.run.hparams.parse(dist_tf_strategy=strategy)
            except (TypeError, ValueError, OSError, em.EmError) as exc:
                em.handle_problem(exc, key="keras:strategy")

    def on_epoch_begin(self, epoch: int, logs: Mapping[str, Any] | None = None) -> None:
        """Note the epoch; on the first one of a ``fit``, line the step axis up."""
        if not self._active:
            return
        self._epoch = epoch
        self._bucket = 0
        if self._offset_pending:
            self._offset_pending = False
            self._compute_offset(epoch)
        if self._batch_hooks:
            # Batch points count from here: reading the optimizer's variable on every batch
            # would cost a device read each time.
            self._epoch_start_step = self._step()

    def on_train_batch_end(self, batch: int, logs: Mapping[str, Any] | None = None) -> None:
        """Every ``log_every_n_batches`` batches: the running training metrics."""
        if not self._batch_hooks or not logs:
            return
        # Keras reports the last batch of a multi-step execution (steps_per_execution > 1),
        # so count crossings of N rather than testing batch % N.
        bucket = (batch + 1) // self.log_every_n_batches  # type: ignore[operator]
        if bucket <= self._bucket:
            return
        self._bucket = bucket
        step = self._epoch_start_step + batch + 1
        _log(self.run, "train", dict(logs), step, self._epoch + 1)

    def on_epoch_end(self, epoch: int, logs: Mapping[str, Any] | None = None) -> None:
        """Training metrics (type 'train', with the learning rate) and validation metrics
        (type 'val', ``val_`` prefix removed) at the optimizer's global step."""
        if not self._active:
            return
        train: dict[str, Any] = {}
        val: dict[str, Any] = {}
        for name, value in (logs or {}).items():
            if name.startswith("val_"):
                val[name[4:]] = value
            else:
                train[name] = value
        if not self._names_recorded and train:
            self._names_recorded = True
            names: dict[str, Any] = {"metrics": sorted(train)}
            if self._needs_counts():
                names.update(_describe.param_counts(self.model) or {})
            self._record_hparams(names)
        step = self._step()
        _log(self.run, "train", self._with_lr(train), step, epoch + 1)
        _log(self.run, "val", val, step, epoch + 1)

    def _needs_counts(self) -> bool:
        # A subclassed model may only be built by its first step (Keras 3 on torch).
        section = self.run.hparams if self.hparams_key is None else self.run.hparams.get(
            self.hparams_key, {})
        return "trainable_params" not in section


class EMEvalCallback(DualProtocolCallback):
    """Records the result of a ``model.evaluate`` in an em run.

    Hooks:
        * ``on_test_end``: the metrics ``evaluate`` returns, as type ``'test'``.

    The point's step is ``step`` when given; else the run's last training step and its
    epoch (``run.last_point('train')``: logged by an :class:`EMFitCallback`, a custom loop or
    an earlier process of a resumed run); else the model optimizer's iteration count; else 0.

    Pass it to ``evaluate`` only: ``fit`` also runs test hooks for its validation passes.
    On ranks other than 0 (an ``em.NoOpRun``) it does nothing.

    Args:
        run: The run to record into, from ``em.create_run()``.
        step: The step to log the test metrics at (an int >= 0); None picks it as above.

    Raises:
        TypeError: ``run`` is not an em run, or ``step`` is not an int.
        ValueError: the run has ended, or ``step`` < 0.

    Example:
        >>> model.evaluate(x_test, y_test, callbacks=EMEvalCallback(run))  # doctest: +SKIP
    """

    def __init__(self, run: Any, *, step: int | None = None) -> None:
        super().__init__()
        self._active = _check_run(run, "EMEvalCallback")
        if step is not None and (isinstance(step, bool) or not isinstance(step, int)):
            raise TypeError(f"EMEvalCallback: step must be an int >= 0 or None, got "
                            f"{type(step).__name__}: {step!r}")
        if step is not None and step < 0:
            raise ValueError(f"EMEvalCallback: step must be >= 0, got {step}")
        self.run = run
        self.step = step

    def on_test_end(self, logs: Mapping[str, Any] | None = None) -> None:
        """Log the evaluation metrics as type 'test'."""
        if not self._active or not logs:
            return
        epoch: int | None = None
        step = self.step
        if step is None:
            last = _last_train_point(self.run)
            if last is not None:
                step, epoch = last
            else:
                step = _describe.iterations(self.model) or 0
        _log(self.run, "test", dict(logs), step, epoch)
