"""The forms of MXNet log lines that the parser reads many at a time: the one regular
expression its block path runs over a block (:data:`EPOCH_LINES`), the lines it must leave
to its per-line path (:data:`RARE_WORDS`), and the metric tokens of batch and epoch lines."""

from __future__ import annotations

import re
from bisect import bisect_left
from functools import lru_cache

from ..logpipe.values import parse_number as _number

try:  # the C matcher and search (_rowscan.c), when built: pip install builds it
    from . import _rowscan as native
except ImportError:  # pragma: no cover - installed where no compiler was found
    native = None

__all__ = ["EPOCH_LINES", "NAME_CHARS", "RARE_WORDS", "TOKEN", "VALUE_CHARS", "RareLines",
           "batch_metrics", "metric_name", "pairs", "tail_layout", "tail_layout_of",
           "token_names"]

_NOT_METRICS = frozenset({"Epoch", "Batch", "Rank"})
_BRACKET = re.compile(r"([A-Za-z_][\w-]*)\[([^\]]+)\]")
# The parser's block path runs one regular expression over a whole block: Python code per
# line costs more than the events. A match starts at the '\n' before a line with 'Epoch'
# (sre searches for a literal far faster than it tries '^' at every character); other lines
# are skipped in C.
# The usual lines are taken apart, each into what the per-line path makes of it: rank 0 or no MPI
# prefix, 'Epoch[N]' (group 1) at the line's first 'E' (the lookahead keeps '[^E]*' in the
# line), optional ' Rank[0]', then
# * a batch: 'Batch [k]' (2), Speedometer speed (3), then 'Loss[x]' (4), or three or more
#   tab-separated tokens (5, for batch_metrics), or one or two 'name=value' (6-9: ASCII,
#   so that str.split() cuts the same tokens; 'Train-' dropped, which for two names is the
#   same before or after they are de-duplicated), or 'Time cost=' (10) and one 'name=value'
#   (11, 12: the last batch of an epoch, as Horovod scripts print it), or nothing;
# * or one 'Train-'/'Validation-' (13) metric (14, 15), 'Time cost=' (16), Speedometer
#   speed (17) or 'Resetting Data Iterator' (no event).
# Values are taken where float() reads them (the per-line path gets the line on
# ValueError); any other line with 'Epoch' is group 18, for the per-line path. Lines with one of
# RARE_WORDS are cut out beforehand: an alternation of words is tried at every character.
NAME_CHARS = r"[!-9;<>-Z\\-~]+"  # printable ASCII but ' ', ':', '=', '['
VALUE_CHARS = r"[-+.0-9A-Za-z_]+"  # what float() may read, and no whitespace
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
              | \tTime\ cost=(VALUE)\t(?!Train-=)(?:Train-)?(NAME)=(VALUE)
              |
            )
          | [\ \t](?:(Validation-)|(?!Validation-|Train-=)(?:Train-)?)(NAME)=(VALUE)
          | \ Time\ cost=(VALUE)
          | \tSpeed:\ (VALUE)\ samples/sec
          | \ Resetting\ Data\ Iterator
        )$
      | (.*)
    )""".replace("NAME", NAME_CHARS).replace("VALUE", VALUE_CHARS), re.MULTILINE | re.VERBOSE)
# What makes the per-line path look at a line without 'Epoch' (a few lines per run or epoch)
RARE_WORDS = ("Namespace(", "Saved checkpoint", "Traceback", "Start training",
               "Segmentation fault", "terminate called after")


def pairs(text: str, into: dict[str, float]) -> None:
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


class RareLines:
    """Where the lines of a text (``'\\n'``-led: every line starts at its ``'\\n'``) with one
    of :data:`RARE_WORDS` begin, found only where asked and a window at a time: the block
    path never asks inside a run of batch reports (a layout's lines hold none of the words),
    and a search for six words costs as much as reading the text six times."""

    WINDOW = 1 << 15  # characters searched at once, at most

    def __init__(self, text: str) -> None:
        self._text = text
        self._lo = self._hi = 0  # the window searched: its rare lines are in _found
        self._found: list[int] = []

    def next(self, pos: int, end: int) -> int:
        """The first rare line starting at or after ``pos`` (a line's ``'\\n'``) and before
        ``end`` (a line's ``'\\n'`` or the text's end); ``end`` if there is none."""
        while pos < end:
            if not self._lo <= pos < self._hi:
                self._search(pos, end)
            i = bisect_left(self._found, pos)
            if i < len(self._found):
                return min(self._found[i], end)
            pos = self._hi
        return end

    def _search(self, lo: int, end: int) -> None:
        text = self._text
        hi = end if end - lo <= self.WINDOW else text.find("\n", lo + self.WINDOW, end)
        if hi < 0:
            hi = end
        found = NotImplemented if native is None else native.rare_lines(text, lo, hi, RARE_WORDS)
        if found is not NotImplemented:
            self._lo, self._hi = lo, hi
            self._found = sorted(set(found)) if len(found) > 1 else found
            return
        starts: set[int] = set()
        for word in RARE_WORDS:
            at = text.find(word, lo, hi)
            while at >= 0:
                starts.add(text.rfind("\n", lo, at))
                line_end = text.find("\n", at, hi)
                at = text.find(word, line_end, hi) if line_end >= 0 else -1
        self._lo, self._hi, self._found = lo, hi, sorted(starts)


def metric_name(printed: str) -> str:
    """The name a printed ``Train-acc`` is recorded under: ``acc`` (the prefix dropped; a
    bare ``Train-`` names nothing: ``''``, which no path records)."""
    return printed[6:] if printed.startswith("Train-") else printed


def batch_metrics(tail: str) -> dict[str, float]:
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
        pairs(tail, found)
        for name, value in found.items():
            name = metric_name(name)
            if name:
                metrics[name] = value
    else:
        pairs(tail, metrics)
    return metrics


TOKEN = re.compile(f"({NAME_CHARS})=({VALUE_CHARS})")


@lru_cache(maxsize=64)
def tail_layout(names: tuple[str, ...]) -> tuple[re.Pattern[str], tuple[str, ...]] | None:
    """For batch lines whose tokens are ``\\tNAME=VALUE`` with these names in this order: a
    pattern that takes such a tail apart (a group per value) and the metric names (``Train-``
    dropped); None where that would not give what :func:`batch_metrics` gives (names
    repeated before or after the prefix is dropped, a prefix with no name)."""
    out = tuple(map(metric_name, names))
    if "" in out or len(set(names)) != len(names) or len(set(out)) != len(out):
        return None
    return re.compile("".join(f"\t{re.escape(n)}=({VALUE_CHARS})" for n in names)), out


def tail_layout_of(tokens: str) -> tuple[re.Pattern[str], tuple[str, ...]] | None:
    """The :func:`tail_layout` of a batch line's tokens (``'\\ta=1\\tb=2...'``), if they are all
    ``NAME=VALUE``."""
    names = token_names(tokens)
    return None if names is None else tail_layout(names)


def token_names(tokens: str) -> tuple[str, ...] | None:
    """The names of a batch line's tokens (``'\\ta=1\\tb=2...'``), as printed, if they are
    all ``NAME=VALUE``; else None."""
    names = []
    for token in tokens[1:].split("\t"):
        m = TOKEN.fullmatch(token)
        if m is None:
            return None
        names.append(m.group(1))
    return tuple(names)
