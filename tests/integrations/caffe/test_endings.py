"""One mapping from how a training ended to the run's status, the same for ``em caffe`` and
``em mxnet`` (integrations.logpipe.ending): a crash signal is Failed, a signal from outside is
Killed, a non-zero exit status is Failed, in both pipes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

import em_core as em
from integrations.logpipe.ending import ending

REPO = Path(__file__).resolve().parents[3]

# A training that prints a report its pipe understands, then dies as asked
TRAINING = """
import os, signal, sys
pipe, how = sys.argv[1], sys.argv[2]
if pipe == 'caffe':
    print('I0101 00:00:01.000000  7 solver.cpp:218] Iteration 100, loss = 0.5', flush=True)
    print('I0101 00:00:01.000001  7 sgd_solver.cpp:105] Iteration 100, lr = 0.01', flush=True)
else:
    print('INFO:root:Epoch[0] Batch [10]\\tSpeed: 5.0 samples/sec\\taccuracy=0.5', flush=True)
if how.startswith('SIG'):
    if how == 'SIGINT':
        signal.signal(signal.SIGINT, signal.SIG_DFL)  # no KeyboardInterrupt: die of it
    os.kill(os.getpid(), getattr(signal, how))
sys.exit(int(how))
"""

CASES = [("SIGSEGV", em.Status.FAILED, "died of SIGSEGV"),
         ("SIGABRT", em.Status.FAILED, "died of SIGABRT"),
         ("SIGKILL", em.Status.KILLED, "was killed by SIGKILL"),
         ("SIGTERM", em.Status.KILLED, "was killed by SIGTERM"),
         ("SIGINT", em.Status.KILLED, "was killed by SIGINT"),
         ("3", em.Status.FAILED, "exited with status 3")]


def env() -> dict[str, str]:
    e = dict(os.environ)
    e["PYTHONPATH"] = os.pathsep.join([str(REPO), e.get("PYTHONPATH", "")])
    return e


@pytest.mark.parametrize("pipe", ["caffe", "mxnet"])
@pytest.mark.parametrize(("how", "status", "reason"), CASES, ids=[c[0] for c in CASES])
def test_both_pipes_end_a_run_the_same_way(tmp_path: Path, pipe: str, how: str,
                                           status: em.Status, reason: str) -> None:
    script = tmp_path / "train.py"
    script.write_text(TRAINING)
    res = subprocess.run([sys.executable, "-m", "em_core.cli", pipe, "run", "--name", "e",
                          "--", sys.executable, str(script), pipe, how],
                         capture_output=True, env=env(), cwd=tmp_path, check=False, timeout=120)
    expected_rc = 128 + getattr(signal, how) if how.startswith("SIG") else int(how)
    assert res.returncode == expected_rc, res.stderr.decode(errors="replace")
    (run_dir,) = list((tmp_path / "runs").iterdir())
    run = em.load_run(run_dir)
    assert run.status == status
    assert reason in run.to_dict()["error"]["message"]
    assert run.metrics["train"]  # what came before the end is kept


def test_the_mapping() -> None:
    assert ending(prog="p", signal="SIGINT") == (em.Status.KILLED, "em received SIGINT")
    assert ending(prog="p", signal="SIGPIPE") == (em.Status.KILLED, "stdout was closed")
    assert ending(prog="p", returncode=-signal.SIGABRT, failures=["Check failed: x"]) == (
        em.Status.FAILED, "Check failed: x; p died of SIGABRT")
    assert ending(prog="p", returncode=-signal.SIGKILL, failures=["MemoryError"]) == (
        em.Status.KILLED, "p was killed by SIGKILL")
    assert ending(prog="p", failures=["ValueError: x"]) == (em.Status.FAILED, "ValueError: x")
    assert ending(prog="p", returncode=2, unfinished="before 'Done'") == (
        em.Status.FAILED, "p exited with status 2 before 'Done'")
    assert ending(prog="p", stopped="stopped early") == (em.Status.KILLED, "stopped early")
    assert ending(prog="p", unfinished="before 'Done'") == (
        em.Status.FAILED, "the log ended before 'Done'")
    assert ending(prog="p") == (em.Status.COMPLETE, None)
    status, why = ending(prog="p", signal="SIGTERM", error=OSError(28, "No space left"))
    assert status == em.Status.FAILED and why is not None and why.startswith(
        "em could not read the log: ")


def test_a_keyboard_interrupt_in_the_log_is_killed(tmp_path: Path) -> None:
    """The training got SIGINT on its own (not through em): its traceback says so."""
    from integrations.mxnet_log import MXNetRecorder

    run = em.create_run(name="ctrl-c")
    rec = MXNetRecorder(run)
    rec.feed(b"INFO:root:Epoch[0] Batch [10]\tSpeed: 5.0 samples/sec\taccuracy=0.5\n"
             b"Traceback (most recent call last):\n  File \"train.py\", line 9, in <module>\n"
             b"KeyboardInterrupt\n")
    assert rec.finish() == em.Status.KILLED


def test_mxnet_crash_report_in_the_log_is_failed(tmp_path: Path) -> None:
    """Pipe mode knows no exit status: MXNet's own crash report says it."""
    from integrations.mxnet_log import MXNetRecorder

    run = em.create_run(name="segv")
    rec = MXNetRecorder(run)
    rec.feed(b"INFO:root:Epoch[0] Batch [10]\tSpeed: 5.0 samples/sec\taccuracy=0.5\n"
             b"\nSegmentation fault: 11\n\nStack trace:\n  [bt] (0) libmxnet.so(+0x1)\n")
    assert rec.finish() == em.Status.FAILED
    assert run.to_dict()["error"]["message"] == "Segmentation fault: 11"
