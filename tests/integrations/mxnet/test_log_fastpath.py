"""``MXNetLogParser.feed_bytes`` (one regular expression over a block) gives what the general
per-line code gives."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from integrations.mxnet_log.parser import EPOCH_LINES, MXNetLogParser

pytestmark = pytest.mark.usefixtures("block_path")  # C and regex: see conftest.py

PIECES = {
    "prefix": ["", "INFO:root:", "[1,0]<stderr>:INFO:root:", "[1,2]<stderr>:", "[1,00]<stdout>:",
               "Rank[0] ", "Epoch[1] ", "2018-10-11 09:16:49,200 INFO - ", "ERROR ", "time cost ",
               "[\u0661,0]<stderr>:", "[1,0]<stderr>:[1,3]<stderr>:"],
    "epoch": ["Epoch[3]", "Epoch[12]", "Epoch[x]", "Epoch [3]", "Epoch[\u0663]"],
    "rank": ["", " Rank[0]", " Rank[1]", " Rank[00]", "  Rank[0]"],
    "batch": [" Batch [5]", " Batch[50]", " Batch [0-20]", "", " Batch  [5]", "Batch[5]",
              " Batch [1-]"],
    "tail": ["\tSpeed: 707.55 samples/sec", " speed: 3 samples/sec", "\tSpeed: \xa05 samples/sec",
             "\tSpeed: x samples/sec", "\tTrain-accuracy=0.19", "\ta=0.5", "\tb=nan", "\tc=1,",
             "\td=x", " Loss[3.5]", " Loss[ 3]", " Loss[x]", "\tLoss[2]", "\tTime cost=5",
             " Time cost=5", " Time cost=5,", " Rank[0]", "\tRank[2]", "\t=4", "\te:f=1",
             "\tg[=2", "\tTrain-a=1", "\ta=3", " ", "\xa0h=1", "\tj=1=2", "\tTrain-=1",
             "\tValidation-v=2", " Validation-v=2", " Train-t=1", "\tValidation-=1",
             " Resetting Data Iterator", "\tk=1_0", "\tl=\u0661", "\tm=-inf", "\tTrain-Train-n=1",
             "\tTrain-Validation-o=1", "\t", "\t\t", "\tp=1\x0bq=2", "\tSaved checkpoint to x"],
}
LINE = st.builds(lambda p, e, r, b, t: p + e + r + b + "".join(t),
                 *(st.sampled_from(PIECES[k]) for k in ("prefix", "epoch", "rank", "batch")),
                 st.lists(st.sampled_from(PIECES["tail"]), max_size=8))
OTHER = st.sampled_from([
    "Traceback (most recent call last):", '  File "train.py", line 1, in <module>', "",
    "\tx = 1", "ValueError: bad shape", "[1,0]<stderr>:Traceback (most recent call last):",
    "Namespace(lr=0.1, mode='hybrid')", 'Saved checkpoint to "out/m-0001.params"',
    "INFO:root:[Epoch 3] train=0.76 val=0.71 loss=0.67 time: 16.2", "nothing to see", "\r",
    "INFO:root:Epoch[2] Batch [7]\tSpeed: 1.5 samples/sec\tacc=0.25\tce=1.5\ttop5=0.5"])


def _plain(event: object) -> tuple:
    def norm(v: object) -> object:
        if isinstance(v, float) and math.isnan(v):
            return "nan"
        return [(k, norm(x)) for k, x in v.items()] if isinstance(v, dict) else v

    fields = getattr(event, "_fields", None) or event.__slots__  # type: ignore[attr-defined]
    return (type(event).__name__, [norm(getattr(event, f)) for f in fields])


def _general(text: str) -> tuple[list[tuple], int, bool]:
    """What _line makes of the lines of ``text``, one by one: events, lines, traceback."""
    parser, out = MXNetLogParser(), []
    lines = text.replace("\r\n", "\n").split("\n")
    if not lines[-1]:
        lines.pop()
    for number, line in enumerate(lines):
        parser.lines = number  # the line numbers feed_bytes gives (Start, Rewind)
        parser._line(line, out)
    return [_plain(e) for e in out], len(lines), parser._traceback


def _blocks(*blocks: str) -> tuple[list[tuple], int, bool]:
    parser, out = MXNetLogParser(), []
    for block in blocks:
        out += parser.feed_bytes(block.encode())
    return [_plain(e) for e in out], parser.lines, parser._traceback


@settings(max_examples=600, deadline=None)
@given(LINE)
def test_a_line_gives_what_the_general_code_gives(line: str) -> None:
    assert _blocks(line) == _general(line)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(LINE, OTHER), max_size=12), st.booleans(), st.integers(0, 12))
def test_a_block_gives_what_the_general_code_gives(lines: list[str], newline: bool,
                                                   cut: int) -> None:
    text = "\n".join(lines) + ("\n" if newline and lines else "")
    assert _blocks(text) == _general(text)
    # cut in two at a line end: the traceback (and nothing else) carries over
    head = "".join(line + "\n" for line in lines[:cut])
    if text.startswith(head):
        assert _blocks(head, text[len(head):]) == _general(text)


def test_a_speed_float_does_not_read_is_read_by_the_general_code_alone() -> None:
    # the fast path once recorded the batch before float() refused the speed, and the
    # general code then took the same batch, reported again, for a restart (a Rewind)
    for line in ["Epoch[3] Batch [5]\tSpeed: x samples/sec\tValidation-v=2",
                 "Epoch[3] Batch [5]\tSpeed: 1e samples/sec\tacc=0.5\tce=1",
                 "Epoch[0] Batch [1]\ta=1\nEpoch[0] Batch [2]\tSpeed: x samples/sec\ta=2"]:
        assert _blocks(line) == _general(line), line
        assert not [e for e in _blocks(line)[0] if e[0] == "Rewind"], line


def test_the_usual_forms_take_the_fast_path() -> None:
    general = EPOCH_LINES.groups  # the last group: a line for the general code
    for line in ["INFO:root:Epoch[0] Batch [50]\tSpeed: 707.55 samples/sec\tTrain-accuracy=0.2",
                 "[1,0]<stderr>:INFO:root:Epoch[70] Rank[0] Batch[700]\trmse=0.02\tlr=0.34",
                 "[1,0]<stderr>:INFO:root:Epoch[70] Batch[800] Loss[3.097]",
                 "2018-10-11 09:16:49,200 INFO - Epoch[5] Batch [0-20]\tSpeed: 25.77 samples/sec"
                 "\tM0_RPNAcc=0.99\tM0_RPNAccBG=0.99\tM0_RPNAccFG=0.91",
                 "INFO:root:Epoch[0] Train-accuracy=0.93", "Epoch[0] Validation-accuracy=0.98",
                 "INFO:root:Epoch[90] Time cost=74.400",
                 "INFO:root:Epoch[9] Resetting Data Iterator",
                 "[1,0]<stderr>:INFO:root:Epoch[3]\tSpeed: 3113.2 samples/sec"]:
        m = EPOCH_LINES.match("\n" + line)
        assert m is not None and m.group(general) is None, line
