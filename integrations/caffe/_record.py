"""Caffe log events into an em run."""

from __future__ import annotations

import os
import sys
from typing import Any

import em_core as em

from ._events import (
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
from ._parser import CaffeLogParser
from ._prototxt import NET_DEFINITIONS

__all__ = ["CaffeRecorder"]


# signals a program dies of by itself (a failed CHECK aborts), unlike SIGKILL/SIGTERM
_CRASHES = frozenset({"SIGABRT", "SIGSEGV", "SIGBUS", "SIGFPE", "SIGILL"})

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
        self.started = False  # a Solving line or an iteration was seen
        self.finished = False  # the last session ended with 'Optimization Done'
        self.stopped_early = False
        self.reasons: list[str] = []  # fatal messages of the current session
        self.last_iteration: int | None = None
        self._artifact: Any = None
        self._pending: list[str] = []
        self._refused: list[str] = []  # snapshot paths outside snapshot_root, not copied
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
            self.started = True
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
            if event.weights and self._weights.get("train") != event.weights:
                self._note_weights("train", event.weights)
        elif isinstance(event, TestResult):
            self.last_iteration = event.iteration
            if event.outputs:
                kind = "test" if event.net == 0 else f"test_net{event.net}"
                self.run.log(kind, event.outputs, event.iteration)
                self._note_weights("test", event.weights)
        elif isinstance(event, Snapshot):
            self._pending.append(event.path)
        elif isinstance(event, Solving):
            self.started = True
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
        if isinstance(self.run, em.NoOpRun):
            return
        root = os.path.realpath(self.snapshot_root or os.getcwd())
        for path in pending:
            full = os.path.realpath(os.path.join(root, path))
            if os.path.commonpath([root, full]) != root:
                self._refuse(path, root)
                continue
            if not os.path.isfile(full):
                continue
            try:
                if self._artifact is None:
                    self._artifact = em.create_artifact(f"{self.run.name}-snapshots",
                                                        description="Caffe snapshots")
                    self.run.mark_output(self._artifact)
                self._artifact.add_file(full)
            except (OSError, em.EmError, ValueError) as exc:
                em.handle_problem(exc, key=f"caffe-snapshot:{type(exc).__name__}")

    def _refuse(self, path: str, root: str) -> None:
        # The log is data, not the user's word: a path outside the root is never read.
        if path in self._refused:
            return
        self._refused.append(path)
        sys.stderr.write(f"em caffe: snapshot {path!r} is outside {root!r}; not copied\n")
        self.run.hparams["snapshots_refused"] = list(self._refused)

    @property
    def artifact(self) -> Any:
        """The snapshots artifact, once a snapshot file was added (else None)."""
        return self._artifact

    # ------------------------------------------------------------ the end
    def outcome(self, *, signal: str | None = None,
                returncode: int | None = None) -> tuple[em.Status, str | None]:
        """The status the run ends with, and the reason when it is not ``Complete``."""
        if signal is not None:
            what = "stdout was closed" if signal == "SIGPIPE" else f"em received {signal}"
            return em.Status.KILLED, what
        if returncode is not None and returncode < 0:
            import signal as _signal

            try:
                name = _signal.Signals(-returncode).name
            except ValueError:
                name = f"signal {-returncode}"
            if self.reasons or name in _CRASHES:  # glog's fatal path ends in abort()
                return em.Status.FAILED, "; ".join([*self.reasons, f"caffe died of {name}"])
            return em.Status.KILLED, f"caffe was killed by {name}"
        if self.finished:
            if returncode:
                return em.Status.FAILED, f"caffe exited with status {returncode}"
            if self.stopped_early:  # Caffe's answer to SIGINT/SIGHUP: snapshot, then stop
                return em.Status.KILLED, "caffe stopped early ('Optimization stopped early')"
            return em.Status.COMPLETE, None
        if self.reasons:
            return em.Status.FAILED, "; ".join(self.reasons)
        where = (f" (last iteration {self.last_iteration})" if self.last_iteration is not None
                 else " (no iteration was logged)")
        if returncode:
            return em.Status.FAILED, (f"caffe exited with status {returncode} before "
                                      f"'Optimization Done'{where}")
        return em.Status.FAILED, f"the log ended before 'Optimization Done'{where}"

    def finish(self, *, signal: str | None = None, returncode: int | None = None,
               error: BaseException | None = None) -> em.Status:
        """Close the parser and end the run; returns the status recorded."""
        try:
            self.close()
        finally:
            status, reason = self.outcome(signal=signal, returncode=returncode)
            if error is not None:
                status, reason = em.Status.FAILED, f"em could not read the log: {error!r}"
            self.run.finish(status, error=reason)
        return status
