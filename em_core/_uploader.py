"""Auto-upload: a separate low-priority process that copies a live run to the em server.

It reads the run's own files, never an in-memory queue, so nothing ``run.log`` recorded
can be dropped, and it runs in its own process (:mod:`em_core._uploadproc`), not a thread,
so ``run.log`` pays nothing for it, in its tail latency too: its HTTP, JSON and hashing
never hold the training process's interpreter lock. Every ``EM_UPLOAD_INTERVAL`` seconds
(default 2) it ships the complete records appended to ``metrics.bin`` since the length the
server holds (the server applies each byte range once), ``console.log`` the same way, and
``run.json`` when its mtime or size changed. A server that is down or answers 5xx is
retried with backoff, said once in the ``em`` log; training never waits for it.

``finish()`` tells it the run ended and gives it a bounded time (``EM_UPLOAD_TIMEOUT``,
default 30 s) to send the rest, then says what is left for ``em upload``. If the training
process dies without ``finish()`` (SIGKILL, a crash), the uploader notices (its pipe from
the training process ends), ships what is on disk within the same bound and exits; it never
holds the run's ``.lock``, so the run is not kept looking alive. The API key reaches it over
a pipe, never in its arguments, the environment, a file or a log. Only rank 0 uploads; a
forked child of the training process (a DataLoader worker) neither uploads nor holds the
uploader's pipes.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
import time
import weakref
from pathlib import Path
from typing import Any

from .errors import EmError, LoginError

__all__ = ["Uploader", "start"]

log = logging.getLogger("em")
_said_no_login = False
_live: weakref.WeakSet[Uploader] = weakref.WeakSet()  # whose pipes a forked child closes
_fork_hook = [False]
# The uploader's interpreter starts from em_core's own location (sys.path[0] replaced):
# a training script's directory (a local json.py, say) never shadows what it imports.
_BOOT = "import sys; sys.path[0] = sys.argv[1]; from em_core._uploadproc import main; main()"


def _env_float(name: str, default: float) -> float:
    try:
        return float(os.environ.get(name, "") or default)
    except ValueError:
        return default


def _close_in_child() -> None:
    # A forked child (DataLoader worker) must not keep the uploader's stdin open: its end
    # is how the uploader learns that the training process died.
    for up in list(_live):
        up._forked()


class Uploader:
    """The training process's handle on one run's uploader process."""

    def __init__(self, run: Any, host: str, api_key: str, user: str | None,
                 options: dict[str, Any]) -> None:
        self.em_run = run
        self.path = Path(run.local)
        self.host = host
        self._pid = os.getpid()  # a forked child inherits this object, not the process
        self._done = threading.Event()
        self._lock = threading.Lock()
        self.ok: bool | None = None
        self.failed: str | None = None
        self.state: dict[str, Any] | None = None
        self.entry: dict[str, Any] | None = None
        self.waiting = False
        if not _fork_hook[0]:
            _fork_hook[0] = True
            os.register_at_fork(after_in_child=_close_in_child)
        pkg_parent = str(Path(__file__).resolve().parent.parent)
        # A fresh interpreter (never a fork of a possibly threaded training process), in its
        # own session (a terminal's Ctrl-C is for the training), with none of our descriptors
        # (close_fds: never the run's .lock). Popen returns once it is exec'd; the
        # interpreter boots while training goes on.
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _BOOT, pkg_parent], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, close_fds=True, start_new_session=True)
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self._stdin: Any = self.proc.stdin
        cfg = {"host": host, "api_key": api_key, "user": user, "dir": str(self.path),
               "name": run.alternative_name, "options": options, "ppid": os.getpid(),
               "interval": _env_float("EM_UPLOAD_INTERVAL", 2.0),
               "timeout": _env_float("EM_UPLOAD_TIMEOUT", 30.0),
               "http_timeout": _env_float("EM_UPLOAD_HTTP_TIMEOUT", 30.0)}
        # a few hundred bytes into an empty pipe: never blocks
        self._stdin.write(json.dumps(cfg).encode() + b"\n")
        self._stdin.flush()
        _live.add(self)
        # blocked in read() it holds no lock; it wakes a few times a run (the events below)
        self._reader = threading.Thread(target=self._listen, daemon=True,
                                        name=f"em-uploader-{run.alternative_name}")
        self._reader.start()

    def _forked(self) -> None:
        # /dev/null over the pipe ends (not a close: the file objects still own the numbers)
        try:
            null = os.open(os.devnull, os.O_RDWR)
        except OSError:
            return
        for f in (self.proc.stdin, self.proc.stdout):
            try:
                if f is not None:
                    os.dup2(null, f.fileno())
            except (OSError, ValueError):
                pass
        os.close(null)

    # ----------------------------------------------------------------- its events
    def _listen(self) -> None:
        out = self.proc.stdout
        assert out is not None
        try:
            for line in out:
                try:
                    msg = json.loads(line)
                except ValueError:
                    continue
                self._on(msg)
        except (OSError, ValueError):
            pass
        finally:
            self._done.set()
            try:
                self.proc.wait()  # reap it
            except OSError:
                pass

    def _on(self, msg: dict[str, Any]) -> None:
        if "log" in msg:
            log.warning("%s", msg["log"])
        if "waiting" in msg:
            self.waiting = bool(msg["waiting"])
        if "failed" in msg:
            self.failed = str(msg["failed"])
        if "state" in msg:
            self.state = dict(msg["state"])
        if "done" in msg:
            self.ok = bool(msg["done"])
        if "entry" in msg:
            self.entry = dict(msg["entry"])
            self.em_run._remote_pending = self.entry
            run = self.em_run
            if not run._ended:
                from ._upload import record_remote

                try:
                    record_remote(self.path, "run.json", self.entry, run)
                except (RuntimeError, OSError):  # the run.json being rewritten under us
                    pass

    # ----------------------------------------------------------------- ending
    def finish(self, timeout: float | None = None) -> bool:
        """Send the rest (called by ``Run.finish`` after the last record and the final
        metadata are on disk); wait at most ``timeout`` seconds. Returns whether all is
        uploaded; if not, says what is left, once, in the ``em`` log."""
        wait = _env_float("EM_UPLOAD_TIMEOUT", 30.0) if timeout is None else timeout
        end = time.monotonic() + wait
        try:
            self._stdin.write(json.dumps({"end": wait}).encode() + b"\n")
            self._stdin.close()
        except (OSError, ValueError):
            pass  # it is gone already: what it reported below says how far it got
        self._done.wait(wait)
        if self._done.is_set() and self.ok and self.failed is None:
            try:
                self.proc.wait(max(0.1, end - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
            return True
        if self.proc.poll() is None:
            self.proc.terminate()  # past the bound: `em upload` finishes the job
        log.warning("em: auto-upload of run %r did not finish within %g s; not yet uploaded: "
                    "%s. The run is complete locally: run `em upload %s` to finish.",
                    self.em_run.alternative_name, wait, ", ".join(self._left()), self.path)
        return False

    def _left(self) -> list[str]:
        from ._upload import metric_ranges

        state = self.state
        if not state or not state.get("run") or "metrics" not in state:
            return ["the whole run"]
        left = []
        try:
            pending = sum(len(d) for _, d in metric_ranges(self.path / "metrics.bin",
                                                            int(state["metrics"])))
            if pending:
                left.append(f"{pending} bytes of metrics")
            size = os.stat(self.path / "console.log").st_size
            if size > int(state["console"]) and not state.get("console_unsupported"):
                left.append(f"{size - int(state['console'])} bytes of console.log")
        except OSError:
            pass
        left.append("the final metadata and status")
        return left


def start(run: Any) -> Uploader | None:
    """Start auto-uploading ``run`` (called by ``create_run(auto_upload=True)`` and
    ``resume()``); without a login, say once that the run is recorded locally only, and
    return None."""
    global _said_no_login
    from ._userconfig import current

    try:
        ctx = current()
        if not ctx.api_key:
            raise LoginError(f"not logged in to an em server ({ctx.host}): run `em login` "
                             "or em.login(ais_host=..., api_key=...), or set EM_API_KEY")
    except (LoginError, EmError) as e:
        if not _said_no_login:
            _said_no_login = True
            log.warning("em: auto_upload=True but %s. Run %r is recorded locally only; "
                        "upload it later with `em upload %s`.", e, run.alternative_name,
                        run.local)
        return None
    try:
        if not sys.executable:
            raise OSError("no Python interpreter to start it with (sys.executable is empty)")
        return Uploader(run, ctx.host.rstrip("/"), ctx.api_key, ctx.user, run.upload_options)
    except OSError as e:  # no process could be started: the run still records locally
        log.warning("em: auto-upload of run %r could not start (%s). The run is recorded "
                    "locally; upload it later with `em upload %s`.", run.alternative_name,
                    e, run.local)
        return None


def wait_for(run: Any) -> None:
    """``Run.finish``'s hook (after the run ended on disk): let the uploader send the rest,
    then record where it went."""
    up: Uploader | None = getattr(run, "_uploader", None)
    if up is None or up._pid != os.getpid():
        return  # none, or a forked child's copy: the parent's process uploads
    run._uploader = None
    up.finish()
    entry = getattr(run, "_remote_pending", None)
    if entry is not None and entry not in (run._meta.get("remote") or []):
        run._meta["remote"] = [*(run._meta.get("remote") or []), entry]
        run._save()
