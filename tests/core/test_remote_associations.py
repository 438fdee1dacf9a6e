"""A run or artifact downloaded from a server: its associations point where this machine
can follow them (em_core._remote.followable)."""

from __future__ import annotations

from pathlib import Path

from em_core._remote import followable


def test_server_paths_added_and_foreign_local_paths_dropped(tmp_path: Path) -> None:
    here = tmp_path / "weights_1"
    here.mkdir()
    assoc = {"outputs": [
        {"kind": "artifact", "name": "weights", "alternative_name": "weights_1",
         "local": str(here)},
        {"kind": "artifact", "name": "ckpt", "alternative_name": "ckpt_2",
         "local": "/on/the/uploaders/machine/ckpt_2"},
        {"kind": "artifact", "name": "data", "alternative_name": "data_3",
         "local": "/elsewhere/data_3", "path": "/bob/from/another/server"},
    ], "inputs": []}
    resolved = {"outputs": [
        {"kind": "artifact", "name": "weights", "alternative_name": "weights_1",
         "id": "a", "path": "/alice/x/weights"},
        {"kind": "artifact", "name": "ckpt", "alternative_name": "ckpt_2",
         "id": "b", "path": "/alice/x/ckpt"},
        {"kind": "artifact", "name": "data", "alternative_name": "data_3"},  # not readable
    ], "inputs": []}
    out = followable(assoc, resolved)
    weights, ckpt, data = out["outputs"]
    assert weights == {**assoc["outputs"][0], "path": "/alice/x/weights"}  # local exists here
    assert ckpt == {"kind": "artifact", "name": "ckpt", "alternative_name": "ckpt_2",
                    "path": "/alice/x/ckpt"}
    # a path another server gave (the copy was uploaded again) is not this server's
    assert data == {"kind": "artifact", "name": "data", "alternative_name": "data_3"}
    assert out["inputs"] == []
    assert assoc["outputs"][1]["local"] == "/on/the/uploaders/machine/ckpt_2"  # not changed


def test_odd_shapes_pass_through() -> None:
    assert followable(None, None) is None
    assert followable({"outputs": "x"}, {"outputs": [1, "y", None]}) == {"outputs": "x"}
    assert followable({"outputs": [3, {"kind": "run"}]}, "bad") == \
        {"outputs": [3, {"kind": "run"}]}
