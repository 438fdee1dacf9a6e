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

import re
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime
from functools import lru_cache

from .._logstream import parse_number as _number
from ._events import (
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
from ._prototxt import PrototxtError, parse_prototxt

__all__ = ["CaffeEvent", "CaffeLogParser", "Failed", "Finished", "Resumed", "Snapshot",
           "Solving", "SolverParameters", "TestResult", "TrainIteration", "parse_caffe_log"]


_PREFIX = r"(?:\x1b\[[\d;]*m)?(?:\[\d+,\d+\]<\w+>:)?"
_HEAD = re.compile(_PREFIX + r"([IWEF])(\d\d)(\d\d) (\d\d):(\d\d):(\d\d)\.(\d{1,6})\d*"
                   r" +\d+ [^\]]*\] ")
_GLOG_START = re.compile(_PREFIX + r"[IWEF]\d{4} \d\d:\d\d:\d\d\.")
_ANSI = re.compile(r"\x1b\[[\d;]*[A-Za-z]")
_LOSS = re.compile(r"Iteration (\d+)(?: \(([^)]*)\))?, loss = ([^\s,]+)")
_LR = re.compile(r"Iteration (\d+), lr = ([^\s,]+)")
_TESTING = re.compile(r"Iteration (\d+), Testing net(?: \(#(\d+)\))?")  # no (#k) before 2014
_SCORE = re.compile(r"Test (?:score #(\d+)|loss): (\S+)")  # before 2014
_RATE = re.compile(r"([^\s,(]+) iter/s")
# Messages (right after 'file.cpp:123] ') worth a closer look; tested with str.startswith.
_RARE_STARTS = ("Solving", "Resuming from", "Restoring previous", "Snapshotting", "Optimization",
                "Initializing solver", "This is NVCaffe", "Test score", "Test loss:")
_RARE_ANY = re.compile("|".join(_RARE_STARTS) + "|Log file created")
_SOLVING = re.compile(r"\] +(?:\[[\d.]+\] +)?Solving ?(.*?)\s*(?:Learning Rate Policy.*)?$")
# "... binary proto file PATH"; BVLC's 2015 solver printed "filePATH" for the solver state,
# and 2014's "Snapshotting to PATH" named no format
_SNAPSHOT = re.compile(r"Snapshotting (solver state )?to (?:(?:binary proto|HDF5|text) file ?)?"
                       r"(\S.*?)\s*$")
_RESUME = re.compile(r"(Resuming from|Restoring previous solver status from) (.+?)\s*$")
_YEAR_HEADER = re.compile(r"Log file created at: (\d{4})/")
_YEAR_NVCAFFE = re.compile(r"started at \w+ \w+ +\d+ [\d:]+ (\d{4})")
_ITER_IN_PATH = re.compile(r"_iter_(\d+)(?:\.|$)")
_FATAL = re.compile(_PREFIX + r"F\d{4} ")
_fromiso = datetime.fromisoformat
# The usual glog stamp, ASCII digits in fixed places: parsed by datetime.fromisoformat (C)
_STAMP = re.compile(r"[IWEF](\d{4}) (\d\d:\d\d:\d\d\.\d{6})", re.ASCII)
# First letters of the rare messages and of rank prefixes: most lines fail this one test
_RARE_FIRST = "".join(sorted({s[0] for s in _RARE_STARTS})) + "[("

# The block path (CaffeLogParser._feed_block) finds what matters with regular expressions
# instead of looking at every line: a run of training display blocks (a loss line, its
# 'Train net output' lines, its lr line) is read with a pattern made for the output names of
# the run (_block_template), one match per block; another training or test line in its usual
# form by _ITER_LINE or _OUTPUT_REST; anything else that matters by the per-line code. Each
# pattern takes a line only in a form where it gives what the per-line code gives: a glog
# head with no space inside its fields (so no 'net output #', 'loss = ', ', lr = ' nor an
# earlier 'Iteration N, ...' before the message; nor can a wrapped line be joined to it),
# names without '=', values and weights without blanks, no '=' or '#' in the '(...)' of a
# loss line, nothing after a loss value, no '#' (no 'net output #') after an lr value or a
# test net.
_GLOG_HEAD = r"[IWEF]([0-9]{4}) ([0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{6}) +[^ ]+ [^ ]+\] "
_RUN_HEAD = r"[IWEF][0-9]{4} [0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{6} +[^ ]+ [^ ]+\] "  # no group
_RANK = r"(?: *\[[0-9]+\.[0-9]+\] +)?"  # NVCaffe's solver rank, '[0.0]'
_LOSS_TAIL = r"(?: \(((?:([^\s,(]+) iter/s)?[^)=#\n]*)\))?, loss = ([^\s,]+)"
_LR_TAIL = r", lr = ([^\s,]+)[^#\n]*"
# groups: 1 month and day, 2 clock, 3 iteration, 4 '(...)', 5 its iter/s, 6 loss
_LOSS_LINE = _GLOG_HEAD + r"Iteration (\d+)" + _LOSS_TAIL + r"\n"
_LR_LINE = _RUN_HEAD + r"Iteration (\d+)" + _LR_TAIL + r"(?:\n|\Z)"  # its iteration, the lr
_OUTPUT = r"\d+: ([^=]+) = (\S+)(?: \(\* (\S+) = \S+ loss\))?"  # name, value, loss weight
# Any display block, to learn the names of its outputs: group 7, its output lines
_BLOCK = re.compile(_LOSS_LINE + r"((?:" + _RUN_HEAD + r"    Train net output #[^\n]*\n)*)"
                    + _LR_LINE)
_OUTPUTS = re.compile(r"\]     Train net output #" + _OUTPUT + r"\n")  # in _BLOCK group 7
# One line: groups 1-6 as _LOSS_LINE, 7 lr, 8 test net
_ITER_LINE = re.compile(_GLOG_HEAD + _RANK + r"Iteration (\d+)(?:" + _LOSS_TAIL + r"|"
                        + _LR_TAIL + r"|, Testing net(?: \(#(\d+)\))?[^=#\n]*)")
_LINE_LOSS, _LINE_LR, _LINE_TEST = 6, 7, 8  # lastindex of _ITER_LINE: which line
_OUTPUT_REST = re.compile(_OUTPUT)  # an output line after its 'net output #'
# After a '] ': an output line (group 1 or 5: Train or Test), a loss line (2), another
# 'Iteration' line (3, 4), or (no group) a message that may be a rare one. Every line that the
# per-line code does not skip is found so, or mentions 'Iteration' or 'net output', or starts
# with one of _ODD_FIRST, or is wrap_width wide (see CaffeLogParser._gap).
_RARE_ALTERNATIVES = "|".join(  # grouped by first letter: fewer alternatives to try
    re.escape(first) + "(?:" + "|".join(re.escape(s[1:]) for s in _RARE_STARTS if s[0] == first)
    + ")" for first in sorted({s[0] for s in _RARE_STARTS}))
_SCAN = re.compile(r"\] (?:    (Train|Test) net output #|I(?:(teration \d+(?:, loss| \())"
                   r"|(teration ))| (?: *\[[0-9]+\.[0-9]+\] +(Iteration )"
                   r"| *[\[(][0-9]+\.[0-9]+[\])] +(Train|Test) net output #)|"
                   + _RARE_ALTERNATIVES + r"|[\[(\n]|\Z)")
_TRAIN_OR_TEST, _LOSS_START = (1, 5), 2  # groups of _SCAN
_ODD_FIRST = "*LF\x1b["  # first characters of lines the per-line code may not skip
_NEXT_GLOG = re.compile(r"\n(?=" + _GLOG_START.pattern + ")")  # ends a solver parameter dump
# Text shorter than this (a line fed alone), or of fewer lines, goes to the per-line code:
# searching it would cost more than it saves.
_MIN_BLOCK, _MIN_BLOCK_LINES = 500, 8


@lru_cache(maxsize=32)
def _block_template(layout: tuple[tuple[str, bool], ...]
                    ) -> tuple[re.Pattern[str], tuple[tuple[str, int, int], ...]]:
    """A pattern for the display blocks whose output lines are ``layout`` (name, has a loss
    weight), in this order, line ending included; and where their values are: (name, index
    in ``groups()``, index of the weight or 0). Groups 1-6 are those of _LOSS_LINE, the last
    two the lr line's iteration and the lr."""
    lines = []
    where = []
    index = 6
    for name, weighted in layout:
        lines.append(_RUN_HEAD + r"    Train net output #\d+: " + re.escape(name)
                     + (r" = (\S+) \(\* (\S+) = \S+ loss\)\n" if weighted else r" = (\S+)\n"))
        where.append((name, index, index + 1 if weighted else 0))
        index += 2 if weighted else 1
    return re.compile(_LOSS_LINE + "".join(lines) + _LR_LINE), tuple(where)


def _one_after_another(pattern: re.Pattern[str], text: str, start: int) -> list[re.Match[str]]:
    """The matches of ``pattern`` at ``text[start:]``, each where the one before ended."""
    matches = []
    match = pattern.match
    while (m := match(text, start)) is not None:
        matches.append(m)
        start = m.end()
    return matches


def _iter_per_s(extra: str, rate: str | None) -> float | None:
    """Iterations per second from the '(...)' of a loss line; ``rate`` when it starts so."""
    if rate is not None:
        return _number(rate)
    found = _RATE.search(extra) if "iter/s" in extra else None
    return _number(found.group(1)) if found is not None else None


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


@lru_cache(maxsize=8)
def _line_marks(wrap_width: int) -> re.Pattern[str]:
    """The '\\n' that ends a line of exactly ``wrap_width`` characters or starts a line the
    per-line code may not skip for its first character (one of _ODD_FIRST)."""
    wrapped = f"(?<=\\n[^\\n]{{{wrap_width}}}\\n)|" if wrap_width > 0 else ""
    return re.compile(r"\n(?:" + wrapped + r"(?=[*LF\x1b\[]))")


class CaffeLogParser:
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

    def __init__(self, *, year: int | None = None, wrap_width: int | None = 100) -> None:
        self.year = year if year is not None else datetime.now().year
        self.wrap_width = wrap_width or -1
        self._last_month = 0
        self._iteration = 0
        self._train: TrainIteration | None = None
        self._test: TestResult | None = None
        self._held: str | None = None  # a line that may continue on the next one
        self._params: list[str] | None = None  # solver parameter lines being collected
        self._params_time: datetime | None = None
        self._in_session = False  # a Solving line was seen and no iteration since
        self._finished = False
        self._dates: dict[str, tuple[int, int, str]] = {}  # see _date
        # the pattern of the last run of display blocks and where its outputs are (_blocks)
        self._template: tuple[re.Pattern[str], tuple[tuple[str, int, int], ...]] | None = None
        self.lines = 0

    # ---------------------------------------------------------------- public API
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
        if len(text) < _MIN_BLOCK or not self._feed_block(text, out):
            lines = text.split("\n")
            if not lines[-1]:
                lines.pop()
            self.lines += len(lines)
            self._feed_lines(lines, out)
        return out

    def flush(self) -> list[CaffeEvent]:
        """Close an open test result (the pipe calls this when the input goes quiet).

        A test pass's output lines come together, so it is complete once the input pauses; an
        open training block is left alone: its ``lr`` line closes it.
        """
        out: list[CaffeEvent] = []
        if self._test is not None and self._test.outputs:  # else its outputs are to come
            out.append(self._test)
            self._test = None
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

    # ---------------------------------------------------------------- internals
    def _feed_lines(self, lines: list[str], out: list[CaffeEvent]) -> None:
        """The per-line code, the reference for :meth:`_feed_block`: each line gets a few
        cheap substring tests before any regular expression runs."""
        wrap = self.wrap_width
        hot = self._hot
        # a held (wrapped) line or a solver parameter dump in progress: every line to _slow
        ctx = self._held is not None or self._params is not None
        for line in lines:
            if wrap > 0 and len(line) > wrap:  # not a hard-wrapped log (see __init__)
                self.wrap_width = wrap = -1
            if ctx or len(line) == wrap:
                self._slow(line, out)
                ctx = self._held is not None or self._params is not None
            elif "Iteration" in line or "net output" in line:
                hot(line, out)  # never starts a parameter dump nor holds a line
            else:
                i = line.find("] ")
                if i >= 0:
                    c = line[i + 2:i + 3]
                    if c in _RARE_FIRST and (c in "[(" or line.startswith(_RARE_STARTS, i + 2)):
                        self._rare(line, out)
                    elif line[:1] in "F\x1b[":
                        self._maybe_fatal(line, out)
                    else:
                        continue
                elif line[:1] in "*LF\x1b[":
                    self._rare(line, out)
                else:
                    continue
                ctx = self._params is not None

    def _feed_block(self, text: str, out: list[CaffeEvent]) -> bool:
        """Parse the lines of ``text`` as :meth:`_feed_lines` would, faster.

        ``_SCAN`` finds the lines whose message matters: a run of training display blocks
        goes to :meth:`_blocks`, another training or test line in its usual form to
        :meth:`_iteration_line` or :meth:`_output_line`. The lines between those are skipped
        but for the ones :meth:`_gap` finds: these, the first line, a line that the scan
        finds in another form (a rare message, an unusual training line), and the lines
        after them while a wrapped line or a parameter dump is open go to
        :meth:`_feed_lines`. Returns False, having done nothing, for text with ANSI codes
        or of a few lines.
        """
        end = len(text)
        n = text.count("\n")
        if n < _MIN_BLOCK_LINES or "\x1b" in text:
            return False
        self.lines += n if text[-1] == "\n" else n + 1  # a last line without its line ending
        wrap = self.wrap_width
        scan = _SCAN.search
        find = text.find
        done = pos = self._lines_from(text, 0, end, out)  # text before done is parsed
        while pos < end:
            m = scan(text, pos, end)
            line_start = end if m is None else text.rfind("\n", 0, m.start()) + 1
            if pos < line_start:
                done = self._gap(text, max(pos, done), line_start, done, out)
            if m is None:
                break
            at = m.start()
            line_end = find("\n", at, end)
            if line_end < 0:
                line_end = end
            pos = line_end + 1
            if line_start < done:  # read by the per-line code (a wrapped line, a dump)
                pos = max(pos, done)
                continue
            kind = m.lastindex
            if kind == _LOSS_START and (run_end := self._blocks(text, line_start, out)):
                pos = run_end
                continue
            if kind is not None and line_end - line_start != wrap:
                if kind in _TRAIN_OR_TEST:
                    if (find("net output #", line_start, at) < 0  # the first one is here
                            and self._output_line(m.group(kind), m.end(), text, line_start,
                                                  line_end, out)):
                        continue
                elif single := _ITER_LINE.fullmatch(text, line_start, line_end):
                    self._iteration_line(single, text, line_start, out)
                    continue
            # a message that may be a rare one, a training line in an unusual form
            done = self._lines_from(text, line_start, end, out)
            pos = max(pos, done)
        return True

    def _gap(self, text: str, start: int, stop: int, done: int, out: list[CaffeEvent]) -> int:
        """The lines in ``text[start:stop]`` that the scan of :meth:`_feed_block` skipped:
        those that matter go to the per-line code; returns where parsed text ends."""
        if start >= stop:
            return done
        if text.find("Iteration", start, stop) >= 0 or text.find("net output", start, stop) >= 0:
            return self._lines_between(text, start, stop, out)
        wrap = self.wrap_width
        for m in _line_marks(wrap).finditer(text, start - 1, stop):
            at = m.start()  # a line ending
            if at - wrap >= done and text.rfind("\n", 0, at) == at - wrap - 1:
                done = self._lines_from(text, at - wrap, len(text), out)  # ends a wrapped line
            if at + 1 >= done and at + 1 < stop and text[at + 1] in _ODD_FIRST:
                done = self._lines_from(text, at + 1, len(text), out)
        if stop == len(text) and text[-1] != "\n":  # a last line without its line ending
            last = text.rfind("\n", 0, stop) + 1
            if last >= done and stop - last == wrap:
                done = self._lines_from(text, last, stop, out)
        return done

    def _blocks(self, text: str, start: int, out: list[CaffeEvent]) -> int:
        """The run of training display blocks at ``text[start:]``, if there is one: returns
        where the line after it starts, or 0."""
        blocks = []
        if self._template is not None:
            pattern, where = self._template
            blocks = _one_after_another(pattern, text, start)
        if not blocks:  # another run: learn its output names
            block = _BLOCK.match(text, start)
            if block is None:
                return 0
            self._template = pattern, where = _block_template(tuple(
                (name, bool(weight))
                for name, _, weight in _OUTPUTS.findall(text, *block.span(7))))
            blocks = _one_after_another(pattern, text, start)
            if not blocks:
                return 0
        for i, block in enumerate(blocks):  # an lr line is its block's (NVCaffe: one less)
            if not 0 <= int(block.group(3)) - int(block[block.re.groups - 1]) <= 1:
                del blocks[i:]  # Caffe before 2014 printed it before the next block's loss
                break
        if not blocks:
            return 0
        stop = blocks[-1].end()
        last = stop - 1 if text[stop - 1] == "\n" else stop  # end of the last line
        if last - text.rfind("\n", 0, last) - 1 == self.wrap_width:
            # the last lr line may be wrapped: it goes to the per-line code
            blocks.pop()
            if not blocks:
                return 0
            last = blocks[-1].end() - 1
        if text.count("\n", start, last) != len(blocks) * (len(where) + 2) - 1:
            return 0  # a '[^ ]+' ran past a line end
        if self._opened_by_lr(int(blocks[0].group(3))):
            self._train = None  # the block's own lr line ends it
        self._close_rows(out)  # what the first loss line closes
        number = _number
        day = None
        for block in blocks:
            groups = block.groups()
            mmdd, clock, it, extra, rate, raw = groups[:6]
            if mmdd != day:  # the first block or the next day: the time as _clock has it
                day = mmdd
                month, date = self._day(mmdd)
            time: datetime | None
            try:
                time = _fromiso(date + clock)
            except ValueError:  # a day that does not exist, a year not of 4 digits
                at = block.start()
                time = self._make_time(month, int(mmdd[2:]), text[at:at + 21])
            try:
                loss: float | None = float(raw)
            except ValueError:
                loss = number(raw)
            outputs: dict[str, float] = {}
            weights: dict[str, float] = {}
            for name, at, weight_at in where:
                raw = groups[at]
                try:
                    outputs[name] = float(raw)
                except ValueError:
                    value = number(raw)
                    if value is None:
                        continue  # the per-line code skips the line, loss weight included
                    outputs[name] = value
                if weight_at:
                    raw = groups[weight_at]
                    try:
                        weights[name] = float(raw)
                    except ValueError:
                        value = number(raw)
                        if value is not None:
                            weights[name] = value
            raw = groups[-1]
            try:
                lr: float | None = float(raw)
            except ValueError:
                lr = number(raw)
            out.append(TrainIteration(int(it), loss, outputs, weights, lr,
                                      _iter_per_s(extra, rate) if extra else None, time))
        self._iteration = int(it)
        self._in_session = False
        return last + 1

    def _iteration_line(self, m: re.Match[str], text: str, start: int,
                        out: list[CaffeEvent]) -> None:
        """A loss, lr or 'Testing net' line that ``_ITER_LINE`` matched at ``text[start:]``."""
        last = m.lastindex
        if last == _LINE_LR:  # 'Iteration N, lr = X'
            raw = m[_LINE_LR]
            try:
                lr: float | None = float(raw)
            except ValueError:
                lr = _number(raw)
            self._lr_line(int(m[3]), lr, out, lambda: self._clock(m[1], m[2], text, start))
        elif last == _LINE_LOSS:  # 'Iteration N (...), loss = X'
            raw = m[_LINE_LOSS]
            try:
                loss: float | None = float(raw)
            except ValueError:
                loss = _number(raw)
            iteration = self._iteration = int(m[3])
            self._in_session = False
            self._open_train(TrainIteration(iteration, loss, {}, {}, None,
                                            _iter_per_s(m[4], m[5]) if m[4] else None,
                                            self._clock(m[1], m[2], text, start)), out)
        else:  # 'Iteration N, Testing net (#k)'
            self._close_rows(out)
            iteration = self._iteration = int(m[3])
            self._in_session = False
            self._test = TestResult(iteration, int(m[_LINE_TEST] or 0),
                                    time=self._clock(m[1], m[2], text, start))

    def _output_line(self, kind: str, rest: int, text: str, start: int, end: int,
                     out: list[CaffeEvent]) -> bool:
        """A 'Train' or 'Test' (``kind``) output line at ``text[start:end]`` whose first
        'net output #' ends at ``rest``; False, having done nothing, if not in the usual
        form."""
        m = _OUTPUT_REST.fullmatch(text, rest, end)
        if m is None:
            return False
        name, raw, weight = m.groups()
        value: float | None
        try:
            value = float(raw)
        except ValueError:
            value = _number(raw)
            if value is None:
                return True  # the per-line code skips the line
        row: TrainIteration | TestResult | None
        if kind == "Train":
            row = self._train
            if row is None:
                row = self._train = TrainIteration(self._iteration,
                                                   time=self._time(text[start:end]))
        else:
            row = self._test
            if row is None:
                row = self._test = TestResult(self._iteration, time=self._time(text[start:end]))
        row.outputs[name] = value
        if weight is not None:
            try:
                row.weights[name] = float(weight)
            except ValueError:
                w = _number(weight)
                if w is not None:
                    row.weights[name] = w
        return True

    def _lines_between(self, text: str, start: int, stop: int, out: list[CaffeEvent]) -> int:
        """The per-line code for the lines in ``text[start:stop]``, and on while a wrapped
        line or a parameter dump is open; returns where the next line starts."""
        lines = text[start:stop].split("\n")
        if not lines[-1]:
            lines.pop()
        self._feed_lines(lines, out)
        if self._held is None and self._params is None:
            return stop
        return self._lines_from(text, stop, len(text), out)

    def _lines_from(self, text: str, start: int, end: int, out: list[CaffeEvent]) -> int:
        """The per-line code from the line at ``start`` on, until no wrapped line nor solver
        parameter dump is open (one line at least); returns where the next line starts."""
        while start < end:
            if start and self._params is not None and self._held is None:
                # the lines of a parameter dump up to the next glog line, at once
                glog = _NEXT_GLOG.search(text, start - 1, end)
                stop = glog.start() + 1 if glog is not None else end
                lines = text[start:stop].split("\n")
                if not lines[-1]:
                    lines.pop()
                if lines and self.wrap_width not in map(len, lines):
                    self._params.extend(lines)
                    start = stop
                    continue
            stop = text.find("\n", start, end)
            if stop < 0:
                stop = end
            self._feed_lines([text[start:stop]], out)
            start = stop + 1
            if self._held is None and self._params is None:
                break
        return start

    def _slow(self, line: str, out: list[CaffeEvent]) -> None:
        """Lines that need context: wrapped ones and the solver parameter dump."""
        if self._held is not None:
            held, self._held = self._held, None
            if line and _GLOG_START.match(line) is None:
                piece = len(line)
                line = held + line
                if piece == self.wrap_width:
                    self._held = line
                    return
            else:
                self._line(held, out)
        elif len(line) == self.wrap_width:
            self._held = line
            return
        self._line(line, out)

    def _line(self, line: str, out: list[CaffeEvent]) -> None:
        if self._params is not None:
            if _GLOG_START.match(line) is None:
                self._params.append(line)
                return
            self._end_params(out)
        if "Iteration" in line or "net output" in line:
            self._hot(line, out)
        elif _FATAL.match(line) is not None:
            self._maybe_fatal(line, out)
        else:
            self._rare(line, out)

    def _time(self, text: str) -> datetime | None:
        m = _STAMP.match(text)
        if m is not None:
            return self._clock(m[1], m[2], text, 0)
        return self._time_slow(text)

    def _clock(self, mmdd: str, clock: str, text: str, start: int) -> datetime | None:
        """The time of the glog stamp at ``text[start:]``: month and day ``mmdd``, ``clock``
        'HH:MM:SS.ffffff'."""
        month, date = self._day(mmdd)
        try:
            return _fromiso(date + clock)
        except ValueError:  # a day that does not exist, a year not of 4 digits
            return self._make_time(month, int(mmdd[2:]), text[start:start + 21])

    def _day(self, mmdd: str) -> tuple[int, str]:
        """The month of ``mmdd`` and its ISO date ('2016-08-14T') this year; the year
        advances when the month goes backwards."""
        date = self._dates.get(mmdd)
        if date is None or date[0] != self.year:
            date = self._date(mmdd)
        month = date[1]
        if month < self._last_month:
            self.year += 1
            date = self._date(mmdd)
        self._last_month = month
        return month, date[2]

    def _date(self, mmdd: str) -> tuple[int, int, str]:
        """(year, month, ISO date) of ``mmdd`` this year, kept for the next stamps."""
        date = self._dates[mmdd] = (self.year, int(mmdd[:2]),
                                    f"{self.year:04d}-{mmdd[:2]}-{mmdd[2:]}T")
        return date

    def _make_time(self, month: int, day: int, text: str) -> datetime | None:
        try:
            return datetime(self.year, month, day, int(text[6:8]), int(text[9:11]),
                            int(text[12:14]), int(text[15:21]))
        except ValueError:
            return None

    def _time_slow(self, text: str) -> datetime | None:
        if text[:1] in "IWEF" and text[5:6] == " " and text[14:15] == ".":
            try:  # fixed glog layout: no regular expression needed
                month = int(text[1:3])
                args = (int(text[3:5]), int(text[6:8]), int(text[9:11]), int(text[12:14]),
                        int(text[15:21]))
            except ValueError:
                return None
        else:
            m = _HEAD.match(text)
            if m is None:
                return None
            month = int(m.group(2))
            args = (int(m.group(3)), int(m.group(4)), int(m.group(5)), int(m.group(6)),
                    int(m.group(7).ljust(6, "0")))
        if month < self._last_month:
            self.year += 1
        self._last_month = month
        try:
            return datetime(self.year, month, *args)
        except ValueError:  # e.g. 0229 in a year guessed wrong
            return None

    def _lr_line(self, iteration: int, lr: float | None, out: list[CaffeEvent],
                 when: Callable[[], datetime | None]) -> None:
        """'Iteration N, lr = R' ends its training block (and an open test pass): the open
        one, whose number NVCaffe prints one higher. Caffe before 2014 printed it before the
        block's loss line: an lr line for a later iteration than the open block's, or than
        the last one the log mentioned, or the first of a session, opens its block instead."""
        row = self._train
        later = self._in_session or iteration > (row.iteration if row is not None
                                                 else self._iteration)
        if self._test is not None:
            out.append(self._test)
            self._test = None
        if later:  # the first line of its block (a new session's first, too)
            if row is not None:
                out.append(row)
            self._iteration = iteration
            self._in_session = False
            self._train = TrainIteration(iteration, lr=lr, time=when())
            return
        self._train = None
        if row is None:  # its block was already closed: a record of its own
            row = TrainIteration(iteration, time=when())
        row.lr = lr
        out.append(row)

    def _opened_by_lr(self, iteration: int) -> bool:
        """The open training block is ``iteration``'s and only its lr line was read."""
        held = self._train
        return (held is not None and held.iteration == iteration and held.loss is None
                and not held.outputs)

    def _open_train(self, row: TrainIteration, out: list[CaffeEvent]) -> None:
        """A loss line opens ``row``, ending the open block, unless that is the same
        iteration's, opened by its lr line (before 2014): ``row`` takes its lr."""
        held = self._train
        if held is not None and self._opened_by_lr(row.iteration):
            row.lr = held.lr
        elif held is not None:
            out.append(held)
        if self._test is not None:
            out.append(self._test)
            self._test = None
        self._train = row

    def _close_rows(self, out: list[CaffeEvent]) -> None:
        if self._train is not None:
            out.append(self._train)
            self._train = None
        if self._test is not None:
            out.append(self._test)
            self._test = None

    def _hot(self, text: str, out: list[CaffeEvent]) -> None:
        # A third of a log's lines come here: float() is tried inline before _number, and
        # the common outcomes come first.
        if "\x1b" in text:
            text = _ANSI.sub("", text)
        if "net output #" in text:
            # 'Train net output #0: NAME = VALUE (* WEIGHT = X loss)'; NAME may hold ' ', ':', '/'
            head, _, rest = text.partition("net output #")
            _, sep, rest = rest.partition(": ")
            name, sep2, rest = rest.partition(" = ")
            if not sep or not sep2 or not name:
                return
            parts = rest.split()
            if not parts:
                return
            try:
                value = float(parts[0])
            except ValueError:
                value = _number(parts[0])  # type: ignore[assignment]
                if value is None:
                    return
            row: TrainIteration | TestResult | None
            if head.endswith("Train "):
                row = self._train
                if row is None:
                    row = self._train = TrainIteration(self._iteration, time=self._time(text))
            elif head.endswith("Test "):
                row = self._test
                if row is None:
                    row = self._test = TestResult(self._iteration, time=self._time(text))
            else:
                return
            row.outputs[name] = value
            if len(parts) >= 5 and parts[1] == "(*" and parts[3] == "=":
                try:
                    row.weights[name] = float(parts[2])
                except ValueError:
                    weight = _number(parts[2])
                    if weight is not None:
                        row.weights[name] = weight
            return
        if ", lr = " in text:
            m = _LR.search(text)
            if m is None:
                return
            it, raw = m.groups()
            try:
                lr: float | None = float(raw)
            except ValueError:
                lr = _number(raw)
            self._lr_line(int(it), lr, out, lambda: self._time(text))
            return
        if "loss = " in text:
            m = _LOSS.search(text)
            if m is None:
                return
            it, extra, raw = m.groups()
            try:
                loss: float | None = float(raw)
            except ValueError:
                loss = _number(raw)
            iteration = self._iteration = int(it)
            self._in_session = False
            row = TrainIteration(iteration, loss, time=self._time(text))
            if extra and "iter/s" in extra:
                rate = _RATE.search(extra)
                if rate is not None:
                    row.iter_per_s = _number(rate.group(1))
            self._open_train(row, out)
            return
        if "Testing net" in text:
            m = _TESTING.search(text)
            if m is None:
                return
            self._close_rows(out)
            self._iteration = int(m.group(1))
            self._in_session = False
            self._test = TestResult(self._iteration, int(m.group(2) or 0), time=self._time(text))
            return
        if "Optimization" in text or "Snapshotting" in text:
            self._rare(text, out)

    def _maybe_fatal(self, text: str, out: list[CaffeEvent]) -> None:
        if "\x1b" in text:
            text = _ANSI.sub("", text)
        if _FATAL.match(text) is not None:
            self._fatal(text, out)
        elif "***" in text or _RARE_ANY.search(text):
            self._rare(text, out)

    def _fatal(self, text: str, out: list[CaffeEvent]) -> None:
        self._close_rows(out)
        m = _HEAD.match(text)
        reason = text[m.end():].strip() if m else text.strip()
        out.append(Failed(reason, self._time(text)))

    def _rare(self, text: str, out: list[CaffeEvent]) -> None:
        if "\x1b" in text:
            text = _ANSI.sub("", text)
        if "Test score" in text or "Test loss:" in text:
            m = _SCORE.search(text)
            value = _number(m.group(2)) if m else None
            if m is not None and value is not None:
                if self._test is None:
                    self._test = TestResult(self._iteration, time=self._time(text))
                self._test.outputs[f"score_{m.group(1)}" if m.group(1) else "loss"] = value
            return
        if "***" in text:
            body = text.strip().strip("*").strip()
            if body.startswith("Check failure stack trace") or not body:
                return  # the F line before it already said why
            if body.startswith("Aborted at") or body.startswith("SIG"):
                self._close_rows(out)
                if body.startswith("SIG"):
                    body = body.split(";")[0]
                out.append(Failed(body, None))
            return
        if "Snapshotting" in text:
            m = _SNAPSHOT.search(text)
            if m is not None:
                self._close_rows(out)
                path = m.group(2)
                it = _ITER_IN_PATH.search(path)
                out.append(Snapshot(path, "solverstate" if m.group(1) else "weights",
                                    int(it.group(1)) if it else self._iteration,
                                    self._time(text)))
            return
        if "Optimization" in text:
            if "Optimization Done" in text or "Optimization stopped early" in text:
                self._close_rows(out)
                if not self._finished:  # 'stopped early' and both 'Done' lines: one event
                    self._finished = True
                    out.append(Finished("stopped early" in text, self._time(text)))
            return
        if "Solving" in text:
            m = _SOLVING.search(text)
            if m is not None and not self._in_session:
                self._close_rows(out)
                self._in_session = True
                self._finished = False
                out.append(Solving(m.group(1).strip(), self._time(text)))
            return
        if "Resuming from" in text or "Restoring previous" in text:
            m = _RESUME.search(text)
            if m is not None:
                kind = "resume" if m.group(1) == "Resuming from" else "restore"
                out.append(Resumed(m.group(2), kind, self._time(text)))
            return
        if "Log file created" in text or "This is NVCaffe" in text:
            m = _YEAR_HEADER.search(text) or _YEAR_NVCAFFE.search(text)
            if m is not None:
                self.year = int(m.group(1))
                self._last_month = 0
            return
        if "Initializing solver" in text:
            self._params = []
            self._params_time = self._time(text)

    def _end_params(self, out: list[CaffeEvent]) -> None:
        lines, self._params = self._params, None
        if not lines:
            return
        try:
            params = parse_prototxt("\n".join(lines), source="solver parameters in the log")
        except PrototxtError:
            return  # a damaged dump (wrapped, truncated) is not worth a wrong value
        if params:
            out.append(SolverParameters(params, self._params_time))


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
