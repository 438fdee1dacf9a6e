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
from collections.abc import Iterator
from typing import NamedTuple

from .forms import RARE_WORDS, VALUE_CHARS, metric_name, native, token_names

__all__ = ["Layout", "LineShape", "columns", "layout_of", "native_columns", "runs", "scan"]

scan = None if native is None else native.scan

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
    reported on consecutive lines), ``row`` takes one apart from its first line's ``'\\n'``
    (groups: epoch, batch, then per line its speed if printed and its values), ``program``
    is the same for the C matcher (None where it cannot say it)."""

    lines: tuple[LineShape, ...]
    row: re.Pattern[str]
    program: tuple[tuple[int, str], ...] | None


# The steps a layout's lines are made of, as (op, literal) pairs; the numbers are those of
# _rowscan.c. Literals are matched exactly; the other steps as their pattern here says.
LIT, DIGITS, EPOCH, BATCH, EPOCH_AGAIN, BATCH_AGAIN, VALUE, LOSS, EOL, NOT_MPI = range(10)
_PATTERNS = {DIGITS: "[0-9]+", EPOCH: "([0-9]+)", BATCH: "([0-9]+)", EPOCH_AGAIN: r"\1",
             BATCH_AGAIN: r"\2", VALUE: f"({VALUE_CHARS})", LOSS: r"([^\t\n \]]+)", EOL: "$",
             NOT_MPI: r"(?!\[\d+,\d+\]<std\w+>:)"}
Steps = list[tuple[int, str]]


def _pattern(steps: Steps) -> str:
    return "".join(re.escape(lit) if op == LIT else _PATTERNS[op] for op, lit in steps)


def _merged(steps: Steps) -> tuple[tuple[int, str], ...]:
    """The steps with consecutive literals joined."""
    out: Steps = []
    for op, lit in steps:
        if op == LIT and out and out[-1][0] == LIT:
            out[-1] = (LIT, out[-1][1] + lit)
        else:
            out.append((op, lit))
    return tuple(out)


def _prefix(mpi: str, rest: str) -> Steps:
    """The steps of a line's prefix: its digits may vary, nothing else."""
    steps: Steps
    if mpi:  # rank 0 only, as the parser
        steps = [(LIT, "["), (DIGITS, ""), (LIT, ",0]" + mpi[mpi.index("<"):])]
    else:  # no MPI prefix: only needs saying when the line may start with '['
        steps = [(NOT_MPI, "")] if rest.startswith("[") else []
    for i, part in enumerate(_DIGITS.split(rest)):
        if i % 2:
            steps.append((DIGITS, ""))
        elif part:
            steps.append((LIT, part))
    return steps


def _line(text: str, first: bool) -> tuple[Steps, LineShape] | None:
    """The steps (captures: epoch and batch on the first line, then speed and values) and
    shape of one batch line, or None where the parser might read a line of that pattern
    otherwise than its batch branch does."""
    m = _SHAPE.fullmatch(text)
    if m is None or any(w in text for w in RARE_WORDS):
        return None
    mpi, rest, rank, batch, dash, speed, tail = m.groups()
    tail_steps: Steps
    if tail == "":
        names: tuple[str, ...] = ()
        tail_steps = []
    elif _LOSS.fullmatch(tail):
        names, tail_steps = ("loss",), [(LIT, " Loss["), (LOSS, ""), (LIT, "]")]
    elif tail.startswith("\t"):
        raw = token_names(tail)
        if raw is None:
            return None
        names = tuple(map(metric_name, raw))
        if "" in names or len(set(raw)) < len(raw) or len(set(names)) < len(names):
            return None  # the parser's de-duplication decides those
        tail_steps = [step for n in raw for step in ((LIT, f"\t{n}="), (VALUE, ""))]
    else:
        return None
    if speed and "samples_per_sec" in names:
        return None  # the recorder writes the speed over it
    steps = [*_prefix(mpi, rest), (LIT, "Epoch["), (EPOCH if first else EPOCH_AGAIN, ""),
             (LIT, "]" + rank + batch), *([(DIGITS, ""), (LIT, "-")] if dash else []),
             (BATCH if first else BATCH_AGAIN, ""), (LIT, "]"),
             *([(LIT, "\tSpeed: "), (VALUE, ""), (LIT, " samples/sec")] if speed else []),
             *tail_steps, (EOL, "")]
    return steps, LineShape(names, bool(speed))


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
        shapes = tuple(s for _, s in parts)  # type: ignore[misc]
        names = [n for s in shapes for n in s.names]
        if len(set(names)) == len(names):  # else the parser sees the batch reported again
            unit = [step for steps, _ in parts  # type: ignore[misc]
                    for step in [(LIT, "\n"), *steps]]
            program = _merged(unit)
            layout = Layout(shapes, re.compile(_pattern(unit), re.MULTILINE),
                            None if any(op == NOT_MPI for op, _ in program) else program)
    if len(_made) >= 256:
        _made.pop(next(iter(_made)))
    _made[key] = layout
    return layout



Report = tuple[tuple[str, ...], list[list[float]], "list[float] | None"]
Columns = tuple[list[str], list[int], list[Report]]


def columns(layout: Layout, found: list[tuple[str, ...]]) -> Columns | None:
    """The rows ``layout.row.findall`` found, column by column: the epochs (as printed), the
    batch numbers, and per line of the layout its metric names, their value columns and its
    speed column (None when it prints none); None if a value is one float() does not read
    (the parser's per-line path then decides)."""
    cols = list(zip(*found))
    try:
        values = [list(map(float, c)) for c in cols[2:]]
    except ValueError:
        return None
    return native_columns(layout, [list(cols[0]), list(map(int, cols[1])), *values])


def native_columns(layout: Layout, cols: list[list[object]]) -> Columns:
    """:func:`columns` of what ``scan`` gives: a column per capture, converted."""
    at = 2
    reports: list[Report] = []
    for shape in layout.lines:
        speeds = None
        if shape.speed:
            speeds = cols[at]
            at += 1
        reports.append((shape.names, cols[at:at + len(shape.names)], speeds))  # type: ignore[arg-type]
        at += len(shape.names)
    return cols[0], cols[1], reports  # type: ignore[return-value]


def runs(layout: Layout, text: str, pos: int) -> Iterator[tuple[int, int, Columns | None]]:
    """The runs of consecutive ``layout`` reports in ``text`` from ``pos`` on, in order: where
    each starts and ends (at ``'\\n'``s) and its :func:`columns` (None where a value is one
    float() does not read). By the C matcher where it is built and can read the text, else
    by ``layout.row``; the next run is looked for when the caller asks for it."""
    program = layout.program
    got = NotImplemented if program is None or scan is None else scan(text, pos, program)
    if got is not NotImplemented:
        while got is not None:
            start, end, cols = got
            yield start, end, None if cols is None else native_columns(layout, cols)
            got = scan(text, end, program)  # type: ignore[misc]
        return
    found = layout.row.finditer(text, pos)
    m = next(found, None)
    while m is not None:
        start, end, rows = m.start(), m.end(), [m.groups()]
        for m in found:  # the run goes on while its lines follow each other
            if m.start() != end:
                break
            rows.append(m.groups())
            end = m.end()
        else:
            m = None
        yield start, end, columns(layout, rows)
