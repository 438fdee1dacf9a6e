"""em.login / em.logout, the user config file, and login errors, against real sockets: a
small HTTP server in a thread that answers like an em server, a closed loopback port, and a
socket that accepts connections and never answers."""

from __future__ import annotations

import json
import logging
import os
import socket
import stat
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

import em_core as em
from em_core import _uploader
from em_core.errors import EmError, LoginError, RemoteNotFoundError

GOOD = "em_" + "g" * 40
BAD = "em_" + "b" * 40
REPO = Path(__file__).resolve().parents[2]


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass

    def _send(self, code: int, body: object) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        if self.headers.get("Authorization") != f"Bearer {GOOD}":
            self._send(401, {"detail": "invalid or revoked API key"})
        elif self.path == "/api/v1/whoami":
            self._send(200, {"user": "alice", "key_id": 1})
        else:
            self._send(404, {"detail": f"nothing at {self.path.split('?')[0]}"})


@pytest.fixture
def fake_server() -> Iterator[str]:
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()
    srv.server_close()


@pytest.fixture(autouse=True)
def user_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    cfg = tmp_path / "cfg" / "config.yaml"
    monkeypatch.setenv("EM_CONFIG", str(cfg))
    monkeypatch.delenv("EM_HOST", raising=False)
    monkeypatch.delenv("EM_API_KEY", raising=False)
    return cfg


def _closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = int(s.getsockname()[1])
    s.close()
    return port


def test_login_saves_context_mode_0600(fake_server: str, user_config: Path) -> None:
    assert em.login(fake_server, GOOD) == "alice"
    assert stat.S_IMODE(user_config.stat().st_mode) == 0o600
    data = yaml.safe_load(user_config.read_text())
    ctx = data["contexts"][data["current_context"]]
    assert ctx == {"host": fake_server, "api_key": GOOD, "user": "alice"}
    # defaults now come from the file: a second login needs no arguments
    assert em.login() == "alice"


def test_env_overrides_context(fake_server: str, user_config: Path,
                               monkeypatch: pytest.MonkeyPatch) -> None:
    from em_core._userconfig import current

    em.login(fake_server, GOOD)
    monkeypatch.setenv("EM_HOST", "http://127.0.0.1:1")
    monkeypatch.setenv("EM_API_KEY", BAD)
    ctx = current()
    assert (ctx.host, ctx.api_key, ctx.user) == ("http://127.0.0.1:1", BAD, None)
    assert BAD not in repr(ctx)


def test_bad_key_fails_clearly_without_showing_it(fake_server: str, user_config: Path) -> None:
    with pytest.raises(LoginError, match="refused the API key") as info:
        em.login(fake_server, BAD)
    assert isinstance(info.value, RuntimeError) and isinstance(info.value, EmError)
    assert BAD not in str(info.value) and BAD not in repr(info.value)
    assert not user_config.exists()  # nothing saved


def test_wrong_address_fails_clearly() -> None:
    port = _closed_port()
    with pytest.raises(LoginError, match=rf"cannot reach the em server at http://127.0.0.1:{port}"
                                         r" \(connection refused\)") as info:
        em.login(f"127.0.0.1:{port}", GOOD)
    assert GOOD not in str(info.value)


def test_timeout_fails_clearly() -> None:
    # a real socket that accepts connections (the kernel's backlog) and never answers
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    try:
        host = f"http://127.0.0.1:{srv.getsockname()[1]}"
        with pytest.raises(LoginError, match=r"did not answer within 0.3 s") as info:
            em.login(host, GOOD, timeout=0.3)
        assert GOOD not in str(info.value)
    finally:
        srv.close()


def test_login_without_key_says_how(fake_server: str) -> None:
    with pytest.raises(LoginError, match="no API key"):
        em.login(fake_server)


@pytest.mark.parametrize("kwargs, exc", [({"timeout": -1}, ValueError),
                                         ({"timeout": "5"}, ValueError),
                                         ({"api_key": 5}, TypeError),
                                         ({"ais_host": "ftp://x"}, ValueError)])
def test_bad_arguments(kwargs: dict[str, object], exc: type[Exception]) -> None:
    args: dict[str, object] = {"ais_host": "http://127.0.0.1:1", "api_key": GOOD, **kwargs}
    with pytest.raises(exc):
        em.login(**args)  # type: ignore[arg-type]


def test_logout_forgets_key(fake_server: str, user_config: Path) -> None:
    em.login(fake_server, GOOD)
    em.logout()
    data = yaml.safe_load(user_config.read_text())
    assert "api_key" not in data["contexts"]["default"]
    assert GOOD not in user_config.read_text()
    assert data["contexts"]["default"]["host"] == fake_server
    with pytest.raises(LoginError, match="not logged in"):
        em.upload(".", folder="x")


