"""``em mxnet``: every batch report gets its own step, in log order, when a log holds a
restarted script, false starts, or GluonCV ``[Epoch N][Batch k]`` lines; a restart is marked
in the run (``log_parts``: where each part begins and its hyperparameters)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import em_core as em
from integrations.mxnet_log import MXNetLogParser, MXNetRecorder
from integrations.mxnet_log.events import BatchLog, Rewind

pytestmark = pytest.mark.usefixtures("block_path")  # C and regex: see conftest.py

REPO = Path(__file__).resolve().parents[3]
CORPUS = REPO.parent / "shared" / "corpus" / "mxnet"
TORNADO = CORPUS / "tornadomeet__ResNet__resnet-164.log"
DENSENET = CORPUS / "coderzbx__densenet.mxnet__log-densenet-kd-169-train_0307.log"


def env() -> dict[str, str]:
    e = dict(os.environ)
    e["PYTHONPATH"] = os.pathsep.join([str(REPO), e.get("PYTHONPATH", "")])
    return e


def em_mxnet(log: bytes, tmp_path: Path) -> em.Run:
    res = subprocess.run([sys.executable, "-m", "em_core.cli", "mxnet", "--name", "r"],
                         input=log, capture_output=True, env=env(), cwd=tmp_path, check=False)
    assert res.returncode == 0 and res.stdout == log, res.stderr.decode(errors="replace")
    (run_dir,) = list((tmp_path / "runs").iterdir())
    return em.load_run(run_dir)


def lines_of(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines(keepends=True)


def batch_steps(run: em.Run) -> list[int]:
    return [r["sequence"]["step"] for r in run.metrics["train"]
            if "samples_per_sec" in r["value"]]


def test_a_script_restarted_into_the_same_log(tmp_path: Path) -> None:
    """tornadomeet's log up to epoch 2, then the script started again (lr halved) and its
    epochs 0 and 1 trained again: no record of the second part lands on a step of the first."""
    lines = lines_of(TORNADO)
    cut = next(i for i, line in enumerate(lines) if b"Epoch[2] Batch" in line)
    again = next(i for i, line in enumerate(lines) if b"Epoch[1] Validation" in line) + 1
    second = [lines[0].replace(b"lr=0.1,", b"lr=0.05,"), *lines[1:again]]
    log = b"".join(lines[:cut] + second)
    run = em_mxnet(log, tmp_path)
    steps = batch_steps(run)
    n_batches = sum(b"Batch [" in line for line in lines[:cut] + second)
    assert len(steps) == n_batches
    assert steps == sorted(set(steps))  # each its own step, in log order
    first_part_end = max(s for s in steps[:n_batches // 2])
    parts = run.hparams["log_parts"]
    assert [(p["line"], p["trained"]) for p in parts] == [(1, True), (cut + 1, True)]
    assert parts[1]["step"] == first_part_end + 1
    assert (parts[0]["hparams"]["lr"], parts[1]["hparams"]["lr"]) == (0.1, 0.05)
    assert run.hparams["lr"] == 0.05  # the last part's values, as before
    val = [(r["sequence"]["epoch"], r["sequence"]["step"]) for r in run.metrics["val"]]
    assert [e for e, _ in val] == [0, 1, 0, 1] and [s for _, s in val] == sorted(
        {s for _, s in val})


def test_false_starts_are_parts_of_their_own(tmp_path: Path) -> None:
    """densenet's log: three Namespace/'Start training' pairs, only the third trains."""
    run = em_mxnet(DENSENET.read_bytes(), tmp_path)
    parts = run.hparams["log_parts"]
    assert [(p["line"], p["step"], p["trained"], p["hparams"]["batch_size"])
            for p in parts] == [(1, 0, False, 512), (3, 0, False, 256), (5, 0, True, 128)]
    assert run.hparams["batch_size"] == 128
    steps = batch_steps(run)
    assert steps == sorted(set(steps)) and steps[0] == 50


def test_a_false_start_that_logged_batches(tmp_path: Path) -> None:
    """A first start that printed two batch reports of epoch 0 before it died, then the real
    start: its epoch 0 gets new steps, after the false start's."""
    lines = lines_of(DENSENET)
    false_start = lines[0:2] + lines[6:8]  # Namespace, Start training, Batch [50], [100]
    log = b"".join(false_start + lines[4:])
    run = em_mxnet(log, tmp_path)
    steps = batch_steps(run)
    assert steps[:4] == [50, 100, 151, 201]  # the real epoch 0 starts after step 100
    assert steps == sorted(set(steps))
    parts = run.hparams["log_parts"]
    assert [(p["line"], p["step"], p["trained"]) for p in parts] == [
        (1, 0, True), (5, 101, True)]


