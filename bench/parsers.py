"""Speed of the Caffe and MXNet log parsers and of the ``em caffe`` pass-through pipe.

    PYTHONPATH=. python3 bench/parsers.py                   # everything, 1 GiB pipe log
    PYTHONPATH=. python3 bench/parsers.py --size-mb 256     # a smaller pipe test
    PYTHONPATH=. python3 bench/parsers.py --only throughput --repeat 9

1. Throughput (lines/s) over every log of ../shared/corpus (read into memory first), two
   ways: ``parse`` (the parser alone, events built) and ``record`` (end to end: the
   recorder of ``em caffe``/``em mxnet`` fed the whole file, parsing plus every ``run.log``
   and hyperparameter write, into a fresh run per log; creating and finishing the run are
   not timed). Each figure is the median over --repeat rounds, in wall time and in CPU time
   of the process (the machine is shared: CPU time is the steadier of the two).
2. Pipe latency: a line written into ``em caffe`` until it is read back on the other side,
   against ``cat`` (median over --lines round trips). ``--slow-ms`` spaces the lines out the
   way a real Caffe prints them (a few per second), so that every line meets an idle pipe.
3. Pipe wall time for a log of --size-mb MiB made by repeating the Caffe corpus (written to
   a temporary folder, never into the repository): ``cat log | X | cat >/dev/null`` with
   X = ``cat``, the one-process pass-through em falls back to where it cannot fork (no
   parsing), and ``em caffe`` (``python -m em_core.cli caffe``, what the ``em`` script runs:
   parse and record; ``--python`` picks the interpreter, its bare start-up is printed);
   until the log has flowed through (the producer has written all of it and the consumer
   has seen its end: what a training writing into the pipe, and whoever reads after em,
   wait for), median of --flow-repeat interleaved runs; and for em caffe, until it has
   recorded the whole log and exited, median of --pipe-repeat runs.

``--old DIR`` (a git worktree of older code) adds that code's ``em caffe`` to the first-line
and pipe figures, interleaved with the current one. ``bench/mxnet_record.py`` compares
recording MXNet logs old against new.

The load average is printed with every figure.
"""

from __future__ import annotations

import argparse
import glob
import math
import os
import shutil
import signal
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


def load() -> str:
    return "load " + " ".join(f"{x:.1f}" for x in os.getloadavg())


def _corpus(kind: str) -> list[bytes]:
    return [Path(p).read_bytes() for p in sorted(glob.glob(str(CORPUS / kind / "*.log")))]


def _lines(datas: list[bytes]) -> int:
    return sum(d.count(b"\n") + (not d.endswith(b"\n")) for d in datas)


def _one_round(kind: str, datas: list[bytes], record: bool) -> tuple[float, float]:
    """(wall, cpu) seconds to parse (and record) every log of the corpus once."""
    import em_core as em
    from integrations.caffe import CaffeRecorder
    from integrations.mxnet_log import MXNetRecorder

    wall = cpu = 0.0
    for data in datas:
        run = em.create_run(name=f"bench-{kind}") if record else None
        w0, c0 = time.perf_counter(), time.process_time()
        if not record:
            p = CaffeLogParser(year=2020) if kind == "caffe" else MXNetLogParser()
            p.feed_bytes(data)
            if kind == "caffe":
                p.close()
        elif kind == "caffe":
            rec = CaffeRecorder(run, parser=CaffeLogParser(year=2020))
            rec.feed(data)
            rec.close()
        else:
            rec = MXNetRecorder(run)
            rec.feed(data)
        wall += time.perf_counter() - w0
        cpu += time.process_time() - c0
        if record:
            run.finish()
    return wall, cpu


def throughput(repeat: int, tmp: str) -> None:
    os.environ.update(EM_RUN_PARENT_DIR=os.path.join(tmp, "runs"), EM_STRICT="0",
                      EM_ARTIFACT_PARENT_DIR=os.path.join(tmp, "arts"))
    corpora = {kind: _corpus(kind) for kind in ("caffe", "mxnet")}
    counts = {kind: _lines(d) for kind, d in corpora.items()}
    counts["all"] = counts["caffe"] + counts["mxnet"]
    for mode in ("parse", "record"):
        times: dict[str, list[tuple[float, float]]] = {"caffe": [], "mxnet": [], "all": []}
        for _ in range(repeat):
            c = _one_round("caffe", corpora["caffe"], mode == "record")
            m = _one_round("mxnet", corpora["mxnet"], mode == "record")
            times["caffe"].append(c)
            times["mxnet"].append(m)
            times["all"].append((c[0] + m[0], c[1] + m[1]))
        for kind, samples in times.items():
            wall = statistics.median(s[0] for s in samples)
            cpu = statistics.median(s[1] for s in samples)
            print(f"{mode:6} {kind:5} {counts[kind]:7,} lines: {counts[kind] / wall:9,.0f} "
                  f"lines/s wall, {counts[kind] / cpu:9,.0f} lines/s CPU "
                  f"(median of {repeat}; {load()})", flush=True)


