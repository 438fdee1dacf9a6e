"""create_run / load_run: arguments, YAML config, directory naming, bad input, to_dict."""

from __future__ import annotations

import json
import os
import re
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

import em_core as em


def read_meta(run: em.Run) -> dict[str, Any]:
    """run.json as it is on disk (not the in-memory copy)."""
    meta: dict[str, Any] = json.loads(Path(run.local, "run.json").read_text(encoding="utf-8"))
    return meta


DIR_RE = re.compile(r"^(?P<name>.+)_(?P<date>\d{6})_(?P<time>\d{6})_[a-z0-9]{6}$")


def _runs(tmp_path: Path) -> list[Path]:
    parent = tmp_path / "runs"
    return sorted(parent.iterdir()) if parent.exists() else []


# --------------------------------------------------------------------------- arguments


def test_create_run_with_every_argument(tmp_path: Path) -> None:
    run = em.create_run(name="mnist", hparams={"lr": 0.1, "optim": {"beta": 0.9}},
                        labels=["cnn", "baseline"], description="first try",
                        auto_upload=True, folder="proj/exp1", make_folder=True,
                        conflict_strategy="replace")
    try:
        assert isinstance(run, em.Run)
        assert run.name == "mnist"
        assert run.labels == ["cnn", "baseline"]
        assert run.description == "first try"
        assert run.hparams.as_dict() == {"lr": 0.1, "optim": {"beta": 0.9}}
        assert run.status is em.Status.RUNNING
        assert run.end_timestamp is None
        assert run.upload_options == {"auto_upload": True, "folder": "proj/exp1",
                                      "make_folder": True, "conflict_strategy": "replace"}
        meta = read_meta(run)
        assert meta["upload"] == run.upload_options
        assert meta["name"] == "mnist" and meta["labels"] == ["cnn", "baseline"]
        assert meta["status"] == "Running"
        assert Path(run.local).parent == tmp_path / "runs"
    finally:
        run.finish()
    assert read_meta(run)["status"] == "Complete"


def test_defaults(run: em.Run) -> None:
    assert run.name == "test"
    assert run.labels == []
    assert run.description == ""
    assert run.hparams.as_dict() == {}
    assert run.upload_options == {"auto_upload": False, "folder": "default",
                                  "make_folder": False, "conflict_strategy": "new"}
    assert run.associations == {}
    assert run.remote == []


def test_directory_name_and_parent(tmp_path: Path) -> None:
    before = datetime.now().replace(microsecond=0)
    run = em.create_run(name="resnet")
    after = datetime.now()
    run.finish()
    path = Path(run.local)
    assert path.parent == tmp_path / "runs"
    assert path.name == run.alternative_name
    m = DIR_RE.match(path.name)
    assert m is not None, path.name
    assert m["name"] == "resnet"
    stamp = datetime.strptime(m["date"] + m["time"], "%y%m%d%H%M%S")
    assert before - timedelta(seconds=1) <= stamp <= after
    assert (path / "run.json").is_file()
    assert (path / "metrics.bin").is_file()


def test_two_runs_get_distinct_directories(tmp_path: Path) -> None:
    a = em.create_run(name="same")
    b = em.create_run(name="same")
    a.finish()
    b.finish()
    assert a.local != b.local
    assert len(_runs(tmp_path)) == 2


