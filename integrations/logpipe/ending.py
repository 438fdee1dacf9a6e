"""How a training recorded from its log ended: one mapping, shared by ``em caffe`` and
``em mxnet``, from the signal em received, the command's exit status and what the log's last
lines said to the run's final status.

=========================================================  =======  ===========================
what happened                                              status   reason recorded
=========================================================  =======  ===========================
em received SIGINT or SIGTERM (Ctrl-C, ``kill``)           Killed   em received SIGINT
em's stdout was closed (the reader after em went away)     Killed   stdout was closed
the command died of SIGSEGV, SIGABRT, SIGBUS, SIGFPE,      Failed   the log's fatal lines, then
SIGILL, SIGSYS or SIGTRAP: it crashed (a failed CHECK               "<prog> died of SIGSEGV"
aborts)
the command died of another signal: SIGKILL, SIGTERM,      Killed   <prog> was killed by
SIGINT, SIGHUP, ... (something outside stopped it)                  SIGKILL
the log has fatal lines (a traceback, ``F...`` lines)      Failed   those lines
the command exited with a non-zero status                  Failed   <prog> exited with status N
the framework says it was stopped (Caffe's answer to       Killed   the framework's words
SIGINT/SIGHUP, Python's ``KeyboardInterrupt``)
the framework's end marker is missing (Caffe:              Failed   the log ended before ...
``Optimization Done``)
otherwise                                                  Complete
=========================================================  =======  ===========================

An exception of em's own while reading the log overrides all of these: ``Failed``, "em could
not read the log: ...". The exit status em returns is the command's in ``run`` mode (see
:func:`integrations.logpipe.command.exit_code`); the run's status never changes it.
"""

from __future__ import annotations

import signal as _signals
from collections.abc import Sequence
from typing import Any

__all__ = ["CRASH_SIGNALS", "ending", "signal_name"]

#: Signals a program dies of by itself (it crashed), unlike SIGKILL/SIGTERM/SIGINT/SIGHUP,
#: which something outside sends it.
CRASH_SIGNALS = frozenset({"SIGABRT", "SIGSEGV", "SIGBUS", "SIGFPE", "SIGILL", "SIGSYS",
                           "SIGTRAP"})


def signal_name(number: int) -> str:
    """``9`` -> ``'SIGKILL'``; ``'signal 99'`` for a number that names no signal here."""
    try:
        return _signals.Signals(number).name
    except ValueError:
        return f"signal {number}"


def ending(*, prog: str, signal: str | None = None, returncode: int | None = None,
           failures: Sequence[str] = (), stopped: str | None = None,
           unfinished: str | None = None, error: BaseException | None = None,
           ) -> tuple[Any, str | None]:
    """The final status of a run recorded from a log, and the reason when not ``Complete``
    (see the module's table).

    Args:
        prog: Who ran the training, for reasons: 'caffe', 'the training'.
        signal: 'SIGINT'/'SIGTERM' when em received one, 'SIGPIPE' when its stdout was
            closed, else None.
        returncode: The command's exit status in ``run`` mode (negative: killed by that
            signal); None in pipe mode.
        failures: What the log's fatal lines said, in order (none after a clean end).
        stopped: The framework's words when it was stopped (Caffe's 'Optimization stopped
            early', a Python ``KeyboardInterrupt``), else None.
        unfinished: Why the log is incomplete (its end marker missing), else None; also
            appended to a non-zero exit status ("... before 'Optimization Done'").
        error: em's own exception while reading the log, if one stopped it.

    Returns:
        (``em.Status``, reason or None).
    """
    import em_core as em

    if error is not None:
        return em.Status.FAILED, f"em could not read the log: {error!r}"
    if signal is not None:
        return em.Status.KILLED, ("stdout was closed" if signal == "SIGPIPE"
                                  else f"em received {signal}")
    if returncode is not None and returncode < 0:
        name = signal_name(-returncode)
        if name in CRASH_SIGNALS:
            return em.Status.FAILED, "; ".join([*failures, f"{prog} died of {name}"])
        return em.Status.KILLED, f"{prog} was killed by {name}"
    if failures:
        return em.Status.FAILED, "; ".join(failures)
    if returncode:
        suffix = f" {unfinished}" if unfinished else ""
        return em.Status.FAILED, f"{prog} exited with status {returncode}{suffix}"
    if stopped is not None:
        return em.Status.KILLED, stopped
    if unfinished is not None:
        return em.Status.FAILED, f"the log ended {unfinished}"
    return em.Status.COMPLETE, None
