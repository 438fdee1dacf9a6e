"""Web console page speed, measured by the browser itself (performance API, headless Debian
chromium via Playwright) against ``em server`` on SQLite:

- the first page of the run list with N runs (default 10,000) in one folder: navigation start
  to the table drawn (mark ``em:list-drawn``);
- a run page with 5 metrics of M points each (default 1,000,000; the server sends a
  downsampled min/max view): navigation start to every chart drawn (mark ``em:charts-drawn``);
- a zoom into 1% of a chart: the detail fetched and drawn (``window.emConsole.zoom``).

    PYTHONPATH=. python3 bench/console_pages.py [--runs 10000] [--points 1000000]
        [--mlflow /path/to/venv/bin/python]

With ``--mlflow`` (a Python that has mlflow==3.17.2), the same runs and points are logged to
MLflow (SQLite backend; its client logs ~20 runs/s and ~4,000 points/s here, so compare at a
smaller scale, e.g. ``--runs 1000 --points 100000``), an MLflow server is started on it, and
the MLflow UI's run list and run page are timed from ``page.goto`` to the last run's name /
5 drawn chart lines in the DOM (wall clock; the MLflow UI sets no marks).
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
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

from tests.console.conftest import CHROMIUM, free_port, start_server

# bypass_csp: page.wait_for_function evaluates strings, which the console's CSP forbids
# (tall enough that MLflow, which draws only the charts in view, draws all 5)
VIEW: dict[str, Any] = {"viewport": {"width": 1440, "height": 1600}, "bypass_csp": True}

MLFLOW_LOG = r'''
import sys, time, numpy as np, mlflow
from mlflow.entities import Metric
n_runs, points = int(sys.argv[2]), int(sys.argv[3])
mlflow.set_tracking_uri(sys.argv[1])
exp = mlflow.set_experiment("bench")
client = mlflow.tracking.MlflowClient()
t0 = time.time()
for i in range(n_runs):
    r = client.create_run(exp.experiment_id, run_name=f"run-{i}",
                          tags={"label": "bench"})
    client.log_batch(r.info.run_id, params=[mlflow.entities.Param("lr", str(0.001 * (i % 10))),
                     mlflow.entities.Param("batch_size", str(32 << (i % 3)))])
    client.set_terminated(r.info.run_id)
t1 = time.time()
r = client.create_run(exp.experiment_id, run_name="big")
ts = int(time.time() * 1000)
for k in range(5):
    for a in range(0, points, 1000):
        client.log_batch(r.info.run_id, metrics=[
            Metric(f"m{k}", float(np.sin(s / 1000.0)), ts + s, s)
            for s in range(a, min(points, a + 1000))])
client.set_terminated(r.info.run_id)
print(exp.experiment_id, r.info.run_id, round(t1 - t0, 1), round(time.time() - t1, 1))
'''


def make_runs(srv: Any, n: int) -> float:
    """``n`` finished runs with hyperparameters in /alice/bench, through the API."""
    t0 = time.perf_counter()

    def one(i: int) -> None:
        with httpx.Client(base_url=srv.url + "/api/v1", timeout=60,
                          headers={"Authorization": f"Bearer {srv.key}"}) as c:
            for j in range(i, n, 8):
                start = 1.79e9 + j * 60
                meta = {"name": f"run-{j}", "alternative_name": f"run-{j}_bench",
                        "status": "Complete" if j % 7 else "Failed", "labels": ["bench"],
                        "description": f"bench run {j}",
                        "start_timestamp": time.strftime(
                            "%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(start)),
                        "end_timestamp": time.strftime(
                            "%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(start + 30 + j % 50)),
                        "hparams": {"lr": 0.001 * (j % 10), "batch_size": 32 << (j % 3),
                                    "optimizer": {"name": ["sgd", "adam"][j % 2]}}}
                c.post("/runs", json={"folder": "/alice/bench", "make_folder": True,
                                      "conflict_strategy": "error", "meta": meta}
                       ).raise_for_status()

    with cf.ThreadPoolExecutor(8) as ex:
        list(ex.map(one, range(8)))
    return time.perf_counter() - t0


def make_big_run(srv: Any, tmp: Path, points: int) -> str:
    os.environ.update(EM_RUN_PARENT_DIR=str(tmp / "runs"), EM_HOST=srv.url, EM_API_KEY=srv.key,
                      EM_CONFIG=str(tmp / "config.yaml"))
    import em_core as em

    run = em.create_run(name="big")
    for i in range(points):
        x = i / 1000.0
        run.log("train", {"m0": x, "m1": -x, "m2": i % 1000, "m3": 1.0 / (i + 1),
                          "m4": (i * 7919) % 10007}, step=i)
    run.finish()
    t0 = time.perf_counter()
    em.upload(run.local, folder="bench-big", make_folder=True)
    print(f"uploaded 5 x {points:,} points in {time.perf_counter() - t0:.1f} s", flush=True)
    with httpx.Client(base_url=srv.url + "/api/v1",
                      headers={"Authorization": f"Bearer {srv.key}"}) as c:
        return str(c.get("/runs", params={"folder": "/alice/bench-big"}).json()["runs"][0]["id"])


def mark(page: Any, name: str) -> float:
    """Milliseconds from navigation start to the first performance mark ``name``."""
    page.wait_for_function(f"performance.getEntriesByName({name!r}).length > 0",
                           timeout=60_000)
    return float(page.evaluate(f"performance.getEntriesByName({name!r})[0].startTime"))


def med(xs: list[float]) -> str:
    return f"{statistics.median(xs):.0f} ms (runs: {', '.join(f'{x:.0f}' for x in xs)})"


def em_pages(srv: Any, big: str, runs: int, points: int, repeat: int) -> dict[str, str]:
    from playwright.sync_api import sync_playwright

    out: dict[str, str] = {}
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = b.new_context(**VIEW).new_page()
        page.goto(srv.url + "/signin")
        page.fill("#api-key", srv.key)
        page.click("button[type=submit]")
        page.wait_for_url("**/runs**")
        lst, run_ms, zoom = [], [], []
        for _ in range(repeat):
            page.goto(srv.url + "/runs?folder=/alice/bench")
            lst.append(mark(page, "em:list-drawn"))
            assert page.locator("#runs tbody tr").count() == min(50, runs)
        total = page.locator("#runs-total").text_content()
        for _ in range(repeat):
            page.goto(srv.url + f"/run/{big}")
            run_ms.append(mark(page, "em:charts-drawn"))
            assert page.locator(".chart[data-drawn='1']").count() == 5
        for i in range(repeat):
            lo = points * (0.4 + 0.05 * i)
            page.evaluate("window.emConsole.charts[0].reset()")
            ms = page.evaluate("""async ([lo, hi]) => { const t = performance.now();
                await window.emConsole.zoom(0, lo, hi); return performance.now() - t; }""",
                               [lo, lo + points / 100])
            zoom.append(float(ms))
        b.close()
    out["em: run list, first page"] = f"{med(lst)}; {total} runs"
    out["em: run page, 5 charts drawn"] = med(run_ms)
    out["em: zoom into 1% of a chart"] = med(zoom)
    return out


def mlflow_pages(py: str, tmp: Path, runs: int, points: int, repeat: int) -> dict[str, str]:
    from playwright.sync_api import sync_playwright

    port = free_port()
    uri = f"sqlite:///{tmp}/mlflow.db"
    env = dict(os.environ, MLFLOW_DISABLE_TELEMETRY="1", DO_NOT_TRACK="1")
    env.pop("PYTHONPATH", None)
    (tmp / "mlflow_log.py").write_text(MLFLOW_LOG)
    t0 = time.perf_counter()
    out = subprocess.run([py, str(tmp / "mlflow_log.py"), uri, str(runs), str(points)],
                         capture_output=True, text=True, env=env, check=True)
    exp_id, run_id, t_runs, t_big = out.stdout.split()[-4:]
    print(f"mlflow: logged {runs} runs in {t_runs} s, 5 x {points:,} points in {t_big} s "
          f"({time.perf_counter() - t0:.0f} s)", flush=True)
    server = subprocess.Popen([py, "-m", "mlflow", "server", "--backend-store-uri", uri,
                               "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    res: dict[str, str] = {}
    try:
        for _ in range(240):
            try:
                if httpx.get(url + "/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.5)
        with sync_playwright() as p:
            b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
            page = b.new_context(**VIEW).new_page()
            lst, run = [], []
            for _ in range(repeat):
                page.goto("about:blank")  # a full page load each time, as for em
                t = time.perf_counter()
                page.goto(f"{url}/#/experiments/{exp_id}/runs")
                page.wait_for_selector(f"text=run-{runs - 1}", timeout=120_000)
                lst.append((time.perf_counter() - t) * 1000)
            for _ in range(repeat):
                page.goto("about:blank")
                t = time.perf_counter()
                page.goto(f"{url}/#/experiments/{exp_id}/runs/{run_id}/model-metrics")
                page.wait_for_function(
                    "document.querySelectorAll('.js-plotly-plot path.js-line').length >= 5",
                    timeout=180_000)
                run.append((time.perf_counter() - t) * 1000)
            b.close()
        res["MLflow UI: run list, first page"] = med(lst)
        res["MLflow UI: run page, 5 charts present"] = med(run)
    finally:
        server.terminate()
        server.wait(30)
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--runs", type=int, default=10_000)
    ap.add_argument("--points", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--mlflow", help="a Python with mlflow==3.17.2 installed")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="em-console-bench-"))
    srv = start_server(tmp)
    try:
        print(f"made {args.runs} runs in {make_runs(srv, args.runs):.1f} s", flush=True)
        big = make_big_run(srv, tmp, args.points)
        results = em_pages(srv, big, args.runs, args.points, args.repeat)
    finally:
        srv.proc.terminate()
        srv.proc.wait(30)
    if args.mlflow:
        results.update(mlflow_pages(args.mlflow, tmp, args.runs, args.points, args.repeat))
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
