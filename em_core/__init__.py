"""em: record machine-learning training runs on local disk.

Example::

    import em_core as em

    with em.create_run(name="mnist", hparams={"lr": 0.1}) as run:
        run.log("train", {"loss": 0.25}, step=1)
"""

from __future__ import annotations

from ._lifecycle import Status
from .artifact import Artifact, create_artifact, load_artifact
from .dist import DistInfo, dist_info
from .errors import (
    CorruptRunError,
    EmError,
    EmWarning,
    NotARunError,
    RunFinishedError,
    handle_problem,
)
from .hparams import Hyperparameters
from .run import NoOpRun, Run, create_run, load_run

__version__ = "0.1.0"

__all__ = [
    "Artifact",
    "CorruptRunError",
    "DistInfo",
    "EmError",
    "EmWarning",
    "Hyperparameters",
    "NoOpRun",
    "NotARunError",
    "Run",
    "RunFinishedError",
    "Status",
    "create_artifact",
    "create_run",
    "dist_info",
    "handle_problem",
    "load_artifact",
    "load_run",
]
