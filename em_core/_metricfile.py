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
import math
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


def _parse_schema(raw: bytes) -> tuple[int, str, tuple[str, ...], struct.Struct, dict[str, Any]]:
    """A schema record's body, checked: a damaged one raises ValueError."""
    try:
        schema = json.loads(raw.decode("utf-8"))
        kinds, names, type_ = schema["kinds"], schema["names"], schema["type"]
        sid = schema["id"]
    except (ValueError, KeyError, TypeError, RecursionError) as e:
        raise ValueError(f"bad schema: {e}") from e
    if (not isinstance(kinds, str) or set(kinds) - {"d", "q"} or not isinstance(type_, str)
            or not isinstance(names, list) or len(names) != len(kinds)
            or not all(isinstance(n, str) for n in names)
            or not isinstance(sid, int) or isinstance(sid, bool) or sid <= 0):
        raise ValueError("bad schema")
    return sid, type_, tuple(names), struct.Struct("<qqd" + kinds), schema


def _scan_raw(buf: bytes | mmap.mmap) -> Iterator[
        tuple[int, dict[str, Any] | None, tuple[str, tuple[str, ...]] | None, tuple[Any, ...]]]:
    """Yield (end offset, schema or None, (type, names) or None, unpacked data tuple) for
    each valid record, without building a :class:`Record` (flat memory, fast)."""
    n = len(buf)
    if n < HEADER.size:
        return
    magic, version, hsize = HEADER.unpack_from(buf, 0)
    if magic != MAGIC:
        raise ValueError("not an em metric log (bad magic)")
    if version > VERSION:
        raise ValueError(f"metric log format version {version} is newer than this em reads "
                         f"({VERSION}); upgrade em")
    if hsize != HEADER.size:
        raise ValueError(f"not an em metric log (header size {hsize})")
    pos = hsize
    schemas: dict[int, tuple[tuple[str, tuple[str, ...]], struct.Struct]] = {}
    head, trail = _HEAD.unpack_from, _TRAIL.unpack_from
    # Pages already scanned are dropped from this process's resident set (they stay in the
    # page cache), so reading a big log keeps memory flat, not growing with the file.
    drop = _WINDOW if isinstance(buf, mmap.mmap) and hasattr(mmap, "MADV_DONTNEED") else n
    dropped = 0
    while pos + 12 <= n:
        if pos - dropped >= drop:
            assert isinstance(buf, mmap.mmap)
            buf.madvise(mmap.MADV_DONTNEED, dropped, drop)
            dropped += drop
        size, sid = head(buf, pos)
        if size < 12 or pos + size > n:
            break
        (trailer,) = trail(buf, pos + size - 4)
        if trailer != size ^ TRAILER_XOR:
            break
        if sid == 0:
            try:
                raw = bytes(buf[pos + 8:pos + size - 4])
                new_sid, type_, names, body, schema = _parse_schema(raw)
            except ValueError:
                break
            schemas[new_sid] = ((type_, names), body)
            pos += size
            yield pos, schema, None, ()
            continue
        entry = schemas.get(sid)
        if entry is None or entry[1].size != size - 12:
            break
        tup = entry[1].unpack_from(buf, pos + 8)
        pos += size
        yield pos, None, entry[0], tup


def _scan(buf: bytes | mmap.mmap) -> Iterator[tuple[int, dict[str, Any] | None, Record | None]]:
    """Yield (end offset, schema or None, record or None) for each valid record."""
    for pos, schema, shape, tup in _scan_raw(buf):
        if shape is None:
            yield pos, schema, None
            continue
        step, epoch, ts, *vals = tup
        yield pos, None, Record(shape[0], step, None if epoch < 0 else epoch, ts,
                                dict(zip(shape[1], vals)))


