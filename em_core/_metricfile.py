"""The metric log: one binary record per ``Run.log`` call, appended through a shared mmap.

Why mmap: a store into a ``MAP_SHARED`` file mapping is in the kernel's page cache the
moment it completes, so a SIGKILLed process loses nothing that ``log()`` returned, and no
system call is made per record. Power loss can lose what the kernel had not yet written back
(at most ``vm.dirty_expire_centisecs``, 30 s by default) unless :meth:`MetricWriter.flush`
ran; ``Run.finish`` flushes and fsyncs.

File format, version 1 (little-endian)::

    header  : b"EMMETRIC" | u32 version=1 | u32 header_size=16
    record  : u32 size | u32 sid | body ... | u32 size ^ 0xE3A1B2C3
      sid 0 : a schema; body = UTF-8 JSON {"id", "type", "names", "kinds"} declaring a record
              shape (metric type, metric names, one struct code per value: 'd' f64, 'q' i64)
      sid k : a data record of schema k; body = i64 step | i64 epoch (-1: none) |
              f64 unix time | the values

``size`` counts the whole record. A record is valid only when its size fits the file and its
trailer matches; the first invalid or zero size ends the log, so a record torn by a crash is
skipped, never misread. Unused space at the end of a crashed run's file is zeros. A file
killed before its header was stored (empty, shorter than the header, or a zero header) is a
log with no records; reopening it writes the header.

Faults the writer survives (``Run.log`` turns what it raises into one warning):

* a full disk, a quota or a file-size limit: every window is reserved with
  ``posix_fallocate`` before it is mapped, so a store into the mapping never meets a page
  without a block (SIGBUS). When the next window cannot be had, :meth:`MetricWriter.append`
  raises ``OSError`` and the record is not written; what was written stays valid. A
  ``RLIMIT_FSIZE`` is checked before growing the file, so the kernel never sends SIGXFSZ;
* ``os.fork``: a child's copies of every writer are disowned at once (no store, no
  truncation, no fsync), so only the process that opened the log writes it.
"""

from __future__ import annotations

import errno
import json
import mmap
import os
import resource
import struct
import threading
import time
import weakref
from typing import Any, NamedTuple

from ._metricread import (
    HEADER,
    MAGIC,
    RECORD_HEAD,
    RECORD_TRAIL,
    TRAILER_XOR,
    VERSION,
    Mapped,
    Record,
    from_json_number,
    iter_records,
    json_number,
    read_records,
    scan_raw,
    summarize,
    summary_for_meta,
    unwritten_header,
)
from .errors import EmError

__all__ = ["HEADER", "MAGIC", "TRAILER_XOR", "VERSION", "MetricWriter", "Record", "Shape",
           "WriterClosed", "from_json_number", "iter_records", "json_number", "read_records",
           "summarize", "summary_for_meta"]

_WINDOW = 4 << 20  # bytes mapped at a time; the mapping slides so memory stays flat
_MAX_SHAPES = 4096  # fast-path entries kept; the oldest goes first (ever-changing names)
_MAX_DECLARED = 1 << 16  # declared schemas remembered (the oldest goes first)
_RESERVE = 1 << 20  # left free on a nearly full disk, so that run.json can still be written
_RETRY_S = 1.0  # after the log could not grow, try again at most this often
_NO_FALLOCATE = frozenset({errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL})


class WriterClosed(EmError):
    """The writer was closed (the run ended), or disowned in a forked child, while a record
    was being appended. Internal: ``Run.log`` reports it as a ``RunFinishedError``."""


def _text(s: str) -> str:
    """``s`` if it encodes as UTF-8, else with lone surrogates written as ``\\udcff``."""
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        return s.encode("utf-8", "backslashreplace").decode("utf-8")
    return s


def _fsize_limit() -> int | None:
    soft = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
    return None if soft == resource.RLIM_INFINITY else soft


class Shape(NamedTuple):
    """A cached record layout: everything the fast path needs for one (type, names, kinds).

    A tuple, so that ``Run.log`` unpacks it in one step; ``pack_into`` is the bound method of
    the record's ``struct.Struct``."""

    pack_into: Any
    size: int
    sid: int
    trailer: int


