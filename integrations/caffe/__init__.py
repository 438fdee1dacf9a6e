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

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (the fast start)
if TYPE_CHECKING:
    from typing import Any

# Names load on first use: `em caffe` imports integrations.caffe.command, which must not
# pull in the parser before its pass-through runs (the fast start).
_WHERE = {
    "main": "command",
    "CaffeLogParser": "parser", "parse_caffe_log": "parser",
    "CaffeRecorder": "recorder",
    "PrototxtError": "prototxt", "batch_sizes": "prototxt", "parse_prototxt": "prototxt",
    "read_prototxt": "prototxt", "solver_hparams": "prototxt",
    **dict.fromkeys(["CaffeEvent", "Failed", "Finished", "Resumed", "Snapshot", "Solving",
                     "SolverParameters", "TestResult", "TrainIteration"], "events"),
}

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
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
