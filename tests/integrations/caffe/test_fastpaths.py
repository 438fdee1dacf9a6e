"""The parser's fast paths give what the general code gives (they exist only for speed)."""

from __future__ import annotations

import ast

from hypothesis import given, settings
from hypothesis import strategies as st

from integrations.caffe import CaffeEvent, CaffeLogParser, parse_prototxt
from integrations.caffe.prototxt import PrototxtError

STAMP = st.builds(
    lambda lvl, mo, d, h, mi, s, us: f"{lvl}{mo}{d} {h}:{mi}:{s}.{us} 7 solver.cpp:1] x",
    st.sampled_from("IWEF"), st.sampled_from(["00", "01", "02", "12", "13", "1\u0663"]),
    st.sampled_from(["00", "01", "28", "29", "31", "32"]),
    st.sampled_from(["00", "23", "24"]), st.sampled_from(["00", "59", "60"]),
    st.sampled_from(["00", "59", "60", "6"]),
    st.sampled_from(["000000", "123456", "12345Z", "12345", "1234567"]))


@settings(max_examples=400, deadline=None)
@given(stamps=st.lists(STAMP, min_size=1, max_size=6),
       year=st.sampled_from([5, 2016, 2020, 9999, 12345]))
def test_timestamp_fast_path_matches_the_general_one(stamps: list[str], year: int) -> None:
    fast, slow = CaffeLogParser(year=year), CaffeLogParser(year=year)
    for text in stamps:
        assert fast._time(text) == slow._time_other_layout(text), text
        assert (fast.year, fast._last_month) == (slow.year, slow._last_month)


def test_a_wrapped_line_and_a_parameter_dump_inside_one_block() -> None:
    h = "I0101 10:00:00.000001  42 solver.cpp:218] "
    lines = [h + "Initializing solver from parameters: ", "base_lr: 0.01", "max_iter: 9",
             h + "Iteration 1, loss = 1", (h + "    Train net output #0: l = 2").ljust(60),
             h + "Iteration 1, lr = 0.5"]
    whole = CaffeLogParser(wrap_width=60)
    by_line = CaffeLogParser(wrap_width=60)
    evs = whole.feed_text("\n".join(lines) + "\n") + whole.close()
    assert evs == by_line.feed_lines(lines) + by_line.close()
    assert evs[0].params == {"base_lr": 0.01, "max_iter": 9}
    assert (evs[1].loss, evs[1].outputs, evs[1].lr) == (1.0, {"l": 2.0}, 0.5)


TOKENS = st.sampled_from(["a", "b_c", ":", "{", "}", "<", ">", "[", "]", ",", ";", '"s\\n"',
                          "'q'", '"open', "# c", "\n", " ", "\t", "1", "-2.5e3", "0x1F",
                          "\xa0", "\r", '"\\101"'])


@settings(max_examples=300, deadline=None)
@given(st.lists(TOKENS, max_size=30))
def test_prototxt_errors_name_the_offending_character(tokens: list[str]) -> None:
    text = "".join(tokens)
    try:
        parse_prototxt(text, source="S")
    except PrototxtError as exc:
        bad = str(exc).rsplit("unexpected character ", 1)
        if len(bad) == 2:  # the character named is really in the text, and not a blank
            char = ast.literal_eval(bad[1])
            assert char in text and char not in " \t\r\f\v"


# ---- the block path (CaffeLogParser._feed_block) against the per-line code
def _pick(draw: st.DrawFn, usual: str, *unusual: str) -> str:
    """Mostly the usual form, sometimes one that the block path must leave alone or read."""
    return draw(st.sampled_from([usual] * (2 * len(unusual) or 1) + list(unusual)))


def _head(draw: st.DrawFn) -> str:
    day = _pick(draw, "0101", "1231", "0229", "0230", "1\u06631")
    clock = _pick(draw, "10:00:00.000001", "23:59:59.999999", "24:00:00.000000",
                  "10:00:00.00001Z", "10:00:00.0000011")
    where = _pick(draw, " 42 solver.cpp:218", "  7 solver.cpp:218", " net output #1 x",
                  " Iteration 5, x", " 42 a,lr=1", " 42 x] y", " 42 so\nlver.cpp:218")
    return f"{_pick(draw, 'I', 'W', 'E', 'F')}{day} {clock}{where}] "


def _value(draw: st.DrawFn) -> str:
    return draw(st.sampled_from(["0.5", "1e-05", "7", "-2.5"])) + _pick(
        draw, "", "nan", "-nan", "inf", "1.#QNAN", "-1.#IND", "x", "_0", "\xa0", " ")


OUTPUTS = st.tuples(  # name, loss weight
    st.sampled_from(["loss", "accuracy/top-1", "loss: 50%-fire-rate", "a=b", "x # y", " lead",
                     "Iteration 5", "net output #2", "loss (* 1"]),
    st.sampled_from(["", " (* 1 = 0.5 loss)", " (* 0.3 = nan loss)"]))


@st.composite
def _display_block(draw: st.DrawFn, outputs: list[tuple[str, str]]) -> list[str]:
    it = _pick(draw, "100", "0", "\u0663")
    extra = _pick(draw, "", " (3.5 iter/s, 2.8s/10 iters)", " (0.3 s)", " (-nan iter/s, 1 s)",
                  " (a = 1)", " (#2)", " ()", " (x, 2 iter/s)")
    rank = _pick(draw, "", "    [0.0] ")
    lines = [f"{_head(draw)}{rank}Iteration {it}{extra}, loss = {_value(draw)}"
             + _pick(draw, "", " x", ", lr = 1")]
    for k, (name, weight) in enumerate(outputs):
        weight = _pick(draw, weight, " (* x = 1 loss)", " (* 1.#IND = 1 loss)", " (* 1 = loss)",
                       " (* 1 = 2 3)")
        pre = _pick(draw, "    ", "     [0.0]     ", "  ")
        lines.append(f"{_head(draw)}{pre}Train net output #{k}: {name} = {_value(draw)}{weight}")
    tail = _pick(draw, "", ", m = 0.9, gs = 1", " # 3", " net output #1: a = 2")
    lines.append(f"{_head(draw)}{rank}Iteration {it}, lr = {_value(draw)}{tail}")
    return lines


