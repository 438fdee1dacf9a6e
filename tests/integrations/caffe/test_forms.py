"""Log forms the corpus does not contain, written out by hand from Caffe's sources."""

from __future__ import annotations

import math
from datetime import datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from integrations.caffe import (
    CaffeLogParser,
    Failed,
    Finished,
    Resumed,
    Snapshot,
    SolverParameters,
    TestResult,
    TrainIteration,
)

H = "I0101 10:00:00.000001  42 solver.cpp:218] "


def parse(lines: list[bytes | str], **kw: object) -> list:
    p = CaffeLogParser(**kw)  # type: ignore[arg-type]
    return p.feed_lines(lines) + p.close()


def test_pre_2014_test_score_form() -> None:
    evs = parse([H + "Iteration 500, Testing net (#0)", H + "Test score #0: 0.9785",
                 H + "Test score #1: 0.0727"])
    assert evs == [TestResult(500, 0, {"score_0": 0.9785, "score_1": 0.0727},
                              time=evs[0].time)]


OLD = [H + "Iteration 0, Testing net", H + "Test score #0: 0.1",
       H + "Iteration 100, lr = 0.01", H + "Iteration 100, loss = 2.3",
       H + "Iteration 200, lr = 0.01", H + "Iteration 200, loss = 1.9",
       H + "Iteration 250, Testing net", H + "Test loss: 0.5", H + "Test score #0: 0.8",
       H + "Iteration 300, lr = 0.001", H + "Iteration 300, loss = 1.5",
       H + "Snapshotting to lenet_iter_300", H + "Optimization Done."]


def test_caffe_before_2014_lr_before_loss_and_tests_without_a_net_number() -> None:
    """Old solver.cpp printed 'Iteration N, lr' before 'Iteration N, loss', 'Testing net'
    without '(#k)' and 'Test loss:'; each lr goes with its own iteration, line by line and
    in one block alike."""
    expected = [(TestResult, 0, None, None, {"score_0": 0.1}),
                (TrainIteration, 100, 2.3, 0.01, {}), (TrainIteration, 200, 1.9, 0.01, {}),
                (TestResult, 250, None, None, {"loss": 0.5, "score_0": 0.8}),
                (TrainIteration, 300, 1.5, 0.001, {})]
    by_line = CaffeLogParser(year=2013)
    whole = CaffeLogParser(year=2013)
    # a second run appended, without a test at iteration 0: iterations restart lower
    twice = OLD + [H + "Solving LeNet"] + OLD[2:]
    for events in (by_line.feed_lines(twice) + by_line.close(),
                   whole.feed_text("\n".join(twice) + "\n" + "x" * 600) + whole.close()):
        rows = [e for e in events if isinstance(e, (TrainIteration, TestResult))]
        assert [(type(e), e.iteration, getattr(e, "loss", None), getattr(e, "lr", None),
                 e.outputs) for e in rows] == expected + expected[1:]
        assert all(e.net == 0 for e in rows if isinstance(e, TestResult))


def test_test_nets_are_kept_apart() -> None:
    evs = parse([H + "Iteration 100, Testing net (#0)", H + "    Test net output #0: acc = 0.5",
                 H + "Iteration 100, Testing net (#1)", H + "    Test net output #0: acc = 0.7"])
    assert [(e.net, e.outputs) for e in evs] == [(0, {"acc": 0.5}), (1, {"acc": 0.7})]


def test_ansi_colours_mpi_prefix_crlf_and_bad_bytes() -> None:
    evs = parse([b"\x1b[0;32m" + (H + "Iteration 7, loss = 1.5").encode() + b"\x1b[0m\r\n",
                 b"[1,0]<stderr>:" + H.encode()
                 + b"    Train net output #0: l\xff = 2 (* 1 = 2 loss)",
                 (H + "Iteration 7, lr = 0.1\r").encode()])
    assert len(evs) == 1
    assert evs[0].iteration == 7 and evs[0].loss == 1.5 and evs[0].lr == 0.1
    assert evs[0].outputs == {"l\ufffd": 2.0}


