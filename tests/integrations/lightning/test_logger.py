"""EMLogger in real (tiny) Lightning fits, for both Lightning packages; what landed on disk
is read back with em.load_run."""

from __future__ import annotations

import argparse
import pickle
import warnings
from pathlib import Path
from typing import Any

import pytest
import torch
from lightning_utilities.core.rank_zero import rank_zero_only
from omegaconf import OmegaConf

import em_core as em
from em_core import errors


def _fit(flavour: Any, logger: Any, **trainer_kwargs: Any) -> Any:
    trainer = flavour.trainer(logger, **trainer_kwargs)
    trainer.fit(flavour.Model(), flavour.data(), flavour.data(16, 1))
    return trainer


def test_fit_records_hparams_setup_and_metrics(flavour: Any) -> None:
    logger = flavour.EMLogger(name="fit", labels=["t"])
    trainer = _fit(flavour, logger, gradient_clip_val=0.5, accumulate_grad_batches=2)
    run = em.load_run(logger.run.local)
    assert run.status is em.Status.COMPLETE and run.name == "fit" and run.labels == ["t"]
    assert (logger.name, logger.version) == ("fit", run.alternative_name)
    assert logger.save_dir == logger.log_dir == run.local
    hp = run.hparams
    assert hp["lr"] == 0.1 and hp["hidden"] == 8
    assert hp.get("trainer.max_epochs") == 2 and hp.get("trainer.accumulate_grad_batches") == 2
    assert hp.get("trainer.gradient_clip_val") == 0.5
    assert hp.get("trainer.precision") == "32-true"
    assert hp.get("optimizer.class") == "SGD" and hp.get("optimizer.momentum") == 0.9
    assert hp.get("lr_scheduler.class") == "StepLR" and hp.get("lr_scheduler.interval") == "epoch"
    assert hp.get("model.parameters.total") == 4 * 8 + 8 + 8 * 2 + 2
    assert hp.get("distributed.world_size") == 1
    # 4 batches per epoch, accumulate 2: 2 optimizer steps per epoch, 4 in all.
    assert trainer.global_step == 4
    train = run.metrics["train"]
    step_points = [p for p in train if "loss" in p["value"]]
    steps = [p["sequence"]["step"] for p in step_points]
    assert steps == sorted(set(steps))  # two self.log calls per step: one point per step
    assert all(set(p["value"]) == {"loss", "acc"} for p in step_points)
    assert [p["sequence"]["epoch"] for p in train if "loss_epoch" in p["value"]] == [0, 1]
    val = run.metrics["val"]
    assert [(p["sequence"]["step"], p["sequence"]["epoch"]) for p in val] == [(2, 0), (4, 1)]
    assert all(set(p["value"]) == {"loss", "score"} for p in val)


def test_fit_then_test_one_run(flavour: Any) -> None:
    logger = flavour.EMLogger(name="fit_test")
    trainer = _fit(flavour, logger)
    trainer.test(trainer.lightning_module, flavour.data(16, 2))
    run = em.load_run(logger.run.local)
    assert run.status is em.Status.COMPLETE
    (point,) = run.metrics["test"]
    assert set(point["value"]) == {"loss"} and point["sequence"]["step"] == trainer.global_step


def test_given_run_is_left_open(flavour: Any) -> None:
    run = em.create_run(name="mine")
    logger = flavour.EMLogger(run)
    _fit(flavour, logger, max_epochs=1)
    assert run.status is em.Status.RUNNING  # the script that made it ends it
    run.log("test", {"acc": 1.0}, step=4)
    run.finish()
    assert set(em.load_run(run.local).metrics) == {"train", "val", "test"}


def test_log_hyperparams_namespace_attributedict_omegaconf(flavour: Any) -> None:
    from lightning_fabric.utilities.data import AttributeDict as FabricAttributeDict

    logger = flavour.EMLogger(name="hp")
    logger.log_hyperparams(argparse.Namespace(batch_size=32, opt="sgd"))
    logger.log_hyperparams(FabricAttributeDict(dropout=0.1))
    logger.log_hyperparams(OmegaConf.create({"model": {"hidden": 64, "act": "${act}"},
                                             "act": "relu"}))
    logger.finalize("success")
    hp = em.load_run(logger.run.local).hparams
    assert hp["batch_size"] == 32 and hp["dropout"] == 0.1
    assert hp.get("model.hidden") == 64 and hp.get("model.act") == "relu"


