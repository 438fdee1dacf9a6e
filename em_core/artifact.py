"""Artifacts: named, versioned sets of files (copied in, with size and sha256) and
references (URIs recorded as they are).

An artifact is a directory::

    <EM_ARTIFACT_PARENT_DIR or .em/artifacts>/<name>_<yymmdd>_<hhmmss>_<6 random>/
        artifact.json   metadata, object list, data flow (atomic replace)
        files/<obj_path>
"""

from __future__ import annotations

import hashlib
import os
import posixpath
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from . import _validate
from ._files import read_json, write_json_atomic
from ._recorded import Recorded
from .errors import NotARunError

__all__ = ["Artifact", "create_artifact", "load_artifact"]

META_FILE = "artifact.json"
FILES_DIR = "files"


def _clean_obj_path(obj_path: str, given: str | None = None) -> str:
    # ``given``: what the caller passed, quoted in errors instead of the joined path
    shown = obj_path if given is None else given
    if not isinstance(obj_path, str):
        raise TypeError(f"obj_path must be a string, got {type(obj_path).__name__}: "
                        f"{obj_path!r}")
    if obj_path.startswith(("/", "\\")) or (len(obj_path) > 1 and obj_path[1] == ":"):
        raise ValueError(f"obj_path {shown!r} is absolute; it must be a relative path "
                         "inside the artifact, such as 'model.pt' or 'ckpt/'")
    parts = obj_path.replace("\\", "/").split("/")
    if ".." in parts:
        raise ValueError(f"obj_path {shown!r} escapes the artifact ('..' is not allowed)")
    norm = posixpath.normpath("/".join(parts))
    if norm in {"", "."}:
        raise ValueError(f"obj_path {shown!r} names no file inside the artifact")
    return norm


def _target(obj_path: str | None, default_name: str) -> str:
    """Apply the obj_path rule: None -> the source's name; 'dir/' -> into that folder."""
    if obj_path is None:
        return _clean_obj_path(default_name)
    if isinstance(obj_path, str) and obj_path.endswith("/"):
        return _clean_obj_path(obj_path + default_name, given=obj_path)
    return _clean_obj_path(obj_path)


def _copy_hashed(src: Path, dst: Path) -> tuple[int, str]:
    dst.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    size = 0
    tmp = dst.with_name(f".{dst.name}.part")
    with open(src, "rb") as fin, open(tmp, "wb") as fout:
        while chunk := fin.read(1 << 20):
            digest.update(chunk)
            fout.write(chunk)
            size += len(chunk)
    os.replace(tmp, dst)
    shutil.copystat(src, dst)
    return size, digest.hexdigest()


