"""Runs of batch reports printed in one layout, read many at a time (the block path of
:class:`~integrations.mxnet_log.parser.MXNetLogParser`).

A training script prints its batch reports the same way every time: the same prefix, the
same metric names in the same order, only the numbers change. Once the parser has read one
such line (or a pair: Horovod scripts print a batch's loss and its metrics on two lines), a
:class:`Layout` is made from it: a regular expression that matches exactly the lines the
parser would read the same way, with a group per number. A run of consecutive lines in that
layout is then found by one match, taken apart by one ``findall`` and converted column by
column (``map(float, column)``): no Python code runs per line. What a layout matches is a
subset of what the parser's per-line paths read as that report (the names are literal, a
prefix keeps its letters and punctuation, only digits vary), so the events are the same.
"""

from __future__ import annotations

import re
from typing import NamedTuple

from .forms import RARE_WORDS, VALUE_CHARS, metric_name, token_names

__all__ = ["Layout", "LineShape", "columns", "layout_of"]

_LOSS = re.compile(r" Loss\[[^\t\n \]]+\]")
# One batch line, as EPOCH_LINES's batch branch reads it; the parts that stay literal
_SHAPE = re.compile(r"(\[[0-9]+,0\]<std\w+>:|)([^E\n]*)Epoch\[[0-9]+\]( Rank\[0\]|)"
                    r"( Batch ?\[)([0-9]+-|)[0-9]+\]"
                    rf"(\tSpeed: {VALUE_CHARS} samples/sec|)([^\n]*)")
_DIGITS = re.compile(r"([0-9]+)")


class LineShape(NamedTuple):
    """One line of a layout: the metric names it reports (``Train-`` dropped, ``Loss[x]`` as
    ``loss``), and whether it prints a Speedometer speed."""

    names: tuple[str, ...]
    speed: bool


class Layout(NamedTuple):
    """Batch reports printed one way: ``lines`` per batch (one, or more when one batch is
    reported on consecutive lines), ``run`` matches one or more of them in a row from a
    line's ``'\\n'``, ``row`` takes one apart (groups: epoch, batch, then per line its speed
    if printed and its values)."""

    lines: tuple[LineShape, ...]
    run: re.Pattern[str]
    row: re.Pattern[str]


def _prefix(mpi: str, rest: str) -> str:
    """The pattern of a line's prefix: its digits may vary, nothing else."""
    if mpi:  # rank 0 only, as the parser
        head = r"\[[0-9]+,0\]" + re.escape(mpi[mpi.index("<"):])
    else:
        head = r"(?!\[\d+,\d+\]<std\w+>:)"
    parts = _DIGITS.split(rest)
    return head + "".join("[0-9]+" if i % 2 else re.escape(p) for i, p in enumerate(parts))


def _line(text: str, first: bool) -> tuple[str, LineShape] | None:
    """The pattern (groups: epoch and batch on the first line, then speed and values) and
    shape of one batch line, or None where the parser might read a line of that pattern
    otherwise than its batch branch does."""
    m = _SHAPE.fullmatch(text)
    if m is None or any(w in text for w in RARE_WORDS):
        return None
    mpi, rest, rank, batch, dash, speed, tail = m.groups()
    value = f"({VALUE_CHARS})"
    if tail == "":
        names: tuple[str, ...] = ()
        tail_pat = ""
    elif _LOSS.fullmatch(tail):
        names, tail_pat = ("loss",), r" Loss\[([^\t\n \]]+)\]"
    elif tail.startswith("\t"):
        raw = token_names(tail)
        if raw is None:
            return None
        names = tuple(map(metric_name, raw))
        if "" in names or len(set(raw)) < len(raw) or len(set(names)) < len(names):
            return None  # the parser's de-duplication decides those
        tail_pat = "".join(f"\\t{re.escape(n)}={value}" for n in raw)
    else:
        return None
    if speed and "samples_per_sec" in names:
        return None  # the recorder writes the speed over it
    epoch, number = (r"([0-9]+)", r"([0-9]+)") if first else (r"\1", r"\2")
    pattern = (_prefix(mpi, rest) + rf"Epoch\[{epoch}\]" + re.escape(rank + batch)
               + ("[0-9]+-" if dash else "") + rf"{number}\]"
               + (rf"\tSpeed: {value} samples/sec" if speed else "") + tail_pat + "$")
    return pattern, LineShape(names, bool(speed))


def layout_of(lines: list[str]) -> Layout | None:
    """The layout of consecutive batch lines that report one batch (their text, without
    ``'\\n'``), or None if they have none (names repeated, other forms)."""
    key = []
    for i, text in enumerate(lines):
        m = _SHAPE.fullmatch(text)
        if m is None:
            return None
        # what the pattern keeps literal: digits of the prefix vary, values and numbers too
        key.append((m.group(1)[m.group(1).find("<"):], _DIGITS.sub("0", m.group(2)),
                    m.group(3), m.group(4), bool(m.group(5)), bool(m.group(6)),
                    _DIGITS.sub("0", m.group(7)) if "[" in m.group(7) else
                    re.sub(f"=({VALUE_CHARS})", "=", m.group(7)), i == 0))
    return _compiled(tuple(key), tuple(lines))


_made: dict[tuple[object, ...], Layout | None] = {}


def _compiled(key: tuple[object, ...], lines: tuple[str, ...]) -> Layout | None:
    if key in _made:
        return _made[key]
    parts = [_line(text, i == 0) for i, text in enumerate(lines)]
    layout = None
    if None not in parts:
        pats = [p for p, _ in parts]  # type: ignore[misc]
        shapes = tuple(s for _, s in parts)  # type: ignore[misc]
        names = [n for s in shapes for n in s.names]
        if len(set(names)) == len(names):  # else the parser sees the batch reported again
            unit = "".join("\n" + p for p in pats)
            layout = Layout(shapes, re.compile(f"(?:{unit})+", re.MULTILINE),
                            re.compile(unit, re.MULTILINE))
    if len(_made) >= 256:
        _made.pop(next(iter(_made)))
    _made[key] = layout
    return layout



Report = tuple[tuple[str, ...], list[list[float]], "list[float] | None"]


def columns(layout: Layout, found: list[tuple[str, ...]]
            ) -> tuple[tuple[str, ...], list[int], list[Report]] | None:
    """The rows ``layout.row.findall`` found, column by column: the epochs (as printed), the
    batch numbers, and per line of the layout its metric names, their value columns and its
    speed column (None when it prints none); None if a value is one float() does not read
    (the parser's per-line path then decides)."""
    cols = list(zip(*found))
    at = 2
    reports: list[Report] = []
    try:
        for shape in layout.lines:
            speeds = None
            if shape.speed:
                speeds = list(map(float, cols[at]))
                at += 1
            values = [list(map(float, c)) for c in cols[at:at + len(shape.names)]]
            at += len(shape.names)
            reports.append((shape.names, values, speeds))
    except ValueError:
        return None
    return cols[0], list(map(int, cols[1])), reports
