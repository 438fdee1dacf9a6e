"""Plain PyTorch DDP on CPU (gloo, 2 processes): torchrun and mp.spawn each give one run."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import em_core as em

REPO = Path(__file__).resolve().parents[2]


def _free_port() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return str(s.getsockname()[1])


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300, check=False)


def test_seed_style_script_under_torchrun(tmp_path: Path) -> None:
    epochs, log_every = 2, 5
    proc = _run(["-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
                 _free_port(), str(REPO / "examples" / "torch_ddp.py"), "--epochs",
                 str(epochs), "--log-every", str(log_every)], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (run_dir,) = (tmp_path / "runs").iterdir()  # exactly one run for the job
    run = em.load_run(run_dir)
    assert run.status is em.Status.COMPLETE
    torch_view = run.hparams.get("distributed.torch")
    assert torch_view["kind"] == "DistributedDataParallel"
    assert (torch_view["world_size"], torch_view["backend"]) == (2, "gloo")
    assert torch_view["launcher"] == "torchrun"
    # 480 samples / 2 ranks / batch 16 = 15 steps per epoch on each rank.
    steps = [p["sequence"]["step"] for p in run.metrics["train"]]
    assert steps == list(range(log_every, 15 * epochs + 1, log_every))
    assert [p["sequence"]["epoch"] for p in run.metrics["val"]] == [1, 2]
    assert len(run.metrics["test"]) == 1
    (out,) = run.associations["outputs"]
    assert list(em.load_artifact(out["local"]).objects) == ["model/model.pt"]


def test_mp_spawn_every_rank_calls_em(tmp_path: Path) -> None:
    proc = _run([str(Path(__file__).with_name("mp_spawn_job.py")), _free_port()], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (run_dir,) = (tmp_path / "runs").iterdir()
    run = em.load_run(run_dir)
    assert run.status is em.Status.COMPLETE
    assert run.hparams.get("distributed.torch.world_size") == 2
    assert [p["sequence"]["step"] for p in run.metrics["train"]] == [1, 2, 3, 4]