def test_reports_that_go_back_without_a_namespace_start_a_part() -> None:
    parser = MXNetLogParser()
    events = parser.feed_bytes(b"Epoch[0] Batch [50]\tSpeed: 1.0 samples/sec\taccuracy=0.1\n"
                               b"Epoch[0] Batch [100]\tSpeed: 1.0 samples/sec\taccuracy=0.2\n"
                               b"Epoch[0] Batch [50]\tSpeed: 1.0 samples/sec\taccuracy=0.1\n")
    assert [type(e) for e in events] == [BatchLog, BatchLog, Rewind, BatchLog]
    assert events[2] == Rewind(3, 0, 50)


def test_one_batch_on_two_lines_shares_its_step(tmp_path: Path) -> None:
    """Horovod scripts print a batch's loss and its metrics apart (resnest14): one step."""
    log = (b"[1,0]<stderr>:INFO:root:Epoch[0] Batch[100] Loss[6.968]\n"
           b"[1,0]<stderr>:INFO:root:Epoch[0] Rank[0] Batch[100]\trmse=0.026110\tlr=0.006390\n"
           b"[1,0]<stderr>:INFO:root:Epoch[0] Batch[200] Loss[6.902]\n"
           b"[1,0]<stderr>:INFO:root:Epoch[0] Rank[0] Batch[200]\trmse=0.025904\tlr=0.012780\n")
    run = em.create_run(name="hvd")
    rec = MXNetRecorder(run)
    rec.feed(log)
    rec.finish()
    assert [(r["sequence"]["step"], sorted(r["value"])) for r in run.metrics["train"]] == [
        (100, ["loss"]), (100, ["lr", "rmse"]), (200, ["loss"]), (200, ["lr", "rmse"])]
    assert "log_parts" not in run.hparams


GLUONCV_SSD = b"""INFO:root:Namespace(batch_size=32, lr=0.001, network='vgg16_atrous')
INFO:root:Start training from [Epoch 0]
INFO:root:[Epoch 0][Batch 99], Speed: 24.612 samples/sec, CrossEntropy=6.331, SmoothL1=2.578
INFO:root:[Epoch 0][Batch 199], Speed: 24.998 samples/sec, CrossEntropy=5.482, SmoothL1=2.313
INFO:root:[Epoch 0] Training cost: 1032.455, CrossEntropy=5.201, SmoothL1=2.207
INFO:root:[Epoch 0] Validation: mAP=0.1532
INFO:root:[Epoch 1][Batch 99], Speed: 25.101 samples/sec, CrossEntropy=4.012, SmoothL1=1.921
INFO:root:[Epoch 1][Batch 199], Speed: 25.003 samples/sec, CrossEntropy=3.877, SmoothL1=1.880
"""
GLUONCV_RCNN = (b"INFO:root:[Epoch 0][Batch 99], Speed: 3.456 samples/sec, RPN_Conf=0.285,"
                b"RPN_SmoothL1=0.077,RCNN_CrossEntropy=0.773,RCNN_SmoothL1=0.447,\n"
                b"INFO:root:[Epoch 0][Batch 199], Speed: 3.501 samples/sec, LR: 1.000E-03, "
                b"RPN_Conf=0.251,RPN_SmoothL1=0.071,RCNN_CrossEntropy=0.701,"
                b"RCNN_SmoothL1=0.431,\n")


def test_gluoncv_batch_lines_get_a_step_each(tmp_path: Path) -> None:
    run = em_mxnet(GLUONCV_SSD, tmp_path)
    batches = [r for r in run.metrics["train"] if "samples_per_sec" in r["value"]]
    assert [(r["sequence"]["epoch"], r["sequence"]["step"]) for r in batches] == [
        (0, 99), (0, 199), (1, 299), (1, 399)]
    assert batches[0]["value"] == {"CrossEntropy": 6.331, "SmoothL1": 2.578,
                                   "samples_per_sec": 24.612}
    assert run.hparams["network"] == "vgg16_atrous" and "log_parts" not in run.hparams


def test_gluoncv_rcnn_batch_lines() -> None:
    (first, second) = MXNetLogParser().feed_bytes(GLUONCV_RCNN)
    assert first == BatchLog(0, 99, {"RPN_Conf": 0.285, "RPN_SmoothL1": 0.077,
                                     "RCNN_CrossEntropy": 0.773, "RCNN_SmoothL1": 0.447}, 3.456)
    assert (second.batch, second.metrics["lr"], second.metrics["RCNN_SmoothL1"]) == (
        199, 0.001, 0.431)
