"""``em caffe``: record a Caffe training from its log while passing the log through.

Usage::

    caffe train -solver s.prototxt 2>&1 | em caffe --name NAME [--solver s.prototxt]
    em caffe run --name NAME [--solver s.prototxt] -- caffe train -solver s.prototxt

Every byte of the log reaches stdout unchanged and as soon as it arrives. A problem in em
(a bad option, a solver file that does not parse, a full disk) is reported on stderr and
the log still passes through. This module is the ``em.commands`` entry point: it loads
nothing but the pass-through (:func:`~integrations.logpipe.passthrough.start_early`) before
the log flows; the parser, em and the run come after.
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


def _arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--solver", help="solver .prototxt: its fields become hyperparameters "
                                    "(in 'run' mode taken from the command's -solver if omitted)")
    p.add_argument("--wrap-width", type=int, default=100,
                   help="join lines hard-wrapped at this width (console copies), until a "
                        "line wider than this shows the log is not wrapped; 0: never "
                        "(default: %(default)s)")
    p.add_argument("--year", type=int, default=None,
                   help="year of the log's timestamps when it has no glog header")


def _solver_from_command(command: Sequence[str]) -> str | None:
    for i, arg in enumerate(command):
        for flag in ("-solver", "--solver"):
            if arg == flag and i + 1 < len(command):
                return command[i + 1]
            if arg.startswith(flag + "="):
                return arg[len(flag) + 1:]
    return None


def _hparams(args: argparse.Namespace, command: list[str] | None) -> dict[str, Any]:
    from .prototxt import PrototxtError, solver_hparams

    solver = args.solver or (_solver_from_command(command) if command else None)
    if not solver:
        return {}
    try:
        return solver_hparams(solver)
    except PrototxtError as exc:  # the training goes on; say so where the user looks
        print(f"em caffe: solver not recorded: {exc}", file=sys.stderr, flush=True)
        return {}


def _recorder(run: Any, args: argparse.Namespace) -> Any:
    from .parser import CaffeLogParser
    from .recorder import CaffeRecorder

    parser = CaffeLogParser(year=args.year, wrap_width=args.wrap_width or None)
    return CaffeRecorder(run, parser=parser)


def main(argv: Sequence[str] | None = None, *, early: Early | None = None) -> int:
    """Entry point of ``em caffe`` (entry-point group ``em.commands``).

    Args:
        argv: The arguments after ``em caffe`` (default: ``sys.argv[1:]``).
        early: The pass-through, when the caller started it already.

    Returns:
        Pipe mode: 0, or 130/143 after SIGINT/SIGTERM, 141 when stdout was closed, 2 for
        bad options. ``run`` mode: Caffe's exit status (128+N when killed by signal N).
    """
    if early is None:
        early = start_early(argv)  # pipe mode: the log flows before the rest is loaded
    from ..logpipe.command import command_main

    return command_main(
        argv, prog="em caffe",
        description="Record a Caffe training run from its log; the log passes through to "
                    "stdout unchanged. 'em caffe run [options] -- caffe train ...' starts "
                    "Caffe itself and returns its exit status.",
        add_arguments=_arguments, hparams=_hparams, make_recorder=_recorder, early=early)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
