"""Recording MXNet logs (``em mxnet``'s recorder: parse and every ``run.log``), old code
against new in the same run.

    git worktree add /tmp/em-old <commit>        # the code to compare against
    PYTHONPATH=. python3 bench/mxnet_record.py --old /tmp/em-old --rounds 5 --repeat 3

Every log of ../shared/corpus/mxnet is read into memory; each round feeds each log whole to
a fresh recorder on a fresh run (creating and finishing the run are not timed) and also
parses it alone. Old and new run in turns, each in its own process (``--repeat`` turns
each), with the same em_core (this checkout's: only the log pipe differs); a figure is the
median over all rounds of a side, in process CPU time (the steadier on a shared machine)
and wall time. The load average is printed with it. ``--python`` adds a third side: this
checkout with its C loops turned off, what em does where no compiler was found.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CORPUS = REPO.parent / "shared" / "corpus" / "mxnet"

WORKER = r"""
import glob, json, os, sys, time
from pathlib import Path
sys.path[:0] = [sys.argv[1], sys.argv[2]]  # the pipe code first, then this em_core
import em_core as em
from integrations.mxnet_log import MXNetLogParser, MXNetRecorder
if sys.argv[5] == "python":  # this checkout without its C loops, as where no compiler was
    from em_core import _logmany
    from integrations.mxnet_log import forms, layouts
    _logmany._native_pack = layouts.scan = forms.native = None
datas = [Path(p).read_bytes() for p in sorted(glob.glob(os.path.join(sys.argv[3], '*.log')))]
out = {"record": [], "parse": []}
for _ in range(int(sys.argv[4])):
    for mode in ("record", "parse"):
        wall = cpu = 0.0
        for data in datas:
            run = em.create_run(name="bench") if mode == "record" else None
            w, c = time.perf_counter(), time.process_time()
            if run is None:
                MXNetLogParser().feed_bytes(data)
            else:
                MXNetRecorder(run).feed(data)
            wall += time.perf_counter() - w
            cpu += time.process_time() - c
            if run is not None:
                run.finish()
        out[mode].append((wall, cpu))
print(json.dumps(out))
"""


def _pipe_code(root: Path) -> Path:
    """A folder holding only ``integrations`` of ``root`` (its em_core must not win)."""
    tmp = Path(tempfile.mkdtemp(prefix="em-pipe-"))
    (tmp / "integrations").symlink_to(root / "integrations")
    return tmp


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--old", type=Path, required=True, help="a checkout of the old code")
    ap.add_argument("--rounds", type=int, default=5, help="rounds per process")
    ap.add_argument("--repeat", type=int, default=3, help="processes per side, in turns")
    ap.add_argument("--python", action="store_true",
                    help="also this checkout without its C loops (em_core/_packrows.c, "
                         "integrations/mxnet_log/_rowscan.c): 'new-python'")
    args = ap.parse_args()
    datas = [p.read_bytes() for p in sorted(CORPUS.glob("*.log"))]
    lines = sum(d.count(b"\n") + (not d.endswith(b"\n")) for d in datas)
    sides = {"old": _pipe_code(args.old.resolve()), "new": _pipe_code(REPO)}
    if args.python:
        sides["new-python"] = sides["new"]
    results: dict[str, dict[str, list[tuple[float, float]]]] = {
        side: {"record": [], "parse": []} for side in sides}
    with tempfile.TemporaryDirectory() as tmp:
        env = dict(os.environ, EM_RUN_PARENT_DIR=os.path.join(tmp, "runs"), EM_STRICT="0",
                   EM_ARTIFACT_PARENT_DIR=os.path.join(tmp, "arts"), PYTHONPATH="")
        for _ in range(args.repeat):
            for side, code in sides.items():
                res = subprocess.run([sys.executable, "-c", WORKER, str(code), str(REPO),
                                      str(CORPUS), str(args.rounds),
                                      "python" if side == "new-python" else "c"],
                                     env=env, check=True,
                                     capture_output=True, text=True)
                for mode, samples in json.loads(res.stdout).items():
                    results[side][mode].extend(tuple(s) for s in samples)
    load = " ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"MXNet corpus: {len(datas)} logs, {lines:,} lines; median of "
          f"{args.rounds * args.repeat} rounds per side; load {load}")
    for mode in ("parse", "record"):
        cpu = {s: statistics.median(c for _, c in results[s][mode]) for s in sides}
        wall = {s: statistics.median(w for w, _ in results[s][mode]) for s in sides}
        for side in sides:
            print(f"  {mode:6} {side}: {lines / cpu[side]:9,.0f} lines/s CPU "
                  f"({cpu[side] * 1e3:6.1f} ms), {lines / wall[side]:9,.0f} lines/s wall")
        for side in sides:
            if side != "old":
                print(f"  {mode:6} {side}/old speed: {cpu['old'] / cpu[side]:.2f}x CPU, "
                      f"{wall['old'] / wall[side]:.2f}x wall")


if __name__ == "__main__":
    main()
