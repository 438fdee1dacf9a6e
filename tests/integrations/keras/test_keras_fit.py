"""EMFitCallback on real tiny models: what lands in the run's hyperparameters and metrics."""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np
import pytest

import em_core as em
from integrations.keras import EMFitCallback

BATCH = 8


def steps_of(records: list[dict[str, Any]]) -> list[int]:
    return [r["sequence"]["step"] for r in records]


def epochs_of(records: list[dict[str, Any]]) -> list[int | None]:
    return [r["sequence"]["epoch"] for r in records]


def test_fit_records_setup_and_epoch_metrics(K, run, data, make_classifier, series, legacy,
                                             backend):
    x, y = data
    model = make_classifier(optimizer=K.optimizers.Adam(learning_rate=0.01))
    history = model.fit(x, y, batch_size=BATCH, epochs=3, validation_split=0.25, verbose=0,
                        callbacks=EMFitCallback(run))

    hp = em.load_run(run.local).hparams.as_dict()["keras"]
    assert hp["framework"]["flavour"] == ("tf_keras" if legacy else "keras")
    assert hp["framework"]["backend"] == backend
    assert hp["optimizer"]["class"] == "Adam"
    assert hp["optimizer"]["config"]["learning_rate"] == pytest.approx(0.01)
    assert hp["optimizer"]["config"]["beta_1"] == pytest.approx(0.9)
    assert hp["loss"]["class"] == "SparseCategoricalCrossentropy"
    assert hp["loss"]["config"]["from_logits"] is True
    assert hp["metrics"] == sorted(k for k in history.history if not k.startswith("val_"))
    assert "compile_metrics" not in hp["metrics"]
    assert hp["epochs"] == 3
    train_samples = int(len(x) * 0.75)
    assert hp["steps_per_epoch"] == train_samples // BATCH
    dense1, dense2 = 8 * 4 + 4, 4 * 3 + 3
    assert hp["trainable_params"] == dense1 + dense2
    assert hp["non_trainable_params"] == 0
    assert "distributed" not in em.load_run(run.local).hparams  # default strategy

    train, val = series(run, "train"), series(run, "val")
    per_epoch = train_samples // BATCH
    assert epochs_of(train) == [1, 2, 3] and epochs_of(val) == [1, 2, 3]
    assert steps_of(train) == [per_epoch, 2 * per_epoch, 3 * per_epoch] == steps_of(val)
    assert [r["value"]["loss"] for r in train] == pytest.approx(history.history["loss"])
    assert [r["value"]["accuracy"] for r in train] == pytest.approx(history.history["accuracy"])
    assert [r["value"]["loss"] for r in val] == pytest.approx(history.history["val_loss"])
    assert set(val[0]["value"]) == {"loss", "accuracy"}  # prefix removed, no learning rate
    assert [r["value"]["learning_rate"] for r in train] == pytest.approx([0.01] * 3)


def test_schedule_recorded_with_class_config_and_value(K, run, data, make_classifier, series,
                                                      legacy):
    x, y = data
    sched = K.optimizers.schedules.ExponentialDecay(0.1, decay_steps=4, decay_rate=0.5)
    model = make_classifier(optimizer=K.optimizers.SGD(learning_rate=sched))
    model.fit(x, y, batch_size=BATCH, epochs=2, verbose=0, callbacks=[EMFitCallback(run)])

    lr = em.load_run(run.local).hparams["keras"]["optimizer"]["config"]["learning_rate"]
    assert lr["class"] == "ExponentialDecay"
    assert lr["config"]["initial_learning_rate"] == pytest.approx(0.1)
    assert lr["config"]["decay_steps"] == 4 and lr["config"]["decay_rate"] == pytest.approx(0.5)
    assert lr["value"] == pytest.approx(0.1)  # at train begin, iteration 0

    train = series(run, "train")
    # Keras 3 reports the rate of the next step, tf_keras the rate of the last step taken.
    lag = 1 if legacy else 0
    expected = [float(np.asarray(sched(step - lag))) for step in steps_of(train)]
    assert [r["value"]["learning_rate"] for r in train] == pytest.approx(expected, rel=1e-5)
    assert expected[1] < expected[0]


def _max_abs_error(K, legacy):
    if legacy:
        import tensorflow as tf

        def max_abs_error(y_true, y_pred):
            return tf.reduce_max(tf.abs(tf.cast(y_true, y_pred.dtype) - y_pred), axis=-1)
    else:
        ops = K.ops

        def max_abs_error(y_true, y_pred):
            return ops.max(ops.abs(ops.cast(y_true, y_pred.dtype) - y_pred), axis=-1)
    return max_abs_error