def test_special_numbers() -> None:
    evs = parse([H + "Iteration 1, loss = -nan", H + "    Train net output #0: a = inf",
                 H + "    Train net output #1: b = 1.#QNAN",
                 H + "    Train net output #2: c = -1.#INF",
                 H + "Iteration 1, lr = 0.01"])
    (e,) = evs
    assert math.isnan(e.loss) and e.outputs["a"] == math.inf and math.isnan(e.outputs["b"])
    assert e.outputs["c"] == -math.inf


def test_wrap_inside_a_name_and_a_number() -> None:
    line = H + "    Train net output #0: a_long_output_name_for_wrapping = 0.123456789"
    line = line + " (* 1 = 0.123456789 loss)"
    for cut in (line.index("0.123456789") + 4, line.index("wrapping") + 3):
        evs = parse([H + "Iteration 3, loss = 1", line[:cut], line[cut:],
                     H + "Iteration 3, lr = 1"], wrap_width=cut)
        assert evs[0].outputs == {"a_long_output_name_for_wrapping": 0.123456789}
        assert evs[0].weights == {"a_long_output_name_for_wrapping": 1}


def test_a_log_with_wider_lines_is_not_hard_wrapped() -> None:
    """A whole line of exactly the wrap width followed by a Python layer's print: once a
    line wider than the width was seen, nothing is joined (line by line and in a block)."""
    tail = ".cpp:218] Iteration 20, loss = 0.5"
    loss = "I0101 10:00:00.000001  42 " + "s" * (100 - 26 - len(tail)) + tail
    assert len(loss) == 100
    lines = [H + "Creating layer " + "x" * 80, loss, "7 rois", H + "Iteration 20, lr = 0.1",
             "*** Aborted at 1 (unix time)"]
    for events in (parse(lines), parse(["\n".join(lines * 8)])):
        rows = [e for e in events if isinstance(e, TrainIteration)]
        assert rows[0].loss == 0.5 and rows[0].lr == 0.1
        assert any(isinstance(e, Failed) for e in events)
    joined = parse([loss, "7 rois", H + "Iteration 20, lr = 0.1"])  # no wider line: joined
    assert joined[0].loss == 0.57


def test_a_blank_line_fed_alone_ends_a_wrapped_line() -> None:
    tail = ".cpp:218] Iteration 20, loss = 0.5"
    loss = "I0101 10:00:00.000001  42 " + "s" * (100 - 26 - len(tail)) + tail
    p = CaffeLogParser(year=2020)
    evs = p.feed_lines([loss, "", "7 rois", H + "Iteration 20, lr = 0.1"]) + p.close()
    assert [(e.loss, e.lr) for e in evs] == [(0.5, 0.1)] and p.lines == 4


def test_year_header_and_new_year() -> None:
    evs = parse(["Log file created at: 2016/12/31 23:59:00",
                 "I1231 23:59:59.000000 9 solver.cpp:1] Iteration 1, loss = 1",
                 "I1231 23:59:59.000000 9 solver.cpp:1] Iteration 1, lr = 1",
                 "I0101 00:00:01.000000 9 solver.cpp:1] Iteration 2, loss = 1",
                 "I0101 00:00:01.000000 9 solver.cpp:1] Iteration 2, lr = 1"])
    assert [e.time for e in evs] == [datetime(2016, 12, 31, 23, 59, 59),
                                     datetime(2017, 1, 1, 0, 0, 1)]


def test_restore_snapshot_and_sigterm() -> None:
    evs = parse([
        H + "Restoring previous solver status from snap_iter_10.solverstate",
        H + "Snapshotting to binary proto file snap_iter_20.caffemodel",
        H + "Snapshotting solver state to binary proto file snap_iter_20.solverstate",
        "*** Aborted at 1500000000 (unix time) try \"date -d @1500000000\" if you are using GNU",
        "*** SIGTERM (@0x3e8000021a7) received by PID 8615 (TID 0x7f) from PID 8615; stack trace:"
        " ***",
        "    @     0x7f8f0 (unknown)"])
    assert evs[0] == Resumed("snap_iter_10.solverstate", "restore", evs[0].time)
    assert [(e.kind, e.iteration) for e in evs[1:3]] == [("weights", 20), ("solverstate", 20)]
    assert isinstance(evs[1], Snapshot)
    assert [e.reason for e in evs[3:]] == [
        'Aborted at 1500000000 (unix time) try "date -d @1500000000" if you are using GNU',
        "SIGTERM (@0x3e8000021a7) received by PID 8615 (TID 0x7f) from PID 8615"]
    assert all(isinstance(e, Failed) for e in evs[3:])


