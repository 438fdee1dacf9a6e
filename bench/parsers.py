"""Speed of the Caffe and MXNet log parsers and of the ``em caffe`` pass-through pipe.

    PYTHONPATH=. python3 bench/parsers.py                 # throughput + latency + 1 GiB pipe
    PYTHONPATH=. python3 bench/parsers.py --size-mb 256   # a smaller pipe test

1. Parser throughput (lines/s) over every log of ../shared/corpus (read into memory first;
   best of --repeat runs; events built, em not involved).
2. Pipe latency: a line written into ``em caffe`` until it is read back on the other side,
   compared with ``cat`` (median over --lines round trips).
3. Pipe wall time for a log of --size-mb MiB made by repeating the Caffe corpus (written to
   a temporary folder, never into the repository): ``cat log | cat >/dev/null`` against
   ``cat log | em caffe >/dev/null`` (parsing and recording) and the pass-through alone.
"""

from __future__ import annotations

import argparse
import glob
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CORPUS = REPO.parent / "shared" / "corpus"
sys.path.insert(0, str(REPO))

from integrations.caffe import CaffeLogParser  # noqa: E402
from integrations.mxnet_log import MXNetLogParser  # noqa: E402


def throughput(repeat: int) -> dict[str, float]:
    out = {}
    both = 0.0
    lines_all = 0
    for kind, make in (("caffe", lambda: CaffeLogParser(year=2020)), ("mxnet", MXNetLogParser)):
        datas = [Path(p).read_bytes() for p in sorted(glob.glob(str(CORPUS / kind / "*.log")))]
        lines = sum(d.count(b"\n") + (not d.endswith(b"\n")) for d in datas)
        best = float("inf")
        for _ in range(repeat):
            t0 = time.perf_counter()
            for d in datas:
                p = make()
                p.feed_bytes(d)
                if hasattr(p, "close"):
                    p.close()
            best = min(best, time.perf_counter() - t0)
        out[kind] = lines / best
        out[f"{kind}_lines"] = lines
        both += best
        lines_all += lines
    out["all"] = lines_all / both
    out["all_lines"] = lines_all
    return out


def _env(tmp: str) -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=str(REPO), EM_RUN_PARENT_DIR=os.path.join(tmp, "runs"),
                EM_ARTIFACT_PARENT_DIR=os.path.join(tmp, "arts"), EM_STRICT="0")


def latency(command: list[str], lines: list[bytes], env: dict[str, str]) -> float:
    """Median microseconds from writing a line to reading it back through ``command``."""
    proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env,
                            bufsize=0)
    assert proc.stdin is not None and proc.stdout is not None
    # wait until the program is up (python start-up is not pipe latency)
    proc.stdin.write(b"warm-up\n")
    proc.stdout.readline()
    samples = []
    for line in lines:
        t0 = time.perf_counter()
        proc.stdin.write(line)
        got = proc.stdout.readline()
        samples.append(time.perf_counter() - t0)
        assert got == line
    proc.stdin.close()
    proc.wait()
    return statistics.median(samples) * 1e6


def pipe_wall(big: str, consumer: str, env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(f"cat {big} | {consumer} > /dev/null", shell=True, check=True, env=env)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--lines", type=int, default=2000)
    ap.add_argument("--size-mb", type=int, default=1024)
    args = ap.parse_args()

    t = throughput(args.repeat)
    print(f"parser throughput: caffe {t['caffe']:,.0f} lines/s ({t['caffe_lines']} lines), "
          f"mxnet {t['mxnet']:,.0f} lines/s ({t['mxnet_lines']} lines), "
          f"whole corpus {t['all']:,.0f} lines/s")

    caffe_log = (CORPUS / "caffe" / "qiexing__caffe-regression__caffe.log").read_bytes()
    lines = [ln + b"\n" for ln in caffe_log.splitlines()][: args.lines]
    em_caffe = [sys.executable, "-m", "integrations.caffe", "--name", "bench"]
    with tempfile.TemporaryDirectory() as tmp:
        env = _env(tmp)
        lat_cat = latency(["cat"], lines, env)
        lat_em = latency(em_caffe, lines, env)
        print(f"pipe latency per line (median of {len(lines)}): cat {lat_cat:.0f} us, "
              f"em caffe {lat_em:.0f} us")

        big = os.path.join(tmp, "big.log")
        corpus = b"".join(Path(p).read_bytes()
                          for p in sorted(glob.glob(str(CORPUS / "caffe" / "*.log"))))
        target = args.size_mb << 20
        with open(big, "wb") as f:
            written = 0
            while written < target:
                f.write(corpus)
                written += len(corpus)
        size = os.path.getsize(big)
        n_lines = corpus.count(b"\n") * (size // len(corpus))
        subprocess.run(f"cat {big} > /dev/null", shell=True, check=True)  # page cache
        py = f"{sys.executable} -m integrations.caffe --name big"
        passthru = (f"{sys.executable} -c 'import sys; from integrations._logstream import "
                    f"pass_through_only as p; sys.exit(p(None))'")
        w_cat = pipe_wall(big, "cat", env)
        w_pass = pipe_wall(big, passthru, env)
        w_em = pipe_wall(big, py, env)
        print(f"pipe wall time, {size / 2**20:.0f} MiB ({n_lines:,} lines): cat {w_cat:.2f} s, "
              f"pass-through only {w_pass:.2f} s ({w_pass / w_cat:.2f}x), em caffe "
              f"{w_em:.2f} s ({w_em / w_cat:.2f}x, {n_lines / w_em:,.0f} lines/s)")


if __name__ == "__main__":
    main()