def test_multi_output_custom_metric_and_function_loss(K, run, data, series, legacy):
    x, y = data
    inp = K.Input((8,))
    hidden = K.layers.Dense(4, activation="relu")(inp)
    model = K.Model(inp, {"cls": K.layers.Dense(3, name="cls")(hidden),
                          "reg": K.layers.Dense(1, name="reg")(hidden)})

    def squared_error(y_true, y_pred):
        return (y_true - y_pred) ** 2

    model.compile(optimizer="sgd",
                  loss={"cls": K.losses.SparseCategoricalCrossentropy(from_logits=True),
                        "reg": squared_error},
                  metrics={"cls": ["accuracy"], "reg": [_max_abs_error(K, legacy)]})
    targets = {"cls": y, "reg": x[:, :1].copy()}
    history = model.fit(x, targets, batch_size=BATCH, epochs=2, verbose=0,
                        validation_data=(x, targets), callbacks=EMFitCallback(run))

    hp = em.load_run(run.local).hparams["keras"]
    assert hp["loss"]["cls"]["class"] == "SparseCategoricalCrossentropy"
    assert hp["loss"]["reg"] == "squared_error"  # a plain function: recorded by name
    train_names = sorted(k for k in history.history if not k.startswith("val_"))
    assert hp["metrics"] == train_names
    assert {"cls_accuracy", "reg_max_abs_error", "cls_loss", "reg_loss"} <= set(train_names)

    train, val = series(run, "train"), series(run, "val")
    assert set(train[-1]["value"]) == set(train_names) | {"learning_rate"}
    assert set(val[-1]["value"]) == set(train_names)
    for name in train_names:
        assert val[-1]["value"][name] == pytest.approx(history.history["val_" + name][-1])


def test_loss_given_as_string_and_top_level_hparams(K, run, data, make_classifier):
    x, y = data
    model = make_classifier(loss="sparse_categorical_crossentropy")
    model.fit(x, y[:, None], batch_size=BATCH, epochs=1, verbose=0,
              callbacks=EMFitCallback(run, hparams_key=None))
    hp = em.load_run(run.local).hparams
    assert hp["loss"] == "sparse_categorical_crossentropy"
    assert hp["optimizer"]["class"] == "Adam"
    assert "keras" not in hp


def test_initial_epoch_continues_the_step_axis(K, run, data, make_classifier, series):
    x, y = data
    per_epoch = len(x) // BATCH
    first = make_classifier()
    first.fit(x, y, batch_size=BATCH, epochs=2, verbose=0, callbacks=EMFitCallback(run))

    # Resume in a new model (fresh optimizer at iteration 0) with the trained weights.
    resumed = make_classifier()
    resumed.set_weights(first.get_weights())
    resumed.fit(x, y, batch_size=BATCH, initial_epoch=2, epochs=4, verbose=0,
                callbacks=EMFitCallback(run))
    train = series(run, "train")
    assert epochs_of(train) == [1, 2, 3, 4]
    assert steps_of(train) == [per_epoch * e for e in (1, 2, 3, 4)]


def test_initial_epoch_on_a_new_run_starts_at_its_epoch(K, data, make_classifier, series):
    x, y = data
    per_epoch = len(x) // BATCH
    with em.create_run(name="resumed") as run:
        make_classifier().fit(x, y, batch_size=BATCH, initial_epoch=2, epochs=4, verbose=0,
                               callbacks=EMFitCallback(run))
    train = series(run, "train")
    assert epochs_of(train) == [3, 4]
    assert steps_of(train) == [3 * per_epoch, 4 * per_epoch]


def test_fit_twice_on_one_run(K, run, data, make_classifier, series):
    x, y = data
    per_epoch = len(x) // BATCH
    model = make_classifier()
    callback = EMFitCallback(run)
    model.fit(x, y, batch_size=BATCH, epochs=2, verbose=0, callbacks=callback)
    model.fit(x, y, batch_size=BATCH, epochs=2, verbose=0, callbacks=callback)
    train = series(run, "train")
    assert steps_of(train) == [per_epoch * k for k in (1, 2, 3, 4)]
    assert epochs_of(train) == [1, 2, 1, 2]  # Keras numbers each fit's epochs afresh


def test_early_stopping_ends_the_series(K, run, data, make_classifier, series):
    x, y = data
    stop = K.callbacks.EarlyStopping(monitor="loss", patience=0, min_delta=1e9)
    history = make_classifier().fit(x, y, batch_size=BATCH, epochs=10, verbose=0,
                                     callbacks=[EMFitCallback(run), stop])
    train = series(run, "train")
    assert len(history.epoch) == 2  # best after epoch 1; epoch 2 cannot improve by 1e9
    assert epochs_of(train) == [1, 2]
    assert em.load_run(run.local).hparams["keras"]["epochs"] == 10


