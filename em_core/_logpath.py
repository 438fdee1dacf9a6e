"""``Run.log``'s validating path, and what becomes of runs in a forked child.

``Run.log`` packs a call shaped like an earlier valid one straight into the mapped log; every
other call comes here. Whatever goes wrong here is a problem of logging, never of training:
it is handed to :func:`~em_core.errors.handle_problem` (warn once per kind of problem; under
``EM_STRICT=1`` raise ``TypeError``/``ValueError``/``RunFinishedError``/``OSError``) and the
call returns.

Records the metric log cannot take (a full disk, a quota, a file-size limit) are counted in
the run's metadata under ``metrics_dropped``, saved with the run's next metadata write (at
the latest when it ends).

After ``os.fork`` (DataLoader workers, ``multiprocessing``) the child's copy of an open run
records nothing: :func:`_after_fork_in_child` disowns its metric log (see
:meth:`~em_core._metricfile.MetricWriter.disown`) and marks it ended, so neither ``log``,
``finish``, the exit hooks nor a hyperparameter change in the child touches the parent's
files.
"""

from __future__ import annotations

import errno
import os
import weakref
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from . import _validate
from ._metricfile import WriterClosed
from ._scalar import INT64_MAX, INT64_MIN, direct_kind, show, to_number
from .errors import EmError, RunFinishedError, handle_problem, strict_mode

_EMPTY: dict[Any, Any] = {}
_runs: weakref.WeakSet[Any] = weakref.WeakSet()
_hooked = False


def track(run: Any) -> None:
    """Have the fork hook disown ``run`` in a child forked while it is open (the hook is
    installed with the first run, not at import)."""
    global _hooked
    if not _hooked:
        _hooked = True
        os.register_at_fork(after_in_child=_after_fork_in_child)
    _runs.add(run)


def _after_fork_in_child() -> None:
    for run in list(_runs):
        writer = run._writer
        if writer is None:
            continue  # ended or read-only: nothing of the parent's to protect
        writer.disown()
        run._forked = True
        run._fast = _EMPTY
        run._writer = None
        run._ended = True  # so finish() and the exit hooks save nothing


def log_slow(run: Any, type_: Any, metrics: Any, step: Any, epoch: Any) -> None:
    """Validate, explain and record one ``log`` call (see ``Run.log``)."""
    try:
        _log(run, type_, metrics, step, epoch)
    except Exception as e:  # log() must never break training
        if strict_mode():
            raise  # the documented errors, and any bug of ours, for the test suite to see
        handle_problem(EmError(f"log() failed unexpectedly and dropped this call "
                               f"({type(e).__name__}: {show(e, 200)})"),
                       key=f"log:unexpected:{type(e).__name__}", stacklevel=4)


def _ended(run: Any) -> None:
    if run._forked:
        handle_problem(RunFinishedError(
            f"run {run._meta['alternative_name']!r} is written by process "
            f"{(run._meta.get('process') or {}).get('pid')}; this process ({os.getpid()}) is a "
            "fork of it (a DataLoader worker, a multiprocessing child) and records nothing: "
            "log from the parent"), key="log:forked", stacklevel=6)
    else:
        handle_problem(RunFinishedError(
            f"run {run._meta['alternative_name']!r} has ended ({run._meta['status']}); log() "
            "was called after it"), key="log:ended", stacklevel=6)


def _log(run: Any, type_: Any, metrics: Any, step: Any, epoch: Any) -> None:
    writer = run._writer
    if run._ended or writer is None:
        _ended(run)
        return
    checked = _checked(type_, metrics, step, epoch)
    if checked is None:
        return
    norm, step, epoch = checked
    names, values, kinds, cacheable = _values(metrics)
    if not names:
        return
    try:
        shape = writer.shape(norm, tuple(names), "".join(kinds))
        if cacheable:
            vals = tuple(metrics.values())
            writer.remember((type_, *metrics, *map(type, vals)), shape)
        writer.append(shape, step, -1 if epoch is None else epoch, tuple(values))
    except WriterClosed:  # finish() in another thread, or the fork hook, closed it under us
        if run._forked:
            _ended(run)
        else:
            handle_problem(RunFinishedError(f"run {run._meta['alternative_name']!r} ended "
                                            "while log() was recording"), key="log:ended",
                           stacklevel=5)
    except OSError as e:
        _dropped(run, writer.path, e)


