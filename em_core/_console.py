"""Console capture: what the training process writes to stdout and stderr, kept in the run's
``console.log`` while it still reaches the terminal (or file, or pipe) unchanged.

How: at ``create_run`` the descriptors 1 and 2 themselves are redirected (``dup2``), so that
``print``, ``os.write(1, ...)``, C extensions, ``faulthandler`` and child processes are all
caught. A small tee process (:mod:`em_core._tee`, the standard library only) reads them and
writes every byte at once to where the stream went before, and appends complete lines to
``console.log``. A process rather than a thread of the training: whatever was written before
the training died (SIGKILL, a segfault, ``os._exit``) still reaches the terminal and the file.

isatty: where a stream was a terminal it is given a pseudo-terminal (output post-processing
off, the terminal's window size copied, also on resize), so ``isatty()`` stays true and
tqdm, Keras progress bars, colours and ``pdb`` (stdin is never touched; line editing
included) behave as before; the bytes reach the real terminal unchanged, which translates
newlines as it always did. Where it was a pipe or a file it is given a pipe.

Limits: ``console.log`` keeps at most ``EM_CONSOLE_MAX_BYTES`` (default 100 MiB) of the
oldest output, then one note saying the rest was not kept; the terminal gets everything.
``EM_CONSOLE=off`` (or ``create_run(console=False)``) turns capture off. Not captured: what
was printed before ``create_run`` and after ``finish()``, ranks other than 0, notebooks
(ipykernel owns the streams there), ``em caffe``/``em mxnet`` (they keep their own
``console.log``), and platforms without ``fork``/``dup2`` (Windows).

Ending: ``finish()`` puts the streams back once everything written so far has reached the
terminal and the file. A run that ends Failed or Killed (an exception, Ctrl-C) keeps the
capture until the interpreter exits, so that the traceback Python prints lands in
``console.log`` too; a new run's capture replaces it. A child process still holding the
streams after that is served by the tee until it ends.
"""

from __future__ import annotations

import atexit
import os
import select
import signal
import sys
from pathlib import Path
from typing import Any

from .errors import EmError, handle_problem

__all__ = ["CONSOLE_LOG", "DEFAULT_MAX_BYTES", "ENV", "MAX_ENV", "Capture", "enabled_from"]

ENV = "EM_CONSOLE"
MAX_ENV = "EM_CONSOLE_MAX_BYTES"
DEFAULT_MAX_BYTES = 100 << 20
CONSOLE_LOG = "console.log"
_ACK_S = 5.0  # finish() waits at most this long for the tee (a terminal paused by Ctrl-S)
_OFF = {"0", "off", "false", "no"}
_ON = {"", "1", "on", "true", "yes"}
_SIGNALS = {signal.SIGINT, signal.SIGTERM, getattr(signal, "SIGHUP", signal.SIGTERM)}


def enabled_from(value: Any) -> bool:
    """Whether to capture: ``value`` when given (a bool), else ``$EM_CONSOLE`` (``off``,
    ``0``, ``false``, ``no`` turn it off), else on.

    Raises:
        TypeError, ValueError: naming the value and what is accepted.
    """
    if value is None:
        raw = os.environ.get(ENV, "").strip().lower()
        if raw in _OFF:
            return False
        if raw in _ON:
            return True
        raise ValueError(f"{ENV}={os.environ.get(ENV)!r} is not understood; expected 'off' "
                         "(or 0/false/no) to turn console capture off, or 'on'")
    if not isinstance(value, bool):
        raise TypeError(f"console must be True, False or None (then ${ENV} decides), got "
                        f"{type(value).__name__}: {value!r}")
    return value


def max_bytes() -> int:
    raw = os.environ.get(MAX_ENV, "").strip()
    if not raw:
        return DEFAULT_MAX_BYTES
    try:
        value = int(raw)
        if value < 0:
            raise ValueError
    except ValueError:
        raise ValueError(f"{MAX_ENV}={raw!r} is not a number of bytes >= 0") from None
    return value


def _flush_python_streams() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is not None:
                stream.flush()
        except (OSError, ValueError):
            pass


