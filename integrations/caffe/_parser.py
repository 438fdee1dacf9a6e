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
appended to one file, and the pre-2014 ``Test score #k:`` form.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from datetime import datetime

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
_TESTING = re.compile(r"Iteration (\d+), Testing net \(#(\d+)\)")
_SCORE = re.compile(r"Test score #(\d+): (\S+)")
_RATE = re.compile(r"([^\s,(]+) iter/s")
# Messages (right after 'file.cpp:123] ') worth a closer look; tested with str.startswith.
_RARE_STARTS = ("Solving", "Resuming from", "Restoring previous", "Snapshotting", "Optimization",
                "Initializing solver", "This is NVCaffe", "Test score")
_RARE_ANY = re.compile("|".join(_RARE_STARTS) + "|Log file created")
_SOLVING = re.compile(r"\] +(?:\[[\d.]+\] +)?Solving ?(.*?)\s*(?:Learning Rate Policy.*)?$")
_SNAPSHOT = re.compile(r"Snapshotting (solver state )?to (?:binary proto|HDF5|text) file (.+?)\s*$")
_RESUME = re.compile(r"(Resuming from|Restoring previous solver status from) (.+?)\s*$")
_YEAR_HEADER = re.compile(r"Log file created at: (\d{4})/")
_YEAR_NVCAFFE = re.compile(r"started at \w+ \w+ +\d+ [\d:]+ (\d{4})")
_ITER_IN_PATH = re.compile(r"_iter_(\d+)\.")
_FATAL = re.compile(_PREFIX + r"F\d{4} ")
_fromiso = datetime.fromisoformat
# The usual glog stamp, ASCII digits in fixed places: parsed by datetime.fromisoformat (C)
_STAMP = re.compile(r"[IWEF](\d\d)(\d\d) (\d\d:\d\d:\d\d\.\d{6})", re.ASCII)
# First letters of the rare messages and of rank prefixes: most lines fail this one test
_RARE_FIRST = "".join(sorted({s[0] for s in _RARE_STARTS})) + "[("


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
            joined with it (console copies hard-wrapped); 0 or None turns this off.
    """

    def __init__(self, *, year: int | None = None, wrap_width: int | None = 100) -> None:
        self.year = year if year is not None else datetime.now().year
        self.wrap_width = wrap_width or -1
        self._last_month = 0
        self._iteration = 0
        self._train: TrainIteration | None = None
        self._test: TestResult | None = None
        self._held: bytes | None = None  # a line that may continue on the next one
        self._held_piece = 0
        self._params: list[str] | None = None  # solver parameter lines being collected
        self._params_time: datetime | None = None
        self._in_session = False  # a Solving line was seen and no iteration since
        self._finished = False
        self.lines = 0

    # ---------------------------------------------------------------- public API
    def feed(self, line: bytes | str) -> list[CaffeEvent]:
        """Parse one line (with or without its line ending); returns the events it completes."""
        if isinstance(line, bytes):
            line = line.decode("utf-8", "replace")
        return self.feed_text(line.rstrip("\n"))

    def feed_lines(self, lines: Iterable[bytes | str]) -> list[CaffeEvent]:
        """Parse many lines; returns the events they complete, in log order."""
        out: list[CaffeEvent] = []
        for line in lines:
            out.extend(self.feed(line))
        return out

    def feed_bytes(self, block: bytes) -> list[CaffeEvent]:
        """Parse a block of whole lines (``\\n``-terminated; a last unterminated line counts).

        This is the fast path the ``em caffe`` pipe uses: the block is decoded at once
        (undecodable bytes become U+FFFD) and each line gets a few cheap substring tests
        before any regular expression runs.
        """
        return self.feed_text(block.decode("utf-8", "replace"))

    def feed_text(self, text: str) -> list[CaffeEvent]:
        """Like :meth:`feed_bytes` for text already decoded."""
        out: list[CaffeEvent] = []
        if "\r" in text:
            text = text.replace("\r\n", "\n")
        lines = text.split("\n")
        if lines and not lines[-1]:
            lines.pop()
        self.lines += len(lines)
        wrap = self.wrap_width
        hot = self._hot
        # a held (wrapped) line or a solver parameter dump in progress: every line to _slow
        ctx = self._held is not None or self._params is not None
        for line in lines:
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
        return out

    def flush(self) -> list[CaffeEvent]:
        """Close an open test result (the pipe calls this when the input goes quiet).

        A test pass's output lines come together, so it is complete once the input pauses; an
        open training block is left alone: its ``lr`` line closes it.
        """
        out: list[CaffeEvent] = []
        if self._test is not None:
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
            month = int(m[1])
            if month < self._last_month:
                self.year += 1
            self._last_month = month
            try:
                return _fromiso(f"{self.year:04d}-{m[1]}-{m[2]}T{m[3]}")
            except ValueError:  # a day that does not exist, a year not of 4 digits
                return self._make_time(month, int(m[2]), text)
        return self._time_slow(text)

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
            row = self._train
            self._train = None
            if self._test is not None:
                out.append(self._test)
                self._test = None
            if row is None:  # its block was already closed: a record of its own
                row = TrainIteration(int(it), time=self._time(text))
            row.lr = lr
            out.append(row)
            return
        if "loss = " in text:
            m = _LOSS.search(text)
            if m is None:
                return
            if self._train is not None:
                out.append(self._train)
            if self._test is not None:
                out.append(self._test)
                self._test = None
            it, extra, raw = m.groups()
            try:
                loss: float | None = float(raw)
            except ValueError:
                loss = _number(raw)
            iteration = self._iteration = int(it)
            self._in_session = False
            row = self._train = TrainIteration(iteration, loss, time=self._time(text))
            if extra and "iter/s" in extra:
                rate = _RATE.search(extra)
                if rate is not None:
                    row.iter_per_s = _number(rate.group(1))
            return
        if "Testing net" in text:
            m = _TESTING.search(text)
            if m is None:
                return
            self._close_rows(out)
            self._iteration = int(m.group(1))
            self._in_session = False
            self._test = TestResult(self._iteration, int(m.group(2)), time=self._time(text))
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
        if "Test score" in text:
            m = _SCORE.search(text)
            value = _number(m.group(2)) if m else None
            if value is not None:
                if self._test is None:
                    self._test = TestResult(self._iteration, time=self._time(text))
                self._test.outputs[f"score_{m.group(1)}"] = value
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
