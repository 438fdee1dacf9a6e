"""The main job's example, run as a user would, then read back from disk."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import em_core as em

REPO = Path(__file__).resolve().parents[2]


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=120, check=False)


def test_numpy_mlp_records_a_complete_run(tmp_path: Path) -> None:
    epochs, log_every = 3, 5
    proc = _run([str(REPO / "examples" / "numpy_mlp.py"), "--epochs", str(epochs),
                 "--log-every", str(log_every), "--name", "mlp"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    (run_dir,) = (tmp_path / "runs").iterdir()
    run = em.load_run(run_dir)
    assert run.status is em.Status.COMPLETE
    assert run.hparams["epochs"] == epochs and run.hparams.get("model.hidden") == 64
    val = run.metrics["val"]
    assert [p["sequence"]["epoch"] for p in val] == list(range(1, epochs + 1))
    train = run.metrics["train"]
    assert all(p["sequence"]["step"] % log_every == 0 for p in train)
    assert train[-1]["value"]["loss"] < train[0]["value"]["loss"]  # it learned something
    assert set(run.metrics["test"][0]["value"]) == {"loss", "accuracy"}
    (out,) = run.associations["outputs"]
    art = em.load_artifact(out["local"])
    assert list(art.objects) == ["model/mlp.npz"]
    assert art.associations["output_of"][0]["alternative_name"] == run.alternative_name

    shown = _run(["-m", "em_core.cli", "show", "mlp"], tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert "Complete" in shown.stdout and "val    accuracy" in shown.stdout

    listed = _run(["-m", "em_core.cli", "ls"], tmp_path)
    assert run.alternative_name in listed.stdout and "test/accuracy=" in listed.stdout


def test_export_csv_has_one_row_per_value(tmp_path: Path) -> None:
    proc = _run([str(REPO / "examples" / "numpy_mlp.py"), "--epochs", "1", "--name", "x"],
                tmp_path)
    assert proc.returncode == 0, proc.stderr
    (run_dir,) = (tmp_path / "runs").iterdir()
    exported = _run(["-m", "em_core.cli", "export", str(run_dir), "--format", "csv"], tmp_path)
    lines = exported.stdout.splitlines()
    assert lines[0] == "type,name,step,epoch,timestamp,value"
    records = em.load_run(run_dir).metric_records()
    assert len(lines) - 1 == sum(len(r.values) for r in records)
