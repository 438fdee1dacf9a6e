"""``em ui [DIR]``: the web console on a local ``.em`` directory, with no server to set up,
no upload and no sign-in.

It runs the em server in local mode (one user, ``local``; no keys) on 127.0.0.1 with its own
database in a cache directory (``$XDG_CACHE_HOME/em/ui/<hash of DIR>``, or ``--data``), and a
mirror thread that follows DIR: new runs and artifacts appear within seconds, and a run
still training has its new metric points, console output and status sent as they land on
disk. The mirror only reads DIR (it never writes a run's files), and it sends each byte
range once, so a restart picks up where the last one stopped.
"""

from __future__ import annotations

import argparse
import hashlib
import ipaddress
import logging
import os
import socket
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

log = logging.getLogger("em.ui")
FOLDER = "/local"
SCAN_EVERY = 3.0  # seconds between looks for new run and artifact directories
SHIP_EVERY = 1.0  # seconds between sends of what known runs appended


def _cache_dir(top: Path) -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "em" / "ui" / hashlib.sha256(str(top).encode()).hexdigest()[:16]


def _free_port(host: str, preferred: int) -> int:
    for port in (preferred, 0):
        with socket.socket() as s:
            try:
                s.bind((host, port))
            except OSError:
                continue
            return int(s.getsockname()[1])
    raise OSError(f"no free port on {host}")


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def find_dirs(top: Path) -> tuple[list[Path], list[Path]]:
    """(run directories, artifact directories) under ``top``; never looks inside one."""
    runs, arts = [], []
    for root, subdirs, files in os.walk(top):
        if "run.json" in files:
            runs.append(Path(root))
            subdirs.clear()
        elif "artifact.json" in files:
            arts.append(Path(root))
            subdirs.clear()
        subdirs.sort()
    return runs, arts


class _RunMirror:
    """One local run followed into the server."""

    def __init__(self, client: Any, path: Path) -> None:
        from em_core._files import read_json
        from em_core._upload import (
            CONSOLE_FILE,
            ConsoleShipper,
            MetricShipper,
            create_remote,
        )

        self.client, self.path = client, path
        self.meta_sig: tuple[int, int] | None = None
        made = create_remote(client, "run", read_json(path / "run.json"), FOLDER, True, "new")
        self.id = str(made["id"])
        self.metrics = MetricShipper(client, self.id, path / "metrics.bin",
                                     int(made.get("metrics_length") or 0))
        self.console = ConsoleShipper(client, self.id, path / CONSOLE_FILE,
                                      int(made.get("console_length") or 0))

    def sync(self) -> None:
        from em_core._files import read_json

        self.metrics.ship()
        self.console.ship()
        st = os.stat(self.path / "run.json")
        sig = (st.st_mtime_ns, st.st_size)
        if sig != self.meta_sig:
            self.client.request("PUT", f"/runs/{self.id}/meta",
                                json_body={"meta": read_json(self.path / "run.json")})
            self.meta_sig = sig


class Mirror(threading.Thread):
    """Follows a local directory into the local-mode server at ``host``."""

    def __init__(self, top: Path, host: str) -> None:
        super().__init__(name="em-ui-mirror", daemon=True)
        self.top, self.host = top, host
        self.runs: dict[Path, _RunMirror] = {}
        self.artifacts: dict[Path, int] = {}
        self.stop = threading.Event()
        self.rounds = 0
        self._told: set[Path] = set()

    def run(self) -> None:
        from em_core._client import Client

        with Client(self.host, "local", retries=2) as client:
            last_scan = 0.0
            while not self.stop.is_set():
                if time.monotonic() - last_scan >= SCAN_EVERY:
                    last_scan = time.monotonic()
                    self._scan(client)
                for path, m in list(self.runs.items()):
                    self._guard(path, m.sync)
                self.rounds += 1
                self.stop.wait(SHIP_EVERY)

    def _guard(self, path: Path, fn: Any) -> bool:
        try:
            fn()
            return True
        except Exception as e:  # noqa: BLE001  # a half-written or odd directory must not stop the others
            if path not in self._told:
                self._told.add(path)
                log.warning("em ui: cannot show %s yet: %s", path, e)
            return False

    def _scan(self, client: Any) -> None:
        from em_core._upload import upload_artifact_dir

        runs, arts = find_dirs(self.top)
        for a in arts:  # artifacts first, so a run's data flow resolves when it appears
            try:
                mtime = (a / "artifact.json").stat().st_mtime_ns
            except OSError:
                continue
            if self.artifacts.get(a) != mtime and self._guard(a, lambda a=a: upload_artifact_dir(
                    a, client, FOLDER, True, "new", record=False)):
                self.artifacts[a] = mtime
        for r in runs:
            if r not in self.runs:
                def add(r: Path = r) -> None:
                    self.runs[r] = _RunMirror(client, r)
                self._guard(r, add)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``em ui``; returns the exit status."""
    p = argparse.ArgumentParser(prog="em ui", description="The web console on a local .em "
                                "directory: no server, no upload, no sign-in.")
    p.add_argument("dir", nargs="?", default=".em",
                   help="the directory with runs and artifacts (default: ./.em)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (loopback only)")
    p.add_argument("--port", type=int, default=8746, help="port (another when taken)")
    p.add_argument("--data", default=None, help="where the console keeps its database "
                   "(default: a cache directory for DIR)")
    p.add_argument("--open", action="store_true", help="open the console in a browser")
    args = p.parse_args(argv)
    top = Path(args.dir).resolve()
    if not top.is_dir():
        print(f"em ui: no such directory: {str(top)!r}", file=sys.stderr)
        return 2
    if not _loopback(args.host):
        print(f"em ui: refusing to bind {args.host!r}: the console has no sign-in in this "
              "mode, so it listens on loopback only (127.0.0.1, ::1 or localhost)",
              file=sys.stderr)
        return 2
    data = Path(args.data).resolve() if args.data else _cache_dir(top)
    data.mkdir(parents=True, exist_ok=True)
    os.environ["EM_SERVER_LOCAL"] = "1"
    os.environ["EM_SERVER_DATA"] = str(data)
    os.environ.pop("EM_SERVER_DB", None)
    import uvicorn

    from .app import create_app

    port = _free_port(args.host, args.port)
    server = uvicorn.Server(uvicorn.Config(create_app(), host=args.host, port=port,
                                           log_level="warning"))
    host = f"[{args.host}]" if ":" in args.host else args.host
    url = f"http://{host}:{port}/"
    mirror = Mirror(top, url.rstrip("/"))

    def announce() -> None:
        while not server.started and not server.should_exit:
            time.sleep(0.05)
        if server.started:
            mirror.start()
            print(f"em ui: {url} (runs in {top})", flush=True)
            if args.open:
                import webbrowser

                webbrowser.open(url)

    threading.Thread(target=announce, daemon=True).start()
    server.run()
    mirror.stop.set()
    return 0


if __name__ == "__main__":
    sys.exit(main())
