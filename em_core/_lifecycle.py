"""How a run ends when the script does not call ``finish()``, and how readers tell a live
run from a dead one.

Hooks are installed at the first ``create_run`` (never at import):

* an uncaught exception (``sys.excepthook``) ends every open run as ``Failed`` with the
  exception's type, message and traceback (``Killed`` for ``KeyboardInterrupt``), then calls
  the previous hook;
* ``sys.exit`` is wrapped to remember its code, because ``atexit`` is not told it: at
  interpreter exit, runs still open end ``Complete`` for code 0/None, else ``Failed`` ("exit
  code N", or the str given). A bare ``raise SystemExit(3)`` outside a ``with`` block is not
  seen and ends ``Complete``; a ``sys.exit`` whose SystemExit is caught and the script goes
  on is still remembered;
* SIGTERM and SIGINT (only installed from the main thread; an ignored signal is left alone):
  with Python's default SIGINT handler the ``KeyboardInterrupt`` is raised and the run ends
  ``Killed`` only if nobody catches it (``__exit__`` or the excepthook); with SIG_DFL the run
  ends ``Killed`` and the process dies of the signal; with a Python handler installed before
  em, that handler runs, and the run goes on if it returns, or ends ``Killed`` ("received
  SIGTERM") if it raises (``sys.exit``). A handler installed after em replaces ours.
  The handler takes no lock; a signal arriving while a run writes its final status is
  handled once the status is on disk.

Liveness: a running run holds an exclusive ``flock`` on ``<run>/.lock``. The kernel drops it
when the process dies, however it dies, so a reader that can take the lock knows the
writer is gone (SIGKILL, OOM kill, power loss) and reports the run as ``Crashed``. Forked
children close their copy of the descriptor (``os.register_at_fork``) and exec'd programs
never get it, so a surviving helper process does not keep a dead run looking alive.
"""

from __future__ import annotations

import atexit
import enum
import fcntl
import os
import signal
import socket
import sys
import threading
import traceback
from types import FrameType, TracebackType
from typing import Any, NoReturn, Protocol

from .errors import EmError, handle_problem

__all__ = ["Status"]


class Status(str, enum.Enum):
    """A run's state. ``Crashed`` and ``Unknown`` are only ever reported by readers."""

    RUNNING = "Running"
    COMPLETE = "Complete"
    FAILED = "Failed"
    KILLED = "Killed"
    CRASHED = "Crashed"
    UNKNOWN = "Unknown"

    def __str__(self) -> str:
        return self.value


class _Endable(Protocol):
    def _end(self, status: Status, error: Any = None, *, from_signal: bool = False) -> None: ...


_open_runs: dict[int, tuple[int, _Endable]] = {}  # id(run) -> (owner pid, run)
# Only _install takes this lock. The signal handler never takes a lock: a signal landing
# while one is held (inside register, or a second Ctrl-C) would deadlock the process.
_install_lock = threading.Lock()
_installed = False
_prev_excepthook: Any = None
_prev_handlers: dict[int, Any] = {}
_orig_exit: Any = None
_exit_code: list[Any] = []  # the code given to the last sys.exit call, if any
_killed_by: list[str] = []  # a signal whose handler raised to end the process
_critical = [0]  # > 0 while a run writes its final status: signals wait until it is done
_deferred: list[int] = []


def error_info(exc: BaseException | str | None) -> dict[str, Any] | None:
    """What is recorded about the error that ended a run."""
    if exc is None:
        return None
    if isinstance(exc, BaseException):
        return {"type": type(exc).__qualname__, "message": str(exc),
                "traceback": "".join(traceback.format_exception(type(exc), exc,
                                                                exc.__traceback__))}
    return {"type": None, "message": str(exc), "traceback": None}


def exit_status(code: Any) -> tuple[Status, str | None]:
    """The status a ``sys.exit(code)`` means: 0 or None is Complete, anything else Failed
    (a str code is the message, an int code N is "exit code N")."""
    if code is None or code == 0:
        return Status.COMPLETE, None
    if isinstance(code, int):
        return Status.FAILED, f"exit code {code}"
    return Status.FAILED, str(code)


def ending_for(exc: BaseException) -> tuple[Status, Any]:
    """How a run ends when ``exc`` leaves its ``with`` block or the script."""
    if isinstance(exc, (SystemExit, KeyboardInterrupt)) and _killed_by:
        return Status.KILLED, f"received {_killed_by[-1]}"
    if isinstance(exc, KeyboardInterrupt):
        return Status.KILLED, exc
    if isinstance(exc, SystemExit):
        status, message = exit_status(exc.code)
        return status, message
    return Status.FAILED, exc


def register(run: _Endable) -> None:
    """Track an open run so that the hooks can end it."""
    _open_runs[id(run)] = (os.getpid(), run)  # one dict store: atomic under the GIL
    _install()


def unregister(run: _Endable) -> None:
    _open_runs.pop(id(run), None)


def _snapshot() -> list[_Endable]:
    # A forked child (a DataLoader worker, say) inherits the hooks and the parent's open
    # runs; its own signals and exit must not end the parent's runs. dict.copy() is atomic
    # under the GIL, so no lock is needed (and none may be taken: signal handlers call this).
    pid = os.getpid()
    return [run for owner, run in _open_runs.copy().values() if owner == pid]


