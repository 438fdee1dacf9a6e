"""The parser's fast paths give what the general code gives (they exist only for speed)."""

from __future__ import annotations

import ast

from hypothesis import given, settings
from hypothesis import strategies as st

from integrations.caffe import CaffeLogParser, parse_prototxt
from integrations.caffe._prototxt import PrototxtError

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
        assert fast._time(text) == slow._time_slow(text), text
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
