"""MXNet log events into an em run."""

from __future__ import annotations

from typing import Any

from ..logpipe.ending import ending
from ..logpipe.values import OutputFiles
from .events import BatchLog, Checkpoint, Crash, EpochLog, GluonEpochLog, MXNetEvent, Start
from .parser import MXNetLogParser

__all__ = ["MXNetRecorder"]


class MXNetRecorder:
    """Records :class:`MXNetLogParser` events into an em run.

    What lands where:

    * batch lines: a ``'train'`` record with the printed metrics (``Train-`` prefix dropped),
      ``samples_per_sec`` and ``epoch_time_s`` when printed, at ``epoch=N`` and a global
      ``step`` that keeps counting across epochs (the epoch's batch number added to where
      the previous epoch ended, so it grows even when a log restarts at epoch 0);
    * ``Epoch[N] Train-...``/``Time cost`` lines: ``'train'`` at the epoch's last step;
      ``Validation-...``: ``'val'``; GluonCV ``[Epoch N]`` lines likewise (step = epoch
      when the log has no batch lines);
    * ``Namespace(...)`` lines: hyperparameters (a later start overrides an earlier one);
    * ``Saved checkpoint to`` files that exist under the working directory: an output
      artifact ``<run name>-checkpoints`` (a path outside it is never read: see
      :class:`~integrations.logpipe.values.OutputFiles`);
    * the end (:mod:`integrations.logpipe.ending`): ``Complete``; ``Failed`` with the last
      line of a Python traceback, a crash signal (SIGSEGV, SIGABRT, ...) or a non-zero exit
      status in ``run`` mode; ``Killed`` when em got SIGINT/SIGTERM or the training was
      killed by another signal.

    On ranks other than 0 the run is an ``em.NoOpRun`` and nothing is written.
    """

    def __init__(self, run: Any, *, parser: MXNetLogParser | None = None) -> None:
        self.run = run
        self.parser = parser if parser is not None else MXNetLogParser()
        self.step = 0
        self._base = 0
        self._epoch: int | None = None
        self._batches = False
        self.crash: str | None = None
        self._checkpoints = OutputFiles(run, kind="checkpoint", prog="em mxnet",
                                        description="MXNet checkpoints")

    def feed(self, block: bytes) -> None:
        handle = self.handle
        for event in self.parser.feed_bytes(block):
            handle(event)

    def idle(self) -> None:
        pass

    def _at_epoch(self, epoch: int) -> None:
        if self._epoch is not None and epoch != self._epoch and self._batches:
            self._base = self.step + 1
        self._epoch = epoch

    def handle(self, event: MXNetEvent) -> None:
        """Record one event."""
        run = self.run
        if isinstance(event, BatchLog):  # nearly every event: kept short
            epoch = event.epoch
            if epoch != self._epoch:
                self._at_epoch(epoch)
            self._batches = True
            step = self._base + event.batch
            if step > self.step:
                self.step = step
            metrics = event.metrics
            if event.speed is not None or event.time_cost is not None:
                metrics = dict(metrics)
                if event.speed is not None:
                    metrics["samples_per_sec"] = event.speed
                if event.time_cost is not None:
                    metrics["epoch_time_s"] = event.time_cost
            if metrics:
                run.log("train", metrics, self.step, epoch)
        elif isinstance(event, (EpochLog, GluonEpochLog)):
            self._at_epoch(event.epoch)
            step = self.step if self._batches else event.epoch
            train = dict(event.train)
            if event.time_cost is not None:
                train["epoch_time_s"] = event.time_cost
            if event.speed is not None:
                train["samples_per_sec"] = event.speed
            if train:
                run.log("train", train, step=step, epoch=event.epoch)
            if event.val:
                run.log("val", event.val, step=step, epoch=event.epoch)
        elif isinstance(event, Start):
            if event.hparams:
                run.hparams.update(event.hparams, override=True)
        elif isinstance(event, Crash):
            self.crash = event.reason
        elif isinstance(event, Checkpoint):
            self._checkpoints.add([event.path])

    @property
    def artifact(self) -> Any:
        """The checkpoints artifact, once a checkpoint file was added (else None)."""
        return self._checkpoints.artifact

    def finish(self, *, signal: str | None = None, returncode: int | None = None,
               error: BaseException | None = None) -> Any:
        """End the run (see the class docstring and :mod:`integrations.logpipe.ending`);
        returns the status recorded."""
        status, reason = ending(prog="the training", signal=signal, returncode=returncode,
                                failures=[self.crash] if self.crash is not None else [],
                                error=error)
        self.run.finish(status, error=reason)
        return status
