"""MXNet log events into an em run."""

from __future__ import annotations

from typing import Any

from ..logpipe.ending import ending
from ..logpipe.values import OutputFiles
from .events import (
    BatchLog,
    BatchRows,
    Checkpoint,
    Crash,
    EpochLog,
    GluonEpochLog,
    MXNetEvent,
    Rewind,
    Start,
    TrainingStart,
)
from .parser import MXNetLogParser

__all__ = ["LOG_PARTS", "MXNetRecorder"]

#: The hyperparameter that lists the parts of a log holding more than one training start.
LOG_PARTS = "log_parts"


class MXNetRecorder:
    """Records :class:`MXNetLogParser` events into an em run.

    What lands where:

    * batch lines: a ``'train'`` record with the printed metrics (``Train-`` prefix dropped),
      ``samples_per_sec`` and ``epoch_time_s`` when printed, at ``epoch=N`` and a global
      ``step``: the epoch's batch number added to where the previous epoch ended. Every
      batch report gets a step of its own, in log order; the reports of one batch printed on
      two lines (Horovod scripts: its loss, then its metrics) share it;
    * ``Epoch[N] Train-...``/``Time cost`` lines: ``'train'`` at the epoch's last step;
      ``Validation-...``: ``'val'``; GluonCV ``[Epoch N]`` lines likewise (step = epoch
      when the log has no batch lines);
    * ``Namespace(...)`` lines: hyperparameters (a later start overrides an earlier one);
    * restarts: a log can hold several trainings (a script started again into the same log,
      false starts that stopped before training). A part begins at a ``Namespace(...)`` or
      ``Start training`` line after the current part has recorded something or already had
      one, or where the reports go back (an earlier epoch or batch) with no such line. Its
      records get steps after all those before it, never merged into the earlier ones; once
      a log has a second part the run's ``log_parts`` hyperparameter lists each part: its
      first ``line`` in the log, its first ``step``, whether it ``trained`` (recorded
      something) and its ``hparams`` (those of its ``Namespace(...)``, ``{}`` if none);
    * ``Saved checkpoint to`` files that exist under the working directory: an output
      artifact ``<run name>-checkpoints`` (a path outside it is never read: see
      :class:`~integrations.logpipe.values.OutputFiles`);
    * the end (:mod:`integrations.logpipe.ending`): ``Complete``; ``Failed`` with the last
      line of a Python traceback or of MXNet's crash report, after a crash signal (SIGSEGV,
      SIGABRT, ...) or a non-zero exit status in ``run`` mode; ``Killed`` when em got
      SIGINT/SIGTERM, the training was killed by another signal (SIGKILL, SIGTERM, SIGINT,
      ...) or its traceback ends in ``KeyboardInterrupt``.

    On ranks other than 0 the run is an ``em.NoOpRun`` and nothing is written.
    """

    def __init__(self, run: Any, *, parser: MXNetLogParser | None = None) -> None:
        self.run = run
        self.parser = parser if parser is not None else MXNetLogParser()
        self.step = 0  # the last step recorded
        self.crash: str | None = None
        self.parts: list[dict[str, Any]] = []  # see the class docstring; [] for one part
        self._base = 0  # batch k of the current epoch is at step _base + k
        self._epoch: int | None = None  # the epoch of the last batch report
        self._batches = False  # batch reports seen in this part
        self._offset = 0  # logs without batch lines: epoch N is at step _offset + N
        self._recorded = False  # anything recorded at all
        self._trained = False  # anything recorded in this part
        self._started = False  # this part had its Namespace(...)
        self._launched = False  # this part had its 'Start training'
        # the hyperparameter changes of the block being fed, saved at its end: one run.json
        # write per block, not one per Namespace(...) line or restart (None: save at once)
        self._pending: list[dict[str, Any]] | None = None
        self._checkpoints = OutputFiles(run, kind="checkpoint", prog="em mxnet",
                                        description="MXNet checkpoints",
                                        on_refused=self._set_hparams)

    def feed(self, block: bytes) -> None:
        """Parse whole lines and record their events; the hyperparameter changes they hold
        are saved at the end, in one ``run.json`` write."""
        self._pending = []
        try:
            self._feed(block)
        finally:
            self._flush()

    def _feed(self, block: bytes) -> None:  # noqa: C901 - the per-event loop with batch reports inlined: a call per report costs more than the report
        handle = self.handle
        log = self.run.log
        checkpoints: list[str] = []  # added once per block: one run.json write for all
        for event in self.parser.feed_block(block):
            # batch reports are nearly every event: handled here, without a call
            if type(event) is not BatchLog:
                if type(event) is BatchRows:
                    self._rows(event)  # type: ignore[arg-type]
                elif type(event) is EpochLog or type(event) is GluonEpochLog:
                    self._epoch_end(event)  # type: ignore[arg-type]
                elif type(event) is Checkpoint:
                    checkpoints.append(event.path)  # type: ignore[union-attr]
                else:
                    handle(event)  # type: ignore[arg-type]
                continue
            epoch = event.epoch
            if epoch != self._epoch:
                self._at_epoch(epoch)
            step = self._base + event.batch
            if step < self.step:  # goes back with no Rewind: as _batch does
                self._new_steps()
                self._at_epoch(epoch)
                step = self._base + event.batch
            self.step = step
            metrics = event.metrics
            if event.speed is not None:
                metrics["samples_per_sec"] = event.speed
            if event.time_cost is not None:
                metrics["epoch_time_s"] = event.time_cost
            if metrics:
                log("train", metrics, step, epoch)
                self._trained = True
        self._checkpoints.add(checkpoints)

    def idle(self) -> None:
        """Nothing waits for a pause: every event is recorded as its line is read."""

    def handle(self, event: MXNetEvent | BatchRows) -> None:  # noqa: C901 - one dispatch on the event's type, each branch a line or two
        """Record one event."""
        if isinstance(event, BatchLog):
            self._batch(event)
        elif isinstance(event, BatchRows):
            self._rows(event)
        elif isinstance(event, (EpochLog, GluonEpochLog)):
            self._epoch_end(event)
        elif isinstance(event, Start):
            self._start(event)
        elif isinstance(event, TrainingStart):
            if self.parts and not self._trained and not self._launched:
                self._launched = True
            else:
                self._new_part(event.line, {})
                self._launched = True
        elif isinstance(event, Rewind):
            if self._trained:
                self._new_part(event.line, {})  # the script restarted without a word
            else:
                self._new_steps()
        elif isinstance(event, Crash):
            self.crash = event.reason
        elif isinstance(event, Checkpoint):
            self._checkpoints.add([event.path])

    # ------------------------------------------------------------ steps
    def _at_epoch(self, epoch: int) -> None:
        if self._epoch is not None and self._batches:
            self._base = self.step + 1
        self._epoch = epoch
        self._batches = True
        self._recorded = True

    def _new_steps(self) -> None:
        """What comes next is recorded after everything so far."""
        if self._recorded:
            self._base = self._offset = self.step + 1
        self._epoch = None
        self._batches = False

    def _batch(self, event: BatchLog) -> None:
        if event.epoch != self._epoch:
            self._at_epoch(event.epoch)
        step = self._base + event.batch
        if step < self.step:  # a report that goes back with no Rewind before it
            self._new_steps()
            self._at_epoch(event.epoch)
            step = self._base + event.batch
        self.step = step
        metrics = dict(event.metrics)  # the caller's event stays as it was
        if event.speed is not None:
            metrics["samples_per_sec"] = event.speed
        if event.time_cost is not None:
            metrics["epoch_time_s"] = event.time_cost
        if metrics:
            self.run.log("train", metrics, step, event.epoch)
            self._trained = True

    def _rows(self, event: BatchRows) -> None:
        """What :meth:`_batch` records for each of the rows' reports, logged at once."""
        if event.epoch != self._epoch:
            self._at_epoch(event.epoch)
        base = self._base
        if base + event.batches[0] < self.step:  # goes back with no Rewind before it
            for batch_log in event.batch_logs():
                self._batch(batch_log)
            return
        steps = [base + k for k in event.batches]
        self.step = steps[-1]
        groups = []
        for names, values, speeds in event.reports:
            group = dict(zip(names, values))
            if speeds is not None:
                group["samples_per_sec"] = speeds
            if group:
                groups.append(group)
        if not groups:
            return
        log_many = getattr(self.run, "log_many", None)
        if log_many is not None:
            log_many("train", steps, groups, event.epoch)
        else:  # a run-like object with log() alone
            _log_rows(self.run, steps, groups, event.epoch)
        self._trained = True

    def _epoch_end(self, event: EpochLog | GluonEpochLog) -> None:
        if self._batches:
            step = self.step
        else:
            step = self._offset + event.epoch
            self.step = max(self.step, step)
        train = event.train
        if event.time_cost is not None or event.speed is not None:
            train = dict(train)  # the caller's event stays as it was
            if event.time_cost is not None:
                train["epoch_time_s"] = event.time_cost
            if event.speed is not None:
                train["samples_per_sec"] = event.speed
        if train:
            self.run.log("train", train, step, event.epoch)
        if event.val:
            self.run.log("val", event.val, step, event.epoch)
        if train or event.val:
            self._recorded = self._trained = True

    # ------------------------------------------------------------ parts
    def _start(self, event: Start) -> None:
        if self.parts and not self._trained and not self._started:
            self.parts[-1]["hparams"] = dict(event.hparams)  # its 'Start training' came first
        else:
            self._new_part(event.line, event.hparams, save=False)
        self._started = True
        if len(self.parts) > 1:
            self._save_parts()
        if event.hparams:
            self._set_hparams(dict(event.hparams))

    def _new_part(self, line: int, hparams: dict[str, Any], *, save: bool = True) -> None:
        if not self.parts and self._recorded:  # what came before the first start
            self.parts.append({"line": 1, "step": 0, "trained": True, "hparams": {}})
        if self.parts:
            self.parts[-1]["trained"] = self._trained
        self._new_steps()
        self.parts.append({"line": line, "step": self.step + 1 if self._recorded else 0,
                           "trained": False, "hparams": dict(hparams)})
        self._trained = self._started = self._launched = False
        if save and len(self.parts) > 1:
            self._save_parts()

    def _save_parts(self) -> None:
        self._set_hparams({LOG_PARTS: [dict(p) for p in self.parts]})

    def _set_hparams(self, changes: dict[str, Any]) -> None:
        """``run.hparams.update(changes)``, at the end of the block being fed if one is."""
        if self._pending is None:
            self.run.hparams.update(changes, override=True)
        else:
            self._pending.append(changes)

    def _flush(self) -> None:
        """Save the block's hyperparameter changes: in one update where that gives what one
        update per change gives (no nested sections, which updates merge), else in turn."""
        pending, self._pending = self._pending, None
        if not pending:
            return
        if not any(isinstance(v, dict) for changes in pending for v in changes.values()):
            merged = {k: v for changes in pending for k, v in changes.items()}
            try:
                self.run.hparams.update(merged, override=True)
                return
            except Exception:  # noqa: BLE001 - a bad value (EM_STRICT): the others in turn
                pass
        for changes in pending:
            self.run.hparams.update(changes, override=True)

    # ------------------------------------------------------------ the end
    @property
    def artifact(self) -> Any:
        """The checkpoints artifact, once a checkpoint file was added (else None)."""
        return self._checkpoints.artifact

    def finish(self, *, signal: str | None = None, returncode: int | None = None,
               error: BaseException | None = None) -> Any:
        """End the run (see the class docstring and :mod:`integrations.logpipe.ending`);
        returns the status recorded."""
        if len(self.parts) > 1 and self.parts[-1]["trained"] != self._trained:
            self.parts[-1]["trained"] = self._trained
            self._save_parts()
        interrupted = self.crash is not None and self.crash.startswith("KeyboardInterrupt")
        status, reason = ending(prog="the training", signal=signal, returncode=returncode,
                                failures=[self.crash] if self.crash and not interrupted else [],
                                stopped=("the training was interrupted (KeyboardInterrupt)"
                                         if interrupted else None),
                                error=error)
        self.run.finish(status, error=reason)
        return status


def _log_rows(run: Any, steps: list[int], groups: list[dict[str, Any]], epoch: int) -> None:
    """What ``log_many`` records, one ``log()`` per row and group (a run-like object that
    has no ``log_many``)."""
    for i, step in enumerate(steps):
        for group in groups:
            run.log("train", {n: c[i] for n, c in group.items()}, step, epoch)
