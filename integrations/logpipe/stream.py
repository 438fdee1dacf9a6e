"""The recorder's side of the pass-through pipe shared by ``em caffe`` and ``em mxnet``.

Training output goes from the input (stdin, or the pipe of a child process) to stdout byte
for byte and as soon as it arrives: each ``os.read`` is written out before anything else
happens to it, so nothing waits on em and nothing is re-encoded. The commands run the
pass-through in a process of its own (:func:`record`; the process itself is
:mod:`integrations.logpipe.passthrough`, which loads next to nothing) that also appends the
output to a copy, ``console.log`` in the run directory; the em process reads that copy at
its own pace and hands complete lines to a *sink* (a log recorder). A log that comes faster
than it can be parsed piles up on disk, not in front of the training: Caffe never blocks on
its stderr because of em. Whatever the sink does wrong is reported through
``em.handle_problem`` and the sink is switched off; the pass-through never stops because of
em. Where ``os.fork`` is missing, :func:`run_stdin` / :func:`run_child` do both in one
process.

Signals: in a pipeline (``caffe ... | em caffe``), SIGTERM ends the pipe; SIGINT (Ctrl-C,
which reaches the training too) lets what the training prints while it stops pass through
until the input ends, and a second one ends it at once. With ``em caffe run -- ...`` both
are forwarded to the child, whose exit then ends the pipe. A closed stdout (SIGPIPE) ends
it too. The sink is told which of these happened (:class:`Outcome`).
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from .passthrough import (
    BUFSIZE,
    NOTE_FAILED,
    STOP_SIGNALS,
    Early,
    SignalFlag,
    StopRequested,
    fork_pass_through,
    install_handler,
    read_chunk,
    release_stdio,
    restore_handlers,
    widen_pipe,
    write_all,
)

__all__ = ["Outcome", "PassThrough", "Recorder", "SafeSink", "Sink", "adopt", "pump",
           "record", "run_child", "run_stdin", "start_child", "start_pass_through"]

_MAX_TAIL = 1 << 20  # a "line" longer than this (progress bars with \r only) is parsed as is
_QUIET_S = 0.2  # the input is idle once no byte came for this long


class Sink(Protocol):
    """What the pipe hands its copy of the output to."""

    def feed(self, block: bytes) -> None:
        """Whole lines (``\\n``-terminated; the very last may lack it)."""

    def idle(self) -> None:
        """The input paused: nothing came for a moment (0.2 s in the two-process pipe;
        nothing pending right now in the one-process fallback)."""


class Recorder(Sink, Protocol):
    """A sink that ends a run: ``finish`` picks the status from how the pipe ended."""

    def finish(self, *, signal: str | None = None, returncode: int | None = None,
               error: BaseException | None = None) -> Any:
        """Record what is left and end the run."""


@dataclass
class Outcome:
    """How the pipe ended.

    Attributes:
        signal: 'SIGINT'/'SIGTERM' when em got one, 'SIGPIPE' when stdout was closed, else None.
        returncode: The child's exit status in ``run`` mode (negative: killed by that signal).
        error: The first exception the sink raised (strict mode), or None.
    """

    signal: str | None = None
    returncode: int | None = None
    error: BaseException | None = None


class SafeSink:
    """Calls the sink; its first exception is reported and turns it off."""

    def __init__(self, sink: Sink | None) -> None:
        self.sink = sink
        self.error: BaseException | None = None

    def call(self, method: str, *args: bytes) -> None:
        if self.sink is None:
            return
        try:
            getattr(self.sink, method)(*args)
        except Exception as exc:  # noqa: BLE001 - parsing must never stop the pass-through
            self.sink = None
            self.error = exc
            report(exc)


def report(exc: BaseException) -> None:
    """Say once (``em.handle_problem``) that recording stopped after ``exc``; never raises."""
    import em_core as em

    try:
        em.handle_problem(RuntimeError(f"em stopped reading the log after an error: "
                                       f"{type(exc).__name__}: {exc}"), key="logstream-sink")
    except Exception:  # noqa: BLE001 - strict mode: the caller re-raises `exc` at the end
        pass


class _Lines:
    """Cuts a byte stream into blocks of whole lines for a sink (the last may lack its \\n)."""

    def __init__(self, safe: SafeSink) -> None:
        self.safe = safe
        self.tail = b""

    def add(self, chunk: bytes) -> None:
        data = self.tail + chunk if self.tail else chunk
        cut = data.rfind(b"\n") + 1
        if cut:
            self.tail = data[cut:]
            self.safe.call("feed", data[:cut] if self.tail else data)
        else:
            self.tail = data
        if len(self.tail) > _MAX_TAIL:
            self.safe.call("feed", self.tail)
            self.tail = b""

    def end(self) -> None:
        if self.tail:
            tail, self.tail = self.tail, b""
            self.safe.call("feed", tail)


def pump(fd_in: int, fd_out: int | None, sink: Sink | None, *, bufsize: int = BUFSIZE,
         flag: SignalFlag | None = None, safe: SafeSink | None = None) -> SafeSink:
    """Copy ``fd_in`` to ``fd_out`` as data arrives and feed whole lines to ``sink``, in this
    process (the sink's time delays the next read; :func:`record` avoids that).

    Returns at end of input. ``BrokenPipeError`` (stdout closed) and a stop request (a
    signal, through ``flag``) propagate after the lines read so far were fed.
    """
    safe = safe if safe is not None else SafeSink(sink)
    flag = flag if flag is not None else SignalFlag()
    widen_pipe(fd_in, bufsize)
    lines = _Lines(safe)
    try:
        while True:
            chunk = read_chunk(fd_in, bufsize, flag)
            if not chunk:
                break
            if fd_out is not None:
                write_all(fd_out, chunk)
            if safe.sink is not None:
                lines.add(chunk)
                if len(chunk) < bufsize:
                    safe.call("idle")
    finally:
        lines.end()
    return safe


def run_stdin(sink: Sink | None, *, fd_in: int | None = None, fd_out: int | None = None) -> Outcome:
    """Pass stdin through to stdout until end of input, SIGINT/SIGTERM or a closed stdout."""
    fd_in = sys.stdin.fileno() if fd_in is None else fd_in
    fd_out = sys.stdout.fileno() if fd_out is None else fd_out
    outcome = Outcome()
    flag = SignalFlag()
    safe = SafeSink(sink)

    def stop(signum: int, _frame: object) -> None:
        flag.signum = signum
        if flag.reading:  # blocked in os.read: only an exception gets us out
            raise StopRequested(signum)

    previous = install_handler(stop)
    try:
        pump(fd_in, fd_out, sink, flag=flag, safe=safe)
    except StopRequested as exc:
        outcome.signal = exc.name
    except BrokenPipeError:
        outcome.signal = "SIGPIPE"
    finally:
        restore_handlers(previous)
    outcome.error = safe.error
    return outcome


def start_child(command: Sequence[str]) -> subprocess.Popen[bytes]:
    """Start ``command`` in its own session with stdout and stderr on one pipe (a terminal's
    Ctrl-C then reaches it once, through em, which forwards it).

    Raises:
        OSError: The program does not exist or cannot be executed.
    """
    return subprocess.Popen(list(command), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True)


def run_child(command: Sequence[str] | subprocess.Popen[bytes], sink: Sink | None, *,
              fd_out: int | None = None) -> Outcome:
    """Start ``command`` (or take one :func:`start_child` started), pass its output through,
    wait for it.

    SIGINT and SIGTERM received meanwhile are forwarded to the child and the pipe keeps
    running until the child has exited and its output is drained.

    Raises:
        OSError: The program does not exist or cannot be executed.
    """
    fd_out = sys.stdout.fileno() if fd_out is None else fd_out
    proc = command if isinstance(command, subprocess.Popen) else start_child(command)
    outcome = Outcome()

    def forward(signum: int, _frame: object) -> None:
        outcome.signal = signal.Signals(signum).name
        try:
            proc.send_signal(signum)
        except ProcessLookupError:
            pass

    previous = install_handler(forward)
    safe = SafeSink(sink)
    assert proc.stdout is not None
    try:
        pump(proc.stdout.fileno(), fd_out, sink, safe=safe)
        outcome.returncode = proc.wait()
    except BrokenPipeError:
        outcome.signal = "SIGPIPE"
        proc.stdout.close()  # the child gets SIGPIPE on its next write, as with `cat`
        outcome.returncode = _wait(proc, 5)
    finally:
        restore_handlers(previous)
    outcome.error = safe.error
    return outcome


def _wait(proc: subprocess.Popen[bytes], timeout: float | None) -> int | None:
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        return None


# ------------------------------------------------------------ two processes: record()
#
# The pass-through is a forked process that does nothing else: read, write to stdout,
# append to the log copy, drop a one-byte note to the recorder. The recorder (the calling
# process, which owns the run) reads the copy at its own pace. A log that arrives faster
# than it can be parsed piles up in the copy on disk, never in front of the training.


class PassThrough:
    """The output of a training on its way to stdout, in a process of its own.

    Made by :func:`start_pass_through`; :meth:`follow` then records the copy into a sink.
    This process holds SIGINT and SIGTERM back in between (while the run is created); the
    pass-through acts on them at once.
    """

    def __init__(self, copy_fd: int, proc: subprocess.Popen[bytes] | None, fd_in: int,
                 fd_out: int, *, release: tuple[int | None, int | None],
                 early: Early | None = None) -> None:
        self.copy_fd = copy_fd
        self.proc = proc
        self.fd_in = fd_in
        self.fd_out = fd_out
        self.outcome = Outcome()
        self._stop = SignalFlag()  # signum set: recording stops at once (2nd signal, pipe mode)
        self.pid: int | None = None  # None: follow() does it all in one process
        self._note_r = -1
        self._niced = False
        if early is not None:  # started already, stdin/stdout released
            self.pid, self._note_r, self._niced = early.pid, early.note_r, early.niced
            return
        try:
            forked = fork_pass_through(copy_fd, fd_in, fd_out, stop_on_signals=proc is None)
        except OSError as exc:  # no process to spare
            report(exc)
            return
        if forked is None:  # no fork (Windows)
            return
        self.pid, self._note_r = forked
        if proc is not None:
            assert proc.stdout is not None
            proc.stdout.close()  # the pass-through alone reads it: if it dies, caffe gets SIGPIPE
        release_stdio(*release)

    def _on_signal(self, signum: int, _frame: object) -> None:
        name = signal.Signals(signum).name
        if self.proc is not None:
            self.outcome.signal = name
        elif self.outcome.signal is None:
            self.outcome.signal = name
            if signum == signal.SIGINT:
                # a terminal's Ctrl-C reached the pass-through as well (which then passes
                # through what the training prints while it stops), or only em was sent it:
                # either way the pass-through goes on until the input ends
                return
        else:
            self._stop.signum = signum
        try:
            os.kill(self.proc.pid if self.proc is not None else self.pid, signum)  # type: ignore[arg-type]
        except ProcessLookupError:
            pass

    def follow(self, sink: Sink | None, *, nice: int = 10) -> Outcome:
        """Feed the copy to ``sink`` (None: record nothing) until the output has ended and
        the copy is read, then wait for the pass-through (and the command)."""
        if self.pid is None:  # no fork
            if self.proc is not None:
                return run_child(self.proc, sink, fd_out=self.fd_out)
            return run_stdin(sink, fd_in=self.fd_in, fd_out=self.fd_out)
        outcome = self.outcome
        previous = install_handler(self._on_signal)  # over em_core's, which would end the run early
        signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)  # what came meanwhile lands here
        if nice and not self._niced:
            try:
                os.nice(nice)  # the training and its output first
            except OSError:
                pass
        safe = SafeSink(sink)
        try:
            copy_errno = _follow(self.copy_fd, self._note_r, safe, self._stop)
        finally:
            os.close(self._note_r)  # a pass-through still copying stops (EPIPE on its notes)
            _, wait_status = os.waitpid(self.pid, 0)
            restore_handlers(previous)
        code = os.waitstatus_to_exitcode(wait_status)
        if code == 141:
            outcome.signal = "SIGPIPE"
        elif code < 0 and outcome.signal is None:
            outcome.signal = signal.Signals(-code).name
        elif code > 128 and outcome.signal is None:
            outcome.signal = signal.Signals(code - 128).name
        if self.proc is not None:
            outcome.returncode = _wait(self.proc, 5 if code else None)
        outcome.error = safe.error
        if copy_errno is not None and outcome.error is None and sink is not None:
            outcome.error = OSError(copy_errno, f"the copy of the log could not be written "
                                                f"({os.strerror(copy_errno)}); the output went "
                                                f"on, the run misses the rest of the log")
        return outcome


def start_pass_through(copy_fd: int, *, command: Sequence[str] | None = None,
                       fd_in: int | None = None, fd_out: int | None = None) -> PassThrough:
    """Start passing the output through (from stdin, or from ``command``, started as by
    :func:`start_child`) to stdout in a forked process that also appends it to ``copy_fd``
    (a file open for reading and appending).

    Call :meth:`PassThrough.follow` next. When stdin/stdout are the defaults, this process's
    own are pointed at /dev/null: whoever reads em's output sees its end as soon as the
    pass-through has passed the last byte, however long recording takes after that.

    Raises:
        OSError: ``command`` cannot be started.
    """
    proc = start_child(command) if command else None
    own_in, own_out = fd_in is None and proc is None, fd_out is None
    fd_out = sys.stdout.fileno() if fd_out is None else fd_out
    if proc is not None:
        assert proc.stdout is not None
        fd_in = proc.stdout.fileno()
    elif fd_in is None:
        fd_in = sys.stdin.fileno()
    return PassThrough(copy_fd, proc, fd_in, fd_out,
                       release=(fd_in if own_in else None, fd_out if own_out else None))


def adopt(early: Early) -> PassThrough:
    """The :class:`PassThrough` of a pass-through :func:`start_early` started."""
    return PassThrough(early.copy_fd, None, 0, 1, release=(None, None), early=early)


def record(sink: Sink, copy_fd: int, *, command: Sequence[str] | None = None,
           fd_in: int | None = None, fd_out: int | None = None, nice: int = 10) -> Outcome:
    """Pass the output through in a child process, record it in this one.

    :func:`start_pass_through` then :meth:`PassThrough.follow`: the forked pass-through
    copies the input to stdout and appends it to ``copy_fd``; this process feeds the copy
    to ``sink`` at its own pace, ``nice`` steps lower in CPU priority (the pass-through keeps
    the caller's), so a slow parser never holds up the training's output. A log that
    arrives faster than it is parsed piles up in the copy on disk.

    Signals: in pipe mode, SIGTERM stops the pass-through and what it had read is still
    recorded; a first SIGINT lets it run until the input ends (the training got Ctrl-C as
    well: its last words pass through). A second signal stops recording at once. In
    ``run`` mode they are forwarded to the command. Without ``os.fork`` (Windows) this is
    :func:`run_stdin` / :func:`run_child`, in one process.

    Raises:
        OSError: ``command`` cannot be started.
    """
    return start_pass_through(copy_fd, command=command, fd_in=fd_in,
                              fd_out=fd_out).follow(sink, nice=nice)


def _follow(copy_fd: int, note_r: int, safe: SafeSink, stop: SignalFlag) -> int | None:
    """Feed the copy to the sink until the pass-through has ended and the copy is read;
    returns the errno that stopped the copy, if one did."""
    lines = _Lines(safe)
    offset = 0
    open_ = True  # the pass-through has not ended
    quiet = False  # idle() was called since the last data
    copy_errno = None
    try:
        while stop.signum is None:
            chunk = os.pread(copy_fd, BUFSIZE, offset) if safe.sink is not None else b""
            if chunk:
                offset += len(chunk)
                lines.add(chunk)
                quiet = False
                continue
            if not open_:
                break
            # glog writes each line on its own: a burst (a test pass's outputs) may be half
            # read; idle() once the input stayed quiet a moment, not between its lines
            if not quiet and not select.select([note_r], [], [], _QUIET_S)[0]:
                safe.call("idle")
                quiet = True
            notes = os.read(note_r, 4096)  # blocks until more output, or the end of it
            if not notes:
                open_ = False
            elif NOTE_FAILED in notes:
                i = notes.index(NOTE_FAILED)
                copy_errno = notes[i + 1] if i + 1 < len(notes) else 0
    finally:
        lines.end()
    return copy_errno


