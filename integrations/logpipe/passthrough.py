"""The pass-through process behind ``em caffe`` and ``em mxnet``: training output from the
input to stdout, byte for byte, and into a copy of the log that the recorder reads.

This module loads nothing of em and almost nothing of Python (``os``, ``signal``, ``sys``):
``em caffe`` forks the pass-through with it (:func:`start_early`) before the parser, the
run and the rest of em are even imported, so the log flows from the first milliseconds.
:mod:`integrations.logpipe.stream` holds the recorder's side.
"""

from __future__ import annotations

import os
import signal
import sys

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

BUFSIZE = 1 << 20
STOP_SIGNALS = {signal.SIGINT, signal.SIGTERM}


class StopRequested(BaseException):  # not an Exception: a sink's `except Exception` must not eat it
    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum
        self.name = signal.Signals(signum).name


def write_all(fd: int, data: bytes) -> None:
    n = os.write(fd, data)  # one call, nearly always
    if n < len(data):
        view = memoryview(data)[n:]
        while view:
            n = os.write(fd, view)
            view = view[n:]


class SignalFlag:
    """Signals seen by the pipe; a handler raises only while the pipe blocks in a read."""

    def __init__(self) -> None:
        self.reading = False
        self.signum: int | None = None

    def check(self) -> None:
        if self.signum is not None:
            raise StopRequested(self.signum)


def widen_pipe(fd: int, size: int) -> None:
    """Ask for a bigger pipe buffer (Linux): fewer, larger reads when the log comes fast."""
    try:
        import fcntl
        import stat

        if stat.S_ISFIFO(os.fstat(fd).st_mode):
            fcntl.fcntl(fd, getattr(fcntl, "F_SETPIPE_SZ", 1031), size)
    except (OSError, ValueError, ImportError):
        pass  # not Linux, not a pipe, or above /proc/sys/fs/pipe-max-size: keep the default


def read_chunk(fd: int, bufsize: int, flag: SignalFlag) -> bytes:
    flag.reading = True
    try:
        flag.check()
        return os.read(fd, bufsize)
    finally:
        flag.reading = False


def install_handler(handler: object) -> dict[int, object]:
    previous: dict[int, object] = {}
    for signum in (signal.SIGINT, signal.SIGTERM):
        previous[signum] = signal.signal(signum, handler)  # type: ignore[arg-type]
    return previous


def restore_handlers(previous: dict[int, object]) -> None:
    for signum, handler in previous.items():
        signal.signal(signum, handler)  # type: ignore[arg-type]


_NOTE_DATA = b"."  # a chunk was appended to the copy
NOTE_FAILED = b"!"  # appending failed (followed by one byte: errno % 256); copying stopped


