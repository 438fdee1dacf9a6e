"""``Run.log_many``: many rows of metrics in one call, packed into the mapped log at once.

A row is what one ``Run.log`` call (or several: one per group of columns) would record;
``log_many`` writes the same records, byte for byte but for the timestamp (one per call),
in the same order. When every column holds values of one class the log already has a
record layout for (``Run.log`` declared it), the rows are checked column by column (a
handful of C-level passes, no Python code per value) and packed with one ``struct`` call per
``_CHUNK`` rows under one hold of the writer's lock. Anything else (a new layout, a bad
value, a full window, a finished run, a forked child) goes row by row through ``Run.log``,
which validates, explains and warns exactly as it does for single calls.

Where the C loop ``_packrows`` is built (``pip install`` builds it; without a compiler em
works without it) it does the checking and the packing instead, a row at a time: the same
bytes, the same rows handed to ``Run.log``.

Like ``Run.log``, a call returns once its records are in the page cache: killing the
process after it returns loses none of them; killing it during the call keeps the rows
packed so far (a torn last record is skipped by every reader).
"""

from __future__ import annotations

import struct
import sys
from collections.abc import Callable, Mapping, Sequence
from functools import lru_cache
from itertools import chain
from typing import Any, NamedTuple

from ._scalar import INT64_MAX, INT64_MIN, direct_kind, show
from .errors import handle_problem

__all__ = ["log_many"]

_native_pack: Callable[..., int] | None
try:
    from ._packrows import pack as _native_pack
except ImportError:  # pragma: no cover - installed where no compiler was found
    _native_pack = None
if sys.byteorder != "little":  # pragma: no cover - the records are little-endian: struct's
    _native_pack = None

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
    groups = [metrics] if metrics.__class__ is dict or isinstance(metrics, Mapping) else metrics
    problem = None if _plain(steps, groups, epochs) else _shape_problem(steps, groups, epochs)
    if problem is not None:
        handle_problem(problem, key=f"log_many:{type(problem).__name__}", stacklevel=3)
        return
    n = len(steps)
    names = tuple(tuple(g) for g in groups)
    columns = [list(g.values()) for g in groups]
    epoch_col = None if epochs is None or epochs.__class__ is int else epochs
    done = 0
    while done < n:
        done += _pack(run, type_, names, columns, steps, epochs, epoch_col, done, clock)
        if done < n:  # the row at `done` goes the validating way (it may make room)
            epoch = epochs if epoch_col is None else epoch_col[done]
            for group_names, cols in zip(names, columns):
                run.log(type_, {name: col[done] for name, col in zip(group_names, cols)},
                        steps[done], epoch)
            done += 1


def _plain(steps: Any, groups: Any, epochs: Any) -> bool:
    """Whether the call is lists (or tuples) of one length in dicts, checked cheaply (the
    usual call; anything else gets :func:`_shape_problem`'s look)."""
    if steps.__class__ not in (list, tuple) or groups.__class__ is not list or not (
            epochs is None or epochs.__class__ is int):
        return False
    n = len(steps)
    for g in groups:
        if g.__class__ is not dict:
            return False
        for col in g.values():
            if col.__class__ not in (list, tuple) or len(col) != n:
                return False
    return True


def _sequence(x: Any) -> bool:
    return x.__class__ in (list, tuple) or (isinstance(x, Sequence)
                                            and not isinstance(x, (str, bytes)))


def _shape_problem(steps: Any, groups: Any, epochs: Any) -> Exception | None:
    """Why the call's arguments are not rows at all (lengths that disagree, wrong types)."""
    if not _sequence(steps):
        return TypeError(f"log_many(): steps must be a sequence of ints, got {show(steps)}")
    if not _sequence(groups) or not all(isinstance(g, Mapping) for g in groups):
        return TypeError("log_many(): metrics must be a dict of name -> sequence of values "
                         f"(or a list of such dicts), got {show(groups)}")
    n = len(steps)
    for g in groups:
        for name, col in g.items():
            if not _sequence(col) or len(col) != n:
                return ValueError(f"log_many(): metric {show(name)} must have one value per "
                                  f"step ({n}), got {show(col)}")
    if epochs is None or epochs.__class__ is int:
        return None
    if not _sequence(epochs):  # a bool too: no epoch, as in log()
        return TypeError(f"log_many(): epochs must be None, one int or a sequence of ints, "
                         f"got {show(epochs)}")
    if len(epochs) != n:
        return ValueError(f"log_many(): epochs must be None, one int or one per step ({n}), "
                          f"got {show(epochs)}")
    return None


def _one_class(values: Any) -> type | None:
    """The one class of ``values``, or None if they have several."""
    found = set(map(type, values))
    return found.pop() if len(found) == 1 else None


class _Plan(NamedTuple):
    """How rows of one (type, names, value classes) are packed: the value kinds, one row's
    argument list to repeat (the records' sizes, schema ids, trailers), where each group's
    steps, epochs and times go in it and where each column's values go (in the order of
    the groups' columns), its length and byte size."""

    kinds: tuple[str, ...]
    row: list[Any]
    slots: list[int]
    width: int
    size: int
    ints: tuple[int, ...]  # which columns (all groups in a row) hold 'q' values
    values: tuple[int, ...]
    groups: tuple[tuple[int, int, int, bytes], ...]  # size, schema id, trailer, kinds: for C


