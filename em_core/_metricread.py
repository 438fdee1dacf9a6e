"""Reading a metric log (the format is described in :mod:`em_core._metricfile`): every
record streamed, a one-pass summary, and the last step of each metric type kept up to date
by reading only what was appended (:class:`LastPoints`).

Readers never trust the file: a record is used only when its size fits the file and its
trailer matches, and the first invalid record ends the log (a record torn by a crash is
skipped, never misread).
"""

from __future__ import annotations

import json
import math
import mmap
import os
import struct
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, NamedTuple

from .errors import CorruptRunError

__all__ = ["HEADER", "MAGIC", "RECORD_HEAD", "RECORD_TRAIL", "TRAILER_XOR", "VERSION",
           "LastPoints", "Mapped", "Point", "Record", "check_header", "from_json_number",
           "iter_records", "json_number", "parse_schema", "read_records", "scan", "scan_raw",
           "summarize", "summary_for_meta", "unwritten_header"]

MAGIC = b"EMMETRIC"
VERSION = 1
HEADER = struct.Struct("<8sII")
TRAILER_XOR = 0xE3A1B2C3
RECORD_HEAD = struct.Struct("<II")  # size, schema id
RECORD_TRAIL = struct.Struct("<I")  # size ^ TRAILER_XOR
DROP_WINDOW = 4 << 20  # a big log's pages already scanned are dropped this many at a time
_STEP_EPOCH = struct.Struct("<qq")  # the start of a data record's body
_CHUNK = 64 << 10  # LastPoints reads this much at a time


@dataclass(frozen=True)
class Record:
    """One logged call, as read back."""

    type: str
    step: int
    epoch: int | None
    time: float
    values: dict[str, int | float]


def parse_schema(raw: bytes) -> tuple[int, str, tuple[str, ...], struct.Struct, dict[str, Any]]:
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


def check_header(buf: bytes | mmap.mmap) -> int:
    """The size of a log's (complete) header, checked.

    Raises:
        ValueError: not an em metric log, or one of a newer format version.
    """
    magic, version, hsize = HEADER.unpack_from(buf, 0)
    if magic != MAGIC:
        raise ValueError("not an em metric log (bad magic)")
    if version > VERSION:
        raise ValueError(f"metric log format version {version} is newer than this em reads "
                         f"({VERSION}); upgrade em")
    if hsize != HEADER.size:
        raise ValueError(f"not an em metric log (header size {hsize})")
    return int(hsize)


def scan_raw(buf: bytes | mmap.mmap) -> Iterator[
        tuple[int, dict[str, Any] | None, tuple[str, tuple[str, ...]] | None, tuple[Any, ...]]]:
    """Yield (end offset, schema or None, (type, names) or None, unpacked data tuple) for
    each valid record, without building a :class:`Record` (flat memory, fast)."""
    n = len(buf)
    if n < HEADER.size or unwritten_header(buf):
        return
    pos = check_header(buf)
    schemas: dict[int, tuple[tuple[str, tuple[str, ...]], struct.Struct]] = {}
    head, trail = RECORD_HEAD.unpack_from, RECORD_TRAIL.unpack_from
    # Pages already scanned are dropped from this process's resident set (they stay in the
    # page cache), so reading a big log keeps memory flat, not growing with the file.
    drop = DROP_WINDOW if isinstance(buf, mmap.mmap) and hasattr(mmap, "MADV_DONTNEED") else n
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
                new_sid, type_, names, body, schema = parse_schema(raw)
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


def scan(buf: bytes | mmap.mmap) -> Iterator[tuple[int, dict[str, Any] | None, Record | None]]:
    """Yield (end offset, schema or None, record or None) for each valid record."""
    for pos, schema, shape, tup in scan_raw(buf):
        if shape is None:
            yield pos, schema, None
            continue
        step, epoch, ts, *vals = tup
        yield pos, None, Record(shape[0], step, None if epoch < 0 else epoch, ts,
                                dict(zip(shape[1], vals)))


class Mapped:
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
    with Mapped(path) as buf:
        try:
            for _, _, rec in scan(buf):
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
    with Mapped(path) as buf:
        size = len(buf)
        try:
            for _, _, shape, tup in scan_raw(buf):
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


def unwritten_header(buf: bytes | mmap.mmap) -> bool:
    """Whether the header was never stored in full (a kill inside ``create_run``): every
    byte of it is zero or already the right one, and it is not complete."""
    head = bytes(buf[:HEADER.size])
    good = HEADER.pack(MAGIC, VERSION, HEADER.size)
    return head != good and all(b in (0, g) for b, g in zip(head, good)) and len(head) == len(good)


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



class Point(NamedTuple):
    """Where a record was logged: its ``step`` and ``epoch`` (None when not given)."""

    step: int
    epoch: int | None


class LastPoints:
    """Per metric type, the :class:`Point` of the last record of a metric log.

    Kept up to date by reading only what was appended since the previous call (``pread``,
    served from the page cache), so a call costs what was logged in between, never the
    length of the run; the first call on a loaded or resumed run reads the log once.
    ``Run.log``'s fast path is not involved: it stays one packed store per record.
    ``records_read`` counts the data records decoded so far.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        self.records_read = 0
        self._pos = 0  # the next byte to read: the end of the last valid record seen
        self._schemas: dict[int, tuple[str, int]] = {}  # schema id -> (type, record size)
        self._last: dict[str, Point] = {}
        self._lock = threading.Lock()

    def update(self) -> dict[str, Point]:
        """Read what was appended since the last call; the last point of each type."""
        with self._lock:
            try:
                fd = os.open(self.path, os.O_RDONLY)
            except FileNotFoundError:
                return dict(self._last)
            try:
                self._advance(fd)
            finally:
                os.close(fd)
            return dict(self._last)

    def _advance(self, fd: int) -> None:
        if self._pos == 0:
            head = os.pread(fd, HEADER.size, 0)
            if len(head) < HEADER.size or unwritten_header(head):
                return  # nothing logged yet (or killed before its header was stored)
            try:
                self._pos = check_header(head)
            except ValueError as e:
                raise CorruptRunError(f"metric log {self.path!r} cannot be read: {e}") from e
        pos, start, buf = self._pos, self._pos, b""

        def have(n: int) -> bool:  # make buf cover [pos, pos + n), reading on as needed
            nonlocal start, buf
            if pos + n <= start + len(buf):
                return True
            buf, start = buf[pos - start:], pos
            buf += os.pread(fd, max(_CHUNK, n - len(buf)), start + len(buf))
            return pos + n <= start + len(buf)

        while have(12):
            size = RECORD_HEAD.unpack_from(buf, pos - start)[0]
            if size < 12 or not have(size) or not self._take(buf, pos - start, size):
                break
            pos += size
        self._pos = pos

    def _take(self, buf: bytes, at: int, size: int) -> bool:
        """Note the record of ``size`` bytes at ``buf[at:]``; False if it is not valid."""
        sid = RECORD_HEAD.unpack_from(buf, at)[1]
        if RECORD_TRAIL.unpack_from(buf, at + size - 4)[0] != size ^ TRAILER_XOR:
            return False
        if sid == 0:
            try:
                new_sid, type_, _, body, _ = parse_schema(bytes(buf[at + 8:at + size - 4]))
            except ValueError:
                return False
            self._schemas[new_sid] = (type_, body.size + 12)
            return True
        entry = self._schemas.get(sid)
        if entry is None or entry[1] != size:
            return False
        step, epoch = _STEP_EPOCH.unpack_from(buf, at + 8)
        self._last[entry[0]] = Point(step, None if epoch < 0 else epoch)
        self.records_read += 1
        return True
