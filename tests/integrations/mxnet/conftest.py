"""The two ways ``em mxnet``'s block path runs: with the C matcher and search of
integrations/mxnet_log/_rowscan.c (built by pip install: it must be here), and with regular
expressions alone (where no compiler was found). Modules that test the block path run every
test both ways with ``pytestmark = pytest.mark.usefixtures("block_path")``."""

from __future__ import annotations

import pytest

from integrations.mxnet_log import forms, layouts


@pytest.fixture(params=["c", "regex"])
def block_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "c":
        assert layouts.scan is not None and forms.native is not None, \
            "integrations.mxnet_log._rowscan is not built"
    else:
        monkeypatch.setattr(layouts, "scan", None)
        monkeypatch.setattr(forms, "native", None)
    return str(request.param)
