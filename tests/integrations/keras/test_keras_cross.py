"""One import line for both Kerases: the same callback classes in a Keras 3 model's fit and
in a tf_keras model's fit, whichever ``Callback`` they subclass in this environment.

Runs where both packages are installed (the tf_keras session's environment, which has
tensorflow + tf-keras and so Keras 3 too).
"""

from __future__ import annotations

import importlib

import numpy as np
import pytest

import em_core as em
from integrations.keras import EMEvalCallback, EMFitCallback


@pytest.mark.tf_keras
@pytest.mark.parametrize("flavour", ["keras", "tf_keras"])
def test_callbacks_work_in_either_keras(flavour, run, data, series):
    mod = importlib.import_module(flavour)
    assert flavour == "tf_keras" or mod.backend.backend() == "tensorflow"
    x, y = data
    model = mod.Sequential([mod.Input((8,)), mod.layers.Dense(3)])
    model.compile(optimizer="sgd", metrics=["accuracy"],
                  loss=mod.losses.SparseCategoricalCrossentropy(from_logits=True))
    fit_cb = EMFitCallback(run, log_every_n_batches=2)
    # The batch-hook protocol of both Kerases: per-batch logging on, test/predict off.
    assert fit_cb._implements_train_batch_hooks() and not fit_cb._implements_test_batch_hooks()
    assert fit_cb.async_safe is False and EMFitCallback(run).async_safe is True
    model.fit(x, y, batch_size=8, epochs=2, verbose=0, callbacks=[fit_cb])
    model.evaluate(x, y, verbose=0, callbacks=[EMEvalCallback(run)])

    hp = em.load_run(run.local).hparams["keras"]
    assert hp["framework"]["flavour"] == flavour
    train = series(run, "train")
    assert [p["sequence"]["step"] for p in train] == [2, 4, 4, 6, 8, 8]
    assert np.isfinite([p["value"]["loss"] for p in train]).all()
    assert series(run, "test")[0]["sequence"]["step"] == 8
