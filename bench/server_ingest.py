"""Ingest and read speed of em server (SQLite) against an MLflow tracking server (SQLite),
both started on this machine in the same run.

    PYTHONPATH=. python3 bench/server_ingest.py --points 1000000 --mlflow-points 100000

em: a finished run of ``--points`` ``train/loss`` points is uploaded with ``em upload`` (the
client's ``em_core.upload``, timed in-process, ``--uploads`` times into new folders, each a
new run on the server: the median is compared; then the ``em upload`` command once more,
timed as a process, start-up included); then one metric's full series and a
1,000-point downsampled (min/max per bucket) view are read back, best of ``--repeat``.

MLflow: ``mlflow server --backend-store-uri sqlite:///...`` (MLFLOW_DISABLE_TELEMETRY=1,
DO_NOT_TRACK=1, MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false: its GenAI job runner off); the
same values (``loss`` = 1/(i+1) at step i) are logged with ``MlflowClient.log_batch`` of
1,000 metrics, for ``--mlflow-points`` points only (MLflow is slow; points/s is what is
compared), after untimed warm-up batches in another run (until two in a row take about the
same time). MLflow runs in the interpreter given by ``--mlflow-python`` (default: this
one), so it may live in its own virtual environment.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx

import em_core as em
from em_core._client import Client
from tests.server.conftest import REPO, free_port, start_server, stop

MLFLOW_CLIENT = r"""
import json, sys, time
from mlflow.entities import Metric
from mlflow.tracking import MlflowClient
uri, n = sys.argv[1], int(sys.argv[2])
c = MlflowClient(tracking_uri=uri)
exp = c.create_experiment("bench")
# the server's first minute is slow (lazy start-up, its job scheduler starting beside it):
# untimed warm-up batches in another run until two in a row take about the same time
warm = c.create_run(exp)
prev = None
for k in range(60):
    t = time.perf_counter()
    c.log_batch(warm.info.run_id, metrics=[Metric("loss", 0.5, 0, k * 1000 + i)
                                           for i in range(1000)])
    t = time.perf_counter() - t
    if prev is not None and abs(t - prev) < 0.25 * prev:
        break
    prev = t
run = c.create_run(exp)
rid = run.info.run_id
now = int(time.time() * 1000)
batches = [[Metric("loss", 1.0 / (i + 1), now + i, i) for i in range(a, min(a + 1000, n))]
           for a in range(0, n, 1000)]
t0 = time.perf_counter()
for b in batches:
    c.log_batch(rid, metrics=b)
dt = time.perf_counter() - t0
c.set_terminated(rid)
t1 = time.perf_counter()
hist = c.get_metric_history(rid, "loss")
read = time.perf_counter() - t1
print(json.dumps({"points": n, "seconds": dt, "stored": len(hist), "read_seconds": read,
                  "warmup_batches": k + 1}))
