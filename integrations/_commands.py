"""``em caffe`` and ``em mxnet`` as the ``em`` command starts them.

These entry points load almost nothing before the pass-through is running
(:func:`~integrations._passthrough.start_early`): the parser, em itself and the run come
after, while the log already flows. Called in-process, :func:`integrations.caffe.main` and
:func:`integrations.mxnet_log.main` do the same thing, a few tens of milliseconds later.
"""

from __future__ import annotations

from ._passthrough import start_early

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["caffe", "mxnet"]


def caffe(argv: Sequence[str] | None = None) -> int:
    """``em caffe [options]`` / ``em caffe run [options] -- caffe train ...``."""
    early = start_early(argv)
    from .caffe._cli import main

    return main(argv, early=early)


def mxnet(argv: Sequence[str] | None = None) -> int:
    """``em mxnet [options]`` / ``em mxnet run [options] -- python train.py ...``."""
    early = start_early(argv)
    from .mxnet_log import main

    return main(argv, early=early)