class Artifact(Recorded):
    """A set of files and references. Made by :func:`create_artifact` or
    :func:`load_artifact`.

    Files are copied into the artifact when added, so later changes to the source do not
    change what was recorded. Adding to an ``obj_path`` that exists replaces that object.
    """

    def __init__(self, path: Path, meta: dict[str, Any], *, owner: bool = True) -> None:
        self._path = path
        self._meta = meta
        self._owner = owner  # a loaded copy appends associations to associations.jsonl

    def _owns_meta(self) -> bool:
        return self._owner

    def _save(self) -> None:
        write_json_atomic(self._path / META_FILE, self._meta)


    @property
    def created_timestamp(self) -> str:
        return str(self._meta["created_timestamp"])

    @property
    def objects(self) -> dict[str, dict[str, Any]]:
        """``{obj_path: {'kind': 'file'|'reference', 'size', 'sha256', 'uri'}}``."""
        return {k: dict(v) for k, v in self._meta["objects"].items()}

    @property
    def partial_files(self) -> list[str]:
        """Leftover ``.part`` files of copies a killed process never finished, relative to
        ``files/``. They are never objects (``objects`` comes from artifact.json only)."""
        base = self._path / FILES_DIR
        if not base.is_dir():
            return []
        return sorted(p.relative_to(base).as_posix() for p in base.rglob(".*.part")
                      if p.is_file())


    def file_path(self, obj_path: str) -> str:
        """Where the copy of a file object lies on disk."""
        return str(self._path / FILES_DIR / _clean_obj_path(obj_path))

    def add_file(self, file_path: str | os.PathLike[str], obj_path: str | None = None) -> str:
        """Copy a file in. ``obj_path``: None keeps the file's name; ending in '/' puts it
        into that folder; otherwise it is the object's path. Returns the object's path.

        Raises:
            FileNotFoundError: the file does not exist. ValueError: it is a directory, or
            ``obj_path`` is absolute or contains '..'.
        """
        src = _validate.existing_file(file_path, "file_path")
        if src.is_dir():
            raise ValueError(f"file_path {str(src)!r} is a directory; use add_dir()")
        target = _target(obj_path, src.name)
        size, sha = _copy_hashed(src, self._path / FILES_DIR / target)
        self._meta["objects"][target] = {"kind": "file", "size": size, "sha256": sha,
                                         "source": os.path.abspath(src)}
        self._save()
        return target

    def add_dir(self, dir_path: str | os.PathLike[str], obj_path: str | None = None) -> list[str]:
        """Copy a directory's files in, keeping their relative paths under ``obj_path``
        (None: the directory's own name). Returns the object paths added."""
        src = _validate.existing_file(dir_path, "dir_path")
        if not src.is_dir():
            raise ValueError(f"dir_path {str(src)!r} is not a directory; use add_file()")
        base = _target(obj_path, src.resolve().name)
        added = []
        for root, dirs, files in os.walk(src):
            dirs.sort()
            for fname in sorted(files):
                f = Path(root) / fname
                rel = f.relative_to(src).as_posix()
                target = _clean_obj_path(f"{base}/{rel}")
                size, sha = _copy_hashed(f, self._path / FILES_DIR / target)
                self._meta["objects"][target] = {"kind": "file", "size": size, "sha256": sha,
                                                 "source": os.path.abspath(f)}
                added.append(target)
        self._save()
        return added

    def add_reference(self, uri: str, obj_path: str | None = None) -> str:
        """Record a URI (``s3://...``, ``https://...``, a path) without copying it."""
        if not isinstance(uri, str) or not uri.strip():
            raise TypeError(f"uri must be a non-empty string, got {uri!r}")
        default = posixpath.basename(uri.split("?", 1)[0].rstrip("/")) or "reference"
        target = _target(obj_path, default)
        self._meta["objects"][target] = {"kind": "reference", "uri": uri}
        self._save()
        return target


    def to_dict(self) -> dict[str, Any]:
        d = dict(self._meta)
        d["associations"] = self.associations
        return d

    @classmethod
    def parse_from_dict(cls, d: Mapping[str, Any]) -> dict[str, Any]:
        """Validate a dict made by :meth:`to_dict` and return it."""
        missing = [k for k in ("name", "alternative_name", "objects") if k not in d]
        if missing:
            raise ValueError(f"not an artifact dict: missing keys {missing}")
        return dict(d)

    def __repr__(self) -> str:
        return f"<em Artifact {self.alternative_name!r} ({len(self._meta['objects'])} objects)>"


def create_artifact(name: str, labels: list[str] | None = None,
                    description: str = "") -> Artifact:
    """Create an artifact directory under ``$EM_ARTIFACT_PARENT_DIR`` (default
    ``.em/artifacts``)."""
    from .run import new_dir, now_iso

    name = _validate.name(name)
    meta = {"format_version": 1, "kind": "artifact", "name": name,
            "labels": _validate.labels(labels),
            "description": _validate.text(description, "description"),
            "created_timestamp": now_iso(), "objects": {}, "associations": {}, "remote": []}
    path = new_dir("EM_ARTIFACT_PARENT_DIR", ".em/artifacts", name)
    meta["alternative_name"] = path.name
    (path / FILES_DIR).mkdir()
    art = Artifact(path, meta)
    art._save()
    return art


def load_artifact(path: str | os.PathLike[str]) -> Artifact:
    """Open an artifact directory made by :func:`create_artifact`."""
    p = _validate.path(path, "path")
    if not (p / META_FILE).is_file():
        raise NotARunError(f"{str(p)!r} is not an em artifact directory (no {META_FILE})")
    meta = read_json(p / META_FILE)
    if not isinstance(meta, dict) or meta.get("kind") != "artifact":
        raise NotARunError(f"{str(p / META_FILE)!r} does not describe an em artifact")
    meta.setdefault("associations", {})
    return Artifact(p, meta, owner=False)
