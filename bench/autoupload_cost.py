"""What auto-upload costs the training loop: ``run.log`` latency with ``auto_upload=True``
against a live em server (SQLite) vs ``auto_upload=False``, in one run.

    PYTHONPATH=. python3 bench/autoupload_cost.py --calls 300000 --repeat 5

One em server process is started on loopback. Each repeat runs two child processes, one per
mode, in alternating order (on/off, then off/on, ...), so that drift in the machine's load
falls on both. A child creates a run, makes ``--warmup`` untimed calls, then times each of
``--calls`` calls of ``run.log("train", {3 scalars}, step=i)`` with ``perf_counter_ns``
(p50, p99, p99.9, mean in µs), then ``finish()`` (timed apart: with auto-upload it waits for
the rest to be sent). The uploader ships every ``EM_UPLOAD_INTERVAL`` seconds, set here to
``--interval`` (default 0.1 s, 20x more often than the default 2 s, so that it is busy during
the timed loop). Afterwards the server must hold the run's whole metric log.

``--server-idle`` puts the server process (all its threads and children) in Linux's idle
scheduling class: on a small machine the server's own ingest work competes with the training
loop for the same cores, which a deployment (the server on another machine) does not have;
with it, what is left is the cost of the uploader itself.
"""

from __future__ import annotations

import argparse
import array
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def child(mode: str, calls: int, warmup: int) -> None:
    import em_core as em

    run = em.create_run(name=f"cost-{mode}", auto_upload=(mode == "on"), folder="cost",
                        make_folder=True)
    log = run.log
    lat = array.array("q", bytes(8 * calls))
    clock = time.perf_counter_ns
    for i in range(warmup):
        log("train", {"loss": 1.0 / (i + 1), "acc": i * 1e-6, "lr": 0.1}, step=i)
    wall0 = time.perf_counter()
    for i in range(warmup, warmup + calls):
        m = {"loss": 1.0 / (i + 1), "acc": i * 1e-6, "lr": 0.1}
        t = clock()
        log("train", m, step=i)
        lat[i - warmup] = clock() - t
    wall = time.perf_counter() - wall0
    t = time.perf_counter()
    run.finish()
    finish = time.perf_counter() - t
    s = sorted(lat)
    q = lambda p: s[min(len(s) - 1, int(p * len(s)))] / 1000  # noqa: E731
    print(json.dumps({"mode": mode, "p50": q(0.5), "p99": q(0.99), "p999": q(0.999),
                      "mean": sum(s) / len(s) / 1000, "loop_s": wall, "finish_s": finish,
                      "local": run.local, "remote": run.remote}))


def _idle_tree(pid: int) -> None:
    """Every thread of ``pid`` and of its descendants into SCHED_IDLE."""
    for task in Path(f"/proc/{pid}/task").iterdir():
        os.sched_setscheduler(int(task.name), os.SCHED_IDLE, os.sched_param(0))
        for child in (task / "children").read_text().split():
            _idle_tree(int(child))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--calls", type=int, default=300_000)
    ap.add_argument("--warmup", type=int, default=1000)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--interval", type=float, default=0.1)
    ap.add_argument("--server-idle", action="store_true",
                    help="run the server in the idle scheduling class (Linux)")
    ap.add_argument("--child", choices=["on", "off"])
    args = ap.parse_args()
    if args.child:
        child(args.child, args.calls, args.warmup)
        return
    import httpx

    import em_core as em
    from tests.server.conftest import REPO, start_server, stop

    tmp = Path(tempfile.mkdtemp(prefix="em-bench-autoupload-"))
    env = {**os.environ, "EM_CONFIG": str(tmp / "config.yaml"),
           "EM_RUN_PARENT_DIR": str(tmp / "runs"), "EM_UPLOAD_INTERVAL": str(args.interval),
           "PYTHONPATH": str(REPO)}
    env.pop("EM_STRICT", None)
    srv = start_server(tmp, "sqlite")
    if args.server_idle:
        _idle_tree(srv.proc.pid)
    results: dict[str, list[dict[str, float]]] = {"on": [], "off": []}
    try:
        key = srv.admin("user", "add", "bench")
        os.environ["EM_CONFIG"] = env["EM_CONFIG"]
        em.login(srv.url, key)
        for r in range(args.repeat):
            for mode in (("on", "off") if r % 2 == 0 else ("off", "on")):
                out = subprocess.run([sys.executable, __file__, "--child", mode, "--calls",
                                      str(args.calls), "--warmup", str(args.warmup)],
                                     env=env, capture_output=True, text=True, check=True)
                res = json.loads(out.stdout.strip().splitlines()[-1])
                if mode == "on":  # everything arrived
                    size = (Path(res["local"]) / "metrics.bin").stat().st_size
                    with httpx.Client(base_url=srv.url + "/api/v1",
                                      headers={"Authorization": f"Bearer {key}"}) as c:
                        got = c.get(f"/runs/{res['remote'][-1]['id']}").json()
                    assert got["metrics_length"] == size and got["status"] == "Complete"
                results[mode].append(res)
                print(f"repeat {r + 1} {mode:3}: p50 {res['p50']:.2f} p99 {res['p99']:.2f} "
                      f"p99.9 {res['p999']:.2f} mean {res['mean']:.2f} µs; loop "
                      f"{res['loop_s']:.2f} s, finish {res['finish_s']:.2f} s", flush=True)
    finally:
        stop(srv)
    print(f"\nmedian of {args.repeat} repeats, {args.calls:,} calls each, 3 scalars, "
          f"EM_UPLOAD_INTERVAL={args.interval}"
          + (", server in SCHED_IDLE" if args.server_idle else ""))
    print("| auto_upload | p50 µs | p99 µs | p99.9 µs | mean µs | finish() s |")
    print("|---|---|---|---|---|---|")
    for mode in ("off", "on"):
        med = {k: statistics.median(x[k] for x in results[mode])
               for k in ("p50", "p99", "p999", "mean", "finish_s")}
        print(f"| {mode} | {med['p50']:.2f} | {med['p99']:.2f} | {med['p999']:.2f} | "
              f"{med['mean']:.2f} | {med['finish_s']:.2f} |")


if __name__ == "__main__":
    main()
