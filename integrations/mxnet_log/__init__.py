"""``em mxnet``: record an MXNet training from its log, for scripts that cannot be changed.

Usage::

    python train.py 2>&1 | em mxnet --name NAME
    em mxnet run --name NAME -- python train.py ...

* :func:`main` (:mod:`.command`): the command; the log passes through to stdout byte for
  byte and at once while the recorder reads a copy (:mod:`integrations.logpipe`).
* :class:`MXNetLogParser` (:mod:`.parser`): lines to events (:mod:`.events`).
* :class:`MXNetRecorder` (:mod:`.recorder`): events into an em run.

MXNet itself is never imported.
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (the fast start)
if TYPE_CHECKING:
    from typing import Any

__all__ = ["BatchLog", "Checkpoint", "Crash", "EpochLog", "GluonEpochLog", "MXNetEvent",
           "MXNetLogParser", "MXNetRecorder", "Start", "main"]

# Names load on first use: `em mxnet` imports integrations.mxnet_log.command, which must
# not pull in the parser before its pass-through runs.
_WHERE = {
    "main": "command", "MXNetLogParser": "parser", "MXNetRecorder": "recorder",
    **dict.fromkeys(["BatchLog", "Checkpoint", "Crash", "EpochLog", "GluonEpochLog",
                     "MXNetEvent", "Start"], "events"),
}


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
