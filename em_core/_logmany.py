"""``Run.log_many``: many rows of metrics in one call, packed into the mapped log at once.

A row is what one ``Run.log`` call (or several: one per group of columns) would record;
``log_many`` writes the same records, byte for byte but for the timestamp (one per call),
in the same order. When every column holds values of one class the log already has a
record layout for (``Run.log`` declared it), the rows are checked column by column (a
handful of C-level passes, no Python code per value) and packed with one ``struct`` call per
``_CHUNK`` rows under one hold of the writer's lock. Anything else (a new layout, a bad
value, a full window, a finished run, a forked child) goes row by row through ``Run.log``,
which validates, explains and warns exactly as it does for single calls.

Like ``Run.log``, a call returns once its records are in the page cache: killing the
process after it returns loses none of them; killing it during the call keeps the rows
packed so far (a torn last record is skipped by every reader).
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Mapping, Sequence
from functools import lru_cache
from typing import Any

from ._scalar import INT64_MAX, INT64_MIN, direct_kind, show
from .errors import handle_problem

__all__ = ["log_many"]

_CHUNK = 64  # rows packed by one struct call (a bigger Struct costs more to build than it saves)


@lru_cache(maxsize=256)
def _packer(kinds: tuple[str, ...], rows: int) -> Any:
    """``pack_into`` of a Struct for ``rows`` rows of records with these value kinds (one
    record per group, in order): the same bytes as that many single records."""
    one = "".join(f"IIqqd{k}I" for k in kinds)
    return struct.Struct("<" + one * rows).pack_into


def log_many(run: Any, type_: Any, steps: Any, metrics: Any, epochs: Any,
             clock: Callable[[], float]) -> None:
    """See ``Run.log_many``; ``clock`` gives the rows' timestamp (``Run.log``'s)."""
    groups = [metrics] if isinstance(metrics, Mapping) else metrics
    problem = _shape_problem(steps, groups, epochs)
    if problem is not None:
        handle_problem(problem, key=f"log_many:{type(problem).__name__}", stacklevel=3)
        return
    n = len(steps)
    if n == 0:
        return
    columns = [[list(col) for col in g.values()] for g in groups]
    names = [tuple(g) for g in groups]
    epoch_col = list(epochs) if isinstance(epochs, Sequence) else None
    steps = list(steps)
    done = 0
    while done < n:
        packed = _pack(run, type_, names, columns, steps, epochs, epoch_col, done, clock)
        done += packed
        if done < n:  # the row at `done` goes the validating way (it may make room)
            _one_row(run, type_, names, columns, steps, epochs, epoch_col, done)
            done += 1


def _shape_problem(steps: Any, groups: Any, epochs: Any) -> Exception | None:
    """Why the call's arguments are not rows at all (lengths that disagree, wrong types)."""
    if not isinstance(steps, Sequence) or isinstance(steps, (str, bytes)):
        return TypeError(f"log_many(): steps must be a sequence of ints, got {show(steps)}")
    if not isinstance(groups, Sequence) or not all(isinstance(g, Mapping) for g in groups):
        return TypeError("log_many(): metrics must be a dict of name -> sequence of values "
                         f"(or a list of such dicts), got {show(groups)}")
    n = len(steps)
    for g in groups:
        for name, col in g.items():
            if not isinstance(col, Sequence) or isinstance(col, (str, bytes)) or len(col) != n:
                return ValueError(f"log_many(): metric {show(name)} must have one value per "
                                  f"step ({n}), got {show(col)}")
    if isinstance(epochs, Sequence) and not isinstance(epochs, (str, bytes)) \
            and len(epochs) != n:
        return ValueError(f"log_many(): epochs must be None, one int or one per step ({n}), "
                          f"got {show(epochs)}")
    return None


def _one_row(run: Any, type_: Any, names: list[tuple[str, ...]], columns: list[list[list[Any]]],
             steps: list[Any], epochs: Any, epoch_col: list[Any] | None, i: int) -> None:
    """Row ``i`` through ``Run.log``: one call per group, in order."""
    epoch = epochs if epoch_col is None else epoch_col[i]
    for group_names, cols in zip(names, columns):
        run.log(type_, {name: col[i] for name, col in zip(group_names, cols)}, steps[i], epoch)


def _classes(values: list[Any]) -> type | None:
    """The one class of ``values``, or None if they have several."""
    found = set(map(type, values))
    return found.pop() if len(found) == 1 else None


def _pack(run: Any, type_: Any, names: list[tuple[str, ...]], columns: list[list[list[Any]]],
          steps: list[Any], epochs: Any, epoch_col: list[Any] | None, start: int,
          clock: Callable[[], float]) -> int:
    """Pack rows from ``start`` on straight into the mapped log; returns how many were (0:
    the row at ``start`` needs ``Run.log``)."""
    n = len(steps) - start
    fast = run._fast
    shapes, kinds = [], []
    for group_names, cols in zip(names, columns):
        tail = [col[start:] for col in cols] if start else cols
        classes = [_classes(col) for col in tail]
        if None in classes:
            return 0
        kind = "".join(direct_kind(c) or "?" for c in classes)  # type: ignore[arg-type]
        if "?" in kind or any(k == "q" and (min(col) < INT64_MIN or max(col) > INT64_MAX)
                              for k, col in zip(kind, tail)):
            return 0
        shape = fast.get((type_, *group_names, *classes))
        if shape is None:  # a layout Run.log has not declared (or not a valid one)
            return 0
        shapes.append(shape)
        kinds.append(kind)
    step_tail = steps[start:]
    if _classes(step_tail) is not int or min(step_tail) < 0 or max(step_tail) > INT64_MAX:
        return 0
    if epoch_col is None:
        if epochs is not None and (epochs.__class__ is not int or not 0 <= epochs <= INT64_MAX):
            return 0
        epoch_tail: Any = [-1 if epochs is None else epochs] * n
    else:
        epoch_tail = epoch_col[start:]
        if _classes(epoch_tail) is not int or min(epoch_tail) < 0 \
                or max(epoch_tail) > INT64_MAX:
            return 0
    # One flat argument list for every record of every row, filled column by column.
    row: list[Any] = []
    slots = []  # (offset in a row of a group's values, its columns)
    for (_, size, sid, trailer), group_cols in zip(shapes, columns):
        slots.append((len(row), group_cols))
        row += [size, sid, 0, 0, 0.0, *([0] * len(group_cols)), trailer]
    width = len(row)
    row_size = sum(s[1] for s in shapes)
    w = run._writer
    if w is None:
        return 0
    key = tuple(kinds)
    with w.lock:
        p = w.pos
        fits = min(n, (w.end - p) // row_size) if row_size else 0
        if fits <= 0 or w.mm is None or w.foreign:
            return 0
        args = row * fits
        now = clock()
        for at, group_cols in slots:
            args[at + 2::width] = step_tail[:fits]
            args[at + 3::width] = epoch_tail[:fits]
            args[at + 4::width] = [now] * fits
            for j, col in enumerate(group_cols):
                args[at + 5 + j::width] = col[start:start + fits]
        mm, off = w.mm, p - w.base
        full, rest = divmod(fits, _CHUNK)
        if full:
            pack = _packer(key, _CHUNK)
            step = _CHUNK * width
            for c in range(full):
                pack(mm, off, *args[c * step:(c + 1) * step])
                off += _CHUNK * row_size
        if rest:
            _packer(key, rest)(mm, off, *args[full * _CHUNK * width:])
        w.pos = p + fits * row_size
    return fits

