"""Where runs live on local disk.

Imports nothing of em's own (``em caffe`` reads it before its pass-through starts, when
nothing else of em is loaded yet).
"""

from __future__ import annotations

import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    from pathlib import Path

RUN_PARENT_ENV, RUN_PARENT_DEFAULT = "EM_RUN_PARENT_DIR", ".em/runs"


def parent_dir(parent_env: str, default: str) -> Path:
    """``$<parent_env>``, or ``default`` when unset or empty."""
    from pathlib import Path

    return Path(parent_path(parent_env, default))


def parent_path(parent_env: str, default: str) -> str:
    """:func:`parent_dir` as a string (without loading pathlib)."""
    return os.environ.get(parent_env) or default


def run_parent_dir() -> Path:
    """Where :func:`~em_core.create_run` makes runs: ``$EM_RUN_PARENT_DIR``, else ``.em/runs``."""
    return parent_dir(RUN_PARENT_ENV, RUN_PARENT_DEFAULT)