def _pass_through(fd_in: int, fd_out: int, copy_fd: int, note_fd: int, *,
                  stop_on_signals: bool) -> int:
    """The pass-through process's loop; returns its exit status: 0 at end of input,
    128+N after signal N (pipe mode), 141 when stdout was closed.

    Pipe mode: SIGTERM, or a second SIGINT, stops it at once. A first SIGINT does not: a
    terminal's Ctrl-C reaches the training too, and what it prints while it stops (Caffe
    snapshots, a Python traceback) still passes through until the input ends (then 130).
    """
    flag = SignalFlag()
    interrupted = [0]
    if stop_on_signals:
        def stop(signum: int, _frame: object) -> None:
            if signum == signal.SIGINT and not interrupted[0]:
                interrupted[0] = signum
                return
            flag.signum = signum
            if flag.reading:
                raise StopRequested(signum)

        install_handler(stop)
    else:  # run mode: the recorder forwards signals to the command; drain until it ends
        install_handler(signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
    widen_pipe(fd_in, BUFSIZE)
    widen_pipe(fd_out, BUFSIZE)
    os.set_blocking(note_fd, False)
    try:
        ended, copying = _tee_loop(fd_in, fd_out, copy_fd, note_fd, flag)
        while not ended and (chunk := read_chunk(fd_in, BUFSIZE, flag)):
            write_all(fd_out, chunk)  # the output first: the copy can wait, stdout not
            if copying:
                copying = _append(copy_fd, note_fd, chunk)
    except StopRequested as exc:
        return 128 + exc.signum
    except BrokenPipeError:
        return 141
    return 128 + interrupted[0] if interrupted[0] else 0


def _tee_loop(fd_in: int, fd_out: int, copy_fd: int, note_fd: int,
              flag: SignalFlag) -> tuple[bool, bool]:
    """The pass-through without copying through this process (Linux, stdin and stdout both
    pipes): tee(2) puts the input's pages on stdout, then splice(2) moves them into the
    copy, so each byte is copied once in the kernel where ``cat`` copies it twice.

    Returns (the input ended, still copying); (False, True) at once when tee(2) cannot be
    used here, and (False, False) after the copy failed: the plain loop takes over.
    """
    tee = _libc_tee() if hasattr(os, "splice") else None
    if tee is None or not (_is_pipe(fd_in) and _is_pipe(fd_out)):
        return False, True
    import ctypes
    import errno

    first = True
    while True:
        # The signal handler only takes note here (flag.reading stays False): a signal
        # interrupts a blocked tee(2) with EINTR, and bytes tee(2) has put on stdout
        # still go into the copy before the next check stops the loop.
        flag.check()
        n = tee(fd_in, fd_out, BUFSIZE, 0)
        err = ctypes.get_errno() if n < 0 else 0
        if n == 0:
            return True, True
        if n < 0:
            if err == errno.EINTR:
                continue
            if err == errno.EPIPE:
                raise BrokenPipeError(err, os.strerror(err))
            if first:  # EINVAL and the like: not for these descriptors after all
                return False, True
            raise OSError(err, os.strerror(err))
        first = False
        if not _splice_all(fd_in, copy_fd, note_fd, n):
            return False, False


def _splice_all(fd_in: int, copy_fd: int, note_fd: int, n: int) -> bool:
    """Move ``n`` bytes (already on stdout) from the input into the copy and note them;
    False (the bytes taken off the input all the same) once the copy or the recorder is gone."""
    left = n
    try:
        while left:
            left -= os.splice(fd_in, copy_fd, left)
    except OSError as exc:
        while left:  # already passed through: only the copy misses them
            left -= len(os.read(fd_in, left))
        _note_failure(note_fd, exc)
        return False
    return _note(note_fd)


def _libc_tee() -> Callable[[int, int, int, int], int] | None:
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        tee = libc.tee
    except (OSError, AttributeError, ImportError):
        return None
    tee.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_size_t, ctypes.c_uint]
    tee.restype = ctypes.c_ssize_t
    return tee


def _is_pipe(fd: int) -> bool:
    import stat

    try:
        return stat.S_ISFIFO(os.fstat(fd).st_mode)
    except OSError:
        return False


def _append(copy_fd: int, note_fd: int, chunk: bytes) -> bool:
    """Append ``chunk`` to the copy and note it; False once the copy or the recorder is gone."""
    try:
        write_all(copy_fd, chunk)
    except OSError as exc:
        _note_failure(note_fd, exc)
        return False
    return _note(note_fd)


def _note(note_fd: int) -> bool:
    try:
        os.write(note_fd, _NOTE_DATA)
    except BlockingIOError:
        pass  # notes are pending already: the recorder reads this chunk with the others
    except OSError:  # the recorder died: nobody reads the copy any more
        return False
    return True


def _note_failure(note_fd: int, exc: OSError) -> None:
    """E.g. a full disk: the recorder says so, the output goes on."""
    try:
        os.set_blocking(note_fd, True)
        os.write(note_fd, NOTE_FAILED + bytes([(exc.errno or 0) % 256]))
    except OSError:
        pass


def _close_fds_except(keep: set[int]) -> None:
    """Close every inherited descriptor but ``keep``: above all the run's lock, whose holder
    must be the recorder alone (a dead recorder must show as such)."""
    low = 3
    for fd in sorted(k for k in keep if k >= 3):
        os.closerange(low, fd)
        low = fd + 1
    os.closerange(low, 1 << 16)


def release_stdio(fd_in: int | None, fd_out: int | None) -> None:
    """Point the recorder's own stdin/stdout at /dev/null: a reader after em sees the end of
    the output when the pass-through ends, and a writer before em gets SIGPIPE if it dies."""
    null = os.open(os.devnull, os.O_RDWR)
    try:
        for fd in (fd_in, fd_out):
            if fd is not None:
                os.dup2(null, fd)
    finally:
        os.close(null)


