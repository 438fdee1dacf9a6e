"""The client against a real em server process: the seed's flow end to end, exactly-once
auto-upload across server SIGKILLs, a server that is down, and the CLI."""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

import em_core as em

REPO = Path(__file__).resolve().parents[2]
STANDIN = Path(__file__).with_name("_standin_server.py")
# "standin": a stdlib stand-in of the API (tests/server/_standin_server.py), so that the
# client is tested where the server's extra is not installed; "real": em_server itself,
# whenever the repository has it
KINDS = ["standin"] + (["real"] if (REPO / "em_server").is_dir() else [])
KEY_RE = re.compile(r"em_[A-Za-z0-9_-]{32,}")


def _free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = int(s.getsockname()[1])
    s.close()
    return port


class Server:
    """An em server process on a data directory; can be SIGKILLed and restarted."""

    def __init__(self, data: Path, env: dict[str, str], kind: str) -> None:
        self.data, self.env = data, env
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.user = "alice"
        if kind == "standin":
            self.key = "em_" + secrets.token_urlsafe(32)
            self.cmd = [sys.executable, str(STANDIN), str(data), str(self.port), self.key,
                        self.user]
            return
        self.cmd = [sys.executable, "-m", "em_server.cli", "--data", str(data), "start",
                    "--port", str(self.port)]
        out = subprocess.run([sys.executable, "-m", "em_server.cli", "--data", str(data), "user",
                              "add", self.user], env=env, capture_output=True, text=True,
                             timeout=120)
        assert out.returncode == 0, out.stderr
        found = KEY_RE.findall(out.stdout)
        assert found, "em server user add printed no key"
        self.key = found[-1]

    def start(self) -> None:
        self.proc = subprocess.Popen(
            self.cmd, env=self.env, stdout=subprocess.DEVNULL,
            stderr=open(self.data / "server.log", "ab"))
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if requests.get(self.url + "/api/v1/health", timeout=1).ok:
                    return
            except requests.ConnectionError:
                pass
            assert self.proc.poll() is None, (self.data / "server.log").read_text()[-2000:]
            time.sleep(0.05)
        raise AssertionError("the em server did not start within 60 s")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()
        self.proc = None

    def get(self, endpoint: str, /, **params: object) -> requests.Response:
        return requests.get(self.url + "/api/v1" + endpoint, params=params,  # type: ignore[arg-type]
                            headers={"Authorization": f"Bearer {self.key}"}, timeout=30)


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    monkeypatch.setenv("EM_CONFIG", str(tmp_path / "cfg" / "config.yaml"))
    monkeypatch.delenv("EM_HOST", raising=False)
    monkeypatch.delenv("EM_API_KEY", raising=False)
    e = {**os.environ, "PYTHONPATH": str(REPO)}
    e.pop("EM_STRICT", None)  # the training scripts behave as in production
    return e


@pytest.fixture(params=KINDS)
def server(request: pytest.FixtureRequest, tmp_path: Path,
           env: dict[str, str]) -> Iterator[Server]:
    data = tmp_path / "server-data"
    data.mkdir()
    srv = Server(data, env, request.param)
    srv.start()
    yield srv
    srv.kill()


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _no_key_under(root: Path, key: str) -> None:
    for p in root.rglob("*"):
        if p.is_file():
            assert key.encode() not in p.read_bytes(), f"the API key is written in {p}"


TRAIN = """
import sys, em_core as em
run = em.create_run(name="mnist", hparams={"lr": 0.1, "optim": {"name": "sgd"}})
for i in range(500):
    run.log("train", {"loss": 1.0 / (i + 1), "acc": i}, step=i, epoch=i // 100)
    if i % 100 == 99:
        run.log("val", {"loss": 2.0 / (i + 1)}, step=i)
open("model.bin", "wb").write(bytes(range(256)) * 4000)
art = em.create_artifact("model")
art.add_file("model.bin")
run.mark_output(art)
run.finish()
em.login()
print(run.upload(folder="em-examples", make_folder=True)["path"])
print(run.local)
"""


