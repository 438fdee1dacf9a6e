"""Memory over 10 million ``log`` calls: does the logging process stay flat?

Usage::

    python bench/memory_flat.py                        # em, 10,000,000 calls of 3 scalars
    python bench/memory_flat.py --trackers em naive --calls 10000000 --write-results

Each tracker runs in a fresh child process that logs ``--calls`` calls of 3 scalars (a fresh
dict per call, values changing with the step) and samples its resident memory from
/proc/self/status every ``--every`` calls: RSS, and its anonymous part (heap: what a leak
grows) and file-backed part (pages of mapped files, such as em's metric log window).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import _results  # noqa: E402
import _trackers  # noqa: E402


def _mem() -> dict[str, float]:
    """RSS, RssAnon and RssFile of this process, in MiB."""
    out = {}
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "RssAnon", "RssFile"):
                out[key] = int(rest.split()[0]) / 1024
    return out


def child(tracker: str, calls: int, every: int, out: str) -> None:
    adapter = _trackers.ADAPTERS[tracker]()
    adapter.setup(os.getcwd())
    log = adapter.log
    names = ("loss", "acc", "lr")
    samples = [{"calls": 0, **_mem(), "s": 0.0}]
    t0 = time.perf_counter()
    for i in range(calls):
        log({names[0]: 1.0 / (i + 1), names[1]: i * 1e-7, names[2]: 0.1}, i)
        if (i + 1) % every == 0:
            samples.append({"calls": i + 1, **_mem(), "s": time.perf_counter() - t0})
    adapter.finish()
    size = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(os.getcwd())
               for f in fs)
    with open(out, "w", encoding="utf-8") as f:
        json.dump({"tracker": tracker, "version": _trackers.version(tracker), "calls": calls,
                   "samples": samples, "disk_bytes": size}, f)


def run_child(tracker: str, calls: int, every: int) -> dict | None:
    workdir = tempfile.mkdtemp(prefix=f"em-memory-{tracker}-")
    out = workdir + ".json"
    try:
        proc = subprocess.run([sys.executable, os.path.abspath(__file__), "--child", tracker,
                               "--calls", str(calls), "--every", str(every), "--out", out],
                              cwd=workdir, env=_trackers.env_for(tracker, workdir),
                              capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            print(f"{tracker} failed: {proc.stderr[-2000:]}", file=sys.stderr)
            return None
        with open(out, encoding="utf-8") as f:
            return json.load(f)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
        if os.path.exists(out):
            os.remove(out)


def table(res: dict) -> str:
    s = res["samples"]
    lines = [f"**{res['tracker']}** ({res['version']}): {res['calls']:,} calls, "
             f"{s[-1]['s']:.0f} s, {res['disk_bytes'] / 2**20:,.0f} MiB on disk\n",
             "| calls | RSS MiB | anonymous MiB | file-backed MiB | s |",
             "|---:|---:|---:|---:|---:|"]
    for x in s:
        lines.append(f"| {x['calls']:,} | {x['VmRSS']:.1f} | {x['RssAnon']:.1f} | "
                     f"{x['RssFile']:.1f} | {x['s']:.1f} |")
    first = s[1] if len(s) > 1 else s[0]
    lines.append(f"\nGrowth from {first['calls']:,} to {s[-1]['calls']:,} calls: RSS "
                 f"{s[-1]['VmRSS'] - first['VmRSS']:+.1f} MiB, anonymous "
                 f"{s[-1]['RssAnon'] - first['RssAnon']:+.1f} MiB.")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--trackers", nargs="+", default=["em"], choices=_trackers.TRACKERS)
    ap.add_argument("--calls", type=int, default=10_000_000)
    ap.add_argument("--every", type=int, default=1_000_000)
    ap.add_argument("--write-results", action="store_true")
    ap.add_argument("--child", choices=_trackers.TRACKERS, help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        child(args.child, args.calls, args.every, args.out)
        return 0
    parts = []
    for t in args.trackers:
        print(f"{t} ...", file=sys.stderr, flush=True)
        res = run_child(t, args.calls, args.every)
        if res is not None:
            parts.append(table(res))
            print(parts[-1], flush=True)
    if args.write_results:
        command = "python bench/memory_flat.py " + " ".join(argv if argv is not None
                                                            else sys.argv[1:])
        body = ("## Memory over many calls\n\n" + _results.stamp(command.strip()) +
                "\n3 scalars per call; resident memory sampled in the logging process.\n\n" +
                "\n\n".join(parts) + "\n")
        _results.write_section("memory_flat", body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
