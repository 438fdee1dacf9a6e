"""Test sessions. Frameworks' pins conflict, so each has its own environment.

    python3 -m nox            # every default session: what CI runs
    python3 -m nox -s main    # the main job: a real training recorded end to end
    python3 -m nox -s core    # one session
"""

from __future__ import annotations

import importlib
import pkgutil
import shutil
import sys
from pathlib import Path

import nox

sys.path.insert(0, str(Path(__file__).parent))
from noxsessions._common import assert_absent, install_em
from noxsessions._embedded import clean_env, embedded_server, new_key

# Each framework's sessions live in noxsessions/<framework>.py; importing registers them.
_modules = [importlib.import_module(f"noxsessions.{m.name}")
            for m in pkgutil.iter_modules([str(Path(__file__).parent / "noxsessions")])
            if not m.name.startswith("_")]

_ORDER = ["mxnet", "torch", "keras", "horovod"]  # quick first, Horovod's builds last
_modules.sort(key=lambda m: _ORDER.index(m.__name__.split(".")[-1])
              if m.__name__.split(".")[-1] in _ORDER else -1)
# "main" too: the README's first command must keep working, server half included
nox.options.sessions = ["lint", "typecheck", "core", "main"] + [
    name for mod in _modules for name in getattr(mod, "DEFAULT", [])]
nox.options.error_on_missing_interpreters = True


@nox.session
def lint(session: nox.Session) -> None:
    """ruff over everything."""
    session.install("ruff==0.17.6")
    session.run("ruff", "check", ".")
    # complexity: a function over C901's threshold carries its reason in its noqa comment
    session.run("ruff", "check", "--select", "C901", ".")


@nox.session
def typecheck(session: nox.Session) -> None:
    """mypy --strict over em_core."""
    session.install("mypy==2.4.1", "types-PyYAML", "types-requests", "-e", ".")
    session.run("mypy")


@nox.session
def core(session: nox.Session) -> None:
    """em_core's tests and the example, in an environment with no ML framework."""
    install_em(session, "omegaconf")
    assert_absent(session)
    session.run("pytest", "tests/core", "tests/examples", "--doctest-modules", "em_core",
                *session.posargs)


@nox.session
def main(session: nox.Session) -> None:
    """The main job: train a NumPy MLP on generated data, record it and show it; then start
    an em server on its embedded default, log in, upload the run with its weights, list it
    on the server and load it back into an empty folder."""
    session.install("-e", ".[server]", "numpy")
    tmp = Path(session.create_tmp()).resolve()
    session.chdir(tmp)
    if session.run("python", f"{session.invoked_from}/examples/numpy_mlp.py",
                   *session.posargs) is None:
        return  # nox --install-only: nothing ran, so nothing to upload
    session.run("em", "ls")
    session.run("em", "show", "numpy-mlp")
    # the run just made (earlier runs of the job stay in .em/ but are not uploaded)
    newest = max((tmp / ".em" / "runs").glob("numpy-mlp*/run.json"),
                 key=lambda p: p.stat().st_mtime).parent
    data = tmp / "server-data"
    shutil.rmtree(data, ignore_errors=True)  # a fresh server each time the job runs
    env = clean_env(tmp)
    with embedded_server(session, data) as host:
        key = new_key(session, data, "demo")
        session.run("em", "login", "--host", host, env={**env, "EM_API_KEY": key})
        session.run("em", "upload", str(newest), "--folder", "em-examples", "--make-folder",
                    env=env)
        session.run("em", "ls", "--remote", "em-examples", env=env)
        back = tmp / "loaded-back"
        shutil.rmtree(back, ignore_errors=True)
        back.mkdir()
        session.chdir(back)
        session.run("em", "download", "/demo/em-examples/numpy-mlp", env=env)
        session.run("em", "show", "numpy-mlp", env=env)

