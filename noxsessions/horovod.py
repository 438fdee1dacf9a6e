"""Horovod sessions: Horovod 0.28.1 built from its source distribution against the session's
own PyTorch or TensorFlow, with Gloo (no MPI), on CPU.

Horovod publishes no wheels, and its 0.28.1 sdist does not build with current frameworks as
released: their headers need C++17 (the sdist asks for C++14), and the TensorFlow build
compiles an optional XLA op that no longer compiles. The session downloads the sdist with
pip, patches those lines and builds it in the session's environment. The build (minutes) is
skipped when the environment already imports Horovod for that framework, so
``nox -r -s horovod_torch`` reuses it.

    python3 -m nox -s horovod_torch horovod_tf
"""

from __future__ import annotations

import os
import tarfile
from pathlib import Path

import nox

from noxsessions._common import install_em

HOROVOD = "0.28.1"
TORCH_PINS = ("torch==2.13.0",)
# tf_keras is needed for Horovod's Keras callbacks with fit (horovod.tensorflow.keras does
# not work with Keras 3); it pins TensorFlow to its own minor version.
TF_PINS = ("tensorflow==2.21.0", "tf-keras==2.21.0")
# Horovod's own requirements, plus what its setup.py build needs without build isolation
# (the build must see the session's framework, so it cannot run in an isolated environment).
BUILD_REQS = ("cloudpickle", "psutil", "pyyaml", "packaging", "cffi", "wheel", "setuptools")

_CXX14 = "set(CMAKE_CXX_STANDARD 14)"
_CXX17 = "set(CMAKE_CXX_STANDARD 17)"
_XLA_OP = 'list(APPEND TF_SOURCES "${PROJECT_SOURCE_DIR}/horovod/tensorflow/xla_mpi_ops.cc")'

DEFAULT = ["horovod_torch", "horovod_tf"]


def _replace(path: Path, old: str, new: str) -> None:
    """Replace ``old`` by ``new`` in ``path``; fail loudly when the sdist no longer has it."""
    text = path.read_text()
    if old not in text:
        if new and new in text:
            return  # patched already
        raise RuntimeError(f"horovod sdist changed: {old!r} not found in {path}")
    path.write_text(text.replace(old, new))


def _patch(src: Path, framework: str) -> None:
    _replace(src / "CMakeLists.txt", _CXX14, _CXX17)
    if framework == "torch":
        _replace(src / "horovod" / "torch" / "CMakeLists.txt", _CXX14, _CXX17)
    else:
        # The XLA custom-call op is optional (only used with HOROVOD_ENABLE_XLA_OPS) and no
        # longer compiles against current TensorFlow headers.
        _replace(src / "horovod" / "tensorflow" / "CMakeLists.txt", _XLA_OP, "")


def _has_horovod(session: nox.Session, module: str) -> bool:
    code = (f"import importlib\ntry:\n    importlib.import_module({module!r})\n"
            "except ImportError as e:\n    print('missing:', e)\nelse:\n    print('present')")
    out = session.run("python", "-c", code, silent=True)
    return isinstance(out, str) and out.strip().splitlines()[-1:] == ["present"]


def build_horovod(session: nox.Session, framework: str) -> None:
    """Download, patch and build Horovod for ``framework`` ('torch' or 'tensorflow') into
    the session's environment, unless it imports already."""
    module = "horovod.torch" if framework == "torch" else "horovod.tensorflow"
    if _has_horovod(session, module):
        session.log(f"{module} imports: reusing the Horovod built in this environment")
        return
    tmp = Path(session.create_tmp()) / f"horovod-build-{framework}"
    session.run("python", "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
                f"horovod=={HOROVOD}", "-d", str(tmp), silent=True)
    with tarfile.open(tmp / f"horovod-{HOROVOD}.tar.gz") as tar:
        tar.extractall(tmp, filter="data")
    src = tmp / f"horovod-{HOROVOD}"
    _patch(src, framework)
    env = {"HOROVOD_WITH_GLOO": "1", "HOROVOD_WITHOUT_MPI": "1", "HOROVOD_WITHOUT_MXNET": "1",
           "MAKEFLAGS": os.environ.get("MAKEFLAGS", f"-j{os.cpu_count() or 2}")}
    if framework == "torch":
        env.update(HOROVOD_WITH_PYTORCH="1", HOROVOD_WITHOUT_TENSORFLOW="1")
    else:
        env.update(HOROVOD_WITH_TENSORFLOW="1", HOROVOD_WITHOUT_PYTORCH="1")
    session.run("python", "-m", "pip", "install", "--no-build-isolation", str(src), env=env)
    if not _has_horovod(session, module):
        session.error(f"Horovod built but {module} does not import")
    session.run("horovodrun", "--check-build")  # what was built: frameworks, Gloo, no MPI


@nox.session
def horovod_torch(session: nox.Session) -> None:
    """Horovod with PyTorch: describe_hvd, a horovodrun -np 2 training loop, the example."""
    install_em(session, *TORCH_PINS, *BUILD_REQS)
    build_horovod(session, "torch")
    session.run("pytest", "tests/integrations/horovod/test_hvd_torch.py",
                "tests/integrations/test_contract.py", *session.posargs,
                env={"EM_CONTRACT": "horovod"})


@nox.session
def horovod_tf(session: nox.Session) -> None:
    """Horovod with TensorFlow: a Keras 3 model with DistributedGradientTape, tf_keras fit
    with Horovod's callbacks and EMFitCallback, the example."""
    install_em(session, *TF_PINS, *BUILD_REQS)
    build_horovod(session, "tensorflow")
    session.run("pytest", "tests/integrations/horovod/test_hvd_tf.py", *session.posargs)
