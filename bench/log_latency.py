"""Per-call latency of ``log`` for em and its peers, each in a fresh child process.

Usage::

    python bench/log_latency.py                       # all installed trackers, 3 and 100 scalars
    python bench/log_latency.py --trackers em naive --scalars 3 --calls 20000 --repeat 3
    python bench/log_latency.py --write-results      # also update bench/RESULTS.md

For each tracker and payload size the driver starts ``python bench/log_latency.py --child
TRACKER --scalars N --calls C``. The child sets the tracker up (not timed), makes ``--warmup``
calls, then times each of the next C calls with ``time.perf_counter_ns`` and writes p50, p99,
p99.9, max and mean (µs), plus the process CPU time per call (which counts the tracker's
background threads, but not its helper processes), the set-up and the finish times.

Fairness: every tracker gets the same fresh dict per call (metric ``m000``.. ``m099``, float
values that change with the step), built before the timer starts; only the logging call is
timed. Trackers run one after another, never in parallel. ``noop`` is an empty function: the
floor set by the timer and a Python call.
"""

from __future__ import annotations

import argparse
import array
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import _results  # noqa: E402
import _trackers  # noqa: E402

DEFAULT_TRACKERS = ["noop", "naive", "em", "swanlab", "tensorboardx", "wandb", "mlflow", "aim"]


def child(tracker: str, scalars: int, calls: int, warmup: int, out: str,
          max_seconds: float) -> None:
    workdir = os.getcwd()
    adapter = _trackers.ADAPTERS[tracker]()
    t = time.perf_counter()
    adapter.setup(workdir)
    setup_s = time.perf_counter() - t
    log = adapter.log
    names = [f"m{j:03d}" for j in range(scalars)]
    offsets = [j / scalars for j in range(scalars)]
    lat = array.array("q", bytes(8 * calls))
    clock = time.perf_counter_ns
    for i in range(warmup):
        log({k: o + i for k, o in zip(names, offsets)}, i)
    cpu0, wall0 = time.process_time(), time.perf_counter()
    deadline = clock() + int(max_seconds * 1e9)
    done = calls
    for i in range(calls):
        step = warmup + i
        metrics = {k: o + step for k, o in zip(names, offsets)}
        t0 = clock()
        log(metrics, step)
        t1 = clock()
        lat[i] = t1 - t0
        if t1 > deadline and i >= 999:  # a slow tracker: stop at the time budget
            done = i + 1
            break
    calls = done
    del lat[calls:]
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    t = time.perf_counter()
    adapter.finish()
    finish_s = time.perf_counter() - t
    s = sorted(lat)
    q = lambda p: s[min(len(s) - 1, int(p * len(s)))] / 1000  # noqa: E731
    result = {"tracker": tracker, "version": _trackers.version(tracker), "scalars": scalars,
              "calls": calls, "p50": q(0.50), "p90": q(0.90), "p99": q(0.99), "p999": q(0.999),
              "max": s[-1] / 1000, "mean": sum(s) / len(s) / 1000,
              "cpu_per_call": cpu / calls * 1e6, "wall_per_call": wall / calls * 1e6,
              "setup_s": setup_s, "finish_s": finish_s}
    with open(out, "w", encoding="utf-8") as f:
        json.dump(result, f)


def run_child(tracker: str, scalars: int, calls: int, warmup: int,
              max_seconds: float) -> dict | None:
    workdir = tempfile.mkdtemp(prefix=f"em-bench-{tracker}-")
    out = os.path.join(workdir, "result.json")
    cmd = [sys.executable, os.path.abspath(__file__), "--child", tracker, "--scalars",
           str(scalars), "--calls", str(calls), "--warmup", str(warmup), "--out", out,
           "--max-seconds", str(max_seconds)]
    try:
        proc = subprocess.run(cmd, cwd=workdir, env=_trackers.env_for(tracker, workdir),
                              capture_output=True, text=True, timeout=3600, check=False)
        if proc.returncode != 0 or not os.path.exists(out):
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
            print(f"  {tracker} x{scalars}: failed (rc {proc.returncode}): " + " | ".join(tail),
                  file=sys.stderr)
            return None
        with open(out, encoding="utf-8") as f:
            return json.load(f)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def median_of(results: list[dict]) -> dict:
    """The median of each statistic over repeats (repeats are interleaved across trackers)."""
    out = dict(results[0])
    for key in ("calls", "p50", "p90", "p99", "p999", "max", "mean", "cpu_per_call",
                "wall_per_call", "setup_s", "finish_s"):
        out[key] = statistics.median(r[key] for r in results)
    out["repeats"] = len(results)
    return out


