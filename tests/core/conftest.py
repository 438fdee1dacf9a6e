"""Fixtures shared by the core tests: a run that is always ended, and non-strict mode."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import pytest

import em_core as em
from em_core import _git, _platform, errors, hparams


@pytest.fixture
def run() -> Iterator[em.Run]:
    """A fresh run named 'test'; finished after the test if it is still open."""
    r = em.create_run(name="test")
    assert isinstance(r, em.Run)
    yield r
    r.finish()


@pytest.fixture
def lenient(monkeypatch: pytest.MonkeyPatch) -> None:
    """Non-strict mode (warn instead of raise) with em's warn-once memory cleared."""
    monkeypatch.setenv("EM_STRICT", "0")
    monkeypatch.setattr(errors, "_warned", set())
    monkeypatch.setattr(hparams, "_warned_types", set())


_collected: dict[str, Any] = {}


@pytest.fixture
def fast_platform(monkeypatch: pytest.MonkeyPatch) -> None:
    """create_run with platform and git collected once per session, not once per run.

    Collecting them runs git and reads package metadata (tens of ms on a busy machine);
    modules that create hundreds of runs to test other things use this. The records are
    still real (copied from one real collection); test_platform_git and test_run test the
    collection itself.
    """
    if not _collected:
        _collected["platform"] = _platform.collect_platform()
        _collected["git"] = _git.collect_git()
    monkeypatch.setattr(_platform, "collect_platform",
                        lambda: copy.deepcopy(_collected["platform"]))
    monkeypatch.setattr(_git, "collect_git", lambda: copy.deepcopy(_collected["git"]))
