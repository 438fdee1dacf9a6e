"""Lightning metric names -> em (type, name)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from integrations.lightning._names import split_metric_name, stage_type


@pytest.mark.parametrize(("key", "stage", "expected"), [
    ("train_loss", "train", ("train", "loss")),
    ("train/loss", "val", ("train", "loss")),
    ("train_loss_step", "train", ("train", "loss")),
    ("train_loss_epoch", "train", ("train", "loss_epoch")),
    ("val_acc", "train", ("val", "acc")),
    ("val/acc", "train", ("val", "acc")),
    ("validation_acc_epoch", "val", ("val", "acc")),
    ("val_loss_step", "val", ("val", "loss_step")),
    ("test_loss", "train", ("test", "loss")),
    ("test/acc_epoch", "test", ("test", "acc")),
    ("loss_step", "train", ("train", "loss")),
    ("acc", "val", ("val", "acc")),
    ("lr-SGD", "train", ("train", "lr-SGD")),
    ("trainer_x", "train", ("train", "trainer_x")),  # 'trainer' is not the 'train' prefix
    ("val_acc/dataloader_idx_1", "val", ("val", "acc/dataloader_idx_1")),
])
def test_split(key: str, stage: str, expected: tuple[str, str]) -> None:
    assert split_metric_name(key, stage) == expected


def test_stage_type() -> None:
    assert [stage_type(s) for s in ("train", "sanity_check", "validate", "test", "predict",
                                    None)] == ["train", "val", "val", "test", "predict",
                                               "train"]


@given(st.text(min_size=1, max_size=30), st.sampled_from(["train", "val", "test"]))
def test_split_never_loses_the_name(key: str, stage: str) -> None:
    mtype, name = split_metric_name(key, stage)
    assert mtype in {"train", "val", "test"} and name
    assert name in key
