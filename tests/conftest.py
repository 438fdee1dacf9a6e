"""Shared by every test session: strict mode, and runs written into a temporary folder."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

# Problems in em raise instead of warning while the suite runs (see em_core.errors).
os.environ["EM_STRICT"] = "1"
# System metrics and console capture are off unless a test turns them on (their own tests
# in tests/core/test_system_metrics.py and test_console_capture.py): other tests assert on
# exactly the metrics they logged, and a tee process per run would slow the suite.
os.environ["EM_SYSTEM_INTERVAL"] = "0"
os.environ["EM_CONSOLE"] = "off"
# A suite started in the background by a shell without job control (`cmd &` in a script)
# inherits SIGINT ignored, and so would every process it starts: the Ctrl-C tests would
# then test nothing. A Python-level handler is reset to the default in exec'd children.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


@pytest.fixture(autouse=True)
def em_dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test writes its runs and artifacts under its own tmp_path."""
    monkeypatch.setenv("EM_RUN_PARENT_DIR", str(tmp_path / "runs"))
    monkeypatch.setenv("EM_ARTIFACT_PARENT_DIR", str(tmp_path / "artifacts"))
    for var in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "OMPI_COMM_WORLD_RANK", "HOROVOD_RANK",
                "PMI_RANK", "SLURM_PROCID", "TF_CONFIG", "EM_ALL_RANKS"):
        monkeypatch.delenv(var, raising=False)
    return tmp_path
