"""The block path of ``em mxnet`` (runs of batch reports in one layout, read and logged many
at a time) gives what the per-line reference path gives: the same events, the same metric
records."""

from __future__ import annotations

import math
import re
import struct
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import em_core as em
from integrations.mxnet_log import MXNetRecorder
from integrations.mxnet_log.events import BatchRows
from integrations.mxnet_log.layouts import layout_of
from integrations.mxnet_log.parser import MXNetLogParser
from tests.conftest import SHARED
from tests.integrations.mxnet.test_log_fastpath import LINE, OTHER, _blocks, _general

pytestmark = pytest.mark.usefixtures("block_path")  # C and regex: see conftest.py

CORPUS = sorted((SHARED / "corpus" / "mxnet").glob("*.log"))

# Batch lines of a few layouts, and lines that look like them but are not read the same way
TEMPLATES = [
    "INFO:root:Epoch[{e}] Batch [{k}]\tSpeed: {v} samples/sec\tTrain-accuracy={v}",
    "2018-10-11 09:16:{k},200 INFO - Epoch[{e}] Batch [0-{k}]\tSpeed: {v} samples/sec"
    "\tM0_Acc={v}\tM0_L1={v}\tTrain-M1_Acc={v}",
    "INFO:root:Epoch[{e}] Batch [{k}]\tSpeed: {v} samples/sec\ttop1-err={v}\tlr={v}",
    "[1,0]<stderr>:INFO:root:Epoch[{e}] Batch[{k}] Loss[{v}]\n"
    "[1,0]<stderr>:INFO:root:Epoch[{e}] Rank[0] Batch[{k}]\trmse={v}\tlr={v}",
    "Epoch[{e}] Batch [{k}]\tSpeed: {v} samples/sec",
    "Epoch[{e}] Batch [{k}]",
    "Epoch[{e}] Batch [{k}]\tSpeed: {v} samples/sec\tsamples_per_sec={v}",
    "Epoch[{e}] Batch [{k}]\ta={v}\tTrain-a={v}",
]
VALUES = ["0.5", "12", "-3.25e-2", "nan", "inf", "1_0", "x", "None", "0.5,", "1e", "Traceback"]
ODD = ["[1,3]<stderr>:INFO:root:Epoch[{e}] Batch[{k}] Loss[{v}]",
       "INFO:root:Epoch[{e}] Batch [{k}]\tSpeed: {v} samples/sec\tTrain-accuracy={v}\tx=1",
       "INFO:root:Epoch[{e}] Train-accuracy={v}", "INFO:root:Epoch[{e}] Time cost={v}",
       "INFO:root:Epoch[{e}] Batch [{k}]\tSpeed: {v} samples/sec\tTrain-accuracy={v} Saved",
       "Start training Epoch[{e}] Batch [{k}]\tSpeed: {v} samples/sec",
       "WARN:root:Epoch[{e}] Batch [{k}]\tSpeed: {v} samples/sec\tTrain-accuracy={v}"]


@st.composite
def _logs(draw: st.DrawFn) -> str:
    """Runs of one or two layouts, epochs and batches mostly rising (sometimes not), values
    mostly numbers, other lines between."""
    templates = draw(st.lists(st.sampled_from(TEMPLATES + ODD), min_size=1, max_size=2))
    epoch, batch, lines = 0, 0, []
    for _ in range(draw(st.integers(1, 25))):
        kind = draw(st.integers(0, 9))
        if kind == 0:
            lines.append(draw(st.one_of(LINE, OTHER)))
            continue
        if kind == 1:
            epoch, batch = draw(st.integers(0, epoch + 1)), draw(st.integers(0, 30))
        elif kind == 2:
            epoch, batch = epoch + 1, 0
        else:
            batch += draw(st.integers(0, 20))
        value = draw(st.sampled_from(VALUES)) if draw(st.integers(0, 6)) == 0 else \
            str(draw(st.floats(allow_nan=False, width=32)))
        lines.append(draw(st.sampled_from(templates)).format(e=epoch, k=batch, v=value))
    return "\n".join(lines) + "\n"


