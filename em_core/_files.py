"""Atomic JSON metadata files: the write is a temporary file plus ``os.replace``."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from .errors import CorruptRunError


def write_json_atomic(path: str | os.PathLike[str], data: Any, *, fsync: bool = False) -> None:
    """Replace ``path`` with ``data`` as JSON, never leaving a half-written file.

    ``allow_nan`` stays on: NaN and infinities are written as ``NaN``/``Infinity``, which
    Python's and em's readers accept.
    """
    path = Path(path)
    text = json.dumps(data, indent=1, sort_keys=False, ensure_ascii=False)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        # A lone surrogate (a non-UTF-8 byte of argv or a path, as Python decodes it) has
        # no UTF-8 form: write every non-ASCII character as a JSON escape instead, which
        # reads back as the same string.
        text = json.dumps(data, indent=1, sort_keys=False, ensure_ascii=True)
    write_text_atomic(path, text + "\n", mode=0o644, fsync=fsync)


def write_text_atomic(path: str | os.PathLike[str], text: str, *, mode: int,
                      fsync: bool = False) -> None:
    """Replace ``path`` with ``text`` (UTF-8) through a temporary file and ``os.replace``,
    created with ``mode`` (0644 for runs others may read, 0600 for files holding keys)."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            if fsync:
                f.flush()
                os.fsync(f.fileno())
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
