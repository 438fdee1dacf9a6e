"""Auto-upload runs in a child process (em_core._uploadproc), not a thread of the training
process: the key never reaches its argv or environment, it holds none of the run's
descriptors (so never the run's .lock), it runs niced, it outlives a SIGKILLed training
process just long enough to ship what is on disk, a forked child of the training process
does not hold its pipes, and finish() with the server down returns within its bound and
names what is left."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import em_core as em
from em_core import _uploader
from em_core._lifecycle import writer_alive

from . import test_client_e2e as e2e
from .test_client_e2e import KINDS, Server

env, server = e2e.env, e2e.server  # the fixtures: a server process that can be restarted
# the uploader's process is the same against either server: em_server itself only (CI time)
pytestmark = pytest.mark.parametrize("server", [k for k in KINDS if k == "real"],
                                     indirect=True)


def _gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except FileNotFoundError:
        return True


def _wait_until(cond: object, what: str, limit: float = 60.0) -> None:
    deadline = time.monotonic() + limit
    while not cond():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def _served(server: Server, path: str) -> bytes:
    info = server.get("/runs/by-path", path=path).json()
    return server.get(f"/runs/{info['id']}/metrics.bin").content


def test_the_uploader_is_a_niced_process_without_the_key_or_the_lock(
        server: Server, monkeypatch: pytest.MonkeyPatch) -> None:
    em.login(server.url, server.key)  # saved in the config file: not in any environment
    monkeypatch.setenv("EM_UPLOAD_INTERVAL", "0.05")
    run = em.create_run(name="proc", auto_upload=True, folder="p", make_folder=True)
    up = run._uploader
    assert isinstance(up, _uploader.Uploader)
    pid = up.proc.pid
    assert pid != os.getpid()
    for i in range(300):
        run.log("train", {"loss": float(i)}, step=i)
    _wait_until(lambda: run.remote, "the uploader to create the run on the server")
    cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    assert b"em_core._uploadproc" in cmdline
    assert server.key.encode() not in cmdline
    assert server.key.encode() not in Path(f"/proc/{pid}/environ").read_bytes()
    lock = os.path.realpath(Path(run.local) / ".lock")
    fds = [os.readlink(p) for p in Path(f"/proc/{pid}/fd").iterdir() if p.is_symlink()]
    assert lock not in fds, fds
    assert os.getpriority(os.PRIO_PROCESS, pid) >= os.getpriority(os.PRIO_PROCESS, 0) + 10
    if sys.platform == "linux":  # it runs only where nothing else wants a core
        assert os.sched_getscheduler(pid) == os.SCHED_IDLE
    run.finish()
    assert up.proc.returncode == 0
    assert _served(server, "/alice/p/proc") == (Path(run.local) / "metrics.bin").read_bytes()


KILLED = """
import os, sys, time, em_core as em
run = em.create_run(name="killed", auto_upload=True, folder="k", make_folder=True)
worker = os.fork()  # a DataLoader worker, say: alive after its parent is killed
if worker == 0:
    time.sleep(60)
    os._exit(0)
for i in range(20000):
    run.log("train", {"loss": i * 0.5}, step=i)
print(run.local, run._uploader.proc.pid, worker, flush=True)
time.sleep(120)
"""


def test_the_uploader_ships_everything_and_exits_after_a_sigkill(
        server: Server, env: dict[str, str], tmp_path: Path) -> None:
    em.login(server.url, server.key)
    # nothing is shipped on the interval during the run: all of it goes after the kill
    e = {**env, "EM_UPLOAD_INTERVAL": "3600"}
    train = subprocess.Popen([sys.executable, "-c", KILLED], cwd=tmp_path, env=e,
                             stdout=subprocess.PIPE, text=True)
    assert train.stdout is not None
    local, pid, worker = train.stdout.readline().split()
    try:
        train.send_signal(signal.SIGKILL)
        train.wait()
        assert writer_alive(local, {"host": os.uname().nodename}) is False  # not kept alive
        _wait_until(lambda: _gone(int(pid)), "the uploader to exit after the SIGKILL")
    finally:
        os.kill(int(worker), signal.SIGKILL)
    served = _served(server, "/alice/k/killed")
    on_disk = (Path(local) / "metrics.bin").read_bytes()  # zero-padded past the last record
    assert on_disk.startswith(served) and not on_disk[len(served):].strip(b"\0")
    info = server.get("/runs/by-path", path="/alice/k/killed").json()
    series = server.get(f"/runs/{info['id']}/series").json()["series"]
    assert [(s["name"], s["count"]) for s in series] == [("loss", 20000)]
    assert info["status"] == "Crashed" == em.load_run(local).status


def test_finish_with_the_server_down_returns_within_its_bound_and_names_what_is_left(
        server: Server, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    em.login(server.url, server.key)
    monkeypatch.setenv("EM_UPLOAD_INTERVAL", "0.05")
    monkeypatch.setenv("EM_UPLOAD_TIMEOUT", "2")
    with caplog.at_level(logging.WARNING, logger="em"):
        run = em.create_run(name="down", auto_upload=True, folder="d", make_folder=True)
        up = run._uploader
        _wait_until(lambda: run.remote, "the uploader to create the run on the server")
        server.kill()
        for i in range(1000):
            run.log("train", {"loss": float(i)}, step=i)
        t = time.monotonic()
        run.finish()
        took = time.monotonic() - t
    assert took < 2 + 8, took  # the bound (2 s), not the HTTP timeout or the retrying
    said = " ".join(r.getMessage() for r in caplog.records)
    assert "is waiting" in said
    assert "did not finish within 2 s" in said and "bytes of metrics" in said, said
    assert f"em upload {run.local}" in said
    assert server.key not in said
    _wait_until(lambda: up.proc.poll() is not None, "the uploader to be stopped")
    assert run.status == em.Status.COMPLETE


def test_a_forked_child_holds_neither_the_uploader_nor_its_pipes(
        server: Server, monkeypatch: pytest.MonkeyPatch) -> None:
    em.login(server.url, server.key)
    monkeypatch.setenv("EM_UPLOAD_INTERVAL", "0.05")
    run = em.create_run(name="forked", auto_upload=True, folder="f", make_folder=True)
    up = run._uploader
    fds = [up.proc.stdin.fileno(), up.proc.stdout.fileno()]
    null = os.stat(os.devnull).st_rdev
    child = os.fork()
    if child == 0:  # pragma: no cover - the forked child reports by its exit status
        ok = all(os.fstat(fd).st_rdev == null for fd in fds)
        _uploader.wait_for(run)  # a no-op here: the parent's process uploads
        os._exit(0 if ok and run._uploader is up else 1)
    _, status = os.waitpid(child, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    for i in range(500):
        run.log("train", {"loss": float(i)}, step=i)
    run.finish()
    assert up.proc.returncode == 0
    assert _served(server, "/alice/f/forked") == (Path(run.local) / "metrics.bin").read_bytes()
    listing = server.get("/runs", folder="/alice/f").json()
    names = [r.get("alternative_name") or r.get("name") for r in listing.get("runs", listing)]
    assert len(names) == 1, listing
