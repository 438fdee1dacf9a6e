"""Fixtures for the Keras integration tests.

The Keras the tests build models with follows ``TF_USE_LEGACY_KERAS`` as TensorFlow does:
tf_keras in the ``tf_keras`` nox session, Keras 3 (TensorFlow or torch backend, per
``KERAS_BACKEND``) otherwise.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from types import ModuleType
from typing import Any

import numpy as np
import pytest

import em_core as em

LEGACY = os.environ.get("TF_USE_LEGACY_KERAS") in ("true", "True", "1")
BACKEND = "tensorflow" if LEGACY else os.environ.get("KERAS_BACKEND", "tensorflow")

if BACKEND == "tensorflow":
    # Two logical CPUs for MirroredStrategy; only possible before TensorFlow initialises its
    # devices, i.e. before any test runs.
    import tensorflow as tf

    _cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(_cpu, [tf.config.LogicalDeviceConfiguration()] * 2)


def pytest_report_header(config: pytest.Config) -> str:
    return f"em keras tests: legacy tf_keras={LEGACY}, backend={BACKEND}"


@pytest.fixture(scope="session")
def K() -> ModuleType:
    """The Keras module models are built with."""
    if LEGACY:
        import tf_keras

        return tf_keras
    import keras

    return keras


@pytest.fixture
def run(em_dirs: Any) -> Any:
    r = em.create_run(name="keras-test")
    yield r
    r.finish()


@pytest.fixture
def data() -> tuple[np.ndarray, np.ndarray]:
    """32 samples of 8 features, 3 classes, learnable (labels from the features)."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(32, 8)).astype("float32")
    y = (x[:, 0] > 0).astype("int64") + (x[:, 1] > 0.5).astype("int64")
    return x, y


@pytest.fixture(scope="session")
def legacy() -> bool:
    """True when models are tf_keras ones (``TF_USE_LEGACY_KERAS=1``)."""
    return LEGACY


@pytest.fixture(scope="session")
def backend() -> str:
    return BACKEND


@pytest.fixture(scope="session")
def make_classifier(K: ModuleType) -> Callable[..., Any]:
    """Builds a tiny two-layer classifier over 8 features and 3 classes, compiled."""

    def make(*, optimizer: Any = "adam", **compile_kw: Any) -> Any:
        model = K.Sequential([K.Input((8,)), K.layers.Dense(4, activation="relu"),
                              K.layers.Dense(3)])
        compile_kw.setdefault("loss", K.losses.SparseCategoricalCrossentropy(from_logits=True))
        compile_kw.setdefault("metrics", ["accuracy"])
        model.compile(optimizer=optimizer, **compile_kw)
        return model

    return make


@pytest.fixture(scope="session")
def series() -> Callable[[Any, str], list[dict[str, Any]]]:
    """The records of one type of a run, read back from disk by an independent load."""

    def read(run: Any, type_: str) -> list[dict[str, Any]]:
        return em.load_run(run.local).metrics.get(type_, [])

    return read
