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
skipped, never misread. Unused space at the end of a crashed run's file is zeros.
"""

from __future__ import annotations

import json
import mmap
import os
import struct
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, NamedTuple

from .errors import CorruptRunError

MAGIC = b"EMMETRIC"
VERSION = 1
HEADER = struct.Struct("<8sII")
TRAILER_XOR = 0xE3A1B2C3
_HEAD = struct.Struct("<II")
_TRAIL = struct.Struct("<I")
_WINDOW = 4 << 20  # bytes mapped at a time; the mapping slides so memory stays flat
_MAX_SHAPES = 4096  # cache entries before the cache is reset (ever-changing metric names)


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
        exists = os.path.exists(self.path)
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        self.lock = threading.Lock()
        # (raw type, *names, *value classes) -> Shape; a miss takes the slow path in Run.log
        self.fast: dict[tuple[Any, ...], tuple[Any, ...]] = {}
        self._schemas: dict[tuple[str, tuple[str, ...], str], Shape] = {}
        self._next_sid = 1
        if exists and os.fstat(self._fd).st_size > 0:
            end, max_sid = _valid_end(self.path)
            self._next_sid = max_sid + 1
            start = end
        else:
            os.ftruncate(self._fd, 0)
            start = 0
        self.mm: mmap.mmap | None = None
        self.base = 0
        self.pos = start
        self.end = start
        self._map_at(start, HEADER.size)
        if start == 0:
            HEADER.pack_into(self.mm, 0, MAGIC, VERSION, HEADER.size)  # type: ignore[arg-type]
            self.pos = HEADER.size
        else:
            self._zero_tail()

    # The window is addressed in file offsets: self.pos and self.end are absolute, and the
    # mapping starts at self.base; the fast path writes at pos - base.
    def _map_at(self, pos: int, need: int) -> None:
        gran = mmap.ALLOCATIONGRANULARITY
        base = (pos // gran) * gran
        length = max(_WINDOW, (pos - base) + need + gran)
        size = os.fstat(self._fd).st_size
        if size < base + length:
            os.ftruncate(self._fd, base + length)
        if self.mm is not None:
            self.mm.close()
        self.mm = mmap.mmap(self._fd, length, offset=base)
        self.base = base
        self.end = base + length

    def _zero_tail(self) -> None:
        # A resumed log may end in a torn record: clear it so readers stop at our end.
        assert self.mm is not None
        off = self.pos - self.base
        n = min(4096, len(self.mm) - off)
        self.mm[off:off + n] = bytes(n)

    def remap(self, need: int) -> None:
        """Slide the mapping so that ``need`` bytes fit at ``pos`` (called with the lock)."""
        self._map_at(self.pos, need)

    def shape(self, type_: str, names: tuple[str, ...], kinds: str) -> Shape:
        """The record layout for these names and value kinds, declaring it in the log if new."""
        key = (type_, names, kinds)
        shape = self._schemas.get(key)
        if shape is not None:
            return shape
        with self.lock:
            sid = self._next_sid
            self._next_sid += 1
            body = json.dumps({"id": sid, "type": type_, "names": list(names), "kinds": kinds},
                              ensure_ascii=False).encode("utf-8")
            self.append_bytes(_HEAD.pack(len(body) + 12, 0) + body
                              + _TRAIL.pack((len(body) + 12) ^ TRAILER_XOR))
        packer = struct.Struct("<IIqqd" + kinds + "I")
        shape = Shape(packer.pack_into, packer.size, sid, packer.size ^ TRAILER_XOR)
        if len(self._schemas) >= _MAX_SHAPES:
            self._schemas.clear()
        self._schemas[key] = shape
        return shape

    def remember(self, key: tuple[Any, ...], shape: Shape) -> None:
        """Let the fast path use ``shape`` for calls matching ``key``."""
        if len(self.fast) >= _MAX_SHAPES:
            self.fast.clear()
        self.fast[key] = tuple(shape)  # an exact tuple: CPython unpacks those fastest

    def append_bytes(self, data: bytes) -> None:
        """Append one complete record (caller holds the lock)."""
        if self.pos + len(data) > self.end:
            self.remap(len(data))
        assert self.mm is not None
        off = self.pos - self.base
        self.mm[off:off + len(data)] = data
        self.pos += len(data)

    def append(self, shape: Shape, step: int, epoch: int, values: tuple[Any, ...]) -> None:
        """Append one data record (the slow path's entry; the fast path inlines this)."""
        with self.lock:
            if self.pos + shape.size > self.end:
                self.remap(shape.size)
            shape.pack_into(self.mm, self.pos - self.base, shape.size, shape.sid, step, epoch,
                            time.time(), *values, shape.trailer)
            self.pos += shape.size

    def flush(self) -> None:
        """Ask the kernel to write what is mapped to disk (msync); a no-op once closed."""
        with self.lock:
            if self.mm is not None:
                self.mm.flush()

    def close(self) -> None:
        """Flush, cut the zero padding, fsync, and release the file."""
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


@dataclass(frozen=True)
class Record:
    """One logged call, as read back."""

    type: str
    step: int
    epoch: int | None
    time: float
    values: dict[str, int | float]


def _scan(buf: bytes | mmap.mmap) -> Iterator[tuple[int, dict[str, Any] | None, Record | None]]:
    """Yield (end offset, schema or None, record or None) for each valid record."""
    n = len(buf)
    if n < HEADER.size:
        return
    magic, version, hsize = HEADER.unpack_from(buf, 0)
    if magic != MAGIC:
        raise ValueError("not an em metric log (bad magic)")
    if version > VERSION:
        raise ValueError(f"metric log format version {version} is newer than this em reads "
                         f"({VERSION}); upgrade em")
    pos = hsize
    schemas: dict[int, tuple[str, tuple[str, ...], struct.Struct]] = {}
    while pos + 12 <= n:
        size, sid = _HEAD.unpack_from(buf, pos)
        if size < 12 or pos + size > n:
            break
        (trailer,) = _TRAIL.unpack_from(buf, pos + size - 4)
        if trailer != size ^ TRAILER_XOR:
            break
        if sid == 0:
            try:
                schema = json.loads(bytes(buf[pos + 8:pos + size - 4]).decode("utf-8"))
                kinds = schema["kinds"]
                schemas[int(schema["id"])] = (schema["type"], tuple(schema["names"]),
                                              struct.Struct("<qqd" + kinds))
            except (ValueError, KeyError, TypeError):
                break
            pos += size
            yield pos, schema, None
            continue
        entry = schemas.get(sid)
        if entry is None or entry[2].size != size - 12:
            break
        type_, names, body = entry
        step, epoch, ts, *vals = body.unpack_from(buf, pos + 8)
        pos += size
        yield pos, None, Record(type_, step, None if epoch < 0 else epoch, ts,
                                dict(zip(names, vals)))


def read_records(path: str | os.PathLike[str]) -> list[Record]:
    """Every valid record of a metric log, in logging order; a torn tail is skipped."""
    with open(path, "rb") as f:
        data = f.read()
    try:
        return [rec for _, _, rec in _scan(data) if rec is not None]
    except ValueError as e:  # not a metric log at all, or a newer format: say which file
        raise CorruptRunError(f"metric log {os.fspath(path)!r} cannot be read: {e}") from e


def _valid_end(path: str) -> tuple[int, int]:
    """Offset just past the last valid record, and the highest schema id seen."""
    with open(path, "rb") as f:
        data = f.read()
    end, max_sid = (HEADER.size if len(data) >= HEADER.size else 0), 0
    for pos, schema, _ in _scan(data):
        end = pos
        if schema is not None:
            max_sid = max(max_sid, int(schema["id"]))
    if end == 0:
        raise ValueError(f"{path!r} is not an em metric log")
    return end, max_sid
