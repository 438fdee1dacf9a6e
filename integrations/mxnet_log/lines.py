"""MXNet and GluonCV log lines to events, one line at a time: the reference reading that
:class:`~integrations.mxnet_log.parser.MXNetLogParser` builds on (its block path reads the
usual lines many at a time and must give what this gives, line by line).

It understands what MXNet and GluonCV scripts print: Speedometer batch lines (``Epoch[0]
Batch [50]\tSpeed: 707.55 samples/sec\tTrain-accuracy=0.19``, ``Batch [0-20]``,
``Batch[100]``, ``Loss[6.968]``), ``Epoch[N] Train-``/``Validation-``/``Time cost=`` lines,
GluonCV ``[Epoch N] ...`` lines, argparse ``Namespace(...)`` lines (hyperparameters),
``Saved checkpoint to ...`` and Horovod/MPI ``[1,0]<stderr>:`` prefixes (ranks other than 0
are ignored).
"""

from __future__ import annotations

import ast
import re
from typing import Any

from ..logpipe.values import parse_number as _number
from .events import (
    BatchLog,
    Checkpoint,
    Crash,
    EpochLog,
    GluonEpochLog,
    MXNetEvent,
    Rewind,
    Start,
    TrainingStart,
)
from .forms import batch_metrics, metric_name, pairs

__all__ = ["LineReader"]

_MPI = re.compile(r"\[\d+,(\d+)\]<std\w+>:")
_EPOCH = re.compile(r"Epoch\[(\d+)\]")
_RANK = re.compile(r"Rank\[(\d+)\]")
_BATCH = re.compile(r"Batch ?\[(?:\d+-)?(\d+)\]")
_SPEED = re.compile(r"[Ss]peed: ?([^\s]+) samples/sec")
_TIME_COST = re.compile(r"[Tt]ime cost[=:] ?([^\s,]+)")
_GLUON = re.compile(r"\[Epoch (\d+)\]\s*(.*)$")
# GluonCV detection scripts: '[Epoch 0][Batch 99], Speed: 9.1 samples/sec, CrossEntropy=1.2, ...'
_GLUON_BATCH = re.compile(r"\[Epoch (\d+)\]\s*\[Batch (\d+)\]\s*,?(.*)$")
_GLUON_LR = re.compile(r"\bLR: ?([^\s,]+)")
_GLUON_TIME = re.compile(r"\btime: ?([^\s,]+)")
_CHECKPOINT = re.compile(r"Saved checkpoint to \"?(.+?)\"?\s*$")
def _namespace(text: str) -> dict[str, Any]:
    """The literal keyword values of a printed ``Namespace(...)``; others are skipped."""
    start = text.find("Namespace(")
    try:
        call = ast.parse(text[start:].strip(), mode="eval").body
    except SyntaxError:
        return {}
    out: dict[str, Any] = {}
    for kw in getattr(call, "keywords", []):
        try:
            out[kw.arg] = ast.literal_eval(kw.value)
        except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
            continue
    return out


