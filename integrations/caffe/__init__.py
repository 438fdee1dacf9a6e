"""Caffe for em: read Caffe's training log, as it is written or afterwards.

Caffe is not imported (nor needed): everything comes from the log and the solver file.

* ``em caffe`` / ``em caffe run`` (:func:`main`): the command that passes a log through and
  records it into a run.
* :class:`CaffeLogParser`: the parser as a plain Python API, fed lines, returning events.
* :class:`CaffeRecorder`: events into an em run.
* :func:`solver_hparams` / :func:`parse_prototxt`: Protocol Buffers text format without
  protobuf.

Example:
    >>> from integrations.caffe import parse_caffe_log, TrainIteration   # doctest: +SKIP
    >>> losses = [e.loss for e in parse_caffe_log('train.log')          # doctest: +SKIP
    ...           if isinstance(e, TrainIteration)]
"""

from __future__ import annotations

from typing import Any

from ._cli import main
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
from ._parser import CaffeLogParser, parse_caffe_log
from ._prototxt import PrototxtError, batch_sizes, parse_prototxt, read_prototxt, solver_hparams

__all__ = [
    "CaffeEvent",
    "CaffeLogParser",
    "CaffeRecorder",
    "Failed",
    "Finished",
    "PrototxtError",
    "Resumed",
    "Snapshot",
    "Solving",
    "SolverParameters",
    "TestResult",
    "TrainIteration",
    "batch_sizes",
    "main",
    "parse_caffe_log",
    "parse_prototxt",
    "read_prototxt",
    "solver_hparams",
]


def __getattr__(name: str) -> Any:
    if name == "CaffeRecorder":  # imports em_core; the parser alone does not need it
        from ._record import CaffeRecorder

        return CaffeRecorder
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