def test_every_n_batches_on_the_global_step_axis(K, run, data, make_classifier, series):
    x, y = data
    per_epoch = len(x) // BATCH  # 4
    make_classifier().fit(x, y, batch_size=BATCH, epochs=2, verbose=0,
                           callbacks=EMFitCallback(run, log_every_n_batches=2))
    train = series(run, "train")
    # batch points at steps 2 and 4 of each epoch, plus the epoch point at its last step
    assert steps_of(train) == [2, 4, 4, 6, 8, 8]
    assert epochs_of(train) == [1, 1, 1, 2, 2, 2]
    assert steps_of(train)[-1] == 2 * per_epoch
    assert all("loss" in r["value"] for r in train)
    # the learning rate comes with the epoch points (a batch point would need a device read)
    assert ["learning_rate" in r["value"] for r in train] == [False, False, True] * 2


@pytest.mark.tf_backend  # Keras' torch backend requires steps_per_execution=1
def test_every_n_batches_with_steps_per_execution(K, run, data, make_classifier, series):
    x, y = data
    model = make_classifier(steps_per_execution=2)
    model.fit(x, y, batch_size=BATCH, epochs=2, verbose=0,
              callbacks=EMFitCallback(run, log_every_n_batches=1))
    train = series(run, "train")
    # Keras calls the batch hook once per execution of 2 batches, with the last batch index
    assert steps_of(train) == [2, 4, 4, 6, 8, 8]
    assert steps_of(train)[-1] == int(np.asarray(model.optimizer.iterations))


class _InjectBadValues:
    """Adds values Keras could report but that are not numbers, before EMFitCallback runs."""

    @staticmethod
    def make(K, names):
        class Inject(K.callbacks.Callback):
            def on_epoch_end(self, epoch, logs=None):
                logs[names[0]] = "not a number"
                logs[names[1]] = np.array([1.0, 2.0])

        return Inject()


def test_non_numeric_metric_warns_once_and_is_skipped(K, run, data, monkeypatch, make_classifier,
                                                      series):
    monkeypatch.setenv("EM_STRICT", "0")
    x, y = data
    names = ("note_warns_once", "vector_warns_once")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        history = make_classifier().fit(
            x, y, batch_size=BATCH, epochs=3, verbose=0,
            callbacks=[_InjectBadValues.make(K, names), EMFitCallback(run)])
    em_warnings = [w for w in caught if issubclass(w.category, em.EmWarning)]
    assert len(em_warnings) == 2  # one per bad metric, not one per epoch
    assert any(names[0] in str(w.message) for w in em_warnings)
    assert any("shape (2,)" in str(w.message) for w in em_warnings)
    train = series(run, "train")
    assert len(train) == len(history.epoch) == 3
    assert all(not set(names) & set(r["value"]) and math.isfinite(r["value"]["loss"])
               for r in train)


def test_non_numeric_metric_raises_under_strict(K, run, data, make_classifier):
    x, y = data
    with pytest.raises((TypeError, ValueError), match="note_strict"):
        make_classifier().fit(
            x, y, batch_size=BATCH, epochs=1, verbose=0,
            callbacks=[_InjectBadValues.make(K, ("note_strict", "vector_strict")),
                       EMFitCallback(run)])


@pytest.mark.parametrize("bad", [None, "run", 3])
def test_constructor_rejects_what_is_not_a_run(bad):
    with pytest.raises(TypeError, match="EMFitCallback needs the em run"):
        EMFitCallback(bad)


def test_constructor_rejects_a_finished_run():
    run = em.create_run(name="done")
    run.finish()
    with pytest.raises(ValueError, match="has ended"):
        EMFitCallback(run)


@pytest.mark.parametrize(("every", "exc"), [(0, ValueError), (-2, ValueError), (1.5, TypeError),
                                            (True, TypeError), ("2", TypeError)])
def test_constructor_rejects_bad_batch_interval(run, every, exc):
    with pytest.raises(exc, match="log_every_n_batches"):
        EMFitCallback(run, log_every_n_batches=every)


def test_rank_above_zero_writes_nothing(K, data, em_dirs, monkeypatch, make_classifier):
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    run = em.create_run(name="worker")
    assert isinstance(run, em.NoOpRun)
    x, y = data
    history = make_classifier().fit(x, y, batch_size=BATCH, epochs=2, verbose=0,
                                     callbacks=EMFitCallback(run, log_every_n_batches=1))
    assert len(history.epoch) == 2
    runs_dir = em_dirs / "runs"
    assert not runs_dir.exists() or not any(runs_dir.iterdir())
    assert "keras" not in run.hparams
