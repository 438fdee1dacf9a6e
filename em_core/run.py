"""Runs: create, log, finish, load.

A run is a directory (see README "Storage format")::

    <EM_RUN_PARENT_DIR or .em/runs>/<name>_<yymmdd>_<hhmmss>_<6 random [a-z0-9]>/
        run.json      metadata, hyperparameters, platform, git, data flow (atomic replace)
        metrics.bin   the metric log, one record per log() call (see _metricfile)
        .lock         held by the writing process while it runs
"""

from __future__ import annotations

import builtins
import json
import os
import secrets
import string
import threading
import time
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from . import _lifecycle, _logmany, _logpath, _monitor, _validate
from ._files import write_json_atomic
from ._lifecycle import Status, error_info
from ._metricfile import MetricWriter
from ._metricread import LastPoints, Point, Record, read_records, summary_for_meta
from ._noop import NoOpRun
from ._paths import parent_dir
from ._recorded import Recorded
from .errors import RunFinishedError
from .hparams import Hyperparameters

__all__ = ["NoOpRun", "Run", "create_run", "load_run"]

FORMAT_VERSION = 1
META_FILE = "run.json"
METRICS_FILE = "metrics.bin"
_ALPHABET = string.ascii_lowercase + string.digits
_EMPTY: dict[Any, Any] = {}


def now_iso() -> str:
    return datetime.now().astimezone().isoformat(timespec="microseconds")


def ts_iso(ts: float) -> str:
    return datetime.fromtimestamp(ts).astimezone().isoformat(timespec="microseconds")


def new_dir(parent_env: str, default: str, name: str) -> Path:
    """Create ``<parent>/<name>_<yymmdd>_<hhmmss>_<6 random>`` exclusively."""
    parent = parent_dir(parent_env, default)
    parent.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now().strftime("%y%m%d_%H%M%S")
    while True:
        suffix = "".join(secrets.choice(_ALPHABET) for _ in range(6))
        path = parent / f"{name}_{stamp}_{suffix}"
        try:
            path.mkdir()
            return path
        except FileExistsError:
            continue


