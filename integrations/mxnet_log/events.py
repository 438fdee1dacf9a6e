"""What :class:`~integrations.mxnet_log.parser.MXNetLogParser` returns: one class per kind
of line."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["BatchLog", "Checkpoint", "Crash", "EpochLog", "GluonEpochLog", "MXNetEvent", "Start"]


@dataclass(slots=True)
class BatchLog:
    """A batch line: ``Epoch[N] Batch [k]`` with Speedometer speed and metrics.

    ``metrics`` has the names as printed without a ``Train-`` prefix (``Loss[x]`` becomes
    ``loss``); ``time_cost`` is set on the summary form ``Batch[1251]\\tTime cost=...``.
    """

    epoch: int
    batch: int
    metrics: dict[str, float] = field(default_factory=dict)
    speed: float | None = None
    time_cost: float | None = None


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
    """A training start: an argparse ``Namespace(...)`` line; ``hparams`` what could be read."""

    hparams: dict[str, Any]


@dataclass(slots=True)
class Crash:
    """A Python traceback; ``reason`` is its last line (``ValueError: ...``)."""

    reason: str


@dataclass(slots=True)
class Checkpoint:
    """``Saved checkpoint to "<path>"``."""

    path: str


MXNetEvent = BatchLog | EpochLog | GluonEpochLog | Start | Checkpoint | Crash
