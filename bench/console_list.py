"""The console's run list with 10,000 runs: time to the first page through a real server.

Inserts N runs (hyperparameters, last metric values, labels, descriptions) straight into the
server's database (the ingest path is measured by bench/server_ingest.py), starts
``em server``, and times ``GET /api/v1/runs`` (first page of 50) sorted by start time, by a
hyperparameter, by the last value of a metric, and filtered by a search text, plus
``/runs/columns`` and ``/folders/tree``. Median and worst of ``--repeat`` requests.

    PYTHONPATH=$PWD python3 bench/console_list.py [--runs 10000] [--db sqlite|postgresql]

(postgresql needs EM_TEST_PG_URL, as the server tests do.)
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx
from sqlalchemy import insert

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from em_server import db
from em_server.runs import _meta_fields
from tests.server.conftest import start_server, stop

FOLDER = "/bench/sweep"


def _rows(n: int) -> list[dict[str, object]]:
    rnd = random.Random(0)
    rows = []
    t0 = time.time() - n * 60
    for i in range(n):
        start = t0 + i * 60
        status = rnd.choice(["Complete", "Complete", "Failed", "Running"])
        meta = {"name": f"run-{i}", "status": status, "labels": [f"lab{i % 7}"],
                "description": f"sweep point {i}", "start_timestamp": start,
                "end_timestamp": None if status == "Running" else start + rnd.uniform(10, 5000),
                "hparams": {"lr": rnd.choice([1e-4, 3e-4, 1e-3, 3e-3]),
                            "batch_size": rnd.choice([16, 32, 64]),
                            "optimizer": {"name": rnd.choice(["adam", "sgd"]),
                                          "momentum": round(rnd.random(), 3)}}}
        last = {"train/loss": rnd.random(), "val/acc": rnd.random(), "val/loss": rnd.random()}
        rows.append({"id": str(uuid.uuid4()), "folder": FOLDER, "name": f"run-{i}",
                     "alternative_name": f"run-{i}_{i:08x}", "metrics_length": 0,
                     "schemas": "{}", "last": json.dumps(last), **_meta_fields(meta)})
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--runs", type=int, default=10_000)
    p.add_argument("--repeat", type=int, default=15)
    p.add_argument("--db", choices=["sqlite", "postgresql"], default="sqlite")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        srv = start_server(Path(tmp), args.db)
        try:
            key = srv.admin("user", "add", "bench").strip().split()[-1]
            with srv.client(key) as c:
                assert c.post("/folders", json={"path": FOLDER, "exist_ok": True}).is_success
            opts = dict(zip(srv.admin_args[::2], srv.admin_args[1::2]))
            engine = db.make_engine(db.db_url(opts["--data"], opts.get("--db")))
            t = time.perf_counter()
            rows = _rows(args.runs)
            with engine.begin() as conn:
                for i in range(0, len(rows), 1000):
                    conn.execute(insert(db.runs), rows[i:i + 1000])
            print(f"{args.db}: inserted {args.runs} runs in {time.perf_counter() - t:.1f} s")
            cases = [
                ("first page, newest first", "/runs", {"sort": "-start"}),
                ("sort by hparam:lr", "/runs", {"sort": "hparam:lr"}),
                ("sort by hparam:optimizer.momentum, desc", "/runs",
                 {"sort": "-hparam:optimizer.momentum"}),
                ("sort by metric:val/acc (last), desc", "/runs", {"sort": "-metric:val/acc"}),
                ("sort by duration + 2 columns", "/runs",
                 {"sort": "duration", "columns": "hparam:lr,metric:train/loss"}),
                ("search q=point 99", "/runs", {"q": "point 99", "sort": "name"}),
                ("status=Failed, page 20", "/runs", {"status": "Failed", "page": 20}),
                ("/runs/columns", "/runs/columns", {}),
                ("/folders/tree", "/folders/tree", {"path": "/bench"}),
            ]
            print(f"| request ({args.runs} runs, page of 50) | median ms | worst ms |")
            print("|---|---|---|")
            with httpx.Client(base_url=srv.url + "/api/v1", timeout=60,
                              headers={"Authorization": f"Bearer {key}"}) as c:
                for label, path, params in cases:
                    params = {"folder": FOLDER, **params} if path.startswith("/runs") else params
                    times = []
                    for _ in range(args.repeat):
                        t = time.perf_counter()
                        r = c.get(path, params=params)
                        times.append((time.perf_counter() - t) * 1000)
                        r.raise_for_status()
                    print(f"| {label} | {statistics.median(times):.1f} | {max(times):.1f} |")
        finally:
            stop(srv)


if __name__ == "__main__":
    main()