def _env(tmp: str, code: Path = REPO) -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=str(code), EM_RUN_PARENT_DIR=os.path.join(tmp, "runs"),
                EM_ARTIFACT_PARENT_DIR=os.path.join(tmp, "arts"), EM_STRICT="0")


def _neutral(env: dict[str, str]) -> str:
    """Where the commands run: not the repository, whose folder ``python -m``/``-c`` would put
    first on sys.path, ahead of PYTHONPATH (``--old`` would then time this checkout's code)."""
    return os.path.dirname(env["EM_RUN_PARENT_DIR"])


def latency(command: list[str], lines: list[bytes], env: dict[str, str],
            slow: float) -> tuple[float, float]:
    """Median microseconds from writing a line to reading it back through ``command``, and
    milliseconds from starting ``command`` to reading back the first line (start-up)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env,
                            bufsize=0, cwd=_neutral(env))
    assert proc.stdin is not None and proc.stdout is not None
    # wait until the program is up (python start-up is not pipe latency)
    proc.stdin.write(b"warm-up\n")
    proc.stdout.readline()
    first = (time.perf_counter() - t0) * 1000
    samples = []
    for line in lines:
        if slow:
            time.sleep(slow)
        t0 = time.perf_counter()
        proc.stdin.write(line)
        got = proc.stdout.readline()
        samples.append(time.perf_counter() - t0)
        assert got == line
    proc.stdin.close()
    proc.wait()
    return (statistics.median(samples) * 1e6 if samples else math.nan), first


def pipe_wall(big: str, command: list[str], env: dict[str, str], *,
              flow_only: bool = False) -> tuple[float, float]:
    """``cat big | command | cat > /dev/null``: seconds until the log has flowed through
    (the producer has written all of it and the consumer has read all of it and seen its
    end), and until ``command`` has exited (``flow_only``: it is stopped with two SIGINTs
    once the log has flowed, and the second figure is NaN)."""
    t0 = time.perf_counter()
    producer = subprocess.Popen(["cat", big], stdout=subprocess.PIPE)
    middle = subprocess.Popen(command, stdin=producer.stdout, stdout=subprocess.PIPE, env=env,
                              cwd=_neutral(env))
    consumer = subprocess.Popen(["cat"], stdin=middle.stdout, stdout=subprocess.DEVNULL)
    assert producer.stdout is not None and middle.stdout is not None
    producer.stdout.close()
    middle.stdout.close()
    producer.wait()
    consumer.wait()
    flowed = time.perf_counter() - t0
    if flow_only and middle.poll() is None:
        for _ in range(2):  # em: the first lets it record the backlog, the second stops it
            middle.send_signal(signal.SIGINT)
            time.sleep(0.2)
        middle.wait()
        return flowed, math.nan
    middle.wait()
    for proc in (producer, middle, consumer):
        assert proc.returncode == 0, (command, proc.returncode)
    return flowed, time.perf_counter() - t0


def pipes(args: argparse.Namespace, tmp: str) -> None:  # noqa: C901 - one table of the bench: each variant's set-up and timing, read top to bottom
    env = _env(tmp)
    caffe_log = (CORPUS / "caffe" / "qiexing__caffe-regression__caffe.log").read_bytes()
    lines = [ln + b"\n" for ln in caffe_log.splitlines()]
    em_caffe = [args.python, "-m", "em_core.cli", "caffe", "--name", "bench"]
    if args.only in (None, "latency"):
        fast = lines[:args.lines]
        slow = lines[:args.slow_lines]
        lat = {(name, s): latency(cmd, fast if not s else slow, env, s / 1000)
               for s in (0, args.slow_ms) for name, cmd in (("cat", ["cat"]),
                                                            ("em caffe", em_caffe))}
        for s in (0, args.slow_ms):
            n = len(fast if not s else slow)
            cat, em = lat[("cat", s)][0], lat[("em caffe", s)][0]
            print(f"pipe latency per line, median of {n}"
                  + (f", a line every {s} ms" if s else ", back to back")
                  + f": cat {cat:.0f} us, em caffe {em:.0f} us (+{em - cat:.0f} us; {load()})",
                  flush=True)
        starters = {"cat": (["cat"], env), "em caffe": (em_caffe, env)}
        if args.old:  # the same command from the old checkout
            starters["em caffe (old)"] = (em_caffe, _env(tmp, args.old))
        firsts: dict[str, list[float]] = {name: [] for name in starters}
        for _ in range(args.first_repeat):  # interleaved
            for name, (cmd, cmd_env) in starters.items():
                firsts[name].append(latency(cmd, [], cmd_env, 0)[1])
        print(f"first line through after start (start-up), median of {args.first_repeat}, "
              f"interleaved: " + ", ".join(f"{name} {statistics.median(v):.1f} ms"
                                          for name, v in firsts.items()) + f" ({load()})",
              flush=True)
    if args.only not in (None, "pipe"):
        return
    big = os.path.join(tmp, "big.log")
    corpus = b"".join(_corpus("caffe"))
    target = args.size_mb << 20
    with open(big, "wb") as f:
        written = 0
        while written < target:
            f.write(corpus)
            written += len(corpus)
    size = os.path.getsize(big)
    n_lines = corpus.count(b"\n") * (size // len(corpus))
    subprocess.run(f"cat {big} > /dev/null", shell=True, check=True)  # page cache
    py = args.python
    passthru = [py, "-c", "import sys; from integrations.logpipe.command import "
                "pass_through_only as p; sys.exit(p(None))"]
    commands = {"cat": ["cat"], "one-process pass-through": passthru,
                "em caffe": [py, "-m", "em_core.cli", "caffe", "--name", "big"]}
    if args.no_site:  # interpreter start-up without site-packages' .pth files
        import yaml  # em's one dependency: its folder goes on sys.path by hand

        commands["em caffe -S"] = [
            py, "-S", "-c", f"import runpy, sys; sys.path.append("
            f"{os.path.dirname(os.path.dirname(yaml.__file__))!r}); sys.argv[1:] = "
            f"['caffe', '--name', 'big']; runpy.run_module('em_core.cli', run_name='__main__')"]
    starts = []
    for _ in range(9):
        t0 = time.perf_counter()
        subprocess.run([py, "-c", "pass"], check=True)
        starts.append(time.perf_counter() - t0)
    print(f"{py}: bare interpreter start-up (python -c pass) {statistics.median(starts) * 1000:.0f}"
          f" ms, median of 9", flush=True)
    envs = dict.fromkeys(commands, env)
    if args.old:
        commands["em caffe (old)"] = commands["em caffe"]
        envs["em caffe (old)"] = _env(tmp, args.old)
    flows: dict[str, list[float]] = {k: [] for k in commands}
    for _ in range(args.flow_repeat):  # interleaved: this VM's speed drifts minute to minute
        for name, command in commands.items():
            os.sync()  # no writeback of earlier files (the test log, a copy) during the run
            flows[name].append(pipe_wall(big, command, envs[name], flow_only=True)[0])
            shutil.rmtree(os.path.join(tmp, "runs"), ignore_errors=True)  # no dirty GiBs
    ends = [pipe_wall(big, commands["em caffe"], env)[1] for _ in range(args.pipe_repeat)]
    shutil.rmtree(os.path.join(tmp, "runs"), ignore_errors=True)
    print(f"pipe, {size / 2**20:.0f} MiB ({n_lines:,} lines) ({load()}): the log has flowed "
          f"through after (median of {args.flow_repeat}, interleaved):", flush=True)
    cat = statistics.median(flows["cat"])
    for name, samples in flows.items():
        flowed = statistics.median(samples)
        print(f"  {name:18} {flowed:6.2f} s ({flowed / cat:4.2f}x cat; all: "
              f"{' '.join(f'{x:.2f}' for x in samples)})", flush=True)
    if ends:
        end = statistics.median(ends)
        print(f"  em caffe has recorded the whole log and exited after {end:.1f} s (median "
              f"of {args.pipe_repeat}; {n_lines / end:,.0f} lines/s)", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", choices=["throughput", "latency", "pipe"], default=None)
    ap.add_argument("--repeat", type=int, default=5, help="throughput rounds (median)")
    ap.add_argument("--lines", type=int, default=2000, help="back-to-back latency lines")
    ap.add_argument("--slow-ms", type=float, default=20.0,
                    help="gap between lines for the slow-producer latency (ms)")
    ap.add_argument("--slow-lines", type=int, default=300, help="slow-producer latency lines")
    ap.add_argument("--size-mb", type=int, default=1024)
    ap.add_argument("--flow-repeat", type=int, default=7,
                    help="pipe runs timed until the log has flowed through (median)")
    ap.add_argument("--no-site", action="store_true",
                    help="also time em caffe under 'python -S' (no site-packages start-up)")
    ap.add_argument("--python", default=sys.executable,
                    help="interpreter that runs em caffe in the pipe tests (a virtual environment "
                         "with em installed is what users run; default: this one)")
    ap.add_argument("--old", type=Path, default=None,
                    help="a checkout of older code (git worktree): its em caffe is timed too, "
                         "interleaved, in the latency and pipe tests")
    ap.add_argument("--first-repeat", type=int, default=9,
                    help="first-line-through runs per command (median)")
    ap.add_argument("--pipe-repeat", type=int, default=1,
                    help="em caffe runs timed until it has recorded the whole log (median)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        if args.only in (None, "throughput"):
            throughput(args.repeat, tmp)
        if args.only != "throughput":
            pipes(args, tmp)


if __name__ == "__main__":
    main()
