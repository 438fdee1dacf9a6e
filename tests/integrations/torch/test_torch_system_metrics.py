"""System metrics and console capture in a DDP job (torchrun, gloo on CPU, 2 processes):
one set of system metrics and one console.log, both from rank 0 (issue 15)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import em_core as em

REPO = Path(__file__).resolve().parents[3]

_JOB = textwrap.dedent("""
    import os, time
    import torch
    import torch.distributed as dist
    import em_core as em

    dist.init_process_group("gloo")
    rank = dist.get_rank()
    run = em.create_run(name="ddp-sys")
    model = torch.nn.parallel.DistributedDataParallel(torch.nn.Linear(8, 1))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for step in range(20):  # the same number on every rank: each step is an allreduce
        loss = model(torch.randn(16, 8)).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    time.sleep(0.4)  # a few sampling intervals
    print(f"rank {rank} trained", flush=True)
    os.write(1, f"rank {rank} fd\\n".encode())
    dist.barrier()
    run.finish()
    dist.destroy_process_group()
""")


def _free_port() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return str(s.getsockname()[1])


def _system(run: em.Run) -> list[int]:
    return [r.step for r in run.metric_records() if r.type == "system"]


@pytest.mark.slow
def test_ddp_job_records_one_set_of_system_metrics(tmp_path: Path) -> None:
    """(EM_ALL_RANKS=1, where each rank has a run, is tested in tests/core: only each
    node's local rank 0 samples.)"""
    script = tmp_path / "job.py"
    script.write_text(_JOB)
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1",
           "EM_RUN_PARENT_DIR": str(tmp_path / "runs"), "EM_SYSTEM_INTERVAL": "0.05",
           "EM_CONSOLE": "on", "EM_STRICT": "1"}
    # Unbuffered, print() is two writes (the text, then "\n"), which the other rank's output
    # may land between on the shared pipe: that is the job's doing, not em's.
    env.pop("PYTHONUNBUFFERED", None)
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node",
                           "2", "--master_port", _free_port(), str(script)], env=env,
                          cwd=tmp_path, capture_output=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for rank in (0, 1):  # every rank's output reached the job's stdout
        assert f"rank {rank} trained".encode() in proc.stdout
        assert f"rank {rank} fd\n".encode() in proc.stdout  # one write: whole on the pipe
    runs = {em.load_run(d).name: em.load_run(d) for d in (tmp_path / "runs").iterdir()}
    chief = runs["ddp-sys"]
    steps = _system(chief)
    assert len(steps) >= 3 and steps == list(range(len(steps)))  # one sampler wrote them
    console = (Path(str(chief.local)) / "console.log").read_bytes()
    assert b"rank 0 trained\n" in console and b"rank 0 fd\n" in console
    assert b"rank 1" not in console
    assert set(runs) == {"ddp-sys"}


_TQDM = textwrap.dedent("""
    import time
    import em_core as em
    from tqdm import tqdm
    run = em.create_run(name="bar", system_interval=0)
    for i in tqdm(range(5), mininterval=0):
        time.sleep(0.01)
    run.finish()
""")


def _on_a_terminal(env: dict[str, str]) -> bytes:
    import fcntl
    import pty
    import struct
    import termios

    master, slave = pty.openpty()
    attrs = termios.tcgetattr(slave)
    attrs[1] &= ~termios.OPOST  # the bytes read are the bytes written
    termios.tcsetattr(slave, termios.TCSANOW, attrs)
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
    proc = subprocess.Popen([sys.executable, "-c", _TQDM], stdin=slave, stdout=slave,
                            stderr=slave, env=env)
    os.close(slave)
    out = b""
    while True:
        try:
            chunk = os.read(master, 4096)
        except OSError:
            break
        if not chunk:
            break
        out += chunk
    os.close(master)
    assert proc.wait(30) == 0, out
    return out


@pytest.mark.slow  # two Python processes importing tqdm: a few seconds on a loaded machine
def test_tqdm_bar_on_a_terminal_is_unchanged(tmp_path: Path) -> None:
    """tqdm draws the same bar (same width, same \\r updates) with console capture on as
    off, and console.log has it as drawn."""
    import re

    env = {**os.environ, "PYTHONPATH": str(REPO), "EM_RUN_PARENT_DIR": str(tmp_path / "runs")}
    off = _on_a_terminal({**env, "EM_CONSOLE": "off"})
    on = _on_a_terminal({**env, "EM_CONSOLE": "on"})

    def timeless(b: bytes) -> bytes:
        return re.sub(rb"[\d.]+it/s|\?it/s|\d\d:\d\d", b"T", b)

    assert b"5/5" in on and on.count(b"\r") >= 5
    assert timeless(on) == timeless(off)
    (run_dir,) = [d for d in (tmp_path / "runs").iterdir()
                  if (d / "console.log").exists()]
    assert timeless((run_dir / "console.log").read_bytes()) == timeless(on)
