"""MXNet and GluonCV training logs to events: a line parser that needs neither MXNet nor em.

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
from .events import BatchLog, Checkpoint, Crash, EpochLog, GluonEpochLog, MXNetEvent, Start

__all__ = ["EPOCH_LINES", "MXNetLogParser"]

_MPI = re.compile(r"\[\d+,(\d+)\]<std\w+>:")
_EPOCH = re.compile(r"Epoch\[(\d+)\]")
_RANK = re.compile(r"Rank\[(\d+)\]")
_BATCH = re.compile(r"Batch ?\[(?:\d+-)?(\d+)\]")
_BRACKET = re.compile(r"([A-Za-z_][\w-]*)\[([^\]]+)\]")
_SPEED = re.compile(r"[Ss]peed: ?([^\s]+) samples/sec")
_TIME_COST = re.compile(r"[Tt]ime cost[=:] ?([^\s,]+)")
_GLUON = re.compile(r"\[Epoch (\d+)\]\s*(.*)$")
_GLUON_TIME = re.compile(r"\btime: ?([^\s,]+)")
_CHECKPOINT = re.compile(r"Saved checkpoint to \"?(.+?)\"?\s*$")
_NOT_METRICS = frozenset({"Epoch", "Batch", "Rank"})
# feed_bytes runs one regular expression over a whole block: Python code per line costs more
# than the events. A match starts at the '\n' before a line with 'Epoch' (sre searches for a
# literal far faster than it tries '^' at every character); other lines are skipped in C.
# The usual lines are taken apart, each into what _line would make of it: rank 0 or no MPI
# prefix, 'Epoch[N]' (group 1) at the line's first 'E' (the lookahead keeps '[^E]*' in the
# line), optional ' Rank[0]', then
# * a batch: 'Batch [k]' (2), Speedometer speed (3), then 'Loss[x]' (4), or three or more
#   tab-separated tokens (5, for _batch_metrics), or one or two 'name=value' (6-9: ASCII,
#   so that str.split() cuts the same tokens; 'Train-' dropped, which for two names is the
#   same before or after they are de-duplicated), or nothing;
# * or one 'Train-'/'Validation-' (10) metric (11, 12), 'Time cost=' (13), Speedometer
#   speed (14) or 'Resetting Data Iterator' (no event).
# Values are taken where float() reads them (feed_bytes hands the line to _line on
# ValueError); any other line with 'Epoch' is group 15, for _line. Lines with one of
# _RARE_WORDS are cut out beforehand: an alternation of words is tried at every character.
_NAME = r"[!-9;<>-Z\\-~]+"  # printable ASCII but ' ', ':', '=', '['
_VALUE = r"[-+.0-9A-Za-z_]+"  # what float() may read, and no whitespace
EPOCH_LINES = re.compile(r"""
    \n(?=.*Epoch)(?:
        (?:\[\d+,0\]<std\w+>:|(?!\[\d+,\d+\]<std\w+>:))
        [^E]*Epoch\[([0-9]+)\](?:\ Rank\[0\]|)
        (?:
            \ Batch\ ?\[(?:[0-9]+-|)([0-9]+)\]
            (?:\tSpeed:\ (VALUE)\ samples/sec|)
            (?:\ Loss\[([^\t\n\ \]]+)\]
              | (\t[^\t\n]*\t[^\t\n]*\t.*)
              | \t(?!Train-=)(?:Train-)?(NAME)=(VALUE)
                (?:\t(?!Train-=)(?:Train-)?(NAME)=(VALUE)|)
              |
            )
          | [\ \t](?:(Validation-)|(?!Validation-|Train-=)(?:Train-)?)(NAME)=(VALUE)
          | \ Time\ cost=(VALUE)
          | \tSpeed:\ (VALUE)\ samples/sec
          | \ Resetting\ Data\ Iterator
        )$
      | (.*)
    )""".replace("NAME", _NAME).replace("VALUE", _VALUE), re.MULTILINE | re.VERBOSE)
# What makes _line look at a line without 'Epoch' (a few lines per run or epoch)
_RARE_WORDS = ("Namespace(", "Saved checkpoint", "Traceback")


def _pairs(text: str, into: dict[str, float]) -> None:
    # split + partition, not a regex: lines with dozens of metrics stay linear in length,
    # and a regular expression tried at every position of a long line costs more (so do
    # map()/methodcaller/zip pipelines: measured)
    look = "[" in text or ":" in text  # else no name needs a look
    for token in text.split():
        name, eq, raw = token.partition("=")
        if eq and name and not (look and ("[" in name or ":" in name)):
            try:
                into[name] = float(raw)
            except ValueError:
                value = _number(raw.rstrip(","))
                if value is not None:
                    into[name] = value


def _rare_lines(text: str) -> list[int]:
    """Where the lines of ``text`` (``'\\n'``-led) with one of :data:`_RARE_WORDS` begin (at
    their ``'\\n'``), in order, then ``len(text)``."""
    starts: set[int] = set()
    for word in _RARE_WORDS:
        at = text.find(word)
        while at >= 0:
            starts.add(text.rfind("\n", 0, at))
            end = text.find("\n", at)
            at = text.find(word, end) if end >= 0 else -1
    return [*sorted(starts), len(text)]


def _batch_metrics(tail: str) -> dict[str, float]:
    """The metrics after ``Batch [k]``: ``Name[value]`` and ``name=value`` (``Train-`` dropped)."""
    metrics: dict[str, float] = {}
    if "[" in tail:
        for name, raw in _BRACKET.findall(tail):
            if name not in _NOT_METRICS:
                value = _number(raw)
                if value is not None:
                    metrics[name.lower() if name == "Loss" else name] = value
    if "Train-" in tail:  # names de-duplicated as printed, then the prefix dropped
        found: dict[str, float] = {}
        _pairs(tail, found)
        for name, value in found.items():
            metrics[name[6:] if name.startswith("Train-") else name] = value
    else:
        _pairs(tail, metrics)
    return metrics


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


class MXNetLogParser:
    """A line parser for MXNet / GluonCV training logs; returns events per line.

    Example:
        >>> MXNetLogParser().feed("INFO:root:Epoch[0] Batch [50]\\tSpeed: 707.55 samples/sec"
        ...                        "\\tTrain-accuracy=0.198750")
        [BatchLog(epoch=0, batch=50, metrics={'accuracy': 0.19875}, speed=707.55, time_cost=None)]
    """

    def __init__(self) -> None:
        self.lines = 0
        self._traceback = False  # inside a Python traceback: its last line says why

    def feed(self, line: str | bytes) -> list[MXNetEvent]:
        """Parse one line; returns its events (zero or one)."""
        if isinstance(line, bytes):
            line = line.decode("utf-8", "replace")
        out: list[MXNetEvent] = []
        self._line(line.rstrip("\r\n"), out)
        self.lines += 1
        return out

    def feed_bytes(self, block: bytes) -> list[MXNetEvent]:
        """Parse a block of whole lines (the pipe's fast path)."""
        text = block.decode("utf-8", "replace")
        if "\r" in text:
            text = text.replace("\r\n", "\n")
        if not text:
            return []
        self.lines += text.count("\n") + (text[-1] != "\n")
        # a '\n' before every line, none after the last: where EPOCH_LINES's matches start
        text = "\n" + (text[:-1] if text[-1] == "\n" else text)
        out: list[MXNetEvent] = []
        handle = self._line
        lines_of = EPOCH_LINES.finditer
        stops = iter(_rare_lines(text))  # the lines EPOCH_LINES must not see, then the end
        stop = next(stops)
        pos = 0  # the '\n' before the next line
        while pos < len(text):
            if self._traceback or pos == stop:  # a line for _line alone
                end = text.find("\n", pos + 1)
                if end < 0:
                    end = len(text)
                handle(text[pos + 1:end], out)
                pos = end
                while stop < pos:
                    stop = next(stops)
                continue
            for m in lines_of(text, pos, stop):
                (epoch, batch, speed, loss, tokens, n1, v1, n2, v2, val, name, value, tc,
                 epoch_speed, line) = m.groups()
                if line is None:
                    try:
                        if batch is None:  # an epoch line
                            if name is not None:
                                out.append(EpochLog(int(epoch), {}, {name: float(value)}) if val
                                           else EpochLog(int(epoch), {name: float(value)}))
                            elif tc is not None:
                                out.append(EpochLog(int(epoch), time_cost=float(tc)))
                            elif epoch_speed is not None:
                                out.append(EpochLog(int(epoch), speed=float(epoch_speed)))
                            continue
                        if n1 is not None:
                            metrics = ({n1: float(v1)} if n2 is None
                                       else {n1: float(v1), n2: float(v2)})
                        elif loss is not None:
                            metrics = {"loss": float(loss)}
                        elif tokens is None:
                            metrics = {}
                        elif " " in tokens or "[" in tokens or ":" in tokens:
                            metrics = None  # maybe a 'Rank[', 'ime cost' or 'peed:' (_epoch_line's)
                        else:
                            metrics = _batch_metrics(tokens)
                        if metrics is not None:
                            out.append(BatchLog(int(epoch), int(batch), metrics,
                                                None if speed is None else float(speed)))
                            continue
                    except ValueError:  # a value float() does not read: _line decides
                        pass
                handle(m.group()[1:], out)
            pos = stop
        return out

    def _line(self, line: str, out: list[MXNetEvent]) -> None:
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
            return
        if "[Epoch " in line:
            g = _GLUON.search(line)
            if g is not None:
                self._gluon(int(g.group(1)), g.group(2), out)
            return
        if "Namespace(" in line:
            out.append(Start(_namespace(line)))
            return
        if "Saved checkpoint" in line:
            c = _CHECKPOINT.search(line)
            if c is not None:
                out.append(Checkpoint(c.group(1)))

    def _epoch_line(self, epoch: int, rest: str, out: list[MXNetEvent]) -> None:
        speed = _SPEED.search(rest) if "peed:" in rest else None  # cheap tests first: long
        tc = _TIME_COST.search(rest) if "ime cost" in rest else None  # lines, many metrics
        time_cost = _number(tc.group(1)) if tc else None
        if tc is not None:
            rest = rest[:tc.start()] + rest[tc.end():]
        b = _BATCH.search(rest)
        if b is not None:
            tail = rest[b.end():]
            metrics = _batch_metrics(tail)
            out.append(BatchLog(epoch, int(b.group(1)), metrics,
                                _number(speed.group(1)) if speed else None, time_cost))
            return
        found: dict[str, float] = {}
        _pairs(rest, found)
        ep = EpochLog(epoch, time_cost=time_cost,
                      speed=_number(speed.group(1)) if speed else None)
        for name, value in found.items():
            if name.startswith("Validation-"):
                ep.val[name[11:]] = value
            else:
                ep.train[name[6:] if name.startswith("Train-") else name] = value
        if ep.train or ep.val or ep.time_cost is not None or ep.speed is not None:
            out.append(ep)

    def _gluon(self, epoch: int, rest: str, out: list[MXNetEvent]) -> None:
        ev = GluonEpochLog(epoch)
        speed = _SPEED.search(rest) if "peed:" in rest else None  # cheap tests first
        if speed is not None:
            ev.speed = _number(speed.group(1))
        tc = ((_TIME_COST.search(rest) if "ime cost" in rest else None)
              or (_GLUON_TIME.search(rest) if "time:" in rest else None))
        if tc is not None:
            ev.time_cost = _number(tc.group(1))
        found: dict[str, float] = {}
        _pairs(rest, found)
        low = rest.lstrip().lower()
        if low.startswith(("validation", "val:", "val ")):
            ev.val.update(found)
        elif low.startswith(("training", "train:", "train ")):
            ev.train.update(found)
        else:  # 'train=0.46 val=0.55 loss=1.45': one line for both, names kept as printed
            for name, value in found.items():
                (ev.val if name in ("val", "validation") else ev.train)[name] = value
        out.append(ev)

