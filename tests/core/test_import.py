"""``import em_core`` loads nothing until a name is used; every public name still resolves."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import em_core

REPO = Path(__file__).resolve().parents[2]


def _python(code: str) -> str:
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=REPO, check=True)
    return res.stdout.strip()


def test_import_loads_no_submodule_and_no_dependency() -> None:
    loaded = _python("import sys; before = set(sys.modules); import em_core; "
                     "print(sorted(set(sys.modules) - before - {'importlib', '__future__'}))")
    assert loaded == "['em_core']"


def test_a_name_loads_its_module_on_first_use() -> None:
    out = _python("import sys, em_core; s = em_core.Status; "
                  "print(s.COMPLETE.value, 'em_core.run' in sys.modules, "
                  "'em_core._lifecycle' in sys.modules)")
    assert out == "Complete False True"


@pytest.mark.parametrize("name", em_core.__all__)
def test_every_public_name_resolves(name: str) -> None:
    value = getattr(em_core, name)
    assert getattr(value, "__name__", name) == name
    assert name in dir(em_core)


def test_star_import_and_unknown_names() -> None:
    namespace: dict[str, object] = {}
    exec("from em_core import *", namespace)
    assert set(em_core.__all__) <= set(namespace)
    with pytest.raises(AttributeError, match="'create_runs'"):
        em_core.create_runs  # noqa: B018
