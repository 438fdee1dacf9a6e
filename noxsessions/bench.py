"""Benchmarks (not part of a plain ``nox`` run): em against its peers, in one environment.

    python3 -m nox -s bench                       # every benchmark; rewrites bench/RESULTS.md
    python3 -m nox -s bench -- log_latency.py --trackers em naive --calls 2000   # one script
    python3 -m nox -s bench -- server_ingest.py --points 1000000 --mlflow-points 100000
    python3 -m nox -s bench -- autoupload_cost.py --calls 300000 --repeat 5

(the two em server benchmarks print their figures; bench/RESULTS_server.md records them)
"""

from __future__ import annotations

import nox

DEFAULT: list[str] = []

SCRIPTS = (("log_latency.py", "--repeat", "3", "--max-seconds", "30", "--write-results"),
           ("sigkill_loss.py", "--write-results"),
           ("memory_flat.py", "--trackers", "em", "naive", "--write-results"))


@nox.session
def bench(session: nox.Session) -> None:
    """run.log latency, points lost on SIGKILL, memory over 10M calls (em and peers)."""
    session.install("-r", "bench/requirements.txt", "-e", ".[server]")
    if session.posargs:
        session.run("python", f"bench/{session.posargs[0]}", *session.posargs[1:])
        return
    for script, *args in SCRIPTS:
        session.run("python", f"bench/{script}", *args)