def _split(text: str, cut: int) -> list[str]:
    """``text`` in two blocks of whole lines, at line ``cut``."""
    lines = text[:-1].split("\n")  # text ends with '\n'
    return ["".join(line + "\n" for line in part) for part in (lines[:cut], lines[cut:])]


@settings(max_examples=150, deadline=None)
@given(_logs(), st.integers(0, 50))
def test_layout_runs_give_what_the_general_code_gives(text: str, cut: int) -> None:
    assert _blocks(text) == _general(text)
    assert _blocks(*_split(text, cut)) == _general(text)


def test_the_corpus_takes_the_block_path_and_gives_the_same_events() -> None:
    rows = 0
    for path in CORPUS:
        text = path.read_text(encoding="utf-8", errors="replace")
        assert _blocks(text) == _general(text), path.name
        rows += sum(len(e.batches) for e in MXNetLogParser().feed_block(path.read_bytes())
                    if isinstance(e, BatchRows))
    assert rows > 10_000  # most batch reports of the corpus come as rows


def _records(run: em.Run) -> list[tuple[str, tuple[tuple[str, object], ...], int, int | None]]:
    def same(v: float) -> object:
        return "nan" if isinstance(v, float) and math.isnan(v) else v

    return [(r.type, tuple((k, same(v)) for k, v in r.values.items()), r.step, r.epoch)
            for r in run.metric_records()]


def _reference(data: bytes) -> em.Run:
    """Per line, per event: MXNetLogParser.feed and MXNetRecorder.handle."""
    run = em.create_run(name="reference")
    recorder = MXNetRecorder(run)
    lines = data.decode("utf-8", "replace").replace("\r\n", "\n").split("\n")
    for line in lines[:-1] if lines[-1] == "" else lines:
        for event in recorder.parser.feed(line):
            recorder.handle(event)
    recorder.finish(returncode=0)
    return run


def _blockwise(*blocks: bytes) -> em.Run:
    run = em.create_run(name="blocks")
    recorder = MXNetRecorder(run)
    for block in blocks:
        recorder.feed(block)
    recorder.finish(returncode=0)
    return run