def _pty_like(fd: int) -> tuple[int, int] | None:
    """A pseudo-terminal (master, slave) with the settings and size of the terminal on
    ``fd`` and output processing off, so that the bytes the program writes reach the real
    terminal unchanged; None where one cannot be had (then a pipe is used)."""
    import fcntl
    import termios

    try:
        master, slave = os.openpty()
    except OSError:
        return None
    try:
        try:
            attrs = termios.tcgetattr(fd)
        except termios.error:
            attrs = termios.tcgetattr(slave)
        attrs[1] &= ~termios.OPOST
        termios.tcsetattr(slave, termios.TCSANOW, attrs)
    except (termios.error, OSError):
        os.close(master)
        os.close(slave)
        return None
    try:
        fcntl.ioctl(slave, termios.TIOCSWINSZ, fcntl.ioctl(fd, termios.TIOCGWINSZ, b"\0" * 8))
    except OSError:
        pass  # no size known: programs fall back to 80x24, as on a terminal without one
    return master, slave


class Capture:
    """One run's capture of descriptors 1 and 2 (see the module's docstring)."""

    def __init__(self, run_dir: str | os.PathLike[str]) -> None:
        self.path = Path(run_dir) / CONSOLE_LOG
        self.pid = os.getpid()
        self.saved: dict[int, int] = {}  # captured fd -> a copy of what it was before
        self.ttys: list[int] = []
        self.ctl_w = -1
        self.ack_r = -1
        self.proc: Any = None

    def start(self) -> None:  # noqa: C901 - every descriptor it opens is tracked in one try, so that a failure anywhere closes them all and leaves nothing changed
        """Redirect 1 and 2 through the tee.

        Raises:
            OSError: the tee could not be started; nothing is left changed.
        """
        import subprocess

        cap = max_bytes()
        opened: list[int] = []
        # one tee stream per destination: 1 and 2 on the same terminal or pipe (2>&1) share
        # one, so that their order is kept exactly; fds -> (read end, write end, pty)
        ends: dict[tuple[int, ...], tuple[int, int, bool]] = {}
        try:
            seen: dict[tuple[int, int], tuple[int, ...]] = {}
            for fd in (1, 2):
                try:
                    st = os.fstat(fd)
                except OSError:
                    continue  # a closed stream stays closed
                self.saved[fd] = os.dup(fd)
                opened.append(self.saved[fd])
                same = seen.get((st.st_dev, st.st_ino))
                if same is not None:
                    ends[(*same, fd)] = ends.pop(same)
                    continue
                pair = _pty_like(fd) if os.isatty(fd) else None
                if pair is not None:
                    opened += pair
                    ends[(fd,)] = (*pair, True)
                else:
                    r, w = os.pipe()
                    opened += [r, w]
                    ends[(fd,)] = (r, w, False)
                seen[(st.st_dev, st.st_ino)] = (fd,)
            if not ends:
                return
            ctl_r, self.ctl_w = os.pipe()
            self.ack_r, ack_w = os.pipe()
            opened += [ctl_r, self.ctl_w, self.ack_r, ack_w]
            log_fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC,
                             0o644)
            opened.append(log_fd)
            args = [str(cap), str(ctl_r), str(ack_w), str(log_fd)]
            for fds_, (r, _, pty) in ends.items():
                args += [str(r), str(self.saved[fds_[0]]), "1" if pty else "0"]
            fds = [ctl_r, ack_w, log_fd, *(r for r, _, _ in ends.values()), *self.saved.values()]
            # The tee starts with Ctrl-C and SIGTERM blocked, so that one arriving before it
            # ignores them cannot kill it; here they wait the few microseconds of the spawn.
            old = signal.pthread_sigmask(signal.SIG_BLOCK, _SIGNALS)
            try:
                self.proc = subprocess.Popen(
                    [sys.executable, "-I", "-S", str(Path(__file__).with_name("_tee.py")),
                     *args], pass_fds=fds, stdin=subprocess.DEVNULL, close_fds=True)
            finally:
                signal.pthread_sigmask(signal.SIG_SETMASK, old)
        except BaseException:
            for fd in opened:
                try:
                    os.close(fd)
                except OSError:
                    pass
            self.saved.clear()
            raise
        for fd in (ctl_r, ack_w, log_fd, *(r for r, _, _ in ends.values())):
            os.close(fd)
        _flush_python_streams()  # what was printed before the run goes straight out
        for fds_, (_, w, pty) in ends.items():
            for fd in fds_:
                os.dup2(w, fd)
                if pty:
                    self.ttys.append(fd)
            os.close(w)
        _register_fork_hook()

    def stop(self) -> None:
        """Put the streams back once everything written so far went through the tee.
        A no-op in a forked child (the streams are the parent's to restore)."""
        if os.getpid() != self.pid or not self.saved:
            return
        _flush_python_streams()
        for fd, saved in self.saved.items():
            os.dup2(saved, fd)
            os.close(saved)
        self.saved.clear()
        os.close(self.ctl_w)  # the tee drains, then answers on ack
        self.ctl_w = -1
        try:
            poller = select.poll()  # not select(): the descriptor may be above 1024
            poller.register(self.ack_r, select.POLLIN)
            if poller.poll(_ACK_S * 1000):
                os.read(self.ack_r, 1)
        except OSError:
            pass
        os.close(self.ack_r)
        self.ack_r = -1
        try:
            self.proc.wait(0.2)  # done at once, unless a child still holds the streams
        except Exception:  # noqa: BLE001 - TimeoutExpired: the tee serves that child
            _orphans.append(self.proc)

    def forget_in_child(self) -> None:
        # A forked child keeps writing through the tee, but the control pipe is the
        # parent's: holding it would keep the tee from noticing that the run ended.
        for fd in (self.ctl_w, self.ack_r):
            if fd >= 0:
                try:
                    os.close(fd)
                except OSError:
                    pass
        self.ctl_w = self.ack_r = -1
        for saved in self.saved.values():
            try:
                os.close(saved)
            except OSError:
                pass
        self.saved.clear()