class critical:
    """Context manager around writing a run's final status: SIGINT/SIGTERM arriving
    meanwhile are handled once the status is on disk (so a run is never left half-ended)."""

    def __init__(self, *, enabled: bool = True) -> None:
        self.enabled = enabled

    def __enter__(self) -> None:
        if self.enabled:
            _critical[0] += 1

    def __exit__(self, *exc: Any) -> None:
        if not self.enabled:
            return
        _critical[0] -= 1
        if _critical[0] == 0:
            while _deferred:
                # Re-deliver: Python runs the handler in the main thread at once.
                os.kill(os.getpid(), _deferred.pop(0))


def _excepthook(etype: type[BaseException], value: BaseException,
                tb: TracebackType | None) -> None:
    status, error = ending_for(value)
    for run in _snapshot():
        try:
            run._end(status, error)
        except Exception:  # noqa: BLE001 - the user's traceback must still be printed
            pass
    (_prev_excepthook or sys.__excepthook__)(etype, value, tb)


def _on_signal(signum: int, frame: FrameType | None) -> None:
    if _critical[0]:
        _deferred.append(signum)
        return
    prev = _prev_handlers.get(signum, signal.SIG_DFL)
    name = signal.Signals(signum).name
    if prev is signal.default_int_handler:
        # The KeyboardInterrupt ends the run (as Killed) only if nobody catches it: in
        # __exit__ or sys.excepthook. A script that catches it goes on recording.
        prev(signum, frame)
        return
    if callable(prev):
        # The user's handler (graceful preemption): if it returns, training goes on.
        try:
            prev(signum, frame)
        except BaseException:
            _killed_by.append(name)
            raise
        return
    # SIG_DFL: the process goes down now.
    for run in _snapshot():
        try:
            run._end(Status.KILLED, f"received {name}", from_signal=True)
        except Exception:  # noqa: BLE001 - the signal's own behaviour must still happen
            pass
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)


def _sys_exit(code: Any = None) -> NoReturn:
    _exit_code[:] = [code]
    _orig_exit(code)
    raise SystemExit(code)  # not reached: for the type checker


def _at_exit() -> None:
    error: str | None
    if _killed_by:
        status, error = Status.KILLED, f"received {_killed_by[-1]}"
    elif _exit_code:
        status, error = exit_status(_exit_code[0])
    else:
        status, error = Status.COMPLETE, None
    for run in _snapshot():
        try:
            run._end(status, error)
        except Exception:  # noqa: BLE001 - interpreter shutdown: nothing left to report to
            pass


def _install() -> None:
    global _installed, _prev_excepthook, _orig_exit
    if _installed:
        return
    with _install_lock:
        if _installed:
            return
        _installed = True
        _prev_excepthook = sys.excepthook
        sys.excepthook = _excepthook
        # atexit is not told the exit code: remember what sys.exit was given.
        _orig_exit = sys.exit
        sys.exit = _sys_exit
        atexit.register(_at_exit)
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGTERM, signal.SIGINT):
                prev = signal.getsignal(signum)
                if prev == signal.SIG_IGN or prev is None:
                    continue  # ignored (e.g. nohup): the process does not end on it
                _prev_handlers[signum] = prev
                signal.signal(signum, _on_signal)


def boot_id() -> str | None:
    try:
        with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as f:
            return f.read().strip()
    except OSError:
        return None


_held_locks: dict[int, LivenessLock] = {}
_fork_hook = [False]


def _close_locks_in_child() -> None:
    # The flock belongs to the open file description, shared with a forked child: a child
    # still holding its copy would keep a dead parent's run looking alive. Close (never
    # unlock: that would drop the parent's lock too).
    for lock in list(_held_locks.values()):
        if lock._fd is not None:
            try:
                os.close(lock._fd)
            except OSError:
                pass
            lock._fd = None
    _held_locks.clear()


class LivenessLock:
    """The exclusive lock a running run holds on ``<run>/.lock``. The descriptor is not
    inherited by exec'd programs (``os.open`` default) and is closed in forked children."""

    def __init__(self, run_dir: str) -> None:
        self.path = os.path.join(run_dir, ".lock")
        if not _fork_hook[0]:
            _fork_hook[0] = True
            os.register_at_fork(after_in_child=_close_locks_in_child)
        self._fd: int | None = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        _held_locks[id(self)] = self
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._fd)
            self._fd = None
            _held_locks.pop(id(self), None)
            raise
        except OSError as e:
            # A file system without flock (some network mounts): record anyway; readers
            # will report a vanished writer as Unknown instead of Crashed.
            handle_problem(EmError(f"cannot lock {self.path!r} ({e}); a crash of this run "
                                   "will show as Unknown, not Crashed"), key="flock")

    def release(self) -> None:
        _held_locks.pop(id(self), None)
        if self._fd is not None:
            os.close(self._fd)  # closing drops the flock
            self._fd = None


def writer_alive(run_dir: str, process: dict[str, Any] | None) -> bool | None:
    """Whether the process writing ``run_dir`` is alive: True, False, or None (cannot tell:
    another host, or a file system without flock)."""
    path = os.path.join(run_dir, ".lock")
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:
        return None
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
    same_host = (process or {}).get("host") == socket.gethostname()
    return False if same_host or (process or {}).get("host") is None else None
