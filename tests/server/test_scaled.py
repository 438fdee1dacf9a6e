"""Two server processes on one database: two clients uploading at once, each to its own
server, the same runs and the same metric byte ranges: nothing lost, nothing doubled."""

from __future__ import annotations

import random
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from .conftest import Server, start_server, stop
from .test_api import boundaries, local_run

OCT = {"Content-Type": "application/octet-stream"}


@pytest.fixture(scope="module")
def pair(db_kind: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Server]]:
    tmp = tmp_path_factory.mktemp("pair")
    first = start_server(tmp, db_kind)
    second = start_server(tmp, db_kind, args=first.admin_args)
    yield [first, second]
    stop(first)
    stop(second)


def test_two_servers_two_clients_nothing_lost_nothing_doubled(pair: list[Server],
                                                              tmp_path: Path) -> None:
    key = pair[0].admin("user", "add", "dana")
    runs = [local_run(n=600) for _ in range(3)]
    errors: list[BaseException] = []

    def client(srv: Server, seed: int) -> None:
        rnd = random.Random(seed)
        try:
            with srv.client(key) as c:
                for meta, data in runs:
                    made = c.post("/runs", json={"folder": "/dana/scaled", "meta": meta,
                                                 "conflict_strategy": "new"})
                    assert made.status_code in (200, 201), made.text
                    rid = made.json()["id"]
                    cuts = boundaries(data)
                    picks = sorted(rnd.sample(cuts[1:-1], 8)) + [len(data)]
                    lo = 0
                    for hi in picks:
                        r = c.put(f"/runs/{rid}/metrics", params={"offset": lo},
                                  content=data[lo:hi], headers=OCT)
                        if r.status_code == 409:  # the other client is behind us: resend
                            lo = r.json()["length"]
                            r = c.put(f"/runs/{rid}/metrics", params={"offset": lo},
                                      content=data[lo:hi], headers=OCT)
                        assert r.status_code == 200, r.text
                        lo = r.json()["length"]
                        assert lo >= hi
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=client, args=(srv, i)) for i, srv in enumerate(pair)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    with pair[1].client(key) as c:
        listed = c.get("/runs", params={"folder": "/dana/scaled"}).json()
        assert listed["total"] == 3
        by_alt = {r["alternative_name"]: r["id"] for r in listed["runs"]}
        for meta, data in runs:
            rid = by_alt[meta["alternative_name"]]
            assert c.get(f"/runs/{rid}/metrics.bin").content == data
            series = {(s["type"], s["name"]): s["count"]
                      for s in c.get(f"/runs/{rid}/series").json()["series"]}
            assert series == {("train", "loss"): 600, ("train", "acc"): 600, ("val", "loss"): 6}
            pts = c.get(f"/runs/{rid}/series/points", params={"type": "train", "name": "loss"})
            assert pts.json()["step"] == list(range(600))
