"""Cost of one ``Run.log_many`` call, per shape of call, this checkout against another.

    PYTHONPATH=. python3 bench/log_many_cost.py --old /tmp/em-old --calls 20000

Shapes: 7 rows of 2 metrics (an epoch of Speedometer lines), 60 rows of 19 metrics (a long
run of many-metric lines) and 60 rows of 3 metrics in two groups (Horovod's two lines per
batch). Each tree runs in its own process (its em_core first on ``sys.path``), into a fresh
run per round whose layout ``Run.log`` declared first; the figure is the best of --repeat
rounds of --calls calls, in µs per call (the least disturbed by a shared machine).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

WORKER = r"""
import json, sys, time
sys.path.insert(0, sys.argv[1])
import em_core as em
calls, repeat = int(sys.argv[2]), int(sys.argv[3])
shapes = {
    "7 rows x 2": (7, [["accuracy", "samples_per_sec"]]),
    "60 rows x 19": (60, [[f"m{j}" for j in range(19)]]),
    "60 rows x (1 + 2)": (60, [["loss"], ["rmse", "lr"]]),
}
out = {}
for name, (n, groups) in shapes.items():
    cols = [{m: [0.5 + i for i in range(n)] for m in g} for g in groups]
    best = float("inf")
    for _ in range(repeat):
        run = em.create_run(name="bench")
        for g in groups:
            run.log("train", {m: 0.5 for m in g}, 0, 0)
        t = time.perf_counter()
        for c in range(calls):
            run.log_many("train", list(range(c * n, c * n + n)), cols, 1)
        best = min(best, (time.perf_counter() - t) / calls * 1e6)
        run.finish()
    out[name] = best
print(json.dumps(out))
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--old", type=Path, required=True, help="a checkout of the old code")
    ap.add_argument("--calls", type=int, default=20000)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        env = dict(os.environ, EM_RUN_PARENT_DIR=tmp, EM_STRICT="0", PYTHONPATH="",
                   EM_SYSTEM_INTERVAL="0", EM_CONSOLE="off")
        got = {side: json.loads(subprocess.run(
            [sys.executable, "-c", WORKER, str(tree), str(args.calls), str(args.repeat)],
            env=env, check=True, capture_output=True, text=True, cwd=tmp).stdout)
            for side, tree in (("old", args.old.resolve()), ("new", REPO))}
    print(f"log_many, µs per call, best of {args.repeat} x {args.calls} calls; "
          f"load {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    for shape in got["new"]:
        old, new = got["old"][shape], got["new"][shape]
        print(f"  {shape:18s} old {old:7.2f}  new {new:7.2f}  new/old speed {old / new:.2f}x")


if __name__ == "__main__":
    main()
