"""What runs and artifacts share: a directory whose metadata file is the truth, and the
data flow between them."""

from __future__ import annotations

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
        other side, each a list of ``{kind, name, alternative_name, local}``."""
        return {k: list(v) for k, v in self._meta["associations"].items()}

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
        bucket = self._meta["associations"].setdefault(key, [])
        entry = describe_target(other)
        if entry not in bucket:
            bucket.append(entry)
            self._save()


def describe_target(obj: Recorded) -> dict[str, Any]:
    """How a run or artifact is named in the other side's associations."""
    kind = "run" if "status" in obj._meta else "artifact"
    return {"kind": kind, "name": obj.name, "alternative_name": obj.alternative_name,
            "local": os.path.abspath(obj.local)}
