"""MXNet and GluonCV training logs to events: a parser that needs neither MXNet nor em.

:class:`MXNetLogParser` reads what :class:`~integrations.mxnet_log.lines.LineReader` reads,
the usual lines many at a time (:meth:`MXNetLogParser.feed_block`, the pipe's path): one
regular expression over a block for the lines with ``Epoch`` (``forms.EPOCH_LINES``), runs
of batch reports printed one way matched whole (``layouts.py``), the rest line by line.
"""

from __future__ import annotations

import re

from .events import BatchLog, BatchRows, EpochLog, MXNetEvent
from .forms import EPOCH_LINES, RareLines, batch_metrics, tail_layout_of
from .layouts import Columns, Layout, layout_of, runs
from .lines import LineReader

__all__ = ["EPOCH_LINES", "MXNetLogParser"]


class MXNetLogParser(LineReader):
    """A line parser for MXNet / GluonCV training logs; returns events per line.

    Besides what each line says, it tells where the log goes back (:class:`Rewind`: an
    earlier epoch or batch than the last report, as when a script restarts into the same
    log) and the line numbers of training starts.

    Example:
        >>> MXNetLogParser().feed("INFO:root:Epoch[0] Batch [50]\\tSpeed: 707.55 samples/sec"
        ...                        "\\tTrain-accuracy=0.198750")
        [BatchLog(epoch=0, batch=50, metrics={'accuracy': 0.19875}, speed=707.55, time_cost=None)]
    """

    def __init__(self) -> None:
        super().__init__()
        # the batch tails of the last lines, taken apart at once (see tail_layout)
        self._tail_layout: tuple[re.Pattern[str], tuple[str, ...]] | None = None
        # the block path (see layouts.py): the layout of the last batch reports, the last
        # batch line the per-line paths read (its start, end, epoch and batch: a second line
        # of one batch makes a two-line layout), and how many batch lines to read before
        # trying to make a layout again after one could not be made
        self._layout: Layout | None = None
        self._last: tuple[int, int, str, str] | None = None
        self._patience = 0

    def feed_bytes(self, block: bytes) -> list[MXNetEvent]:
        """Parse a block of whole lines (the pipe's fast path)."""
        out: list[MXNetEvent] = []
        for event in self.feed_block(block):
            if type(event) is BatchRows:
                out += event.batch_logs()
            else:
                out.append(event)  # type: ignore[arg-type]
        return out

    def feed_block(self, block: bytes) -> list[MXNetEvent | BatchRows]:
        """:meth:`feed_bytes`, but a run of batch reports printed in one layout comes as one
        :class:`BatchRows` (the recorder's path: it logs the rows at once)."""
        text = block.decode("utf-8", "replace")
        if "\r" in text:
            text = text.replace("\r\n", "\n")
        if not text:
            return []
        self._first = self.lines + 1
        self.lines += text.count("\n") + (text[-1] != "\n")
        # a '\n' before every line, none after the last: where EPOCH_LINES's matches start
        text = "\n" + (text[:-1] if text[-1] == "\n" else text)
        self._text, self._counted, self._last = text, (0, 0), None
        out: list[MXNetEvent | BatchRows] = []
        rare = RareLines(text)  # the lines EPOCH_LINES must not see
        pos, end = 0, len(text)  # pos: the '\n' before the next line
        while pos < end:
            layout = self._layout
            if layout is None or self._traceback:
                pos = self._span(text, pos, end, out, rare, until_layout=True)
            else:
                pos = self._scan(layout, text, pos, out, rare)
        self._text = None
        return out

    def _span(self, text: str, pos: int, end: int, out: list[MXNetEvent | BatchRows],
              rare: RareLines, until_layout: bool = False) -> int:
        """The lines of ``text[pos:end]`` the per-line ways: those with one of RARE_WORDS
        (and a traceback's) by :meth:`_line`, the others by :meth:`_matches`. Returns where it
        stopped: ``end``, or where the block path can go on (a layout learned, or with
        ``until_layout`` a traceback ended while one is current)."""
        while pos < end:
            stop = pos if self._traceback else rare.next(pos, end)
            if pos == stop:  # a line for _line alone
                nl = text.find("\n", pos + 1, end)
                if nl < 0:
                    nl = end
                self._pos = pos
                self._line(text[pos + 1:nl], out)  # type: ignore[arg-type]
                pos = nl
                if until_layout and self._layout is not None and not self._traceback:
                    return pos
                continue
            at = self._matches(text, pos, stop, out)  # type: ignore[arg-type]
            if at != stop:
                return at
            pos = at
        return pos

    def _scan(self, layout: Layout, text: str, pos: int, out: list[MXNetEvent | BatchRows],
              rare: RareLines) -> int:
        """The lines from ``pos`` on: runs of ``layout`` reports (:func:`~.layouts.runs`,
        recorded by :meth:`_rows`), the lines between them by :meth:`_span`. Returns where
        it stopped: the end, or where the layout changed or the per-line path must go on."""
        for start, end, cols in runs(layout, text, pos):
            if start != pos:  # the lines before the run, the per-line ways
                at = self._span(text, pos, start, out, rare)
                if at != start or self._layout is not layout or self._traceback:
                    return at
                pos = start
            done = self._rows(layout, cols, text, pos, end, out)
            if done != end:  # it stopped early: the per-line path decides from there
                return self._stopped(layout, text, pos, done, end, out)
            pos = end
        return self._span(text, pos, len(text), out, rare)

    def _stopped(self, layout: Layout, text: str, pos: int, done: int, end: int,
                 out: list[MXNetEvent | BatchRows]) -> int:
        """Where to go on after the run ``text[pos:end]`` was recorded up to ``done`` only:
        a run whose first report goes back is read the per-line way (its first report)."""
        if done == pos:
            for _ in layout.lines:
                done = text.find("\n", done + 1)
            if done < 0 or done > end:
                done = end
            self._matches(text, pos, done, out, learn=False)  # type: ignore[arg-type]
        return done

    def _rows(self, layout: Layout, cols: Columns | None, text: str, pos: int,
              end: int, out: list[MXNetEvent | BatchRows]) -> int:
        """The reports of a run of ``layout`` lines (``text[pos:end]``, taken apart in
        ``cols``), as :class:`BatchRows` of one epoch; returns where it stopped (``end``,
        or the ``'\n'`` of a report the per-line path must read: one going back)."""
        if cols is None:  # a value float() does not read: the whole run the per-line way
            self._matches(text, pos, end, out, learn=False)  # type: ignore[arg-type]
            return end
        epochs, batches, reports = cols
        n = len(batches)
        # reports of one epoch, batches increasing: else the per-line path decides
        cut = n
        first = epochs[0]
        if epochs.count(first) != n:
            cut = list(map(first.__eq__, epochs)).index(False)
        if n > 1:
            rising = list(map(int.__lt__, batches, batches[1:]))
            if False in rising:
                cut = min(cut, rising.index(False) + 1)
        epoch, batch = int(first), batches[0]
        if (epoch, batch) <= (self._epoch, self._batch):
            return pos
        self._epoch, self._batch = epoch, batches[cut - 1]
        self._names = {name: 0.0 for shape in layout.lines for name in shape.names}
        if cut < n:
            batches = batches[:cut]
            reports = [(names, [c[:cut] for c in values], None if speeds is None
                        else speeds[:cut]) for names, values, speeds in reports]
            for _ in range(cut * len(layout.lines)):
                pos = text.find("\n", pos + 1)
        else:
            pos = end
        out.append(BatchRows(epoch, batches, reports))
        return pos

    def _matches(self, text: str, pos: int, stop: int, out: list[MXNetEvent],  # noqa: C901 - the per-line loop, inlined: a call per line costs more than the line
                 learn: bool = True) -> int:
        """The lines of ``text[pos:stop]`` with 'Epoch' (see EPOCH_LINES), in the usual forms
        here, others by :meth:`_line`. Returns where it stopped: ``stop``, or (``learn``)
        the end of a batch line whose layout the block path can read from there on."""
        new_tuple = tuple.__new__  # BatchLog(...) without its Python-level __new__
        for m in EPOCH_LINES.finditer(text, pos, stop):
            (epoch, batch, speed, loss, tokens, n1, v1, n2, v2, btc, bn, bv, val, name, value,
             tc, epoch_speed, line) = m.groups()
            if line is None:
                try:
                    if batch is None:  # an epoch line
                        e = int(epoch)
                        if e != self._epoch:
                            self._order(e, None, {}, m.start(), out)
                        if name is not None:
                            out.append(EpochLog(e, {}, {name: float(value)}) if val
                                       else EpochLog(e, {name: float(value)}))
                        elif tc is not None:
                            out.append(EpochLog(e, time_cost=float(tc)))
                        elif epoch_speed is not None:
                            out.append(EpochLog(e, speed=float(epoch_speed)))
                        continue
                    time_cost = None
                    if n1 is not None:
                        metrics = ({n1: float(v1)} if n2 is None
                                   else {n1: float(v1), n2: float(v2)})
                    elif btc is not None:  # an epoch's last batch: never a layout's line
                        metrics = {bn: float(bv)}
                        time_cost = float(btc)
                    elif loss is not None:
                        metrics = {"loss": float(loss)}
                    elif tokens is None:
                        metrics = {}
                    elif " " in tokens or "[" in tokens or ":" in tokens:
                        metrics = None  # maybe a 'Rank[', 'ime cost' or 'peed:' (_epoch_line's)
                    else:
                        metrics = self._tail(tokens)
                    if metrics is not None:
                        # the speed first: a speed float() does not read sends the line to
                        # _line before the report changes what was reported last
                        rate = None if speed is None else float(speed)
                        e, k = int(epoch), int(batch)
                        if e == self._epoch and k > self._batch:  # nearly always
                            self._batch, self._names = k, metrics
                        else:
                            self._order(e, k, metrics, m.start(), out)
                        out.append(new_tuple(BatchLog, (e, k, metrics, rate, time_cost)))
                        if learn and time_cost is None and self._learn(text, m.start(), m.end(),
                                                                       epoch, batch):
                            return m.end()
                        continue
                except ValueError:  # a value float() does not read: _line decides
                    pass
            self._pos = m.start()
            self._line(m.group()[1:], out)
        return stop

    def _learn(self, text: str, start: int, end: int, epoch: str, batch: str) -> bool:
        """Whether the batch line at ``text[start:end]`` (with the one before it, when that
        reports the same batch) gives a new layout for the block path, made current."""
        last, self._last = self._last, (start, end, epoch, batch)
        if self._patience > 0:
            self._patience -= 1
            return False
        lines = [text[start + 1:end]]
        if last is not None and last[1] == start and last[2:] == (epoch, batch):
            lines.insert(0, text[last[0] + 1:start])
        layout = layout_of(lines)
        if layout is None:
            self._patience = 32  # a log whose reports have none: do not pay for it per line
            return False
        if layout is self._layout:
            return False
        self._layout = layout
        return True

    def _tail(self, tokens: str) -> dict[str, float]:
        """:func:`batch_metrics` of ``tokens``, by the last lines' layout when it fits."""
        layout = self._tail_layout
        if layout is not None:
            m = layout[0].fullmatch(tokens)
            if m is not None:
                try:
                    return dict(zip(layout[1], map(float, m.groups())))
                except ValueError:  # a value float() does not read: the general code
                    pass
        metrics = batch_metrics(tokens)
        self._tail_layout = tail_layout_of(tokens)
        return metrics
