"""The ``em`` command's sub-commands, found through the ``em.commands`` entry points.

``importlib.metadata`` costs ~50 ms to import and ~30 ms to scan on a small machine, which
``em caffe`` would spend before passing the first log line through. The entry points are
the same ``entry_points.txt`` files it reads, so this reads them directly: one directory
listing per ``sys.path`` folder and only the ``entry_points.txt`` of installed
distributions. Nothing here names an integration; em_core imports none.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable
from typing import Any

__all__ = ["GROUP", "find_commands", "load_command"]

GROUP = "em.commands"


def find_commands(group: str = GROUP) -> dict[str, str]:
    """``{name: 'module:attribute'}`` of every entry point in ``group`` of the distributions
    installed on ``sys.path`` (the first distribution found for a name wins, as with
    ``importlib.metadata``)."""
    header = f"[{group}]"
    found: dict[str, str] = {}
    for folder in sys.path:
        try:
            names = os.listdir(folder or ".")
        except OSError:  # a zip file, a folder that went away
            continue
        for name in names:
            if not name.endswith((".dist-info", ".egg-info")):
                continue
            try:
                with open(os.path.join(folder or ".", name, "entry_points.txt"),
                          encoding="utf-8") as f:
                    text = f.read()
            except OSError:
                continue
            if header in text:
                for key, value in _section(text, header).items():
                    found.setdefault(key, value)
    return found


def _section(text: str, header: str) -> dict[str, str]:
    out: dict[str, str] = {}
    inside = False
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("["):
            inside = line == header
        elif inside and "=" in line and not line.startswith(("#", ";")):
            key, _, value = line.partition("=")
            out[key.strip()] = value.split("[", 1)[0].strip()  # drop an '[extra]' marker
    return out


def load_command(target: str) -> Callable[[list[str]], Any]:
    """Import ``'module:attribute'`` and return the attribute.

    Raises:
        ImportError: the module cannot be imported (its extra is not installed).
        AttributeError: the module has no such attribute.
    """
    module, _, attr = target.partition(":")
    obj: Any = importlib.import_module(module.strip())
    for part in filter(None, attr.strip().split(".")):
        obj = getattr(obj, part)
    return obj  # type: ignore[no-any-return]
