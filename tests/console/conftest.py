"""Browser tests of the web console: Debian's chromium driven by Playwright against a real
``em server`` process (SQLite) holding runs recorded by the project's examples.

Screenshots of every page go to ``$EM_CONSOLE_SHOTS`` (the nox session sets it to
``.nox/console/tmp/console-shots``), else to pytest's base temporary directory.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

REPO = Path(__file__).resolve().parents[2]
#: a real Caffe training log (1,293 lines), piped through `em caffe --upload`
CAFFE_LOG = REPO.parent / "shared" / "corpus" / "caffe" / "qiexing__caffe-regression__caffe.log"
CHROMIUM = "/usr/bin/chromium"
KEY_RE = re.compile(r"em_[A-Za-z0-9_-]{32,}")
# planted in every user-supplied field; any of them running sets window.__pwned
PAYLOADS = ['<img src=x onerror="window.__pwned=1">', "<svg onload=window.__pwned=2>",
            '"><script>window.__pwned=3</script>', "javascript:window.__pwned=4"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def env_for(srv: Server | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env.pop("EM_STRICT", None)
    if srv is not None:
        env.update(EM_HOST=srv.url, EM_API_KEY=srv.key, EM_CONFIG=str(srv.tmp / "config.yaml"),
                   EM_UPLOAD_INTERVAL="0.5")
    return env


@dataclass
class Server:
    url: str
    key: str
    tmp: Path
    proc: subprocess.Popen[bytes]
    runs: dict[str, str] = field(default_factory=dict)  # role -> run id

    def api(self) -> httpx.Client:
        return httpx.Client(base_url=self.url + "/api/v1", timeout=30,
                            headers={"Authorization": f"Bearer {self.key}"})

    def record(self, tag: str, code: str) -> subprocess.Popen[bytes]:
        """Start ``code`` (Python) in its own directory, logged in to this server."""
        cwd = self.tmp / tag
        cwd.mkdir()
        script = cwd / "script.py"
        script.write_text(textwrap.dedent(code))
        return subprocess.Popen([sys.executable, str(script)], cwd=cwd, env=env_for(self),
                                stdout=subprocess.DEVNULL, stderr=open(cwd / "stderr", "wb"))

    def find(self, name: str, why: str = "") -> dict[str, Any]:
        with self.api() as c:
            r = c.get("/runs", params={"folder": "/alice", "recursive": True, "name": name})
            r.raise_for_status()
            runs = r.json()["runs"]
        assert runs, f"no run named {name!r}\n{why}"
        return dict(runs[0])


def _start(cmd: list[str], url: str, log: Path) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(cmd, stdout=open(log, "ab"), stderr=subprocess.STDOUT, env=env_for())
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(url + "/api/v1/health", timeout=2).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        if proc.poll() is not None:
            break
        time.sleep(0.1)
    proc.kill()
    raise RuntimeError("server did not start:\n" + log.read_text())


def start_server(tmp: Path) -> Server:
    """``em server start`` on a fresh data directory, with user alice."""
    data = tmp / "server-data"
    out = subprocess.run([sys.executable, "-m", "em_server.cli", "--data", str(data), "user",
                          "add", "alice"], capture_output=True, text=True, env=env_for(),
                         timeout=120, check=True)
    key = KEY_RE.findall(out.stdout)[-1]
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    cmd = [sys.executable, "-m", "em_server.cli", "--data", str(data), "start", "--port",
           str(port)]
    proc = _start(cmd, url, tmp / "server.log")
    return Server(url, key, tmp, proc)


RECORD = """
# every recorded run in one process (one import of em and numpy), each in its own directory,
# then uploaded as `em upload DIR --folder F --make-folder` does
import os, sys
import em_core as em
sys.path.insert(0, {examples!r})
import numpy_mlp

P = {payloads!r}
top = os.getcwd()

def record(tag, folder, fn):
    os.makedirs(tag)
    os.chdir(tag)
    try:
        fn()
    except RuntimeError:
        pass  # the run failed on purpose
    os.chdir(top)
    em.upload(os.path.join(top, tag, ".em"), folder=folder, make_folder=True)

def broken():
    with em.create_run(name="broken", hparams={{"lr": 0.5, "optimizer": {{"name": "sgd"}}}},
                       labels=["failing"], description="raises on purpose") as run:
        for i in range(5):
            run.log("train", {{"loss": 1.0 / (i + 1)}}, step=i)
        raise RuntimeError("diverged at step 5")

def payload():
    hp = {{p: p for p in P}}
    hp["nested"] = {{P[0]: {{P[1]: P[2]}}}}
    with em.create_run(name=P[0], hparams=hp, labels=P, description=" ".join(P)) as run:
        for i in range(20):
            run.log("train", {{P[1]: float(i), "loss": 1.0 / (i + 1)}}, step=i)
            run.log(P[1], {{"x": float(i)}}, step=i)

record("mlp-a", "examples", lambda: numpy_mlp.main(
    ["--name", "mlp-a", "--epochs", "3", "--lr", "0.1", "--hidden", "32"]))
record("mlp-b", "examples", lambda: numpy_mlp.main(
    ["--name", "mlp-b", "--epochs", "3", "--lr", "0.05", "--hidden", "16"]))
record("broken", "other/failing", broken)
record("payload", "payloads", payload)
"""

LIVE = """
import time
import em_core as em
with em.create_run(name="live", hparams={"lr": 0.01}, auto_upload=True, folder="live",
                   make_folder=True) as run:
    for i in range(600):
        run.log("train", {"loss": 1.0 / (i + 1)}, step=i)
        time.sleep(0.1)
