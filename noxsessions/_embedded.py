"""The main job's second half: an em server on its embedded default (SQLite and a local
folder for artifact bytes, all under one data directory), started for the job and stopped
after it."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import nox


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def embedded_server(session: nox.Session, data: Path) -> Iterator[str]:
    """``em server start --data DATA`` on a free loopback port; yields its address once it
    answers its health check, and stops it afterwards (its log: DATA/../server.log)."""
    port = _free_port()
    em = str(Path(session.bin) / "em")
    log = open(data.parent / "server.log", "wb")  # closed in finally
    proc = subprocess.Popen([em, "server", "--data", str(data), "start", "--port", str(port)],
                            stdout=log, stderr=subprocess.STDOUT)
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
    user add``; captured here, never echoed)."""
    out = session.run("em", "server", "--data", str(data), "user", "add", user, silent=True)
    key = str(out).strip().splitlines()[-1].strip()
    if not key:
        session.error("em server user add printed no key")
    return key


def clean_env(tmp: Path) -> dict[str, str]:
    """The job's em settings: its own config file (never the user's), no key inherited."""
    env = {"EM_CONFIG": str(tmp / "em-config.yaml")}
    for var in ("EM_HOST", "EM_API_KEY"):
        if var in os.environ:
            env[var] = ""
    return env
