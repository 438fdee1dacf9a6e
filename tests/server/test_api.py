"""The server as a real process: auth, folders, runs, conflict strategies, metric ranges
applied exactly once, series and downsampled points, users kept apart, grants, revoked keys."""

from __future__ import annotations

import json
import math
import struct
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

import em_core as em
from em_core._metricfile import _valid_end

from .conftest import Server

HEAD = struct.Struct("<II")


def boundaries(data: bytes) -> list[int]:
    """Record boundaries of a metrics.bin (after the 16-byte header)."""
    out, pos = [16], 16
    while pos < len(data):
        size = HEAD.unpack_from(data, pos)[0]
        pos += size
        out.append(pos)
    return out


def local_run(n: int = 1000) -> tuple[Any, bytes]:
    run = em.create_run(name="mnist", hparams={"lr": 0.1}, labels=["a"])
    for i in range(n):
        run.log("train", {"loss": math.sin(i / 50) + (5.0 if i == 777 else 0.0),
                          "acc": i / n}, step=i)
        if i % 100 == 0:
            run.log("val", {"loss": float(i)}, step=i, epoch=i // 100)
    run.finish()
    path = Path(run._path)
    meta = json.loads((path / "run.json").read_text())
    end, _ = _valid_end(str(path / "metrics.bin"))
    return meta, (path / "metrics.bin").read_bytes()[:end]


def test_health_needs_no_key_and_everything_else_does(server: Server, alice: str) -> None:
    with server.client(None) as c:
        assert c.get("/health").json()["status"] == "ok"
        r = c.get("/whoami")
        assert r.status_code == 401 and r.json() == {"detail": "invalid or revoked API key"}
        assert c.get("/folders", params={"path": "/alice"}).status_code == 401
        r = c.get("/whoami", headers={"Authorization": "Bearer em_nottherightkey"})
        assert r.status_code == 401 and "em_nottherightkey" not in r.text
    with server.client(alice) as c:
        assert c.get("/whoami").json()["user"] == "alice"
    assert alice not in server.log.read_text()


def test_openapi_schema_is_served(server: Server) -> None:
    r = httpx.get(server.url + "/api/v1/openapi.json")
    assert r.status_code == 200 and "/api/v1/runs/{run_id}/metrics" in r.json()["paths"]


def test_folders_create_list_move_delete(server: Server, alice: str) -> None:
    with server.client(alice) as c:
        assert c.post("/folders", json={"path": "/alice/f1/a/b"}).status_code == 404
        assert c.post("/folders", json={"path": "/alice/f1/a/b", "parents": True}).status_code \
            == 201
        assert c.post("/folders", json={"path": "/alice/f1/a"}).status_code == 409
        assert c.post("/folders", json={"path": "/alice/f1/a", "exist_ok": True}).status_code \
            == 201
        listing = c.get("/folders", params={"path": "/alice/f1"}).json()
        assert listing["folders"] == [{"path": "/alice/f1/a", "name": "a"}]
        assert c.post("/folders/move", json={"src": "/alice/f1/a", "dst": "/alice/f1/z"}).json() \
            == {"path": "/alice/f1/z"}
        assert c.get("/folders", params={"path": "/alice/f1/z/b"}).status_code == 200
        assert c.get("/folders", params={"path": "/alice/f1/a"}).status_code == 404
        assert c.delete("/folders", params={"path": "/alice/f1"}).status_code == 409
        assert c.delete("/folders", params={"path": "/alice/f1", "recursive": True}) \
            .status_code == 204
        assert c.get("/folders", params={"path": "/alice/f1/z"}).status_code == 404
        for bad in ("/alice/../bob", "/alice/a\x07b", "alice/x", "/alice/./x"):
            r = c.post("/folders", json={"path": bad, "parents": True})
            assert r.status_code == 400 and "detail" in r.json(), bad


def _meta(name: str, alt: str, **kw: Any) -> dict[str, Any]:
    return {"name": name, "alternative_name": alt, "status": "finished", "hparams": {"lr": 1},
            "labels": kw.get("labels", []), "description": "", "start_timestamp": 1.0, **kw}


def test_run_upload_is_idempotent_and_conflicts_follow_the_strategy(server: Server,
                                                                     alice: str) -> None:
    with server.client(alice) as c:
        body = {"folder": "/alice/cf", "make_folder": True, "conflict_strategy": "error",
                "meta": _meta("r", "r_1")}
        first = c.post("/runs", json=body)
        assert first.status_code == 201 and first.json()["state"] == "created"
        again = c.post("/runs", json=body)
        assert again.status_code == 200 and again.json()["state"] == "existing"
        assert again.json()["id"] == first.json()["id"]
        other = dict(body, meta=_meta("r", "r_2"))
        r = c.post("/runs", json=other)
        assert r.status_code == 409 and "'r' already exists in /alice/cf" in r.json()["detail"]
        r = c.post("/runs", json=dict(other, conflict_strategy="skip"))
        assert r.json()["state"] == "skipped" and r.json()["id"] == first.json()["id"]
        r = c.post("/runs", json=dict(other, conflict_strategy="new"))
        assert r.status_code == 201 and r.json()["path"] == "/alice/cf/r_2"
        r = c.post("/runs", json=dict(body, conflict_strategy="replace",
                                      meta=_meta("r", "r_3", labels=["x"])))
        assert r.status_code == 201 and r.json()["path"] == "/alice/cf/r"
        assert c.get(f"/runs/{first.json()['id']}").status_code == 404
        assert c.get("/runs/by-path", params={"path": "/alice/cf/r"}).json()["labels"] == ["x"]
        listed = c.get("/runs", params={"folder": "/alice/cf", "label": "x"}).json()
        assert listed["total"] == 1 and listed["runs"][0]["alternative_name"] == "r_3"
        assert c.get("/runs", params={"folder": "/alice/cf"}).json()["total"] == 2
        page = c.get("/runs", params={"folder": "/alice/cf", "page_size": 1, "page": 2}).json()
        assert page["total"] == 2 and len(page["runs"]) == 1
        r = c.post("/runs", json=dict(body, folder="/alice/none", make_folder=False,
                                      meta=_meta("q", "q_1")))
        assert r.status_code == 404


def test_metric_ranges_apply_exactly_once_and_read_back(server: Server, alice: str) -> None:
    meta, data = local_run()
    with server.client(alice) as c:
        rid = c.post("/runs", json={"folder": "/alice/m", "meta": meta}).json()["id"]
        assert c.get(f"/runs/{rid}/metrics/length").json() == {"length": 0}
        cuts = boundaries(data)
        a, b = cuts[len(cuts) // 3], cuts[2 * len(cuts) // 3]
        put = lambda lo, hi: c.put(f"/runs/{rid}/metrics", params={"offset": lo},  # noqa: E731
                                   content=data[lo:hi],
                                   headers={"Content-Type": "application/octet-stream"})
        r = put(0, a)
        assert r.status_code == 200 and r.json()["length"] == a and r.json()["applied"] > 0
        assert put(0, a).json() == {"length": a, "applied": 0}  # a retry
        r = put(b, len(data))
        assert r.status_code == 409 and r.json()["length"] == a
        bad = bytearray(data[a:b])
        bad[-1] ^= 0xFF  # a broken trailer on the last record: nothing of it is applied
        r = c.put(f"/runs/{rid}/metrics", params={"offset": a}, content=bytes(bad),
                  headers={"Content-Type": "application/octet-stream"})
        assert r.status_code == 400 and "nothing applied" in r.json()["detail"]
        assert c.get(f"/runs/{rid}/metrics/length").json() == {"length": a}
        r = put(cuts[1], b)  # overlaps what is stored: only the new part is applied
        assert r.status_code == 200 and r.json()["length"] == b
        assert put(b, len(data)).json()["length"] == len(data)
        assert c.get(f"/runs/{rid}/metrics.bin").content == data
        series = {(s["type"], s["name"]): s for s in c.get(f"/runs/{rid}/series").json()["series"]}
        assert series[("train", "loss")]["count"] == 1000
        assert series[("val", "loss")]["count"] == 10
        pts = c.get(f"/runs/{rid}/series/points", params={"type": "train", "name": "loss"}).json()
        assert pts["step"] == list(range(1000)) and pts["downsampled"] is False
        assert pts["value"][10] == math.sin(10 / 50)
        assert pts["epoch"] is None
        val = c.get(f"/runs/{rid}/series/points", params={"type": "val", "name": "loss"}).json()
        assert val["epoch"] == list(range(10))
        view = c.get(f"/runs/{rid}/series/points", params={
            "type": "train", "name": "loss", "max_points": 100}).json()
        assert view["downsampled"] is True and view["count"] == 1000
        assert len(view["value"]) <= 100
        assert max(view["value"]) == max(pts["value"])  # the spike at step 777 is kept
        assert min(view["value"]) == min(pts["value"])
        assert view["step"] == sorted(view["step"])
        part = c.get(f"/runs/{rid}/series/points", params={
            "type": "train", "name": "loss", "start": 100, "end": 199}).json()
        assert part["step"] == list(range(100, 200))
        full = c.get(f"/runs/{rid}").json()
        assert full["last"]["train/loss"] == pts["value"][-1]
        assert full["metrics_length"] == len(data) and full["hparams"] == meta["hparams"]


def test_users_are_kept_apart_and_grants_are_honoured_and_withdrawn(
        server: Server, alice: str, bob: str) -> None:
    with server.client(alice) as a, server.client(bob) as b:
        rid = a.post("/runs", json={"folder": "/alice/shared/x", "meta": _meta("s", "s_1")}) \
            .json()["id"]
        assert b.get(f"/runs/{rid}").status_code == 404
        assert b.get("/folders", params={"path": "/alice/shared"}).status_code == 404
        assert b.post("/runs", json={"folder": "/alice/shared", "meta": _meta("t", "t_1")}) \
            .status_code == 404
        server.admin("grant", "/alice/shared", "bob", "--read")
        assert b.get(f"/runs/{rid}").json()["path"] == "/alice/shared/x/s"
        assert b.post("/runs", json={"folder": "/alice/shared", "meta": _meta("t", "t_1")}) \
            .status_code == 403
        assert b.delete(f"/runs/{rid}").status_code == 403
        server.admin("grant", "/alice/shared", "bob", "--write")
        assert b.post("/runs", json={"folder": "/alice/shared", "meta": _meta("t", "t_1")}) \
            .status_code == 201
        server.admin("revoke-grant", "/alice/shared", "bob")
        assert b.get(f"/runs/{rid}").status_code == 404
        assert a.get(f"/runs/{rid}").status_code == 200


def test_a_revoked_key_is_refused(server: Server) -> None:
    key = server.admin("user", "add", "carol")
    second = server.admin("key", "add", "carol")
    with server.client(key) as c:
        key_id = c.get("/whoami").json()["key_id"]
    listing = server.admin("key", "list", "carol")
    assert listing.count("carol") == 2 and key not in listing
    server.admin("key", "revoke", str(key_id))
    with server.client(key) as c:
        r = c.get("/whoami")
        assert r.status_code == 401 and key not in r.text
    with server.client(second) as c:
        assert c.get("/whoami").json()["user"] == "carol"
    assert key not in server.log.read_text() and second not in server.log.read_text()


@pytest.mark.parametrize("body,ctype", [
    (b"{not json", "application/json"),
    (json.dumps({"folder": 3, "meta": {}}).encode(), "application/json"),
    (json.dumps({"folder": "/alice", "meta": {}, "bogus": 1}).encode(), "application/json"),
    (json.dumps({"folder": "/alice", "meta": {"name": "a\x01", "alternative_name": "b"}})
     .encode(), "application/json"),
    (json.dumps({"folder": "/alice/../x", "meta": _meta("a", "a_1")}).encode(),
     "application/json"),
])
def test_bad_run_bodies_get_a_4xx_with_a_message(server: Server, alice: str, body: bytes,
                                                 ctype: str) -> None:
    with server.client(alice) as c:
        r = c.post("/runs", content=body, headers={"Content-Type": ctype})
        assert 400 <= r.status_code < 500 and r.json()["detail"]
        assert c.get("/runs", params={"folder": "/alice", "recursive": True}).status_code == 200


def test_an_oversized_body_is_refused(server: Server, alice: str) -> None:
    with server.client(alice) as c:
        r = c.post("/runs", content=b" " * ((16 << 20) + 1),
                   headers={"Content-Type": "application/json"})
        assert r.status_code == 413 and "limit" in r.json()["detail"]


def test_series_stats_over_several_chunks_with_nan_and_infinity(server: Server,
                                                                 alice: str) -> None:
    """/series's count, first/last step, last value and finite min/max, computed from chunk
    summaries, equal those of the points themselves (three chunks, two uploads)."""
    rng = np.random.default_rng(5)
    vals = {"plain": rng.normal(size=25_000), "nan": rng.normal(size=25_000),
            "inf": rng.normal(size=25_000), "allnan": np.full(40, math.nan)}
    vals["nan"][::7] = math.nan
    vals["nan"][-1] = math.nan  # the last value is NaN
    vals["inf"][12_345] = math.inf
    vals["inf"][20_000] = -math.inf
    run = em.create_run(name="stats")
    for i in range(25_000):
        run.log("train", {k: float(v[i]) for k, v in vals.items() if i < len(v)}, step=i + 3)
    run.finish()
    path = Path(run._path)
    end, _ = _valid_end(str(path / "metrics.bin"))
    data = (path / "metrics.bin").read_bytes()[:end]
    cuts = boundaries(data)
    cut = cuts[len(cuts) // 2]
    with server.client(alice) as c:
        meta = json.loads((path / "run.json").read_text())
        rid = c.post("/runs", json={"folder": "/alice/stats", "meta": meta}).json()["id"]
        for lo, hi in ((0, cut), (cut, len(data))):
            r = c.put(f"/runs/{rid}/metrics", params={"offset": lo}, content=data[lo:hi],
                      headers={"Content-Type": "application/octet-stream"})
            assert r.status_code == 200, r.text
        got = {s["name"]: s for s in c.get(f"/runs/{rid}/series").json()["series"]}
    for name, v in vals.items():
        fin = v[np.isfinite(v)]
        want = {"count": len(v), "first_step": 3, "last_step": len(v) + 2,
                "min": float(fin.min()) if len(fin) else "NaN",
                "max": float(fin.max()) if len(fin) else "NaN"}
        assert {k: got[name][k] for k in want} == want, name
        assert got[name]["last"] == ("NaN" if math.isnan(v[-1]) else v[-1]), name
