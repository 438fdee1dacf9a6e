"""MXNet (its own environment: MXNet 1.9.1 needs numpy<1.24) and the framework-free log
parsers behind ``em caffe`` and ``em mxnet``."""

from __future__ import annotations

import nox

from noxsessions._common import assert_absent, install_em

DEFAULT = ["caffe", "mxnet"]


@nox.session
def caffe(session: nox.Session) -> None:
    """The Caffe and MXNet log parsers on the shared corpus; no framework installed."""
    install_em(session)
    assert_absent(session)
    session.run("pytest", "tests/integrations/caffe",
                "tests/integrations/mxnet/test_log_corpus.py",
                "tests/integrations/mxnet/test_log_cli.py",
                "tests/integrations/mxnet/test_log_fastpath.py",
                "tests/integrations/mxnet/test_log_layouts.py",
                "tests/integrations/mxnet/test_log_secrets.py",
                "tests/integrations/mxnet/test_log_restarts.py",
                "tests/integrations/test_contract.py", *session.posargs,
                env={"EM_CONTRACT": "pipes"})


@nox.session
def mxnet(session: nox.Session) -> None:
    """MXNet callbacks with real Module.fit and Gluon training, and the example."""
    install_em(session, "mxnet==1.9.1", "numpy<1.24")
    session.run("pytest", "tests/integrations/mxnet/test_callbacks.py",
                "tests/integrations/mxnet/test_example.py", "tests/integrations/test_contract.py",
                *session.posargs, env={"EM_CONTRACT": "mxnet"})
