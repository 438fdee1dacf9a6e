"""The logic of EMLogger, shared by the ``lightning.pytorch`` and ``pytorch_lightning``
classes (which differ only in their Lightning base class)."""

from __future__ import annotations

import functools
import os
import sys
import weakref
from argparse import Namespace
from collections.abc import Callable
from typing import Any, TypeVar

from lightning_utilities.core.rank_zero import rank_zero_only

import em_core as em

from ._names import split_metric_name, stage_type

__all__ = ["EMLoggerBase", "LOGGER_DOC"]

_CHECKPOINT_MODES = (False, "last", "best", "all")
_EVAL_TYPES = ("val", "test", "predict")

LOGGER_DOC = """Lightning logger that records the Trainer's run in an em run.

    ``Trainer(logger=EMLogger(name='mnist'))``. One em run per logger: created on rank 0 the
    first time Lightning (or you) touch :attr:`run`/``experiment``, or the ``run`` you pass.

    What each hook does (all of them do nothing on ranks above 0, where :attr:`run` is an
    ``em.NoOpRun``):

    * set-up (``experiment`` is read): the run is created (``name``, ``labels``,
      ``description``, ``folder``, ``auto_upload`` passed to ``em.create_run``).
    * ``log_hyperparams`` (fit/validate/test start): ``save_hyperparameters()`` values
      (dict, Namespace, AttributeDict, OmegaConf; nested keys stay nested) are merged into
      ``run.hparams`` at the top level.
    * ``log_graph`` (right after): when fitting, records ``trainer`` (max_epochs,
      accumulate_grad_batches, gradient clipping, precision...), ``model`` (class, parameter
      counts), ``optimizer``/``lr_scheduler`` (from ``configure_optimizers``; lists named
      ``optimizers``/``lr_schedulers`` when there are several) and ``distributed``
      (strategy, world size, nodes, launcher, backend, DDP settings).
    * ``log_metrics`` (every ``log_every_n_steps`` and at epoch ends): each value goes to
      ``run.log(type, {name: value}, step=trainer.global_step, epoch=trainer.current_epoch)``
      with the type and name taken from Lightning's key: ``train_loss``/``train/loss`` ->
      train ``loss``; ``val_acc``/``val/acc`` -> val ``acc``; ``test_*`` -> test;
      unprefixed keys take the trainer's stage. ``*_step`` keeps the plain name for train,
      ``*_epoch`` for val/test (the other keeps its suffix). All ``self.log`` calls of one
      step share one step number.
    * ``after_save_checkpoint``: with ``log_checkpoints='all'``, every checkpoint file
      ModelCheckpoint writes is copied into an output artifact ``<name>-checkpoints``;
      with ``'last'``/``'best'``, the latest or best one is copied at ``finalize``.
    * ``finalize`` (end of each fit/validate/test): 'success' ends a run the logger created
      as Complete (a run you passed is left to you); an exception ends it as Failed (with
      the traceback), Ctrl-C as Killed.

    Files: the run directory is :attr:`save_dir` and :attr:`log_dir`; ModelCheckpoint
    without a ``dirpath`` writes into ``<run dir>/<name>/<version>/checkpoints``.

    Args:
        run: an existing ``em.Run`` to record into (then give none of the other run
            arguments). Default: create one lazily on rank 0.
        name: run name (default ``'default'``).
        labels: run labels. description: run description.
        folder: upload folder. auto_upload: upload when the run ends.
        log_checkpoints: ``False`` (default), ``'last'``, ``'best'`` or ``'all'``.

    Raises:
        ValueError: both ``run`` and run arguments; a finished run; a bad
            ``log_checkpoints``.
        TypeError: ``run`` is not an em run.

    Problems while training (a metric that is not a number, ...) warn once and are
    skipped; training goes on (``EM_STRICT=1`` raises instead).

    With ``strategy='ddp_spawn'`` the Trainer, and so the logger, is pickled into worker
    processes at each ``fit``/``test``: the logger creates its run before the first
    hand-over and each rank-0 worker reopens it, so one run records them all. A run you
    pass cannot be handed over (TypeError at ``fit``): let the logger create it.
"""


