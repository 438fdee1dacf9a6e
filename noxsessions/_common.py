"""Helpers shared by the session modules."""

from __future__ import annotations

import nox

FRAMEWORKS = ("torch", "tensorflow", "keras", "mxnet", "jax", "lightning", "horovod")


def assert_absent(session: nox.Session, modules: tuple[str, ...] = FRAMEWORKS) -> None:
    """Fail the session if any of ``modules`` is importable in its environment."""
    code = ("import importlib.util, sys; present = [m for m in " + repr(list(modules)) +
            " if importlib.util.find_spec(m)]; sys.exit(f'frameworks installed: {present}' "
            "if present else 0)")
    session.run("python", "-c", code)


def install_em(session: nox.Session, *extra: str) -> None:
    """Install em itself (editable, with the test tools) plus ``extra`` requirements."""
    session.install("-e", ".[test]", *extra)
