"""Real MXNet: ``Module.fit`` with the em callbacks and a hand-written Gluon loop, on a tiny
MLP and generated data; the runs are read back from disk."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import mxnet as mx
import numpy as np
import pytest

import em_core as em
from integrations.mxnet import (
    EMBatchEndCallback,
    EMEpochEndCallback,
    EMEvalEndCallback,
    EMGluonLogger,
    log_fit_args,
    log_trainer_hparams,
)

BATCH = 16


def data(n: int = 128) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 8)).astype("float32")
    return x, (x[:, 0] + x[:, 1] > 0).astype("float32")


def module() -> mx.mod.Module:
    net = mx.sym.FullyConnected(mx.sym.Variable("data"), num_hidden=16, name="fc1")
    net = mx.sym.Activation(net, act_type="relu")
    net = mx.sym.FullyConnected(net, num_hidden=2, name="fc2")
    return mx.mod.Module(mx.sym.SoftmaxOutput(net, name="softmax"), context=mx.cpu())


def test_module_fit(tmp_path: Path) -> None:
    x, y = data()
    train = mx.io.NDArrayIter(x, y, batch_size=BATCH, shuffle=True)  # 8 batches per epoch
    val = mx.io.NDArrayIter(x[:32], y[:32], batch_size=BATCH)
    mod = module()
    run = em.create_run(name="fit")
    batch_cb = EMBatchEndCallback(run, batch_size=BATCH, frequent=4, module=mod)
    (tmp_path / "ckpt").mkdir()  # do_checkpoint does not create folders
    prefix = str(tmp_path / "ckpt" / "mlp")
    sched = mx.lr_scheduler.FactorScheduler(step=5, factor=0.5)
    mod.fit(train, eval_data=val, eval_metric=["acc", "ce"],
            **log_fit_args(run, optimizer="sgd", num_epoch=2, kvstore="local",
                           optimizer_params={"learning_rate": 0.1, "momentum": 0.9,
                                             "wd": 1e-4, "lr_scheduler": sched}),
            batch_end_callback=[batch_cb, mx.callback.Speedometer(BATCH, 4)],
            epoch_end_callback=[mx.callback.do_checkpoint(prefix, 2),
                                EMEpochEndCallback(run, batch_end=batch_cb,
                                                   checkpoint_prefix=prefix, period=2)],
            eval_end_callback=EMEvalEndCallback(run, batch_end=batch_cb))
    run.finish()

    back = em.load_run(run.local)
    assert back.status == em.Status.COMPLETE
    train_recs = back.metrics["train"]
    batch_recs = [r for r in train_recs if "samples_per_sec" in r["value"]]
    # every 4th batch of 8 per epoch, on one step axis across the 2 epochs
    assert [(r["sequence"]["step"], r["sequence"]["epoch"]) for r in batch_recs] == [
        (3, 0), (7, 0), (11, 1), (15, 1)]
    assert set(batch_recs[0]["value"]) == {"accuracy", "cross-entropy", "samples_per_sec"}
    epoch_recs = [r for r in train_recs if "samples_per_sec" not in r["value"]]
    assert [r["sequence"]["step"] for r in epoch_recs] == [7, 15]
    assert [(r["sequence"]["step"], set(r["value"])) for r in back.metrics["val"]] == [
        (7, {"accuracy", "cross-entropy"}), (15, {"accuracy", "cross-entropy"})]
    hp = back.hparams
    assert hp["optimizer"] == "sgd" and hp["num_epoch"] == 2 and hp["kvstore"] == "local"
    assert hp["optimizer_params"]["learning_rate"] == 0.1
    assert hp["optimizer_params"]["lr_scheduler"] == "FactorScheduler"
    held = hp["module_optimizer"]
    assert held["optimizer"] == "sgd" and held["momentum"] == 0.9 and held["wd"] == 1e-4
    assert held["rescale_grad"] == pytest.approx(1 / BATCH)
    assert held["lr_scheduler"]["type"] == "FactorScheduler"
    assert held["lr_scheduler"]["step"] == 5 and held["lr_scheduler"]["factor"] == 0.5
    (out,) = back.associations["outputs"]
    art = em.load_artifact(out["local"])
    assert sorted(art.objects) == ["mlp-0002.params", "mlp-symbol.json"]


def test_epoch_callback_saves_checkpoints_itself(tmp_path: Path) -> None:
    x, y = data(64)
    mod = module()
    run = em.create_run(name="ckpt")
    metric = mx.metric.Accuracy()
    prefix = str(tmp_path / "c" / "m")
    mod.fit(mx.io.NDArrayIter(x, y, batch_size=BATCH), num_epoch=2, eval_metric=metric,
            optimizer_params={"learning_rate": 0.1},
            epoch_end_callback=EMEpochEndCallback(run, eval_metric=metric,
                                                  checkpoint_prefix=prefix))
    run.finish()
    back = em.load_run(run.local)
    assert [(r["sequence"]["step"], list(r["value"])) for r in back.metrics["train"]] == [
        (0, ["accuracy"]), (1, ["accuracy"])]
    assert os.path.isfile(prefix + "-0002.params")
    art = em.load_artifact(back.associations["outputs"][0]["local"])
    assert sorted(art.objects) == ["m-0001.params", "m-0002.params", "m-symbol.json"]


def test_gluon_loop(tmp_path: Path) -> None:
    from mxnet import autograd, gluon

    x, y = data()
    loader = gluon.data.DataLoader(gluon.data.ArrayDataset(x, y), batch_size=BATCH)
    net = gluon.nn.HybridSequential()
    net.add(gluon.nn.Dense(16, activation="relu"), gluon.nn.Dense(2))
    net.initialize(mx.init.Xavier())
    sched = mx.lr_scheduler.FactorScheduler(step=4, factor=0.5, base_lr=0.05)
    trainer = gluon.Trainer(net.collect_params(), "sgd",
                            {"learning_rate": 0.05, "momentum": 0.9, "wd": 1e-4,
                             "lr_scheduler": sched})
    loss_fn = gluon.loss.SoftmaxCrossEntropyLoss()
    run = em.create_run(name="gluon")
    logger = EMGluonLogger(run, trainer=trainer, batch_size=BATCH, frequent=4)
    metric = mx.metric.Accuracy()
    for epoch in range(2):
        metric.reset()
        for i, (xb, yb) in enumerate(loader):
            with autograd.record():
                out = net(xb)
                loss = loss_fn(out, yb)
            loss.backward()
            trainer.step(BATCH)
            metric.update(yb, out)
            logger.batch_end(epoch, i, metric, loss=loss.mean())
        logger.epoch_end(epoch, train=metric, val={"accuracy": 0.5})
    run.finish()

    back = em.load_run(run.local)
    batch = [r for r in back.metrics["train"] if "loss" in r["value"]]
    assert [r["sequence"]["step"] for r in batch] == [3, 7, 11, 15]
    assert set(batch[0]["value"]) == {"accuracy", "loss", "lr", "samples_per_sec"}
    assert batch[-1]["value"]["lr"] < 0.05  # the scheduler's current rate, read each time
    assert [r["sequence"] for r in back.metrics["val"]][1]["step"] == 15
    hp = back.hparams
    assert (hp["optimizer"], hp["learning_rate"], hp["momentum"], hp["wd"]) == (
        "sgd", 0.05, 0.9, 1e-4)
    assert hp["rescale_grad"] == pytest.approx(1 / BATCH)
    assert hp["lr_scheduler"]["type"] == "FactorScheduler" and hp["kvstore"] == "device"


def test_trainer_hparams_without_a_step() -> None:
    from mxnet import gluon

    net = gluon.nn.Dense(2)
    net.initialize()
    trainer = gluon.Trainer(net.collect_params(), "adam", {"learning_rate": 0.003},
                            kvstore="local")
    run = em.create_run(name="trainer")
    log_trainer_hparams(run, trainer)
    run.finish()
    hp = em.load_run(run.local).hparams
    assert (hp["optimizer"], hp["learning_rate"], hp["kvstore"]) == ("adam", 0.003, "local")
    assert hp["beta1"] == 0.9


def test_rank_above_zero_writes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RANK", "1")
    run = em.create_run(name="rank1")
    assert isinstance(run, em.NoOpRun)
    x, y = data(32)
    batch_cb = EMBatchEndCallback(run, batch_size=BATCH, frequent=1, module=(mod := module()))
    mod.fit(mx.io.NDArrayIter(x, y, batch_size=BATCH), num_epoch=1,
            batch_end_callback=batch_cb,
            epoch_end_callback=EMEpochEndCallback(run, batch_end=batch_cb,
                                                  checkpoint_prefix=str(tmp_path / "r1")),
            eval_end_callback=EMEvalEndCallback(run))
    assert not (tmp_path / "runs").exists() and not list(tmp_path.glob("r1*"))


def test_bad_arguments_and_pickling() -> None:
    run = em.create_run(name="args")
    with pytest.raises(ValueError, match="frequent"):
        EMBatchEndCallback(run, BATCH, frequent=0)
    with pytest.raises(ValueError, match="batch_size"):
        EMBatchEndCallback(run, -3)
    with pytest.raises(ValueError, match="period"):
        EMEpochEndCallback(run, period=0)
    cb = EMBatchEndCallback(em.NoOpRun(), BATCH)
    assert pickle.loads(pickle.dumps(cb)).frequent == 50
    run.finish()


def test_a_broken_metric_does_not_stop_training(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EM_STRICT", "0")
    run = em.create_run(name="broken")
    cb = EMBatchEndCallback(run, BATCH, frequent=1)

    class Broken:
        def get_name_value(self) -> list:
            raise RuntimeError("metric exploded")

    with pytest.warns(em.EmWarning, match="metric exploded"):
        cb(mx.model.BatchEndParam(epoch=0, nbatch=0, eval_metric=Broken(), locals=None))
    run.finish()
    assert em.load_run(run.local).status == em.Status.COMPLETE


class _Whole(mx.callback.Speedometer):
    """Notes the metric over the whole epoch at its last batch (what MXNet prints as
    ``Train-...``), after Speedometer has reset its window."""

    def __init__(self, batches: int, seen: list[dict[str, float]]) -> None:
        super().__init__(BATCH, 4)
        self.batches, self.seen = batches, seen

    def __call__(self, param: mx.model.BatchEndParam) -> None:
        super().__call__(param)
        if param.nbatch + 1 == self.batches:
            self.seen.append(dict(param.eval_metric.get_global_name_value()))


def test_issue_usage_epoch_metric_is_the_whole_epoch() -> None:
    """One step axis through batch_end=, and the epoch's training metric over the whole
    epoch, not Speedometer's last window."""
    x, y = data()
    mod = module()
    run = em.create_run(name="usage")
    whole: list[dict[str, float]] = []
    batch_cb = EMBatchEndCallback(run, batch_size=BATCH, frequent=3)
    mod.fit(mx.io.NDArrayIter(x, y, batch_size=BATCH, shuffle=True),
            eval_data=mx.io.NDArrayIter(x[:32], y[:32], batch_size=BATCH),
            num_epoch=2, optimizer_params={"learning_rate": 0.5},
            batch_end_callback=[batch_cb, _Whole(8, whole)],
            epoch_end_callback=EMEpochEndCallback(run, batch_end=batch_cb),
            eval_end_callback=EMEvalEndCallback(run, batch_end=batch_cb))
    run.finish()
    back = em.load_run(run.local)
    epoch_recs = [r for r in back.metrics["train"] if "samples_per_sec" not in r["value"]]
    assert [r["sequence"]["step"] for r in epoch_recs] == [7, 15]
    assert [r["value"] for r in epoch_recs] == whole
    windows = [r["value"]["accuracy"] for r in back.metrics["train"]
               if "samples_per_sec" in r["value"]]
    assert windows and len(whole) == 2
    assert [r["sequence"]["step"] for r in back.metrics["val"]] == [7, 15]


