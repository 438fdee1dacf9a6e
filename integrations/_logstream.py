"""The pass-through pipe shared by ``em caffe`` and ``em mxnet``.

Training output goes from the input (stdin, or the pipe of a child process) to stdout byte
for byte and as soon as it arrives: each ``os.read`` is written out before anything is
parsed, so nothing waits on em and nothing is re-encoded. A copy of the complete lines goes
to a *sink* (a log recorder). Whatever the sink does wrong is reported through
``em.handle_problem`` and the sink is switched off; the pass-through never stops because of
em.

Signals: SIGINT and SIGTERM end the pipe (``em caffe`` in a pipeline), or are forwarded to
the child (``em caffe run -- ...``), whose exit then ends it. A closed stdout (SIGPIPE) ends
it too. The sink is told which of these happened so that it can mark the run ``Killed``.
"""

from __future__ import annotations

import argparse
import math
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

__all__ = ["Outcome", "Recorder", "Sink", "add_run_arguments", "command_main", "exit_code",
           "pass_through_only", "pump", "run_child", "run_stdin", "split_command"]

_BUFSIZE = 1 << 20
_MAX_TAIL = 1 << 20  # a "line" longer than this (progress bars with \r only) is parsed as is


def parse_number(text: str) -> float | None:
    """A number as training logs print it, with the nan/inf spellings of glibc (``nan``,
    ``-nan``, ``inf``) and MSVC (``1.#QNAN``, ``1.#IND``, ``-1.#INF``); None otherwise."""
    try:
        return float(text)
    except ValueError:
        upper = text.upper()
        if "NAN" in upper or "#IND" in upper:
            return math.nan
        if "INF" in upper:
            return -math.inf if upper.startswith("-") else math.inf
        return None


class Sink(Protocol):
    """What the pipe hands its copy of the output to."""

    def feed(self, block: bytes) -> None:
        """Whole lines (``\\n``-terminated; the very last may lack it)."""

    def idle(self) -> None:
        """The input has no more data pending right now."""


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


class _Stop(BaseException):  # not an Exception: a sink's `except Exception` must not eat it
    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.name = signal.Signals(signum).name


class _SafeSink:
    """Calls the sink; its first exception is reported and turns it off."""

    def __init__(self, sink: Sink) -> None:
        self.sink: Sink | None = sink
        self.error: BaseException | None = None

    def call(self, method: str, *args: bytes) -> None:
        if self.sink is None:
            return
        try:
            getattr(self.sink, method)(*args)
        except Exception as exc:  # noqa: BLE001 - parsing must never stop the pass-through
            self.sink = None
            self.error = exc
            _report(exc)


def _report(exc: BaseException) -> None:
    import em_core as em

    try:
        em.handle_problem(RuntimeError(f"em stopped reading the log after an error: "
                                       f"{type(exc).__name__}: {exc}"), key="logstream-sink")
    except Exception:  # noqa: BLE001 - strict mode: the caller re-raises `exc` at the end
        pass


def _write_all(fd: int, data: bytes) -> None:
    n = os.write(fd, data)  # one call, nearly always
    if n < len(data):
        view = memoryview(data)[n:]
        while view:
            n = os.write(fd, view)
            view = view[n:]


class _Flag:
    """Signals seen by the pipe; a handler raises only while the pipe blocks in a read."""

    def __init__(self) -> None:
        self.reading = False
        self.signum: int | None = None

    def check(self) -> None:
        if self.signum is not None:
            raise _Stop(self.signum)


def _widen_pipe(fd: int, size: int) -> None:
    """Ask for a bigger pipe buffer (Linux): fewer, larger reads when the log comes fast."""
    try:
        import fcntl
        import stat

        if stat.S_ISFIFO(os.fstat(fd).st_mode):
            fcntl.fcntl(fd, getattr(fcntl, "F_SETPIPE_SZ", 1031), size)
    except (OSError, ValueError, ImportError):
        pass  # not Linux, not a pipe, or above /proc/sys/fs/pipe-max-size: keep the default


