"""Artifacts: named, versioned sets of files (copied in, with size and sha256) and
references (URIs recorded as they are).

An artifact is a directory::

    <EM_ARTIFACT_PARENT_DIR or .em/artifacts>/<name>_<yymmdd>_<hhmmss>_<6 random>/
        artifact.json   metadata, object list, data flow (atomic replace)
        files/<obj_path>
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import posixpath
import re
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from . import _validate
from ._files import read_json, write_json_atomic
from ._recorded import Recorded
from ._secrets import mask_url
from .errors import NotARunError

__all__ = ["Artifact", "create_artifact", "load_artifact"]

META_FILE = "artifact.json"
FILES_DIR = "files"


def clean_obj_path(obj_path: str, given: str | None = None) -> str:
    """``obj_path`` normalised as a relative POSIX path inside an artifact; raises
    ValueError for an absolute path, one with ``..`` or one that names no file."""
    # ``given``: what the caller passed, quoted in errors instead of the joined path
    shown = obj_path if given is None else given
    if not isinstance(obj_path, str):
        raise TypeError(f"obj_path must be a string, got {type(obj_path).__name__}: "
                        f"{obj_path!r}")
    # 'C:/x' and 'C:\\x' are Windows paths; 'a:b.txt' is a plain POSIX file name
    if obj_path.startswith(("/", "\\")) or re.match(r"[A-Za-z]:[/\\]", obj_path):
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
        return clean_obj_path(default_name)
    if isinstance(obj_path, str) and obj_path.endswith("/"):
        return clean_obj_path(obj_path + default_name, given=obj_path)
    return clean_obj_path(obj_path)


def _real_dirs(root: Path, target: str) -> Path:
    """Create the folders of ``target`` under ``root`` and return its destination path.

    Every folder on the way must be a real directory: a link planted inside the artifact
    (``files/evil -> /outside``) is refused, so nothing is ever written outside it.
    """
    node = root
    for part in ("", *target.split("/")[:-1]):  # "": files/ itself may be the planted link
        node = node / part
        if node.is_symlink() or (node.exists() and not node.is_dir()):
            raise ValueError(f"obj_path {target!r}: {str(node)!r} inside the artifact is a link "
                             "or a file, not a folder; refusing to write through it")
        node.mkdir(exist_ok=True)
    return root / target


def _copy_hashed(src: Path, root: Path, target: str) -> tuple[int, str]:
    dst = _real_dirs(root, target)
    if dst.is_dir() and not dst.is_symlink():
        raise ValueError(f"obj_path {target!r} is a folder inside the artifact")
    digest = hashlib.sha256()
    size = 0
    tmp = dst.with_name(f".{dst.name}.part")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()  # left by a process killed while copying
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
    try:
        with open(src, "rb") as fin, os.fdopen(fd, "wb") as fout:
            while chunk := fin.read(1 << 20):
                digest.update(chunk)
                fout.write(chunk)
                size += len(chunk)
        shutil.copystat(src, tmp)
        os.replace(tmp, dst)  # replaces a link at dst itself, never what it points to
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
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
        """``{obj_path: {'kind': 'file'|'reference'|'link', 'size', 'sha256', 'uri',
        'target'}}``."""
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
        return str(self._path / FILES_DIR / clean_obj_path(obj_path))

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
        size, sha = _copy_hashed(src, self._path / FILES_DIR, target)
        self._meta["objects"][target] = {"kind": "file", "size": size, "sha256": sha,
                                         "source": os.path.abspath(src)}
        self._save()
        return target

    def add_dir(self, dir_path: str | os.PathLike[str], obj_path: str | None = None) -> list[str]:
        """Copy a directory's files in, keeping their relative paths under ``obj_path``
        (None: the directory's own name). Returns the object paths added.

        Links inside the directory are never followed: each one, to a file or a folder,
        dangling or not, is recorded as ``{'kind': 'link', 'target': <where it points>}``
        and nothing is copied for it. A special file (a FIFO, a socket, a device) raises
        ``ValueError`` naming it; what was copied before that is listed in
        ``artifact.json`` all the same.
        """
        src = _validate.existing_file(dir_path, "dir_path")
        if not src.is_dir():
            raise ValueError(f"dir_path {str(src)!r} is not a directory; use add_file()")
        base = _target(obj_path, src.resolve().name)
        objects = self._meta["objects"]
        added: list[str] = []
        try:
            for root, dirs, files in os.walk(src):
                dirs.sort()
                links = [d for d in dirs if os.path.islink(os.path.join(root, d))]
                dirs[:] = [d for d in dirs if d not in links]
                for fname in sorted(files + links):
                    f = Path(root) / fname
                    target = clean_obj_path(f"{base}/{f.relative_to(src).as_posix()}")
                    if f.is_symlink():
                        objects[target] = {"kind": "link", "target": os.readlink(f),
                                           "source": os.path.abspath(f)}
                    elif not f.is_file():
                        raise ValueError(f"{str(f)!r} is not a regular file, a folder or a "
                                         "link; add_dir copies only those")
                    else:
                        size, sha = _copy_hashed(f, self._path / FILES_DIR, target)
                        objects[target] = {"kind": "file", "size": size, "sha256": sha,
                                           "source": os.path.abspath(f)}
                    added.append(target)
        finally:
            self._save()  # whatever was copied is listed, also when a file failed
        return added

    def add_reference(self, uri: str, obj_path: str | None = None) -> str:
        """Record a URI (``s3://...``, ``https://...``, a path) without copying it."""
        if not isinstance(uri, str) or not uri.strip():
            raise TypeError(f"uri must be a non-empty string, got {uri!r}")
        default = posixpath.basename(uri.split("?", 1)[0].rstrip("/")) or "reference"
        target = _target(obj_path, default)
        # credentials in the URI (user:password@, ?token=...) are never recorded
        self._meta["objects"][target] = {"kind": "reference", "uri": mask_url(uri)}
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
    if not p.is_dir():
        from ._remote import is_remote_candidate, load_artifact_remote
        if is_remote_candidate(path):  # a server path: '/user/folder/name' or 'folder/name'
            return load_artifact_remote(str(path))  # type: ignore[no-any-return]
    if not (p / META_FILE).is_file():
        raise NotARunError(f"{str(p)!r} is not an em artifact directory (no {META_FILE})")
    meta = read_json(p / META_FILE)
    if not isinstance(meta, dict) or meta.get("kind") != "artifact":
        raise NotARunError(f"{str(p / META_FILE)!r} does not describe an em artifact")
    meta.setdefault("associations", {})
    return Artifact(p, meta, owner=False)