def fmt(x: float) -> str:
    return f"{x:,.0f}" if x >= 100 else f"{x:.1f}" if x >= 1 else f"{x:.2f}"


def table(results: dict[tuple[str, int], dict], trackers: list[str], n: int) -> str:
    lines = [f"**{n} scalars per call**\n",
             "| tracker | version | calls timed | p50 µs | p99 µs | p99.9 µs | max µs | mean µs "
             "| loop CPU µs/call | p50 ÷ em | p99 ÷ em | set-up s | finish s |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    em = results.get(("em", n))
    for t in trackers:
        r = results.get((t, n))
        if r is None:
            lines.append(f"| {t} | | failed |" + " |" * 10)
            continue
        ratios = ([f"{r[k] / em[k]:.1f}×" for k in ("p50", "p99")]
                  if em and t not in ("em", "noop") else ["", ""])
        stats = ("p50", "p99", "p999", "max", "mean", "cpu_per_call")
        row = [t, r["version"], f"{r['calls']:,.0f}", *(fmt(r[k]) for k in stats),
               *ratios, f"{r['setup_s']:.2f}", f"{r['finish_s']:.2f}"]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--trackers", nargs="+", default=DEFAULT_TRACKERS,
                    choices=_trackers.TRACKERS)
    ap.add_argument("--scalars", nargs="+", type=int, default=[3, 100])
    ap.add_argument("--calls", type=int, default=20000)
    ap.add_argument("--warmup", type=int, default=500)
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--max-seconds", type=float, default=60.0,
                    help="stop timing a tracker after this long (at least 1,000 calls are timed)")
    ap.add_argument("--write-results", action="store_true",
                    help="replace the log_latency section of bench/RESULTS.md")
    ap.add_argument("--child", choices=_trackers.TRACKERS, help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        child(args.child, args.scalars[0], args.calls, args.warmup, args.out, args.max_seconds)
        return 0
    runs: dict[tuple[str, int], list[dict]] = {}
    for rep in range(args.repeat):
        for t in args.trackers:
            for n in args.scalars:
                print(f"[{rep + 1}/{args.repeat}] {t} x{n} ...", file=sys.stderr, flush=True)
                r = run_child(t, n, args.calls, args.warmup, args.max_seconds)
                if r is not None:
                    runs.setdefault((t, n), []).append(r)
                    print(f"  p50 {r['p50']:.2f} µs  p99 {r['p99']:.2f} µs  mean "
                          f"{r['mean']:.2f} µs", file=sys.stderr, flush=True)
    results = {k: median_of(v) for k, v in runs.items()}
    text = "\n\n".join(table(results, args.trackers, n) for n in args.scalars)
    print(text)
    if args.write_results:
        command = "python bench/log_latency.py " + " ".join(argv if argv is not None
                                                             else sys.argv[1:])
        body = ("## `run.log` latency per call\n\n" + _results.stamp(command.strip()) +
                f"\nUp to {args.calls:,} timed calls after {args.warmup} warm-up calls (a tracker "
                f"still running after {args.max_seconds:.0f} s stops there: see 'calls timed'), "
                "each tracker in a fresh process, run one after another; each statistic is the "
                f"median over {args.repeat} interleaved repeat(s). 'loop CPU' is the process's "
                "CPU time over the timed loop per call, background threads and the payload "
                "construction included (noop shows the latter).\n\n" + text + "\n")
        _results.write_section("log_latency", body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
