"""Caffe training logs to events: a stateful line parser that needs neither Caffe nor em.

Feed it the lines of a log (``bytes`` or ``str``, in order) and it returns what they complete:
a :class:`TrainIteration` once an iteration's display block is over, a :class:`TestResult`
per test pass and test net, and the milestones (:class:`Solving`, :class:`Resumed`,
:class:`Snapshot`, :class:`Finished`, :class:`Failed`, :class:`SolverParameters`).

It reads the forms seen in real logs (``../shared/corpus/caffe`` in the repository): BVLC Caffe
from 2014 on, NVCaffe 0.15-0.17 (rank prefixes ``[0.0]``/``(0.0)``, ``Iteration 0 (7.6 s)``),
Intel and OpenCL Caffe, SSD forks, DIGITS job logs, console copies hard-wrapped at a fixed
width, ANSI colours, MPI ``[1,0]<stderr>:`` prefixes, bytes that are not UTF-8, output names
with spaces, colons, ``/`` and ``%``, ``nan``/``-nan``/``inf``/``1.#QNAN``, several runs
appended to one file, and Caffe before 2014 (``Iteration N, lr`` printed before its loss
line, ``Testing net`` without ``(#k)``, ``Test loss:`` and ``Test score #k:``, snapshots
named without a format).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from .blocks import MIN_BLOCK, BlockReader
from .events import (
    CaffeEvent,
    Failed,
    Finished,
    Resumed,
    Snapshot,
    SolverParameters,
    Solving,
    TestResult,
    TrainIteration,
)

__all__ = ["CaffeEvent", "CaffeLogParser", "Failed", "Finished", "Resumed", "Snapshot",
           "Solving", "SolverParameters", "TestResult", "TrainIteration", "parse_caffe_log"]


def _first_wider(text: str, width: int) -> int:
    """Where the first line of ``text`` wider than ``width`` starts; -1 if none."""
    lengths = list(map(len, text.split("\n")))
    if max(lengths) <= width:
        return -1
    at = 0
    for n in lengths:
        if n > width:
            return at
        at += n + 1
    return -1


class CaffeLogParser(BlockReader):
    """A stateful parser of Caffe logs, fed line by line.

    Example:
        >>> p = CaffeLogParser()
        >>> p.feed("I0101 00:00:01.000000  7 solver.cpp:218] Iteration 100, loss = 0.5")
        []
        >>> p.feed("I0101 00:00:01.000001  7 sgd_solver.cpp:105] Iteration 100, lr = 0.01")
        [TrainIteration(iteration=100, loss=0.5, outputs={}, weights={}, lr=0.01, ...)]

    Args:
        year: Year for glog timestamps (which have none) until the log names one in a
            ``Log file created at:`` header or NVCaffe's ``started at`` line; default: this
            year. The year advances when the month goes backwards (a run across New Year).
        wrap_width: Lines exactly this wide followed by a line that is not a glog line are
            joined with it (console copies hard-wrapped); 0 or None turns this off, and so
            does the first line wider than this (a log with such a line is not hard-wrapped,
            and its lines of exactly this width are whole).
    """

    # The per-line code is LineReader's (integrations.caffe.lines), the block path
    # BlockReader's (integrations.caffe.blocks); this class is their public face.
    def feed(self, line: bytes | str) -> list[CaffeEvent]:
        """Parse one line (with or without its line ending); returns the events it completes."""
        if isinstance(line, bytes):
            line = line.decode("utf-8", "replace")
        line = line.rstrip("\n")
        if line:
            return self.feed_text(line)
        out: list[CaffeEvent] = []  # a blank line still ends a wrapped one
        self.lines += 1
        self._feed_lines([line], out)
        return out

    def feed_lines(self, lines: Iterable[bytes | str]) -> list[CaffeEvent]:
        """Parse many lines; returns the events they complete, in log order."""
        out: list[CaffeEvent] = []
        for line in lines:
            out.extend(self.feed(line))
        return out

    def feed_bytes(self, block: bytes) -> list[CaffeEvent]:
        """Parse a block of whole lines (``\\n``-terminated; a last unterminated line counts).

        This is the fast path the ``em caffe`` pipe uses: the block is decoded at once
        (undecodable bytes become U+FFFD) and, unless it is only a few lines, searched for
        what matters rather than read line by line.
        """
        return self.feed_text(block.decode("utf-8", "replace"))

    def feed_text(self, text: str) -> list[CaffeEvent]:
        """Like :meth:`feed_bytes` for text already decoded."""
        out: list[CaffeEvent] = []
        if "\r" in text:
            text = text.replace("\r\n", "\n")
        if self.wrap_width > 0 and len(text) > self.wrap_width:
            wide = _first_wider(text, self.wrap_width)
            if wide >= 0:  # the lines before it as a wrapped log's, the rest not
                out = self.feed_text(text[:wide]) if wide else []
                self.wrap_width = -1
                return out + self.feed_text(text[wide:])
        if len(text) < MIN_BLOCK or not self._feed_block(text, out):
            lines = text.split("\n")
            if not lines[-1]:
                lines.pop()
            self.lines += len(lines)
            self._feed_lines(lines, out)
        return out

    def flush(self) -> list[CaffeEvent]:
        """Close the open test pass if it is known to be complete (the pipe calls this when
        the input goes quiet): it has the output names of the net's last complete pass.

        Otherwise it stays open whatever the pause (Caffe may print a pass's lines slowly:
        one pass is one record whatever the timing) and the next line closes it; an open
        training block is left alone too: its ``lr`` line closes it.
        """
        out: list[CaffeEvent] = []
        test = self._test
        if test is not None and test.outputs and self._test_names.get(test.net) == list(
                test.outputs):  # else more outputs may come: the next line will tell
            self._end_test(out)
        return out

    def close(self) -> list[CaffeEvent]:
        """End of input: returns everything still open (a held line, the last blocks)."""
        out: list[CaffeEvent] = []
        if self._held is not None:
            held, self._held = self._held, None
            self._line(held, out)
        self._end_params(out)
        self._close_rows(out)
        return out

    @property
    def iteration(self) -> int:
        """The last iteration number the log mentioned."""
        return self._iteration


def parse_caffe_log(path: str, *, year: int | None = None,
                    wrap_width: int | None = 100) -> Iterator[CaffeEvent]:
    """All events of a Caffe log file, in order (read in binary; any bytes are fine)."""
    parser = CaffeLogParser(year=year, wrap_width=wrap_width)
    tail = b""
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            data = tail + block
            cut = data.rfind(b"\n") + 1
            tail = data[cut:]
            if cut:
                yield from parser.feed_bytes(data[:cut])
    if tail:
        yield from parser.feed_bytes(tail)
    yield from parser.close()