def _plan(fast: dict[Any, Any], key: tuple[Any, ...], type_: Any,
          names: tuple[tuple[str, ...], ...], classes: tuple[type, ...]) -> _Plan | None:
    """The packing plan of ``key``, made once per writer from the layouts ``Run.log``
    declared (None while one is not declared)."""
    plan = fast.get(key)
    if plan is not None:
        return plan  # type: ignore[no-any-return]
    row: list[Any] = []
    slots: list[int] = []
    kinds: list[str] = []
    ints: list[int] = []
    values: list[int] = []
    groups: list[tuple[int, int, int, bytes]] = []
    at = 0
    for group_names in names:
        group_classes = classes[at:at + len(group_names)]
        shape = fast.get((type_, *group_names, *group_classes))
        kind = "".join(direct_kind(c) or "?" for c in group_classes)
        if shape is None or "?" in kind:
            return None
        ints += [at + j for j, k in enumerate(kind) if k == "q"]
        at += len(group_names)
        size, sid, trailer = shape[1], shape[2], shape[3]
        slots.append(len(row))
        values += range(len(row) + 5, len(row) + 5 + len(group_names))
        row += [size, sid, 0, 0, 0.0, *([0] * len(group_names)), trailer]
        kinds.append(kind)
        groups.append((size, sid, trailer, kind.encode()))
    plan = _Plan(tuple(kinds), row, slots, len(row),
                 sum(row[s] for s in slots), tuple(ints), tuple(values), tuple(groups))
    fast[key] = plan  # a key no log() call makes: it holds tuples of names
    return plan


def _pack_native(run: Any, w: Any, type_: Any, names: tuple[tuple[str, ...], ...],
                 flat: list[Any], steps: list[Any], epochs: Any, epoch_col: Any,
                 clock: Callable[[], float]) -> int:
    """:func:`_pack` by the C loop: the plan of the first row's classes, rows packed until
    one is not of them (or has a step, epoch or int out of range)."""
    if not all(col.__class__ is list for col in flat):
        flat = [list(col) for col in flat]
    classes = tuple([col[0].__class__ for col in flat])
    key = (type_, names, classes)
    plan = run._fast.get(key)
    if plan is None:
        plan = _plan(run._fast, key, type_, names, classes)
        if plan is None:
            return 0
    with w.lock:
        p = w.pos
        fits: int = min(len(steps), (w.end - p) // plan.size)
        if fits <= 0 or w.mm is None or w.foreign:
            return 0
        done: int = _native_pack(w.mm, p - w.base, fits, plan.groups, steps,  # type: ignore[misc]
                                 epochs if epoch_col is None else epoch_col, clock(), flat,
                                 classes)
        w.pos = p + done * plan.size
    return done


def _pack(run: Any, type_: Any, names: tuple[tuple[str, ...], ...], columns: list[list[Any]],  # noqa: C901 - the hot path, checks inlined: each early return hands a row the checks cannot pass to Run.log
          steps: Any, epochs: Any, epoch_col: Any, start: int,
          clock: Callable[[], float]) -> int:
    """Pack rows from ``start`` on straight into the mapped log; returns how many were (0:
    the row at ``start`` needs ``Run.log``)."""
    w = run._writer
    if w is None:  # ended, or a forked child's copy: Run.log explains
        return 0
    if start:
        columns = [[col[start:] for col in cols] for cols in columns]
        steps = steps[start:]
        epoch_col = None if epoch_col is None else epoch_col[start:]
    n = len(steps)
    flat = [col for cols in columns for col in cols]
    if _native_pack is not None and n and steps.__class__ is list and (
            epoch_col is None or epoch_col.__class__ is list):
        return _pack_native(run, w, type_, names, flat, steps, epochs, epoch_col, clock)
    # one pass over every value for the usual call (all of one class), not one per column
    found = set(map(type, chain.from_iterable(flat)))
    classes: tuple[type | None, ...]
    if len(found) == 1:
        classes = (found.pop(),) * len(flat)
    else:
        classes = tuple(map(_one_class, flat))
        if None in classes:
            return 0
    fast = run._fast
    key = (type_, names, classes)
    plan = fast.get(key)
    if plan is None:
        plan = _plan(fast, key, type_, names, classes)  # type: ignore[arg-type]
        if plan is None:
            return 0
    for j in plan.ints:
        if min(flat[j]) < INT64_MIN or max(flat[j]) > INT64_MAX:
            return 0
    if _one_class(steps) is not int or min(steps) < 0 or max(steps) > INT64_MAX:
        return 0
    if epoch_col is None:
        if epochs is not None and not 0 <= epochs <= INT64_MAX:
            return 0
        epoch_col = [-1 if epochs is None else epochs] * n
    elif _one_class(epoch_col) is not int or min(epoch_col) < 0 or max(epoch_col) > INT64_MAX:
        return 0
    width, row_size = plan.width, plan.size
    with w.lock:
        p = w.pos
        fits: int = min(n, (w.end - p) // row_size)
        if fits <= 0 or w.mm is None or w.foreign:
            return 0
        if fits < n:
            steps, epoch_col = steps[:fits], epoch_col[:fits]
            flat = [col[:fits] for col in flat]
        args = plan.row * fits
        now = [clock()] * fits
        for at in plan.slots:
            args[at + 2::width] = steps
            args[at + 3::width] = epoch_col
            args[at + 4::width] = now
        for at, col in zip(plan.values, flat):
            args[at::width] = col
        mm, off = w.mm, p - w.base
        if fits <= _CHUNK:  # the usual call: one struct call, no slices
            _packer(plan.kinds, fits)(mm, off, *args)
            w.pos = p + fits * row_size
            return fits
        full, rest = divmod(fits, _CHUNK)
        if full:
            pack = _packer(plan.kinds, _CHUNK)
            step = _CHUNK * width
            for c in range(full):
                pack(mm, off, *args[c * step:(c + 1) * step])
                off += _CHUNK * row_size
        if rest:
            _packer(plan.kinds, rest)(mm, off, *args[full * _CHUNK * width:])
        w.pos = p + fits * row_size
    return fits
