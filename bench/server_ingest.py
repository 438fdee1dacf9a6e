"""Ingest and read speed of em server (SQLite): a finished run of N metric points uploaded as
metrics.bin byte ranges, then one metric's full series and a 1,000-point downsampled view.

    PYTHONPATH=. python3 bench/server_ingest.py --points 1000000

(The MLflow comparison the issue asks for is not written yet.)
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx

import em_core as em
from em_core._metricfile import _valid_end
from tests.server.conftest import start_server, stop
from tests.server.test_api import boundaries


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--points", type=int, default=1_000_000)
    ap.add_argument("--range-mb", type=int, default=32)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp())
    os.environ["EM_RUN_PARENT_DIR"] = str(tmp / "runs")
    run = em.create_run(name="bench")
    for i in range(args.points):
        run.log("train", {"loss": 1.0 / (i + 1)}, step=i)
    run.finish()
    path = Path(run._path) / "metrics.bin"
    end, _ = _valid_end(str(path))
    data = path.read_bytes()[:end]
    meta = {"name": "bench", "alternative_name": run.alternative_name}
    srv = start_server(tmp, "sqlite")
    try:
        key = srv.admin("user", "add", "bench")
        with httpx.Client(base_url=srv.url + "/api/v1", timeout=600,
                          headers={"Authorization": f"Bearer {key}"}) as c:
            rid = c.post("/runs", json={"folder": "/bench/b", "meta": meta}).json()["id"]
            cuts = boundaries(data)
            ranges, lo, prev = [], 0, 0
            step = args.range_mb << 20
            for b in cuts:
                if b - lo > step:
                    ranges.append((lo, prev))
                    lo = prev
                prev = b
            ranges.append((lo, len(data)))
            t0 = time.perf_counter()
            for a, b in ranges:
                r = c.put(f"/runs/{rid}/metrics", params={"offset": a}, content=data[a:b],
                          headers={"Content-Type": "application/octet-stream"})
                r.raise_for_status()
            dt = time.perf_counter() - t0
            print(f"ingest: {args.points} points in {dt:.3f} s = {args.points / dt:,.0f} points/s "
                  f"({len(data) / 1e6:.1f} MB in {len(ranges)} ranges)")
            q = {"type": "train", "name": "loss"}
            for label, extra in (("full series", {}), ("1000-point view", {"max_points": 1000})):
                best = 1e9
                for _ in range(5):
                    t0 = time.perf_counter()
                    r = c.get(f"/runs/{rid}/series/points", params={**q, **extra})
                    r.raise_for_status()
                    best = min(best, time.perf_counter() - t0)
                print(f"read {label}: {best * 1000:.1f} ms (best of 5, {len(r.json()['step'])} "
                      "points returned)")
    finally:
        stop(srv)


if __name__ == "__main__":
    main()
