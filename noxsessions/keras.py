"""Keras sessions, one environment each (their packages conflict):

* ``keras``: Keras 3 on TensorFlow (tensorflow-cpu).
* ``tf_keras``: legacy tf_keras (``TF_USE_LEGACY_KERAS=1``; tensorflow + tf-keras, never
  tf-keras beside tensorflow-cpu), plus the same callbacks inside a Keras 3 fit.
* ``keras_torch``: Keras 3 on the torch backend.

Tests marked ``tf_keras`` need tf-keras installed; ``tf_backend`` ones need TensorFlow.
"""

from __future__ import annotations

import nox

from noxsessions._common import install_em

PATHS = ("tests/integrations/keras", "tests/integrations/test_contract.py")
QUIET_TF = {"EM_STRICT": "1", "TF_CPP_MIN_LOG_LEVEL": "2", "EM_CONTRACT": "keras"}

DEFAULT = ["keras", "tf_keras", "keras_torch"]


@nox.session
def keras(session: nox.Session) -> None:
    """Keras 3 on TensorFlow: callbacks, tf.distribute, the examples."""
    install_em(session, "tensorflow-cpu==2.21.0", "keras==3.15.1")
    session.run("python", "-m", "pytest", "-q", *PATHS, "-m", "not tf_keras",
                *session.posargs, env=QUIET_TF)


@nox.session
def tf_keras(session: nox.Session) -> None:
    """Legacy tf_keras, and one callback class working in both Kerases' fit."""
    install_em(session, "tensorflow==2.21.0", "tf-keras==2.21.0", "keras==3.15.1")
    session.run("python", "-m", "pytest", "-q", *PATHS, *session.posargs,
                env={**QUIET_TF, "TF_USE_LEGACY_KERAS": "1"})


@nox.session
def keras_torch(session: nox.Session) -> None:
    """Keras 3 on the torch backend (no TensorFlow)."""
    install_em(session, "torch==2.13.0", "keras==3.15.1")
    session.run("python", "-m", "pytest", "-q", *PATHS, "-m", "not tf_keras and not tf_backend",
                *session.posargs,
                env={"EM_STRICT": "1", "KERAS_BACKEND": "torch", "EM_CONTRACT": "keras"})
