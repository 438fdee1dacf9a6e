"""The per-line reading of Caffe logs: the reference :class:`~integrations.caffe.parser.
CaffeLogParser` is held to. Each line gets a few cheap substring tests before any regular
expression runs; :mod:`integrations.caffe.blocks` reads whole blocks of text faster and hands
this code every line it does not read in the same way.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime

from ..logpipe.values import parse_number
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
from .prototxt import PrototxtError, parse_prototxt

__all__ = ["ANSI", "GLOG_START", "MESSAGE_STARTS", "RATE", "LineReader", "fromiso"]


_PREFIX = r"(?:\x1b\[[\d;]*m)?(?:\[\d+,\d+\]<\w+>:)?"
_HEAD = re.compile(_PREFIX + r"([IWEF])(\d\d)(\d\d) (\d\d):(\d\d):(\d\d)\.(\d{1,6})\d*"
                   r" +\d+ [^\]]*\] ")
GLOG_START = re.compile(_PREFIX + r"[IWEF]\d{4} \d\d:\d\d:\d\d\.")
ANSI = re.compile(r"\x1b\[[\d;]*[A-Za-z]")
_LOSS = re.compile(r"Iteration (\d+)(?: \(([^)]*)\))?, loss = ([^\s,]+)")
_LR = re.compile(r"Iteration (\d+), lr = ([^\s,]+)")
_TESTING = re.compile(r"Iteration (\d+), Testing net(?: \(#(\d+)\))?")  # no (#k) before 2014
_SCORE = re.compile(r"Test (?:score #(\d+)|loss): (\S+)")  # before 2014
RATE = re.compile(r"([^\s,(]+) iter/s")
# Messages (right after 'file.cpp:123] ') worth a closer look; tested with str.startswith.
MESSAGE_STARTS = ("Solving", "Resuming from", "Restoring previous", "Snapshotting", "Optimization",
                "Initializing solver", "This is NVCaffe", "Test score", "Test loss:")
_MESSAGE_ANY = re.compile("|".join(MESSAGE_STARTS) + "|Log file created")
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
fromiso = datetime.fromisoformat
# The usual glog stamp, ASCII digits in fixed places: parsed by datetime.fromisoformat (C)
_STAMP = re.compile(r"[IWEF](\d{4}) (\d\d:\d\d:\d\d\.\d{6})", re.ASCII)
# First letters of the messages and of rank prefixes: most lines fail this one test
_MESSAGE_FIRST = "".join(sorted({s[0] for s in MESSAGE_STARTS})) + "[("


class LineReader:
    """The parser's state and its per-line code (see :class:`~integrations.caffe.parser.
    CaffeLogParser` for the arguments)."""

    def __init__(self, *, year: int | None = None, wrap_width: int | None = 100) -> None:
        self.year = year if year is not None else datetime.now().year
        self.wrap_width = wrap_width or -1
        self._last_month = 0
        self._iteration = 0
        self._train: TrainIteration | None = None
        self._test: TestResult | None = None
        # the output names of the last complete test pass of each test net: a pass with the
        # same names is complete, whatever comes (or does not come) after it
        self._test_names: dict[int, list[str]] = {}
        self._held: str | None = None  # a line that may continue on the next one
        self._params: list[str] | None = None  # solver parameter lines being collected
        self._params_time: datetime | None = None
        self._in_session = False  # a Solving line was seen and no iteration since
        self._finished = False
        self._dates: dict[str, tuple[int, int, str]] = {}  # see _date
        self.lines = 0

    def _feed_lines(self, lines: list[str], out: list[CaffeEvent]) -> None:
        """The per-line code, the reference for :meth:`_feed_block`: each line gets a few
        cheap substring tests before any regular expression runs."""
        wrap = self.wrap_width
        training_line = self._training_line
        # a held (wrapped) line or a solver parameter dump in progress: every line to _context_line
        ctx = self._held is not None or self._params is not None
        for line in lines:
            if wrap > 0 and len(line) > wrap:  # not a hard-wrapped log (see __init__)
                self.wrap_width = wrap = -1
            if ctx or len(line) == wrap:
                self._context_line(line, out)
                ctx = self._held is not None or self._params is not None
            elif "Iteration" in line or "net output" in line:
                training_line(line, out)  # never starts a parameter dump nor holds a line
            else:
                i = line.find("] ")
                if i >= 0:
                    c = line[i + 2:i + 3]
                    if c in _MESSAGE_FIRST and (c in "[("
                                                or line.startswith(MESSAGE_STARTS, i + 2)):
                        self._message(line, out)
                    elif line[:1] in "F\x1b[":
                        self._maybe_fatal(line, out)
                    else:
                        continue
                elif line[:1] in "*LF\x1b[":
                    self._message(line, out)
                else:
                    continue
                ctx = self._params is not None


    def _context_line(self, line: str, out: list[CaffeEvent]) -> None:
        """Lines that need context: wrapped ones and the solver parameter dump."""
        if self._held is not None:
            held, self._held = self._held, None
            if line and GLOG_START.match(line) is None:
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
            if GLOG_START.match(line) is None:
                self._params.append(line)
                return
            self._end_params(out)
        if "Iteration" in line or "net output" in line:
            self._training_line(line, out)
        elif _FATAL.match(line) is not None:
            self._maybe_fatal(line, out)
        else:
            self._message(line, out)

    def _time(self, text: str) -> datetime | None:
        m = _STAMP.match(text)
        if m is not None:
            return self._clock(m[1], m[2], text, 0)
        return self._time_other_layout(text)

    def _clock(self, mmdd: str, clock: str, text: str, start: int) -> datetime | None:
        """The time of the glog stamp at ``text[start:]``: month and day ``mmdd``, ``clock``
        'HH:MM:SS.ffffff'."""
        month, date = self._day(mmdd)
        try:
            return fromiso(date + clock)
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

    def _time_other_layout(self, text: str) -> datetime | None:
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
            self._end_test(out)
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
            self._end_test(out)
        self._train = row

    def _end_test(self, out: list[CaffeEvent]) -> None:
        """The open test pass is complete: out it goes, and its names are the net's."""
        test = self._test
        assert test is not None
        self._test = None
        if test.outputs:
            self._test_names[test.net] = list(test.outputs)
        out.append(test)

    def _close_rows(self, out: list[CaffeEvent]) -> None:
        if self._train is not None:
            out.append(self._train)
            self._train = None
        if self._test is not None:
            self._end_test(out)

    def _training_line(self, text: str, out: list[CaffeEvent]) -> None:  # noqa: C901 - a third of a log's lines: float() inlined, the common forms first
        # A third of a log's lines come here: float() is tried inline before parse_number, and
        # the common outcomes come first.
        if "\x1b" in text:
            text = ANSI.sub("", text)
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
                value = parse_number(parts[0])  # type: ignore[assignment]
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
                    weight = parse_number(parts[2])
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
                lr = parse_number(raw)
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
                loss = parse_number(raw)
            iteration = self._iteration = int(it)
            self._in_session = False
            row = TrainIteration(iteration, loss, time=self._time(text))
            if extra and "iter/s" in extra:
                rate = RATE.search(extra)
                if rate is not None:
                    row.iter_per_s = parse_number(rate.group(1))
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
            self._message(text, out)

    def _maybe_fatal(self, text: str, out: list[CaffeEvent]) -> None:
        if "\x1b" in text:
            text = ANSI.sub("", text)
        if _FATAL.match(text) is not None:
            self._fatal(text, out)
        elif "***" in text or _MESSAGE_ANY.search(text):
            self._message(text, out)

    def _fatal(self, text: str, out: list[CaffeEvent]) -> None:
        self._close_rows(out)
        m = _HEAD.match(text)
        reason = text[m.end():].strip() if m else text.strip()
        out.append(Failed(reason, self._time(text)))

    def _message(self, text: str, out: list[CaffeEvent]) -> None:  # noqa: C901 - one dispatch over the messages that matter, each branch a few lines
        if "\x1b" in text:
            text = ANSI.sub("", text)
        if "Test score" in text or "Test loss:" in text:
            m = _SCORE.search(text)
            value = parse_number(m.group(2)) if m else None
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


