"""Fixtures for the Horovod tests: launching jobs under ``horovodrun`` and reading back the
one run a job must write.

A job runs as ``horovodrun -np 2 -H localhost:2 --gloo python <script>`` from the session's
environment, with ``EM_RUN_PARENT_DIR`` in the test's tmp_path (set by the top-level
conftest); the ranks inherit the environment, ``EM_STRICT=1`` included.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import em_core as em

REPO = Path(__file__).resolve().parents[3]
HERE = Path(__file__).resolve().parent
HOROVODRUN = Path(sys.executable).parent / "horovodrun"
NP = 2


def launch(script: Path, *args: str, env: dict[str, str] | None = None,
           cwd: Path | None = None, timeout: int = 300) -> subprocess.CompletedProcess[str]:
    """Run ``script`` on ``NP`` local ranks with Gloo; fail with the job's output if it fails."""
    full_env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(REPO), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep),
        TF_CPP_MIN_LOG_LEVEL="2", OMP_NUM_THREADS="1")
    full_env.update(env or {})
    cmd = [str(HOROVODRUN), "-np", str(NP), "-H", f"localhost:{NP}", "--gloo",
           sys.executable, str(script), *args]
    proc = subprocess.run(cmd, env=full_env, cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, check=False)
    assert proc.returncode == 0, (f"{' '.join(cmd)} failed ({proc.returncode}):\n"
                                  f"{proc.stdout[-6000:]}\n{proc.stderr[-6000:]}")
    return proc


def the_run(tmp_path: Path) -> Any:
    """The one run under tmp_path/runs (the job's ranks together wrote exactly one)."""
    runs = sorted((tmp_path / "runs").iterdir()) if (tmp_path / "runs").exists() else []
    assert len(runs) == 1, f"expected exactly one run, found {[r.name for r in runs]}"
    return em.load_run(runs[0])


@pytest.fixture(name="launch")
def launch_fixture() -> Callable[..., subprocess.CompletedProcess[str]]:
    """:func:`launch`, for tests (with --import-mode=importlib they cannot import conftest)."""
    return launch


@pytest.fixture(name="the_run")
def the_run_fixture() -> Callable[[Path], Any]:
    """:func:`the_run`, for tests."""
    return the_run
