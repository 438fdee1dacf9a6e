"""Seed compatibility (issue 14): load_run/load_artifact errors are RuntimeErrors,
auto_upload without a login says so once and never raises, and em_core.cli imports no
integration."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import pytest

import em_core as em
from em_core import _uploader

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("load", [em.load_run, em.load_artifact])
def test_missing_local_path_is_ems_error_and_the_seeds_runtime_error(
        load: object, tmp_path: Path) -> None:
    missing = tmp_path / "no-such-run"
    missing.mkdir()  # a directory that is no run: the local branch, no server asked
    with pytest.raises(RuntimeError) as info:
        load(str(missing))  # type: ignore[operator]
    assert isinstance(info.value, em.NotARunError) and isinstance(info.value, em.EmError)
    assert isinstance(info.value, FileNotFoundError)
    assert str(missing) in str(info.value)


def test_missing_run_dir_is_a_runtime_error_too(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="no run directory"):
        em.load_run(str(tmp_path / "gone" / "./"))


def test_auto_upload_without_login_says_once_and_records_locally(
        caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch,
        tmp_path: Path) -> None:
    monkeypatch.setenv("EM_CONFIG", str(tmp_path / "no-config.yaml"))
    for var in ("EM_HOST", "EM_API_KEY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(_uploader, "_said_no_login", False)
    assert em.errors.strict_mode()  # not an error: even EM_STRICT=1 does not raise
    with caplog.at_level(logging.WARNING, logger="em"):
        runs = [em.create_run(name="offline", auto_upload=True) for _ in range(3)]
        for r in runs:
            r.log("train", {"loss": 1.0}, step=0)
            r.finish()
    said = [r.getMessage() for r in caplog.records if "auto_upload=True" in r.getMessage()]
    assert len(said) == 1
    assert "recorded locally" in said[0] and "em upload" in said[0]
    assert all(r.status is em.Status.COMPLETE for r in runs)


def test_the_cli_imports_no_integration_and_no_server() -> None:
    code = ("import sys, em_core.cli, em_core._entrypoints, em_core._commands, "
            "em_core._remote_commands; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('integrations', 'em_server')))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                         text=True, check=True).stdout.strip()
    assert out == "[]"
    text = (REPO / "em_core" / "cli.py").read_text()
    assert "integrations" not in text.split('"""', 2)[2]  # no module named outside the doc


def test_subcommands_come_from_the_entry_points(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    dist = tmp_path / "em_fake-1.0.dist-info"
    dist.mkdir()
    (dist / "entry_points.txt").write_text(
        "[console_scripts]\nx = y:z\n\n[em.commands]\nhello = em_fake_cmd:main [extra]\n")
    (tmp_path / "em_fake_cmd.py").write_text(
        "def main(argv):\n    print('hello', *argv)\n    return 3\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    from em_core import _entrypoints, cli

    assert _entrypoints.find_commands()["hello"] == "em_fake_cmd:main"
    assert cli.main(["hello", "a"]) == 3


def test_hparams_update_takes_the_seeds_signature_exactly(tmp_path: Path) -> None:
    """Item 1 (done before issue 14's other items): positional or by keyword, the seed's
    argument names never end up as hyperparameter keys."""
    run = em.create_run(name="hp")
    run.hparams.update({"lr": 0.1, "optim": {"m": 0.9}})
    run.hparams.update({"lr": 0.5, "optim": {"n": 1}}, False)
    run.hparams.update(new_params={"lr": 0.7, "wd": 0.1}, override=False)
    run.hparams.update(new_params={"wd": 0.2}, override=True)
    assert run.hparams.as_dict() == {"lr": 0.1, "optim": {"m": 0.9, "n": 1}, "wd": 0.2}
    run.finish()
    on_disk = em.load_run(run.local).hparams.as_dict()
    assert "new_params" not in on_disk and "override" not in on_disk