@pytest.mark.parametrize("path", CORPUS, ids=lambda p: p.name[:40])
def test_corpus_records_are_those_of_the_per_event_path(path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(path.parent)  # checkpoints are looked up here (and do not exist)
    data = path.read_bytes()
    reference = _reference(data)
    whole = _blockwise(data)
    assert _records(whole) == _records(reference)
    assert whole.hparams.as_dict() == reference.hparams.as_dict()
    lines = data.split(b"\n")
    half = len(lines) // 2
    assert _records(_blockwise(b"\n".join(lines[:half]) + b"\n", b"\n".join(lines[half:]))) \
        == _records(reference)


@settings(max_examples=40, deadline=None)
@given(_logs())
def test_recorded_rows_are_those_of_the_per_event_path(text: str) -> None:
    data = re.sub(r"\r", "", text).encode()
    assert _records(_blockwise(data)) == _records(_reference(data))


@pytest.mark.parametrize("line", ["Epoch[3]\tValidation-=1", "Epoch[3] Validation-=1",
                                  "Epoch[2] Train-=0.5", "Epoch[3] Batch [5]\tTrain-=1",
                                  "Epoch[3] Batch [5]\tTrain-=1\tTrain-acc=0.5\tlr=0.1"])
def test_a_prefix_without_a_name_is_no_metric(line: str) -> None:
    """'Validation-=1' (or 'Train-=1' in a batch line) names nothing: both paths skip it
    (an empty name was passed to run.log, which refuses it: an error under EM_STRICT,
    found by the test above)."""
    data = (line + "\nEpoch[3]\tValidation-acc=0.5\n").encode()
    assert _records(_blockwise(data)) == _records(_reference(data))
    run = _blockwise(data)
    assert [p["value"] for p in run.metrics["val"]] == [{"acc": 0.5}]


def test_the_c_matcher_is_built_from_this_source() -> None:
    from integrations.mxnet_log import _rowscan

    built = Path(_rowscan.__file__).stat().st_mtime
    source = Path(__file__).resolve().parents[3] / "integrations" / "mxnet_log" / "_rowscan.c"
    # whole seconds: the build copies the module with its time rounded down
    assert built >= int(source.stat().st_mtime), \
        "integrations/mxnet_log/_rowscan.c changed after it was built: pip install -e . again"


def test_a_text_the_c_matcher_cannot_read_goes_the_regex_way(block_path: str) -> None:
    """Characters stored wider than a byte (a CJK word in a line) leave runs to the regular
    expressions; the events are the same."""
    lines = "".join(f"INFO:root:Epoch[0] Batch [{k}]\tSpeed: 9.5 samples/sec\tacc=0.{k}\n"
                    for k in range(1, 9))
    text = "INFO:root:开始训练\n" + lines
    assert _blocks(text) == _general(text)
    rows = [e for e in MXNetLogParser().feed_block(text.encode()) if isinstance(e, BatchRows)]
    assert sum(len(e.batches) for e in rows) >= 7


_NUMBERS = st.one_of(st.floats(allow_nan=False).map(repr),
                     st.tuples(st.floats(-1e6, 1e6), st.integers(0, 17)).map(
                         lambda t: f"{t[0]:.{t[1]}f}"),
                     st.tuples(st.floats(-1e30, 1e30), st.integers(0, 17)).map(
                         lambda t: f"{t[0]:.{t[1]}e}"),
                     st.from_regex(r"[-+]?[0-9]{0,20}(\.[0-9]{0,20})?([eE][-+]?[0-9]{1,3})?",
                                   fullmatch=True).filter(bool))


@settings(max_examples=200, deadline=None)
@given(st.lists(_NUMBERS, min_size=1, max_size=30))
def test_the_c_matcher_reads_numbers_as_float_does(numbers: list[str]) -> None:
    """Each printed number becomes the double float() makes of it (or, where float() raises,
    the run goes to the per-line path), bit for bit."""
    from integrations.mxnet_log._rowscan import scan  # the C matcher itself, both params

    layout = layout_of(["Epoch[0] Batch [1]\tv=0.5"])
    assert layout is not None and layout.program is not None
    text = "".join(f"\nEpoch[0] Batch [{k + 1}]\tv={n}" for k, n in enumerate(numbers))
    start, end, cols = scan(text, 0, layout.program)
    assert (start, end) == (0, len(text))
    try:
        expected = [float(n) for n in numbers]
    except ValueError:
        assert cols is None
        return
    assert [struct.pack("<d", v) for v in cols[2]] == [struct.pack("<d", v) for v in expected]


def test_a_batch_before_an_epoch_line_s_step_then_the_next_epoch() -> None:
    """An epoch line recorded at step 1 (no batch lines yet), then batch 0 of that epoch
    (after it: step 2), then batch 0 of the next epoch: a step after both, as the per-event
    path gives (the block path once kept the next epoch on the same step)."""
    text = (b"INFO:root:Epoch[1] Train-accuracy=0.5\n"
            b"INFO:root:Epoch[1] Batch [0]\tSpeed: 0.5 samples/sec\tTrain-accuracy=0.5\n"
            b"INFO:root:Epoch[2] Batch [0]\tSpeed: 0.5 samples/sec\tTrain-accuracy=0.5\n")
    steps = [(r.step, r.epoch) for r in _blockwise(text).metric_records()]
    assert steps == [(1, 1), (2, 1), (3, 2)]
    assert _records(_blockwise(text)) == _records(_reference(text))
