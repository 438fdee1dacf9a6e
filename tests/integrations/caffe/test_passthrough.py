"""The two-process pipe behind ``em caffe`` and ``em mxnet``: the output never waits for the
recorder, the log copy becomes ``console.log``, and each side survives the other's end."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import em_core as em
from integrations._logstream import CONSOLE_LOG, record

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]
CORPUS = REPO.parent / "shared" / "corpus" / "caffe"
QIEXING = CORPUS / "qiexing__caffe-regression__caffe.log"


def em_caffe(*args: str) -> list[str]:
    return [sys.executable, "-m", "integrations.caffe", *args]


def env() -> dict[str, str]:
    e = dict(os.environ)
    e["PYTHONPATH"] = os.pathsep.join([str(REPO), e.get("PYTHONPATH", "")])
    return e


def runs(tmp_path: Path) -> Path:
    return tmp_path / "runs"


class Blocks:
    """A sink that records what it gets; its first feed waits for ``release``."""

    def __init__(self) -> None:
        self.blocks: list[bytes] = []
        self.idles = 0
        self.release = threading.Event()
        self.waited: bool | None = None

    def feed(self, block: bytes) -> None:
        if self.waited is None:
            self.waited = self.release.wait(60)
        self.blocks.append(block)

    def idle(self) -> None:
        self.idles += 1


def test_console_log_is_the_log_byte_for_byte(tmp_path: Path) -> None:
    data = QIEXING.read_bytes() + b"\xff\xfe not utf-8\n" + b"no newline at the end"
    res = subprocess.run(em_caffe("--name", "c"), input=data, capture_output=True, env=env(),
                         cwd=tmp_path, check=False)
    assert res.returncode == 0, res.stderr.decode(errors="replace")
    assert res.stdout == data
    (run_dir,) = [p for p in runs(tmp_path).iterdir()]  # no staging copy left beside it
    assert (run_dir / CONSOLE_LOG).read_bytes() == data
    assert len(em.load_run(run_dir).metrics["train"]) == 201


def test_no_console_log_leaves_no_copy(tmp_path: Path) -> None:
    data = QIEXING.read_bytes()
    res = subprocess.run(em_caffe("--name", "c", "--no-console-log"), input=data,
                         capture_output=True, env=env(), cwd=tmp_path, check=False)
    assert res.returncode == 0 and res.stdout == data
    (run_dir,) = list(runs(tmp_path).iterdir())
    assert sorted(p.name for p in run_dir.iterdir() if not p.name.startswith(".")) == [
        "metrics.bin", "run.json"]
    assert len(em.load_run(run_dir).metrics["test"]) == 41


def test_the_output_does_not_wait_for_the_recorder(tmp_path: Path) -> None:
    """The recorder is stuck in its first feed; the whole log still comes out."""
    data = QIEXING.read_bytes() * 20  # ~1.6 MB: more than a pipe holds
    in_r, in_w = os.pipe()
    out_r, out_w = os.pipe()
    got = bytearray()
    sink = Blocks()

    def write() -> None:
        with open(in_w, "wb") as f:
            f.write(data)

    def read() -> None:
        while len(got) < len(data) and (chunk := os.read(out_r, 1 << 16)):
            got.extend(chunk)
        sink.release.set()  # everything came out while the recorder was stuck

    threads = [threading.Thread(target=write), threading.Thread(target=read)]
    for t in threads:
        t.start()
    with open(tmp_path / "copy", "w+b", buffering=0) as copy:
        outcome = record(sink, copy.fileno(), fd_in=in_r, fd_out=out_w, nice=0)
        copied = (tmp_path / "copy").read_bytes()
    for t in threads:
        t.join(60)
    for fd in (in_r, out_r, out_w):
        os.close(fd)
    assert sink.waited is True, "the output waited for the recorder"
    assert bytes(got) == data and copied == data
    assert b"".join(sink.blocks) == data
    assert outcome.signal is None and outcome.error is None and sink.idles >= 1


def test_a_second_signal_stops_recording_at_once(tmp_path: Path) -> None:
    """A huge backlog and an impatient user: the first SIGINT lets the recorder finish what
    was passed through, the second stops it."""
    log = tmp_path / "big.log"
    log.write_bytes(QIEXING.read_bytes() * 80)  # ~6 MB: several reads of the copy
    out_r, out_w = os.pipe()
    drained = threading.Thread(target=lambda: [None for _ in iter(
        lambda: os.read(out_r, 1 << 20), b"")])
    drained.start()
    fed: list[int] = []

    class Impatient:
        def feed(self, block: bytes) -> None:
            fed.append(len(block))
            if len(fed) == 1:
                os.kill(os.getpid(), signal.SIGINT)
                os.kill(os.getpid(), signal.SIGINT)

        def idle(self) -> None:
            pass

    with open(log, "rb") as f_in, open(tmp_path / "copy", "w+b", buffering=0) as copy:
        outcome = record(Impatient(), copy.fileno(), fd_in=f_in.fileno(), fd_out=out_w,
                         nice=0)
    os.close(out_w)
    drained.join(60)
    os.close(out_r)
    assert outcome.signal == "SIGINT"
    assert len(fed) <= 2 and sum(fed) < log.stat().st_size


def test_a_copy_that_cannot_be_written_is_an_error_and_the_output_flows(tmp_path: Path) -> None:
    data = QIEXING.read_bytes()
    (tmp_path / "copy").write_bytes(b"")
    log = tmp_path / "in.log"
    log.write_bytes(data)
    out = tmp_path / "out.log"
    read_only = os.open(tmp_path / "copy", os.O_RDONLY)
    try:
        with open(log, "rb") as f_in, open(out, "wb") as f_out:
            outcome = record(Blocks(), read_only, fd_in=f_in.fileno(), fd_out=f_out.fileno(),
                             nice=0)
    finally:
        os.close(read_only)
    assert out.read_bytes() == data
    assert isinstance(outcome.error, OSError)
    assert "the copy of the log could not be written" in str(outcome.error)


def test_a_killed_recorder_leaves_a_crashed_run_and_the_output_flows(tmp_path: Path) -> None:
    lines = QIEXING.read_bytes().splitlines(keepends=True)
    proc = subprocess.Popen(em_caffe("--name", "k"), stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, env=env(), cwd=tmp_path)
    assert proc.stdin is not None and proc.stdout is not None
    first, rest = lines[:700], lines[700:1400]
    proc.stdin.write(b"".join(first))
    proc.stdin.flush()
    got = b""
    while len(got) < len(b"".join(first)):
        got += proc.stdout.read1(1 << 16)
    run_dir = None
    deadline = time.monotonic() + 60
    while run_dir is None and time.monotonic() < deadline:  # once the recorder created it
        dirs = [p for p in runs(tmp_path).glob("k_*") if (p / "run.json").is_file()]
        run_dir = dirs[0] if dirs else None
        time.sleep(0.01)
    assert run_dir is not None
    proc.kill()  # the recorder: the pass-through is its child and goes on
    proc.wait(60)
    proc.stdin.write(b"".join(rest))
    proc.stdin.close()
    got += proc.stdout.read()
    assert got == b"".join(first + rest)
    run = em.load_run(run_dir)
    assert run.status == em.Status.CRASHED