def test_older_snapshot_forms() -> None:
    """2014 named no format; BVLC's 2015 solver printed no space before the solver state's
    path (as in the corpus's qiexing log)."""
    evs = parse([H + "Snapshotting to lenet_iter_10000",
                 H + "Snapshotting solver state to lenet_iter_10000.solverstate",
                 H + "Snapshotting solver state to binary proto fileexamples/m/fkp_iter_5000"
                     ".solverstate"])
    assert [(e.path, e.kind, e.iteration) for e in evs] == [
        ("lenet_iter_10000", "weights", 10000),
        ("lenet_iter_10000.solverstate", "solverstate", 10000),
        ("examples/m/fkp_iter_5000.solverstate", "solverstate", 5000)]


def test_a_pause_inside_a_test_pass_keeps_its_net() -> None:
    """A live pipe flushes when the input pauses; a pass whose outputs are still to come
    keeps its iteration and net."""
    p = CaffeLogParser()
    evs = p.feed_lines([H + "Iteration 200, Testing net (#0)",
                        H + "    Test net output #0: acc = 0.5",
                        H + "Iteration 200, Testing net (#1)"])
    evs += p.flush()  # the test net computes for seconds: the input pauses here
    evs += p.feed_lines([H + "    Test net output #0: acc = 0.7"]) + p.close()
    assert [(e.iteration, e.net, e.outputs) for e in evs] == [
        (200, 0, {"acc": 0.5}), (200, 1, {"acc": 0.7})]


def test_fatal_line_and_solver_dump() -> None:
    evs = parse([H + "Initializing solver from parameters: ", "base_lr: 0.01", "stepvalue: 10",
                 "stepvalue: 20", "net: \"a b.prototxt\"", H + "Solving LeNet",
                 "F0101 10:00:00.000001  42 net.cpp:1] Check failed: x == y"])
    assert isinstance(evs[0], SolverParameters)
    assert evs[0].params == {"base_lr": 0.01, "stepvalue": [10, 20], "net": "a b.prototxt"}
    assert evs[-1] == Failed("Check failed: x == y", evs[-1].time)


def test_done_once_per_session() -> None:
    evs = parse([H + "Optimization stopped early.", H + "Optimization Done.",
                 "I0101 10:00:00.000001  42 caffe.cpp:1] Optimization Done."])
    assert evs == [Finished(True, evs[0].time)]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(max_size=300), max_size=30))
def test_garbage_never_raises(chunks: list[bytes]) -> None:
    p = CaffeLogParser()
    for c in chunks:
        p.feed_bytes(c)
        p.flush()
    p.close()


@settings(max_examples=100, deadline=None)
@given(st.lists(st.sampled_from([
    H + "Iteration 5, loss = 1", H + "    Train net output #0: x = 2", H + "Iteration 5, lr = 3",
    H + "Iteration 5, Testing net (#0)", H + "    Test net output #0: y = 4", "garbage ]",
    H + "Iteration 6, lr = 2", H + "Iteration 6, Testing net", H + "Test loss: 0.5",
    H + "Solving N", H + "Optimization Done.", ""]), max_size=40), st.integers(1, 7))
def test_block_boundaries_do_not_matter(lines: list[str], cut: int) -> None:
    data = "".join(x + "\n" for x in lines).encode()
    whole = CaffeLogParser(year=2020)
    expected = whole.feed_bytes(data) + whole.close()
    pieces = CaffeLogParser(year=2020)
    got = []
    start = 0
    for i in range(len(lines)):  # feed in groups of whole lines
        if i % cut == 0 and i:
            end = sum(len(x) + 1 for x in lines[:i])
            got += pieces.feed_bytes(data[start:end])
            start = end
    got += pieces.feed_bytes(data[start:]) + pieces.close()
    assert got == expected
