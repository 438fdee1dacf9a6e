"""EMEvalCallback: test metrics at the end of evaluate, on the run's training step axis."""

from __future__ import annotations

import pytest

import em_core as em
from integrations.keras import EMEvalCallback, EMFitCallback


def test_evaluate_lands_on_the_last_training_step(K, run, data, make_classifier, series):
    x, y = data
    model = make_classifier()
    model.fit(x, y, batch_size=8, epochs=2, verbose=0, callbacks=EMFitCallback(run))
    result = model.evaluate(x, y, verbose=0, return_dict=True,
                            callbacks=EMEvalCallback(run))
    train, test = series(run, "train"), series(run, "test")
    assert len(test) == 1
    assert test[0]["sequence"]["step"] == train[-1]["sequence"]["step"] == 2 * len(x) // 8
    assert test[0]["sequence"]["epoch"] == 2
    assert test[0]["value"] == pytest.approx(result)


def test_evaluate_after_a_custom_loop_uses_its_last_step(K, run, data, make_classifier, series):
    x, y = data
    for step in range(1, 6):
        run.log("train", {"loss": 1.0 / step}, step=step * 10, epoch=1)
    make_classifier().evaluate(x, y, verbose=0, callbacks=[EMEvalCallback(run)])
    test = series(run, "test")
    assert test[0]["sequence"]["step"] == 50 and test[0]["sequence"]["epoch"] == 1


def test_evaluate_without_training_and_with_explicit_step(K, data, make_classifier, series):
    x, y = data
    model = make_classifier()
    with em.create_run(name="eval-only") as run:
        model.evaluate(x, y, verbose=0, callbacks=EMEvalCallback(run))
        model.evaluate(x, y, verbose=0, callbacks=EMEvalCallback(run, step=7))
    test = series(run, "test")
    assert [(r["sequence"]["step"], r["sequence"]["epoch"]) for r in test] == [(0, None),
                                                                                (7, None)]
    assert set(test[0]["value"]) == {"loss", "accuracy"}


def test_constructor_rejects_bad_arguments(run):
    with pytest.raises(TypeError, match="EMEvalCallback needs the em run"):
        EMEvalCallback(None)
    with pytest.raises(ValueError, match="step must be >= 0"):
        EMEvalCallback(run, step=-1)
    with pytest.raises(TypeError, match="step must be an int"):
        EMEvalCallback(run, step=1.0)
    finished = em.create_run(name="finished")
    finished.finish()
    with pytest.raises(ValueError, match="has ended"):
        EMEvalCallback(finished)
