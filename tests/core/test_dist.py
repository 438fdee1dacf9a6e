"""Distributed jobs: rank and world size from launchers' environments; rank > 0 writes
nothing unless EM_ALL_RANKS=1."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

import em_core as em
from em_core.dist import DistInfo

pytestmark = pytest.mark.usefixtures("fast_platform")


def _tf(cluster: dict[str, list[str]], task_type: str, index: int) -> dict[str, str]:
    return {"TF_CONFIG": json.dumps({"cluster": cluster,
                                     "task": {"type": task_type, "index": index}})}


WORKERS = ["w0:2222", "w1:2222", "w2:2222"]


@pytest.mark.parametrize(("env", "expected"), [
    ({}, DistInfo(0, 1, None, None)),
    ({"RANK": "2", "WORLD_SIZE": "4", "LOCAL_RANK": "0"},
     DistInfo(2, 4, 0, "torch.distributed")),
    ({"RANK": "3", "WORLD_SIZE": "8", "LOCAL_RANK": "3", "TORCHELASTIC_RUN_ID": "job1"},
     DistInfo(3, 8, 3, "torchrun")),
    ({"OMPI_COMM_WORLD_RANK": "1", "OMPI_COMM_WORLD_SIZE": "2",
      "OMPI_COMM_WORLD_LOCAL_RANK": "1"}, DistInfo(1, 2, 1, "openmpi")),
    ({"HOROVOD_RANK": "5", "HOROVOD_SIZE": "6", "HOROVOD_LOCAL_RANK": "1"},
     DistInfo(5, 6, 1, "horovod")),
    ({"PMI_RANK": "0", "PMI_SIZE": "3"}, DistInfo(0, 3, None, "mpich")),
    ({"SLURM_PROCID": "7", "SLURM_NTASKS": "16", "SLURM_LOCALID": "3"},
     DistInfo(7, 16, 3, "slurm")),
    # torchrun inside a SLURM allocation: RANK is the right one
    ({"SLURM_PROCID": "0", "SLURM_NTASKS": "1", "RANK": "1", "WORLD_SIZE": "2"},
     DistInfo(1, 2, None, "torch.distributed")),
    # Horovod runs on Open MPI: Horovod's own variables win
    ({"OMPI_COMM_WORLD_RANK": "1", "HOROVOD_RANK": "1", "HOROVOD_SIZE": "2",
      "OMPI_COMM_WORLD_SIZE": "2"}, DistInfo(1, 2, None, "horovod")),
    # Lightning's launcher: LOCAL_RANK (and NODE_RANK) without RANK
    ({"LOCAL_RANK": "1", "WORLD_SIZE": "2"}, DistInfo(1, 2, 1, "local_rank")),
    ({"LOCAL_RANK": "0", "NODE_RANK": "1", "LOCAL_WORLD_SIZE": "2", "WORLD_SIZE": "4"},
     DistInfo(2, 4, 0, "local_rank")),
    ({"LOCAL_RANK": "0", "NODE_RANK": "0", "WORLD_SIZE": "4"}, DistInfo(0, 4, 0, "local_rank")),
    ({"RANK": ""}, DistInfo(0, 1, None, None)),  # empty: not set
    ({"RANK": "abc"}, DistInfo(0, 1, None, None)),  # garbage: ignored
    (_tf({"chief": ["c:2222"], "worker": WORKERS}, "chief", 0),
     DistInfo(0, 4, None, "tf_config")),
    (_tf({"chief": ["c:2222"], "worker": WORKERS}, "worker", 0),
     DistInfo(1, 4, None, "tf_config")),
    (_tf({"chief": ["c:2222"], "worker": WORKERS}, "worker", 2),
     DistInfo(3, 4, None, "tf_config")),
    (_tf({"worker": WORKERS}, "worker", 0), DistInfo(0, 3, None, "tf_config")),
    (_tf({"worker": WORKERS}, "worker", 1), DistInfo(1, 3, None, "tf_config")),
    (_tf({"worker": WORKERS, "ps": ["p:2222"]}, "ps", 0), DistInfo(-1, 3, None, "tf_config")),
    (_tf({"worker": WORKERS, "evaluator": ["e:1"]}, "evaluator", 0),
     DistInfo(-1, 3, None, "tf_config")),
    ({"TF_CONFIG": "not json"}, DistInfo(0, 1, None, None)),
    ({"TF_CONFIG": json.dumps({"cluster": {}, "task": {}})}, DistInfo(0, 1, None, None)),
])
def test_dist_info(env: dict[str, str], expected: DistInfo,
                   monkeypatch: pytest.MonkeyPatch) -> None:
    assert em.dist_info(env) == expected
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    assert em.dist_info() == expected  # read from os.environ too
    assert em.dist_info().is_chief == (expected.rank == 0)


def _calls_on(run: Any, tmp_path: Path) -> None:
    """Every call of Run, as a training script would make them."""
    run.hparams["lr"] = 0.1
    run.hparams.update({"optim": {"momentum": 0.9}})
    run.hparams.optim.momentum = 0.5
    run.hparams.parse()
    run.log("train", {"loss": 0.5}, step=0)
    run.log("whatever", {"x": "not even a number"}, step=-1)  # records nothing, checks nothing
    run.flush()
    art = em.create_artifact("model")
    run.mark_input(art)
    run.mark_output(art)
    assert isinstance(run.to_dict(), dict)
    assert run.metrics == {}
    run.finish()
    run.finish()


@pytest.mark.parametrize("env", [
    {"RANK": "1", "WORLD_SIZE": "2"},
    {"OMPI_COMM_WORLD_RANK": "3"},
    {"HOROVOD_RANK": "1"},
    {"PMI_RANK": "2"},
    {"SLURM_PROCID": "1"},
    {"LOCAL_RANK": "1"},
    _tf({"chief": ["c:1"], "worker": WORKERS}, "worker", 0),
    _tf({"worker": WORKERS, "ps": ["p:1"]}, "ps", 0),
])
def test_rank_above_zero_gets_noop_run(env: dict[str, str], tmp_path: Path,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    run = em.create_run(name="job", hparams={"bs": 32}, labels=["a"], folder="team",
                        conflict_strategy="skip")
    assert isinstance(run, em.NoOpRun)
    assert not isinstance(run, em.Run)
    assert run.name == "job" and run.labels == ["a"]
    assert run.upload_options == {"auto_upload": False, "folder": "team",
                                  "make_folder": False, "conflict_strategy": "skip"}
    run.resume()
    assert run.hparams["bs"] == 32
    _calls_on(run, tmp_path)
    with em.create_run(name="ctx") as r2:
        r2.log("train", {"a": 1}, step=0)
    assert not (tmp_path / "runs").exists() or list((tmp_path / "runs").iterdir()) == []
    assert "does not record" in repr(run)


def test_noop_run_validates_set_up_arguments(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RANK", "1")
    with pytest.raises(ValueError, match="'merge'"):
        em.create_run(conflict_strategy="merge")
    with pytest.raises(ValueError, match="'a/b'"):
        em.create_run(name="a/b")


def test_noop_run_has_every_public_member_of_run() -> None:
    missing = [n for n in dir(em.Run) if not n.startswith("_") and not hasattr(em.NoOpRun(), n)]
    assert missing == []


def test_rank_zero_records(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "2")
    run = em.create_run(name="job")
    assert isinstance(run, em.Run)
    run.finish()
    meta = json.loads(Path(run.local, "run.json").read_text(encoding="utf-8"))
    assert meta["process"]["rank"] == 0 and meta["process"]["world_size"] == 2


def test_all_ranks_opt_out(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("EM_ALL_RANKS", "1")
    run = em.create_run(name="job", labels=["x"])
    assert isinstance(run, em.Run)
    run.log("train", {"loss": 1.0}, step=0)
    run.finish()
    assert run.name == "job-rank1"
    assert re.match(r"^job-rank1_\d{6}_\d{6}_[a-z0-9]{6}$", run.alternative_name)
    assert run.labels == ["x", "rank:1"]
    (only,) = (tmp_path / "runs").iterdir()
    back = em.load_run(only)
    assert back.name == "job-rank1"
    assert back.metrics["train"][0]["value"] == {"loss": 1.0}


@pytest.mark.parametrize("value", ["0", "", "no"])
def test_all_ranks_off_values(value: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("EM_ALL_RANKS", value)
    assert isinstance(em.create_run(), em.NoOpRun)