class LineReader:
    """Reads an MXNet log a line at a time (:meth:`feed`); the state a report depends on
    (the last epoch and batch, a traceback under way, line numbers) is kept here."""

    def __init__(self) -> None:
        self.lines = 0
        self._traceback = False  # inside a Python traceback: its last line says why
        # the last report: epoch, batch (-1: an epoch line) and the names reported for it
        self._epoch = -1
        self._batch = -1
        self._names: dict[str, float] = {}
        # where line numbers come from: the text being parsed (None: feed()'s one line),
        # the number of its first line, the '\n' of the line being read, a count cached
        self._text: str | None = None
        self._first = 1
        self._pos = 0
        self._counted = (0, 0)

    def feed(self, line: str | bytes) -> list[MXNetEvent]:
        """Parse one line; returns its events (at most two: a :class:`Rewind` first)."""
        if isinstance(line, bytes):
            line = line.decode("utf-8", "replace")
        out: list[MXNetEvent] = []
        self._text = None
        self._line(line.rstrip("\r\n"), out)
        self.lines += 1
        return out

    def _line_number(self) -> int:
        """The number of the line being read (1-based)."""
        text = self._text
        if text is None:
            return self.lines + 1
        at, n = self._counted
        if self._pos < at:
            at, n = 0, 0
        n += text.count("\n", at, self._pos)
        self._counted = (self._pos, n)
        return self._first + n

    def _order(self, epoch: int, batch: int | None, metrics: dict[str, float], pos: int,
               out: list[MXNetEvent]) -> None:
        """A report of ``epoch`` (and ``batch``; None for an epoch line) at the line whose
        '\n' is at ``pos``: a :class:`Rewind` first if it goes back."""
        if batch is None:
            back = epoch < self._epoch
            batch_now = -1
        else:
            back = (epoch, batch) < (self._epoch, self._batch)
            batch_now = batch
            if (epoch, batch) == (self._epoch, self._batch):
                # one batch reported on two lines (Horovod scripts print its loss and its
                # metrics apart); a name reported again means it was trained again
                back = not self._names.keys().isdisjoint(metrics)
                if not back:
                    self._names = {**self._names, **metrics}
                    return
        if back:
            self._pos = pos
            out.append(Rewind(self._line_number(), epoch, batch))
        self._epoch, self._batch, self._names = epoch, batch_now, metrics

    def _line(self, line: str, out: list[MXNetEvent]) -> None:  # noqa: C901 - one dispatch on what a line is; each branch is a few lines
        if self._traceback:
            if line[:1] not in (" ", "\t", ""):
                self._traceback = False
                out.append(Crash(line.strip()))
            return
        if line.startswith("Traceback (most recent call last)"):
            self._traceback = True
            return
        if line[:1] == "[":
            mpi = _MPI.match(line)
            if mpi is not None:
                if mpi.group(1) != "0":
                    return  # only rank 0 speaks for the run
                line = line[mpi.end():]
        m = _EPOCH.search(line)
        if m is not None:
            rest = line[m.end():]
            rank = _RANK.search(rest) if "Rank[" in rest else None
            if rank is not None:
                if rank.group(1) != "0":
                    return
                rest = rest[:rank.start()] + rest[rank.end():]
            self._epoch_line(int(m.group(1)), rest, out)
        elif "[Epoch " in line:
            self._gluon_line(line, out)
        elif "Namespace(" in line:
            out.append(Start(_namespace(line), self._line_number()))
        elif "Saved checkpoint" in line:
            c = _CHECKPOINT.search(line)
            if c is not None:
                out.append(Checkpoint(c.group(1)))
        elif "Start training" in line:
            out.append(TrainingStart(self._line_number()))
        elif ("Segmentation fault" in line and ":" in line) or line.startswith(
                "terminate called after"):
            out.append(Crash(line.strip()))

    def _epoch_line(self, epoch: int, rest: str, out: list[MXNetEvent]) -> None:
        speed = _SPEED.search(rest) if "peed:" in rest else None  # cheap tests first: long
        tc = _TIME_COST.search(rest) if "ime cost" in rest else None  # lines, many metrics
        time_cost = _number(tc.group(1)) if tc else None
        if tc is not None:
            rest = rest[:tc.start()] + rest[tc.end():]
        b = _BATCH.search(rest)
        if b is not None:
            metrics = batch_metrics(rest[b.end():])
            batch = int(b.group(1))
            self._order(epoch, batch, metrics, self._pos, out)
            out.append(BatchLog(epoch, batch, metrics,
                                _number(speed.group(1)) if speed else None, time_cost))
            return
        found: dict[str, float] = {}
        pairs(rest, found)
        ep = EpochLog(epoch, time_cost=time_cost,
                      speed=_number(speed.group(1)) if speed else None)
        for name, value in found.items():
            if name.startswith("Validation-"):
                if name != "Validation-":  # a prefix with no name ('Validation-=1') is none
                    ep.val[name[11:]] = value
            elif metric_name(name):  # '' for a bare 'Train-'
                ep.train[metric_name(name)] = value
        if epoch != self._epoch:
            self._order(epoch, None, {}, self._pos, out)
        if ep.train or ep.val or ep.time_cost is not None or ep.speed is not None:
            out.append(ep)

    def _gluon_line(self, line: str, out: list[MXNetEvent]) -> None:
        """A GluonCV ``[Epoch N]`` line: a batch report if ``[Batch k]`` follows."""
        if "][Batch " in line or "] [Batch " in line:
            b = _GLUON_BATCH.search(line)
            if b is not None:
                self._gluon_batch(int(b.group(1)), int(b.group(2)), b.group(3), out)
                return
        g = _GLUON.search(line)
        if g is not None:
            self._gluon(int(g.group(1)), g.group(2), out)

    def _gluon_batch(self, epoch: int, batch: int, rest: str, out: list[MXNetEvent]) -> None:
        """``[Epoch N][Batch k], Speed: s samples/sec, LR: r, name=value, ...``."""
        speed = _SPEED.search(rest) if "peed:" in rest else None
        metrics: dict[str, float] = {}
        lr = _GLUON_LR.search(rest) if "LR:" in rest else None
        if lr is not None:
            value = _number(lr.group(1))
            if value is not None:
                metrics["lr"] = value
        pairs(rest.replace(",", " "), metrics)
        self._order(epoch, batch, metrics, self._pos, out)
        out.append(BatchLog(epoch, batch, metrics, _number(speed.group(1)) if speed else None))

    def _gluon(self, epoch: int, rest: str, out: list[MXNetEvent]) -> None:
        if epoch != self._epoch:
            self._order(epoch, None, {}, self._pos, out)
        ev = GluonEpochLog(epoch)
        speed = _SPEED.search(rest) if "peed:" in rest else None  # cheap tests first
        if speed is not None:
            ev.speed = _number(speed.group(1))
        tc = ((_TIME_COST.search(rest) if "ime cost" in rest else None)
              or (_GLUON_TIME.search(rest) if "time:" in rest else None))
        if tc is not None:
            ev.time_cost = _number(tc.group(1))
        found: dict[str, float] = {}
        pairs(rest, found)
        low = rest.lstrip().lower()
        if low.startswith(("validation", "val:", "val ")):
            ev.val.update(found)
        elif low.startswith(("training", "train:", "train ")):
            ev.train.update(found)
        else:  # 'train=0.46 val=0.55 loss=1.45': one line for both, names kept as printed
            for name, value in found.items():
                (ev.val if name in ("val", "validation") else ev.train)[name] = value
        out.append(ev)