"""


def _caffe_run(srv: Server) -> str:
    """`em caffe --upload` fed a real Caffe log; the run's id once the server has its whole
    console.log."""
    cwd = srv.tmp / "caffe"
    cwd.mkdir()
    with open(CAFFE_LOG, "rb") as log:
        out = subprocess.run([sys.executable, "-m", "integrations.caffe", "--name", "caffe-log",
                              "--upload", "--folder", "caffe", "--make-folder"],
                             stdin=log, cwd=cwd, env=env_for(srv), capture_output=True,
                             timeout=180)
    assert out.returncode == 0, out.stderr.decode()
    assert out.stdout == CAFFE_LOG.read_bytes()  # passed through byte for byte
    run = srv.find("caffe-log", out.stderr.decode())
    assert run["status"] == "Complete", run
    return str(run["id"])


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = start_server(tmp_path_factory.mktemp("console"))
    srv.record("runs", RECORD.format(examples=str(REPO / "examples"),
                                     payloads=PAYLOADS)).wait(180)
    err = (srv.tmp / "runs" / "stderr").read_text()
    for name in ("mlp-a", "mlp-b", "broken"):
        srv.runs[name] = srv.find(name, err)["id"]
    srv.runs["payload"] = srv.find(PAYLOADS[0], err)["id"]
    srv.runs["caffe"] = _caffe_run(srv)
    yield srv
    srv.proc.terminate()
    try:
        srv.proc.wait(10)
    except subprocess.TimeoutExpired:
        srv.proc.kill()


@pytest.fixture(scope="session")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = Path(os.environ.get("EM_CONSOLE_SHOTS") or tmp_path_factory.getbasetemp() / "console-shots")
    d.mkdir(parents=True, exist_ok=True)
    return d


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield b
        b.close()


class Console:
    """A signed-in browser page on the server, with helpers."""

    def __init__(self, page: Any, srv: Server, shots: Path) -> None:
        self.page, self.srv, self.shots = page, srv, shots
        self.errors: list[str] = []
        page.on("pageerror", lambda e: self.errors.append(str(e)))

    def goto(self, path: str) -> Any:
        self.page.goto(self.srv.url + path)
        self.ready()
        return self.page

    def ready(self) -> None:
        self.page.wait_for_selector("main[data-ready='1']", timeout=20_000)

    def shot(self, name: str) -> None:
        self.page.screenshot(path=str(self.shots / f"{name}.png"), full_page=True)

    def sign_in(self) -> None:
        self.page.goto(self.srv.url + "/signin")
        self.page.fill("#api-key", self.srv.key)
        self.page.click("button[type=submit]")
        self.page.wait_for_url("**/runs**")
        self.ready()

    def charts(self) -> list[dict[str, Any]]:
        return list(self.page.evaluate("window.emConsole.charts.map(c => c.describe())"))


@pytest.fixture
def anon(browser: Any, server: Server, shots: Path) -> Iterator[Console]:
    """A browser page that has not signed in; checked for page errors and payloads at the end."""
    # bypass_csp: page.wait_for_function needs eval; it also shows that the payloads stay
    # inert by how the console renders them, without help from its Content-Security-Policy
    ctx = browser.new_context(viewport={"width": 1280, "height": 900}, bypass_csp=True)
    c = Console(ctx.new_page(), server, shots)
    yield c
    assert c.page.evaluate("window.__pwned") is None
    assert not c.errors, c.errors
    ctx.close()


@pytest.fixture
def console(anon: Console) -> Console:
    """A signed-in browser page."""
    anon.sign_in()
    return anon


@pytest.fixture(scope="session")
def caffe_log() -> Path:
    """The Caffe log the server's `caffe-log` run was recorded from."""
    return CAFFE_LOG


@pytest.fixture(scope="session")
def payloads() -> list[str]:
    return PAYLOADS


def _flat(d: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(d, dict) and d:
        out: dict[str, Any] = {}
        for k, v in d.items():
            out.update(_flat(v, f"{prefix}.{k}" if prefix else k))
        return out
    return {prefix: d}


@pytest.fixture(scope="session")
def flat() -> Any:
    """Nested hyperparameters as {dotted.key: value}."""
    return _flat


@pytest.fixture
def live_run(server: Server) -> Iterator[str]:
    """A run still training (logging every 0.1 s), auto-uploaded; yields its id once the
    server has its first points."""
    proc = server.record("live", LIVE)
    try:
        deadline = time.monotonic() + 60
        while True:
            with server.api() as c:
                runs = c.get("/runs", params={"folder": "/alice", "recursive": True,
                                              "name": "live"}).json()["runs"]
                if runs and c.get(f"/runs/{runs[0]['id']}/series").json()["series"]:
                    break
            assert proc.poll() is None, (server.tmp / "live" / "stderr").read_text()
            assert time.monotonic() < deadline, "the live run never reached the server"
            time.sleep(0.2)
        yield str(runs[0]["id"])
    finally:
        proc.terminate()
        proc.wait(30)


@pytest.fixture
def em_ui(server: Server, tmp_path: Path) -> Iterator[str]:
    """``em ui DIR`` (python -m em_server.ui) on the .em directory mlp-a was recorded in;
    yields the address it prints."""
    top = server.tmp / "runs" / "mlp-a" / ".em"
    proc = subprocess.Popen([sys.executable, "-m", "em_server.ui", str(top), "--port",
                             str(free_port()), "--data", str(tmp_path / "ui-data")],
                            stdout=subprocess.PIPE, stderr=open(tmp_path / "ui.log", "wb"),
                            text=True, env=env_for())
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()  # "em ui: http://127.0.0.1:P/ (runs in DIR)"
        m = re.search(r"http://127\.0\.0\.1:\d+/", line)
        assert m, line + (tmp_path / "ui.log").read_text()
        yield m.group(0).rstrip("/")
    finally:
        proc.terminate()
        proc.wait(30)
