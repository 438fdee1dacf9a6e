"""Atomic JSON metadata files: the write is a temporary file plus ``os.replace``."""

from __future__ import annotations

import itertools
import json
import os
from pathlib import Path
from typing import Any

from .errors import CorruptRunError


def write_json_atomic(path: str | os.PathLike[str], data: Any, *, fsync: bool = False) -> None:
    """Replace ``path`` with ``data`` as JSON, never leaving a half-written file.

    A dict is written a key per line (``{\n "name": ...,\n "hparams": {...}\n}``: each
    value on one line), anything else on one line: the C encoder writes it, a fraction of
    the cost of an indented file (run.json is written on every change of hyperparameters).
    ``allow_nan`` stays on: NaN and infinities are written as ``NaN``/``Infinity``, which
    Python's and em's readers accept.
    """
    try:
        text = _dumps(data, ascii_only=False)
        raw = text.encode("utf-8")
    except UnicodeEncodeError:
        # A lone surrogate (a non-UTF-8 byte of argv or a path, as Python decodes it) has
        # no UTF-8 form: write every non-ASCII character as a JSON escape instead, which
        # reads back as the same string.
        raw = _dumps(data, ascii_only=True).encode("ascii")
    _write_atomic(Path(path), raw + b"\n", mode=0o644, fsync=fsync)


_ENCODERS = {ascii_only: json.JSONEncoder(ensure_ascii=ascii_only).encode
             for ascii_only in (False, True)}


def _dumps(data: Any, *, ascii_only: bool) -> str:
    encode = _ENCODERS[ascii_only]  # made once: json.dumps() with options makes one per call
    if not isinstance(data, dict) or not data or not all(isinstance(k, str) for k in data):
        return encode(data)
    return "{\n" + ",\n".join(f" {encode(k)}: {encode(v)}" for k, v in data.items()) + "\n}"


def write_text_atomic(path: str | os.PathLike[str], text: str, *, mode: int,
                      fsync: bool = False) -> None:
    """Replace ``path`` with ``text`` (UTF-8) through a temporary file and ``os.replace``,
    created with ``mode`` (0644 for runs others may read, 0600 for files holding keys)."""
    _write_atomic(Path(path), text.encode("utf-8"), mode=mode, fsync=fsync)


_serial = itertools.count()


def _write_atomic(path: Path, raw: bytes, *, mode: int, fsync: bool) -> None:
    # a name of this process's own (pid and a counter; O_EXCL for the one left by a dead
    # process with the same pid), written with os.write: tempfile and a file object cost
    # more than the write itself for a file of a few kilobytes
    while True:
        tmp = path.parent / f".{path.name}.{os.getpid()}.{next(_serial)}.tmp"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0),
                         0o600)
            break
        except FileExistsError:
            continue
    try:
        try:
            os.fchmod(fd, mode)  # the mode asked for, whatever the umask
            view = memoryview(raw)
            while view:
                view = view[os.write(fd, view):]
            if fsync:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def read_json(path: str | os.PathLike[str]) -> Any:
    """Read a metadata file, reporting a damaged one by its path.

    Raises:
        FileNotFoundError: the file does not exist.
        CorruptRunError: it exists but is not valid JSON.
    """
    path = Path(path)
    raw = path.read_bytes()
    try:
        return json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
        # RecursionError: a crafted file nesting arrays thousands deep
        raise CorruptRunError(
            f"metadata file {str(path)!r} is damaged and cannot be read ({e}); "
            "em leaves it as it is: restore it from a backup or delete the directory"
        ) from e