# The helpers below are called by _log: stacklevel 6 points the warning at the user's
# run.log() call. One warning per kind of problem: the keys never include the bad value
# itself, or a loop logging step=-1, -2, ... would warn on every call.
def _checked(type_: Any, metrics: Any, step: Any,
             epoch: Any) -> tuple[str, int, int | None] | None:
    """The normalised type, step and epoch; None (after one warning) when one is bad or
    ``metrics`` is not a non-empty mapping."""
    try:
        norm = _validate.metric_type(type_)
    except (TypeError, ValueError) as e:
        handle_problem(e, key=f"log:type:{type(e).__name__}", stacklevel=6)
        return None
    if not isinstance(metrics, Mapping):
        handle_problem(TypeError(f"metrics must be a dict of name -> number, got "
                                 f"{type(metrics).__name__}: {show(metrics, 200)}"),
                       key="log:metrics:TypeError", stacklevel=6)
        return None
    if not metrics:
        handle_problem(ValueError("metrics is empty; give at least one name -> number"),
                       key="log:metrics:ValueError", stacklevel=6)
        return None
    try:
        step = _validate.index(step, "step")
    except (TypeError, ValueError) as e:
        handle_problem(e, key=f"log:step:{type(e).__name__}", stacklevel=6)
        return None
    try:
        epoch = None if epoch is None else _validate.index(epoch, "epoch")
    except (TypeError, ValueError) as e:
        handle_problem(e, key=f"log:epoch:{type(e).__name__}", stacklevel=6)
        return None
    return norm, step, epoch


def _values(metrics: Mapping[Any, Any]) -> tuple[list[str], list[Any], list[str], bool]:
    """Names, values and struct kinds of the good values (one warning per bad one), and
    whether the call's shape may be cached for the fast path (all were good as given)."""
    names, values, kinds = [], [], []
    cacheable = True
    for k, v in metrics.items():
        if not isinstance(k, str) or not k:
            handle_problem(TypeError(f"metric name must be a non-empty string, got {show(k)}"),
                           key="log:name", stacklevel=6)
            cacheable = False
            continue
        kind = direct_kind(v.__class__)
        if kind == "q" and not INT64_MIN <= v <= INT64_MAX:
            kind = None
        if kind is None:
            cacheable = False
            try:
                v = to_number(v, k)
            except (TypeError, ValueError) as e:
                handle_problem(e, key=f"log:value:{k}:{type(v).__name__}", stacklevel=6)
                continue
            kind = "q" if isinstance(v, int) else "d"
        names.append(k)
        values.append(v)
        kinds.append(kind)
    return names, values, kinds, cacheable


def _dropped(run: Any, path: str, e: OSError) -> None:
    """Count a record the metric log could not take, and say so once."""
    code = errno.errorcode.get(e.errno or 0, str(e.errno))
    with run._save_lock:  # run.json may be being written from another thread
        note = run._meta.get("metrics_dropped")
        if note is None:
            note = run._meta["metrics_dropped"] = {
                "records": 0, "reason": f"{e.strerror} ({code})",
                "first": datetime.now().astimezone().isoformat(timespec="microseconds")}
        note["records"] += 1
    handle_problem(OSError(e.errno, f"em cannot extend the metric log {path!r}: "
                                    f"{e.strerror} ({code}); metrics are dropped (and counted "
                                    "in run.json under 'metrics_dropped') until there is room "
                                    "again; everything logged before is kept"),
                   key="log:storage", stacklevel=6)
