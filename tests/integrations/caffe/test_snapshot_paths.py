"""A Caffe log names files; em caffe copies only those under the snapshot root."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import em_core as em
from integrations.caffe import CaffeRecorder
from integrations.caffe.events import Snapshot, TrainIteration


def _record(tmp_path: Path, paths: list[str], root: Path | None = None) -> em.Run:
    run = em.create_run(name="snap")
    rec = CaffeRecorder(run, snapshot_root=str(root) if root else None)
    for p in paths:
        rec.handle(Snapshot(path=p, kind="weights", iteration=10))
    rec.handle(TrainIteration(iteration=20, outputs={"loss": 0.5}))  # Caffe moved on
    run.finish()
    return em.load_run(run.local)


def _copied(run: em.Run) -> dict[str, dict[str, object]]:
    outputs = run.associations.get("outputs", [])
    if not outputs:
        return {}
    return em.load_artifact(outputs[0]["local"]).objects


def test_only_files_under_the_root_are_copied(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    work = tmp_path / "work"
    work.mkdir()
    outside = tmp_path / "outside.caffemodel"
    outside.write_bytes(b"secret")
    (work / "ok_iter_10.caffemodel").write_bytes(b"weights")
    os.symlink(outside, work / "link_iter_10.caffemodel")  # a link leading out
    monkeypatch.chdir(work)
    run = _record(tmp_path, ["/etc/passwd", "../outside.caffemodel", "link_iter_10.caffemodel",
                             "ok_iter_10.caffemodel"])
    assert list(_copied(run)) == ["ok_iter_10.caffemodel"]
    assert run.hparams["snapshots_refused"] == ["/etc/passwd", "../outside.caffemodel",
                                                "link_iter_10.caffemodel"]
    err = capsys.readouterr().err
    assert "'/etc/passwd' is outside" in err and "not copied" in err
    assert "outside.caffemodel" not in err and err.count("\n") == 1  # named once, not per file


def test_a_named_root_is_where_snapshots_come_from(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "snapshots"
    root.mkdir()
    (root / "a_iter_1.caffemodel").write_bytes(b"w")
    monkeypatch.chdir(tmp_path)
    run = _record(tmp_path, [str(root / "a_iter_1.caffemodel"), "a_iter_1.caffemodel",
                             str(tmp_path / "x")], root=root)
    assert list(_copied(run)) == ["a_iter_1.caffemodel"]
    assert run.hparams["snapshots_refused"] == [str(tmp_path / "x")]
