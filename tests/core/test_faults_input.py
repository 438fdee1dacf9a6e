"""Hostile input at set-up and in hyperparameters (issue 11: items 3, 4, 5, 16, 17)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

import em_core as em

REPO = Path(__file__).resolve().parents[2]


def _env(tmp_path: Path) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO), "EM_RUN_PARENT_DIR": str(tmp_path / "runs"),
            "EM_STRICT": "1"}


# ------------------------------------------------------------ 3: non-UTF-8 argv and cwd
def test_non_utf8_argv_and_working_directory_make_a_readable_run(tmp_path: Path) -> None:
    cwd = os.path.join(os.fsencode(tmp_path), b"\xff\xfe-dir")
    os.mkdir(cwd)
    code = (b"import em_core as em\nr = em.create_run(name='nonutf8')\n"
            b"r.log('train', {'loss': 1.0}, step=0)\nr.finish()\n")
    proc = subprocess.run([sys.executable, b"-c", code, b"--data=/d/\xff\xfe"], cwd=cwd,
                          env=_env(tmp_path), capture_output=True, check=False)
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    (run_dir,) = (tmp_path / "runs").iterdir()
    (run_dir / "run.json").read_bytes().decode("utf-8")  # valid UTF-8 on disk
    run = em.load_run(run_dir)
    assert run.status is em.Status.COMPLETE
    assert run.platform["command"][-1] == "--data=/d/\udcff\udcfe"  # escaped, not lost
    assert run.platform["cwd"].endswith("\udcff\udcfe-dir")
    show = subprocess.run([sys.executable, "-m", "em_core.cli", "show", str(run_dir)],
                          env=_env(tmp_path), capture_output=True, text=True, check=False)
    assert show.returncode == 0 and "Traceback" not in show.stderr
    assert "nonutf8" in show.stdout


# ------------------------------------------------------------ 4: a bad value spoils nothing
@pytest.mark.parametrize("bad", [10**5000, "lone \udcff surrogate"], ids=["huge-int", "surrogate"])
def test_one_bad_hyperparameter_never_spoils_later_saves(run: em.Run, bad: object) -> None:
    run.hparams["lr"] = 0.1
    try:
        run.hparams["bad"] = bad
    except ValueError as e:
        assert "bad" in str(e)  # refused up front, naming the key
    run.hparams.update({"momentum": 0.9})
    run.finish()
    back = em.load_run(run.local)
    assert back.status is em.Status.COMPLETE
    assert back.hparams["lr"] == 0.1 and back.hparams["momentum"] == 0.9
    assert back.hparams.get("bad") in (None, bad)


def test_a_save_that_fails_rolls_the_change_back(run: em.Run) -> None:
    run.hparams["kept"] = 1
    real = run._save

    def failing_save() -> None:
        raise OSError(28, "No space left on device")

    run._save = failing_save  # type: ignore[method-assign]
    with pytest.raises(OSError):
        run.hparams.update({"kept": 2, "new": {"a": 1}})
    with pytest.raises(OSError):
        run.hparams["other"] = 3
    run._save = real  # type: ignore[method-assign]
    assert run.hparams.as_dict() == {"kept": 1}
    run.hparams["after"] = 4
    run.finish()
    assert em.load_run(run.local).hparams.as_dict() == {"kept": 1, "after": 4}


def test_cycles_are_refused_clearly(run: em.Run) -> None:
    cyclic: dict[str, object] = {"a": 1}
    cyclic["self"] = cyclic
    with pytest.raises(ValueError, match="cycle"):
        em.create_run(name="cyclic", hparams=cyclic)
    with pytest.raises(ValueError, match="cycle"):
        run.hparams["c"] = cyclic
    with pytest.raises(ValueError, match="cycle"):
        run.hparams.update(cyclic)
    run.hparams["fine"] = 1  # nothing half-written
    assert run.hparams.as_dict() == {"fine": 1}


def test_update_takes_the_seeds_keyword(run: em.Run) -> None:
    run.hparams.update(new_params={"lr": 0.1, "optim": {"m": 0.9}})
    run.hparams.update(new_params={"lr": 0.5, "optim": {"n": 1}}, override=False)
    assert run.hparams.as_dict() == {"lr": 0.1, "optim": {"m": 0.9, "n": 1}}


# ------------------------------------------------------------ 5: threads
def test_threads_assigning_hyperparameters_at_once(run: em.Run) -> None:
    errors: list[BaseException] = []

    def assign(k: int) -> None:
        try:
            for i in range(150):
                run.hparams[f"t{k}_{i}"] = i
                if i % 50 == 0:
                    run.hparams.update({f"u{k}_{i}": {"x": i}})
                    run.hparams.as_dict()
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=assign, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    run.finish()
    saved = json.loads((Path(run.local) / "run.json").read_text())["hparams"]
    assert all(saved[f"t{k}_{i}"] == i for k in range(8) for i in range(150))
    assert len(saved) == 8 * 150 + 8 * 3


# ------------------------------------------------------------ 16: YAML alias bombs
def test_billion_laughs_config_is_refused(tmp_path: Path) -> None:
    levels = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i, name in enumerate("bcdefghi"):
        prev = "abcdefghi"[i]
        levels.append(f"{name}: &{name} [" + ",".join([f"*{prev}"] * 9) + "]")
    cfg = tmp_path / "bomb.yaml"
    cfg.write_text("hparams:\n" + "\n".join("  " + line for line in levels) + "\n")
    with pytest.raises(ValueError, match="bomb.yaml"):
        em.create_run(config_path=cfg)
    assert not (tmp_path / "runs").exists() or not list((tmp_path / "runs").iterdir())


def test_recursive_anchor_is_refused_and_small_anchors_work(tmp_path: Path) -> None:
    loop = tmp_path / "loop.yaml"
    loop.write_text("hparams:\n  a: &x [1, *x]\n")
    with pytest.raises(ValueError, match="loop.yaml"):
        em.create_run(config_path=loop)
    ok = tmp_path / "ok.yaml"
    ok.write_text("hparams:\n  base: &b {lr: 0.1}\n  copy: *b\n")
    run = em.create_run(config_path=ok)
    assert run.hparams["copy"]["lr"] == 0.1
    run.finish()


# ------------------------------------------------------------ 17: set-up errors
def test_a_name_too_long_in_bytes_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="bytes"):
        em.create_run(name="é" * 150)  # 150 characters, 300 bytes


def test_config_path_a_directory_or_not_utf8(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="directory"):
        em.create_run(config_path=tmp_path)
    bad = tmp_path / "latin1.yaml"
    bad.write_bytes(b"name: caf\xe9\n")
    with pytest.raises(ValueError, match=r"latin1\.yaml.*UTF-8|not UTF-8"):
        em.create_run(config_path=bad)


def test_obj_path_with_a_colon_is_a_file_name(tmp_path: Path) -> None:
    src = tmp_path / "x.txt"
    src.write_text("x")
    art = em.create_artifact("colon")
    assert art.add_file(src, obj_path="a:b.txt") == "a:b.txt"
    for drive in ("C:/x.txt", "C:\\x.txt", "/abs.txt"):
        with pytest.raises(ValueError, match="absolute"):
            art.add_file(src, obj_path=drive)
