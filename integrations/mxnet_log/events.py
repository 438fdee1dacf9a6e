"""What :class:`~integrations.mxnet_log.parser.MXNetLogParser` returns: one class per kind
of line."""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import chain, repeat
from typing import Any, NamedTuple

__all__ = ["BatchLog", "BatchRows", "Checkpoint", "Crash", "EpochLog", "GluonEpochLog",
           "MXNetEvent", "Rewind", "Start", "TrainingStart"]


class BatchLog(NamedTuple):
    """A batch line: ``Epoch[N] Batch [k]`` (or GluonCV's ``[Epoch N][Batch k]``) with
    Speedometer speed and metrics.

    ``metrics`` has the names as printed without a ``Train-`` prefix (``Loss[x]`` becomes
    ``loss``); ``time_cost`` is set on the summary form ``Batch[1251]\\tTime cost=...``.
    A named tuple, not a dataclass like the other events: nearly every event of a log is
    one, and the parser makes them with ``tuple.__new__``, at C speed.
    """

    epoch: int
    batch: int
    metrics: dict[str, float]
    speed: float | None = None
    time_cost: float | None = None


class BatchRows(NamedTuple):
    """Consecutive batch reports of one epoch printed in one layout, as
    :meth:`~integrations.mxnet_log.parser.MXNetLogParser.feed_block` returns them: the
    :class:`BatchLog` events of :meth:`batch_logs`, column by column.

    Row ``i`` is batch ``batches[i]`` (increasing); ``reports`` has one entry per line of a
    row (one, or two when a script prints a batch's loss and its metrics apart): its metric
    names, one column of values per name, and its speed column (None if it prints none).
    """

    epoch: int
    batches: list[int]
    reports: list[tuple[tuple[str, ...], list[list[float]], list[float] | None]]

    def batch_logs(self) -> list[BatchLog]:
        """The same reports as :class:`BatchLog` events, in log order."""
        # per line of a row, its events at once (rows by zip, the tuples made in C by
        # tuple.__new__ as the parser makes BatchLog), then interleaved row by row
        batches, epoch = self.batches, self.epoch
        lines = []
        for names, cols, speeds in self.reports:
            metrics = ([dict(zip(names, row)) for row in zip(*cols)] if names
                       else [{} for _ in batches])  # dicts of their own: recorders add to them
            lines.append(list(map(tuple.__new__, repeat(BatchLog), zip(
                repeat(epoch), batches, metrics, repeat(None) if speeds is None else speeds,
                repeat(None)))))
        if len(lines) == 1:
            return lines[0]
        return list(chain.from_iterable(zip(*lines)))


@dataclass(slots=True)
class EpochLog:
    """An ``Epoch[N]`` line without a batch: ``Train-x=``, ``Validation-x=``, ``Time cost=``."""

    epoch: int
    train: dict[str, float] = field(default_factory=dict)
    val: dict[str, float] = field(default_factory=dict)
    time_cost: float | None = None
    speed: float | None = None


@dataclass(slots=True)
class GluonEpochLog:
    """A GluonCV ``[Epoch N]`` line: ``train=.. val=.. loss=..``, ``training:``, ``validation:``."""

    epoch: int
    train: dict[str, float] = field(default_factory=dict)
    val: dict[str, float] = field(default_factory=dict)
    time_cost: float | None = None
    speed: float | None = None


@dataclass(slots=True)
class Start:
    """A training start: an argparse ``Namespace(...)`` line; ``hparams`` what could be read,
    ``line`` its number in the log (1-based)."""

    hparams: dict[str, Any]
    line: int = 0


@dataclass(slots=True)
class TrainingStart:
    """A script's own ``Start training ...`` line (``line``: its number in the log)."""

    line: int = 0


@dataclass(slots=True)
class Rewind:
    """The next report goes back: an earlier epoch, an earlier batch of the same epoch, or
    the same batch again with a metric already reported for it. The training started over
    (a script restarted into the same log); ``line`` is the report's line number."""

    line: int
    epoch: int
    batch: int | None = None


@dataclass(slots=True)
class Crash:
    """A Python traceback (``reason``: its last line, ``ValueError: ...``), or MXNet's own
    crash report (``Segmentation fault: 11``, ``terminate called after throwing ...``)."""

    reason: str


@dataclass(slots=True)
class Checkpoint:
    """``Saved checkpoint to "<path>"``."""

    path: str


MXNetEvent = (BatchLog | EpochLog | GluonEpochLog | Start | TrainingStart | Rewind | Checkpoint
              | Crash)
