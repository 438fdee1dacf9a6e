"""Readers under faults (issue 11): `em ls`/`show`/`export` on damaged, hostile, huge or
half-created runs."""

from __future__ import annotations

import csv
import io
import json
import math
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import em_core as em
from em_core import _commands
from em_core._metricfile import read_records, summarize

REPO = Path(__file__).resolve().parents[2]


def _em(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    rc = _commands.run_builtin(args, [])
    out, err = capsys.readouterr()
    return rc, out, err


def _em_proc(args: list[str]) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.run([sys.executable, "-m", "em_core.cli", *args], env=env,
                          capture_output=True, text=True, timeout=60, check=False)


def _make_run(name: str, n: int = 20, **log: float) -> em.Run:
    run = em.create_run(name=name, hparams={"lr": 0.1})
    assert isinstance(run, em.Run)
    for i in range(n):
        run.log("train", {"loss": 1.0 / (i + 1), **log}, step=i, epoch=i // 10)
    run.log("val", {"acc": 0.5}, step=n)
    run.finish()
    return run


def _runs_dir() -> Path:
    return Path(os.environ["EM_RUN_PARENT_DIR"])


# ------------------------------------------------------------------ 20: damaged runs
def test_flipped_schema_byte_gives_an_unreadable_row_not_a_crash(
        capsys: pytest.CaptureFixture[str]) -> None:
    good, bad = _make_run("good"), _make_run("bad")
    path = Path(str(bad.local)) / "metrics.bin"
    data = bytearray(path.read_bytes())
    i = data.index(b'"kinds": "d"') + len(b'"kinds": "')
    data[i] = ord("z")  # a struct code that does not exist: struct.error before the fix
    path.write_bytes(bytes(data))
    rc, out, _ = _em(["ls"], capsys)
    assert rc == 0
    assert str(good.alternative_name) in out and "train/loss=0.05" in out
    assert str(bad.alternative_name) in out


@pytest.mark.parametrize("meta_edit", [
    lambda m: m.pop("start_timestamp"),
    lambda m: m.update(labels=None),
    lambda m: m.update(status="Exploded"),
    lambda m: m.update(hparams=[1, 2]),
])
def test_crafted_run_json_is_reported_and_others_listed(
        capsys: pytest.CaptureFixture[str], meta_edit: object) -> None:
    good, bad = _make_run("good"), _make_run("bad")
    meta_path = Path(str(bad.local)) / "run.json"
    meta = json.loads(meta_path.read_text())
    meta_edit(meta)  # type: ignore[operator]
    meta_path.write_text(json.dumps(meta))
    rc, out, _ = _em(["ls"], capsys)
    assert rc == 0 and str(good.alternative_name) in out
    (row,) = [line for line in out.splitlines() if Path(str(bad.local)).name in line]
    assert "unreadable" in row
    rc, _, err = _em(["show", str(bad.local)], capsys)
    assert rc == 2 and "Traceback" not in err and "damaged" in err


def test_deeply_nested_run_json_is_unreadable_not_a_recursion_error(
        capsys: pytest.CaptureFixture[str]) -> None:
    good, bad = _make_run("good"), _make_run("bad")
    (Path(str(bad.local)) / "run.json").write_text("[" * 100_000 + "]" * 100_000)
    rc, out, _ = _em(["ls"], capsys)
    assert rc == 0 and str(good.alternative_name) in out
    assert "unreadable" in out
    proc = _em_proc(["show", str(bad.local)])
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and "damaged" in proc.stderr


def test_fuzzed_runs_never_break_em_ls(capsys: pytest.CaptureFixture[str]) -> None:
    good = _make_run("good")
    victim = _make_run("victim", n=30)
    vdir = Path(str(victim.local))
    pristine = {f: (vdir / f).read_bytes() for f in ("metrics.bin", "run.json")}
    rng = random.Random(1234)
    for trial in range(150):
        for f, data in pristine.items():
            (vdir / f).write_bytes(data)
        target = rng.choice(list(pristine))
        data = bytearray(pristine[target])
        if rng.random() < 0.3:
            data = data[:rng.randrange(len(data))]
        else:
            for _ in range(rng.randint(1, 4)):
                data[rng.randrange(len(data))] = rng.randrange(256)
        (vdir / target).write_bytes(bytes(data))
        rc, out, err = _em(["ls"], capsys)
        assert rc == 0, (trial, err)
        assert str(good.alternative_name) in out, trial
        assert vdir.name in out or str(victim.alternative_name) in out, trial
        rc, _, err = _em(["show", str(vdir)], capsys)
        assert rc in (0, 2) and "Traceback" not in err, (trial, err)


# ------------------------------------------------------------------ 21: escapes
def test_control_characters_in_names_are_printed_escaped(
        capsys: pytest.CaptureFixture[str]) -> None:
    evil = "x\x1b[2J\x1b]0;pwned\x07\r\x9b1m\u202e"
    run = em.create_run(name="evil", description=evil, hparams={evil: evil})
    assert isinstance(run, em.Run)
    run.log("train", {evil: 1.0}, step=0)
    run.finish()
    # names em itself refuses can still come from a run.json written by other software
    meta_path = Path(str(run.local)) / "run.json"
    meta = json.loads(meta_path.read_text())
    meta["alternative_name"] = meta["name"] = evil
    meta_path.write_text(json.dumps(meta))
    for args in (["ls"], ["show", str(run.local)]):
        rc, out, _ = _em(args, capsys)
        assert rc == 0
        assert not any(c in out for c in "\x1b\x07\r\x9b\u202e"), args
        assert "\\x1b[2J" in out and "\\r" in out and "\\x9b" in out, args


# ------------------------------------------------------------------ 11d: half-made runs
def test_directory_without_run_json_is_listed_as_incomplete(
        capsys: pytest.CaptureFixture[str]) -> None:
    good = _make_run("good")
    half = _runs_dir() / "killed_260101_000000_abcdef"
    half.mkdir()
    rc, out, _ = _em(["ls"], capsys)
    assert rc == 0 and str(good.alternative_name) in out
    (row,) = [line for line in out.splitlines() if half.name in line]
    assert "incomplete (no run.json)" in row


def test_killed_between_mkdir_and_first_write_is_listed(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    # A real process SIGKILLed right after creating its directory (before run.json).
    code = ("import os, signal, em_core._files as f\n"
            "def die(*a, **k):\n    os.kill(os.getpid(), signal.SIGKILL)\n"
            "f.write_json_atomic = die\n"
            "import em_core.run as r\nr.write_json_atomic = die\n"
            "import em_core as em\nem.create_run(name='killed')\n")
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.run([sys.executable, "-c", code], env=env, timeout=60, check=False)
    assert proc.returncode == -9
    (d,) = _runs_dir().iterdir()
    assert not (d / "run.json").exists()
    rc, out, _ = _em(["ls"], capsys)
    assert rc == 0 and d.name in out and "incomplete (no run.json)" in out


# ------------------------------------------------------------------ 18: summary
def test_finished_run_stores_a_summary_that_ls_and_show_use(
        capsys: pytest.CaptureFixture[str]) -> None:
    run = em.create_run(name="s")
    assert isinstance(run, em.Run)
    for i, v in enumerate([3.0, math.nan, -1.0, math.inf, 2.0]):
        run.log("train", {"loss": v}, step=i, epoch=0)
    run.finish()
    meta = json.loads((Path(str(run.local)) / "run.json").read_text())
    (m,) = meta["summary"]["metrics"]
    assert meta["summary"]["bytes"] == (Path(str(run.local)) / "metrics.bin").stat().st_size
    assert (m["type"], m["name"], m["count"], m["last"], m["step"]) == ("train", "loss", 5,
                                                                         2.0, 4)
    assert (m["min"], m["max"]) == (-1.0, "Infinity")
    # ls trusts the stored summary while it covers the whole log: prove it by editing it
    meta["summary"]["metrics"][0]["last"] = 42.0
    (Path(str(run.local)) / "run.json").write_text(json.dumps(meta))
    _, out, _ = _em(["ls"], capsys)
    assert "train/loss=42" in out


def test_running_run_is_summarised_by_a_scan(capsys: pytest.CaptureFixture[str]) -> None:
    run = em.create_run(name="live")
    assert isinstance(run, em.Run)
    run.log("train", {"loss": 7.0}, step=0)
    try:
        _, out, _ = _em(["ls"], capsys)
        assert "train/loss=7" in out and "Running" in out
    finally:
        run.finish()


def test_summarize_matches_the_records() -> None:
    run = _make_run("m", n=50)
    path = Path(str(run.local)) / "metrics.bin"
    recs = read_records(path)
    s = summarize(path)
    loss = [m for m in s["metrics"] if m["name"] == "loss"][0]
    losses = [r.values["loss"] for r in recs if "loss" in r.values]
    assert loss["count"] == len(losses) and loss["min"] == min(losses)
    assert loss["last"] == losses[-1] and loss["first_step"] == 0


# ------------------------------------------------------------------ 19: export
def test_export_csv_is_long_form_and_linear(capsys: pytest.CaptureFixture[str]) -> None:
    run = em.create_run(name="wide")
    assert isinstance(run, em.Run)
    for i in range(200):
        run.log("train", {f"m{i}": float(i)}, step=i)  # 200 calls x 200 names
    run.log("train", {"nan": math.nan}, step=200)
    run.finish()
    rc, out, _ = _em(["export", str(run.local)], capsys)
    assert rc == 0
    rows = list(csv.reader(io.StringIO(out)))
    assert rows[0] == ["type", "name", "step", "epoch", "timestamp", "value"]
    assert len(rows) == 1 + 201  # one row per value, not 201 x 201 cells
    assert rows[1][:3] == ["train", "m0", "0"] and float(rows[1][5]) == 0.0
    assert math.isnan(float(rows[-1][5]))


def test_export_wide_refuses_too_many_columns(capsys: pytest.CaptureFixture[str]) -> None:
    run = em.create_run(name="wide")
    assert isinstance(run, em.Run)
    for i in range(_commands.WIDE_MAX_COLUMNS + 1):
        run.log("train", {f"m{i}": 1.0}, step=i)
    run.finish()
    rc, out, err = _em(["export", str(run.local), "--wide"], capsys)
    assert rc == 2 and out == "" and "--wide" in err and "long form" in err


def test_export_wide_small_run(capsys: pytest.CaptureFixture[str]) -> None:
    run = _make_run("w", n=3)
    rc, out, _ = _em(["export", str(run.local), "--wide"], capsys)
    rows = list(csv.reader(io.StringIO(out)))
    assert rc == 0 and rows[0] == ["type", "step", "epoch", "timestamp", "loss", "acc"]
    assert len(rows) == 1 + 4


def test_export_jsonl_is_strict_json(capsys: pytest.CaptureFixture[str]) -> None:
    run = em.create_run(name="j")
    assert isinstance(run, em.Run)
    run.log("train", {"a": math.nan, "b": math.inf, "c": -math.inf, "d": 1.5}, step=0)
    run.finish()
    rc, out, _ = _em(["export", str(run.local), "--format", "jsonl"], capsys)
    assert rc == 0

    def strict(c: str) -> None:
        raise ValueError(f"non-standard JSON constant {c}")

    (line,) = out.splitlines()
    rec = json.loads(line, parse_constant=strict)
    assert rec["values"] == {"a": "NaN", "b": "Infinity", "c": "-Infinity", "d": 1.5}


def test_ls_does_not_read_records_of_finished_runs(
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    run = _make_run("f")
    shutil.copy(Path(str(run.local)) / "run.json", Path(str(run.local)) / "run.json.bak")

    def boom(*a: object, **k: object) -> object:
        raise AssertionError("em ls scanned a finished run's metric log")

    monkeypatch.setattr(_commands, "summarize", boom)
    monkeypatch.setattr(em.Run, "metric_records", boom)
    rc, out, _ = _em(["ls"], capsys)
    assert rc == 0 and "train/loss=0.05" in out


# ------------------------------------------------------------------ 8: stale loaded copies
_OWNER = """
import sys, em_core as em
run = em.create_run(name="owner", hparams={"lr": 0.1})
run.log("train", {"loss": 1.0}, step=0)
print(run.local, flush=True)
sys.stdin.readline()            # the test works on its loaded copy meanwhile
art = em.create_artifact("model")
run.mark_output(art)
run.finish()
print("done", flush=True)
sys.stdin.readline()
"""


def _owner_proc() -> tuple[subprocess.Popen[str], Path]:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.Popen([sys.executable, "-c", _OWNER], env=env, text=True,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert proc.stdout is not None
    return proc, Path(proc.stdout.readline().strip())


def _step(proc: subprocess.Popen[str], expect: str | None = None) -> None:
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write("\n")
    proc.stdin.flush()
    if expect is not None:
        assert proc.stdout.readline().strip() == expect


def test_stale_copy_marked_while_owner_alive_loses_nothing() -> None:
    proc, run_dir = _owner_proc()
    try:
        stale = em.load_run(run_dir)
        reader = em.create_run(name="reader")
        assert isinstance(reader, em.Run)
        reader.mark_input(stale)                   # the owner is alive and still writing
        _step(proc, "done")                        # owner marks its output and finishes
        _step(proc)
        assert proc.wait(timeout=30) == 0
    finally:
        proc.kill()
    reader.finish()
    final = em.load_run(run_dir)
    assert final.status is em.Status.COMPLETE and final.hparams["lr"] == 0.1
    assoc = final.associations
    assert [e["alternative_name"] for e in assoc["input_of"]] == [reader.alternative_name]
    assert [e["kind"] for e in assoc["outputs"]] == ["artifact"]
    assert final.to_dict()["associations"] == assoc
    assert (run_dir / "associations.jsonl").exists()


def test_stale_copy_marked_after_owner_finished_keeps_status_and_hparams(
        capsys: pytest.CaptureFixture[str]) -> None:
    proc, run_dir = _owner_proc()
    try:
        stale = em.load_run(run_dir)               # loaded while Running
        _step(proc, "done")
        _step(proc)
        assert proc.wait(timeout=30) == 0
    finally:
        proc.kill()
    with pytest.raises(em.errors.RunFinishedError, match="read-only.*resume"):
        stale.hparams["lr"] = 0.5
    assert stale.hparams["lr"] == 0.1
    reader = em.create_run(name="reader")
    assert isinstance(reader, em.Run)
    reader.mark_input(stale)
    stale.mark_output(reader)                     # either side may be the stale one
    reader.finish()
    final = em.load_run(run_dir)
    assert final.status is em.Status.COMPLETE and final.hparams.as_dict() == {"lr": 0.1}
    assert [e["alternative_name"] for e in final.associations["input_of"]] == [
        reader.alternative_name]
    assert len(final.associations["outputs"]) == 2  # the owner's artifact and the reader
    rc, out, _ = _em(["show", str(run_dir)], capsys)
    assert rc == 0 and f"input_of: run {reader.alternative_name}" in out


_MARKER = """
import sys, em_core as em
art = em.load_artifact(sys.argv[1])
run = em.create_run(name="user" + sys.argv[2])
run.mark_input(art)
run.finish()
"""


def test_artifact_loaded_in_two_processes_keeps_both_associations() -> None:
    art = em.create_artifact("data")
    env = dict(os.environ, PYTHONPATH=str(REPO))
    procs = [subprocess.Popen([sys.executable, "-c", _MARKER, str(art.local), str(i)], env=env)
             for i in range(2)]
    assert [p.wait(timeout=60) for p in procs] == [0, 0]
    loaded = em.load_artifact(art.local)
    users = sorted(e["name"] for e in loaded.associations["input_of"])
    assert users == ["user0", "user1"]
    assert sorted(e["name"] for e in art.associations["input_of"]) == users


def test_part_files_of_a_killed_copy_are_not_objects(tmp_path: Path) -> None:
    src = tmp_path / "w.bin"
    src.write_bytes(b"weights")
    art = em.create_artifact("model")
    art.add_file(src, obj_path="weights/")
    # what a process killed in the middle of add_file leaves behind
    (Path(art.local) / "files" / "weights" / ".big.bin.part").write_bytes(b"half")
    loaded = em.load_artifact(art.local)
    assert list(loaded.objects) == ["weights/w.bin"]
    assert loaded.partial_files == ["weights/.big.bin.part"]
