"""`em ls` / `em show` / `em export` on big runs: wall time and peak RSS (issue 11, item 18).

Writes one run of N records (3 values each) with em, then copies its directory COPIES times
(metrics.bin hard-linked, run.json with a new alternative_name), and times the commands in
fresh subprocesses (peak RSS from getrusage of the child). Deletes everything at the end.

    PYTHONPATH=$PWD python3 bench/readers.py --records 1000000 --copies 100
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
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


# VmHWM, not ru_maxrss: ru_maxrss survives execve, so it would report the parent's peak.
_CHILD = ("import sys\nfrom em_core.cli import main\nrc = 0\ntry:\n"
          "    rc = main(sys.argv[1:])\nexcept SystemExit as e:\n    rc = e.code or 0\n"
          "hwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM')][0]\n"
          "sys.stderr.write('MAXRSS %s\\n' % hwm.split()[1])\n"
          "sys.exit(rc)\n")


def _cmd(args: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Wall seconds and peak RSS (MiB, measured inside the child) of `em ARGS`."""
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", _CHILD, *args], env=env,
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=False)
    wall = time.perf_counter() - t0
    err = proc.stderr.decode()
    if proc.returncode != 0 or "MAXRSS" not in err:
        raise SystemExit(f"em {' '.join(args)} failed: {err[-500:]}")
    return wall, int(err.rsplit("MAXRSS", 1)[1].split()[0]) / 1024


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--records", type=int, default=1_000_000)
    ap.add_argument("--copies", type=int, default=100)
    ap.add_argument("--no-export", action="store_true", help="skip the (slow) export")
    a = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="em-bench-readers-"))
    env = dict(os.environ, PYTHONPATH=str(REPO), EM_RUN_PARENT_DIR=str(tmp / "runs"))
    os.environ["EM_RUN_PARENT_DIR"] = env["EM_RUN_PARENT_DIR"]
    import em_core as em
    try:
        run = em.create_run(name="big")
        t0 = time.perf_counter()
        for i in range(a.records):
            run.log("train", {"loss": 1.0 / (i + 1), "acc": i / a.records, "lr": 0.1}, step=i)
        t1 = time.perf_counter()
        run.finish()
        t2 = time.perf_counter()
        src = Path(str(run.local))
        size = (src / "metrics.bin").stat().st_size
        print(f"records {a.records}, metrics.bin {size / 2**20:.1f} MiB; log {t1 - t0:.2f} s, "
              f"finish (incl. summary scan) {t2 - t1:.2f} s")
        meta = json.loads((src / "run.json").read_text())
        for k in range(a.copies - 1):
            d = src.parent / f"big_copy{k:03d}"
            d.mkdir()
            os.link(src / "metrics.bin", d / "metrics.bin")
            (d / "run.json").write_text(json.dumps(dict(meta, alternative_name=d.name)))
        wall, rss = _cmd(["ls"], env)
        print(f"em ls, {a.copies} finished runs: {wall:.2f} s, peak RSS {rss:.0f} MiB")
        wall, rss = _cmd(["show", str(src)], env)
        print(f"em show, finished run (summary): {wall:.2f} s, peak RSS {rss:.0f} MiB")
        # the same run without a summary (as a Running or Crashed run): the streaming scan
        nosum = src.parent / "big_nosummary"
        nosum.mkdir()
        os.link(src / "metrics.bin", nosum / "metrics.bin")
        m = dict(meta, alternative_name=nosum.name)
        m.pop("summary", None)
        (nosum / "run.json").write_text(json.dumps(m))
        wall, rss = _cmd(["show", str(nosum)], env)
        print(f"em show, no summary (streaming scan): {wall:.2f} s, peak RSS {rss:.0f} MiB")
        if a.no_export:
            return
        wall, rss = _cmd(["export", str(src), "-o", str(tmp / "out.csv")], env)
        print(f"em export csv (long form): {wall:.2f} s, peak RSS {rss:.0f} MiB, "
              f"{(tmp / 'out.csv').stat().st_size / 2**20:.0f} MiB written")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