def _rank() -> int:
    return int(getattr(rank_zero_only, "rank", 0) or 0)


_F = TypeVar("_F", bound=Callable[..., Any])


def _rank_zero(fn: _F) -> _F:
    """Run ``fn`` on rank 0 only; on ranks above 0 it returns None and writes nothing.

    Lightning's own ``rank_zero_only`` raises until the Trainer has set its rank; a logger
    is also used before that (``EMLogger().run`` in a script), where this reads rank 0.
    """
    @functools.wraps(fn)
    def on_rank_zero(*args: Any, **kwargs: Any) -> Any:
        if _rank() > 0:
            return None
        return fn(*args, **kwargs)

    return on_rank_zero  # type: ignore[return-value]


class EMLoggerBase:
    """Flavour-independent part of EMLogger; see :data:`LOGGER_DOC`."""

    _module_class: type = object  # the flavour's LightningModule, set by the subclass
    _flavour = ""

    def __init__(self, run: Any = None, *, name: str | None = None,
                 labels: list[str] | None = None, description: str | None = None,
                 folder: str | None = None, auto_upload: bool | None = None,
                 log_checkpoints: bool | str = False) -> None:
        super().__init__()
        given = {k: v for k, v in {"name": name, "labels": labels, "description": description,
                                   "folder": folder, "auto_upload": auto_upload}.items()
                 if v is not None}
        if run is not None:
            if given:
                raise ValueError(f"EMLogger: got run={run!r} and run arguments {sorted(given)};"
                                 " give either an existing run or the arguments to create "
                                 "one, not both")
            if not isinstance(run, (em.Run, em.NoOpRun)):
                raise TypeError(f"EMLogger: run must be an em run (em.create_run(...)), got "
                                f"{type(run).__name__}: {run!r:.100}")
            if em.Status(run.status) is not em.Status.RUNNING:
                raise ValueError(f"EMLogger: run {run.name!r} has already finished "
                                 f"({run.status}); create a new run")
        if name is not None and not isinstance(name, str):
            raise TypeError(f"EMLogger: name must be a string, got {type(name).__name__}: "
                            f"{name!r:.100}")
        if log_checkpoints not in _CHECKPOINT_MODES or log_checkpoints is True:
            raise ValueError(f"EMLogger: log_checkpoints={log_checkpoints!r}; expected one of "
                             "False, 'last', 'best', 'all'")
        self._run = run
        self._owns_run = run is None
        self._run_args = {"name": "default", **given}
        self._log_checkpoints = log_checkpoints
        self._trainer_ref: Any = None
        self._artifact: Any = None
        self._ckpt_added: dict[str, int] = {}
        self._ckpt_best: str | None = None
        self._ckpt_latest: str | None = None
        self._noop: Any = None
        self._handoff: str | None = None

    # ------------------------------------------------------------ the run
    @property
    def run(self) -> Any:
        """The em run (created on first access on rank 0); an ``em.NoOpRun`` elsewhere."""
        if _rank() > 0:
            if self._noop is None:
                self._noop = em.NoOpRun(self._run_args.get("name", "default"))
            return self._noop
        if self._run is None:
            if self._handoff is not None:  # see __getstate__
                self._run = em.load_run(self._handoff)
            else:
                self._run = em.create_run(**self._run_args)
        return self._run

    @property
    def experiment(self) -> Any:
        """Lightning's name for :attr:`run`."""
        return self.run

    def _open_run(self) -> Any:
        """The run for writing; a run this logger ended at an earlier ``finalize('success')``
        (``fit`` then ``test``) is reopened when em supports it."""
        run = self.run
        if isinstance(run, em.Run) and em.Status(run.status) is not em.Status.RUNNING:
            resume = getattr(run, "resume", None)
            if self._owns_run and callable(resume):
                resume()
        return run

    # ------------------------------------------------------------ Logger API
    @property
    def name(self) -> str | None:
        """The run's name."""
        return self._run.name if self._run is not None else self._run_args.get("name")

    @property
    @_rank_zero
    def version(self) -> str | None:
        """The run's directory name (``<name>_<yymmdd>_<hhmmss>_<random>``); None on ranks
        above 0."""
        return self.run.alternative_name  # type: ignore[no-any-return]

    @property
    @_rank_zero
    def save_dir(self) -> str | None:
        """The run's directory (None on ranks above 0)."""
        return self.run.local  # type: ignore[no-any-return]

    @property
    def log_dir(self) -> str | None:
        """The run's directory (None on ranks above 0)."""
        return self.save_dir

    @property
    def root_dir(self) -> str | None:
        """The directory holding the run directories."""
        local = self.save_dir
        return os.path.dirname(os.path.abspath(local)) if local else None

    @_rank_zero
    def log_hyperparams(self, params: Any, *args: Any, **kwargs: Any) -> None:
        """Merge ``params`` into ``run.hparams`` (top level, nested keys kept)."""
        try:
            if isinstance(params, Namespace):
                params = vars(params)
            self._open_run().hparams.update(params)
        except (TypeError, ValueError, em.EmError) as e:
            em.handle_problem(e, key=f"lightning.log_hyperparams:{type(e).__name__}")

    @_rank_zero
    def log_graph(self, model: Any, input_array: Any = None) -> None:
        """Lightning calls this right after ``log_hyperparams`` with the LightningModule:
        when fitting, record the Trainer's set-up (see the class docstring)."""
        try:
            if not isinstance(model, self._module_class):
                raise TypeError(
                    f"EMLogger for {self._flavour} got a {type(model).__module__}."
                    f"{type(model).__qualname__}; use the EMLogger of the Lightning package "
                    "the Trainer comes from (integrations.lightning.pytorch for "
                    "lightning.pytorch, integrations.lightning.pytorch_lightning for "
                    "pytorch_lightning)")
            trainer = getattr(model, "_trainer", None)
            if trainer is None:
                return
            self._trainer_ref = weakref.ref(trainer)
            if getattr(trainer.state.fn, "value", None) == "fit":
                from ._setup import describe_trainer

                self._open_run().hparams.update(describe_trainer(trainer, model))
        except (TypeError, ValueError, AttributeError, em.EmError) as e:
            em.handle_problem(e, key=f"lightning.log_graph:{type(e).__name__}")

    @_rank_zero
    def log_metrics(self, metrics: dict[str, Any], step: int | None = None) -> None:
        """Record Lightning's metrics as em metrics (see the class docstring)."""
        if not metrics:
            return
        try:
            trainer = self._trainer_ref() if self._trainer_ref is not None else None
            values = dict(metrics)
            epoch = values.pop("epoch", None)
            if trainer is not None:
                default_type = stage_type(trainer.state.stage)
                global_step = int(trainer.global_step)
                epoch = int(trainer.current_epoch)
            else:
                default_type = "train"
                global_step = int(step) if step is not None else 0
                epoch = int(epoch) if isinstance(epoch, (int, float)) else None
            groups: dict[tuple[str, int], dict[str, Any]] = {}
            for key, value in values.items():
                mtype, mname = split_metric_name(key, default_type)
                # Per-batch evaluation values are numbered by Lightning's evaluation step,
                # not the training step they all share.
                at = (int(step) if step is not None and mtype in _EVAL_TYPES
                      and key.endswith("_step") else global_step)
                groups.setdefault((mtype, at), {})[mname] = value
            run = self._open_run()
            for (mtype, at), vals in groups.items():
                run.log(mtype, vals, step=at, epoch=epoch)
        except (TypeError, ValueError, AttributeError, em.EmError) as e:
            em.handle_problem(e, key=f"lightning.log_metrics:{type(e).__name__}")

    @_rank_zero
    def after_save_checkpoint(self, checkpoint_callback: Any) -> None:
        """Note the checkpoint files ModelCheckpoint wrote; copy them into the output
        artifact now (``'all'``) or at ``finalize`` (``'last'``, ``'best'``)."""
        if not self._log_checkpoints:
            return
        try:
            cb = checkpoint_callback
            # Without a monitored metric ModelCheckpoint only updates best_model_path.
            paths = [p for p in dict.fromkeys((cb.last_model_path, cb.best_model_path,
                                               *cb.best_k_models)) if p and os.path.isfile(p)]
            self._ckpt_best = cb.best_model_path or None
            if paths:
                self._ckpt_latest = max(paths, key=os.path.getmtime)
            if self._log_checkpoints == "all":
                for p in paths:
                    self._add_checkpoint(p)
        except (TypeError, ValueError, OSError, AttributeError, em.EmError) as e:
            em.handle_problem(e, key=f"lightning.after_save_checkpoint:{type(e).__name__}")

    def _add_checkpoint(self, path: str) -> None:
        mtime = os.stat(path).st_mtime_ns
        if self._ckpt_added.get(path) == mtime:
            return
        run = self._open_run()
        if self._artifact is None:
            self._artifact = em.create_artifact(
                f"{run.name}-checkpoints", labels=["checkpoint"],
                description=f"Lightning checkpoints of run {run.alternative_name}")
            run.mark_output(self._artifact)
        self._artifact.add_file(path, obj_path=os.path.basename(path))
        self._ckpt_added[path] = mtime

    def save(self) -> None:
        """Nothing to do: each ``log`` is on disk (page cache) when it returns. Lightning
        calls this after every ``log_metrics``, so it must stay cheap."""

    @_rank_zero
    def finalize(self, status: str) -> None:
        """End of a fit/validate/test call (see the class docstring)."""
        if self._run is None:
            return  # nothing was recorded: do not create a run just to end it
        try:
            wanted = {"last": self._ckpt_latest, "best": self._ckpt_best}.get(
                self._log_checkpoints or "")
            if wanted and os.path.isfile(wanted):
                self._add_checkpoint(wanted)
        except (TypeError, ValueError, OSError, em.EmError) as e:
            em.handle_problem(e, key=f"lightning.finalize.checkpoint:{type(e).__name__}")
        if status == "success":
            if self._owns_run:
                self._run.finish(em.Status.COMPLETE)
            return
        exc = sys.exc_info()[1]
        if status == "failed":
            killed = isinstance(exc, KeyboardInterrupt)
            self._run.finish(em.Status.KILLED if killed else em.Status.FAILED,
                             error=exc or "Lightning reported the run as failed")
        else:  # 'finished' comes from the SLURM requeue signal: the job is being preempted
            self._run.finish(em.Status.KILLED, error=f"Lightning finalize({status!r})")

    # ------------------------------------------------------------ pickling (ddp_spawn)
    def __getstate__(self) -> dict[str, Any]:
        """Hand the run over to the process that unpickles this logger.

        ``strategy='ddp_spawn'`` pickles the Trainer into fresh worker processes for every
        ``fit``/``test`` call. For all of them to record into one run, the run must exist
        before the first hand-over, so it is created here (on rank 0, as Lightning's own
        WandbLogger does), then ended in this process to release it; the worker reopens it
        with ``em.load_run(path).resume()``.
        """
        if not self._owns_run and isinstance(self._run, em.Run):
            raise TypeError(
                "EMLogger cannot send a run it was given to another process "
                f"({self._run.alternative_name!r}): strategy='ddp_spawn' pickles the Trainer. "
                "Let the logger create the run (EMLogger(name=...)), or use strategy='ddp'")
        if self._owns_run and _rank() == 0:
            run = self.run
            if isinstance(run, em.Run):
                if em.Status(run.status) is em.Status.RUNNING:
                    run.finish()  # releases the run's lock for the worker
                self._handoff = run.local
                self._run = None  # later reads here load it again from disk
        state = self.__dict__.copy()
        state["_trainer_ref"] = None
        state["_noop"] = None
        return state
