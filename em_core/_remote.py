"""``em.load_run('/user/folder/name')`` and ``em.load_artifact(...)`` from an em server:
download into the local parent directory (``$EM_RUN_PARENT_DIR``/
``$EM_ARTIFACT_PARENT_DIR``) under the run's or artifact's own directory name, then open
it as a local one. Artifact files are checked against their sha256.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any
from urllib.parse import quote

from ._client import Client, client_for_current
from ._files import write_json_atomic
from ._paths import parent_dir
from .errors import RemoteError

__all__ = ["download", "followable", "is_remote_candidate", "load_artifact_remote",
           "load_run_remote"]


def is_remote_candidate(path: Any) -> bool:
    """A string that is not a local directory, while an API key is configured."""
    if not isinstance(path, str) or not path.strip() or os.path.isdir(path):
        return False
    from ._userconfig import current

    return current().api_key is not None


def _safe_dir_name(name: Any, what: str) -> str:
    if not isinstance(name, str) or not name or "/" in name or "\\" in name or name in (
            ".", ".."):
        raise RemoteError(f"the server sent {what} directory name {name!r}, which is not a "
                          "plain name; refusing to write it")
    return name


def _stream_to(client: Client, url_path: str, dest: Path, sha256: str | None = None) -> int:
    """Download to ``dest`` via a temporary file, checking sha256 when given."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.part")
    digest = hashlib.sha256()
    size = 0
    resp = client.request("GET", url_path, stream=True)
    try:
        with open(tmp, "wb") as f:
            for chunk in resp.iter_content(1 << 20):
                f.write(chunk)
                digest.update(chunk)
                size += len(chunk)
    finally:
        resp.close()
    if sha256 is not None and digest.hexdigest() != sha256:
        tmp.unlink()
        raise RemoteError(f"downloaded {dest.name!r} does not match its sha256 "
                          f"({digest.hexdigest()[:12]}... instead of {sha256[:12]}...)")
    os.replace(tmp, dest)
    return size


def _entry(client: Client, info: dict[str, Any]) -> dict[str, Any]:
    return {"host": client.host, "path": info["path"], "id": info["id"],
            "user": client.whoami()}


def _server_paths(resolved: Any) -> dict[tuple[Any, Any], str]:
    """(kind, alternative_name) -> server path, from the associations the server sent."""
    paths = {}
    for entries in resolved.values() if isinstance(resolved, dict) else ():
        for e in entries if isinstance(entries, list) else ():
            if isinstance(e, dict) and isinstance(e.get("path"), str):
                paths[(e.get("kind"), e.get("alternative_name"))] = e["path"]
    return paths


def followable(assoc: Any, resolved: Any) -> Any:
    """A downloaded run's associations as this machine can follow them: each entry gets the
    server ``path`` of its other side (where the server knows it and this user may read
    it: ``em download PATH`` fetches it); the uploader's ``local`` path is kept only where
    it exists here."""
    if not isinstance(assoc, dict):
        return assoc
    paths = _server_paths(resolved)
    out: dict[str, Any] = {}
    for key, entries in assoc.items():
        if not isinstance(entries, list):
            out[key] = entries
            continue
        out[key] = []
        for e in entries:
            if isinstance(e, dict):
                e = dict(e)
                e.pop("path", None)  # one another server gave (a copy uploaded again)
                path = paths.get((e.get("kind"), e.get("alternative_name")))
                if path is not None:
                    e["path"] = path
                if isinstance(e.get("local"), str) and not os.path.isdir(e["local"]):
                    del e["local"]
            out[key].append(e)
    return out


def load_run_remote(path: str, client: Client | None = None) -> Any:
    """Download a run from the server and open it; see the module docstring.

    Raises:
        RemoteNotFoundError: no such run (or not visible to this user); also a RuntimeError.
    """
    from .run import METRICS_FILE, load_run

    own = client is None
    c = client or client_for_current()
    try:
        info = c.get_json("/runs/by-path", path=c.absolute(path))
        meta = dict(info["meta"])
        local = parent_dir("EM_RUN_PARENT_DIR", ".em/runs") / _safe_dir_name(
            meta.get("alternative_name"), "run")
        mfile = local / METRICS_FILE
        if (local / "run.json").is_file():
            from ._lifecycle import writer_alive

            if writer_alive(str(local), meta.get("process")) is True:
                return load_run(local)  # the original, still written here: it is the truth
        local.mkdir(parents=True, exist_ok=True)
        _stream_to(c, f"/runs/{info['id']}/metrics.bin", mfile)
        entry = _entry(c, info)
        meta["remote"] = [*(r for r in meta.get("remote") or [] if r != entry), entry]
        if isinstance(meta.get("associations"), dict):
            meta["associations"] = followable(meta["associations"], info.get("associations"))
        write_json_atomic(local / "run.json", meta)
        return load_run(local)
    finally:
        if own:
            c.close()


def load_artifact_remote(path: str, client: Client | None = None) -> Any:
    """Download an artifact (every file, sha256-checked) and open it."""
    from .artifact import clean_obj_path, load_artifact

    own = client is None
    c = client or client_for_current()
    try:
        info = c.get_json("/artifacts/by-path", path=c.absolute(path))
        meta = dict(info["meta"])
        local = parent_dir("EM_ARTIFACT_PARENT_DIR", ".em/artifacts") / _safe_dir_name(
            meta.get("alternative_name"), "artifact")
        (local / "files").mkdir(parents=True, exist_ok=True)
        for obj_path, obj in (meta.get("objects") or {}).items():
            if obj.get("kind") != "file":
                continue
            dest = local / "files" / clean_obj_path(obj_path)
            if dest.is_file() and dest.stat().st_size == obj.get("size") and \
                    _sha(dest) == obj.get("sha256"):
                continue
            _stream_to(c, f"/artifacts/{info['id']}/files/{quote(obj_path, safe='/')}",
                       dest, obj.get("sha256"))
        entry = _entry(c, info)
        meta["remote"] = [*(r for r in meta.get("remote") or [] if r != entry), entry]
        if isinstance(meta.get("associations"), dict):
            meta["associations"] = followable(meta["associations"], info.get("associations"))
        write_json_atomic(local / "artifact.json", meta)
        return load_artifact(local)
    finally:
        if own:
            c.close()


def _sha(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def download(path: str, kind: str | None = None) -> Any:
    """``em download``: a run, else an artifact, at a server path."""
    from .errors import RemoteNotFoundError

    if kind in (None, "run"):
        try:
            return load_run_remote(path)
        except RemoteNotFoundError:
            if kind == "run":
                raise
    try:
        return load_artifact_remote(path)
    except RemoteNotFoundError:
        raise RemoteNotFoundError(f"no run or artifact at {path!r} on the em server",
                                  404) from None
