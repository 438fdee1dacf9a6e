"""``em ui DIR``: the console's server on a local directory, as a real process: runs listed
with no sign-in, a run still training followed live, the directory left untouched, and
loopback only."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

import em_core as em

from .conftest import REPO, free_port

LIVE = textwrap.dedent("""
    import os, sys, time
    import em_core as em
    run = em.create_run(name="live-run")
    run.hparams["lr"] = 0.1
    step = 0
    while not os.path.exists(sys.argv[1]) and step < 2000:
        run.log("train", {"loss": 1.0 / (step + 1)}, step=step)
        step += 1
        time.sleep(0.02)
    run.finish()
""")


def _env(tmp: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env["EM_RUN_PARENT_DIR"] = str(tmp / "dot-em" / "runs")
    env["EM_ARTIFACT_PARENT_DIR"] = str(tmp / "dot-em" / "artifacts")
    env["XDG_CACHE_HOME"] = str(tmp / "cache")
    return env


def _until(what: str, check: Callable[[], Any], timeout: float = 60) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        got = check()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def _snapshot(top: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(top)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in sorted(top.rglob("*")) if p.is_file()}


@pytest.fixture
def ui_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    env = _env(tmp_path)
    for k in ("EM_RUN_PARENT_DIR", "EM_ARTIFACT_PARENT_DIR"):
        monkeypatch.setenv(k, env[k])
    data = tmp_path / "data.csv"
    data.write_text("x,y\n1,2\n")
    src = em.create_artifact("inputs")
    src.add_file(data)
    run = em.create_run(name="done-run", description="finished before em ui started")
    run.hparams["lr"] = 0.5
    for step in range(50):
        run.log("train", {"loss": 2.0 / (step + 1)}, step=step)
    run.mark_input(src)
    run.finish()
    yield tmp_path / "dot-em"


def test_em_ui_shows_finished_and_live_runs_without_sign_in(ui_dir: Path,
                                                            tmp_path: Path) -> None:
    env = _env(tmp_path)
    before = _snapshot(ui_dir)
    stop_file = tmp_path / "stop"
    live = subprocess.Popen([sys.executable, "-c", LIVE, str(stop_file)], env=env)
    port = free_port()
    ui = subprocess.Popen([sys.executable, "-m", "em_server.ui", str(ui_dir), "--port",
                           str(port)], env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True)
    try:
        assert ui.stdout is not None
        line = ui.stdout.readline()
        assert line.startswith(f"em ui: http://127.0.0.1:{port}/"), line
        api = httpx.Client(base_url=f"http://127.0.0.1:{port}/api/v1", timeout=30)
        assert api.get("/whoami").json()["local"] is True  # no key, no cookie

        def listed() -> dict[str, Any]:
            runs = api.get("/runs", params={"folder": "/local"}).json()["runs"]
            return {r["name"]: r for r in runs} if len(runs) == 2 else {}

        runs = _until("both runs listed", listed)
        assert runs["done-run"]["status"] == "Complete"
        assert runs["done-run"]["description"] == "finished before em ui started"
        done = api.get(f"/runs/{runs['done-run']['id']}").json()
        assert done["associations"]["inputs"][0]["path"].startswith("/local/")
        lid = runs["live-run"]["id"]

        def count() -> int:
            r = api.get(f"/runs/{lid}/series/points", params={"type": "train", "name": "loss"})
            return int(r.json()["count"]) if r.status_code == 200 else 0

        first = _until("the live run's first points", count)
        _until("the live run's points to grow", lambda: count() > first + 10)
        stop_file.touch()
        assert live.wait(60) == 0
        _until("the live run's final status", lambda: api.get(f"/runs/{lid}").json()[
            "status"] == "Complete")
        total = _until("every point", lambda: count() if count() == api.get(
            f"/runs/{lid}/series").json()["series"][0]["count"] else 0)
        local = em.load_run(next((ui_dir / "runs").glob("live-run_*")))
        assert total == len(local.metrics["train"])  # every point once, none lost
        assert _snapshot(ui_dir) == {**before, **{k: v for k, v in _snapshot(ui_dir).items()
                                                  if k.startswith("runs/live-run")}}
    finally:
        live.kill()
        ui.terminate()
        print(ui.communicate(timeout=20)[0])  # the console's log, shown when the test fails


def test_em_ui_refuses_to_listen_beyond_loopback(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    out = subprocess.run([sys.executable, "-m", "em_server.ui", str(tmp_path / "d"), "--host",
                          "0.0.0.0"], env=_env(tmp_path), capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 2 and "loopback" in out.stderr
    missing = subprocess.run([sys.executable, "-m", "em_server.ui", str(tmp_path / "nope")],
                             env=_env(tmp_path), capture_output=True, text=True, timeout=60)
    assert missing.returncode == 2 and "no such directory" in missing.stderr
