"""Protocol Buffers text format, solver hyperparameters and batch sizes."""

from __future__ import annotations

from pathlib import Path

import pytest

from integrations.caffe import PrototxtError, parse_prototxt, read_prototxt, solver_hparams

SOLVER = """# the solver
net: "net.prototxt"   # relative to the working directory, or the solver's folder
base_lr: 0.01
lr_policy: "multistep"
stepvalue: 1000
stepvalue: 2000
gamma: 0.1
momentum: 0.9
weight_decay: 5e-4
max_iter: 3000
snapshot: 500
snapshot_prefix: 'snaps/' "lenet"
type: "Nesterov"
solver_mode: CPU
debug_info: false
train_state { level: 0 stage: "a" }
"""

NET = """name: "LeNet"
layer { name: "mnist" type: "Data" top: "data"
  include { phase: TRAIN }
  data_param { source: "x" batch_size: 64 backend: LMDB } }
layer { name: "mnist" type: "Data" top: "data"
  include: { phase: TEST }
  data_param < source: "y" batch_size: 100 > }
layer { name: "ip" type: "InnerProduct" bottom: "data" top: "ip" }
"""


def test_solver_fields_and_batch_sizes(tmp_path: Path) -> None:
    (tmp_path / "net.prototxt").write_text(NET)
    (tmp_path / "solver.prototxt").write_text(SOLVER)
    hp = solver_hparams(tmp_path / "solver.prototxt")
    assert hp["base_lr"] == 0.01 and hp["lr_policy"] == "multistep"
    assert hp["stepvalue"] == [1000, 2000] and hp["weight_decay"] == 5e-4
    assert hp["snapshot_prefix"] == "snaps/lenet" and hp["solver_mode"] == "CPU"
    assert hp["type"] == "Nesterov" and hp["debug_info"] is False
    assert hp["train_state"] == {"level": 0, "stage": "a"}
    assert (hp["batch_size"], hp["test_batch_size"], hp["net_name"]) == (64, 100, "LeNet")


def test_inline_net_and_dummy_data(tmp_path: Path) -> None:
    (tmp_path / "s.prototxt").write_text(
        'base_lr: 1 net_param { name: "n" layer { type: "DummyData" '
        "dummy_data_param { shape { dim: 8 dim: 3 } } } }")
    hp = solver_hparams(tmp_path / "s.prototxt")
    assert "net_param" not in hp and hp["batch_size"] == 8 and hp["test_batch_size"] == 8


def test_separate_train_and_test_nets(tmp_path: Path) -> None:
    """Data layers without a phase count for the phase of the net file they are in."""
    layer = 'layer {{ type: "Data" data_param {{ source: "x" batch_size: {} }} }}'
    (tmp_path / "train.prototxt").write_text('name: "T" ' + layer.format(32))
    (tmp_path / "test.prototxt").write_text(layer.format(8))
    (tmp_path / "s.prototxt").write_text('train_net: "train.prototxt"\n'
                                         'test_net: "test.prototxt"\ntest_iter: 10\n')
    hp = solver_hparams(tmp_path / "s.prototxt")
    assert (hp["batch_size"], hp["test_batch_size"], hp["net_name"]) == (32, 8, "T")
    assert hp["test_net"] == "test.prototxt"
    (tmp_path / "inline.prototxt").write_text(
        "train_net_param { " + layer.format(4) + " } test_net_param { " + layer.format(2) + " }")
    hp = solver_hparams(tmp_path / "inline.prototxt")
    assert (hp["batch_size"], hp["test_batch_size"]) == (4, 2)
    assert not {"train_net_param", "test_net_param"} & set(hp)


def test_escapes_and_lists() -> None:
    d = parse_prototxt(r'a: "x\"y\n\101" b: [1, 2.5, -3] c: inf')
    assert d == {"a": 'x"y\nA', "b": [1, 2.5, -3], "c": float("inf")}


@pytest.mark.parametrize(("text", "line"), [
    ("a: 1\nb {\n c: 2\n", 2),           # not closed: names where it was opened
    ("a: 1\n}\n", 2),                    # stray bracket
    ("a: 1\nb: \"unterminated\n", 2),   # bad string
    ("a: 1\n\n: 3\n", 3),                # no field name
])
def test_errors_name_file_and_line(tmp_path: Path, text: str, line: int) -> None:
    path = tmp_path / "bad.prototxt"
    path.write_text(text)
    with pytest.raises(PrototxtError, match=rf"bad\.prototxt, line {line}:"):
        read_prototxt(path)


def test_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(PrototxtError, match="nope.prototxt"):
        solver_hparams(tmp_path / "nope.prototxt")
