"""Argument checks shared by runs and artifacts: each error quotes the value and what is
accepted."""

from __future__ import annotations

import operator
import os
from pathlib import Path
from typing import Any

CONFLICT_STRATEGIES = ("skip", "error", "new", "replace")
# A file name holds 255 bytes; a run directory adds "_<yymmdd>_<hhmmss>_<6 random>".
NAME_MAX_BYTES = 255 - 21

# Metric types: aliases (matched case-insensitively) and their normal form.
TYPE_ALIASES = {
    "train": "train", "training": "train",
    "val": "val", "validate": "val", "validation": "val",
    "test": "test", "testing": "test", "eval": "test", "evaluate": "test", "evaluation": "test",
}


def name(value: Any, what: str = "name") -> str:
    """A run or artifact name: a non-empty string usable as a directory name."""
    if not isinstance(value, str):
        raise TypeError(f"{what} must be a string, got {type(value).__name__}: {value!r}")
    if not value.strip():
        raise ValueError(f"{what} must not be empty, got {value!r}")
    bad = [c for c in ("/", "\\", "\0") if c in value]
    if bad or value in {".", ".."}:
        raise ValueError(f"{what} {value!r} is not allowed: it is used in a directory name, so it "
                         "may not contain '/', '\\' or NUL, nor be '.' or '..'")
    if len(value) > 200:
        raise ValueError(f"{what} is {len(value)} characters long; at most 200 are allowed")
    size = len(value.encode("utf-8", "surrogateescape"))
    if size > NAME_MAX_BYTES:
        raise ValueError(f"{what} {value[:40]!r}... is {size} bytes in UTF-8; at most "
                         f"{NAME_MAX_BYTES} fit in a directory name with em's 21-byte suffix")
    return value


def labels(value: Any) -> list[str]:
    """None or a list/tuple of non-empty strings."""
    if value is None:
        return []
    if isinstance(value, str) or not isinstance(value, (list, tuple, set, frozenset)):
        raise TypeError(f"labels must be a list of strings, got {type(value).__name__}: "
                        f"{value!r}")
    out = []
    for lab in value:
        if not isinstance(lab, str) or not lab.strip():
            raise ValueError(f"each label must be a non-empty string, got {lab!r} in {value!r}")
        out.append(lab)
    return out


def text(value: Any, what: str) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{what} must be a string, got {type(value).__name__}: {value!r}")
    return value


def flag(value: Any, what: str) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{what} must be True or False, got {type(value).__name__}: {value!r}")
    return value


def folder(value: Any) -> str:
    """An upload folder: 'a', 'a/b' or '/user/a'; no empty, '.' or '..' parts."""
    if not isinstance(value, str):
        raise TypeError(f"folder must be a string, got {type(value).__name__}: {value!r}")
    parts = value[1:].split("/") if value.startswith("/") else value.split("/")
    if not value or any(p in {"", ".", ".."} for p in parts):
        raise ValueError(f"folder {value!r} is not a valid folder path: expected names "
                         "separated by '/', such as 'default' or 'project/exp1'")
    return value


def conflict_strategy(value: Any) -> str:
    if value not in CONFLICT_STRATEGIES:
        raise ValueError(f"conflict_strategy={value!r} is not supported; expected one of "
                         f"{', '.join(map(repr, CONFLICT_STRATEGIES))}")
    return str(value)


def metric_type(value: Any) -> str:
    """Normalise a metric type ('training' -> 'train'); other non-empty strings are kept."""
    if not isinstance(value, str):
        raise TypeError(f"metric type must be a string such as 'train', 'val' or 'test', got "
                        f"{type(value).__name__}: {value!r}")
    normal = TYPE_ALIASES.get(value.strip().lower())
    if normal is not None:
        return normal
    if not value.strip() or len(value) > 64 or any(ord(c) < 32 for c in value):
        raise ValueError(f"metric type {value!r} is not valid: expected 'train', 'val', 'test' "
                         "(or an alias) or a custom name of 1-64 printable characters")
    return value


def index(value: Any, what: str) -> int:
    """A step or epoch: an int >= 0 (NumPy integers accepted, bools and floats refused)."""
    if isinstance(value, bool) or isinstance(value, float):
        raise TypeError(f"{what} must be an int >= 0, got {type(value).__name__}: {value!r}")
    try:
        out = operator.index(value)
    except TypeError:
        raise TypeError(f"{what} must be an int >= 0, got {type(value).__name__}: "
                        f"{value!r}") from None
    if out < 0:
        raise ValueError(f"{what} must be >= 0, got {out}")
    if out > 2**63 - 1:
        raise ValueError(f"{what} {out} does not fit in 64 bits")
    return out


def path(value: Any, what: str) -> Path:
    """A str or os.PathLike, as a Path."""
    if not isinstance(value, (str, os.PathLike)):
        raise TypeError(f"{what} must be a path (str or os.PathLike), got "
                        f"{type(value).__name__}: {value!r}")
    return Path(value)


def existing_file(value: Any, what: str) -> Path:
    p = path(value, what)
    if not p.exists():
        raise FileNotFoundError(f"{what}: no such file: {str(p)!r}")
    return p