def test_remote_not_found_is_a_runtime_error(fake_server: str) -> None:
    em.login(fake_server, GOOD)
    with pytest.raises(RemoteNotFoundError) as info:
        em.load_run("/alice/nowhere/none")
    assert isinstance(info.value, RuntimeError)
    with pytest.raises(RuntimeError):
        em.load_artifact("nowhere/none")


def test_local_missing_path_without_login_is_still_not_a_run() -> None:
    with pytest.raises(em.NotARunError):
        em.load_run("/alice/nowhere/none")


def test_auto_upload_without_login_says_so_once(caplog: pytest.LogCaptureFixture,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_uploader, "_said_no_login", False)
    with caplog.at_level(logging.WARNING, logger="em"):
        runs = [em.create_run(name="noauth", auto_upload=True) for _ in range(2)]
        for r in runs:
            r.log("train", {"loss": 1.0}, step=1)
            r.finish()
    said = [r.getMessage() for r in caplog.records if "auto_upload=True" in r.getMessage()]
    assert len(said) == 1
    assert "recorded locally" in said[0] and "em upload" in said[0]
    assert runs[0].metrics["train"][0]["value"] == {"loss": 1.0}
    assert runs[0].upload_options["auto_upload"] is True


def test_cli_login_logout(fake_server: str, user_config: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO), "EM_CONFIG": str(user_config)}
    cmd = [sys.executable, "-m", "em_core.cli"]
    # the key read from stdin: it stays out of argv
    p = subprocess.run([*cmd, "login", "--host", fake_server], input=BAD + "\n", env=env,
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 2 and "refused the API key" in p.stderr
    assert BAD not in p.stderr + p.stdout
    p = subprocess.run([*cmd, "login", "--host", fake_server], input=GOOD + "\n", env=env,
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == "logged in as alice"
    p = subprocess.run([*cmd, "logout"], env=env, capture_output=True, text=True, timeout=60)
    assert p.returncode == 0 and GOOD not in user_config.read_text()


def test_only_rank_0_auto_uploads(fake_server: str, monkeypatch: pytest.MonkeyPatch) -> None:
    em.login(fake_server, GOOD)
    monkeypatch.setenv("EM_ALL_RANKS", "1")
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    run = em.create_run(name="ranked", auto_upload=True)
    assert run.name == "ranked-rank1"
    assert run._uploader is None  # type: ignore[union-attr]
    run.finish()


def test_refused_key_stops_auto_upload_once(fake_server: str, caplog: pytest.LogCaptureFixture,
                                            monkeypatch: pytest.MonkeyPatch,
                                            user_config: Path) -> None:
    em.login(fake_server, GOOD)
    monkeypatch.setenv("EM_API_KEY", BAD)  # revoked since login, say
    monkeypatch.setenv("EM_UPLOAD_TIMEOUT", "5")
    with caplog.at_level(logging.WARNING, logger="em"):
        run = em.create_run(name="refused", auto_upload=True)
        run.log("train", {"loss": 1.0}, step=0)
        run.finish()
    said = [r.getMessage() for r in caplog.records]
    assert any("refused the API key" in m and "em upload" in m for m in said), said
    assert all(BAD not in m and GOOD not in m for m in said)
    assert "not yet uploaded: the whole run" in " ".join(said)
    assert run.status == em.Status.COMPLETE
    for p in Path(run.local).iterdir():
        assert BAD.encode() not in p.read_bytes() and GOOD.encode() not in p.read_bytes()


def test_saved_key_is_not_sent_to_another_host(fake_server: str) -> None:
    em.login(fake_server, GOOD)
    other = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    seen: list[str | None] = []

    class Spy(_Handler):
        def do_GET(self) -> None:
            seen.append(self.headers.get("Authorization"))
            super().do_GET()

    other.RequestHandlerClass = Spy
    t = threading.Thread(target=other.serve_forever, daemon=True)
    t.start()
    try:
        with pytest.raises(LoginError, match="no API key"):
            em.login(f"http://127.0.0.1:{other.server_address[1]}")
        assert seen == []
    finally:
        other.shutdown()
        other.server_close()


def test_key_not_in_debug_logs(fake_server: str, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG):
        em.login(fake_server, GOOD)
        with pytest.raises(LoginError):
            em.login(fake_server, BAD)
        with pytest.raises(RemoteNotFoundError):
            em.load_run("/alice/x/y")
    assert caplog.records  # urllib3 did log the requests
    for r in caplog.records:
        assert GOOD not in r.getMessage() and BAD not in r.getMessage()