def test_default_parent_dir_is_dot_em_runs(tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("EM_RUN_PARENT_DIR")
    monkeypatch.chdir(tmp_path)
    run = em.create_run(name="x")
    run.finish()
    assert Path(run.local).resolve().parent == (tmp_path / ".em" / "runs").resolve()


def test_start_and_end_timestamps_are_iso(run: em.Run) -> None:
    start = datetime.fromisoformat(run.start_timestamp)
    assert start.tzinfo is not None
    run.finish()
    assert run.end_timestamp is not None
    end = datetime.fromisoformat(run.end_timestamp)
    assert end >= start


# --------------------------------------------------------------------------- config file


def test_config_file_wins_over_arguments(tmp_path: Path) -> None:
    cfg = tmp_path / "run.yaml"
    cfg.write_text("name: from-file\n"
                   "labels: [a, b]\n"
                   "description: described in file\n"
                   "folder: team/x\n"
                   "conflict_strategy: skip\n"
                   "hparams:\n"
                   "  lr: 0.5\n"
                   "  optim:\n"
                   "    momentum: 0.8\n", encoding="utf-8")
    run = em.create_run(config_path=cfg, name="from-arg", labels=["z"],
                        description="arg", folder="other",
                        hparams={"lr": 0.1, "batch": 32, "optim": {"name": "sgd",
                                                                   "momentum": 0.0}})
    run.finish()
    assert run.name == "from-file"
    assert run.alternative_name.startswith("from-file_")
    assert run.labels == ["a", "b"]
    assert run.description == "described in file"
    assert run.upload_options["folder"] == "team/x"
    assert run.upload_options["conflict_strategy"] == "skip"
    # hparams are merged key by key, the file winning
    assert run.hparams.as_dict() == {"lr": 0.5, "batch": 32,
                                     "optim": {"name": "sgd", "momentum": 0.8}}
    assert read_meta(run)["hparams"] == run.hparams.as_dict()


def test_config_file_accepts_str_path_and_empty_file(tmp_path: Path) -> None:
    cfg = tmp_path / "empty.yaml"
    cfg.write_text("", encoding="utf-8")
    run = em.create_run(config_path=str(cfg), name="kept")
    run.finish()
    assert run.name == "kept"


def test_config_file_unknown_key(tmp_path: Path) -> None:
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("name: x\nlearning_rate: 0.1\n", encoding="utf-8")
    with pytest.raises(ValueError, match="learning_rate") as ei:
        em.create_run(config_path=cfg)
    assert str(cfg) in str(ei.value)
    assert _runs(tmp_path) == []


def test_config_file_malformed_yaml_names_the_line(tmp_path: Path) -> None:
    cfg = tmp_path / "broken.yaml"
    cfg.write_text("name: x\nhparams:\n  lr: 0.1\n  bad: [1, 2\nlabels: []\n",
                   encoding="utf-8")
    with pytest.raises(ValueError, match=r"line \d+") as ei:
        em.create_run(config_path=cfg)
    assert str(cfg) in str(ei.value)
    assert _runs(tmp_path) == []


def test_config_file_line_number_is_right(tmp_path: Path) -> None:
    cfg = tmp_path / "tab.yaml"
    cfg.write_text("name: x\ndescription: ok\n\tlabels: [a]\n", encoding="utf-8")
    with pytest.raises(ValueError, match="line 3"):
        em.create_run(config_path=cfg)


def test_config_file_not_a_mapping(tmp_path: Path) -> None:
    cfg = tmp_path / "list.yaml"
    cfg.write_text("- a\n- b\n", encoding="utf-8")
    with pytest.raises(ValueError, match="list"):
        em.create_run(config_path=cfg)


def test_config_file_missing_names_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "nope" / "run.yaml"
    with pytest.raises(FileNotFoundError) as ei:
        em.create_run(config_path=missing)
    assert str(missing) in str(ei.value)
    assert _runs(tmp_path) == []


def test_config_file_values_are_validated(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("conflict_strategy: merge\n", encoding="utf-8")
    with pytest.raises(ValueError, match="'merge'"):
        em.create_run(config_path=cfg)


# --------------------------------------------------------------------------- bad arguments


@pytest.mark.parametrize(("kwargs", "exc", "quoted"), [
    ({"conflict_strategy": "merge"}, ValueError, "'merge'"),
    ({"name": ""}, ValueError, "''"),
    ({"name": "   "}, ValueError, "'   '"),
    ({"name": "a/b"}, ValueError, "'a/b'"),
    ({"name": ".."}, ValueError, "'..'"),
    ({"name": 3}, TypeError, "3"),
    ({"labels": "x"}, TypeError, "'x'"),
    ({"labels": ["ok", ""]}, ValueError, "''"),
    ({"labels": ["ok", 5]}, ValueError, "5"),
    ({"folder": "../x"}, ValueError, "'../x'"),
    ({"folder": ""}, ValueError, "''"),
    ({"folder": "a//b"}, ValueError, "'a//b'"),
    ({"description": None}, TypeError, "None"),
    ({"auto_upload": "yes"}, TypeError, "'yes'"),
    ({"make_folder": 1}, TypeError, "1"),
    ({"hparams": [1, 2]}, TypeError, "[1, 2]"),
    ({"hparams": {1: "a"}}, TypeError, "1"),
    ({"config_path": 5}, TypeError, "5"),
])
def test_bad_arguments_quote_the_value(tmp_path: Path, kwargs: dict[str, object],
                                       exc: type[Exception], quoted: str) -> None:
    with pytest.raises(exc) as ei:
        em.create_run(**kwargs)  # type: ignore[arg-type]
    assert quoted in str(ei.value)
    assert _runs(tmp_path) == []  # nothing is created by a refused call


def test_conflict_strategy_error_lists_accepted_values() -> None:
    with pytest.raises(ValueError) as ei:
        em.create_run(conflict_strategy="merge")
    for accepted in ("skip", "error", "new", "replace"):
        assert accepted in str(ei.value)


@pytest.mark.parametrize("strategy", ["skip", "error", "new", "replace"])
def test_every_conflict_strategy_accepted(strategy: str) -> None:
    run = em.create_run(conflict_strategy=strategy)
    run.finish()
    assert run.upload_options["conflict_strategy"] == strategy


# --------------------------------------------------------------------------- load_run


def test_load_run_reads_everything_back(tmp_path: Path) -> None:
    run = em.create_run(name="r", hparams={"lr": 0.1}, labels=["l"], description="d")
    run.log("train", {"loss": 0.5}, step=1)
    run.finish()
    back = em.load_run(run.local)
    assert back.name == "r"
    assert back.alternative_name == run.alternative_name
    assert back.labels == ["l"]
    assert back.description == "d"
    assert back.status is em.Status.COMPLETE
    assert back.start_timestamp == run.start_timestamp
    assert back.end_timestamp == run.end_timestamp
    assert back.hparams.as_dict() == {"lr": 0.1}
    assert back.metrics["train"][0]["value"] == {"loss": 0.5}
    assert back.local == run.local


def test_load_run_of_running_run_reports_running(run: em.Run) -> None:
    back = em.load_run(Path(run.local))
    assert back.status is em.Status.RUNNING


def test_load_run_cannot_log() -> None:
    run = em.create_run()
    run.finish()
    back = em.load_run(run.local)
    with pytest.raises(em.RunFinishedError):
        back.log("train", {"a": 1}, step=0)


def test_load_run_missing_dir(tmp_path: Path) -> None:
    missing = tmp_path / "nothing-here"
    with pytest.raises(em.NotARunError) as ei:
        em.load_run(missing)
    assert str(missing) in str(ei.value)


def test_load_run_of_non_run_dir(tmp_path: Path) -> None:
    d = tmp_path / "plain"
    d.mkdir()
    (d / "notes.txt").write_text("hi", encoding="utf-8")
    with pytest.raises(em.NotARunError, match="not an em run") as ei:
        em.load_run(d)
    assert str(d) in str(ei.value)
    assert isinstance(ei.value, em.EmError)


def test_load_run_of_artifact_dir_is_refused() -> None:
    art = em.create_artifact("data")
    with pytest.raises(em.NotARunError):
        em.load_run(art.local)


def test_load_run_json_of_other_kind(tmp_path: Path) -> None:
    d = tmp_path / "other"
    d.mkdir()
    (d / "run.json").write_text('{"hello": 1}', encoding="utf-8")
    with pytest.raises(em.NotARunError) as ei:
        em.load_run(d)
    assert str(d / "run.json") in str(ei.value)


def test_load_run_newer_format_version(run: em.Run) -> None:
    run.finish()
    meta = read_meta(run)
    meta["format_version"] = 99
    Path(run.local, "run.json").write_text(json.dumps(meta), encoding="utf-8")
    with pytest.raises(em.NotARunError, match="99"):
        em.load_run(run.local)


def test_load_run_corrupted_metadata_reported_and_left_unchanged(run: em.Run) -> None:
    run.finish()
    meta_path = Path(run.local, "run.json")
    damaged = meta_path.read_bytes()[:40]  # a truncated JSON document
    meta_path.write_bytes(damaged)
    with pytest.raises(em.CorruptRunError) as ei:
        em.load_run(run.local)
    assert str(meta_path) in str(ei.value)
    assert isinstance(ei.value, em.EmError)
    assert meta_path.read_bytes() == damaged
    assert sorted(os.listdir(run.local)) == [".lock", "metrics.bin", "run.json"]


def test_load_run_binary_garbage_metadata(run: em.Run) -> None:
    run.finish()
    meta_path = Path(run.local, "run.json")
    meta_path.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(em.CorruptRunError, match=re.escape(str(meta_path))):
        em.load_run(run.local)
    assert meta_path.read_bytes() == b"\xff\xfe\x00garbage"


def test_load_run_upload_arguments_validated(run: em.Run) -> None:
    run.finish()
    with pytest.raises(ValueError, match="'merge'"):
        em.load_run(run.local, conflict_strategy="merge")
    with pytest.raises(ValueError, match="'../up'"):
        em.load_run(run.local, folder="../up")
    with pytest.raises(TypeError, match="'yes'"):
        em.load_run(run.local, auto_upload="yes")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="42"):
        em.load_run(42)  # type: ignore[arg-type]
    back = em.load_run(run.local, auto_upload=True, folder="f", make_folder=True,
                       conflict_strategy="skip")
    assert back.upload_options == {"auto_upload": True, "folder": "f", "make_folder": True,
                                   "conflict_strategy": "skip"}


# --------------------------------------------------------------------------- to_dict / misc


def test_to_dict_contents(run: em.Run) -> None:
    run.hparams["lr"] = 0.3
    run.log("training", {"loss": 1.5}, step=2, epoch=0)
    d = run.to_dict()
    assert d["name"] == "test"
    assert d["alternative_name"] == run.alternative_name
    assert d["status"] == "Running"
    assert d["hparams"] == {"lr": 0.3}
    assert d["labels"] == [] and d["description"] == ""
    assert d["start_timestamp"] == run.start_timestamp
    assert d["end_timestamp"] is None
    assert d["metrics"]["train"][0]["value"] == {"loss": 1.5}
    assert d["metrics"]["train"][0]["sequence"]["step"] == 2
    assert d["metrics"]["train"][0]["sequence"]["epoch"] == 0
    assert isinstance(d["platform"], dict) and d["platform"]
    assert "git" in d and "associations" in d and "upload" in d
    json.dumps(d)  # plain data
    # a copy: changing it does not change the run
    d["hparams"]["lr"] = 9
    assert run.hparams["lr"] == 0.3
    assert em.Run.parse_from_dict(d)["name"] == "test"
    with pytest.raises(ValueError, match="missing"):
        em.Run.parse_from_dict({"name": "x"})


def test_metadata_has_no_temporary_files_left(run: em.Run) -> None:
    for i in range(20):
        run.hparams[f"k{i}"] = i
    run.finish()
    assert sorted(os.listdir(run.local)) == [".lock", "metrics.bin", "run.json"]


def test_finish_bad_status(run: em.Run) -> None:
    with pytest.raises(ValueError, match="'Running'"):
        run.finish("Running")
    with pytest.raises(ValueError, match="'done'"):
        run.finish("done")
    assert run.status is em.Status.RUNNING


@pytest.mark.parametrize("status", ["Complete", "Failed", "Killed", em.Status.FAILED])
def test_finish_statuses(status: str) -> None:
    run = em.create_run()
    run.finish(status)
    assert em.load_run(run.local).status == em.Status(status)


def test_finish_with_error_string_and_exception() -> None:
    a = em.create_run()
    a.finish("Failed", error="diverged")
    assert em.load_run(a.local).error == {"type": None, "message": "diverged",
                                          "traceback": None}
    b = em.create_run()
    try:
        raise RuntimeError("nan loss")
    except RuntimeError as e:
        b.finish("Failed", error=e)
    err = em.load_run(b.local).error
    assert err is not None
    assert err["type"] == "RuntimeError" and err["message"] == "nan loss"
    assert "raise RuntimeError" in err["traceback"]


def test_status_enum_is_str() -> None:
    assert em.Status.COMPLETE == "Complete"
    assert str(em.Status.CRASHED) == "Crashed"
    assert {s.value for s in em.Status} == {"Running", "Complete", "Failed", "Killed",
                                            "Crashed", "Unknown"}


# --------------------------------------------------------------------------- resume


def test_resume_after_finish_appends(run: em.Run) -> None:
    for i in range(3):
        run.log("train", {"i": i}, step=i)
    run.finish()
    run.resume()
    assert run.status is em.Status.RUNNING and run.end_timestamp is None
    assert read_meta(run)["status"] == "Running"
    for i in range(3, 5):
        run.log("train", {"i": i}, step=i)  # same shape: a new schema id is declared
    run.log("val", {"acc": 0.5}, step=5)
    run.finish()
    back = em.load_run(run.local)
    assert back.status is em.Status.COMPLETE
    assert [p["value"]["i"] for p in back.metrics["train"]] == list(range(5))
    assert back.metrics["val"][0]["value"] == {"acc": 0.5}
    assert len(read_meta(run)["resumed"]) == 1


def test_resume_refused_while_writer_alive(run: em.Run) -> None:
    run.log("train", {"a": 1}, step=0)
    other = em.load_run(run.local)
    with pytest.raises(em.RunFinishedError, match="another live process"):
        other.resume()
    run.log("train", {"a": 2}, step=1)  # the writer is undisturbed
    assert [p["value"]["a"] for p in run.metrics["train"]] == [1, 2]


def test_resume_of_loaded_finished_run(run: em.Run) -> None:
    run.log("train", {"a": 1}, step=0)
    run.finish()
    back = em.load_run(run.local)
    back.resume()
    back.log("train", {"a": 2}, step=1)
    back.finish()
    assert [p["value"]["a"] for p in em.load_run(run.local).metrics["train"]] == [1, 2]


# --------------------------------------------------------------------------- liveness


def _pretend_still_running(run: em.Run, **process: Any) -> None:
    """Rewrite a finished run's metadata as if its writer had vanished while running."""
    meta = read_meta(run)
    meta["status"] = "Running"
    meta["end_timestamp"] = None
    meta["process"].update(process)
    Path(run.local, "run.json").write_text(json.dumps(meta), encoding="utf-8")


def test_vanished_writer_on_this_host_is_crashed(run: em.Run) -> None:
    run.finish()
    _pretend_still_running(run)
    assert em.load_run(run.local).status is em.Status.CRASHED
    assert em.load_run(run.local).to_dict()["status"] == "Crashed"


def test_vanished_writer_on_other_host_is_unknown(run: em.Run) -> None:
    run.finish()
    _pretend_still_running(run, host="some-other-host.example")
    assert em.load_run(run.local).status is em.Status.UNKNOWN


def test_run_without_lock_file_is_unknown(run: em.Run) -> None:
    run.finish()
    _pretend_still_running(run)
    os.unlink(Path(run.local, ".lock"))
    assert em.load_run(run.local).status is em.Status.UNKNOWN


def test_long_name_refused() -> None:
    with pytest.raises(ValueError, match="201"):
        em.create_run(name="x" * 201)
    run = em.create_run(name="x" * 200)
    run.finish()
    assert run.name == "x" * 200