@pytest.mark.parametrize("mode", ["all", "best", "last"])
def test_checkpoints_become_an_output_artifact(flavour: Any, mode: str) -> None:
    logger = flavour.EMLogger(name="ckpt", log_checkpoints=mode)
    ckpt = flavour.pl.callbacks.ModelCheckpoint(monitor="val_loss", mode="min", save_top_k=2,
                                                save_last=True)
    _fit(flavour, logger, max_epochs=3, enable_checkpointing=True, callbacks=[ckpt])
    run = em.load_run(logger.run.local)
    (out,) = run.associations["outputs"]
    objects = set(em.load_artifact(out["local"]).objects)
    assert Path(ckpt.dirpath).is_relative_to(run.local)
    best = Path(ckpt.best_model_path).name
    if mode == "best":
        assert objects == {best}
    elif mode == "last":
        assert objects == {"last.ckpt"}
    else:  # every file ModelCheckpoint wrote, including the ones it later deleted
        assert {"last.ckpt", best} <= objects and len(objects) == 4


def test_exception_ends_run_failed(flavour: Any) -> None:
    logger = flavour.EMLogger(name="boom")
    trainer = flavour.trainer(logger)
    with pytest.raises(RuntimeError, match="boom"):
        trainer.fit(flavour.Model(fail_at=2), flavour.data())
    run = em.load_run(logger.run.local)
    assert run.status is em.Status.FAILED
    assert run.error["type"] == "RuntimeError" and "boom" in run.error["message"]


def test_keyboard_interrupt_ends_run_killed(flavour: Any) -> None:
    logger = flavour.EMLogger(name="ctrl_c")
    trainer = flavour.trainer(logger)
    with pytest.raises(SystemExit):  # Lightning turns Ctrl-C into sys.exit(1)
        trainer.fit(flavour.Model(interrupt_at=1), flavour.data())
    assert em.load_run(logger.run.local).status is em.Status.KILLED


def test_bad_construction(flavour: Any) -> None:
    run = em.create_run(name="r")
    with pytest.raises(ValueError, match="not both"):
        flavour.EMLogger(run, name="x")
    with pytest.raises(TypeError, match="em run"):
        flavour.EMLogger(run=flavour.pl.Trainer)
    with pytest.raises(ValueError, match="log_checkpoints"):
        flavour.EMLogger(log_checkpoints="sometimes")
    run.finish()
    with pytest.raises(ValueError, match="finished"):
        flavour.EMLogger(run)


def test_non_scalar_metric_warns_once_and_is_skipped(flavour: Any,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    logger = flavour.EMLogger(name="bad")
    with pytest.raises(ValueError, match="shape"):  # EM_STRICT=1 (the suite's default)
        logger.log_metrics({"train_hist": torch.ones(3)}, step=0)
    monkeypatch.setenv("EM_STRICT", "0")
    monkeypatch.setattr(errors, "_warned", set())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for step in (1, 2):
            logger.log_metrics({"train_hist": torch.ones(3), "train_loss": 0.5}, step=step)
    assert len([w for w in caught if issubclass(w.category, em.EmWarning)]) == 1
    logger.finalize("success")
    points = em.load_run(logger.run.local).metrics["train"]
    assert [p["value"] for p in points] == [{"loss": 0.5}, {"loss": 0.5}]


def test_ranks_above_zero_write_nothing(flavour: Any, tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rank_zero_only, "rank", 1)
    logger = flavour.EMLogger(name="r1", log_checkpoints="all")
    logger.log_hyperparams({"a": 1})
    logger.log_metrics({"train_loss": 1.0}, step=1)
    logger.finalize("success")
    assert isinstance(logger.run, em.NoOpRun) and logger.save_dir is None
    assert not (tmp_path / "runs").exists()


def test_pickling_hands_the_run_over(flavour: Any) -> None:
    logger = flavour.EMLogger(name="spawned")
    logger.log_hyperparams({"a": 1})
    worker = pickle.loads(pickle.dumps(logger))  # what ddp_spawn does to the Trainer
    worker.log_metrics({"train_loss": 1.0}, step=3)
    worker.finalize("success")
    run = em.load_run(worker.run.local)
    assert run.local == logger.run.local and run.status is em.Status.COMPLETE
    assert run.hparams["a"] == 1 and run.metrics["train"][0]["sequence"]["step"] == 3
    given = flavour.EMLogger(em.create_run(name="given"))
    with pytest.raises(TypeError, match="ddp_spawn"):
        pickle.dumps(given)
    given.run.finish()


def test_wrong_flavour_module_is_reported(flavour: Any) -> None:
    import importlib

    other = importlib.import_module("pytorch_lightning" if flavour.pl.__name__ ==
                                    "lightning.pytorch" else "lightning.pytorch")
    logger = flavour.EMLogger(name="wrong")
    with pytest.raises(TypeError, match="Lightning package"):
        logger.log_graph(other.LightningModule())
    logger.run.finish()
