"""Every Caffe log of ../shared/corpus/caffe: counts from the corpus README, and every row
Caffe's own parse_log.py wrote to its CSVs, reproduced (plus what that script misses)."""

from __future__ import annotations

import csv
import math
import re
from pathlib import Path

import pytest

from integrations.caffe import (
    Failed,
    Finished,
    Resumed,
    Solving,
    TestResult,
    TrainIteration,
    parse_caffe_log,
)

CORPUS = Path(__file__).resolve().parents[3].parent / "shared" / "corpus" / "caffe"

# From the corpus README ("Counts of what is in each Caffe log"): loss lines, first and last
# iteration of a loss line, NaN loss lines, test phases, lr lines.
COUNTS = {
    "Amanda-Barbara__nvcaffe__train_with_nccl": (41, 0, 40, 0, 9, 40),
    "NVIDIA__caffe__alexnet_fp32": (1254, 0, 125000, 0, 26, 1249),
    "QiangXie__caffe-ssd-modify__VGG_VOC0712_SSD_300x300": (34, 140, 470, 34, 0, 34),
    "akompaniyets__Robotic-Inference__caffe_output": (41, 0, 1160, 0, 6, 41),
    "amd__OpenCL-caffe__caffe.AMD-RESEARCH.yugao.log.INFO.20150906-133002.7951":
        (0, None, None, 0, 1, 0),
    "bobhuynh__Intel__caffe": (481, 0, 960, 0, 0, 480),
    "dreadlord1984__SSD_windows_caffe__0802": (13, 0, 120000, 0, 12, 12),
    "ducha-aiki__caffenet-benchmark__SqueezeNet224_2gpu_new_solver": (4245, 240, 170000, 0, 34,
                                                                      4244),
    "ducha-aiki__caffenet-benchmark__caffenet128_lsuv_bs1_lr3.9063e-05": (1601, 0, 81920000, 0,
                                                                          322, 1600),
    "ethanhe42__resnet-cifar10-caffe__resnet-20__2016-08-14_00-25-56": (641, 0, 64000, 0, 65, 640),
    "ethanhe42__resnet-cifar10-caffe__resnet-32__2018-10-19_01-44-03": (641, 0, 64000, 0, 65, 640),
    "qiexing__caffe-regression__caffe": (201, 0, 20000, 0, 41, 200),
    "whksmo__joint-hashing__log": (51, 0, 50000, 0, 51, 50),
}

_CACHE: dict[str, list] = {}


def events(stem: str) -> list:
    if stem not in _CACHE:
        _CACHE[stem] = list(parse_caffe_log(str(CORPUS / f"{stem}.log")))
    return _CACHE[stem]


def test_the_corpus_is_there_and_complete() -> None:
    assert sorted(p.name[:-4] for p in CORPUS.glob("*.log")) == sorted(COUNTS)


@pytest.mark.parametrize("stem", sorted(COUNTS))
def test_counts_match_the_readme(stem: str) -> None:
    n_loss, first, last, n_nan, n_tests, n_lr = COUNTS[stem]
    evs = events(stem)
    train = [e for e in evs if isinstance(e, TrainIteration)]
    losses = [e for e in train if e.loss is not None]
    assert len(losses) == n_loss
    if losses:
        assert (losses[0].iteration, losses[-1].iteration) == (first, last)
    assert sum(math.isnan(e.loss) for e in losses) == n_nan
    assert sum(isinstance(e, TestResult) for e in evs) == n_tests
    assert sum(e.lr is not None for e in train) == n_lr


def _csv_rows(stem: str, kind: str) -> list[dict[str, str]]:
    for name in (f"{stem}.{kind}.csv", f"{stem}.tolerant.{kind}.csv"):
        path = CORPUS / name
        if path.exists():
            with open(path, newline="") as f:
                return list(csv.DictReader(f))
    return []


@pytest.mark.parametrize("stem", sorted(COUNTS))
@pytest.mark.parametrize("kind", ["train", "test"])
def test_every_parse_log_row_is_reproduced(stem: str, kind: str) -> None:
    rows = _csv_rows(stem, kind)
    cls = TrainIteration if kind == "train" else TestResult
    mine = [e for e in events(stem) if isinstance(e, cls) and e.outputs]
    assert len(mine) >= len(rows)
    j = 0
    for row in rows:
        it = int(float(row["NumIters"]))
        while j < len(mine) and mine[j].iteration != it:
            j += 1
        assert j < len(mine), f"{kind} row at iteration {it} not found"
        for name, value in row.items():
            if name in ("NumIters", "Seconds", "LearningRate") or value == "":
                continue
            assert mine[j].outputs[name] == pytest.approx(float(value), rel=1e-12), (it, name)
        j += 1


