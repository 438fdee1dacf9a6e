"""The main job's second half: an em server on its embedded default (SQLite and a local
folder for artifact bytes, all under one data directory), started for the job and stopped
after it."""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import nox

from noxsessions._common import free_port


@contextlib.contextmanager
def embedded_server(session: nox.Session, data: Path) -> Iterator[str]:
    """``em server start --data DATA`` on a free loopback port; yields its address once it
    answers its health check, and stops it afterwards (its log: DATA/../server.log)."""
    port = free_port()
    log = open(data.parent / "server.log", "wb")  # closed in finally
    proc = subprocess.Popen([_em(session), "server", "--data", str(data), "start", "--port",
                             str(port)], stdout=log, stderr=subprocess.STDOUT, env=_server_env())
    host = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                session.error(f"em server exited with {proc.returncode}; see {log.name}")
            try:
                with urllib.request.urlopen(host + "/api/v1/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                session.error(f"em server did not answer on {host} within 60 s; see {log.name}")
            time.sleep(0.2)
        session.log(f"em server on {host}, data in {data}")
        yield host
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def new_key(session: nox.Session, data: Path, user: str) -> str:
    """A new user on the server's database and its API key (printed once by ``em server
    user add``; captured here and never shown: not through session.run, whose output
    ``nox -v`` prints)."""
    session.log(f"em server --data {data} user add {user}")
    p = subprocess.run([_em(session), "server", "--data", str(data), "user", "add", user],
                       capture_output=True, text=True, env=_server_env())
    lines = p.stdout.split()
    if p.returncode != 0 or len(lines) != 1:
        session.error(f"em server user add failed (exit {p.returncode}): {p.stderr.strip()}")
    return lines[0]


def _em(session: nox.Session) -> str:
    return str(Path(session.bin) / "em")


def _server_env() -> dict[str, str]:
    """This environment without the settings that would point the job's server elsewhere
    (a database or object store of the caller's, or no key checks at all): the embedded
    default is what the job shows."""
    drop = {"EM_SERVER_DB", "EM_SERVER_OBJECTS", "EM_S3_ENDPOINT", "EM_SERVER_LOCAL",
            "EM_SERVER_DATA"}
    return {k: v for k, v in os.environ.items() if k not in drop}


def clean_env(tmp: Path) -> dict[str, str]:
    """The job's em settings: its own config file (never the user's), no key inherited."""
    env = {"EM_CONFIG": str(tmp / "em-config.yaml")}
    for var in ("EM_HOST", "EM_API_KEY"):
        if var in os.environ:
            env[var] = ""
    return env
