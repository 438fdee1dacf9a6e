"""Content-addressed storage of artifact bytes: each distinct content is stored once, under
its sha256, and becomes visible only once complete and verified.

Two backends behind one interface (:class:`ObjectStore`), chosen by :func:`open_store`:

- :class:`LocalStore` keeps objects under ``<data>/objects/ab/<sha256>``; bytes are written
  to a temporary file in the same file system and renamed into place when their hash
  matches, so a client that disconnects mid-upload leaves nothing visible.
- ``em_server.s3store.S3Store`` (``--objects s3://bucket/prefix``) keeps them in an
  S3-compatible object store, for several server processes or machines side by side.

Resumable uploads (``POST /uploads``) keep their offset in the database; the bytes received
so far live in the store (``write_chunk``) until ``complete`` verifies them and makes them
visible. Nothing about an upload is held in a server process's memory, so each chunk may
reach a different process.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Protocol

from fastapi import HTTPException

_SHA = re.compile(r"[0-9a-f]{64}")
BLOCK = 1 << 20  # bytes per block read from a stored object


def check_sha(sha: object) -> str:
    """A lowercase hex sha256, or 400."""
    if not isinstance(sha, str) or not _SHA.fullmatch(sha):
        raise HTTPException(400, f"invalid sha256 {sha!r}: expected 64 lowercase hex digits")
    return sha


class Digest:
    """Counts and hashes a body as it streams in: 413 past ``limit`` bytes."""

    def __init__(self, limit: int | None = None) -> None:
        self.limit = limit
        self.size = 0
        self._h = hashlib.sha256()

    def update(self, part: bytes) -> None:
        self.size += len(part)
        if self.limit is not None and self.size > self.limit:
            raise HTTPException(413, f"request body over the limit of {self.limit} bytes")
        self._h.update(part)

    def hexdigest(self) -> str:
        return self._h.hexdigest()

    def verify(self, sha: str) -> None:
        """400 unless the bytes seen hash to ``sha``."""
        if self.hexdigest() != sha:
            raise HTTPException(400, f"the body's sha256 {self.hexdigest()} is not {sha}; "
                                     "nothing stored")

    def verify_upload(self, upload_id: str, sha: str, size: int) -> None:
        """400 unless the upload's bytes are ``size`` bytes hashing to ``sha``."""
        if self.size != size or self.hexdigest() != sha:
            raise HTTPException(400, f"upload {upload_id}: got {self.size} bytes with sha256 "
                                     f"{self.hexdigest()}, expected {size} bytes with {sha}; "
                                     "nothing stored")


class ObjectStore(Protocol):
    """What the API needs from a blob store (both backends implement all of it)."""

    def prepare(self) -> None:
        """Check (and create where missing) the store once, before the server starts;
        ``SystemExit`` with a clear message when it cannot be used."""

    def describe(self) -> str:
        """Where the objects live, for the start-up log (never a credential)."""

    def has(self, sha: str) -> bool:
        """Whether the object is stored (complete and verified)."""

    def size(self, sha: str) -> int:
        """The stored object's size in bytes."""

    def iter_bytes(self, sha: str) -> Iterator[bytes]:
        """The object's bytes in blocks, streamed (never the whole object in memory)."""

    async def put_stream(self, sha: str, chunks: AsyncIterator[bytes], limit: int) -> bool:
        """Store the streamed bytes if they hash to ``sha`` (400 if not, 413 past ``limit``,
        nothing visible either way); False if it was already stored."""

    def begin_upload(self, upload_id: str) -> None:
        """Make room for a resumable upload's bytes."""

    def write_chunk(self, upload_id: str, offset: int, data: bytes) -> None:
        """Store the upload's bytes [offset, offset+len(data)), replacing anything written
        from ``offset`` on by an earlier try. Called before the new offset is committed."""

    def complete(self, upload_id: str, sha: str, size: int) -> None:
        """Verify the upload's bytes and make them visible as the object ``sha`` (400 if
        they differ, nothing visible). Repeating it after success is harmless."""


class LocalStore:
    """Objects in a local directory (the embedded default)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.tmp = root / "tmp"
        self.uploads = root / "uploads"

    def prepare(self) -> None:
        self.tmp.mkdir(parents=True, exist_ok=True)
        self.uploads.mkdir(parents=True, exist_ok=True)

    def describe(self) -> str:
        return f"directory {self.root / 'objects'}"

    def path(self, sha: str) -> Path:
        """Where the object with this sha256 lives."""
        return self.root / "objects" / sha[:2] / sha

    def has(self, sha: str) -> bool:
        return self.path(check_sha(sha)).is_file()

    def size(self, sha: str) -> int:
        return self.path(check_sha(sha)).stat().st_size

    def iter_bytes(self, sha: str) -> Iterator[bytes]:
        with open(self.path(check_sha(sha)), "rb") as fh:
            while block := fh.read(BLOCK):
                yield block

    def _commit(self, tmp: str, sha: str) -> None:
        dst = self.path(sha)
        dst.parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp, dst)

    async def put_stream(self, sha: str, chunks: AsyncIterator[bytes], limit: int) -> bool:
        check_sha(sha)
        self.prepare()
        fd, tmp = tempfile.mkstemp(dir=self.tmp)
        digest = Digest(limit)
        try:
            with os.fdopen(fd, "wb") as fh:
                async for part in chunks:
                    digest.update(part)
                    fh.write(part)
            digest.verify(sha)
            if self.has(sha):
                return False
            self._commit(tmp, sha)
            return True
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)

    # resumable uploads: the part so far lives in uploads/<id> until completed
    def _part(self, upload_id: str) -> Path:
        return self.uploads / upload_id

    def begin_upload(self, upload_id: str) -> None:
        self.prepare()
        self._part(upload_id).write_bytes(b"")

    def write_chunk(self, upload_id: str, offset: int, data: bytes) -> None:
        fd = os.open(self._part(upload_id), os.O_WRONLY)
        try:
            os.ftruncate(fd, offset)
            os.pwrite(fd, data, offset)
        finally:
            os.close(fd)

    def complete(self, upload_id: str, sha: str, size: int) -> None:
        part = self._part(upload_id)
        digest = Digest()
        try:
            with open(part, "rb") as fh:
                while block := fh.read(BLOCK):
                    digest.update(block)
        except FileNotFoundError:
            if self.has(sha):  # completed before (the answer was lost): done
                return
            raise HTTPException(404, f"upload {upload_id!r} has no bytes stored") from None
        digest.verify_upload(upload_id, sha, size)
        if self.has(sha):
            part.unlink(missing_ok=True)
        else:
            self._commit(str(part), sha)


def open_store(data: Path, objects: str | None = None,
               endpoint: str | None = None) -> ObjectStore:
    """The store named by ``objects`` (``s3://bucket/prefix``) or, when that is empty, the
    local directory under ``data``. ``endpoint``: the S3 endpoint URL (else
    ``EM_S3_ENDPOINT``, else boto3's own ``AWS_ENDPOINT_URL``/configuration)."""
    if not objects:
        return LocalStore(data)
    if objects.startswith("s3://"):
        from .s3store import S3Store

        return S3Store.from_url(objects, endpoint or os.environ.get("EM_S3_ENDPOINT") or None)
    raise ValueError(f"--objects {objects!r}: expected s3://bucket/prefix (or nothing for the "
                     "data directory)")


def store_from_env() -> ObjectStore:
    """The store configured by ``em server start`` for its workers (environment)."""
    from . import db

    return open_store(db.data_dir(), os.environ.get("EM_SERVER_OBJECTS"),
                      os.environ.get("EM_S3_ENDPOINT"))
