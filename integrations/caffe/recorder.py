"""Caffe log events into an em run."""

from __future__ import annotations

from typing import Any

import em_core as em

from ..logpipe.ending import ending
from ..logpipe.values import OutputFiles
from .events import (
    CaffeEvent,
    Failed,
    Finished,
    Resumed,
    Snapshot,
    SolverParameters,
    Solving,
    TestResult,
    TrainIteration,
)
from .parser import CaffeLogParser
from .prototxt import NET_DEFINITIONS

__all__ = ["CaffeRecorder"]


class CaffeRecorder:
    """Records what a :class:`CaffeLogParser` finds into an em run.

    What lands where:

    * each training display block: one ``'train'`` record at ``step=iteration`` with every
      ``Train net output`` under its blob name, ``smoothed_loss`` (the ``Iteration N,
      loss = X`` value), ``lr`` (the ``lr`` line of the same block) and ``iter_per_s``;
    * each test pass: one record of type ``'test'`` for test net #0 and ``'test_net<k>'`` for
      test net #k, at ``step=iteration``, with its outputs;
    * hyperparameters: the solver parameters Caffe prints (a ``--solver`` file read by the
      command wins), ``net_name``, ``loss_weights`` (``{'train': {...}, 'test': {...}}``) and
      ``resumed_from`` (the solverstate of a resume; a list if there were several);
    * snapshots: every file named by ``Snapshotting to ...`` that exists once Caffe moved on
      is copied into an output artifact ``<run name>-snapshots`` -- only when it lies under
      ``snapshot_root`` (default: the working directory) once links and ``..`` are resolved.
      The log is data: a path it names outside that folder (``/etc/shadow``, ``../x``, a
      link leading out) is never read; it is named once on stderr and listed in the run's
      ``snapshots_refused`` hyperparameter;
    * the end (:meth:`finish`): ``Complete`` after ``Optimization Done``, ``Failed`` with the
      reason after a fatal line or when the input ends mid-run, ``Killed`` on a signal.

    A run created on a rank other than 0 is an :class:`em.NoOpRun`: nothing is written.

    Args:
        run: The run to record into.
        parser: The parser to use (default: a new :class:`CaffeLogParser`).
        hparams_from_log: Record the solver parameters printed in the log.
        snapshot_root: Folder relative snapshot paths are resolved against, and the only
            folder snapshots are copied from (default: the working directory, which is
            Caffe's when it runs beside ``em caffe``).
    """

    def __init__(self, run: em.Run | em.NoOpRun, *, parser: CaffeLogParser | None = None,
                 hparams_from_log: bool = True, snapshot_root: str | None = None) -> None:
        self.run = run
        self.parser = parser if parser is not None else CaffeLogParser()
        self.hparams_from_log = hparams_from_log
        self.snapshot_root = snapshot_root
        self.finished = False  # the last session ended with 'Optimization Done'
        self.stopped_early = False
        self.reasons: list[str] = []  # fatal messages of the current session
        self.last_iteration: int | None = None
        self._snapshots = OutputFiles(run, kind="snapshot", prog="em caffe",
                                      description="Caffe snapshots", root=snapshot_root)
        self._pending: list[str] = []
        self._resumes: list[str] = []
        self._weights: dict[str, dict[str, float]] = {}
        self._weights_changed = False  # loss_weights to save (once per block, not per event)

    # ------------------------------------------------------------ the Sink protocol
    def feed(self, block: bytes) -> None:
        """Parse whole lines and record what they complete."""
        handle = self._handle
        for event in self.parser.feed_bytes(block):
            handle(event)
        if self._weights_changed:
            self._save_weights()

    def idle(self) -> None:
        """The input paused: record a finished test pass now rather than later."""
        for event in self.parser.flush():
            self.handle(event)

    def close(self) -> None:
        """End of input: record what is still open and copy the last snapshots."""
        for event in self.parser.close():
            self._handle(event)
        if self._weights_changed:
            self._save_weights()
        self._add_snapshots()

    # ------------------------------------------------------------ events
    def handle(self, event: CaffeEvent) -> None:
        """Record one event."""
        self._handle(event)
        if self._weights_changed:
            self._save_weights()

    def _handle(self, event: CaffeEvent) -> None:
        if self._pending and not isinstance(event, Snapshot):
            self._add_snapshots()  # Caffe has moved on, so the files are written
        if isinstance(event, TrainIteration):  # most events: kept short
            self.last_iteration = event.iteration
            metrics: dict[str, float] = dict(event.outputs)
            if event.loss is not None:
                metrics["smoothed_loss"] = event.loss
            if event.lr is not None:
                metrics["lr"] = event.lr
            if event.iter_per_s is not None:
                metrics["iter_per_s"] = event.iter_per_s
            if metrics:
                self.run.log("train", metrics, event.iteration)
            self._note_weights("train", event.weights)
        elif isinstance(event, TestResult):
            self.last_iteration = event.iteration
            if event.outputs:
                kind = "test" if event.net == 0 else f"test_net{event.net}"
                self.run.log(kind, event.outputs, event.iteration)
                self._note_weights("test", event.weights)
        elif isinstance(event, Snapshot):
            self._pending.append(event.path)
        else:
            self._milestone(event)

    def _milestone(self, event: CaffeEvent) -> None:
        """A session's start and end, a resume, the solver parameters."""
        if isinstance(event, Solving):
            self.finished = False
            self.reasons = []
            if event.net_name and "net_name" not in self.run.hparams:
                self.run.hparams["net_name"] = event.net_name
        elif isinstance(event, Finished):
            self.finished = True
            self.stopped_early = event.stopped_early
        elif isinstance(event, Failed):
            self.finished = False
            if event.reason not in self.reasons:
                self.reasons.append(event.reason)
        elif isinstance(event, Resumed):
            if event.path not in self._resumes:
                self._resumes.append(event.path)
                self.run.hparams["resumed_from"] = (self._resumes[0] if len(self._resumes) == 1
                                                    else list(self._resumes))
        elif isinstance(event, SolverParameters) and self.hparams_from_log:
            self.run.hparams.update({k: v for k, v in event.params.items()
                                     if k not in NET_DEFINITIONS}, override=False)

    def _note_weights(self, phase: str, weights: dict[str, float]) -> None:
        if weights and self._weights.get(phase) != weights:
            self._weights[phase] = dict(weights)
            self._weights_changed = True

    def _save_weights(self) -> None:
        # One hyperparameter save per block of log: each save rewrites the run's metadata
        self._weights_changed = False
        self.run.hparams["loss_weights"] = {k: dict(v) for k, v in self._weights.items()}

    def _add_snapshots(self) -> None:
        pending, self._pending = self._pending, []
        self._snapshots.add(pending)

    @property
    def artifact(self) -> Any:
        """The snapshots artifact, once a snapshot file was added (else None)."""
        return self._snapshots.artifact

    # ------------------------------------------------------------ the end
    def outcome(self, *, signal: str | None = None, returncode: int | None = None,
                error: BaseException | None = None) -> tuple[em.Status, str | None]:
        """The status the run ends with, and the reason when it is not ``Complete``: the
        shared mapping of :func:`integrations.logpipe.ending.ending`, with Caffe's own end
        marker ('Optimization Done') and its answer to SIGINT/SIGHUP ('Optimization stopped
        early': Killed)."""
        where = (f" (last iteration {self.last_iteration})" if self.last_iteration is not None
                 else " (no iteration was logged)")
        return ending(prog="caffe", signal=signal, returncode=returncode,
                      failures=() if self.finished else self.reasons,
                      stopped=("caffe stopped early ('Optimization stopped early')"
                               if self.finished and self.stopped_early else None),
                      unfinished=(None if self.finished
                                  else f"before 'Optimization Done'{where}"),
                      error=error)

    def finish(self, *, signal: str | None = None, returncode: int | None = None,
               error: BaseException | None = None) -> em.Status:
        """Close the parser and end the run; returns the status recorded."""
        try:
            self.close()
        finally:
            status, reason = self.outcome(signal=signal, returncode=returncode, error=error)
            self.run.finish(status, error=reason)
        return status
