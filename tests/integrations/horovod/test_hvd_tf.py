"""Horovod with TensorFlow: ``run.hparams.parse(dist_hvd=...)`` in this process (Horovod of
size 1, Keras 3), and jobs of 2 ranks under ``horovodrun --gloo`` that must write one run:
a Keras 3 model trained with ``DistributedGradientTape``, and tf_keras ``fit`` with Horovod's
callbacks and ``EMFitCallback`` in both orders."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import horovod.tensorflow as hvd
import pytest
import tensorflow as tf

import em_core as em

REPO = Path(__file__).resolve().parents[3]
HERE = Path(__file__).resolve().parent
NP = 2  # ranks per job (conftest.launch)


@pytest.fixture
def hvd_init() -> Iterator[Any]:
    hvd.init()
    yield hvd
    hvd.shutdown()


@pytest.fixture
def run(em_dirs: Path) -> Iterator[Any]:
    r = em.create_run(name="hvd-tf-unit")
    yield r
    r.finish()


def test_module_gives_topology_and_build(hvd_init: Any, run: Any) -> None:
    run.hparams.parse(dist_hvd=hvd)
    got = run.hparams.as_dict()["distributed"]["horovod"]
    assert got["framework"] == "tensorflow" and got["version"] == "0.28.1"
    assert (got["size"], got["rank"], got["local_size"], got["cross_size"]) == (1, 0, 1, 1)
    assert got["controllers_built"] == {"mpi": False, "gloo": True}
    assert got["collectives_built"]["nccl"] is False and got["controller"] == "gloo"


def test_keras_module_is_recognised(hvd_init: Any, run: Any) -> None:
    import horovod.tensorflow.keras as hvd_keras

    run.hparams.parse(dist_hvd=hvd_keras)
    assert run.hparams.get("distributed.horovod.framework") == "tensorflow.keras"
    assert run.hparams.get("distributed.horovod.size") == 1


def test_gradient_tape_settings(hvd_init: Any, run: Any) -> None:
    v = tf.Variable([1.0, 2.0])
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(v * v)
    tape = hvd.DistributedGradientTape(tape, compression=hvd.Compression.fp16, op=hvd.Sum,
                                       sparse_as_dense=True)
    assert tape.gradient(loss, [v])[0].numpy().tolist() == [2.0, 4.0]
    run.hparams.parse(dist_hvd=tape)
    got = run.hparams.as_dict()["distributed"]["horovod"]
    assert got["framework"] == "tensorflow" and got["size"] == 1
    wrapper = got["wrapper"]
    assert wrapper["kind"] == "DistributedGradientTape"
    assert (wrapper["compression"], wrapper["op"]) == ("fp16", "Sum")
    assert wrapper["gradient_predivide_factor"] == 1.0
    assert wrapper["sparse_as_dense"] is True
    assert wrapper["backward_passes_per_step"] == 1
    assert wrapper["process_set"] == "global"
    assert "optimizer" not in wrapper  # a tape wraps no optimizer


def test_gradient_tape_predivide_factor(hvd_init: Any, run: Any) -> None:
    with tf.GradientTape() as tape:
        pass
    tape = hvd.DistributedGradientTape(tape, gradient_predivide_factor=4.0)
    run.hparams.parse(dist_hvd=tape)
    wrapper = run.hparams.get("distributed.horovod.wrapper")
    assert (wrapper["op"], wrapper["compression"]) == ("Average", "none")
    assert wrapper["gradient_predivide_factor"] == 4.0


def test_before_init_is_a_value_error_naming_the_module(run: Any) -> None:
    assert not hvd.is_initialized()
    with pytest.raises(ValueError, match=r"horovod\.tensorflow.*not initialized.*hvd\.init"):
        run.hparams.parse(dist_hvd=hvd)


def test_plain_tape_is_a_type_error_with_a_hint(hvd_init: Any, run: Any) -> None:
    with tf.GradientTape() as tape:
        pass
    with pytest.raises(TypeError, match=r"GradientTape.*not wrapped by "
                                        r"hvd\.DistributedGradientTape"):
        run.hparams.parse(dist_hvd=tape)
    with pytest.raises(TypeError, match="module tensorflow"):
        run.hparams.parse(dist_hvd=tf)


def _ranks(out: Path) -> list[dict[str, Any]]:
    return [json.loads((out / f"rank{k}.json").read_text()) for k in range(NP)]


def test_tape_job_writes_one_run_from_rank_0(tmp_path: Path, launch: Any,
                                             the_run: Any) -> None:
    out = tmp_path / "ranks"
    out.mkdir()
    launch(HERE / "job_tf_tape.py", str(out), cwd=tmp_path)
    run = the_run(tmp_path)
    ranks = _ranks(out)
    assert [r["noop"] for r in ranks] == [False] + [True] * (NP - 1)
    assert ranks[0]["run_dir"] == run.local
    hv = run.hparams.as_dict()["distributed"]["horovod"]
    assert (hv["framework"], hv["size"], hv["rank"]) == ("tensorflow", NP, 0)
    assert hv["wrapper"]["kind"] == "DistributedGradientTape"
    assert (hv["wrapper"]["compression"], hv["wrapper"]["op"]) == ("fp16", "Average")
    assert hv["wrapper"]["gradient_predivide_factor"] == 2.0
    train = run.metrics["train"]
    steps = run.hparams["steps"]
    assert [p["sequence"]["step"] for p in train] == list(range(1, steps + 1))
    means = [sum(r["local"][i] for r in ranks) / NP for i in range(steps)]
    assert [p["value"]["loss"] for p in train] == pytest.approx(means, rel=1e-5)
    assert ranks[0]["local"] != ranks[1]["local"]


@pytest.mark.parametrize("order", ["average-first", "em-first"])
def test_fit_with_horovod_callbacks(tmp_path: Path, launch: Any, the_run: Any,
                                    order: str) -> None:
    out = tmp_path / "ranks"
    out.mkdir()
    launch(HERE / "job_tfkeras_fit.py", str(out), order, cwd=tmp_path,
           env={"TF_USE_LEGACY_KERAS": "1"})
    run = the_run(tmp_path)
    ranks = _ranks(out)
    assert [r["noop"] for r in ranks] == [False] + [True] * (NP - 1)

    hv = run.hparams.as_dict()["distributed"]["horovod"]
    assert (hv["framework"], hv["size"], hv["rank"]) == ("keras", NP, 0)
    wrapper = hv["wrapper"]
    assert (wrapper["kind"], wrapper["op"], wrapper["compression"]) == (
        "DistributedOptimizer", "Average", "none")
    assert wrapper["backward_passes_per_step"] == 1
    assert wrapper["optimizer"]["class"] == "SGD"
    assert wrapper["optimizer"]["config"]["learning_rate"] == pytest.approx(0.02 * NP)
    # The same description EMFitCallback records of the model's optimizer.
    assert wrapper["optimizer"] == run.hparams.as_dict()["keras"]["optimizer"]

    epochs = run.hparams["epochs"]
    train = run.metrics["train"]
    assert [p["sequence"]["epoch"] for p in train] == list(range(1, epochs + 1))
    for e, point in enumerate(train):
        local = [r["epochs"][e] for r in ranks]
        assert local[0]["loss"] != pytest.approx(local[1]["loss"])  # ranks differ
        for name in ("loss", "mae"):
            mean = sum(lc[name] for lc in local) / NP
            expected = mean if order == "average-first" else local[0][name]
            assert point["value"][name] == pytest.approx(expected, rel=1e-5), (name, e)


def test_example_horovod_keras(tmp_path: Path, launch: Any, the_run: Any) -> None:
    epochs = 2
    launch(REPO / "examples" / "horovod_keras.py", "--epochs", str(epochs), "--name",
           "hvd-keras-example", cwd=tmp_path)
    run = the_run(tmp_path)
    assert run.name == "hvd-keras-example" and run.status is em.Status.COMPLETE
    assert run.hparams.get("distributed.horovod.size") == NP
    assert run.hparams.get("distributed.horovod.wrapper.optimizer.class") == "Adam"
    assert run.hparams.get("keras.epochs") == epochs
    train = run.metrics["train"]
    assert [p["sequence"]["epoch"] for p in train] == list(range(1, epochs + 1))
    assert train[-1]["value"]["loss"] < train[0]["value"]["loss"]
    assert set(run.metrics["val"][0]["value"]) >= {"loss", "accuracy"}
