"""Auto-upload: a background thread that copies a live run to the em server.

It reads the run's own files, never an in-memory queue, so nothing ``run.log`` recorded
can be dropped and ``run.log`` pays nothing for it: every ``EM_UPLOAD_INTERVAL`` seconds
(default 2) it ships the complete records appended to ``metrics.bin`` since the length the
server holds (the server applies each byte range once), and ``run.json`` when its mtime or
size changed. A server that is down or answers 5xx is retried with backoff, said once in
the ``em`` log; training never waits for it. ``finish()`` gives it a bounded time
(``EM_UPLOAD_TIMEOUT``, default 30 s) to send the rest, then says what is left for
``em upload``.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path
from typing import Any

from ._client import Client
from ._upload import CONSOLE_FILE, ConsoleShipper, MetricShipper, create_remote, record_remote
from .errors import EmError, LoginError, RemoteError

__all__ = ["Uploader", "start"]

log = logging.getLogger("em")
_said_no_login = False


def _env_float(name: str, default: float) -> float:
    try:
        return float(os.environ.get(name, "") or default)
    except ValueError:
        return default


class Uploader(threading.Thread):
    """Streams one run to the server until the run ends (see the module docstring)."""

    def __init__(self, run: Any, client: Client, options: dict[str, Any]) -> None:
        super().__init__(name=f"em-uploader-{run.alternative_name}", daemon=True)
        self.em_run = run
        self.path = Path(run.local)
        self.client = client
        self.options = options
        self.interval = _env_float("EM_UPLOAD_INTERVAL", 2.0)
        self._wake = threading.Event()
        self._ending = threading.Event()
        self._closing = False
        self._done = threading.Event()
        self._shipper: MetricShipper | None = None
        self._console: ConsoleShipper | None = None
        self._run_id: str | None = None
        self._meta_sig: tuple[int, int] | None = None
        self._waiting_said = False
        self._pid = os.getpid()  # a forked child inherits this object, not the thread
        self.failed: str | None = None
        client._stop = lambda: self._closing
        client._on_wait = self._say_waiting
        client.retries = None

    def _say_waiting(self, reason: str) -> None:
        if not self._waiting_said:
            self._waiting_said = True
            log.warning("em: auto-upload of run %r is waiting: %s. The run is recorded "
                        "locally and training goes on; upload resumes when the server is "
                        "back.", self.em_run.alternative_name, reason)

    # ----------------------------------------------------------------- the loop
    def run(self) -> None:
        try:
            while True:
                ending = self._ending.is_set()
                try:
                    self._sync(final=ending)
                except (RemoteError, OSError, ValueError, KeyError, RuntimeError) as e:
                    if self._closing:
                        return
                    if _final_refusal(e):  # a bad key, no write access: retrying won't help
                        self.failed = str(e)
                        log.warning("em: auto-upload of run %r stopped: %s. The run is "
                                    "recorded locally; upload it later with `em upload %s`",
                                    self.em_run.alternative_name, e, self.path)
                        return
                    self._say_waiting(str(e))
                    self._wake.wait(min(self.interval * 5, 30.0))
                    continue
                if self._waiting_said:
                    log.warning("em: auto-upload of run %r is connected again",
                                self.em_run.alternative_name)
                    self._waiting_said = False
                if ending:
                    return
                self._wake.wait(self.interval)
                self._wake.clear()
        finally:
            self._done.set()

    def _sync(self, final: bool) -> None:
        if self._run_id is None:
            meta = self._read_meta()
            made = create_remote(self.client, "run", meta, self.options["folder"],
                                 self.options["make_folder"], self.options["conflict_strategy"])
            if made.get("state") == "skipped":
                raise _Stop(f"the server already has a run {made.get('path')!r} and "
                            "conflict_strategy is 'skip'")
            self._run_id = str(made["id"])
            self._shipper = MetricShipper(self.client, self._run_id, self.path / "metrics.bin",
                                          int(made.get("metrics_length") or 0))
            self._console = ConsoleShipper(self.client, self._run_id, self.path / CONSOLE_FILE,
                                           int(made.get("console_length") or 0))
            entry = {"host": self.client.host, "path": made["path"], "id": made["id"],
                     "user": self.client.whoami()}
            if not final:
                try:
                    record_remote(self.path, "run.json", entry, self.em_run)
                except (RuntimeError, OSError):  # the run.json being rewritten under us
                    pass
            self.em_run._remote_pending = entry
        assert self._shipper is not None and self._console is not None
        self._shipper.ship()
        self._console.ship()
        self._send_meta(force=final)

    def _read_meta(self) -> dict[str, Any]:
        from ._files import read_json

        meta = read_json(self.path / "run.json")
        if not isinstance(meta, dict):
            raise ValueError("run.json is not an object")
        return meta

    def _send_meta(self, force: bool) -> None:
        st = os.stat(self.path / "run.json")
        sig = (st.st_mtime_ns, st.st_size)
        if sig == self._meta_sig and not force:
            return
        meta = self._read_meta()
        self.client.request("PUT", f"/runs/{self._run_id}/meta", json_body={"meta": meta})
        self._meta_sig = sig

    # ----------------------------------------------------------------- ending
    def finish(self, timeout: float | None = None) -> bool:
        """Send the rest (called by ``Run.finish`` after the last record and the final
        metadata are on disk); wait at most ``timeout`` seconds. Returns whether all is
        uploaded; if not, says what is left, once, in the ``em`` log."""
        wait = _env_float("EM_UPLOAD_TIMEOUT", 30.0) if timeout is None else timeout
        self._ending.set()
        self._wake.set()
        self._done.wait(wait)
        if self._done.is_set() and self.failed is None and not self._waiting_said:
            self.client.close()
            return True
        self._closing = True  # stop retrying; the thread ends at its next attempt
        left = []
        try:
            pending = self._shipper.pending() if self._shipper else None
        except OSError:
            pending = None
        if pending is None:
            left.append("the whole run")
        else:
            if pending:
                left.append(f"{pending} bytes of metrics")
            if self._console is not None and self._console.pending():
                left.append(f"{self._console.pending()} bytes of console.log")
            left.append("the final metadata and status")
        log.warning("em: auto-upload of run %r did not finish within %g s; not yet uploaded: "
                    "%s. The run is complete locally: run `em upload %s` to finish.",
                    self.em_run.alternative_name, wait, ", ".join(left), self.path)
        return False


class _Stop(RemoteError):
    """Nothing more to do for this run on the server (conflict_strategy='skip')."""


def _final_refusal(e: BaseException) -> bool:
    if isinstance(e, (LoginError, _Stop)):
        return True
    status = getattr(e, "status", None)
    return isinstance(e, RemoteError) and status is not None and 400 <= status < 500 \
        and status != 409


def start(run: Any) -> Uploader | None:
    """Start auto-uploading ``run`` (called by ``create_run(auto_upload=True)``); without a
    login, say once that the run is recorded locally only, and return None."""
    global _said_no_login
    from ._client import client_for_current

    options = run.upload_options
    try:
        client = client_for_current(timeout=_env_float("EM_UPLOAD_HTTP_TIMEOUT", 30.0))
    except (LoginError, EmError) as e:
        if not _said_no_login:
            _said_no_login = True
            log.warning("em: auto_upload=True but %s. Run %r is recorded locally only; "
                        "upload it later with `em upload %s`.", e, run.alternative_name,
                        run.local)
        return None
    up = Uploader(run, client, options)
    up.start()
    return up


def wait_for(run: Any) -> None:
    """``Run.finish``'s hook (after the run ended on disk): let the uploader send the rest,
    then record where it went."""
    up: Uploader | None = getattr(run, "_uploader", None)
    if up is None or up._pid != os.getpid():
        return  # none, or a forked child's copy: the parent's thread uploads
    run._uploader = None
    up.finish()
    entry = getattr(run, "_remote_pending", None)
    if entry is not None and entry not in (run._meta.get("remote") or []):
        run._meta["remote"] = [*(run._meta.get("remote") or []), entry]
        run._save()
