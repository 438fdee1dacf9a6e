"""Content-addressed storage of artifact bytes: each distinct content is stored once, under
its sha256, and becomes visible only once complete and verified.

``LocalStore`` keeps objects under ``<data>/objects/ab/<sha256>``; bytes are written to a
temporary file in the same file system and renamed into place when their hash matches, so a
client that disconnects mid-upload leaves nothing visible.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

from fastapi import HTTPException

_SHA = re.compile(r"[0-9a-f]{64}")


def check_sha(sha: object) -> str:
    """A lowercase hex sha256, or 400."""
    if not isinstance(sha, str) or not _SHA.fullmatch(sha):
        raise HTTPException(400, f"invalid sha256 {sha!r}: expected 64 lowercase hex digits")
    return sha


class LocalStore:
    """Objects in a local directory."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.tmp = root / "tmp"
        self.tmp.mkdir(parents=True, exist_ok=True)
        self.uploads = root / "uploads"
        self.uploads.mkdir(parents=True, exist_ok=True)

    def path(self, sha: str) -> Path:
        """Where the object with this sha256 lives."""
        return self.root / "objects" / sha[:2] / sha

    def has(self, sha: str) -> bool:
        """Whether the object is stored (complete and verified)."""
        return self.path(check_sha(sha)).is_file()

    def _commit(self, tmp: str, sha: str) -> None:
        dst = self.path(sha)
        dst.parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp, dst)

    async def put_stream(self, sha: str, chunks: AsyncIterator[bytes], limit: int) -> bool:
        """Store the streamed bytes if they hash to ``sha``; False if already stored."""
        check_sha(sha)
        fd, tmp = tempfile.mkstemp(dir=self.tmp)
        digest = hashlib.sha256()
        size = 0
        try:
            with os.fdopen(fd, "wb") as fh:
                async for part in chunks:
                    size += len(part)
                    if size > limit:
                        raise HTTPException(413, f"request body over the limit of {limit} bytes")
                    digest.update(part)
                    fh.write(part)
            if digest.hexdigest() != sha:
                raise HTTPException(400, f"the body's sha256 {digest.hexdigest()} is not {sha}; "
                                         "nothing stored")
            if self.has(sha):
                return False
            self._commit(tmp, sha)
            return True
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)

    # resumable uploads: the part so far lives in uploads/<id> until completed
    def upload_part(self, upload_id: str) -> Path:
        """The partial file of an upload."""
        return self.uploads / upload_id

    def complete(self, upload_id: str, sha: str, size: int) -> None:
        """Verify an upload's bytes and make them visible (400 if they differ)."""
        part = self.upload_part(upload_id)
        digest = hashlib.sha256()
        got = 0
        with open(part, "rb") as fh:
            while block := fh.read(1 << 20):
                digest.update(block)
                got += len(block)
        if got != size or digest.hexdigest() != sha:
            raise HTTPException(400, f"upload {upload_id}: got {got} bytes with sha256 "
                                     f"{digest.hexdigest()}, expected {size} bytes with {sha}; "
                                     "nothing stored")
        if self.has(sha):
            part.unlink()
        else:
            self._commit(str(part), sha)

    def iter_bytes(self, sha: str) -> Iterator[bytes]:
        """The object's bytes in blocks."""
        with open(self.path(sha), "rb") as fh:
            while block := fh.read(1 << 20):
                yield block