def open_copy(parent: str) -> tuple[int, str]:
    """A new file in ``parent`` (the folder of the runs, so that it can be moved into the run
    directory once that exists) for the pass-through to copy the log into: (descriptor, path).

    Raises:
        OSError: ``parent`` cannot be created or written.
    """
    os.makedirs(parent, exist_ok=True)
    while True:
        path = os.path.join(parent, f".console-{os.getpid()}-{os.urandom(4).hex()}.log")
        try:
            return os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o666), path
        except FileExistsError:
            continue


def fork_pass_through(copy_fd: int, fd_in: int, fd_out: int, *,
                      stop_on_signals: bool) -> tuple[int, int] | None:
    """Fork the pass-through (``fd_in`` to ``fd_out``, appending to ``copy_fd``): (its pid,
    the read end of its notes: one byte per chunk copied), or None without ``os.fork``.

    SIGINT and SIGTERM stay blocked in this process until the recorder installs its own
    handler (they are not lost: they land then). ``stop_on_signals``: the pass-through stops
    on them (pipe mode); else it ignores them and drains its input (``run`` mode, where the
    recorder forwards them to the command).

    Raises:
        OSError: no process to spare (nothing is left blocked then).
    """
    if not hasattr(os, "fork"):  # Windows
        return None
    note_r, note_w = os.pipe()
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is not None:
                stream.flush()  # nothing buffered here may come out twice
        except (OSError, ValueError):
            pass
    signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)  # each side installs its own first
    try:
        pid = os.fork()
    except OSError:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
        os.close(note_r)
        os.close(note_w)
        raise
    if pid == 0:  # the pass-through
        status = 70
        try:
            _close_fds_except({fd_in, fd_out, 2, copy_fd, note_w})
            status = _pass_through(fd_in, fd_out, copy_fd, note_w,
                                   stop_on_signals=stop_on_signals)
        finally:
            os._exit(status)
    os.close(note_w)
    return pid, note_r


class Early:
    """A pass-through of stdin to stdout started by :func:`start_early`."""

    def __init__(self, copy_fd: int, copy_path: str, pid: int, note_r: int, *,
                 niced: bool) -> None:
        self.copy_fd = copy_fd
        self.copy_path = copy_path
        self.pid = pid
        self.note_r = note_r
        self.niced = niced


def _asks_for_help(args: Sequence[str]) -> bool:
    # "--he" and the like are --help to argparse too
    return any(a == "-h" or (len(a) > 2 and "--help".startswith(a)) for a in args)


def start_early(argv: Sequence[str] | None = None, *, nice: int = 10) -> Early | None:
    """Start passing stdin through to stdout at once, before the rest of em is loaded.

    For the log commands' pipe mode (``argv``: their options, default ``sys.argv[1:]``):
    the copy is opened among the runs (``$EM_RUN_PARENT_DIR``), the pass-through forked,
    this process's stdin/stdout pointed at /dev/null and its priority lowered by ``nice``
    (it goes on to load em, create the run and parse the copy; the output waits for none of
    it). None, with nothing started, for ``run`` mode, ``--help``, or when the copy or the
    fork fails: the command then starts the pass-through itself, or falls back.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["run"] or _asks_for_help(args) or not hasattr(os, "fork"):
        return None
    from em_core._paths import RUN_PARENT_DEFAULT, RUN_PARENT_ENV, parent_path

    try:
        os.fstat(0)
        os.fstat(1)
        copy_fd, path = open_copy(parent_path(RUN_PARENT_ENV, RUN_PARENT_DEFAULT))
    except OSError:
        return None
    try:
        forked = fork_pass_through(copy_fd, 0, 1, stop_on_signals=True)
    except OSError:
        forked = None
    if forked is None:
        os.close(copy_fd)
        os.unlink(path)
        return None
    release_stdio(0, 1)
    niced = False
    if nice:
        try:
            os.nice(nice)  # the training and its output first
            niced = True
        except OSError:
            pass
    return Early(copy_fd, path, *forked, niced=niced)
