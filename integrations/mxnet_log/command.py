"""``em mxnet``: record an MXNet training from its log, for scripts that cannot be changed.

Usage::

    python train.py 2>&1 | em mxnet --name NAME
    em mxnet run --name NAME -- python train.py ...

The log passes through to stdout byte for byte and at once (see
:mod:`integrations.logpipe.stream`) while :class:`~integrations.mxnet_log.parser.
MXNetLogParser` reads a copy. This module is the ``em.commands`` entry point: it loads
nothing but the pass-through before the log flows. MXNet itself is never imported.
"""

from __future__ import annotations

import sys

from ..logpipe.passthrough import Early, start_early

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    import argparse
    from collections.abc import Sequence
    from typing import Any

__all__ = ["main"]


def _recorder(run: Any, args: argparse.Namespace) -> Any:
    from .recorder import MXNetRecorder

    return MXNetRecorder(run)


def main(argv: Sequence[str] | None = None, *, early: Early | None = None) -> int:
    """Entry point of ``em mxnet`` (entry-point group ``em.commands``).

    Args:
        argv: The arguments after ``em mxnet`` (default: ``sys.argv[1:]``).
        early: The pass-through, when the caller started it already.

    Returns:
        Pipe mode: 0, or 130/143 after SIGINT/SIGTERM, 141 when stdout was closed, 2 for
        bad options. ``run`` mode: the command's exit status (128+N when killed by signal N).
    """
    if early is None:
        early = start_early(argv)  # pipe mode: the log flows before the rest is loaded
    from ..logpipe.command import command_main

    return command_main(
        argv, prog="em mxnet",
        description="Record an MXNet training run from its log; the log passes through to "
                    "stdout unchanged. 'em mxnet run [options] -- python train.py' starts the "
                    "script itself and returns its exit status.",
        make_recorder=_recorder, early=early)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
