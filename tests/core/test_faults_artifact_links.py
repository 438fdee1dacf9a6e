"""Artifacts and links: never followed out of a tree, never written through, nothing unlisted."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import em_core as em


def _files_on_disk(art: em.Artifact) -> set[str]:
    root = Path(art.local) / "files"
    return {p.relative_to(root).as_posix() for p in root.rglob("*")
            if p.is_file() or p.is_symlink()}


def test_add_dir_records_links_without_following_them(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("secret")
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "a.txt").write_text("a")
    (src / "sub" / "b.txt").write_text("b")
    os.symlink(outside, src / "linked_dir")
    os.symlink(outside / "secret.txt", src / "linked_file.txt")
    os.symlink(tmp_path / "nowhere", src / "dangling")
    art = em.create_artifact("links")
    added = art.add_dir(src, obj_path="d")
    objects = em.load_artifact(art.local).objects
    assert sorted(added) == sorted(objects) == ["d/a.txt", "d/dangling", "d/linked_dir",
                                                "d/linked_file.txt", "d/sub/b.txt"]
    assert objects["d/linked_dir"] == {"kind": "link", "target": str(outside),
                                       "source": str(src / "linked_dir")}
    assert objects["d/linked_file.txt"]["kind"] == "link"
    assert objects["d/dangling"]["target"] == str(tmp_path / "nowhere")
    assert _files_on_disk(art) == {"d/a.txt", "d/sub/b.txt"}  # nothing followed or copied


def test_a_link_planted_in_the_artifact_is_never_written_through(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    art = em.create_artifact("planted")
    os.symlink(outside, Path(art.local) / "files" / "evil")
    src = tmp_path / "model.bin"
    src.write_bytes(b"weights")
    with pytest.raises(ValueError, match="evil"):
        art.add_file(src, obj_path="evil/model.bin")
    assert list(outside.iterdir()) == []
    assert em.load_artifact(art.local).objects == {}


def test_a_failure_inside_add_dir_leaves_nothing_unlisted(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.txt").write_text("a")
    os.mkfifo(src / "b.fifo")  # reading it would block forever: refused, not opened
    (src / "c.txt").write_text("c")
    art = em.create_artifact("partial")
    with pytest.raises(ValueError, match="b.fifo"):
        art.add_dir(src, obj_path="x")
    listed = set(em.load_artifact(art.local).objects)
    assert listed == {"x/a.txt"}
    assert _files_on_disk(art) == listed  # no copy unlisted, no .part left


def test_a_copy_that_fails_leaves_no_part_file(tmp_path: Path) -> None:
    art = em.create_artifact("part")
    missing = tmp_path / "gone.txt"
    missing.write_text("x")
    src = tmp_path / "src"
    src.mkdir()
    os.symlink(missing, src / "l")
    missing.unlink()
    with pytest.raises(FileNotFoundError):
        art.add_file(src / "l")  # add_file follows the named link: it dangles
    assert _files_on_disk(art) == set()
    assert not list((Path(art.local) / "files").rglob("*.part"))
