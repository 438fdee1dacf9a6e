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


@pytest.mark.parametrize("bad", [0, 1, 63, 64, 700, 999, None])
def test_valid_end_stops_at_the_first_bad_record_of_a_long_run(tmp_path: Path,
                                                               bad: int | None) -> None:
    # valid_end checks runs of same-size records at once: a damaged record anywhere in the
    # run must still end it exactly there
    run = em.create_run(name="scan")
    for i in range(1000):
        run.log("train", {"loss": float(i)}, step=i)
    run.finish()
    data = bytearray((Path(run.local) / "metrics.bin").read_bytes())
    starts = [16]
    while starts[-1] < len(data):
        starts.append(starts[-1] + int.from_bytes(data[starts[-1]:starts[-1] + 4], "little"))
    first = starts[1]  # records after the schema record
    want = len(data)
    if bad is not None:
        at = starts[1 + bad]
        size = starts[2 + bad] - at
        data[at + size - 1] ^= 0xFF  # its trailer
        want = at
    assert _upload.valid_end(bytes(data), first, 0) == want
    assert _upload.valid_end(bytes(data[40:]), first, 40) == want  # a buffer from 40 on


def test_a_run_uploaded_without_associations_loads_back(
        server: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A run.json with no associations (written by an older em, or by hand) downloads as a
    run with none, not with ``null`` that breaks ``.associations``."""
    import json

    em.login(server.url, server.key)
    run = em.create_run(name="bare")
    run.log("train", {"loss": 1.0}, step=0)
    run.finish()
    meta_file = Path(run.local) / "run.json"
    meta = json.loads(meta_file.read_text())
    del meta["associations"]
    meta_file.write_text(json.dumps(meta))
    em.load_run(run.local).upload(folder="bare", make_folder=True)
    monkeypatch.setenv("EM_RUN_PARENT_DIR", str(tmp_path / "elsewhere"))
    back = em.load_run("/alice/bare/bare")
    assert Path(back.local).parent == tmp_path / "elsewhere"
    assert back.associations == {}
    assert len(back.metrics["train"]) == 1
