"""``em mxnet``'s parser on every log of ../shared/corpus/mxnet (MXNet itself not needed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from integrations.mxnet_log import (
    BatchLog,
    Checkpoint,
    Crash,
    EpochLog,
    GluonEpochLog,
    MXNetLogParser,
    Start,
)

pytestmark = pytest.mark.usefixtures("block_path")  # C and regex: see conftest.py

CORPUS = Path(__file__).resolve().parents[3].parent / "shared" / "corpus" / "mxnet"

# The corpus README's "Line counts": batch lines (last epoch), with Speed, Train- lines,
# Time cost lines (distinct epochs), Validation lines (distinct epochs), validation metrics,
# [Epoch N] lines (distinct epochs, last epoch), restarts.
COUNTS = {
    "ZhouKai90__SSH-keypoint__train": (3052, 43, 3052, 570, 38, 38, 0, 0, [], 0, 0, None, 0),
    "coderzbx__densenet.mxnet__log-densenet-kd-169-train_0307":
        (200, 49, 200, 0, 50, 50, 50, 50, ["accuracy"], 0, 0, None, 3),
    "dmlc__web-data__cifar_resnet20_v1": (0, None, 0, 0, 0, 0, 0, 0, [], 200, 200, 199, 1),
    "dmlc__web-data__resnest14": (6750, 269, 0, 270, 270, 270, 55, 54,
                                  ["accuracy", "top_k_accuracy_5"], 0, 0, None, 1),
    "dmlc__web-data__resnet18_v1": (3000, 119, 3000, 0, 0, 0, 0, 0, [], 360, 120, 119, 1),
    "miraclewkf__MXNet-Deep-Learning-in-Action__train":
        (0, None, 0, 10, 10, 10, 10, 10, ["accuracy"], 0, 0, None, 1),
    "tornadomeet__ResNet__resnet-164": (2100, 299, 2100, 0, 300, 300, 300, 300, ["accuracy"],
                                        0, 0, None, 1),
}


def test_the_corpus_is_there() -> None:
    assert sorted(p.name[:-4] for p in CORPUS.glob("*.log")) == sorted(COUNTS)


@pytest.mark.parametrize("stem", sorted(COUNTS))
def test_counts_match_the_readme(stem: str) -> None:
    (n_batch, last_batch_epoch, n_speed, n_train, n_tc, tc_epochs, n_val, val_epochs,
     val_names, n_gluon, gluon_epochs, gluon_last, starts) = COUNTS[stem]
    evs = MXNetLogParser().feed_bytes((CORPUS / f"{stem}.log").read_bytes())
    batches = [e for e in evs if isinstance(e, BatchLog)]
    epochs = [e for e in evs if isinstance(e, EpochLog)]
    gluon = [e for e in evs if isinstance(e, GluonEpochLog)]
    assert len(batches) == n_batch
    assert (batches[-1].epoch if batches else None) == last_batch_epoch
    assert sum(e.speed is not None for e in batches) == n_speed
    assert (sum(bool(e.train) for e in epochs)
            + sum(e.time_cost is not None and bool(e.metrics) for e in batches)) == n_train
    tc = [e.epoch for e in epochs + batches if e.time_cost is not None]  # type: ignore[operator]
    assert (len(tc), len(set(tc))) == (n_tc, tc_epochs)
    val = [e for e in epochs if e.val]
    assert (len(val), len({e.epoch for e in val})) == (n_val, val_epochs)
    assert sorted({k for e in val for k in e.val}) == val_names
    assert (len(gluon), len({e.epoch for e in gluon})) == (n_gluon, gluon_epochs)
    assert (gluon[-1].epoch if gluon else None) == gluon_last
    assert sum(isinstance(e, Start) for e in evs) == starts
    assert not any(isinstance(e, Crash) for e in evs)


def test_values_and_names_as_printed() -> None:
    p = MXNetLogParser()
    (b,) = p.feed("INFO:root:Epoch[0] Batch [49]\tSpeed: 2770.466083 samples/sec\t"
                  "top1-err=0.999141\tlr=0.003133")
    assert b == BatchLog(0, 49, {"top1-err": 0.999141, "lr": 0.003133}, 2770.466083)
    (b,) = p.feed("[1,0]<stderr>:INFO:root:Epoch[0] Batch[100] Loss[6.968]")
    assert (b.batch, b.metrics) == (100, {"loss": 6.968})
    (b,) = p.feed("2018 INFO - Epoch[5] Batch [0-20]\tSpeed: 25.77 samples/sec\tM0_Acc=0.99")
    assert (b.epoch, b.batch, b.metrics) == (5, 20, {"M0_Acc": 0.99})
    assert p.feed("[1,3]<stderr>:INFO:root:Epoch[0] Batch[100] Loss[6.968]") == []
    assert p.feed("INFO:root:Epoch[0] Rank[2] Batch[100]\trmse=0.02") == []
    p = MXNetLogParser()  # from here on, lines of other logs (an earlier epoch: a Rewind)
    (g,) = p.feed("INFO:root:[Epoch 3] train=0.76 val=0.71 loss=0.67 time: 16.2")
    assert (g.train, g.val, g.time_cost) == ({"train": 0.76, "loss": 0.67}, {"val": 0.71}, 16.2)
    (g,) = MXNetLogParser().feed("INFO:root:[Epoch 0] validation: err-top1=0.89 err-top5=0.73")
    assert g.val == {"err-top1": 0.89, "err-top5": 0.73} and not g.train
    (s,) = p.feed("Namespace(batch_size=128, lr=0.1, mode='hybrid', ctx=[gpu(0)])")
    assert s.hparams == {"batch_size": 128, "lr": 0.1, "mode": "hybrid"}
    (c,) = p.feed('Saved checkpoint to "out/m-0001.params"')
    assert c == Checkpoint("out/m-0001.params")
    assert p.feed_bytes(b"Traceback (most recent call last):\n  File \"x\", line 1\n"
                        b"ValueError: bad shape\n") == [Crash("ValueError: bad shape")]
    (e,) = MXNetLogParser().feed("Epoch[2] Train-accuracy=nan")
    assert e.train["accuracy"] != e.train["accuracy"]
