"""``em caffe`` fed by a process that pauses mid test pass: one pass is one record whatever
the timing (the pipe's idle call must not close a pass whose outputs are still to come)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import em_core as em

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]
# two test outputs per pass (Accuracy, loss), a pass at iteration 0 and one every 1000
LOG = REPO.parent / "shared" / "corpus" / "caffe" / \
    "ethanhe42__resnet-cifar10-caffe__resnet-20__2016-08-14_00-25-56.log"

FEEDER = """
import sys, time
lines = open(sys.argv[1], 'rb').read().splitlines(keepends=True)[:int(sys.argv[2])]
pauses = {int(n) for n in sys.argv[3:]}  # pause after these (1-based) lines
out = sys.stdout.buffer
start = 0
for n in sorted(pauses) + [len(lines)]:
    out.write(b''.join(lines[start:n]))
    out.flush()
    start = n
    if n in pauses:
        time.sleep(1.0)  # far past the pipe's 0.2 s idle threshold
"""


def env() -> dict[str, str]:
    e = dict(os.environ)
    e["PYTHONPATH"] = os.pathsep.join([str(REPO), e.get("PYTHONPATH", "")])
    return e


def _test_pass_lines(upto: int) -> list[int]:
    """1-based numbers of the first 'Test net output #0' line of each pass before ``upto``."""
    lines = LOG.read_bytes().splitlines()[:upto]
    return [i + 1 for i, line in enumerate(lines) if b"Test net output #0" in line]


def test_a_pause_inside_a_test_pass_does_not_split_it(tmp_path: Path) -> None:
    upto = 4362  # the second pass (iteration 1000) and the display block after it
    first, second = _test_pass_lines(upto)
    feeder = subprocess.Popen([sys.executable, "-c", FEEDER, str(LOG), str(upto), str(first),
                               str(second)], stdout=subprocess.PIPE)
    res = subprocess.run([sys.executable, "-m", "em_core.cli", "caffe", "--name", "paused"],
                         stdin=feeder.stdout, capture_output=True, env=env(), cwd=tmp_path,
                         check=False, timeout=120)
    assert feeder.stdout is not None
    feeder.stdout.close()
    assert feeder.wait(60) == 0 and res.returncode == 0, res.stderr.decode(errors="replace")
    assert res.stdout == b"".join(LOG.read_bytes().splitlines(keepends=True)[:upto])
    (run_dir,) = list((tmp_path / "runs").iterdir())
    tests = em.load_run(run_dir).metrics["test"]
    assert [(t["sequence"]["step"], sorted(t["value"])) for t in tests] == [
        (0, ["Accuracy", "loss"]), (1000, ["Accuracy", "loss"])]
    assert tests[1]["value"] == {"Accuracy": 0.819531, "loss": 0.523789}


def test_a_test_pass_known_complete_is_recorded_when_the_input_pauses() -> None:
    """The idle call still records a pass at once when it has its net's output names."""
    from integrations.caffe import CaffeLogParser, TestResult

    lines = LOG.read_bytes().splitlines(keepends=True)
    parser = CaffeLogParser(year=2016)
    first, second = _test_pass_lines(4362)
    parser.feed_bytes(b"".join(lines[:first]))  # the first pass's first output
    assert parser.flush() == []  # its names are not known yet: more may come
    parser.feed_bytes(b"".join(lines[first:second + 1]))  # to the second pass's last output
    (done,) = parser.flush()
    assert isinstance(done, TestResult) and (done.iteration, sorted(done.outputs)) == (
        1000, ["Accuracy", "loss"])