class MetricWriter:
    """Appends records to a metric log. Safe to call from several threads."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        self.lock = threading.Lock()
        # (raw type, *names, *value classes) -> Shape; a miss takes the slow path in Run.log
        self.fast: dict[tuple[Any, ...], tuple[Any, ...]] = {}
        self._schemas: dict[tuple[str, tuple[str, ...], str], Shape] = {}
        self._next_sid = 1
        self.mm: mmap.mmap | None = None
        self.foreign = False  # set in a forked child: the log belongs to the parent
        self._failed: OSError | None = None  # why the log last could not grow
        self._tight = False  # the disk was found full once: keep _RESERVE free from then on
        self._retry_at = 0.0
        try:
            start = 0
            if os.fstat(self._fd).st_size > 0 and not _unwritten(self.path):
                start, max_sid = _valid_end(self.path)
                self._next_sid = max_sid + 1
            else:  # new, or killed before its header was stored: start it afresh
                os.ftruncate(self._fd, 0)
            self.base = 0
            self.pos = start
            self.end = start
            self._map_at(start, HEADER.size)
            if start == 0:
                HEADER.pack_into(self.mm, 0, MAGIC, VERSION, HEADER.size)  # type: ignore[arg-type]
                self.pos = HEADER.size
            else:
                self._zero_tail()
        except BaseException:
            if self.mm is not None:
                self.mm.close()
                self.mm = None
            os.close(self._fd)
            raise
        _track(self)

    # The window is addressed in file offsets: self.pos and self.end are absolute, and the
    # mapping starts at self.base; the fast path writes at pos - base.
    def _map_at(self, pos: int, need: int) -> None:
        gran = mmap.ALLOCATIONGRANULARITY
        base = (pos // gran) * gran
        length = self._allocate(base, max(_WINDOW, (pos - base) + need + gran),
                                (pos - base) + need)
        mm = mmap.mmap(self._fd, length, offset=base)
        # Swap only once the new window exists: on failure the old one stays usable.
        if self.mm is not None:
            self.mm.close()
        self.mm = mm
        self.base = base
        self.end = base + length

    def _allocate(self, base: int, length: int, least: int) -> int:
        """Give ``[base, base + length)`` real blocks; returns the length had (>= least).

        A sparse file (ftruncate alone) would let the disk fill under the mapping, and the
        store into a page without a block is a SIGBUS that kills training.

        Once the disk was found full, ``_RESERVE`` bytes are left free (measured with
        ``fstatvfs``, one call per window) so that run.json can still be written.

        Raises:
            OSError: ENOSPC/EDQUOT (no room, beyond a reserve kept for run.json), EFBIG
                (``RLIMIT_FSIZE``: checked here, so that the kernel sends no SIGXFSZ), or
                whatever else the file system says.
        """
        limit = _fsize_limit()
        if limit is not None and base + length > limit:
            length = limit - base
            if length < least:
                raise OSError(errno.EFBIG, f"{os.strerror(errno.EFBIG)} (RLIMIT_FSIZE is "
                              f"{limit} bytes)", self.path)
        if self._tight:
            length = self._spare(base, length, least)
        try:
            os.posix_fallocate(self._fd, base, length)
            return length
        except OSError as e:
            if e.errno in _NO_FALLOCATE:  # this file system cannot reserve: sparse, as before
                if os.fstat(self._fd).st_size < base + length:
                    os.ftruncate(self._fd, base + length)
                return length
            if e.errno not in (errno.ENOSPC, errno.EDQUOT) or self._tight:
                raise OSError(e.errno, e.strerror, self.path) from e
            # The disk is nearly full: from now on leave the reserve free, also once space
            # comes back (a window would otherwise take all of it and run.json none).
            self._tight = True
        length = self._spare(base, length, least)
        os.posix_fallocate(self._fd, base, length)
        return length

    def _spare(self, base: int, length: int, least: int) -> int:
        """``length`` cut so that ``_RESERVE`` bytes stay free on the disk (>= least)."""
        st = os.fstatvfs(self._fd)
        free_end = os.fstat(self._fd).st_size + st.f_bavail * st.f_frsize - _RESERVE
        length = min(length, free_end - base)
        if length < least:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), self.path)
        return length

    def _zero_tail(self) -> None:
        # A resumed log may end in a torn record: clear it so readers stop at our end.
        assert self.mm is not None
        off = self.pos - self.base
        n = min(4096, len(self.mm) - off)
        self.mm[off:off + n] = bytes(n)

    def _room(self, need: int) -> None:
        """Make sure ``need`` bytes fit at ``pos`` (caller holds the lock).

        Raises:
            WriterClosed: the log was closed, or belongs to the parent of this process.
            OSError: the log cannot grow (see :meth:`_allocate`); retried at most once per
                ``_RETRY_S`` so that a full disk costs no system call per record.
        """
        if self.mm is None or self.foreign:
            raise WriterClosed(self.path)
        if self.pos + need <= self.end:
            return
        if self._failed is not None and time.monotonic() < self._retry_at:
            raise OSError(self._failed.errno, self._failed.strerror, self.path)
        try:
            self._map_at(self.pos, need)
        except OSError as e:
            self._failed = e
            self._retry_at = time.monotonic() + _RETRY_S
            raise
        self._failed = None

    def shape(self, type_: str, names: tuple[str, ...], kinds: str) -> Shape:
        """The record layout for these names and value kinds, declaring it in the log if new.

        A schema is declared once per distinct layout: the map of declared ones keeps the
        last ``_MAX_DECLARED`` declared (far more than any run rotates through), and forgets
        the oldest one at a time.

        Raises:
            WriterClosed, OSError: as :meth:`append`; nothing is remembered then.
        """
        key = (type_, names, kinds)
        shape = self._schemas.get(key)
        if shape is None:
            type_text, names_text = _text(type_), [_text(n) for n in names]
            with self.lock:
                sid = self._next_sid
                body = json.dumps({"id": sid, "type": type_text, "names": names_text,
                                   "kinds": kinds}, ensure_ascii=False).encode("utf-8")
                data = (RECORD_HEAD.pack(len(body) + 12, 0) + body
                        + RECORD_TRAIL.pack((len(body) + 12) ^ TRAILER_XOR))
                self._room(len(data))
                off = self.pos - self.base
                self.mm[off:off + len(data)] = data  # type: ignore[index]
                self.pos += len(data)
                self._next_sid = sid + 1
            packer = struct.Struct("<IIqqd" + kinds + "I")
            shape = Shape(packer.pack_into, packer.size, sid, packer.size ^ TRAILER_XOR)
            if len(self._schemas) >= _MAX_DECLARED:
                try:
                    del self._schemas[next(iter(self._schemas))]
                except (StopIteration, KeyError, RuntimeError):  # another thread got there
                    pass
            self._schemas[key] = shape
        return shape

    def remember(self, key: tuple[Any, ...], shape: Shape) -> None:
        """Let the fast path use ``shape`` for calls matching ``key``."""
        fast = self.fast
        if len(fast) >= _MAX_SHAPES:
            # Evict the oldest entry only: a wholesale clear made every shape in a rotation
            # of more than _MAX_SHAPES miss at once.
            try:
                del fast[next(iter(fast))]
            except (StopIteration, KeyError, RuntimeError):  # another thread got there first
                pass
        fast[key] = tuple(shape)  # an exact tuple: CPython unpacks those fastest

    def append(self, shape: Shape, step: int, epoch: int, values: tuple[Any, ...]) -> None:
        """Append one data record (the slow path's entry; the fast path inlines this).

        Raises:
            WriterClosed: the log was closed (the run ended in another thread) or belongs
                to the parent of this (forked) process.
            OSError: no room for the record (full disk, quota, file-size limit); the record
                is not written and everything before it stays valid.
        """
        with self.lock:
            self._room(shape.size)
            shape.pack_into(self.mm, self.pos - self.base, shape.size, shape.sid, step, epoch,
                            time.time(), *values, shape.trailer)
            self.pos += shape.size

    def disown(self) -> None:
        """In a forked child: stop writing the parent's log, without touching the file.

        The child's copies of the mapping and descriptor are released; nothing is stored,
        truncated or synced, so the parent's records and its own writes stay intact. Called
        from the at-fork hook, when the child has a single thread: takes no lock.
        """
        self.foreign = True
        self.fast.clear()
        self.end = -1  # the fast path's bounds check now always fails
        mm, self.mm = self.mm, None
        if mm is not None:
            try:
                mm.close()  # munmap in the child only
            except BufferError:  # a parent thread was mid-store at the fork: leave it mapped
                pass
            os.close(self._fd)

    def flush(self) -> None:
        """Ask the kernel to write what is mapped to disk (msync); a no-op once closed."""
        if self.foreign:  # the lock may have been held by a parent thread at the fork
            return
        with self.lock:
            if self.mm is not None:
                self.mm.flush()

    def close(self) -> None:
        """Flush, cut the zero padding, fsync, and release the file (a disowned writer
        has nothing left to release)."""
        if self.foreign:
            return
        with self.lock:
            if self.mm is None:
                return
            self.mm.flush()
            self.mm.close()
            self.mm = None
            os.ftruncate(self._fd, self.pos)
            os.fsync(self._fd)
            os.close(self._fd)
            self.fast = {}


_writers: weakref.WeakSet[MetricWriter] = weakref.WeakSet()
_hooked = False


def _track(writer: MetricWriter) -> None:
    """Have ``writer`` disowned in any child forked from now on (the hook costs the parent
    nothing per record; it is installed with the first writer, not at import)."""
    global _hooked
    if not _hooked:
        _hooked = True
        os.register_at_fork(after_in_child=_after_fork_in_child)
    _writers.add(writer)


def _after_fork_in_child() -> None:
    for writer in list(_writers):
        writer.disown()


def _unwritten(path: str) -> bool:
    """Whether the log at ``path`` has no complete header (empty, short or zeroed)."""
    with open(path, "rb") as f:
        head = f.read(HEADER.size)
    return len(head) < HEADER.size or unwritten_header(head)


def _valid_end(path: str) -> tuple[int, int]:
    """Offset just past the last valid record, and the highest schema id seen."""
    with Mapped(path) as data:
        end, max_sid = (HEADER.size if len(data) >= HEADER.size else 0), 0
        for pos, schema, _, _ in scan_raw(data):
            end = pos
            if schema is not None:
                max_sid = max(max_sid, int(schema["id"]))
    if end == 0:
        raise ValueError(f"{path!r} is not an em metric log")
    return end, max_sid


