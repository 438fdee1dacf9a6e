"""What runs and artifacts share: a directory whose metadata file is the truth, and the
data flow between them."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


class Recorded:
    """Base of :class:`~em_core.run.Run` and :class:`~em_core.artifact.Artifact`."""

    _path: Path
    _meta: dict[str, Any]

    def _save(self) -> None:
        raise NotImplementedError

    @property
    def local(self) -> str:
        """The directory holding it."""
        return str(self._path)

    @property
    def name(self) -> str:
        return str(self._meta["name"])

    @property
    def alternative_name(self) -> str:
        """The directory's name: ``<name>_<yymmdd>_<hhmmss>_<6 random>``."""
        return str(self._meta["alternative_name"])

    @property
    def labels(self) -> list[str]:
        return list(self._meta["labels"])

    @property
    def description(self) -> str:
        return str(self._meta["description"])

    @property
    def associations(self) -> dict[str, list[dict[str, Any]]]:
        """Data flow: ``inputs``/``outputs`` of a run, ``input_of``/``output_of`` of the
        other side, each a list of ``{kind, name, alternative_name, local}``: those in the
        metadata file merged with those other processes appended to ``associations.jsonl``."""
        merged = {k: list(v) for k, v in self._meta["associations"].items()}
        for key, entry in read_appended(self._path):
            bucket = merged.setdefault(key, [])
            if entry not in bucket:
                bucket.append(entry)
        return merged

    def _owns_meta(self) -> bool:
        """Whether this object may rewrite its metadata file (the process that created or
        resumed it); a loaded copy appends associations to ``associations.jsonl`` instead,
        so that it never overwrites what the owner wrote."""
        return True

    @property
    def remote(self) -> list[dict[str, Any]]:
        """Where it was uploaded (empty until uploaded)."""
        return list(self._meta.get("remote") or [])

    def upload(self, folder: str = "default", make_folder: bool = False,
               conflict_strategy: str = "new") -> dict[str, Any]:
        """Upload to the em server you are logged in to (see :func:`em_core.login`); a
        run also uploads the artifacts marked as its inputs and outputs.

        Args:
            folder: the server folder; without a leading '/', under the logged-in user.
            make_folder: create the folder (and its parents) when missing.
            conflict_strategy: when another run/artifact of this name is in the folder:
                'skip', 'error', 'new' (upload under the alternative name), 'replace'.

        Returns:
            ``{"host", "path", "id", "user"}``, also added to :attr:`remote`. Repeating
            the call uploads only what is new.
        """
        from ._upload import upload

        return upload(self, folder, make_folder, conflict_strategy)[-1]

    def _add_association(self, key: str, other: Recorded) -> None:
        entry = describe_target(other)
        if entry in self.associations.get(key, []):
            return
        if self._owns_meta():
            self._meta["associations"].setdefault(key, []).append(entry)
            self._save()
        else:
            append_association(self._path, key, entry)


def describe_target(obj: Recorded) -> dict[str, Any]:
    """How a run or artifact is named in the other side's associations."""
    kind = "run" if "status" in obj._meta else "artifact"
    return {"kind": kind, "name": obj.name, "alternative_name": obj.alternative_name,
            "local": os.path.abspath(obj.local)}


ASSOC_FILE = "associations.jsonl"


def append_association(directory: Path, key: str, entry: dict[str, Any]) -> None:
    """Append one association to ``<directory>/associations.jsonl``: one JSON object per
    line, written with O_APPEND in a single write(), so that concurrent appenders (several
    processes marking the same run or artifact) never interleave or overwrite each other."""
    line = (json.dumps({"key": key, **entry}, ensure_ascii=True) + "\n").encode("utf-8")
    fd = os.open(directory / ASSOC_FILE, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


def read_appended(directory: Path) -> list[tuple[str, dict[str, Any]]]:
    """The associations appended to ``associations.jsonl`` (none when it is absent); a torn
    or damaged line is skipped."""
    try:
        raw = (directory / ASSOC_FILE).read_bytes()
    except (FileNotFoundError, NotADirectoryError):
        return []
    out = []
    for line in raw.splitlines():
        try:
            d = json.loads(line)
        except (ValueError, RecursionError):
            continue
        if isinstance(d, dict) and isinstance(d.get("key"), str):
            key = d.pop("key")
            out.append((key, d))
    return out