def pump(fd_in: int, fd_out: int | None, sink: Sink, *, bufsize: int = _BUFSIZE,
         flag: _Flag | None = None, safe: _SafeSink | None = None) -> _SafeSink:
    """Copy ``fd_in`` to ``fd_out`` as data arrives and feed whole lines to ``sink``.

    Returns at end of input. ``BrokenPipeError`` (stdout closed) and a stop request (a
    signal, through ``flag``) propagate after the lines read so far were fed.
    """
    safe = safe if safe is not None else _SafeSink(sink)
    flag = flag if flag is not None else _Flag()
    _widen_pipe(fd_in, bufsize)
    tail = b""
    try:
        while True:
            flag.reading = True
            try:
                flag.check()
                chunk = os.read(fd_in, bufsize)
            finally:
                flag.reading = False
            if not chunk:
                break
            if fd_out is not None:
                _write_all(fd_out, chunk)
            data = tail + chunk if tail else chunk
            cut = data.rfind(b"\n") + 1
            if cut:
                tail = data[cut:]
                safe.call("feed", data[:cut] if tail else data)
            else:
                tail = data
            if len(tail) > _MAX_TAIL:
                safe.call("feed", tail)
                tail = b""
            if len(chunk) < bufsize:
                safe.call("idle")
    finally:
        if tail:
            safe.call("feed", tail)
    return safe


def _install(handler: object) -> dict[int, object]:
    previous = {}
    for signum in (signal.SIGINT, signal.SIGTERM):
        previous[signum] = signal.signal(signum, handler)  # type: ignore[arg-type]
    return previous


def _restore(previous: dict[int, object]) -> None:
    for signum, handler in previous.items():
        signal.signal(signum, handler)  # type: ignore[arg-type]


def run_stdin(sink: Sink, *, fd_in: int | None = None, fd_out: int | None = None) -> Outcome:
    """Pass stdin through to stdout until end of input, SIGINT/SIGTERM or a closed stdout."""
    fd_in = sys.stdin.fileno() if fd_in is None else fd_in
    fd_out = sys.stdout.fileno() if fd_out is None else fd_out
    outcome = Outcome()
    flag = _Flag()
    safe = _SafeSink(sink)

    def stop(signum: int, frame: object) -> None:
        flag.signum = signum
        if flag.reading:  # blocked in os.read: only an exception gets us out
            raise _Stop(signum)

    previous = _install(stop)
    try:
        pump(fd_in, fd_out, sink, flag=flag, safe=safe)
    except _Stop as exc:
        outcome.signal = exc.name
    except BrokenPipeError:
        outcome.signal = "SIGPIPE"
    finally:
        _restore(previous)
    outcome.error = safe.error
    return outcome


def run_child(command: Sequence[str], sink: Sink, *, fd_out: int | None = None) -> Outcome:
    """Start ``command`` with stdout and stderr on one pipe, pass it through, wait for it.

    SIGINT and SIGTERM received meanwhile are forwarded to the child (started in its own
    session, so a terminal's Ctrl-C reaches it once, through em) and the pipe keeps running
    until the child has exited and its output is drained.

    Raises:
        FileNotFoundError: The program does not exist.
    """
    fd_out = sys.stdout.fileno() if fd_out is None else fd_out
    proc = subprocess.Popen(list(command), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True)
    outcome = Outcome()

    def forward(signum: int, frame: object) -> None:
        outcome.signal = signal.Signals(signum).name
        try:
            proc.send_signal(signum)
        except ProcessLookupError:
            pass

    previous = _install(forward)
    safe = _SafeSink(sink)
    try:
        assert proc.stdout is not None
        pump(proc.stdout.fileno(), fd_out, sink, safe=safe)
        outcome.returncode = proc.wait()
    except BrokenPipeError:
        outcome.signal = "SIGPIPE"
        proc.stdout.close()  # the child gets SIGPIPE on its next write, as with `cat`
        try:
            outcome.returncode = proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            outcome.returncode = None
    finally:
        _restore(previous)
    outcome.error = safe.error
    return outcome


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """The options every log command shares (run name, folder, upload, labels)."""
    parser.add_argument("--name", default="default", help="run name (default: %(default)s)")
    parser.add_argument("--folder", default="default",
                        help="server folder for --upload (default: %(default)s)")
    parser.add_argument("--upload", action="store_true",
                        help="mark the run for upload when it ends (stored with the run; "
                             "uploading comes with the em server)")
    parser.add_argument("--make-folder", action="store_true",
                        help="create the --folder on the server if missing")
    parser.add_argument("--label", action="append", default=[], dest="labels",
                        help="a label for the run (repeatable)")
    parser.add_argument("--description", default="", help="free text stored with the run")