_current: list[Capture] = []  # the capture in effect in this process (one at a time)
_deferred: list[Capture] = []  # ended Failed/Killed: stopped at exit, after the traceback
_orphans: list[Any] = []  # tees still serving a child process; kept so no warning is given
_hooks = [False, False]


def _register_fork_hook() -> None:
    if not _hooks[0]:
        _hooks[0] = True
        os.register_at_fork(after_in_child=_after_fork_in_child)


def _after_fork_in_child() -> None:
    for c in _current + _deferred:
        c.forget_in_child()
    _current.clear()
    _deferred.clear()


def start(run_dir: str | os.PathLike[str]) -> Capture | None:
    """Capture the console into ``run_dir/console.log``; None where it cannot be done here
    (no ``dup2``/``fork``, a notebook, no Python executable to run the tee: a frozen app), or while
    another run of this process still captures (one capture at a time: that run's
    ``console.log`` gets the output). A capture kept after a failed run is stopped first."""
    for c in _deferred:
        c.stop()
    _deferred.clear()
    if (_current or os.name != "posix" or not sys.executable or getattr(sys, "frozen", False)
            or "ipykernel" in sys.modules):  # frozen: sys.executable is the app, not Python
        return None
    capture = Capture(run_dir)
    try:
        capture.start()
    except OSError as e:
        handle_problem(EmError(f"console capture could not start ({e}); the run is recorded "
                               f"without {CONSOLE_LOG}"), key="console:start")
        return None
    if not capture.saved:
        return None
    _current.append(capture)
    return capture


def stop(capture: Capture, *, defer: bool = False) -> None:
    """End ``capture`` now, or (``defer``) at interpreter exit, after Python printed the
    traceback of the exception that ended the run."""
    if capture not in _current:
        return
    _current.remove(capture)
    if defer:
        _deferred.append(capture)
        if not _hooks[1]:
            _hooks[1] = True
            atexit.register(stop_all)
        return
    capture.stop()


def stop_all() -> None:
    """Stop every capture of this process (at exit, or before a new run's)."""
    for c in _deferred + _current:
        c.stop()
    _deferred.clear()
    _current.clear()
