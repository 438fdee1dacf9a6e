"""``em mxnet`` end to end on corpus logs, and ``em mxnet run`` (MXNet itself not needed)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import em_core as em
from integrations.mxnet_log import BatchLog, MXNetLogParser

REPO = Path(__file__).resolve().parents[3]
CORPUS = REPO.parent / "shared" / "corpus" / "mxnet"


def env() -> dict[str, str]:
    e = dict(os.environ)
    e["PYTHONPATH"] = os.pathsep.join([str(REPO), e.get("PYTHONPATH", "")])
    return e


def em_mxnet(*args: str) -> list[str]:
    return [sys.executable, "-m", "integrations.mxnet_log", *args]


def the_run(tmp_path: Path) -> em.Run:
    (run_dir,) = list((tmp_path / "runs").iterdir())
    return em.load_run(run_dir)


def test_pipe_tornadomeet(tmp_path: Path) -> None:
    data = (CORPUS / "tornadomeet__ResNet__resnet-164.log").read_bytes()
    res = subprocess.run(em_mxnet("--name", "resnet"), input=data, capture_output=True,
                         env=env(), cwd=tmp_path, check=False)
    assert res.returncode == 0 and res.stdout == data
    run = the_run(tmp_path)
    assert run.status == em.Status.COMPLETE
    train, val = run.metrics["train"], run.metrics["val"]
    assert len(val) == 300 and val[-1]["sequence"]["epoch"] == 299
    batch = [r for r in train if "samples_per_sec" in r["value"]]
    assert len(batch) == 2100
    steps = [r["sequence"]["step"] for r in train]
    assert steps == sorted(steps)  # one axis across epochs (and across the restarts)
    assert batch[0]["value"] == {"accuracy": 0.19875, "samples_per_sec": 707.55}
    assert (run.hparams["lr"], run.hparams["depth"], run.hparams["kv_store"]) == (0.1, 164,
                                                                                  "device")


@pytest.mark.parametrize("log", sorted(p.name for p in CORPUS.glob("*.log")))
def test_every_corpus_log_through_em_mxnet(tmp_path: Path, log: str) -> None:
    """Byte for byte through ``em mxnet`` (as the ``em`` script runs it), kept as
    console.log, and recorded: every batch line the parser reads is a train record, on one
    step axis."""
    data = (CORPUS / log).read_bytes()
    res = subprocess.run([sys.executable, "-m", "em_core.cli", "mxnet", "--name", "c"],
                         input=data, capture_output=True, env=env(), cwd=tmp_path,
                         check=False)
    assert res.returncode == 0 and res.stdout == data, res.stderr.decode(errors="replace")
    run = the_run(tmp_path)
    assert (Path(run.local) / "console.log").read_bytes() == data
    batches = [e for e in MXNetLogParser().feed_bytes(data) if isinstance(e, BatchLog)]
    train = run.metrics.get("train", [])
    assert len([r for r in train if r["sequence"].get("epoch") is not None]) >= len(batches)
    steps = [r["sequence"]["step"] for r in train]
    assert steps == sorted(steps)
    assert run.status == em.Status.COMPLETE or "Traceback" in data.decode(errors="replace")


def test_pipe_gluoncv_hparams_from_namespace(tmp_path: Path) -> None:
    data = (CORPUS / "dmlc__web-data__cifar_resnet20_v1.log").read_bytes()
    subprocess.run(em_mxnet("--name", "cifar"), input=data, capture_output=True, env=env(),
                   cwd=tmp_path, check=True)
    run = the_run(tmp_path)
    assert run.hparams["model"] == "cifar_resnet20_v1" and run.hparams["batch_size"] == 128
    assert [r["sequence"]["step"] for r in run.metrics["val"]] == list(range(200))
    assert run.metrics["val"][-1]["value"] == {"val": 0.92}


def test_run_mode_crash_is_failed(tmp_path: Path) -> None:
    script = tmp_path / "train.py"
    script.write_text("import sys\n"
                      "print('INFO:root:Epoch[0] Batch [10]\\tSpeed: 5.0 samples/sec\\t"
                      "accuracy=0.5', flush=True)\n"
                      "raise ValueError('shapes do not match')\n")
    res = subprocess.run(em_mxnet("run", "--name", "c", "--", sys.executable, str(script)),
                         capture_output=True, env=env(), cwd=tmp_path, check=False)
    assert res.returncode == 1
    assert b"ValueError: shapes do not match" in res.stdout
    run = the_run(tmp_path)
    assert run.status == em.Status.FAILED
    assert run.to_dict()["error"]["message"] == "ValueError: shapes do not match"
    assert run.metrics["train"][0]["value"] == {"accuracy": 0.5, "samples_per_sec": 5.0}