class Run(Recorded):
    """One training run, recorded under :attr:`local`. Made by :func:`create_run` or
    :func:`load_run`, not directly.

    Attributes are read from the run's metadata: ``name``, ``alternative_name`` (the
    directory name), ``labels``, ``description``, ``status``, ``start_timestamp``,
    ``end_timestamp``, ``hparams``, ``metrics``, ``platform``, ``git``, ``associations``,
    ``remote`` and ``local`` (the directory).
    """

    _uploader: Any = None  # em_core._uploader.Uploader while auto-uploading

    def __init__(self, path: Path, meta: dict[str, Any], *, writable: bool) -> None:
        self._path = path
        self._meta = meta
        self._save_lock = threading.RLock()
        self._save_depth = 0
        self._resave = False
        self._ended = not writable
        self._writer: MetricWriter | None = None
        self._last_points: LastPoints | None = None  # made at the first last_point()
        self._fast: dict[Any, Any] = _EMPTY
        self._liveness: _lifecycle.LivenessLock | None = None
        self._forked = False  # set in a forked child: the run is its parent's (see _logpath)
        self._owner = writable  # only the writing process rewrites run.json
        self._hparams_saved = None if writable else json.loads(json.dumps(meta["hparams"]))
        self._hparams = Hyperparameters(on_change=self._hparams_changed,
                                        _shared=meta["hparams"], _lock=self._save_lock)
        _logpath.track(self)
        if writable:
            self._liveness = _lifecycle.LivenessLock(str(path))
            try:
                self._writer = MetricWriter(path / METRICS_FILE)
            except BaseException:
                self._liveness.release()
                raise
            self._fast = self._writer.fast
            _lifecycle.register(self)
            self._start_uploader()

    def _start_uploader(self) -> None:
        if self._meta["upload"].get("auto_upload") and not self._meta["process"].get("rank") \
                and self._uploader is None:
            from ._uploader import start  # only rank 0 uploads
            self._uploader = start(self)

    # ----------------------------------------------------------------- metadata
    def _save(self) -> None:
        # Re-entrant: a signal handler may end the run while the main thread is saving.
        # The nested save writes at once (the process may die right after); the outer one
        # then saves again so that its older snapshot does not win.
        if self._forked:
            return  # a forked child never writes its parent's run
        with self._save_lock:
            self._save_depth += 1
            try:
                if self._save_depth > 1:
                    self._resave = True
                write_json_atomic(self._path / META_FILE, self._meta)
                while self._save_depth == 1 and self._resave:
                    self._resave = False
                    write_json_atomic(self._path / META_FILE, self._meta)
            finally:
                self._save_depth -= 1

    def _owns_meta(self) -> bool:
        return self._owner

    def _hparams_changed(self) -> None:
        if self._owner:
            self._save()
            return
        data = self._meta["hparams"]  # undo: a loaded copy must not diverge from the file
        data.clear()
        data.update(json.loads(json.dumps(self._hparams_saved)))
        raise RunFinishedError(f"run {self.alternative_name!r} was loaded read-only; call "
                               "resume() to change its hyperparameters (only the process that "
                               "writes a run changes its run.json)")

    def to_dict(self) -> dict[str, Any]:
        """Everything about the run as plain data, metrics included."""
        d = dict(self._meta)
        d["status"] = self.status.value
        d["hparams"] = self._hparams.as_dict()
        d["associations"] = self.associations
        d["metrics"] = self.metrics
        return d

    @property
    def start_timestamp(self) -> str:
        return str(self._meta["start_timestamp"])

    @property
    def end_timestamp(self) -> str | None:
        return self._meta.get("end_timestamp")

    @property
    def status(self) -> Status:
        """The recorded status; for a run that says Running but whose process is gone,
        ``Crashed`` (or ``Unknown`` when that cannot be told, e.g. from another host)."""
        status = Status(self._meta["status"])
        if status is Status.RUNNING and self._writer is None:
            alive = _lifecycle.writer_alive(str(self._path), self._meta.get("process"))
            if alive is False:
                return Status.CRASHED
            if alive is None:
                return Status.UNKNOWN
        return status

    @property
    def error(self) -> dict[str, Any] | None:
        """Type, message and traceback of the error that ended the run, if any."""
        return self._meta.get("error")

    @property
    def hparams(self) -> Hyperparameters:
        return self._hparams

    @property
    def platform(self) -> dict[str, Any]:
        return dict(self._meta.get("platform") or {})

    @property
    def git(self) -> dict[str, Any] | None:
        return self._meta.get("git")

    @property
    def upload_options(self) -> dict[str, Any]:
        return dict(self._meta["upload"])

    # ----------------------------------------------------------------- metrics
    def log(self, type: str, metrics: Mapping[str, Any], step: int,  # noqa: A002 - seed API
            epoch: int | None = None) -> None:
        """Record one set of metric values.

        Args:
            type: 'train'/'training', 'val'/'validate'/'validation', 'test'/'testing'/
                'eval'/'evaluate'/'evaluation' (normalised to train/val/test), or any
                other name (kept as given).
            metrics: metric name -> value: int, float, NumPy scalar or one-element
                array, one-element PyTorch/TensorFlow/MXNet/JAX tensor. NaN and
                infinities are kept.
            step: the global step, an int >= 0.
            epoch: the epoch, an int >= 0, or None.

        The record is in the operating system's page cache when this returns, so killing
        the process loses nothing logged. Nothing here stops training: a bad argument warns
        once per kind of problem and the bad part is dropped (a value whose own ``item()``
        or ``shape`` raises is a bad value); logging after the run ended, or from a forked
        child of the process that writes the run, warns and records nothing; when the disk
        is full (or a quota or file-size limit is reached) the record is dropped, counted in
        run.json under ``metrics_dropped``, and logging resumes once there is room. Under
        ``EM_STRICT=1`` these raise instead: ``TypeError``/``ValueError``,
        :class:`~em_core.errors.RunFinishedError`, ``OSError`` (ENOSPC, EDQUOT, EFBIG).
        """
        # Fast path: a call shaped like an earlier valid one is packed straight into the
        # mapped log. Anything unusual (new names or value types, bad input, a full
        # window, a finished run, a forked child) falls through to _logpath.log_slow, which
        # validates and explains.
        try:
            vals = tuple(metrics.values())
            pack, size, sid, trailer = self._fast[(type, *metrics, *map(_type, vals))]
            # bool is an int to struct; the validating path refuses it, so must this one
            if step < 0 or step.__class__ is bool or (
                    epoch is not None and (epoch < 0 or epoch.__class__ is bool)):
                raise ValueError
            w = self._writer
            with w.lock:  # type: ignore[union-attr]
                p = w.pos  # type: ignore[union-attr]
                if p + size <= w.end:  # type: ignore[union-attr]
                    pack(w.mm, p - w.base, size, sid, step,  # type: ignore[union-attr]
                         -1 if epoch is None else epoch, _time(), *vals, trailer)
                    w.pos = p + size  # type: ignore[union-attr]
                    return
        except Exception:  # noqa: BLE001 - any surprise goes to the explaining path
            pass
        _logpath.log_slow(self, type, metrics, step, epoch)

    def log_many(self, type: str, steps: Sequence[int],  # noqa: A002 - as log()'s parameter
                 metrics: Mapping[str, Sequence[Any]] | Sequence[Mapping[str, Sequence[Any]]],
                 epochs: int | Sequence[int] | None = None) -> None:
        """Record many sets of metric values at once: row ``i`` is what
        ``log(type, {name: column[i] for name, column in metrics.items()}, steps[i], epoch)``
        records, in order, with ``epoch`` being ``epochs[i]`` (or ``epochs`` itself when it is
        None or one int).

        Args:
            type: As in :meth:`log`.
            steps: One step per row.
            metrics: Metric name -> a sequence of values, one per row (a column). Or a list of
                such dicts: each row then records one set per dict, in the list's order (the
                reports of one step a log prints on separate lines).
            epochs: None, one epoch for every row, or one per row.

        The records are the ones those :meth:`log` calls would write (the same bytes in the
        metric log, but that the rows of one call share one timestamp), with the same
        checks, warnings and crash safety; only faster: rows whose columns each hold one
        class of number the run already logged under these names are packed together.
        Columns that are not one value per step warn once (raise under ``EM_STRICT=1``)
        and record nothing.
        """
        _logmany.log_many(self, type, steps, metrics, epochs, _time)

    def flush(self) -> None:
        """Ask the OS to write logged metrics to disk now (survives power loss, not just a
        crash of the process). Not needed for crash safety; costs a disk sync."""
        if self._writer is not None:
            self._writer.flush()

    def last_point(self, type: str) -> Point | None:  # noqa: A002 - as log()'s parameter
        """Step and epoch of the last record logged under ``type``, or None if there is none.

        ``type`` is normalised as in :meth:`log` ('training' is 'train'). Cheap: the run
        keeps the answer per type and, on each call, reads only the records appended since
        the previous call (never the whole log); a run opened with :func:`load_run` (or
        resumed) reads its log once, at the first call. Records logged by other processes
        into the same run are seen too.

        Returns:
            ``Point(step, epoch)`` (a named tuple), or None.

        Raises:
            TypeError: ``type`` is not a string.
            CorruptRunError: the metric log is not one this em reads.
        """
        kind = _validate.metric_type(type)
        if self._last_points is None:
            self._last_points = LastPoints(self._path / METRICS_FILE)
        w = self._writer
        if w is None:
            return self._last_points.update().get(kind)
        with w.lock:  # no record is half-stored while it is read back
            return self._last_points.update().get(kind)

    def metric_records(self) -> list[Record]:
        """Every logged record in order (type, step, epoch, unix time, values)."""
        path = self._path / METRICS_FILE
        return read_records(path) if path.exists() else []

    @property
    def metrics(self) -> dict[str, list[dict[str, Any]]]:
        """``{type: [{'value': {name: number}, 'sequence': {'step', 'epoch', 'timestamp'}}]}``
        read back from disk, in logging order."""
        out: dict[str, list[dict[str, Any]]] = {}
        for r in self.metric_records():
            out.setdefault(r.type, []).append(
                {"value": r.values,
                 "sequence": {"step": r.step, "epoch": r.epoch, "timestamp": ts_iso(r.time)}})
        return out

    # ----------------------------------------------------------------- data flow
    def _associate(self, obj: Any, direction: str) -> None:
        if not isinstance(obj, Recorded):
            raise TypeError(f"mark_{direction} expects an Artifact or a Run, got "
                            f"{type(obj).__name__}: {obj!r:.100}")
        self._add_association(direction + "s", obj)
        obj._add_association("input_of" if direction == "input" else "output_of", self)

    def mark_input(self, obj: Any) -> None:
        """Record that this run read ``obj`` (an Artifact or another Run); the other side
        records it too."""
        self._associate(obj, "input")

    def mark_output(self, obj: Any) -> None:
        """Record that this run produced ``obj`` (an Artifact or another Run)."""
        self._associate(obj, "output")

    # ----------------------------------------------------------------- lifecycle
    def finish(self, status: Status | str = Status.COMPLETE, *,
               error: BaseException | str | None = None) -> None:
        """End the run: flush the metric log to disk and record the status.

        Args:
            status: 'Complete' (default), 'Failed' or 'Killed'.
            error: the reason or exception (type, message, traceback are recorded).

        Calling it again does nothing.
        """
        try:
            st = Status(status)
        except ValueError:
            raise ValueError(f"status={status!r} is not a final status; expected 'Complete', "
                             "'Failed' or 'Killed'") from None
        if st not in (Status.COMPLETE, Status.FAILED, Status.KILLED):
            raise ValueError(f"status={status!r} is not a final status; expected 'Complete', "
                             "'Failed' or 'Killed'")
        self._end(st, error)
        if self._uploader is not None:  # bounded wait; says what is left to sync
            from ._uploader import wait_for
            wait_for(self)

    def _end(self, status: Status, error: Any = None, *, from_signal: bool = False) -> None:
        if not from_signal and not self._ended:
            _monitor.stop(self, status)  # the last system sample goes in before the log closes
        # A SIGINT/SIGTERM arriving meanwhile waits until the final status is on disk.
        with _lifecycle.critical(enabled=not from_signal):
            if not self._ended:
                self._ended = True
                self._fast = _EMPTY
                self._meta.update(status=status.value, end_timestamp=now_iso(),
                                  error=error_info(error))
                self._save()
            if from_signal:
                return  # the process dies now; the metric log is already in the page cache
            if self._writer is not None:
                self._writer.close()
                self._writer = None
                self._meta["summary"] = summary_for_meta(self._path / METRICS_FILE)
                write_json_atomic(self._path / META_FILE, self._meta, fsync=True)
            if self._liveness is not None:
                self._liveness.release()
                self._liveness = None
            _lifecycle.unregister(self)

    def resume(self) -> None:
        """Reopen an ended run for recording: a run this process finished (Lightning
        ends its logger after ``fit`` and again after ``test``), or a run loaded with
        :func:`load_run` whose writing process is gone (continue after a crash).

        New metrics are appended after the existing ones; the status goes back to Running.

        Raises:
            RunFinishedError: another live process is still writing the run.
        """
        if not self._ended and self._writer is not None:
            return
        try:
            liveness = _lifecycle.LivenessLock(str(self._path))
        except BlockingIOError:
            raise RunFinishedError(f"run {self.alternative_name!r} is being written by another "
                                   "live process; it cannot be resumed here") from None
        try:
            self._writer = MetricWriter(self._path / METRICS_FILE)
        except BaseException:
            liveness.release()  # a full disk must not leave the run looking alive
            raise
        self._liveness = liveness
        self._owner = True
        self._fast = self._writer.fast
        self._meta["status"] = Status.RUNNING.value
        self._meta["end_timestamp"] = None
        self._meta.pop("summary", None)
        self._meta["error"] = None
        self._meta["process"] = {**(self._meta.get("process") or {}), "host": hostname(),
                                 "pid": os.getpid(), "boot_id": _lifecycle.boot_id()}
        self._meta.setdefault("resumed", []).append(now_iso())
        self._ended = False
        self._save()
        _lifecycle.register(self)
        self._start_uploader()  # auto_upload stored, or given to load_run
        _monitor.start(self)

    def __enter__(self) -> Run:
        return self

    def __exit__(self, etype: Any, exc: BaseException | None, tb: Any) -> None:
        # KeyboardInterrupt -> Killed; SystemExit follows its code (0/None -> Complete).
        self._end(*(_lifecycle.ending_for(exc) if exc is not None else (Status.COMPLETE,)))
        if self._uploader is not None:
            from ._uploader import wait_for
            wait_for(self)

    # ----------------------------------------------------------------- dicts
    @classmethod
    def parse_from_dict(cls, d: Mapping[str, Any]) -> dict[str, Any]:
        """Validate a dict made by :meth:`to_dict` and return its metadata part."""
        missing = [k for k in ("name", "alternative_name", "status", "hparams") if k not in d]
        if missing:
            raise ValueError(f"not a run dict: missing keys {missing}")
        Status(d["status"])
        return {k: v for k, v in d.items() if k != "metrics"}

    def __repr__(self) -> str:
        return f"<em Run {self.alternative_name!r} {self._meta['status']} at {self.local!r}>"


_time = time.time
_type = builtins.type  # Run.log's parameter named 'type' (the seed API's) shadows the builtin


def hostname() -> str:
    """This machine's host name (recorded with the writing process)."""
    import socket

    return socket.gethostname()


# create_run and load_run live in their own modules (run.py stays small); re-exported here.
from ._create import create_run  # noqa: E402
from ._load import load_run  # noqa: E402