_EXIT_SIGNAL = {"SIGINT": 130, "SIGTERM": 143, "SIGPIPE": 141}


def split_command(argv: Sequence[str]) -> tuple[list[str], list[str] | None, str | None]:
    """``['run', opts..., '--', cmd...]`` -> (opts, cmd, None); plain options -> (opts, None,
    None); a malformed ``run`` -> ([], None, error message)."""
    args = list(argv)
    if args[:1] != ["run"]:
        return args, None, None
    rest = args[1:]
    if "--" not in rest:
        return [], None, "usage: run [options] -- COMMAND [ARGS...]"
    cut = rest.index("--")
    if cut + 1 >= len(rest):
        return [], None, "no command after '--'"
    return rest[:cut], rest[cut + 1:], None


def exit_code(outcome: Outcome, *, child: bool) -> int:
    """The command's exit status: the child's (128+N if killed by signal N) in ``run`` mode;
    0, or 130/143/141 after SIGINT/SIGTERM/a closed stdout, in pipe mode."""
    if child and outcome.returncode is not None:
        rc = outcome.returncode
        return 128 - rc if rc < 0 else rc
    return _EXIT_SIGNAL.get(outcome.signal or "", 0)


class _Nothing:
    def feed(self, block: bytes) -> None:
        pass

    def idle(self) -> None:
        pass


def pass_through_only(command: Sequence[str] | None) -> int:
    """em cannot record (bad options, no run): still pass the output through untouched."""
    outcome = run_child(command, _Nothing()) if command else run_stdin(_Nothing())
    return exit_code(outcome, child=command is not None)


def _say(prog: str, message: str) -> None:
    try:
        print(f"{prog}: {message}", file=sys.stderr, flush=True)
    except OSError:
        pass


def command_main(argv: Sequence[str] | None, *, prog: str, description: str,
                 make_recorder: Callable[[Any, argparse.Namespace], Recorder],
                 add_arguments: Callable[[argparse.ArgumentParser], None] | None = None,
                 hparams: Callable[[argparse.Namespace, list[str] | None], dict] | None = None,
                 ) -> int:
    """The body of ``em caffe`` and ``em mxnet``: options, run, pipe, status, exit code.

    ``argv`` is either options (pipe mode: stdin to stdout) or ``run [options] -- COMMAND``.
    A bad option in pipe mode, or a run that cannot be created, still passes the output
    through (recording nothing). The recorder's exceptions are reported with
    ``em.handle_problem`` after the whole output went through.
    """
    args_in, command, problem = split_command(sys.argv[1:] if argv is None else argv)
    if problem:
        _say(prog, problem)
        return 2
    parser = argparse.ArgumentParser(prog=f"{prog} run" if command else prog,
                                     description=description)
    add_run_arguments(parser)
    if add_arguments is not None:
        add_arguments(parser)
    try:
        args = parser.parse_args(args_in)
    except SystemExit as exc:
        if exc.code in (0, None):
            return 0
        if command:
            return 2  # nothing started yet: better not to start a training with a typo
        _say(prog, "recording nothing; passing the output through")
        return pass_through_only(None) or 2

    import em_core as em

    try:
        initial = hparams(args, command) if hparams is not None else {}
        run = em.create_run(name=args.name, hparams=initial or None, labels=args.labels,
                            description=args.description, auto_upload=args.upload,
                            folder=args.folder, make_folder=args.make_folder)
        recorder = make_recorder(run, args)
    except (OSError, ValueError, TypeError, em.EmError) as exc:
        _say(prog, f"cannot create the run ({exc}); recording nothing")
        return pass_through_only(command)
    if command:
        try:
            outcome = run_child(command, recorder)
        except OSError as exc:
            _say(prog, f"cannot start {command[0]!r}: {exc}")
            run.finish(em.Status.FAILED, error=f"cannot start {command[0]!r}: {exc}")
            return 127
    else:
        outcome = run_stdin(recorder)
    try:
        recorder.finish(signal=outcome.signal, returncode=outcome.returncode,
                        error=outcome.error)
    except Exception as exc:  # noqa: BLE001 - the training's own exit status comes first
        em.handle_problem(exc, key=f"{prog}-finish")
    if outcome.error is not None:
        em.handle_problem(outcome.error, key=f"{prog}-parse")
    return exit_code(outcome, child=command is not None)
