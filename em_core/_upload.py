"""One-shot upload of a run, an artifact, or a whole ``.em`` directory to an em server.

Upload reads the directory's own files: ``run.json``/``artifact.json`` are sent whole,
``metrics.bin`` in byte ranges from the length the server already holds (the server
applies each range once), artifact files by sha256 (bytes the server has are not sent
again). Repeating an upload is therefore always safe and finishes an interrupted one.
"""

from __future__ import annotations

import hashlib
import os
import struct
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from . import _validate
from ._client import Client, client_for_current
from ._files import read_json, write_json_atomic
from ._metricread import HEADER, MAGIC, TRAILER_XOR
from .errors import NotARunError, RemoteError, RemoteNotFoundError

__all__ = ["MetricShipper", "upload", "upload_artifact_dir", "upload_run_dir"]

BATCH = 16 << 20  # bytes of metrics (or of console.log) per PUT: fewer, larger transactions
CONSOLE_FILE = "console.log"
CHUNK = 8 << 20  # bytes per resumable-upload chunk
SINGLE_PUT = 32 << 20  # files up to this size go in one PUT /blobs
_HEAD = struct.Struct("<II")
_TRAIL = struct.Struct("<I")

Progress = Callable[[int], None]


def valid_end(buf: bytes, start: int, base: int) -> int:
    """Offset just past the last complete record of ``buf`` (which holds the file's bytes
    from offset ``base``), scanning from file offset ``start``: each record's size must fit
    and its trailer match, so a torn or zero-padded tail is never included."""
    pos = start
    n = base + len(buf)
    view = memoryview(buf)
    run = 64
    while pos + 12 <= n:
        size, _sid = _HEAD.unpack_from(buf, pos - base)
        if size < 12 or pos + size > n:
            break
        (trailer,) = _TRAIL.unpack_from(buf, pos - base + size - 4)
        if trailer != size ^ TRAILER_XOR:
            break
        pos += size
        # records of one size usually follow each other: check the size and trailer words
        # of a whole run of them at once (as raw bytes, so in any byte order), not one by one
        m = min(run, (n - pos) // size)
        if size % 4 == 0 and m > 1:
            q = size // 4
            words = view[pos - base:pos - base + m * size].cast("I")
            if words[::q].tobytes() == _TRAIL.pack(size) * m and \
                    words[q - 1::q].tobytes() == _TRAIL.pack(size ^ TRAILER_XOR) * m:
                pos += m * size
                run = min(run * 4, 1 << 16)
                continue
            run = 64
    return pos


def metric_ranges(path: Path, offset: int) -> Iterator[tuple[int, bytes]]:
    """``(offset, bytes)`` pieces of the metric log from ``offset`` to its last complete
    record, each at most about :data:`BATCH` bytes and ending on a record boundary."""
    try:
        f = open(path, "rb")
    except FileNotFoundError:
        return
    with f:
        size = os.fstat(f.fileno()).st_size
        want = BATCH
        while offset < size:
            f.seek(offset)
            buf = f.read(want)
            if offset == 0:
                if len(buf) < HEADER.size or buf[:8] != MAGIC:
                    return
                end = valid_end(buf, HEADER.unpack_from(buf, 0)[2], 0)
            else:
                end = valid_end(buf, offset, offset)
            if end == offset:
                if len(buf) < want or want >= 256 << 20:
                    return  # nothing complete yet (or a record bigger than any sane one)
                want *= 2  # one record bigger than the batch: read more
                continue
            yield offset, buf[:end - offset]
            offset = end
            want = BATCH


class MetricShipper:
    """Sends a run's metric log to the server from the length it already holds."""

    def __init__(self, client: Client, run_id: str, path: Path, length: int) -> None:
        self.client, self.run_id, self.path, self.length = client, run_id, path, length

    def ship(self, progress: Progress | None = None) -> int:
        """Send everything complete on disk now; return the bytes the server holds."""
        for offset, data in metric_ranges(self.path, self.length):
            if offset != self.length:
                break  # cannot happen: ranges start where the server is
            resp = self.client.request("PUT", f"/runs/{self.run_id}/metrics",
                                       params={"offset": offset}, data=data, ok=(409,))
            body = resp.json()
            new = int(body["length"])
            if resp.status_code == 409 or new < offset:
                self.length = new  # the server has less (or more) than assumed: start there
                return self.ship(progress) if new != offset else self.length
            if progress is not None:
                progress(new - self.length)
            self.length = new
        return self.length

    def pending(self) -> int:
        """Complete bytes on disk that the server does not have yet."""
        return sum(len(d) for _, d in metric_ranges(self.path, self.length))


class ConsoleShipper:
    """Sends a run's ``console.log`` (append-only) from the length the server holds."""

    def __init__(self, client: Client, run_id: str, path: Path, length: int) -> None:
        self.client, self.run_id, self.path, self.length = client, run_id, path, length
        self.unsupported = False

    def ship(self) -> int:
        """Send what is on disk now; return the bytes the server holds."""
        if self.unsupported:
            return self.length
        try:
            f = open(self.path, "rb")
        except FileNotFoundError:
            return self.length
        with f:
            while True:
                f.seek(self.length)
                data = f.read(BATCH)
                if not data:
                    return self.length
                resp = self.client.request("PUT", f"/runs/{self.run_id}/console",
                                           params={"offset": self.length}, data=data,
                                           ok=(404, 409))
                if resp.status_code == 404:  # a server older than console logs
                    self.unsupported = True
                    return self.length
                self.length = int(resp.json()["length"])  # on 409: where the server is

    def pending(self) -> int:
        """Bytes on disk that the server does not have yet."""
        if self.unsupported:
            return 0
        try:
            return max(0, self.path.stat().st_size - self.length)
        except FileNotFoundError:
            return 0


def _progress_bar(total: int, label: str) -> Progress | None:
    if not sys.stderr.isatty() or total <= 0:
        return None
    done = [0]

    def update(n: int) -> None:
        done[0] += n
        pct = min(100, done[0] * 100 // total)
        bar = "#" * (pct // 4)
        sys.stderr.write(f"\r{label[:40]:40} [{bar:25}] {pct:3d}%")
        if done[0] >= total:
            sys.stderr.write("\n")
        sys.stderr.flush()
    return update


def record_remote(path: Path, meta_file: str, entry: dict[str, Any], obj: Any = None) -> None:
    """Add ``entry`` to the metadata's "remote" list. Only the writing process writes
    run.json: through ``obj._save`` when it is ours, skipped when another live process
    owns the run (its own uploader records it)."""
    def merged(remote: list[dict[str, Any]]) -> list[dict[str, Any]]:
        rest = [r for r in remote if (r.get("host"), r.get("id")) != (entry["host"], entry["id"])]
        return [*rest, entry]

    if obj is not None and getattr(obj, "_writer", None) is not None:
        with obj._save_lock:
            obj._meta["remote"] = merged(list(obj._meta.get("remote") or []))
            obj._save()
        return
    if meta_file == "run.json":
        from ._lifecycle import writer_alive

        meta = read_json(path / meta_file)
        if writer_alive(str(path), meta.get("process")) is not False and meta.get(
                "status") == "Running":
            return
    meta = read_json(path / meta_file)
    meta["remote"] = merged(list(meta.get("remote") or []))
    write_json_atomic(path / meta_file, meta)
    if obj is not None:
        obj._meta["remote"] = meta["remote"]


def create_remote(client: Client, kind: str, meta: dict[str, Any], folder: str,
                  make_folder: bool, conflict_strategy: str) -> dict[str, Any]:
    """POST /runs or /artifacts (idempotent by folder and alternative name)."""
    body = {"folder": client.absolute(folder), "make_folder": make_folder,
            "conflict_strategy": conflict_strategy, "meta": meta}
    return dict(client.post_json(f"/{kind}s", body))


def upload_run_dir(path: Path, client: Client, folder: str, make_folder: bool,
                   conflict_strategy: str, *, obj: Any = None, progress: bool = False,
                   with_artifacts: bool = True) -> dict[str, Any]:
    """Upload one run directory (its marked artifacts first); return its remote entry."""
    meta = read_json(path / "run.json")
    if with_artifacts:
        for key in ("inputs", "outputs"):
            for a in (meta.get("associations") or {}).get(key, []):
                local = Path(a.get("local") or "/nonexistent")
                if a.get("kind") == "artifact" and (local / "artifact.json").is_file():
                    upload_artifact_dir(local, client, folder, make_folder, "new")
    made = create_remote(client, "run", meta, folder, make_folder, conflict_strategy)
    entry = {"host": client.host, "path": made["path"], "id": made["id"],
             "user": client.whoami()}
    if made.get("state") == "skipped":
        return entry
    mpath = path / "metrics.bin"
    shipper = MetricShipper(client, made["id"], mpath, int(made.get("metrics_length") or 0))
    bar = None
    if progress:
        bar = _progress_bar(shipper.pending(), f"run {meta.get('name')}")
    shipper.ship(bar)
    ConsoleShipper(client, made["id"], path / CONSOLE_FILE,
                   int(made.get("console_length") or 0)).ship()
    record_remote(path, "run.json", entry, obj)
    meta = read_json(path / "run.json")
    client.request("PUT", f"/runs/{made['id']}/meta", json_body={"meta": meta})
    return entry


def _send_blob(client: Client, file: Path, sha: str, size: int,  # noqa: C901 - the three ways a blob goes up (already there, one PUT, resumable chunks), in the order they are tried
               progress: Progress | None) -> None:
    if client.request("HEAD", f"/blobs/{sha}", ok=(404,)).status_code == 200:
        if progress is not None:
            progress(size)
        return
    actual = hashlib.sha256()
    with open(file, "rb") as f:
        while chunk := f.read(1 << 20):
            actual.update(chunk)
    if actual.hexdigest() != sha:
        raise RemoteError(f"artifact file {str(file)!r} changed since it was recorded "
                          "(sha256 differs); not uploaded")
    if size <= SINGLE_PUT:
        client.request("PUT", f"/blobs/{sha}", data=file.read_bytes())
        if progress is not None:
            progress(size)
        return
    # the server hands back an interrupted upload of the same bytes with its offset
    up = client.post_json("/uploads", {"sha256": sha, "size": size})
    uid, offset = up["upload_id"], int(up["offset"])
    if progress is not None and offset:
        progress(offset)
    try:
        with open(file, "rb") as f:
            while offset < size:
                f.seek(offset)
                chunk = f.read(CHUNK)
                resp = client.request("PUT", f"/uploads/{uid}", params={"offset": offset},
                                      data=chunk, ok=(409,))
                new = int(resp.json()["offset"])
                if progress is not None and resp.status_code != 409:
                    progress(new - offset)
                offset = new
        client.request("POST", f"/uploads/{uid}/complete")
    except RemoteNotFoundError:  # another client sharing the upload completed it first
        if client.request("HEAD", f"/blobs/{sha}", ok=(404,)).status_code != 200:
            raise


def upload_artifact_dir(path: Path, client: Client, folder: str, make_folder: bool,
                        conflict_strategy: str, *, obj: Any = None,
                        progress: bool = False, record: bool = True) -> dict[str, Any]:
    """Upload one artifact directory: its files by sha256, then its metadata; ``record``:
    note the server's copy in the local ``artifact.json``."""
    meta = read_json(path / "artifact.json")
    files = {k: v for k, v in (meta.get("objects") or {}).items() if v.get("kind") == "file"}
    bar = None
    if progress:
        bar = _progress_bar(sum(int(v["size"]) for v in files.values()),
                            f"artifact {meta.get('name')}")
    for obj_path, o in files.items():
        _send_blob(client, path / "files" / obj_path, o["sha256"], int(o["size"]), bar)
    made = create_remote(client, "artifact", meta, folder, make_folder, conflict_strategy)
    entry = {"host": client.host, "path": made["path"], "id": made["id"],
             "user": client.whoami()}
    if made.get("state") != "skipped" and record:
        record_remote(path, "artifact.json", entry, obj)
    return entry


def _kind(path: Path) -> str | None:
    if (path / "run.json").is_file():
        return "run"
    if (path / "artifact.json").is_file():
        return "artifact"
    return None


def _find_dirs(top: Path) -> list[Path]:
    """Run and artifact directories under ``top``; never looks inside one (an artifact's
    files may hold a ``run.json`` of their own)."""
    found = []
    for root, subdirs, files in os.walk(top):
        if "run.json" in files or "artifact.json" in files:
            found.append(Path(root))
            subdirs.clear()
        subdirs.sort()
    return found


def upload(path: str | os.PathLike[str] | Any, folder: str = "default", make_folder: bool = False,
           conflict_strategy: str = "new", *, client: Client | None = None,
           progress: bool = False) -> list[dict[str, Any]]:
    """Upload a run or artifact directory, or every one under a directory (a ``.em``
    directory, or ``.em/runs``): artifacts first, then runs.

    Args:
        path: the directory (or a Run/Artifact object).
        folder: the server folder; without a leading '/', under the logged-in user.
        make_folder: create the folder (with parents) if it does not exist.
        conflict_strategy: 'skip', 'error', 'new' or 'replace' when another run or
            artifact of that name is in the folder.

    Returns:
        One ``{"host", "path", "id", "user"}`` per uploaded run or artifact.

    Raises:
        LoginError: not logged in, or the key is refused. RemoteError: the server refused
        (message from the server) or cannot be reached after retries.
    """
    obj = None
    if hasattr(path, "local") and hasattr(path, "_meta"):
        obj, path = path, path.local
    folder = _validate.folder(folder)
    make_folder = _validate.flag(make_folder, "make_folder")
    conflict_strategy = _validate.conflict_strategy(conflict_strategy)
    p = _validate.path(path, "path")
    if not p.is_dir():
        raise NotARunError(f"nothing to upload at {str(p)!r} (not a directory)")
    own = client is None
    c = client or client_for_current()  # not logged in: say so before scanning anything
    kind = _kind(p)
    if kind is None:
        dirs = _find_dirs(p)
        if not dirs:
            if own:
                c.close()
            raise NotARunError(f"{str(p)!r} holds no em run or artifact directory")
    else:
        dirs = [p]
    try:
        out = []
        for d in sorted(dirs, key=lambda d: _kind(d) != "artifact"):
            if _kind(d) == "artifact":
                out.append(upload_artifact_dir(d, c, folder, make_folder, conflict_strategy,
                                               obj=obj, progress=progress))
            else:
                out.append(upload_run_dir(d, c, folder, make_folder, conflict_strategy,
                                          obj=obj, progress=progress,
                                          with_artifacts=kind is not None))
        return out
    finally:
        if own:
            c.close()
