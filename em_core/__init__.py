"""em: record machine-learning training runs on local disk.

Example::

    import em_core as em

    with em.create_run(name="mnist", hparams={"lr": 0.1}) as run:
        run.log("train", {"loss": 0.25}, step=1)
"""

from __future__ import annotations

import importlib

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~10 ms)
if TYPE_CHECKING:
    from typing import Any

    from ._lifecycle import Status
    from ._upload import upload
    from ._userconfig import login, logout
    from .artifact import Artifact, create_artifact, load_artifact
    from .dist import DistInfo, dist_info
    from .errors import (
        CorruptRunError,
        EmError,
        EmWarning,
        LoginError,
        NotARunError,
        RemoteError,
        RemoteNotFoundError,
        RunFinishedError,
        handle_problem,
    )
    from .hparams import Hyperparameters
    from .run import NoOpRun, Run, create_run, load_run

# The public names are loaded on first use (PEP 562): `import em_core` costs next to nothing,
# which lets `em caffe` start passing a log through before any of em is loaded.
_HOMES = {
    "Status": "._lifecycle",
    "Artifact": ".artifact", "create_artifact": ".artifact", "load_artifact": ".artifact",
    "DistInfo": ".dist", "dist_info": ".dist",
    "CorruptRunError": ".errors", "EmError": ".errors", "EmWarning": ".errors",
    "NotARunError": ".errors", "RunFinishedError": ".errors", "handle_problem": ".errors",
    "LoginError": ".errors", "RemoteError": ".errors", "RemoteNotFoundError": ".errors",
    "login": "._userconfig", "logout": "._userconfig", "upload": "._upload",
    "Hyperparameters": ".hparams",
    "NoOpRun": ".run", "Run": ".run", "create_run": ".run", "load_run": ".run",
}

__version__ = "0.1.0"

__all__ = [
    "Artifact",
    "CorruptRunError",
    "DistInfo",
    "EmError",
    "EmWarning",
    "Hyperparameters",
    "LoginError",
    "NoOpRun",
    "NotARunError",
    "RemoteError",
    "RemoteNotFoundError",
    "Run",
    "RunFinishedError",
    "Status",
    "create_artifact",
    "create_run",
    "dist_info",
    "handle_problem",
    "load_artifact",
    "load_run",
    "login",
    "logout",
    "upload",
]


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'em_core' has no attribute {name!r}")
    value = getattr(importlib.import_module(home, __name__), name)
    globals()[name] = value  # once loaded, a plain module attribute
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
