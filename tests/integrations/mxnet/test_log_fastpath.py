"""``MXNetLogParser``'s fast path for batch lines gives what the general code gives."""

from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st

from integrations.mxnet_log import MXNetLogParser

PIECES = {
    "prefix": ["", "INFO:root:", "[1,0]<stderr>:INFO:root:", "[1,2]<stderr>:", "Rank[0] ",
               "Epoch[1] ", "2018-10-11 09:16:49,200 INFO - "],
    "epoch": ["Epoch[3]", "Epoch[12]", "Epoch[x]", "Epoch [3]"],
    "rank": ["", " Rank[0]", " Rank[1]", " Rank[00]", "  Rank[0]"],
    "batch": [" Batch [5]", " Batch[50]", " Batch [0-20]", "", " Batch  [5]", "Batch[5]"],
    "tail": ["\tSpeed: 707.55 samples/sec", " speed: 3 samples/sec", "\tTrain-accuracy=0.19",
             "\ta=0.5", "\tb=nan", "\tc=1,", "\td=x", " Loss[3.5]", "\tTime cost=5", " Rank[0]",
             "\t=4", "\te:f=1", "\tg[=2", "\tTrain-a=1", "\ta=3", " ", "\xa0h=1", "\tj=1=2"],
}
LINE = st.builds(lambda p, e, r, b, t: p + e + r + b + "".join(t),
                 *(st.sampled_from(PIECES[k]) for k in ("prefix", "epoch", "rank", "batch")),
                 st.lists(st.sampled_from(PIECES["tail"]), max_size=8))


def _plain(event: object) -> tuple:
    def norm(v: object) -> object:
        if isinstance(v, float) and math.isnan(v):
            return "nan"
        return [(k, norm(x)) for k, x in v.items()] if isinstance(v, dict) else v

    return (type(event).__name__, [norm(getattr(event, f)) for f in event.__slots__])


@settings(max_examples=500, deadline=None)
@given(LINE)
def test_fast_batch_path_matches_the_general_one(line: str) -> None:
    fast, general = [], []
    if MXNetLogParser()._fast_batch(line, fast):
        MXNetLogParser()._line(line, general)
        assert [_plain(e) for e in fast] == [_plain(e) for e in general]


def test_the_fast_path_takes_the_usual_forms() -> None:
    for line in ["INFO:root:Epoch[0] Batch [50]\tSpeed: 707.55 samples/sec\tTrain-accuracy=0.2",
                 "[1,0]<stderr>:INFO:root:Epoch[70] Rank[0] Batch[700]\trmse=0.02\tlr=0.34",
                 "[1,0]<stderr>:INFO:root:Epoch[70] Batch[800] Loss[3.097]"]:
        out: list = []
        assert MXNetLogParser()._fast_batch(line, out) and len(out) == 1
