"""Which Keras the callbacks subclass, and the parts of both callback protocols they add.

Keras 3 (``keras``) and legacy Keras 2 (``tf_keras``, what ``tf.keras`` is when
``TF_USE_LEGACY_KERAS=1``) call callbacks through different private protocols: tf_keras'
``CallbackList`` asks every callback ``_implements_train_batch_hooks()`` and reads
``_supports_tf_logs``, which a Keras 3 callback lacks; Keras 3's ``CallbackList`` reads
``async_safe``. The em callbacks subclass the ``Callback`` of the Keras that ``tf.keras``
resolves to (so ``isinstance(cb, tf.keras.callbacks.Callback)`` holds) and implement both
protocols, so one instance works in either ``fit``.
"""

from __future__ import annotations

import os
from types import ModuleType

_EXTRA_HINT = "pip install 'em[keras]' (Keras 3 with TensorFlow, or tf-keras for legacy Keras)"


def legacy_requested() -> bool:
    """The same test TensorFlow applies to decide that ``tf.keras`` is tf_keras."""
    return os.environ.get("TF_USE_LEGACY_KERAS") in ("true", "True", "1")


def _import_keras() -> ModuleType:
    """The Keras module whose ``Callback`` to subclass (``keras`` or ``tf_keras``)."""
    order = ("tf_keras", "keras") if legacy_requested() else ("keras", "tf_keras")
    missing: list[str] = []
    for name in order:
        try:
            module = __import__(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:  # the package is there but broken: show the real cause
                raise
            missing.append(name)
            continue
        return module
    raise ModuleNotFoundError(
        f"integrations.keras needs Keras: neither {' nor '.join(missing)} is installed. "
        f"Install it with: {_EXTRA_HINT}", name="keras")


KERAS = _import_keras()
BaseCallback: type = KERAS.callbacks.Callback


class DualProtocolCallback(BaseCallback):  # type: ignore[misc, valid-type]
    """A ``Callback`` that also speaks the other Keras' ``CallbackList`` protocol.

    Subclasses set ``_batch_hooks`` to True when they need ``on_train_batch_end``.
    """

    _batch_hooks = False
    # tf_keras: give us NumPy/Python values, never tensors (no device sync for us to do).
    _supports_tf_logs = False
    _chief_worker_only = None

    def __init__(self) -> None:
        super().__init__()
        # tf_keras' Callback.__init__ sets these on the instance; Keras 3's does not.
        self._supports_tf_logs = False
        self._chief_worker_only = None

    # Keras 3: without per-batch work nothing of ours runs on the batch hooks, so Keras may
    # dispatch them on its thread pool instead of waiting for them.
    @property
    def async_safe(self) -> bool:
        return not self._batch_hooks

    # tf_keras: skip calling our batch hooks (and the device sync for their logs) when
    # they do nothing.
    def _implements_train_batch_hooks(self) -> bool:
        return self._batch_hooks

    def _implements_test_batch_hooks(self) -> bool:
        return False

    def _implements_predict_batch_hooks(self) -> bool:
        return False

