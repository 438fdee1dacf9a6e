"""Opening an existing run directory read-only: :func:`load_run`."""

from __future__ import annotations

import os
from typing import Any

from . import _validate
from ._files import read_json
from .errors import CorruptRunError, NotARunError
from .run import FORMAT_VERSION, META_FILE, Run

__all__ = ["load_run"]


def load_run(path: str | os.PathLike[str], auto_upload: bool = False,
             folder: str | None = None, make_folder: bool | None = None,
             conflict_strategy: str | None = None) -> Run:
    """Open a run directory written by :func:`create_run` (while it runs or after).

    The upload arguments, when given, are validated and replace the stored ones. A run
    whose writer died without a word reports its status as ``Crashed``. A loaded run is
    read-only (``log`` raises :class:`~em_core.errors.RunFinishedError`) until
    :meth:`Run.resume` reopens it.

    Raises:
        NotARunError: ``path`` is not a run directory.
        CorruptRunError: its metadata file is damaged (reported with its path).
    """
    p = _validate.path(path, "path")
    if not p.is_dir():
        from ._remote import is_remote_candidate, load_run_remote
        if is_remote_candidate(path):  # a server path: '/user/folder/name' or 'folder/name'
            return load_run_remote(str(path))  # type: ignore[no-any-return]
        raise NotARunError(f"no run directory at {str(p)!r}")
    if not (p / META_FILE).is_file():
        raise NotARunError(f"{str(p)!r} is not an em run directory (no {META_FILE})")
    meta = read_json(p / META_FILE)
    if not isinstance(meta, dict) or meta.get("kind") != "run":
        raise NotARunError(f"{str(p / META_FILE)!r} does not describe an em run")
    version = meta.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise NotARunError(f"{str(p)!r} has run format version {version!r}; this em reads up "
                           f"to {FORMAT_VERSION}")
    meta["upload"] = _upload_options(meta.get("upload"), auto_upload, folder, make_folder,
                                     conflict_strategy)
    meta.setdefault("associations", {})
    meta.setdefault("hparams", {})
    try:
        run = Run(p, meta, writable=False)
        _check_meta(run)
    except (KeyError, TypeError, ValueError, AttributeError, RecursionError) as e:
        raise CorruptRunError(f"metadata file {str(p / META_FILE)!r} is damaged: "
                              f"{type(e).__name__}: {e}") from e
    return run


def _upload_options(stored: Any, auto_upload: bool, folder: str | None,
                    make_folder: bool | None, conflict_strategy: str | None) -> dict[str, Any]:
    """The stored upload settings with the ones given to ``load_run`` validated over them."""
    upload = dict(stored or {})
    if _validate.flag(auto_upload, "auto_upload"):
        upload["auto_upload"] = True
    if folder is not None:
        upload["folder"] = _validate.folder(folder)
    if make_folder is not None:
        upload["make_folder"] = _validate.flag(make_folder, "make_folder")
    if conflict_strategy is not None:
        upload["conflict_strategy"] = _validate.conflict_strategy(conflict_strategy)
    return upload


def _check_meta(run: Run) -> None:
    """Touch every field a reader prints, so a crafted run.json fails here, at load."""
    for attr in ("name", "alternative_name", "start_timestamp", "labels", "description"):
        getattr(run, attr)
    if (not isinstance(run.labels, list) or not isinstance(run.start_timestamp, str)
            or not isinstance(run._meta["hparams"], dict)):
        raise TypeError("labels must be a list, start_timestamp a string, hparams an object")
    run.status  # noqa: B018
