"""The block reading of Caffe logs: :meth:`BlockReader._feed_block` parses many lines at
once, as the per-line code of :mod:`integrations.caffe.lines` would, by searching the text
for the lines that matter with regular expressions instead of looking at every line.
"""

from __future__ import annotations

import re
from datetime import datetime
from functools import lru_cache

from ..logpipe.values import parse_number
from .events import CaffeEvent, TestResult, TrainIteration
from .lines import GLOG_START, MESSAGE_STARTS, RATE, LineReader, fromiso

__all__ = ["MIN_BLOCK", "BlockReader"]

# The block path (BlockReader._feed_block) finds what matters with regular expressions
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
# 'Iteration' line (3, 4), or (no group) a message that may matter. Every line that the
# per-line code does not skip is found so, or mentions 'Iteration' or 'net output', or starts
# with one of _ODD_FIRST, or is wrap_width wide (see BlockReader._skipped_lines).
_MESSAGE_ALTERNATIVES = "|".join(  # grouped by first letter: fewer alternatives to try
    re.escape(first) + "(?:" + "|".join(re.escape(s[1:]) for s in MESSAGE_STARTS if s[0] == first)
    + ")" for first in sorted({s[0] for s in MESSAGE_STARTS}))
_SCAN = re.compile(r"\] (?:    (Train|Test) net output #|I(?:(teration \d+(?:, loss| \())"
                   r"|(teration ))| (?: *\[[0-9]+\.[0-9]+\] +(Iteration )"
                   r"| *[\[(][0-9]+\.[0-9]+[\])] +(Train|Test) net output #)|"
                   + _MESSAGE_ALTERNATIVES + r"|[\[(\n]|\Z)")
_TRAIN_OR_TEST, _LOSS_START = (1, 5), 2  # groups of _SCAN
_ODD_FIRST = "*LF\x1b["  # first characters of lines the per-line code may not skip
_NEXT_GLOG = re.compile(r"\n(?=" + GLOG_START.pattern + ")")  # ends a solver parameter dump
# Text shorter than this (a line fed alone), or of fewer lines, goes to the per-line code:
# searching it would cost more than it saves.
MIN_BLOCK, _MIN_BLOCK_LINES = 500, 8


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
        return parse_number(rate)
    found = RATE.search(extra) if "iter/s" in extra else None
    return parse_number(found.group(1)) if found is not None else None


@lru_cache(maxsize=8)
def _line_marks(wrap_width: int) -> re.Pattern[str]:
    """The '\\n' that ends a line of exactly ``wrap_width`` characters or starts a line the
    per-line code may not skip for its first character (one of _ODD_FIRST)."""
    wrapped = f"(?<=\\n[^\\n]{{{wrap_width}}}\\n)|" if wrap_width > 0 else ""
    return re.compile(r"\n(?:" + wrapped + r"(?=[*LF\x1b\[]))")



class BlockReader(LineReader):
    """:class:`LineReader` with the block path (see :meth:`_feed_block`)."""

    def __init__(self, *, year: int | None = None, wrap_width: int | None = 100) -> None:
        super().__init__(year=year, wrap_width=wrap_width)
        # the pattern of the last run of display blocks and where its outputs are
        self._template: tuple[re.Pattern[str], tuple[tuple[str, int, int], ...]] | None = None

    def _feed_block(self, text: str, out: list[CaffeEvent]) -> bool:  # noqa: C901 - the scan loop of the fast path: its branches share the scan's cursors
        """Parse the lines of ``text`` as :meth:`_feed_lines` would, faster.

        ``_SCAN`` finds the lines whose message matters: a run of training display blocks
        goes to :meth:`_display_blocks`, another training or test line in its usual form to
        :meth:`_iteration_line` or :meth:`_output_line`. The lines between those are skipped
        but for the ones :meth:`_skipped_lines` finds: these, the first line, a line that the scan
        finds in another form (a message, an unusual training line), and the lines
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
                done = self._skipped_lines(text, max(pos, done), line_start, done, out)
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
            if kind == _LOSS_START and (run_end := self._display_blocks(text, line_start, out)):
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
            # a message that may matter, a training line in an unusual form
            done = self._lines_from(text, line_start, end, out)
            pos = max(pos, done)
        return True

    def _skipped_lines(self, text: str, start: int, stop: int, done: int,
                       out: list[CaffeEvent]) -> int:
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

    def _display_blocks(self, text: str, start: int, out: list[CaffeEvent]) -> int:  # noqa: C901 - the innermost loop of the fast path, inlined (a call per value costs more than the value)
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
        number = parse_number
        day = None
        for block in blocks:
            groups = block.groups()
            mmdd, clock, it, extra, rate, raw = groups[:6]
            if mmdd != day:  # the first block or the next day: the time as _clock has it
                day = mmdd
                month, date = self._day(mmdd)
            time: datetime | None
            try:
                time = fromiso(date + clock)
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
                lr = parse_number(raw)
            self._lr_line(int(m[3]), lr, out, lambda: self._clock(m[1], m[2], text, start))
        elif last == _LINE_LOSS:  # 'Iteration N (...), loss = X'
            raw = m[_LINE_LOSS]
            try:
                loss: float | None = float(raw)
            except ValueError:
                loss = parse_number(raw)
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
            value = parse_number(raw)
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
                w = parse_number(weight)
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

