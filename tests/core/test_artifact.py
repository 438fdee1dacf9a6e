"""Artifacts: obj_path rules, copies with size and sha256, refusals, data flow with runs."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import pytest

import em_core as em

pytestmark = pytest.mark.usefixtures("fast_platform")
DIR_RE = re.compile(r"^data_\d{6}_\d{6}_[a-z0-9]{6}$")


@pytest.fixture
def src(tmp_path: Path) -> Path:
    """A small tree of source files."""
    root = tmp_path / "src"
    (root / "sub" / "deep").mkdir(parents=True)
    (root / "a.txt").write_bytes(b"alpha\n")
    (root / "sub" / "b.bin").write_bytes(bytes(range(256)) * 10)
    (root / "sub" / "deep" / "c.txt").write_bytes(b"")
    return root


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_create_artifact(tmp_path: Path) -> None:
    art = em.create_artifact("data", labels=["raw"], description="inputs")
    assert art.name == "data"
    assert art.labels == ["raw"]
    assert art.description == "inputs"
    assert art.objects == {}
    path = Path(art.local)
    assert path.parent == tmp_path / "artifacts"
    assert DIR_RE.match(path.name) and path.name == art.alternative_name
    meta = json.loads((path / "artifact.json").read_text(encoding="utf-8"))
    assert meta["name"] == "data" and meta["labels"] == ["raw"]


@pytest.mark.parametrize(("kwargs", "exc", "quoted"), [
    ({"name": ""}, ValueError, "''"),
    ({"name": "a/b"}, ValueError, "'a/b'"),
    ({"name": "ok", "labels": "x"}, TypeError, "'x'"),
    ({"name": "ok", "description": 3}, TypeError, "3"),
])
def test_create_artifact_bad_arguments(tmp_path: Path, kwargs: dict[str, object],
                                       exc: type[Exception], quoted: str) -> None:
    with pytest.raises(exc) as ei:
        em.create_artifact(**kwargs)  # type: ignore[arg-type]
    assert quoted in str(ei.value)
    assert not (tmp_path / "artifacts").exists() or not any((tmp_path / "artifacts").iterdir())


def test_add_file_obj_path_rules(src: Path) -> None:
    art = em.create_artifact("data")
    assert art.add_file(src / "a.txt") == "a.txt"
    assert art.add_file(src / "a.txt", obj_path="into/") == "into/a.txt"
    assert art.add_file(str(src / "a.txt"), obj_path="exact/name.dat") == "exact/name.dat"
    assert sorted(art.objects) == ["a.txt", "exact/name.dat", "into/a.txt"]
    for obj in art.objects:
        assert Path(art.file_path(obj)).read_bytes() == b"alpha\n"
        assert Path(art.local, "files", obj).is_file()


def test_add_file_size_and_sha256(src: Path) -> None:
    art = em.create_artifact("data")
    art.add_file(src / "sub" / "b.bin")
    art.add_file(src / "sub" / "deep" / "c.txt")
    data = (src / "sub" / "b.bin").read_bytes()
    assert art.objects["b.bin"]["kind"] == "file"
    assert art.objects["b.bin"]["size"] == len(data) == 2560
    assert art.objects["b.bin"]["sha256"] == _sha(data)
    assert art.objects["c.txt"]["size"] == 0
    assert art.objects["c.txt"]["sha256"] == _sha(b"")


def test_large_file_hash(tmp_path: Path) -> None:
    big = tmp_path / "big.bin"
    data = bytes(range(251)) * 10_000  # > 1 MiB: more than one read chunk
    big.write_bytes(data)
    art = em.create_artifact("data")
    art.add_file(big)
    assert art.objects["big.bin"]["size"] == len(data)
    assert art.objects["big.bin"]["sha256"] == _sha(data)


def test_file_is_copied(src: Path) -> None:
    art = em.create_artifact("data")
    art.add_file(src / "a.txt")
    (src / "a.txt").write_bytes(b"changed later\n")
    assert Path(art.file_path("a.txt")).read_bytes() == b"alpha\n"
    assert art.objects["a.txt"]["sha256"] == _sha(b"alpha\n")


def test_add_same_obj_path_replaces(src: Path, tmp_path: Path) -> None:
    other = tmp_path / "other.txt"
    other.write_bytes(b"other")
    art = em.create_artifact("data")
    art.add_file(src / "a.txt", obj_path="x.txt")
    art.add_file(other, obj_path="x.txt")
    assert list(art.objects) == ["x.txt"]
    assert art.objects["x.txt"]["sha256"] == _sha(b"other")
    assert Path(art.file_path("x.txt")).read_bytes() == b"other"


def test_add_dir(src: Path) -> None:
    art = em.create_artifact("data")
    added = art.add_dir(src)
    assert added == ["src/a.txt", "src/sub/b.bin", "src/sub/deep/c.txt"]
    added2 = art.add_dir(src / "sub", obj_path="ckpt/")
    assert added2 == ["ckpt/sub/b.bin", "ckpt/sub/deep/c.txt"]
    added3 = art.add_dir(src / "sub", obj_path="flat")
    assert added3 == ["flat/b.bin", "flat/deep/c.txt"]
    objs = art.objects
    assert objs["src/sub/b.bin"]["sha256"] == _sha((src / "sub" / "b.bin").read_bytes())
    assert Path(art.file_path("flat/deep/c.txt")).read_bytes() == b""


def test_add_reference(src: Path) -> None:
    art = em.create_artifact("data")
    assert art.add_reference("s3://bucket/path/model.pt") == "model.pt"
    assert art.add_reference("https://x.org/d/file.csv?sig=1", obj_path="refs/") \
        == "refs/file.csv"
    assert art.add_reference("gs://b/dir/", obj_path="exact") == "exact"
    assert art.objects["model.pt"] == {"kind": "reference", "uri": "s3://bucket/path/model.pt"}
    # a signed URL's signature is a credential: masked (see em_core._secrets)
    assert art.objects["refs/file.csv"]["uri"] == "https://x.org/d/file.csv?sig=***"
    assert not Path(art.local, "files", "model.pt").exists()
    with pytest.raises(TypeError, match="''"):
        art.add_reference("")


@pytest.mark.parametrize("bad", ["../x", "a/../../x", "a/..", "/etc/passwd", "\\abs",
                                 "C:\\x", "..\\x", "../"])
def test_escaping_obj_path_refused(src: Path, bad: str) -> None:
    art = em.create_artifact("data")
    with pytest.raises(ValueError) as ei:
        art.add_file(src / "a.txt", obj_path=bad)
    assert repr(bad) in str(ei.value)
    with pytest.raises(ValueError):
        art.add_dir(src, obj_path=bad)
    with pytest.raises(ValueError):
        art.add_reference("s3://b/k", obj_path=bad)
    assert art.objects == {}
    # nothing was written outside the artifact
    assert sorted(p.name for p in Path(art.local).iterdir()) == ["artifact.json", "files"]
    assert list(Path(art.local, "files").iterdir()) == []


def test_obj_path_wrong_type(src: Path) -> None:
    art = em.create_artifact("data")
    with pytest.raises(TypeError, match="3"):
        art.add_file(src / "a.txt", obj_path=3)  # type: ignore[arg-type]


def test_missing_file_names_the_path(tmp_path: Path) -> None:
    art = em.create_artifact("data")
    missing = tmp_path / "no" / "such.txt"
    with pytest.raises(FileNotFoundError) as ei:
        art.add_file(missing)
    assert str(missing) in str(ei.value)
    with pytest.raises(FileNotFoundError, match=re.escape(str(missing))):
        art.add_dir(missing)


def test_add_file_of_dir_and_dir_of_file(src: Path) -> None:
    art = em.create_artifact("data")
    with pytest.raises(ValueError, match="add_dir"):
        art.add_file(src)
    with pytest.raises(ValueError, match="add_file"):
        art.add_dir(src / "a.txt")


def test_load_artifact_round_trip(src: Path) -> None:
    art = em.create_artifact("data", labels=["x"])
    art.add_file(src / "a.txt")
    art.add_reference("s3://b/k.bin")
    back = em.load_artifact(art.local)
    assert back.name == "data" and back.labels == ["x"]
    assert back.objects == art.objects
    assert back.to_dict() == art.to_dict()


def test_load_artifact_not_an_artifact(tmp_path: Path) -> None:
    with pytest.raises(em.NotARunError, match=re.escape(str(tmp_path))):
        em.load_artifact(tmp_path)
    with pytest.raises(TypeError, match="None"):
        em.load_artifact(None)  # type: ignore[arg-type]
    (tmp_path / "artifact.json").write_text('{"hello": 1}', encoding="utf-8")
    with pytest.raises(em.NotARunError, match="does not describe"):
        em.load_artifact(tmp_path)


def test_load_artifact_corrupt_metadata(src: Path) -> None:
    art = em.create_artifact("data")
    meta = Path(art.local, "artifact.json")
    meta.write_bytes(b"{not json")
    with pytest.raises(em.CorruptRunError, match=re.escape(str(meta))):
        em.load_artifact(art.local)
    assert meta.read_bytes() == b"{not json"


# --------------------------------------------------------------------------- data flow


def test_mark_input_and_output_recorded_on_both_sides(run: em.Run, src: Path) -> None:
    data = em.create_artifact("data")
    data.add_file(src / "a.txt")
    model = em.create_artifact("model")
    run.mark_input(data)
    run.mark_output(model)
    run.mark_input(data)  # twice: recorded once

    def entry(obj: em.Artifact | em.Run, kind: str) -> dict[str, str]:
        return {"kind": kind, "name": obj.name, "alternative_name": obj.alternative_name,
                "local": str(Path(obj.local).resolve())}

    assert run.associations == {"inputs": [entry(data, "artifact")],
                                "outputs": [entry(model, "artifact")]}
    assert data.associations == {"input_of": [entry(run, "run")]}
    assert model.associations == {"output_of": [entry(run, "run")]}
    run.finish()
    back_run = em.load_run(run.local)
    assert back_run.associations == run.associations
    assert em.load_artifact(data.local).associations == {"input_of": [entry(run, "run")]}
    assert em.load_artifact(model.local).associations == {"output_of": [entry(run, "run")]}


def test_run_to_run_data_flow(run: em.Run) -> None:
    upstream = em.create_run(name="prep")
    upstream.finish()
    run.mark_input(em.load_run(upstream.local))
    assert run.associations["inputs"][0]["name"] == "prep"
    assert run.associations["inputs"][0]["kind"] == "run"
    assert em.load_run(upstream.local).associations == {
        "input_of": [{"kind": "run", "name": "test", "alternative_name": run.alternative_name,
                      "local": str(Path(run.local).resolve())}]}


@pytest.mark.parametrize("bad", ["path/to/artifact", None, 3])
def test_mark_bad_object(run: em.Run, bad: object) -> None:
    with pytest.raises(TypeError, match=re.escape(repr(bad))):
        run.mark_input(bad)
    with pytest.raises(TypeError):
        run.mark_output(bad)
    assert run.associations == {}
