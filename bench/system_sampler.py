"""What the system-metrics sampler costs (em_core/_system.py).

Usage::

    PYTHONPATH=$PWD python3 bench/system_sampler.py [--samples 400] [--calls 20000] [--repeat 3]

1. CPU time per sample: (a) one sample's work (read /proc, compute, ``run.log``, running
   stats) timed with ``time.thread_time`` over ``--samples`` samples in this thread; (b) the
   real sampler thread at a 0.02 s interval for ``--samples`` samples, its CPU time read from
   ``/proc/self/task/<tid>/schedstat`` (ns; wake-ups included). Per minute at the default
   10 s interval = 6 samples; as % of one core = that / 60 s.
2. Start-up: what ``create_run`` spends starting the sampler thread and the console capture
   (spawning the tee process), and ``finish()`` stopping the capture (median of 20).
3. ``run.log`` latency (3 scalars) with the sampler off and on at a 0.1 s interval (100x the
   default rate), each in a fresh child process, interleaved off/on, on/off, ... ``--repeat``
   times; p50/p99 per child (on stderr), then the median over children.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time


def _thread_cpu_ns(tid: int) -> int:
    with open(f"/proc/self/task/{tid}/schedstat") as f:
        return int(f.read().split()[0])


def per_sample(samples: int) -> dict[str, float]:
    import em_core as em
    from em_core._system import Probe, SystemSampler

    out: dict[str, float] = {}
    run = em.create_run(name="bench-sampler", system_interval=0, console=False)
    sampler = SystemSampler(run, 10.0)
    probe = Probe(str(run.local))
    prev = probe.read()
    for _ in range(10):  # warm up: the record's shape is declared once
        prev = sampler.record(prev, probe.read(), None)
    t = time.thread_time_ns()
    for _ in range(samples):
        prev = sampler.record(prev, probe.read(), None)
    out["inline_us_per_sample"] = (time.thread_time_ns() - t) / samples / 1e3
    run.finish()

    run = em.create_run(name="bench-sampler-thread", system_interval=0.02, console=False)
    deadline = time.monotonic() + 60
    thread = None
    while thread is None and time.monotonic() < deadline:
        thread = next((t for t in threading.enumerate() if t.name == "em-system-metrics"), None)
    assert thread is not None and thread.native_id is not None
    while not run.metric_records() and time.monotonic() < deadline:
        time.sleep(0.01)
    cpu0 = _thread_cpu_ns(thread.native_id)
    n0 = len(run.metric_records())
    time.sleep(samples * 0.02)
    cpu1 = _thread_cpu_ns(thread.native_id)
    n1 = len(run.metric_records())
    run.finish()
    out["thread_us_per_sample"] = (cpu1 - cpu0) / max(n1 - n0, 1) / 1e3
    out["thread_samples"] = n1 - n0
    worst = max(out["inline_us_per_sample"], out["thread_us_per_sample"])
    out["ms_cpu_per_minute_at_10s"] = worst * 6 / 1e3
    out["percent_of_one_core_at_10s"] = worst * 6 / 60e6 * 100
    return out


def start_times(n: int = 20) -> dict[str, float]:
    """Milliseconds (median of ``n``) that create_run spends starting the sampler thread and
    the console capture (spawning the tee), and that finish() spends stopping the capture."""
    import em_core as em
    from em_core import _console
    from em_core._system import SystemSampler

    run = em.create_run(name="bench-start", system_interval=0, console=False)
    sampler, console, stop = [], [], []
    for _ in range(n):
        t = time.perf_counter()
        s = SystemSampler(run, 10.0).start()
        sampler.append(time.perf_counter() - t)
        s.stop()
        t = time.perf_counter()
        c = _console.start(str(run.local))
        console.append(time.perf_counter() - t)
        t = time.perf_counter()
        if c is not None:
            _console.stop(c)
        stop.append(time.perf_counter() - t)
    run.finish()
    return {"sampler_start_ms": statistics.median(sampler) * 1e3,
            "console_start_ms": statistics.median(console) * 1e3,
            "console_stop_ms": statistics.median(stop) * 1e3}


def child(interval: float, calls: int) -> None:
    import em_core as em

    run = em.create_run(name="bench-log", system_interval=interval, console=False)
    log = run.log
    for i in range(2000):
        log("train", {"a": i * 0.5, "b": 1.0, "c": 2.0}, step=i)
    lat = []
    clock = time.perf_counter_ns
    for i in range(2000, 2000 + calls):
        d = {"a": i * 0.5, "b": 1.0, "c": 2.0}
        t = clock()
        log("train", d, step=i)
        lat.append(clock() - t)
    samples = len([r for r in run.metric_records() if r.type == "system"])
    run.finish()
    lat.sort()
    print(json.dumps({"p50": lat[len(lat) // 2] / 1e3, "p99": lat[int(len(lat) * 0.99)] / 1e3,
                      "samples": samples}))


def latency(calls: int, repeat: int) -> dict[str, dict[str, float]]:
    res: dict[str, list[dict[str, float]]] = {"off": [], "on": []}
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "EM_RUN_PARENT_DIR": tmp}
        order = [("off", 0.0), ("on", 0.1)]
        for i in range(repeat):
            for mode, interval in order if i % 2 == 0 else order[::-1]:  # ABBA: no drift bias
                p = subprocess.run([sys.executable, __file__, "--child", str(interval),
                                    "--calls", str(calls)], env=env, capture_output=True,
                                   text=True, check=True)
                res[mode].append(json.loads(p.stdout))
                print(f"  child {mode:3} p50 {res[mode][-1]['p50']:.2f} p99 "
                      f"{res[mode][-1]['p99']:.2f} us", file=sys.stderr)
    return {mode: {k: statistics.median(r[k] for r in rs) for k in ("p50", "p99", "samples")}
            for mode, rs in res.items()}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--samples", type=int, default=400)
    ap.add_argument("--calls", type=int, default=20000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--child", type=float)
    args = ap.parse_args()
    if args.child is not None:
        child(args.child, args.calls)
        return
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["EM_RUN_PARENT_DIR"] = tmp
        cost = per_sample(args.samples)
        cost.update(start_times())
    for k, v in cost.items():
        print(f"{k:32} {v:.4g}")
    lat = latency(args.calls, args.repeat)
    print(f"{'run.log (3 scalars), us':32} {'p50':>8} {'p99':>8}  samples during the calls")
    for mode, r in lat.items():
        print(f"  sampler {mode:22} {r['p50']:8.2f} {r['p99']:8.2f}  {r['samples']:.0f}")


if __name__ == "__main__":
    main()
