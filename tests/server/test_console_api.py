"""The server side of the web console, through a real server process (SQLite and
PostgreSQL): browser sign-in with a session cookie and CSRF, the run list's search, sort
and columns, the folder tree, data flow, console logs and live tails."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

import em_core as em
from em_core._client import Client
from em_core._upload import upload

from .conftest import Server

# ------------------------------------------------------------------ sign-in


def test_sign_in_sets_a_strict_httponly_cookie_and_csrf_guards_changes(
        server: Server, alice: str) -> None:
    with httpx.Client(base_url=server.url) as c:
        bad = c.post("/api/v1/session", json={"api_key": "em_" + "x" * 40})
        assert bad.status_code == 401 and "em_x" not in bad.text
        assert c.get("/api/v1/whoami").status_code == 401
        r = c.post("/api/v1/session", json={"api_key": alice})
        assert r.status_code == 200 and r.json() == {"user": "alice"}
        cookies = r.headers.get_list("set-cookie")
        sess = next(h for h in cookies if h.startswith("em_session="))
        assert "HttpOnly" in sess and "samesite=strict" in sess.lower()
        csrf_h = next(h for h in cookies if h.startswith("em_csrf="))
        assert "HttpOnly" not in csrf_h
        assert alice not in " ".join(cookies)  # the key itself is never the cookie
        me = c.get("/api/v1/whoami").json()
        assert me["user"] == "alice" and me["home"] == "/alice"
        body = {"path": "/alice/csrf-test", "exist_ok": True}
        refused = c.post("/api/v1/folders", json=body)
        assert refused.status_code == 403 and "X-EM-CSRF" in refused.json()["detail"]
        wrong = c.post("/api/v1/folders", json=body, headers={"X-EM-CSRF": "nope"})
        assert wrong.status_code == 403
        ok = c.post("/api/v1/folders", json=body,
                    headers={"X-EM-CSRF": c.cookies["em_csrf"]})
        assert ok.status_code == 201, ok.text
        assert c.delete("/api/v1/session").status_code == 403  # sign-out needs CSRF too
        out = c.delete("/api/v1/session", headers={"X-EM-CSRF": c.cookies["em_csrf"]})
        assert out.status_code == 204
        assert c.get("/api/v1/whoami").status_code == 401


def test_a_stolen_cookie_is_dead_after_sign_out_and_after_key_revocation(
        server: Server) -> None:
    key = server.admin("key", "add", "alice")
    with httpx.Client(base_url=server.url) as c:
        c.post("/api/v1/session", json={"api_key": key}).raise_for_status()
        token = c.cookies["em_session"]
        assert c.get("/api/v1/whoami").status_code == 200
        ids = [int(line.split("\t")[0]) for line in server.admin("key", "list", "alice")
               .splitlines()]
        server.admin("key", "revoke", str(max(ids)))  # the key made above is the newest
        assert c.get("/api/v1/whoami").status_code == 401
    with httpx.Client(base_url=server.url, cookies={"em_session": token}) as thief:
        assert thief.get("/api/v1/whoami").status_code == 401


# ------------------------------------------------------------------ recorded runs

@pytest.fixture(scope="module")
def recorded(server: Server, alice: str, tmp_path_factory: pytest.TempPathFactory,
             ) -> Iterator[dict[str, Any]]:
    """Runs made by em_core and uploaded: hyperparameters, metrics, labels, statuses, an
    input and an output artifact, and a console log."""
    root = tmp_path_factory.mktemp("console-runs")
    mp = pytest.MonkeyPatch()
    mp.setenv("EM_RUN_PARENT_DIR", str(root / "runs"))
    mp.setenv("EM_ARTIFACT_PARENT_DIR", str(root / "artifacts"))
    data = root / "data.txt"
    data.write_text("the inputs\n")
    made = {}
    try:
        src = em.create_artifact("dataset")
        src.add_file(data)
        for i, (lr, opt, loss, label) in enumerate([(9, "sgd", 0.5, "Baseline"),
                                                    (10, "adam", 0.25, "tuned"),
                                                    (0.5, "adam", 2.0, "tuned")]):
            run = em.create_run(name=f"lr-{i}", labels=[label],
                                description=f"Sweep point {i} of the learning-rate study")
            run.hparams["lr"] = lr
            run.hparams["optimizer"] = {"name": opt, "momentum": 0.9}
            for step in range(20):
                run.log("train", {"loss": loss + 1.0 / (step + 1)}, step=step)
            run.log("val", {"acc": 1 - loss / 4}, step=19)
            if i == 0:
                run.mark_input(src)
                out = em.create_artifact("model")
                out.add_file(data)
                run.mark_output(out)
            run.finish()
            made[f"lr-{i}"] = run
        bare = em.create_run(name="no-hparams", description="nothing set")
        bare.finish()
        (Path(made["lr-1"].local) / "console.log").write_bytes(
            b"epoch 1 loss=0.9\nepoch 2 loss=0.5\nWARNING: NaN seen\nepoch 3 loss=0.3\n")
    finally:
        mp.undo()
    with Client(server.url, alice) as client:
        upload(root, folder="console", make_folder=True, client=client)
    with server.client(alice) as c:
        runs = c.get("/runs", params={"folder": "/alice/console", "page_size": 100}).json()
    ids = {r["name"]: r["id"] for r in runs["runs"]}
    yield {"ids": ids, "root": root, "runs": made}


def _names(server: Server, key: str, **params: Any) -> list[str]:
    with server.client(key) as c:
        r = c.get("/runs", params={"folder": "/alice/console", **params})
    assert r.status_code == 200, r.text
    return [x["name"] for x in r.json()["runs"]]


def test_search_matches_name_label_and_description_case_insensitively(
        server: Server, alice: str, recorded: dict[str, Any]) -> None:
    assert _names(server, alice, q="BASELINE") == ["lr-0"]
    assert sorted(_names(server, alice, q="learning-RATE")) == ["lr-0", "lr-1", "lr-2"]
    assert _names(server, alice, q="no-hp") == ["no-hparams"]
    assert _names(server, alice, q="100%_") == []  # LIKE wildcards are matched literally


def test_sort_by_a_hyperparameter_is_numeric_and_runs_without_it_come_last(
        server: Server, alice: str, recorded: dict[str, Any]) -> None:
    assert _names(server, alice, sort="hparam:lr") == ["lr-2", "lr-0", "lr-1", "no-hparams"]
    assert _names(server, alice, sort="-hparam:lr") == ["lr-1", "lr-0", "lr-2", "no-hparams"]
    assert _names(server, alice, sort="hparam:optimizer.name")[:3] in (
        ["lr-1", "lr-2", "lr-0"], ["lr-2", "lr-1", "lr-0"])


def test_sort_by_a_last_metric_value_and_columns(server: Server, alice: str,
                                                 recorded: dict[str, Any]) -> None:
    assert _names(server, alice, sort="metric:train/loss") == ["lr-1", "lr-0", "lr-2",
                                                               "no-hparams"]
    with server.client(alice) as c:
        r = c.get("/runs", params={"folder": "/alice/console", "sort": "-metric:val/acc",
                                   "columns": "hparam:lr,metric:train/loss,hparam:nope"})
        runs = r.json()["runs"]
        assert [x["name"] for x in runs][:3] == ["lr-1", "lr-0", "lr-2"]
        first = runs[0]["columns"]
        assert first["hparam:lr"] == 10 and first["hparam:nope"] is None
        assert math.isclose(first["metric:train/loss"], 0.25 + 1 / 20)
        assert runs[0]["duration"] >= 0
        for bad in ("hparam:", "bogus", "metric:a\"b"):
            r = c.get("/runs", params={"folder": "/alice/console", "sort": bad})
            assert r.status_code == 400 and "sort" in r.json()["detail"]


def test_sort_by_duration_and_status_and_paging(server: Server, alice: str,
                                                recorded: dict[str, Any]) -> None:
    every = _names(server, alice, sort="duration", page_size=100)
    assert sorted(every) == sorted(recorded["ids"])
    with server.client(alice) as c:
        p1 = c.get("/runs", params={"folder": "/alice/console", "sort": "name",
                                    "page_size": 3}).json()
        p2 = c.get("/runs", params={"folder": "/alice/console", "sort": "name",
                                    "page_size": 3, "page": 2}).json()
    assert p1["total"] == p2["total"] == 4
    assert [r["name"] for r in p1["runs"] + p2["runs"]] == sorted(recorded["ids"])
    assert _names(server, alice, status="Complete", sort="name") == sorted(recorded["ids"])
    assert _names(server, alice, status="Failed") == []


def test_columns_and_folder_tree(server: Server, alice: str, recorded: dict[str, Any]) -> None:
    with server.client(alice) as c:
        cols = c.get("/runs/columns", params={"folder": "/alice/console"}).json()
        assert {"lr", "optimizer.name", "optimizer.momentum"} <= set(cols["hparams"])
        assert {"train/loss", "val/acc"} <= set(cols["metrics"])
        c.post("/folders", json={"path": "/alice/console/a/b", "parents": True}) \
            .raise_for_status()
        tree = c.get("/folders/tree", params={"path": "/alice"}).json()
    console = next(f for f in tree["folders"] if f["name"] == "console")
    assert console["runs"] == 4
    assert console["folders"][0]["name"] == "a"
    assert console["folders"][0]["folders"][0]["path"] == "/alice/console/a/b"


def test_data_flow_graph_and_resolved_associations(server: Server, alice: str,
                                                   recorded: dict[str, Any]) -> None:
    rid = recorded["ids"]["lr-0"]
    with server.client(alice) as c:
        run = c.get(f"/runs/{rid}").json()
        inputs = run["associations"]["inputs"]
        assert inputs[0]["name"] == "dataset" and inputs[0]["path"].startswith("/alice/")
        assert "local" not in inputs[0]  # the uploader's own paths stay on its machine
        g = c.get("/graph", params={"id": rid}).json()
        kinds = {n["name"]: n["kind"] for n in g["nodes"]}
        assert kinds == {"lr-0": "run", "dataset": "artifact", "model": "artifact"}
        by_name = {n["name"]: n["id"] for n in g["nodes"]}
        assert {(e["from"], e["to"], e["kind"]) for e in g["edges"]} == {
            (by_name["dataset"], rid, "input"), (rid, by_name["model"], "output")}
        art = c.get(f"/artifacts/{by_name['model']}").json()
        assert art["associations"]["output_of"][0]["id"] == rid
        back = c.get("/graph", params={"id": by_name["model"], "depth": 1}).json()
        assert {n["id"] for n in back["nodes"]} == {by_name["model"], rid}
        assert c.get("/graph", params={"id": "nope"}).status_code == 404


def test_console_log_upload_search_and_exactly_once(server: Server, alice: str,
                                                    recorded: dict[str, Any]) -> None:
    rid = recorded["ids"]["lr-1"]
    with server.client(alice) as c:
        lines = c.get(f"/runs/{rid}/log").json()
        assert lines["total"] == 4 and lines["lines"][2] == {"n": 3,
                                                             "text": "WARNING: NaN seen"}
        hits = c.get(f"/runs/{rid}/log", params={"q": "nan"}).json()
        assert hits == {"lines": [{"n": 3, "text": "WARNING: NaN seen"}], "total": 1}
        page = c.get(f"/runs/{rid}/log", params={"start_line": 4, "limit": 1}).json()
        assert page["lines"] == [{"n": 4, "text": "epoch 3 loss=0.3"}]
        held = c.get(f"/runs/{rid}/console/length").json()["length"]
        again = c.put(f"/runs/{rid}/console", params={"offset": 0},
                      content=b"epoch 1 loss=0.9\n")  # a retry of a range already held
        assert again.json()["length"] == held
        gap = c.put(f"/runs/{rid}/console", params={"offset": held + 5}, content=b"x")
        assert gap.status_code == 409 and gap.json()["length"] == held
        tail = c.put(f"/runs/{rid}/console", params={"offset": held - 4},
                     content=b"0.3\nepoch 4\n")  # overlaps the end: only the new part lands
        assert tail.json()["length"] == held + len(b"epoch 4\n")
        raw = c.get(f"/runs/{rid}/console.log").content
        assert raw.endswith(b"loss=0.3\nepoch 4\n") and raw.count(b"epoch 1") == 1
        none = recorded["ids"]["lr-2"]
        assert c.get(f"/runs/{none}/log").status_code == 404


def test_after_gives_only_the_new_points_of_a_live_tail(server: Server, alice: str,
                                                        recorded: dict[str, Any]) -> None:
    rid = recorded["ids"]["lr-0"]
    with server.client(alice) as c:
        r = c.get(f"/runs/{rid}/series/points", params={"type": "train", "name": "loss",
                                                        "after": 16}).json()
        assert r["step"] == [17, 18, 19]
        bad = c.get(f"/runs/{rid}/series/points", params={"type": "train", "name": "loss",
                                                          "after": "nan"})
        assert bad.status_code in (400, 422)


def test_another_users_runs_are_absent_from_every_console_endpoint(
        server: Server, alice: str, bob: str, recorded: dict[str, Any]) -> None:
    rid = recorded["ids"]["lr-1"]
    with server.client(bob) as c:
        for path, params in [("/runs", {"folder": "/alice/console"}),
                             ("/runs/columns", {"folder": "/alice/console"}),
                             ("/folders/tree", {"path": "/alice"}),
                             ("/graph", {"id": rid}), (f"/runs/{rid}/log", {}),
                             (f"/runs/{rid}/console.log", {}),
                             (f"/runs/{rid}/console/length", {})]:
            r = c.get(path, params=params)
            assert r.status_code == 404, (path, r.status_code, r.text)
        assert c.put(f"/runs/{rid}/console", params={"offset": 0},
                     content=b"x").status_code == 404


def test_pages_are_served_and_unknown_api_paths_stay_json(server: Server) -> None:
    r = httpx.get(server.url + "/run/some-id")
    assert r.status_code == 200 and "text/html" in r.headers["content-type"]
    assert httpx.get(server.url + "/").text == r.text
    api = httpx.get(server.url + "/api/v1/no-such-thing")
    assert api.status_code == 404 and api.json()["detail"]
    static = httpx.get(server.url + "/static/no-such-file.js")
    assert static.status_code == 404



def test_unknown_folders_and_odd_list_arguments_are_4xx_never_5xx(
        server: Server, alice: str, recorded: dict[str, Any]) -> None:
    with server.client(alice) as c:
        for path, params in [("/runs", {"folder": "/alice/no-such-folder"}),
                             ("/runs/columns", {"folder": "/alice/no-such-folder"}),
                             ("/folders/tree", {"path": "/alice/no-such-folder"}),
                             ("/runs", {"folder": "/nobody"}),
                             ("/graph", {"id": "0" * 36}),
                             ("/runs/" + "0" * 36 + "/series/points",
                              {"type": "train", "name": "loss", "after": 3})]:
            r = c.get(path, params=params)
            assert r.status_code == 404, (path, params, r.status_code, r.text)
        for params in [{"sort": "hparam:"}, {"sort": 'hparam:a"b'}, {"sort": "metric:"},
                       {"sort": "bogus"}, {"columns": "name"}, {"columns": "hparam:x,,"},
                       {"sort": "-hparam:" + "x." * 100}, {"page": 0}, {"page_size": 10**6},
                       {"q": "%_\\'\"<script>"}, {"q": "a\x00b"}, {"label": "\x00"}]:
            r = c.get("/runs", params={"folder": "/alice/console", **params})
            assert r.status_code < 500, (params, r.status_code, r.text)
        assert c.get("/runs", params={"folder": "/alice/console", "q": "%"}).json()[
            "total"] == 0  # a LIKE wildcard is matched as itself
        assert c.get("/graph", params={"id": recorded["ids"]["lr-0"],
                                       "depth": -1}).status_code in (400, 422)


def test_nul_in_a_path_query_or_json_string_is_a_400(server: Server, alice: str) -> None:
    # PostgreSQL cannot store NUL at all: each used to be a 500 there
    with server.client(alice) as c:
        for path in ["/runs/%00", "/artifacts/%00", "/graph?id=%00", "/runs/%00/log",
                     "/runs?folder=/alice&q=%00", "/runs/by-path?path=/alice/a%00b"]:
            r = c.get(path)
            assert r.status_code == 400 and "NUL" in r.json()["detail"], (path, r.text)
        r = c.post("/runs", json={"folder": "/alice/nul", "make_folder": True,
                                  "conflict_strategy": "new",
                                  "meta": {"name": "nul-run", "alternative_name": "nul-run_1",
                                           "description": "a\x00b"}})
        # SQLite stores it (201), PostgreSQL cannot (400): never a 500, never a partial run
        assert r.status_code in (201, 400), r.text
        listed = c.get("/runs", params={"folder": "/alice/nul"})
        assert listed.status_code in (200, 404)
        if r.status_code == 400:
            assert listed.status_code == 404 or listed.json()["total"] == 0
