"""How a run ends when the script does not call ``finish()``, and how readers tell a live
run from a dead one.

Hooks are installed at the first ``create_run`` (never at import):

* an uncaught exception (``sys.excepthook``) ends every open run as ``Failed`` with the
  exception's type, message and traceback, then calls the previous hook;
* SIGTERM and SIGINT end them as ``Killed``, then the previous handler runs (the default
  SIGTERM action still terminates; the default SIGINT handler still raises
  ``KeyboardInterrupt``). Only installed from the main thread; an ignored signal is left
  alone;
* interpreter exit (``atexit``) ends runs still open as ``Complete``.

Liveness: a running run holds an exclusive ``flock`` on ``<run>/.lock``. The kernel drops it
when the process dies, however it dies, so a reader that can take the lock knows the
writer is gone (SIGKILL, OOM kill, power loss) and reports the run as ``Crashed``.
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
from typing import Any, Protocol

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

    @property
    def ended(self) -> bool:
        return self is not Status.RUNNING


class _Endable(Protocol):
    def _end(self, status: Status, error: Any = None, *, from_signal: bool = False) -> None: ...


_open_runs: dict[int, tuple[int, _Endable]] = {}  # id(run) -> (owner pid, run)
_lock = threading.Lock()
_installed = False
_prev_excepthook: Any = None
_prev_handlers: dict[int, Any] = {}


def error_info(exc: BaseException | str | None) -> dict[str, Any] | None:
    """What is recorded about the error that ended a run."""
    if exc is None:
        return None
    if isinstance(exc, BaseException):
        return {"type": type(exc).__qualname__, "message": str(exc),
                "traceback": "".join(traceback.format_exception(type(exc), exc,
                                                                exc.__traceback__))}
    return {"type": None, "message": str(exc), "traceback": None}


def register(run: _Endable) -> None:
    """Track an open run so that the hooks can end it."""
    with _lock:
        _open_runs[id(run)] = (os.getpid(), run)
        _install()


def unregister(run: _Endable) -> None:
    with _lock:
        _open_runs.pop(id(run), None)


def _snapshot() -> list[_Endable]:
    # A forked child (a DataLoader worker, say) inherits the hooks and the parent's open
    # runs; its own signals and exit must not end the parent's runs.
    pid = os.getpid()
    with _lock:
        return [run for owner, run in _open_runs.values() if owner == pid]


def _excepthook(etype: type[BaseException], value: BaseException,
                tb: TracebackType | None) -> None:
    status = Status.KILLED if issubclass(etype, KeyboardInterrupt) else Status.FAILED
    for run in _snapshot():
        try:
            run._end(status, value)
        except Exception:  # noqa: BLE001 - the user's traceback must still be printed
            pass
    (_prev_excepthook or sys.__excepthook__)(etype, value, tb)


def _on_signal(signum: int, frame: FrameType | None) -> None:
    prev = _prev_handlers.get(signum, signal.SIG_DFL)
    name = signal.Signals(signum).name
    for run in _snapshot():
        try:
            run._end(Status.KILLED, f"received {name}", from_signal=True)
        except Exception:  # noqa: BLE001 - the signal's own behaviour must still happen
            pass
    if callable(prev):
        prev(signum, frame)
    elif prev == signal.SIG_DFL:
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)


def _at_exit() -> None:
    for run in _snapshot():
        try:
            run._end(Status.COMPLETE)
        except Exception:  # noqa: BLE001 - interpreter shutdown: nothing left to report to
            pass


def _install() -> None:
    global _installed, _prev_excepthook
    if _installed:
        return
    _installed = True
    _prev_excepthook = sys.excepthook
    sys.excepthook = _excepthook
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


class LivenessLock:
    """The exclusive lock a running run holds on ``<run>/.lock``."""

    def __init__(self, run_dir: str) -> None:
        self.path = os.path.join(run_dir, ".lock")
        self._fd: int | None = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._fd)
            self._fd = None
            raise
        except OSError as e:
            # A file system without flock (some network mounts): record anyway; readers
            # will report a vanished writer as Unknown instead of Crashed.
            handle_problem(EmError(f"cannot lock {self.path!r} ({e}); a crash of this run "
                                   "will show as Unknown, not Crashed"), key="flock")

    def release(self) -> None:
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
