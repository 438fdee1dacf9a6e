"""Points lost when the training process is SIGKILLed right after its last ``log`` returned.

Usage::

    python bench/sigkill_loss.py                      # all trackers, 20,000 steps
    python bench/sigkill_loss.py --trackers em naive --steps 20000 --write-results

For each tracker a child process (in a new session) sets the tracker up, logs ``--steps``
calls of one scalar ``x`` (= the step), and the moment the last ``log`` returns sends itself
SIGKILL, the way the OOM killer or a preempting scheduler ends a job: no ``finish``, no
``atexit``, no flushing. Only the training process is killed; helper processes a tracker
started (wandb's service) are left to finish on their own, and the driver waits for
every process of the child's session to exit (at most ``--grace`` seconds) before reading
back. The read-back uses each tracker's own reader where one exists (em.load_run,
TensorBoard's EventAccumulator, MlflowClient, SwanLab's DataStoreReader, Aim's Repo; wandb's
.wandb log parsed with wandb's protobufs) and counts distinct steps of ``x``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import _results  # noqa: E402
import _trackers  # noqa: E402

DEFAULT_TRACKERS = ["naive", "em", "swanlab", "tensorboardx", "wandb", "mlflow", "aim"]


def child(tracker: str, steps: int, *, control: bool) -> None:
    adapter = _trackers.ADAPTERS[tracker]()
    adapter.setup(os.getcwd())
    _record_helpers()
    log = adapter.log
    for step in range(steps):
        log({"x": float(step)}, step)
    os.write(1, b"DONE\n")
    if control:  # the reader's check: a clean finish must read back every step
        adapter.finish()
        os._exit(0)
    os.kill(os.getpid(), signal.SIGKILL)


def _record_helpers() -> None:
    """Note the helper processes the tracker started (wandb's service starts its own session)."""
    try:
        import psutil
    except ModuleNotFoundError:
        return
    pids = [p.pid for p in psutil.Process().children(recursive=True)]
    with open("helpers.json", "w", encoding="utf-8") as f:
        json.dump(pids, f)


def read_child(tracker: str, out: str) -> None:
    n = _trackers.ADAPTERS[tracker].read_back(os.getcwd(), "x")
    with open(out, "w", encoding="utf-8") as f:
        json.dump({"landed": n}, f)


def _alive(sid: int, helpers: list[int]) -> list[int]:
    """Processes still running in the child's session, or among the helpers it recorded."""
    left = []
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                if os.getsid(int(pid)) == sid or int(pid) in helpers:
                    left.append(int(pid))
            except OSError:
                continue
    return left


def measure(tracker: str, steps: int, grace: float, *, control: bool = False) -> dict:
    workdir = tempfile.mkdtemp(prefix=f"em-sigkill-{tracker}-")
    env = _trackers.env_for(tracker, workdir)
    me = os.path.abspath(__file__)
    try:
        cmd = [sys.executable, me, "--child", tracker, "--steps", str(steps)]
        proc = subprocess.Popen(cmd + (["--control"] if control else []),
                                cwd=workdir, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, start_new_session=True)
        out, err = proc.communicate(timeout=1800)
        done = b"DONE" in out
        if proc.returncode != (0 if control else -signal.SIGKILL) or not done:
            tail = " | ".join(err.decode(errors="replace").strip().splitlines()[-3:])
            return {"tracker": tracker, "error": f"child rc {proc.returncode}: {tail}"}
        helpers: list[int] = []
        if os.path.exists(os.path.join(workdir, "helpers.json")):
            with open(os.path.join(workdir, "helpers.json"), encoding="utf-8") as f:
                helpers = json.load(f)
        t0 = time.monotonic()
        while _alive(proc.pid, helpers) and time.monotonic() - t0 < grace:
            time.sleep(0.2)
        left = _alive(proc.pid, helpers)
        waited = time.monotonic() - t0
        for pid in left:  # only processes our child started
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        if left:
            time.sleep(0.5)
        res = os.path.join(workdir, "readback.json")
        rd = subprocess.run([sys.executable, me, "--read", tracker, "--out", res], cwd=workdir,
                            env=env, capture_output=True, text=True, timeout=600, check=False)
        if rd.returncode != 0:
            tail = " | ".join(rd.stderr.strip().splitlines()[-3:])
            return {"tracker": tracker, "error": f"read-back failed: {tail}"}
        with open(res, encoding="utf-8") as f:
            landed = json.load(f)["landed"]
        return {"tracker": tracker, "version": _version(tracker, env), "steps": steps,
                "landed": landed, "lost": steps - landed, "helpers_waited_s": round(waited, 1),
                "helpers": len(helpers), "helpers_killed": bool(left)}
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _version(tracker: str, env: dict[str, str]) -> str:
    code = f"import sys; sys.path.insert(0, {HERE!r}); import _trackers; " \
           f"print(_trackers.version({tracker!r}))"
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          check=False).stdout.strip()


def table(rows: list[dict]) -> str:
    lines = ["| tracker | version | logged | landed | lost | lost % | helpers after the kill "
             "| control: landed after finish() |",
             "|---|---|---:|---:|---:|---:|---|---:|"]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['tracker']} | | | | | | error: {r['error'][:120]} | |")
            continue
        helpers = ("none" if not r["helpers"] else
                   f"{r['helpers']}, killed after {r['helpers_waited_s']} s"
                   if r["helpers_killed"] else
                   f"{r['helpers']}, exited within {r['helpers_waited_s']} s")
        lines.append(f"| {r['tracker']} | {r['version']} | {r['steps']:,} | {r['landed']:,} | "
                     f"{r['lost']:,} | {100 * r['lost'] / r['steps']:.1f} | {helpers} | "
                     f"{r.get('control', 'not run')} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--trackers", nargs="+", default=DEFAULT_TRACKERS,
                    choices=_trackers.TRACKERS)
    ap.add_argument("--steps", type=int, default=20000)
    ap.add_argument("--grace", type=float, default=30.0,
                    help="seconds to let a tracker's helper processes finish after the kill")
    ap.add_argument("--no-control", action="store_true",
                    help="skip the control runs (finish() instead of SIGKILL) that check readers")
    ap.add_argument("--write-results", action="store_true")
    ap.add_argument("--child", choices=_trackers.TRACKERS, help=argparse.SUPPRESS)
    ap.add_argument("--read", choices=_trackers.TRACKERS, help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    ap.add_argument("--control", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        child(args.child, args.steps, control=args.control)
        return 1  # not reached: the child kills itself
    if args.read:
        read_child(args.read, args.out)
        return 0
    rows = []
    for t in args.trackers:
        print(f"{t} ...", file=sys.stderr, flush=True)
        row = measure(t, args.steps, args.grace)
        if not args.no_control and "error" not in row:
            ctl = measure(t, args.steps, args.grace, control=True)
            row["control"] = ctl.get("landed", "error")
        rows.append(row)
        print(f"  {rows[-1]}", file=sys.stderr, flush=True)
    text = table(rows)
    print(text)
    if args.write_results:
        command = "python bench/sigkill_loss.py " + " ".join(argv if argv is not None
                                                             else sys.argv[1:])
        body = ("## Points lost on SIGKILL\n\n" + _results.stamp(command.strip()) +
                f"\nThe training process logs {args.steps:,} steps of one scalar and SIGKILLs "
                "itself as soon as the last `log` returns; what landed is read back with the "
                "tracker's own reader.\n\n" + text + "\n")
        _results.write_section("sigkill_loss", body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