"""


def make_run(name: str, points: int) -> em.Run:
    run = em.create_run(name=name)
    for i in range(points):
        run.log("train", {"loss": 1.0 / (i + 1)}, step=i)
    run.finish()
    return run


def bench_em(tmp: Path, points: int, repeat: int, uploads: int) -> dict[str, Any]:
    os.environ["EM_RUN_PARENT_DIR"] = str(tmp / "runs")
    os.environ["EM_CONFIG"] = str(tmp / "em-config.yaml")
    run = make_run("bench", points)
    size = (Path(run.local) / "metrics.bin").stat().st_size
    srv = start_server(tmp, "sqlite")
    out: dict[str, Any] = {"bytes": size, "upload_s": []}
    try:
        key = srv.admin("user", "add", "bench")
        em.login(srv.url, key)
        # the same finished run into new folders: each upload is a new run on the server
        with Client(srv.url, key, timeout=600) as client:
            for k in range(uploads):
                t0 = time.perf_counter()
                where = em.upload(run.local, folder=f"bench{k}", make_folder=True,
                                  client=client)
                out["upload_s"].append(time.perf_counter() - t0)
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "em_core.cli", "upload", run.local,
                        "--folder", "bench-cli", "--make-folder"], env=env, check=True,
                       capture_output=True)
        out["cli_s"] = time.perf_counter() - t0
        with httpx.Client(base_url=srv.url + "/api/v1", timeout=600,
                          headers={"Authorization": f"Bearer {key}"}) as c:
            info = c.get("/runs/by-path", params={"path": where[0]["path"]}).json()
            assert info["metrics_length"] == size, "the server does not hold the whole run"
            q = {"type": "train", "name": "loss"}
            for label, extra in (("full", {}), ("view", {"max_points": 1000})):
                best = 1e9
                for _ in range(repeat):
                    t0 = time.perf_counter()
                    r = c.get(f"/runs/{info['id']}/series/points", params={**q, **extra})
                    r.raise_for_status()
                    best = min(best, time.perf_counter() - t0)
                body = r.json()
                assert body["count"] == points
                out[f"{label}_ms"] = best * 1000
                out[f"{label}_returned"] = len(body["step"])
    finally:
        stop(srv)
    return out


def bench_mlflow(tmp: Path, points: int, python: str) -> dict[str, float]:
    port = free_port()
    # its job runner (GenAI jobs, nothing to do with metrics) would start beside the server
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "1", "DO_NOT_TRACK": "1",
           "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    env.pop("PYTHONPATH", None)
    mlflow = [python, "-m", "mlflow"]
    log = open(tmp / "mlflow-server.log", "wb")
    proc = subprocess.Popen([*mlflow, "server", "--backend-store-uri",
                             f"sqlite:///{tmp / 'mlflow.db'}", "--default-artifact-root",
                             str(tmp / "mlflow-artifacts"), "--host", "127.0.0.1", "--port",
                             str(port), "--workers", "1"], env=env, stdout=log, stderr=log,
                            cwd=tmp)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                if httpx.get(url + "/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("mlflow server did not start:\n" +
                                   (tmp / "mlflow-server.log").read_text()[-3000:])
            time.sleep(0.2)
        res = subprocess.run([python, "-c", MLFLOW_CLIENT, url, str(points)], env=env,
                             check=True, capture_output=True, text=True)
        got: dict[str, float] = json.loads(res.stdout.strip().splitlines()[-1])
        assert got["stored"] == points, got
        return got
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--points", type=int, default=1_000_000)
    ap.add_argument("--mlflow-points", type=int, default=100_000)
    ap.add_argument("--mlflow-python", default=sys.executable)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--uploads", type=int, default=3)
    ap.add_argument("--skip-mlflow", action="store_true")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="em-bench-server-"))
    e = bench_em(tmp, args.points, args.repeat, args.uploads)
    rates = sorted(args.points / s for s in e["upload_s"])
    em_rate = statistics.median(rates)
    print(f"em upload (in-process em_core.upload), {args.uploads} uploads of {args.points:,} "
          f"points ({e['bytes'] / 1e6:.1f} MB): median {em_rate:,.0f} points/s "
          f"(each: {', '.join(f'{r:,.0f}' for r in rates)})")
    print(f"em upload (the command, a process, start-up included): {e['cli_s']:.3f} s = "
          f"{args.points / e['cli_s']:,.0f} points/s")
    print(f"em read full series: {e['full_ms']:.1f} ms (best of {args.repeat}, "
          f"{e['full_returned']:.0f} points)")
    print(f"em read 1000-point view: {e['view_ms']:.1f} ms (best of {args.repeat}, "
          f"{e['view_returned']:.0f} points)")
    if args.skip_mlflow:
        return
    m = bench_mlflow(tmp, args.mlflow_points, args.mlflow_python)
    ml_rate = m["points"] / m["seconds"]
    print(f"mlflow log_batch(1000): {m['points']:,.0f} points in {m['seconds']:.3f} s = "
          f"{ml_rate:,.0f} points/s (get_metric_history of them: "
          f"{m['read_seconds'] * 1000:.0f} ms)")
    print(f"em / mlflow ingest: {em_rate / ml_rate:.1f}x")


if __name__ == "__main__":
    main()