def test_seed_flow_end_to_end(server: Server, env: dict[str, str], tmp_path: Path) -> None:
    work = tmp_path / "train"
    work.mkdir()
    e = {**env, "EM_HOST": server.url, "EM_API_KEY": server.key,
         "EM_RUN_PARENT_DIR": str(work / ".em/runs"),
         "EM_ARTIFACT_PARENT_DIR": str(work / ".em/artifacts")}
    p = subprocess.run([sys.executable, "-c", TRAIN], cwd=work, env=e, capture_output=True,
                       text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    remote_path, local = p.stdout.split()
    assert remote_path == "/alice/em-examples/mnist"
    original = em.load_run(local)
    assert original.remote and original.remote[-1]["path"] == remote_path
    _no_key_under(work, server.key)
    assert server.key not in p.stderr + p.stdout

    # a second upload changes nothing on the server
    em.login(server.url, server.key)
    again = original.upload(folder="em-examples")
    assert again["path"] == remote_path and again["id"] == original.remote[-1]["id"]
    served = server.get(f"/runs/{again['id']}/metrics.bin").content
    assert served == (Path(local) / "metrics.bin").read_bytes()

    # from an empty directory
    os.environ["EM_RUN_PARENT_DIR"] = str(tmp_path / "empty/.em/runs")
    os.environ["EM_ARTIFACT_PARENT_DIR"] = str(tmp_path / "empty/.em/artifacts")
    back = em.load_run("/alice/em-examples/mnist")
    assert Path(back.local).parent == tmp_path / "empty/.em/runs"
    assert back.hparams.as_dict() == {"lr": 0.1, "optim": {"name": "sgd"}}
    assert back.metrics == original.metrics
    assert len(back.metrics["train"]) == 500 and len(back.metrics["val"]) == 5
    assert back.status == em.Status.COMPLETE
    out = back.associations["outputs"][0]
    assert out["path"] == f"/alice/em-examples/{out['name']}"  # where em download finds it
    art = em.load_artifact(f"em-examples/{out['name']}")  # relative: under the user
    f = Path(art.file_path("model.bin"))
    assert f.read_bytes() == bytes(range(256)) * 4000
    assert _sha(f) == art.objects["model.bin"]["sha256"]
    with pytest.raises(em.RemoteNotFoundError) as info:
        em.load_run("/alice/em-examples/nothing-here")
    assert isinstance(info.value, RuntimeError)


AUTO = """
import time, em_core as em
run = em.create_run(name="exact", auto_upload=True, folder="auto", make_folder=True)
for chunk in range(100):
    for i in range(chunk * 1000, chunk * 1000 + 1000):
        run.log("train", {"loss": i * 0.5}, step=i)
    time.sleep(0.06)
run.finish()
print(run.local)
"""


@pytest.mark.slow
def test_auto_upload_exactly_once_across_server_kills(server: Server, env: dict[str, str],
                                                       tmp_path: Path) -> None:
    em.login(server.url, server.key)  # the training process finds the saved context
    e = {**env, "EM_UPLOAD_INTERVAL": "0.1", "EM_UPLOAD_TIMEOUT": "60"}
    train = subprocess.Popen([sys.executable, "-c", AUTO], cwd=tmp_path, env=e,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for _ in range(2):
        time.sleep(1.5)
        server.kill()
        time.sleep(0.7)
        server.start()
    out, err = train.communicate(timeout=120)
    assert train.returncode == 0, err
    local = Path(out.split()[-1])
    run = em.load_run(local)
    remote = run.remote[-1]
    assert remote["path"] == "/alice/auto/exact"
    # byte-exact: the server holds every record once, in order
    served = server.get(f"/runs/{remote['id']}/metrics.bin").content
    assert served == (local / "metrics.bin").read_bytes()
    info = server.get("/runs/by-path", path="/alice/auto/exact").json()
    assert info["status"] == "Complete"
    series = server.get(f"/runs/{remote['id']}/series").json()["series"]
    assert [(s["type"], s["name"], s["count"]) for s in series] == [("train", "loss", 100_000)]
    assert server.key not in err and server.key not in out
    assert 1 <= err.count("is waiting") <= 2, err  # once per outage it noticed
    _no_key_under(local, server.key)


def test_server_down_never_stops_training_then_em_upload(server: Server, env: dict[str, str],
                                                         tmp_path: Path) -> None:
    em.login(server.url, server.key)
    server.kill()
    script = textwrap.dedent("""
        import em_core as em
        run = em.create_run(name="offline", auto_upload=True, folder="later", make_folder=True)
        for i in range(2000):
            run.log("train", {"loss": float(i)}, step=i)
        run.finish()
        print(run.local)
    """)
    # not UTC: the start time em ls --remote prints must be local time, as em ls prints it
    e = {**env, "EM_UPLOAD_INTERVAL": "0.1", "EM_UPLOAD_TIMEOUT": "1", "TZ": "America/New_York"}
    p = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=e, capture_output=True,
                       text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    assert p.stderr.count("is waiting") == 1, p.stderr
    assert "em upload" in p.stderr and "did not finish" in p.stderr
    local = Path(p.stdout.split()[-1])
    assert len(em.load_run(local).metrics["train"]) == 2000
    assert server.key not in p.stderr

    server.start()
    cli = [sys.executable, "-m", "em_core.cli"]
    up = subprocess.run([*cli, "upload", str(local), "--folder", "later", "--make-folder"],
                        env=env, capture_output=True, text=True, timeout=60)
    assert up.returncode == 0, up.stderr
    assert up.stdout.strip() == "/alice/later/offline"
    info = server.get("/runs/by-path", path="/alice/later/offline").json()
    served = server.get(f"/runs/{info['id']}/metrics.bin").content
    assert served == (local / "metrics.bin").read_bytes()
    assert info["status"] == "Complete"

    ls = subprocess.run([*cli, "ls", "--remote", "later"], env={**env, "TZ": e["TZ"]},
                        capture_output=True, text=True, timeout=60)
    assert ls.returncode == 0, ls.stderr
    path, status, started = ls.stdout.splitlines()[0].split("\t")
    assert (path, status) == ("/alice/later/offline", "Complete")
    # the start time as `em ls` prints it: local time to the second, like the local run's
    assert started == json.loads((local / "run.json").read_text())["start_timestamp"][:19]
    dl_dir = tmp_path / "dl"
    dl = subprocess.run([*cli, "download", "/alice/later/offline"], cwd=tmp_path,
                        env={**env, "EM_RUN_PARENT_DIR": str(dl_dir)}, capture_output=True,
                        text=True, timeout=60)
    assert dl.returncode == 0, dl.stderr
    got = Path(dl.stdout.strip())
    assert got.parent == dl_dir and (got / "metrics.bin").read_bytes() == served
    assert json.loads((got / "run.json").read_text())["status"] == "Complete"


def test_upload_a_whole_em_dir_twice_creates_nothing_new(server: Server, env: dict[str, str],
                                                         tmp_path: Path) -> None:
    runs = [em.create_run(name=f"r{i}") for i in range(3)]
    (tmp_path / "src").mkdir()
    for r in runs:
        r.log("train", {"x": 1}, step=0)
        r.finish()
    inner = tmp_path / "src" / "run.json"  # an artifact may hold a file named run.json
    inner.write_text('{"not": "a run"}')
    em.create_artifact("configs").add_file(inner)
    inner.unlink()
    em.login(server.url, server.key)
    first = em.upload(tmp_path, folder="many", make_folder=True)
    second = em.upload(tmp_path, folder="many")
    assert len(first) == 4
    assert sorted(x["id"] for x in first) == sorted(x["id"] for x in second)
    listed = server.get("/runs", folder="/alice/many").json()
    assert listed["total"] == 3


def test_large_artifact_goes_in_chunks_and_comes_back_whole(
        server: Server, env: dict[str, str], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    from em_core import _upload

    monkeypatch.setattr(_upload, "SINGLE_PUT", 10_000)  # "large" for this test
    monkeypatch.setattr(_upload, "CHUNK", 4096)
    src = tmp_path / "weights.bin"
    src.write_bytes(os.urandom(50_000))
    art = em.create_artifact("weights")
    art.add_file(src, "ckpt/")
    art.add_reference("s3://bucket/data.tar")
    em.login(server.url, server.key)
    where = art.upload(folder="arts", make_folder=True)
    assert where["path"] == "/alice/arts/weights" and art.remote[-1] == where
    assert art.upload(folder="arts")["id"] == where["id"]  # again: the same artifact
    os.environ["EM_ARTIFACT_PARENT_DIR"] = str(tmp_path / "elsewhere")
    back = em.load_artifact("/alice/arts/weights")
    assert Path(back.local).parent == tmp_path / "elsewhere"
    assert Path(back.file_path("ckpt/weights.bin")).read_bytes() == src.read_bytes()
    assert back.objects["data.tar"]["uri"] == "s3://bucket/data.tar"


def test_em_upload_shows_progress_on_a_terminal(server: Server, env: dict[str, str],
                                               tmp_path: Path) -> None:
    import pty

    run = em.create_run(name="bar")
    for i in range(5000):
        run.log("train", {"loss": float(i)}, step=i)
    run.finish()
    em.login(server.url, server.key)
    master, slave = pty.openpty()
    p = subprocess.Popen([sys.executable, "-m", "em_core.cli", "upload", run.local,
                          "--folder", "bars", "--make-folder"], env=env,
                         stdout=subprocess.PIPE, stderr=slave, text=True)
    os.close(slave)
    out, _ = p.communicate(timeout=60)
    shown = b""
    while True:
        try:
            chunk = os.read(master, 4096)
        except OSError:  # EIO: the other side is closed
            break
        if not chunk:
            break
        shown += chunk
    os.close(master)
    assert p.returncode == 0
    assert out.strip() == "/alice/bars/bar"
    assert b"run bar" in shown and b"100%" in shown
    # and nothing of the kind when stderr is not a terminal
    again = subprocess.run([sys.executable, "-m", "em_core.cli", "upload", run.local,
                            "--folder", "bars"], env=env, capture_output=True, text=True,
                           timeout=60)
    assert again.returncode == 0 and again.stderr == ""


def test_run_round_trip(server: Server, tmp_path: Path) -> None:
    run = em.create_run(name="mnist", hparams={"lr": 0.1, "layers": [64, 32]},
                        labels=["baseline"])
    for i in range(300):
        run.log("train", {"loss": 1.0 / (i + 1), "n": i}, step=i, epoch=i // 100)
    run.log("val", {"loss": float("nan"), "acc": float("inf")}, step=299)
    run.hparams["lr"] = 0.05  # a change after the start travels too
    run.finish()
    em.login(server.url, server.key)
    first = run.upload(folder="em-examples", make_folder=True)
    assert first["path"] == "/alice/em-examples/mnist" and run.remote == [first]
    assert run.upload(folder="em-examples") == first  # again: the same run, nothing added
    assert server.get(f"/runs/{first['id']}/metrics/length").json()["length"] == \
        (Path(run.local) / "metrics.bin").stat().st_size
    os.environ["EM_RUN_PARENT_DIR"] = str(tmp_path / "empty")
    back = em.load_run("em-examples/mnist")  # relative: under the logged-in user
    assert Path(back.local).parent == tmp_path / "empty"
    assert back.hparams.as_dict() == {"lr": 0.05, "layers": [64, 32]}
    assert back.labels == ["baseline"]
    assert back.status == em.Status.COMPLETE
    assert str(back.metrics) == str(run.metrics)  # NaN != NaN: compare the text
    assert len(back.metrics["train"]) == 300
    with pytest.raises(em.RemoteNotFoundError) as info:
        em.load_run("/alice/em-examples/absent")
    assert isinstance(info.value, RuntimeError)
    _no_key_under(tmp_path / "runs", server.key)
    _no_key_under(tmp_path / "empty", server.key)


def test_auto_upload_in_a_with_block(server: Server, monkeypatch: pytest.MonkeyPatch) -> None:
    em.login(server.url, server.key)
    monkeypatch.setenv("EM_UPLOAD_INTERVAL", "0.05")
    with em.create_run(name="block", auto_upload=True, folder="w", make_folder=True) as run:
        for i in range(1000):
            run.log("train", {"loss": float(i)}, step=i)
        run.hparams["late"] = True
    assert run.remote and run.remote[-1]["path"] == "/alice/w/block"
    saved = json.loads((Path(run.local) / "run.json").read_text())
    assert saved["remote"] == run.remote  # recorded in run.json by the run itself
    info = server.get("/runs/by-path", path="/alice/w/block").json()
    assert info["status"] == "Complete" and info["meta"]["hparams"]["late"] is True
    served = server.get(f"/runs/{info['id']}/metrics.bin").content
    assert served == (Path(run.local) / "metrics.bin").read_bytes()
