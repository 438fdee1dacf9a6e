"""Helpers shared by the session modules."""

from __future__ import annotations

import socket

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


def free_port() -> int:
    """A TCP port nothing listens on now, on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