@st.composite
def _other_lines(draw: st.DrawFn) -> list[str]:
    head = _head(draw)
    return draw(st.sampled_from([
        [f"{head}Iteration 7, Testing net (#0)",
         f"{head}    Test net output #0: accuracy = {_value(draw)}",
         f"{head}    Test net output #1: loss = 2.3 (* {_value(draw)} = 2.3 loss)"],
        [f"{head}Iteration 7, Testing net (#1) = 3",
         f"{head}     (0.0)    Test net output #0: a = 1"],
        [f"{head}Iteration 9, loss = 3"], [f"{head}Iteration 9, lr = 0.1"],
        [f"{head}Iteration 11, lr = 0.2"],  # before 2014: before its loss line
        [f"{head}Iteration 7, Testing net", f"{head}Test loss: 0.3",
         f"{head}Test score #0: 0.9"],
        [f"{head}    Train net output #0: a = 1 (* 2 = 2 loss)"],
        [f"{head}    Test net output #0: a = {_value(draw)}"],
        [f"{head}Solving LeNet"], [f"{head}[0.0] Solving LeNet"],
        [f"{head}Snapshotting to binary proto file x_iter_5.caffemodel"],
        [f"{head}Optimization Done."], [f"{head}Resuming from a_iter_4.solverstate"],
        [f"{head}Initializing solver from parameters: ", "base_lr: 0.01", "max_iter: 9",
         "net_param {", "  name: \"x\"", "}", ""],
        [f"{head}Initializing solver from parameters: ", "bad {"],
        [f"{head}Test score #0: 0.97"], [f"{head}This is NVCaffe 0.17.3 started at Thu May 19 "
                                         "23:35:46 2022"],
        ["Log file created at: 2015/08/21 09:21:08"], [f"{head}Setting up conv1"],
        [f"{head}Top shape: 64 3 (9)"], ["  layer {", "    name: \"conv1\"", "  }"], [""],
        [f"{head}MultiStep Status: Iteration 32000, step = 1"],
        ["F0417 23:51:48.103909 10742 io.cpp:36] Check failed: fd != -1"],
        ["*** Check failure stack trace: ***"], ["*** Aborted at 1 (unix time)"],
        [f"[1,0]<stderr>:{head}Iteration 5, loss = 1"], [f"\x1b[31m{head}Solving x\x1b[0m"],
        [f"{head}", f"{head}]"], ["Logging output to x.log"],
    ]))


@st.composite
def _logs(draw: st.DrawFn) -> tuple[list[str], int | None]:
    wrap = draw(st.sampled_from([None, 100, 60, 72]))
    outputs = draw(st.lists(OUTPUTS, max_size=3))
    size = draw(st.integers(8, 60))
    lines: list[str] = []
    while len(lines) < size:
        if draw(st.integers(0, 2)):  # runs of display blocks, sometimes with other outputs
            if not draw(st.integers(0, 9)):
                outputs = draw(st.lists(OUTPUTS, max_size=3))
            lines += draw(_display_block(outputs))
        else:
            lines += draw(_other_lines())
    lines = "\n".join(lines).split("\n")  # a line end inside a head makes two lines
    if wrap:  # lines exactly as wide as wrap_width, and the rest of a line wrapped there
        for i in draw(st.lists(st.integers(0, len(lines) - 1), max_size=4)):
            line = lines[i]
            lines[i] = line[:wrap].ljust(wrap)
            if len(line) > wrap and draw(st.booleans()):
                lines.insert(i + 1, line[wrap:])
    return lines, wrap


def _state(p: CaffeLogParser) -> str:
    return repr((p.year, p._last_month, p._iteration, p._train, p._test, p._held, p._params,
                 p._in_session, p._finished, p.lines))


@settings(max_examples=400, deadline=None)
@given(log=_logs(), cuts=st.lists(st.integers(0, 80), max_size=4), end=st.sampled_from(["", "\n"]),
       flush=st.booleans())
def test_block_path_matches_the_per_line_code(log: tuple[list[str], int | None], cuts: list[int],
                                              end: str, flush: bool) -> None:
    lines, wrap = log
    whole = CaffeLogParser(year=2020, wrap_width=wrap)  # text at once: the block path
    by_line = CaffeLogParser(year=2020, wrap_width=wrap)  # the per-line code
    got: list[CaffeEvent] = []
    want: list[CaffeEvent] = []
    start = 0
    for cut in [*sorted(cut for cut in cuts if cut < len(lines)), len(lines)]:  # in pieces
        if cut <= start:
            continue
        piece = lines[start:cut]
        last = cut == len(lines) and piece[-1]  # a last line may lack its line ending
        got += whole.feed_text("\n".join(piece) + (end if last else "\n"))
        by_line._feed_lines(piece, want)
        by_line.lines += len(piece)
        if flush:
            got += whole.flush()
            want += by_line.flush()
        start = cut
    got += whole.close()
    want += by_line.close()
    assert [repr(e) for e in got] == [repr(e) for e in want]  # repr: nan == nan
    assert _state(whole) == _state(by_line)