def test_callbacks_made_without_batch_end_find_the_runs_batch_callback() -> None:
    """The callbacks as the earlier issue wrote them (no batch_end=): the run carries its
    batch callback, so the epoch's metric and the step axis are still shared."""
    x, y = data()
    mod = module()
    run = em.create_run(name="usage-plain")
    whole: list[dict[str, float]] = []
    mod.fit(mx.io.NDArrayIter(x, y, batch_size=BATCH, shuffle=True),
            eval_data=mx.io.NDArrayIter(x[:32], y[:32], batch_size=BATCH),
            num_epoch=2, optimizer_params={"learning_rate": 0.5},
            batch_end_callback=[EMBatchEndCallback(run, batch_size=BATCH, frequent=3),
                                _Whole(8, whole)],
            epoch_end_callback=EMEpochEndCallback(run),
            eval_end_callback=EMEvalEndCallback(run))
    run.finish()
    back = em.load_run(run.local)
    epoch_recs = [r for r in back.metrics["train"] if "samples_per_sec" not in r["value"]]
    assert [r["sequence"]["step"] for r in epoch_recs] == [7, 15]
    assert [r["value"] for r in epoch_recs] == whole
    assert [r["sequence"]["step"] for r in back.metrics["val"]] == [7, 15]


def test_without_batch_end_the_run_gives_the_step_and_a_second_fit_continues(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """No module-level registry: the eval callback steps on the run's newest batch
    callback's axis, a new batch callback on the same run continues the step axis after the
    run's last training point (Run.last_point, read incrementally) instead of starting
    again at 0, and nothing reads the whole log back."""
    x, y = data()
    mod = module()
    run = em.create_run(name="axis")
    reads = []
    real = em.Run.metric_records
    monkeypatch.setattr(em.Run, "metric_records", lambda self: reads.append(1) or real(self))
    for _ in range(2):  # two fits, two fresh callbacks
        mod.fit(mx.io.NDArrayIter(x, y, batch_size=BATCH),
                eval_data=mx.io.NDArrayIter(x[:32], y[:32], batch_size=BATCH),
                num_epoch=1, optimizer_params={"learning_rate": 0.5}, force_init=True,
                batch_end_callback=EMBatchEndCallback(run, batch_size=BATCH, frequent=3),
                eval_end_callback=EMEvalEndCallback(run))
    assert reads == []  # nothing read the whole log back
    run.finish()
    back = em.load_run(run.local)
    steps = [r["sequence"]["step"] for r in back.metrics["train"]]
    assert steps == [2, 5, 8, 11]  # 8 batches per fit; the second fit goes on after 5
    assert [r["sequence"]["step"] for r in back.metrics["val"]] == [7, 13]


def test_epoch_callback_without_a_metric_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    run = em.create_run(name="nometric")
    cb = EMEpochEndCallback(run)
    with pytest.raises(ValueError, match="no training metric"):  # EM_STRICT=1 in the tests
        cb(0)
    monkeypatch.setenv("EM_STRICT", "0")
    with pytest.warns(em.EmWarning, match="no training metric"):
        cb(1)
    run.finish()


def test_a_rerun_into_the_same_prefix_records_its_own_checkpoints(tmp_path: Path) -> None:
    x, y = data(64)
    prefix = str(tmp_path / "same" / "m")
    digests = []
    for seed in (1, 2):
        mx.random.seed(seed)
        mod = module()
        run = em.create_run(name=f"rerun{seed}")
        metric = mx.metric.Accuracy()
        mod.fit(mx.io.NDArrayIter(x, y, batch_size=BATCH), num_epoch=1, eval_metric=metric,
                optimizer_params={"learning_rate": 0.1},
                epoch_end_callback=EMEpochEndCallback(run, eval_metric=metric,
                                                      checkpoint_prefix=Path(prefix)))
        run.finish()
        art = em.load_artifact(em.load_run(run.local).associations["outputs"][0]["local"])
        assert sorted(art.objects) == ["m-0001.params", "m-symbol.json"]
        recorded = (Path(art.local) / "files" / "m-0001.params").read_bytes()
        assert recorded == Path(prefix + "-0001.params").read_bytes()  # this run's weights
        digests.append(recorded)
    assert digests[0] != digests[1]


def test_do_checkpoint_overwriting_an_earlier_runs_files_is_recorded(tmp_path: Path) -> None:
    x, y = data(32)
    prefix = str(tmp_path / "m")
    (tmp_path / "m-0001.params").write_bytes(b"an earlier run")
    (tmp_path / "m-symbol.json").write_bytes(b"{}")
    run = em.create_run(name="stale")
    mod = module()
    batch_cb = EMBatchEndCallback(run, frequent=1)
    mod.fit(mx.io.NDArrayIter(x, y, batch_size=BATCH), num_epoch=1,
            optimizer_params={"learning_rate": 0.1},
            batch_end_callback=batch_cb,
            epoch_end_callback=[mx.callback.do_checkpoint(prefix),
                                EMEpochEndCallback(run, batch_end=batch_cb,
                                                   checkpoint_prefix=prefix)])
    run.finish()
    art = em.load_artifact(em.load_run(run.local).associations["outputs"][0]["local"])
    assert (Path(art.local) / "files" / "m-0001.params").read_bytes() != b"an earlier run"
    assert (Path(art.local) / "files" / "m-symbol.json").read_bytes() != b"{}"


def test_fit_args_with_objects_and_bad_params() -> None:
    run = em.create_run(name="objects")
    opt = mx.optimizer.SGD(learning_rate=0.3, momentum=0.9, wd=0.001)
    kv = mx.kv.create("local")
    kwargs = log_fit_args(run, optimizer=opt, kvstore=kv, num_epoch=3,
                          optimizer_params=(("learning_rate", 0.01),))
    assert kwargs["optimizer"] is opt and kwargs["kvstore"] is kv
    with pytest.raises(TypeError, match="optimizer_params must be a dict.*got 5"):
        log_fit_args(run, optimizer="sgd", optimizer_params=5)
    run.finish()
    hp = em.load_run(run.local).hparams
    assert hp["optimizer"] == "sgd" and hp["kvstore"] == "local" and hp["num_epoch"] == 3
    assert hp["optimizer_params"]["learning_rate"] == 0.3  # what the object holds
    assert (hp["optimizer_params"]["momentum"], hp["optimizer_params"]["wd"]) == (0.9, 0.001)


def test_distributed_kvstore_types_record_their_workers() -> None:
    from integrations.mxnet_hparams import kvstore_hparams as _kvstore_hparams

    class KV:
        def __init__(self, type_: str) -> None:
            self.type, self.num_workers = type_, 4

    assert _kvstore_hparams(KV("dist_sync")) == {"kvstore": "dist_sync",
                                                 "kvstore_num_workers": 4}
    assert _kvstore_hparams(KV("horovod"))["kvstore_num_workers"] == 4
    assert _kvstore_hparams(KV("byteps"))["kvstore_num_workers"] == 4
    assert _kvstore_hparams(KV("device")) == {"kvstore": "device"}


@pytest.mark.parametrize(("make", "match"), [
    (lambda run: EMGluonLogger(run, batch_size="32"), "batch_size must be an int >= 1"),
    (lambda run: EMGluonLogger(run, frequent=True), "frequent must be an int >= 1"),
    (lambda run: EMBatchEndCallback(run, True), "batch_size must be an int >= 1"),
    (lambda run: EMEpochEndCallback(run, period=True), "period must be an int >= 1"),
    (lambda run: EMEpochEndCallback(run, checkpoint_prefix=5), "checkpoint_prefix must be"),
    (lambda run: EMEpochEndCallback(run, batch_end="x"), "batch_end must be"),
    (lambda run: EMEvalEndCallback(run, batch_end=object()), "batch_end must be"),
])
def test_bad_arguments_name_the_value(make, match: str) -> None:
    run = em.create_run(name="bad")
    with pytest.raises((TypeError, ValueError), match=match):
        make(run)
    run.finish()


def test_logging_problems_warn_once_and_raise_when_strict(monkeypatch: pytest.MonkeyPatch
                                                          ) -> None:
    run = em.create_run(name="once")
    cb = EMBatchEndCallback(run, BATCH, frequent=1)
    bad = mx.model.BatchEndParam(epoch=0, nbatch=0, eval_metric={"acc": "high"}, locals=None)
    with pytest.raises(Exception, match="acc"):  # EM_STRICT=1
        cb(bad)
    monkeypatch.setenv("EM_STRICT", "0")
    with pytest.warns(em.EmWarning) as caught:
        cb(bad)
        cb(bad)
    assert len(caught) == 1  # once
    cb(mx.model.BatchEndParam(epoch=0, nbatch=0, eval_metric={"acc": 0.5}, locals=None))
    run.finish()
    assert [r["value"] for r in em.load_run(run.local).metrics["train"]] == [{"acc": 0.5}]


def test_gluon_epoch_end_records_the_whole_epoch() -> None:
    run = em.create_run(name="gluon-epoch")
    logger = EMGluonLogger(run, frequent=100)
    metric = mx.metric.Accuracy()
    metric.update(mx.nd.array([1, 0]), mx.nd.array([[0, 1], [1, 0]]))  # 2 of 2
    metric.reset_local()
    metric.update(mx.nd.array([1, 1]), mx.nd.array([[1, 0], [1, 0]]))  # 0 of 2
    for i in range(4):
        logger.batch_end(0, i, metric)
    logger.epoch_end(0, train=metric, val={"accuracy": 0.25})
    run.finish()
    back = em.load_run(run.local)
    assert [(r["sequence"]["step"], r["value"]) for r in back.metrics["train"]] == [
        (3, {"accuracy": 0.5})]
    assert [(r["sequence"]["step"], r["value"]) for r in back.metrics["val"]] == [
        (3, {"accuracy": 0.25})]