class _Mapped:
    """A read-only map of a whole file (``b""`` when empty), closed on exit."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        self.buf: bytes | mmap.mmap = b""

    def __enter__(self) -> bytes | mmap.mmap:
        with open(self.path, "rb") as f:
            if os.fstat(f.fileno()).st_size > 0:
                self.buf = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        return self.buf

    def __exit__(self, *exc: Any) -> None:
        if isinstance(self.buf, mmap.mmap):
            self.buf.close()


def _corrupt(path: str | os.PathLike[str], e: Exception) -> CorruptRunError:
    return CorruptRunError(f"metric log {os.fspath(path)!r} cannot be read: {e}")


def iter_records(path: str | os.PathLike[str]) -> Iterator[Record]:
    """Every valid record of a metric log, in logging order, streamed (flat memory)."""
    with _Mapped(path) as buf:
        try:
            for _, _, rec in _scan(buf):
                if rec is not None:
                    yield rec
        except (ValueError, struct.error) as e:
            raise _corrupt(path, e) from e


def read_records(path: str | os.PathLike[str]) -> list[Record]:
    """Every valid record of a metric log, in logging order; a torn tail is skipped."""
    return list(iter_records(path))


def summarize(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Per metric type and name: last value with its step, epoch and time, number of points,
    min and max (NaN ignored; None when every value was NaN), in one streaming pass over the
    file (flat memory: no record is kept). ``bytes`` is the length of the file it covers.

    Returns:
        ``{"bytes": int, "metrics": [{"type", "name", "last", "step", "epoch", "time",
        "count", "min", "max", "first_step"}, ...]}`` in order of first appearance.
    """
    stats: dict[tuple[str, str], list[Any]] = {}
    with _Mapped(path) as buf:
        size = len(buf)
        try:
            for _, _, shape, tup in _scan_raw(buf):
                if shape is None:
                    continue
                type_, names = shape
                step, epoch, ts = tup[0], tup[1], tup[2]
                for i, name in enumerate(names):
                    v = tup[3 + i]
                    s = stats.get((type_, name))
                    if s is None:
                        s = stats[(type_, name)] = [v, step, epoch, ts, 0, None, None, step]
                    s[0], s[1], s[2], s[3] = v, step, epoch, ts
                    s[4] += 1
                    if v == v:  # not NaN
                        if s[5] is None or v < s[5]:
                            s[5] = v
                        if s[6] is None or v > s[6]:
                            s[6] = v
        except (ValueError, struct.error) as e:
            raise _corrupt(path, e) from e
    return {"bytes": size, "metrics": [
        {"type": t, "name": k, "last": s[0], "step": s[1], "epoch": None if s[2] < 0 else s[2],
         "time": s[3], "count": s[4], "min": s[5], "max": s[6], "first_step": s[7]}
        for (t, k), s in stats.items()]}


def _valid_end(path: str) -> tuple[int, int]:
    """Offset just past the last valid record, and the highest schema id seen."""
    with _Mapped(path) as data:
        end, max_sid = (HEADER.size if len(data) >= HEADER.size else 0), 0
        for pos, schema, _, _ in _scan_raw(data):
            end = pos
            if schema is not None:
                max_sid = max(max_sid, int(schema["id"]))
    if end == 0:
        raise ValueError(f"{path!r} is not an em metric log")
    return end, max_sid


def summary_for_meta(path: str | os.PathLike[str]) -> dict[str, Any] | None:
    """:func:`summarize` for ``run.json`` at the end of a run; None when the log cannot be
    read (readers then scan the log themselves). Non-finite numbers are stored as the
    strings "NaN", "Infinity", "-Infinity" so that run.json stays strict JSON."""
    try:
        summary = summarize(path)
    except (OSError, CorruptRunError):
        return None
    for m in summary["metrics"]:
        for k in ("last", "min", "max"):
            m[k] = json_number(m[k])
    return summary


def json_number(v: Any) -> Any:
    """``v`` for strict JSON: NaN and infinities become "NaN", "Infinity", "-Infinity"."""
    if isinstance(v, float) and not math.isfinite(v):
        return "NaN" if v != v else ("Infinity" if v > 0 else "-Infinity")
    return v


def from_json_number(v: Any) -> Any:
    """The inverse of :func:`json_number`."""
    return float(v) if v in ("NaN", "Infinity", "-Infinity") else v