_LR_LINE = re.compile(rb"Iteration (\d+), lr = ([-+0-9.e]+)")


@pytest.mark.parametrize("stem", sorted(COUNTS))
def test_learning_rate_is_the_one_printed_in_its_block(stem: str) -> None:
    printed = [float(m.group(2)) for m in _LR_LINE.finditer((CORPUS / f"{stem}.log").read_bytes())]
    mine = [e.lr for e in events(stem) if isinstance(e, TrainIteration) and e.lr is not None]
    assert mine == printed


def test_what_parse_log_misses_is_recorded() -> None:
    # the last loss line, without outputs (bobhuynh), and NVCaffe's iterations 0 and 1
    bob = [e for e in events("bobhuynh__Intel__caffe") if isinstance(e, TrainIteration)]
    assert bob[-1].iteration == 960 and bob[-1].loss is not None and not bob[-1].outputs
    nv = [e for e in events("NVIDIA__caffe__alexnet_fp32") if isinstance(e, TrainIteration)]
    assert [e.iteration for e in nv[:3]] == [0, 1, 2] and nv[0].loss == 6.9209
    assert nv[2].iter_per_s == 3.23941
    # NaN outputs kept (QiangXie: mbox_loss alternates 0 / nan)
    qx = [e for e in events("QiangXie__caffe-ssd-modify__VGG_VOC0712_SSD_300x300")
          if isinstance(e, TrainIteration)]
    assert any(math.isnan(e.outputs["mbox_loss"]) for e in qx)
    # names with spaces, colons and '%' (whksmo), with their loss weights
    wh = [e for e in events("whksmo__joint-hashing__log") if isinstance(e, TrainIteration)]
    assert "loss: 50%-fire-rate" in wh[0].outputs
    assert wh[0].iter_per_s is not None and math.isnan(wh[0].iter_per_s)  # '-nan iter/s'
    # multi-head weights (akompaniyets: '(* 0.3 = ...)')
    ak = [e for e in events("akompaniyets__Robotic-Inference__caffe_output")
          if isinstance(e, TestResult)]
    assert ak[0].weights["loss1/loss"] == 0.3 and "loss1/accuracy" in ak[0].outputs


def test_wrapped_console_copy_is_joined() -> None:
    evs = events("dreadlord1984__SSD_windows_caffe__0802")
    train = [e for e in evs if isinstance(e, TrainIteration)]
    assert train[0].outputs == {"mbox_loss_1": 44.1465} and train[0].weights == {"mbox_loss_1": 1}
    assert train[1].outputs == {"mbox_loss_1": 3.06204}
    assert isinstance(evs[-1], Finished)


def test_sessions_resumes_and_failures_are_marked() -> None:
    evs = events("ducha-aiki__caffenet-benchmark__caffenet128_lsuv_bs1_lr3.9063e-05")
    kinds = [type(e).__name__ for e in evs if not isinstance(e, (TrainIteration, TestResult))]
    assert kinds.count("Solving") == 3 and kinds.count("Resumed") == 2
    failed = [e for e in evs if isinstance(e, Failed)]
    assert len(failed) == 1 and failed[0].reason.startswith("Check failed: fd != -1")
    assert isinstance(evs[-1], Finished) and not evs[-1].stopped_early
    bob = events("bobhuynh__Intel__caffe")
    assert [e.stopped_early for e in bob if isinstance(e, Finished)] == [True, False]
    assert [e.path.rsplit("/", 1)[-1] for e in bob if isinstance(e, Resumed)] == [
        "snapshot_iter_10.solverstate"]
    nv = [e for e in events("NVIDIA__caffe__alexnet_fp32") if isinstance(e, Solving)]
    assert [e.net_name for e in nv] == ["AlexNet"]  # 8 GPU threads, one session


def test_year_comes_from_the_log_header() -> None:
    q = events("qiexing__caffe-regression__caffe")
    assert next(e for e in q if isinstance(e, TrainIteration)).time.year == 2015
    nv = events("NVIDIA__caffe__alexnet_fp32")  # 'This is NVCaffe 0.16.0 started at ... 2017'
    assert next(e for e in nv if isinstance(e, TrainIteration)).time.year == 2017


def test_truncated_file_gives_no_metrics() -> None:
    evs = events("amd__OpenCL-caffe__caffe.AMD-RESEARCH.yugao.log.INFO.20150906-133002.7951")
    assert [e for e in evs if isinstance(e, TrainIteration)] == []
    assert [e.outputs for e in evs if isinstance(e, TestResult)] == [{}]
    assert not any(isinstance(e, Finished) for e in evs)
