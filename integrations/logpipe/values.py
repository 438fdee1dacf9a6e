"""What the log parsers and recorders of ``em caffe`` and ``em mxnet`` share: numbers as
training logs print them, and the files a log names (snapshots, checkpoints) copied into
an output artifact of the run."""

from __future__ import annotations

import math
import os
import stat
import sys
from collections.abc import Callable
from typing import Any

__all__ = ["OutputFiles", "parse_number"]


def parse_number(text: str) -> float | None:
    """A number as training logs print it, with the nan/inf spellings of glibc (``nan``,
    ``-nan``, ``inf``) and MSVC (``1.#QNAN``, ``1.#IND``, ``-1.#INF``); None otherwise.

    Example:
        >>> parse_number("1.#QNAN"), parse_number("-inf"), parse_number("0.5,")
        (nan, -inf, None)
    """
    try:
        return float(text)
    except ValueError:
        upper = text.upper()
        if "NAN" in upper or "#IND" in upper:
            return math.nan
        if "INF" in upper:
            return -math.inf if upper.startswith("-") else math.inf
        return None


class OutputFiles:
    """Files a training log names (Caffe snapshots, MXNet checkpoints), copied into one output
    artifact of the run, ``<run name>-<kind>s``, created with the first file.

    The log is data, not the user's word: only a file under ``root`` (default: the working
    directory, the training's when it runs beside em) once links and ``..`` are resolved is
    read. A path outside it (``/etc/shadow``, ``../x``, a link leading out) is listed in the
    run's ``<kind>s_refused`` hyperparameter; the first one is named on stderr; a path that is not
    (yet) a file is skipped. Nothing is written for an ``em.NoOpRun`` (ranks above 0).

    Args:
        run: The run the artifact is an output of.
        kind: 'snapshot', 'checkpoint': names the artifact, the hyperparameter and messages.
        prog: The command, for messages ('em caffe').
        description: The artifact's description.
        root: The only folder files are read from; relative paths are resolved against it.
        on_refused: Called with ``{'<kind>s_refused': [...]}`` instead of setting the
            hyperparameter (a recorder that saves a block's changes at once).
    """

    def __init__(self, run: Any, *, kind: str, prog: str, description: str,
                 root: str | None = None,
                 on_refused: Callable[[dict[str, Any]], None] | None = None) -> None:
        self.run = run
        self.kind = kind
        self.prog = prog
        self.description = description
        self.root = root
        self.artifact: Any = None
        self.refused: list[str] = []
        self._on_refused = on_refused

    def add(self, paths: list[str]) -> None:
        """Copy the files at ``paths`` (as the log names them) into the artifact.

        Give every path of a block of log at once: the root and each folder are resolved
        once per call, and the refused ones are saved to the run once per call.
        """
        import em_core as em

        if not paths or isinstance(self.run, em.NoOpRun):
            return
        root = os.path.realpath(self.root or os.getcwd())
        inside = root if root.endswith(os.sep) else root + os.sep
        folders: dict[str, str] = {}  # a folder as joined -> resolved (realpath)
        refused = len(self.refused)
        for path in paths:
            full, is_file = self._resolved(os.path.join(root, path), folders)
            if full != root and not full.startswith(inside):
                self._refuse(path, root)
                continue
            if not (os.path.isfile(full) if is_file is None else is_file):
                continue
            try:
                if self.artifact is None:
                    self.artifact = em.create_artifact(f"{self.run.name}-{self.kind}s",
                                                       description=self.description)
                    self.run.mark_output(self.artifact)
                self.artifact.add_file(full)
            except (OSError, em.EmError, ValueError) as exc:
                em.handle_problem(exc, key=f"{self.prog}-{self.kind}:{type(exc).__name__}")
        if len(self.refused) > refused:
            if self._on_refused is not None:
                self._on_refused({f"{self.kind}s_refused": list(self.refused)})
            else:
                self.run.hparams[f"{self.kind}s_refused"] = list(self.refused)

    @staticmethod
    def _resolved(joined: str, folders: dict[str, str]) -> tuple[str, bool | None]:
        """``os.path.realpath(joined)``, with the folder's resolution shared by the paths
        of one call (checkpoints land in one folder; resolving it costs a system call per
        component), and whether it is a regular file where the one ``lstat`` says (None
        after a link)."""
        folder, name = os.path.split(joined)
        if name in ("", ".", ".."):
            return os.path.realpath(joined), None
        real = folders.get(folder)
        if real is None:
            real = folders[folder] = os.path.realpath(folder)
        full = os.path.join(real, name)
        try:
            mode = os.lstat(full).st_mode
        except (OSError, ValueError):  # missing (the usual: a path the log names elsewhere)
            return full, False
        if stat.S_ISLNK(mode):
            return os.path.realpath(full), None
        return full, stat.S_ISREG(mode)

    def _refuse(self, path: str, root: str) -> None:
        if path in self.refused:
            return
        self.refused.append(path)
        if len(self.refused) == 1:  # once: a training saving into another folder does so
            # every few minutes, and stderr is its log
            sys.stderr.write(f"{self.prog}: {self.kind} {path!r} is outside {root!r}; not "
                             f"copied (nor any other {self.kind} outside it: they are listed "
                             f"in the run's {self.kind}s_refused hyperparameter: start it "
                             f"in a folder above them to have them copied)\n")
