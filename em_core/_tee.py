"""The tee process behind console capture (see :mod:`em_core._console`).

Run as a script (``python -I -S _tee.py ...``) with the descriptors it needs passed open; it
imports only the standard library and nothing of em. For each captured stream it reads what
the training process writes (a pipe, or a pseudo-terminal's master side), writes it at once,
byte for byte, to the stream's original destination, and appends it to ``console.log`` one
complete line at a time (a partial line after a quiet half second, or beyond 64 KiB).

It is a process, not a thread of the training process, so that nothing written before the
training process dies is lost: after a SIGKILL, a segfault (faulthandler's traceback), or
``os._exit`` it still drains the pipes, to the terminal and to the file, then exits.

Protocol with the training process: when the control pipe reaches its end (the run ended,
or the training process died), everything already written is drained, one byte is written
to the acknowledgement pipe, and the tee goes on until no process holds the streams any
more (a forked or spawned child that outlives the run still reaches the terminal).

It ignores SIGINT, SIGTERM and SIGHUP: a Ctrl-C for the training must not cut off what the
training prints while it stops; the tee ends when its input does.
"""

from __future__ import annotations

import errno
import os
import select
import signal
import sys

_CHUNK = 1 << 16
_PARTIAL_S = 0.5  # a partial line goes to the file after this long without a newline
_PARTIAL_MAX = 1 << 16


class _Log:
    """console.log: complete lines, up to a cap (then one note; the oldest output is kept)."""

    def __init__(self, fd: int, cap: int) -> None:
        self.fd = fd
        self.cap = cap
        try:
            self.size = os.fstat(fd).st_size  # a resumed run appends
        except OSError:
            self.size = 0
        self.full = False

    def write(self, data: bytes) -> None:
        if self.full or not data or self.fd < 0:
            return
        room = self.cap - self.size
        if len(data) > room:
            cut = data.rfind(b"\n", 0, room)
            data = data[:cut + 1] if cut >= 0 else data[:max(room, 0)]
            note = (f"[em: console.log reached its size cap of {self.cap} bytes "
                    "(EM_CONSOLE_MAX_BYTES); later output was not kept here]\n").encode()
            self.full = True
            data += (b"\n" if data and not data.endswith(b"\n") else b"") + note
        try:
            _write_all(self.fd, data)
            self.size += len(data)
        except OSError:
            self.full = True  # a full disk: the terminal must still get everything


class _Stream:
    def __init__(self, src: int, dst: int, log: _Log) -> None:
        self.src = src
        self.dst = dst
        self.log = log
        self.partial = b""
        self.forward = True

    def take(self, chunk: bytes) -> None:
        if self.forward:
            try:
                _write_all(self.dst, chunk)  # the terminal first: the file can wait
            except BrokenPipeError:
                # The reader went away (`train.py | head`): the training must see that too,
                # as it would have without em, so close our end of its pipe.
                self.forward = False
                raise
            except OSError:
                self.forward = False  # a terminal that hung up: keep the file going
        data = self.partial + chunk
        cut = data.rfind(b"\n")
        if cut >= 0:
            self.log.write(data[:cut + 1])
            data = data[cut + 1:]
        if len(data) > _PARTIAL_MAX:
            self.log.write(data)
            data = b""
        self.partial = data

    def flush_partial(self) -> None:
        if self.partial:
            self.log.write(self.partial)
            self.partial = b""


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def _read(fd: int) -> bytes:
    try:
        return os.read(fd, _CHUNK)
    except OSError as e:
        if e.errno == errno.EIO:  # a pseudo-terminal whose every slave was closed
            return b""
        raise


def _copy_winsize(src: int, dst: int) -> None:
    try:
        import fcntl
        import termios

        fcntl.ioctl(dst, termios.TIOCSWINSZ, fcntl.ioctl(src, termios.TIOCGWINSZ, b"\0" * 8))
    except (OSError, ImportError):
        pass


def main(argv: list[str]) -> int:  # noqa: C901 - the tee's poll loop: its branches share the streams, the control pipe and their state
    # argv: cap ctl_r ack_w log_fd then (src dst is_pty) per stream
    cap, ctl, ack, log_fd = (int(x) for x in argv[:4])
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, signal.SIG_IGN)
    log = _Log(log_fd, cap)
    streams: dict[int, _Stream] = {}
    rest = argv[4:]
    ptys = []
    for i in range(0, len(rest), 3):
        src, dst, is_pty = int(rest[i]), int(rest[i + 1]), rest[i + 2] == "1"
        streams[src] = _Stream(src, dst, log)
        if is_pty:
            ptys.append((dst, src))
    if ptys:
        def resized(signum: int, frame: object) -> None:  # the terminal's size changed
            for dst, src in ptys:
                _copy_winsize(dst, src)

        signal.signal(signal.SIGWINCH, resized)
    ctl_open = True
    while streams or ctl_open:
        watch = list(streams) + ([ctl] if ctl_open else [])
        pending = any(s.partial for s in streams.values())
        # poll, not select: the descriptors keep the training process's numbers, which
        # may be above select's limit of 1024 in a process with many files open
        poller = select.poll()
        for fd in watch:
            poller.register(fd, select.POLLIN)
        ready = [fd for fd, _ in poller.poll(_PARTIAL_S * 1000 if pending else None)]
        if not ready:
            for s in streams.values():
                s.flush_partial()
            continue
        for fd in ready:
            if fd == ctl:
                continue
            _pump(streams, fd, once=True)
        if ctl in ready and ctl_open and not os.read(ctl, 1):
            # The run ended (or the training process died): drain what is already written,
            # then say so; children still holding the streams are served until they end.
            ctl_open = False
            for fd in list(streams):
                _pump(streams, fd, once=False)
            for s in streams.values():
                s.flush_partial()
            try:
                os.write(ack, b"1")
                os.close(ack)
            except OSError:
                pass
    return 0


def _pump(streams: dict[int, _Stream], fd: int, *, once: bool) -> None:
    """Read ``fd`` once (it is ready), or until it has nothing more right now."""
    s = streams[fd]
    if not once:
        os.set_blocking(fd, False)
    try:
        while True:
            try:
                chunk = _read(fd)
            except BlockingIOError:
                break
            if not chunk:
                s.flush_partial()
                os.close(fd)
                del streams[fd]
                return
            try:
                s.take(chunk)
            except BrokenPipeError:
                s.flush_partial()
                os.close(fd)
                del streams[fd]
                return
            if once:
                return
    finally:
        if not once and fd in streams:
            os.set_blocking(fd, True)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
