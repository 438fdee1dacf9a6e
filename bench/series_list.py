"""``GET /runs/{id}/series`` (the run page's first request, polled every 2 s while a run is
live) on one run of 5 metrics x 1,000,000 points, served by a real ``em server`` (SQLite).

    PYTHONPATH=. .nox/server/bin/python bench/series_list.py
    git worktree add /tmp/em-old <commit>
    PYTHONPATH=/tmp/em-old .nox/server/bin/python bench/series_list.py --code /tmp/em-old

``--code`` is the checkout whose server runs (default: this one). The run is recorded and
uploaded in record-aligned ranges of 16 MiB, then the request is timed ``--repeat`` times;
prints the median and best in ms.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--code", default=str(Path(__file__).resolve().parents[1]))
    ap.add_argument("--points", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    sys.path.insert(0, args.code)
    os.environ.update(EM_STRICT="0", EM_SYSTEM_INTERVAL="0")
    import em_core as em
    from em_core._metricfile import _valid_end
    from tests.server.conftest import start_server, stop
    from tests.server.test_api import boundaries

    tmp = Path(tempfile.mkdtemp(prefix="em-series-"))
    os.chdir(tmp)
    run = em.create_run(name="big")
    for i in range(args.points):
        run.log("train", {f"m{j}": 1.0 / (i + j + 1) for j in range(5)}, step=i)
    run.finish()
    path = Path(run._path)
    end, _ = _valid_end(str(path / "metrics.bin"))
    data = (path / "metrics.bin").read_bytes()[:end]
    srv = start_server(tmp, "sqlite")
    try:
        key = srv.admin("user", "add", "alice")
        with srv.client(key) as c:
            meta = json.loads((path / "run.json").read_text())
            rid = c.post("/runs", json={"folder": "/alice/b", "meta": meta}).json()["id"]
            last = 0
            for b in [*boundaries(data), len(data)]:
                if b - last >= 16 << 20 or b == len(data):
                    r = c.put(f"/runs/{rid}/metrics", params={"offset": last},
                              content=data[last:b], timeout=300,
                              headers={"Content-Type": "application/octet-stream"})
                    r.raise_for_status()
                    last = b
            ts = []
            for _ in range(args.repeat):
                t = time.perf_counter()
                r = c.get(f"/runs/{rid}/series", timeout=300)
                ts.append(time.perf_counter() - t)
            counts = [s["count"] for s in r.json()["series"]]
        print(f"series counts {counts}; GET /series median {1000 * statistics.median(ts):.1f} ms,"
              f" best {1000 * min(ts):.1f} ms (load {os.getloadavg()[0]:.2f})")
    finally:
        stop(srv)


if __name__ == "__main__":
    main()
