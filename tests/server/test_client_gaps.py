"""Client gaps of issue 12: a resumed run (or one loaded with ``auto_upload=True`` and
resumed) keeps uploading, and an interrupted chunked upload of a large file resumes from the
server's offset instead of starting again from zero."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

import em_core as em
from em_core import _upload
from em_core._client import Client
from em_core.errors import RemoteError

from . import test_client_e2e as e2e
from .test_client_e2e import KINDS, Server

env, server = e2e.env, e2e.server  # the fixtures: a server process that can be restarted


def _served_bytes(server: Server, path: str) -> bytes:
    info = server.get("/runs/by-path", path=path).json()
    return server.get(f"/runs/{info['id']}/metrics.bin").content


def test_resume_keeps_auto_uploading(server: Server, monkeypatch: pytest.MonkeyPatch) -> None:
    em.login(server.url, server.key)
    monkeypatch.setenv("EM_UPLOAD_INTERVAL", "0.05")
    run = em.create_run(name="twice", auto_upload=True, folder="r", make_folder=True)
    for i in range(200):
        run.log("train", {"loss": float(i)}, step=i)
    run.finish()  # Lightning ends its logger after fit, then resumes it for test
    run.resume()
    for i in range(200, 500):
        run.log("test", {"loss": float(i)}, step=i)
    run.finish()
    local = (Path(run.local) / "metrics.bin").read_bytes()
    assert _served_bytes(server, "/alice/r/twice") == local
    info = server.get("/runs/by-path", path="/alice/r/twice").json()
    assert info["status"] == "Complete" and len(info["meta"]["resumed"]) == 1


def test_load_run_with_auto_upload_uploads_once_resumed(
        server: Server, monkeypatch: pytest.MonkeyPatch) -> None:
    em.login(server.url, server.key)
    monkeypatch.setenv("EM_UPLOAD_INTERVAL", "0.05")
    run = em.create_run(name="later")  # recorded locally only
    for i in range(100):
        run.log("train", {"loss": float(i)}, step=i)
    run.finish()
    back = em.load_run(run.local, auto_upload=True, folder="l", make_folder=True)
    back.resume()
    for i in range(100, 300):
        back.log("train", {"loss": float(i)}, step=i)
    back.finish()
    local = (Path(run.local) / "metrics.bin").read_bytes()
    assert _served_bytes(server, "/alice/l/later") == local  # the first 100 points too
    assert back.remote and back.remote[-1]["path"] == "/alice/l/later"


@pytest.mark.parametrize("server", [k for k in KINDS if k == "real"], indirect=True)
def test_interrupted_large_upload_resumes_from_the_servers_offset(
        server: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # the chunked path of files over SINGLE_PUT (32 MiB), with small sizes for speed
    monkeypatch.setattr(_upload, "SINGLE_PUT", 100_000)
    monkeypatch.setattr(_upload, "CHUNK", 64 << 10)
    size = 1_000_000
    src = tmp_path / "weights.bin"
    src.write_bytes(os.urandom(size))
    art = em.create_artifact("weights")
    art.add_file(src)
    em.login(server.url, server.key)

    sent: list[tuple[int, int]] = []  # (offset, bytes) of every chunk PUT
    real = Client.request

    def request(self: Client, method: str, path: str, **kw: Any) -> Any:
        if method == "PUT" and path.startswith("/uploads/"):
            if fail_after is not None and len(sent) == fail_after:
                raise RemoteError("the network went away (simulated)")
            sent.append((int(kw["params"]["offset"]), len(kw["data"])))
        return real(self, method, path, **kw)

    monkeypatch.setattr(Client, "request", request)
    fail_after: int | None = 5
    with pytest.raises(RemoteError, match="simulated"):
        art.upload(folder="big", make_folder=True)
    assert [o for o, _ in sent] == [i * (64 << 10) for i in range(5)]
    del sent[:]
    fail_after = None
    where = art.upload(folder="big", make_folder=True)
    assert sent[0][0] == 5 * (64 << 10)  # from where the server was, not from zero
    assert sum(n for _, n in sent) == size - 5 * (64 << 10)
    os.environ["EM_ARTIFACT_PARENT_DIR"] = str(tmp_path / "back")
    back = em.load_artifact(where["path"])
    assert Path(back.file_path("weights.bin")).read_bytes() == src.read_bytes()
