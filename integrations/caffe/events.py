"""What :class:`~integrations.caffe.CaffeLogParser` returns: one class per kind of event."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

__all__ = ["CaffeEvent", "Failed", "Finished", "Resumed", "Snapshot", "Solving",
           "SolverParameters", "TestResult", "TrainIteration"]


@dataclass(slots=True)
class TrainIteration:
    """One display block of training: ``Iteration N, loss = X`` and what follows it.

    Attributes:
        iteration: The solver iteration the block reports.
        loss: The smoothed total loss of the ``Iteration N, loss`` line (None if absent).
        outputs: ``Train net output`` values by blob name (NaN kept as NaN).
        weights: Loss weights printed as ``(* w = ...)`` by blob name.
        lr: The learning rate of the ``lr =`` line printed in this block.
        iter_per_s: Iterations per second when the line gives them.
        time: The glog timestamp of the block's first line, if any.
    """

    iteration: int
    loss: float | None = None
    outputs: dict[str, float] = field(default_factory=dict)
    weights: dict[str, float] = field(default_factory=dict)
    lr: float | None = None
    iter_per_s: float | None = None
    time: datetime | None = None


@dataclass(slots=True)
class TestResult:
    """One pass of one test net: ``Iteration N, Testing net (#k)`` and its outputs."""

    __test__ = False  # not a pytest test class, despite the name

    iteration: int
    net: int = 0
    outputs: dict[str, float] = field(default_factory=dict)
    weights: dict[str, float] = field(default_factory=dict)
    time: datetime | None = None


@dataclass(slots=True)
class Solving:
    """A solver session starts (``Solving <net>``); several threads of one run count once."""

    net_name: str
    time: datetime | None = None


@dataclass(slots=True)
class SolverParameters:
    """The solver parameters Caffe prints after ``Initializing solver from parameters:``."""

    params: dict[str, Any]
    time: datetime | None = None


@dataclass(slots=True)
class Resumed:
    """``Resuming from <solverstate>`` (kind 'resume') or ``Restoring previous solver status``."""

    path: str
    kind: str = "resume"
    time: datetime | None = None


@dataclass(slots=True)
class Snapshot:
    """``Snapshotting to ...``: kind 'weights' (.caffemodel/.h5) or 'solverstate'."""

    path: str
    kind: str
    iteration: int | None = None
    time: datetime | None = None


@dataclass(slots=True)
class Finished:
    """``Optimization Done`` (once per session); ``stopped_early`` after a stop request."""

    stopped_early: bool = False
    time: datetime | None = None


@dataclass(slots=True)
class Failed:
    """A fatal glog line (``F...``, ``Check failed``), ``*** Aborted at`` or ``*** SIGTERM``."""

    reason: str
    time: datetime | None = None


CaffeEvent = (TrainIteration | TestResult | Solving | SolverParameters | Resumed | Snapshot
              | Finished | Failed)
