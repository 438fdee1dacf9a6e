"""The auto-upload process behind ``create_run(auto_upload=True)`` (see :mod:`em_core._uploader`).

The training process starts it (``python -c ...``, a fresh interpreter, never a fork) with
pipes for stdin and stdout; it runs at the lowest priority (Linux's idle scheduling class
while the run trains, ``nice`` +10 elsewhere and after the end) in its own session (a
Ctrl-C in the terminal is for the training, not for it) and holds none of the training
process's descriptors (so never the run's ``.lock``: the run never looks alive because of
it).

Protocol. Stdin, from the training process: one JSON line with the settings and the
credentials (the API key travels only over this pipe: never in argv, the environment, a file
or a log), then ``{"end": seconds}`` when the run ended. The end of stdin without that line
means the training process died (SIGKILL, a crash): the uploader then ships what is on disk,
as at a normal end, with the status ``Crashed`` (what em reports locally for such a run),
and exits. Stdout, to the training process: one JSON line per event, few
in a run: ``{"log": message}`` for the ``em`` log, ``{"entry": ...}`` once the server has the
run, ``{"state": ...}`` (the lengths the server holds) at the end, ``{"done": ok}`` last.

Every ``interval`` seconds it ships the complete records appended to ``metrics.bin`` since
the length the server holds (the server applies each byte range once), ``console.log`` the
same way, and ``run.json`` when its mtime or size changed; at the end, the rest and the
final ``run.json`` (the status). A server that is down or answers 5xx is retried with
backoff, said once; after the end it keeps trying for the time it was given, then exits.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

from ._client import Client
from ._files import read_json
from ._lifecycle import writer_alive
from ._upload import CONSOLE_FILE, ConsoleShipper, MetricShipper, create_remote
from .errors import LoginError, RemoteError

__all__ = ["main"]


class _Stop(RemoteError):
    """Nothing more to do for this run on the server (conflict_strategy='skip')."""


def final_refusal(e: BaseException) -> bool:
    """Whether retrying cannot help: a bad key, no write access, a 'skip'."""
    if isinstance(e, (LoginError, _Stop)):
        return True
    status = getattr(e, "status", None)
    return isinstance(e, RemoteError) and status is not None and 400 <= status < 500 \
        and status != 409


class Worker:
    """Ships one run until it ends (see the module docstring)."""

    def __init__(self, cfg: dict[str, Any], out: Any) -> None:
        self.cfg = cfg
        self.out = out
        self.path = Path(cfg["dir"])
        self.name = str(cfg["name"])
        self.interval = float(cfg["interval"])
        self.parent = int(cfg["ppid"])
        self.wake = threading.Event()
        self.ending = threading.Event()
        self.deadline: float | None = None
        self.client = Client(cfg["host"], cfg["api_key"], timeout=float(cfg["http_timeout"]),
                             retries=None, stop=self._past_deadline, on_wait=self._say_waiting)
        self.client._user = cfg.get("user")
        self.shipper: MetricShipper | None = None
        self.console: ConsoleShipper | None = None
        self.run_id: str | None = None
        self.meta_sig: tuple[int, int] | None = None
        self.waiting_said = False
        self.orphaned = False  # the training process died without ending the run
        self._send_lock = threading.Lock()

    # ----------------------------------------------------------------- to the parent
    def send(self, msg: dict[str, Any]) -> None:
        line = json.dumps(msg) + "\n"
        try:
            with self._send_lock:
                self.out.write(line)
                self.out.flush()
        except (OSError, ValueError):  # the training process is gone: say it here
            if "log" in msg:
                try:
                    sys.stderr.write(str(msg["log"]) + "\n")
                    sys.stderr.flush()
                except (OSError, ValueError):
                    pass

    def _say_waiting(self, reason: str) -> None:
        if not self.waiting_said:
            self.waiting_said = True
            self.send({"log": f"em: auto-upload of run {self.name!r} is waiting: {reason}. "
                              "The run is recorded locally and training goes on; upload "
                              "resumes when the server is back.", "waiting": True,
                       "state": self.state()})

    # ----------------------------------------------------------------- from the parent
    def listen(self, stdin: Any) -> None:
        """Stdin's reader (a thread): ``{"end": seconds}``, or its end (the parent died)."""
        try:
            for line in stdin:
                msg = json.loads(line)
                if "end" in msg:
                    self._end(float(msg["end"]))
                    return
        except (OSError, ValueError):
            pass
        self._orphaned()

    def _orphaned(self) -> None:
        self.orphaned = True
        self._end(float(self.cfg["timeout"]))

    def _end(self, budget: float) -> None:
        if self.deadline is None:
            self.deadline = time.monotonic() + budget
            self._report()  # how far it got: what finish() names as left if time runs out
            _priority(idle=False)  # nothing to take CPU from any more: finish in time
        self.ending.set()
        self.wake.set()

    def _past_deadline(self) -> bool:
        if self.deadline is None and os.getppid() != self.parent:
            self._orphaned()  # reparented: the training process died
        return self.deadline is not None and time.monotonic() > self.deadline

    def _pause(self, seconds: float) -> None:
        stop = time.monotonic() + seconds
        while not self.wake.is_set():
            left = stop - time.monotonic()
            if left <= 0:
                return
            self.wake.wait(min(left, 1.0))
            if os.getppid() != self.parent:  # reparented: the training process died
                self._orphaned()

    # ----------------------------------------------------------------- the loop
    def run(self) -> None:
        while True:
            ending = self.ending.is_set()
            try:
                self._sync(final=ending)
            except (RemoteError, OSError, ValueError, KeyError, RuntimeError) as e:
                if final_refusal(e):
                    self.send({"log": f"em: auto-upload of run {self.name!r} stopped: {e}. "
                                      "The run is recorded locally; upload it later with "
                                      f"`em upload {self.path}`", "failed": str(e)})
                    break
                if ending and self._past_deadline():
                    break
                self._say_waiting(str(e))
                self._pause(min(self.interval * 5, 30.0))
                continue
            if self.waiting_said:
                self.send({"log": f"em: auto-upload of run {self.name!r} is connected again",
                       "waiting": False})
                self.waiting_said = False
            if ending:
                self._report()
                self.send({"done": True})
                return
            self._pause(self.interval)
            self.wake.clear()
        self._report()
        self.send({"done": False})

    def state(self) -> dict[str, Any]:
        """What the server holds, as far as this process knows."""
        state: dict[str, Any] = {"run": self.run_id is not None}
        shipper, console = self.shipper, self.console
        if shipper is not None and console is not None:
            state.update(metrics=shipper.length, console=console.length,
                         console_unsupported=console.unsupported)
        return state

    def _report(self, _n: int = 0) -> None:
        self.send({"state": self.state()})

    def _sync(self, final: bool) -> None:
        if self.run_id is None:
            opts = self.cfg["options"]
            made = create_remote(self.client, "run", self._read_meta(), opts["folder"],
                                 opts["make_folder"], opts["conflict_strategy"])
            if made.get("state") == "skipped":
                raise _Stop(f"the server already has a run {made.get('path')!r} and "
                            "conflict_strategy is 'skip'")
            self.run_id = str(made["id"])
            self.shipper = MetricShipper(self.client, self.run_id, self.path / "metrics.bin",
                                         int(made.get("metrics_length") or 0))
            self.console = ConsoleShipper(self.client, self.run_id, self.path / CONSOLE_FILE,
                                          int(made.get("console_length") or 0))
            self.send({"entry": {"host": self.client.host, "path": made["path"],
                                 "id": made["id"], "user": self.client.whoami()},
                       "state": self.state()})
        assert self.shipper is not None and self.console is not None
        # during training the parent hears nothing per batch (no wake-ups in the training
        # process); after the end, each batch's progress, for finish()'s "what is left"
        self.shipper.ship(self._report if final else None)
        self.console.ship()
        if final:
            self._report()
        self._send_meta(force=final)

    def _read_meta(self) -> dict[str, Any]:
        meta = read_json(self.path / "run.json")
        if not isinstance(meta, dict):
            raise ValueError("run.json is not an object")
        return meta

    def _send_meta(self, force: bool) -> None:
        st = os.stat(self.path / "run.json")
        sig = (st.st_mtime_ns, st.st_size)
        if sig == self.meta_sig and not force:
            return
        meta = self._read_meta()
        if self.orphaned and meta.get("status") == "Running" and \
                writer_alive(str(self.path), meta.get("process")) is False:
            meta = {**meta, "status": "Crashed"}  # what em reports for it locally too
        self.client.request("PUT", f"/runs/{self.run_id}/meta", json_body={"meta": meta})
        self.meta_sig = sig


def _priority(idle: bool) -> None:
    """While the run trains: the idle scheduling class where there is one (Linux: it runs
    only on a core nothing else wants, and never preempts the training), else ``nice``
    +10. After the end (the training process waits in ``finish()``): ``nice`` +10."""
    try:
        if idle:
            os.nice(10)
        if hasattr(os, "sched_setscheduler"):
            # per thread on Linux: the shipping (main) thread and this one; threads started
            # later inherit it
            for tid in {threading.main_thread().native_id or 0, threading.get_native_id()}:
                os.sched_setscheduler(tid, os.SCHED_IDLE if idle else os.SCHED_OTHER,
                                      os.sched_param(0))
    except OSError:
        pass


def main() -> None:
    """Entry point of the uploader process (the protocol is in the module docstring)."""
    for sig in (signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)  # the training's signals: it ends on stdin's end
    _priority(idle=True)
    stdin = sys.stdin
    first = stdin.readline()
    if not first:
        return
    cfg = json.loads(first)
    worker = Worker(cfg, sys.stdout)
    threading.Thread(target=worker.listen, args=(stdin,), daemon=True).start()
    try:
        worker.run()
    finally:
        worker.client.close()
