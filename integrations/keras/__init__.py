"""Keras integration: ``EMFitCallback`` for ``fit``, ``EMEvalCallback`` for ``evaluate``.

Example:
    >>> import em_core as em                                            # doctest: +SKIP
    >>> from integrations.keras import EMFitCallback, EMEvalCallback    # doctest: +SKIP
    >>> run = em.create_run(name='mnist')                               # doctest: +SKIP
    >>> model.fit(x, y, validation_split=0.2, callbacks=EMFitCallback(run))  # doctest: +SKIP
    >>> model.evaluate(x_test, y_test, callbacks=EMEvalCallback(run))   # doctest: +SKIP
    >>> run.finish()                                                    # doctest: +SKIP

The callbacks work with Keras 3 (any backend) and with legacy tf_keras
(``TF_USE_LEGACY_KERAS=1``); see docs/keras.md. Importing this package imports Keras (or
tf_keras when ``TF_USE_LEGACY_KERAS=1``) and raises ``ModuleNotFoundError`` naming the
extra to install when neither is there.
"""

from __future__ import annotations

from .callbacks import EMEvalCallback, EMFitCallback

__all__ = ["EMEvalCallback", "EMFitCallback"]
