"""``em caffe`` end to end: the pipe and ``em caffe run`` with a fake caffe that replays logs;
the two-process pipe behind ``em caffe`` and ``em mxnet`` (the output never waits for the
recorder, the log copy becomes ``console.log``, each side survives the other's end)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import em_core as em
from integrations.logpipe.command import CONSOLE_LOG
from integrations.logpipe.stream import record

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]
CORPUS = REPO.parent / "shared" / "corpus" / "caffe"
FAKE = HERE / "fake_caffe.py"
QIEXING = CORPUS / "qiexing__caffe-regression__caffe.log"
DREAD = CORPUS / "dreadlord1984__SSD_windows_caffe__0802.log"
QIANG = CORPUS / "QiangXie__caffe-ssd-modify__VGG_VOC0712_SSD_300x300.log"


def em_caffe(*args: str) -> list[str]:
    return [sys.executable, "-m", "integrations.caffe", *args]


def env() -> dict[str, str]:
    e = dict(os.environ)
    e["PYTHONPATH"] = os.pathsep.join([str(REPO), e.get("PYTHONPATH", "")])
    return e


def the_run(tmp_path: Path) -> em.Run:
    (run_dir,) = list((tmp_path / "runs").iterdir())
    return em.load_run(run_dir)


def read_line_or_fail(stream, timeout: float = 60.0) -> bytes:
    """Deadlock guard only: the line must arrive while the writer still holds stdin open."""
    box: list[bytes] = []
    t = threading.Thread(target=lambda: box.append(stream.readline()), daemon=True)
    t.start()
    t.join(timeout)
    assert box, "em caffe held back a line that was already written to it"
    return box[0]


@pytest.mark.parametrize("log", [QIEXING, DREAD], ids=["qiexing", "dreadlord-gbk"])
def test_pipe_is_byte_exact_and_records_the_run(tmp_path: Path, log: Path) -> None:
    data = log.read_bytes()
    res = subprocess.run(em_caffe("--name", "pipe"), input=data, capture_output=True,
                         env=env(), cwd=tmp_path, check=False)
    assert res.returncode == 0, res.stderr.decode(errors="replace")
    assert res.stdout == data
    run = the_run(tmp_path)
    assert run.name == "pipe" and run.status == em.Status.COMPLETE
    assert run.metrics["test"] and run.metrics["train"]
    if log == QIEXING:
        assert len(run.metrics["train"]) == 201 and len(run.metrics["test"]) == 41
        assert run.metrics["train"][0]["value"] == {"smoothed_loss": 2.6409, "loss": 2.6409,
                                                    "lr": 0.003}
        assert run.hparams["base_lr"] == 0.003  # from the solver dump in the log
        assert run.hparams["loss_weights"] == {"test": {"loss": 1}, "train": {"loss": 1}}


def test_each_line_passes_through_before_the_next_is_written(tmp_path: Path) -> None:
    proc = subprocess.Popen(em_caffe("--name", "live"), stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, env=env(), cwd=tmp_path)
    lines = QIEXING.read_bytes().splitlines(keepends=True)[598:606]
    for line in lines:
        proc.stdin.write(line)
        proc.stdin.flush()
        assert read_line_or_fail(proc.stdout) == line
    proc.stdin.close()
    assert proc.wait(60) == 0
    run = the_run(tmp_path)
    assert run.status == em.Status.FAILED  # ended before 'Optimization Done'
    assert "before 'Optimization Done' (last iteration 100)" in run.to_dict()["error"]["message"]
    assert run.metrics["train"][0]["value"]["loss"] == 2.6409


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_killed_mid_stream_leaves_a_readable_killed_run(tmp_path: Path, signum: int,
                                                       code: int) -> None:
    proc = subprocess.Popen(em_caffe("--name", "k"), stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, env=env(), cwd=tmp_path)
    lines = QIEXING.read_bytes().splitlines(keepends=True)[:700]
    proc.stdin.write(b"".join(lines))
    proc.stdin.flush()
    while True:  # everything written so far comes back before the signal
        if read_line_or_fail(proc.stdout) == lines[-1]:
            break
    proc.send_signal(signum)
    if signum == signal.SIGINT:  # em alone got Ctrl-C: it passes through until the input ends
        more = QIEXING.read_bytes().splitlines(keepends=True)[700:720]
        proc.stdin.write(b"".join(more))
        proc.stdin.close()
        assert proc.stdout.read() == b"".join(more)
    assert proc.wait(60) == code
    if signum != signal.SIGINT:
        proc.stdin.close()
    run = the_run(tmp_path)
    assert run.status == em.Status.KILLED
    assert run.to_dict()["error"]["message"] == f"em received {signal.Signals(signum).name}"
    if signum == signal.SIGINT:
        lines += more
    last_lr = [ln for ln in lines if b", loss = " in ln][-1]  # the open block too
    assert run.metrics["train"][-1]["sequence"]["step"] == int(last_lr.split(b"Iteration ")[1]
                                                               .split(b",")[0])


def test_ctrl_c_lets_caffe_finish_printing(tmp_path: Path) -> None:
    """Ctrl-C in a terminal reaches the whole pipeline: Caffe stops gracefully and what it
    prints meanwhile still passes through em and is recorded."""
    caffe = subprocess.Popen([sys.executable, str(FAKE), "train", "--log", str(QIEXING),
                              "--pause-at", "Iteration 100, lr"],
                             stderr=subprocess.PIPE, process_group=0)
    assert caffe.stderr is not None
    proc = subprocess.Popen(em_caffe("--name", "cc"), stdin=caffe.stderr,
                            stdout=subprocess.PIPE, env=env(), cwd=tmp_path,
                            process_group=caffe.pid)
    caffe.stderr.close()
    assert proc.stdout is not None
    try:
        while b"Iteration 100, lr" not in read_line_or_fail(proc.stdout):
            pass
        time.sleep(0.5)  # em has created its run and installed its handlers
        os.killpg(caffe.pid, signal.SIGINT)
        rest = proc.stdout.read()
        assert caffe.wait(60) == 0 and proc.wait(60) == 130
    finally:  # a paused fake caffe waits for a signal forever
        for p in (caffe, proc):
            if p.poll() is None:
                p.kill()
    assert rest.endswith(b"Optimization stopped early.\n"
                         b"I0101 00:00:00.000000 1 caffe.cpp:1] Optimization Done.\n")
    run = the_run(tmp_path)
    assert run.status == em.Status.KILLED
    assert (Path(run.local) / CONSOLE_LOG).read_bytes().endswith(rest)


def test_garbage_passes_through(tmp_path: Path) -> None:
    data = bytes(range(256)) * 50 + b"\n]]] Iteration x, loss = \n*** \n" + os.urandom(5000)
    res = subprocess.run(em_caffe("--name", "g"), input=data, capture_output=True, env=env(),
                         cwd=tmp_path, check=False)
    assert res.returncode == 0 and res.stdout == data
    run = the_run(tmp_path)
    assert run.status == em.Status.FAILED and run.metrics == {}


def test_bad_solver_is_named_and_output_still_passes(tmp_path: Path) -> None:
    (tmp_path / "s.prototxt").write_text("base_lr: 0.1\nlr_policy {\n")
    data = QIEXING.read_bytes()
    res = subprocess.run(em_caffe("--solver", "s.prototxt"), input=data, capture_output=True,
                         env=env(), cwd=tmp_path, check=False)
    assert res.stdout == data and res.returncode == 0
    assert "s.prototxt, line 2" in res.stderr.decode()
    missing = subprocess.run(em_caffe("--solver", "nope.prototxt"), input=b"x\n",
                             capture_output=True, env=env(), cwd=tmp_path, check=False)
    assert missing.stdout == b"x\n" and "nope.prototxt" in missing.stderr.decode()


def test_bad_option_still_passes_through(tmp_path: Path) -> None:
    res = subprocess.run(em_caffe("--no-such-option"), input=b"abc\n", capture_output=True,
                         env=env(), cwd=tmp_path, check=False)
    assert res.stdout == b"abc\n" and res.returncode == 2
    assert "--no-such-option" in res.stderr.decode()
    assert list(runs(tmp_path).iterdir()) == []  # the copy of the log is gone, no run


@pytest.mark.parametrize("flag", ["--help", "-h", "--he"])
def test_help_reads_nothing_and_records_nothing(tmp_path: Path, flag: str) -> None:
    res = subprocess.run([sys.executable, "-m", "em_core.cli", "caffe", flag], input=b"abc\n",
                         capture_output=True, env=env(), cwd=tmp_path, check=False)
    assert res.returncode == 0 and res.stdout.startswith(b"usage: em caffe")
    assert not runs(tmp_path).exists()


GATE = """
import os, sys, time
class Gate:  # holds the import of em's run module (and of the parsers) until the test opens it
    def find_spec(self, name, path=None, target=None):
        if name in ("em_core.run", "integrations.caffe.parser", "integrations.mxnet_log.parser"):
            deadline = time.monotonic() + 60
            while not os.path.exists(os.environ["GATE"]) and time.monotonic() < deadline:
                time.sleep(0.01)
        return None
sys.meta_path.insert(0, Gate())
from em_core.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.parametrize("command", ["caffe", "mxnet"])
def test_the_log_flows_before_em_is_loaded(tmp_path: Path, command: str) -> None:
    """`em caffe`/`em mxnet` start the pass-through before loading the parser or the run."""
    gate = tmp_path / "gate"
    proc = subprocess.Popen([sys.executable, "-c", GATE, command, "--name", "early"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            env=dict(env(), GATE=str(gate)), cwd=tmp_path)
    assert proc.stdin is not None and proc.stdout is not None
    line = QIEXING.read_bytes().splitlines(keepends=True)[600]
    proc.stdin.write(line)
    proc.stdin.flush()
    assert read_line_or_fail(proc.stdout, timeout=50) == line
    assert not gate.exists()  # so the line came through while em was not loaded yet
    gate.touch()
    proc.stdin.close()
    assert proc.stdout.read() == b""
    assert proc.wait(60) == 0
    run = the_run(tmp_path)
    assert (Path(run.local) / CONSOLE_LOG).read_bytes() == line
    # Caffe's log ended mid-training; an MXNet log has no end marker
    assert run.status == (em.Status.FAILED if command == "caffe" else em.Status.COMPLETE)


def test_solver_file_hparams_win(tmp_path: Path) -> None:
    (tmp_path / "s.prototxt").write_text('base_lr: 0.5 # mine\nlr_policy: "fixed"\n')
    subprocess.run(em_caffe("--solver", "s.prototxt", "--name", "s"),
                   input=QIEXING.read_bytes(), capture_output=True, env=env(), cwd=tmp_path,
                   check=True)
    hp = the_run(tmp_path).hparams
    assert hp["base_lr"] == 0.5 and hp["lr_policy"] == "fixed" and hp["max_iter"] == 20000


def test_run_mode_exit_code_snapshots_and_nan(tmp_path: Path) -> None:
    res = subprocess.run(
        em_caffe("run", "--name", "r", "--", sys.executable, str(FAKE), "train", "-solver",
                 "none.prototxt", "--log", str(QIANG), "--exit", "3"),
        capture_output=True, env=env(), cwd=tmp_path, check=False)
    assert res.returncode == 3
    assert res.stdout == QIANG.read_bytes()  # stderr of caffe arrives on our stdout
    assert "none.prototxt" in res.stderr.decode()  # -solver taken from the command
    run = the_run(tmp_path)
    assert run.status == em.Status.FAILED
    assert "caffe exited with status 3" in run.to_dict()["error"]["message"]
    assert run.hparams["resumed_from"].endswith("VGG_VOC0712_SSD_300x300_iter_138.solverstate")
    losses = [r["value"]["smoothed_loss"] for r in run.metrics["train"]]
    assert len(losses) == 34 and all(v != v for v in losses)  # NaN kept


def test_run_mode_check_failure_is_failed_with_its_reason(tmp_path: Path) -> None:
    """glog's fatal path ends in abort(): a crash, not a kill."""
    log = tmp_path / "crash.log"
    log.write_bytes(b"".join(QIEXING.read_bytes().splitlines(keepends=True)[:620])
                    + b"F1121 10:00:00.000000  4242 blob.cpp:33] Check failed: shape[i] >= 0 "
                      b"(-1 vs. 0)\n*** Check failure stack trace: ***\n")
    res = subprocess.run(
        em_caffe("run", "--name", "crash", "--", sys.executable, str(FAKE), "train", "--log",
                 str(log), "--abort"), capture_output=True, env=env(), cwd=tmp_path,
        check=False)
    assert res.returncode == 128 + signal.SIGABRT
    run = the_run(tmp_path)
    assert run.status == em.Status.FAILED
    message = run.to_dict()["error"]["message"]
    assert "Check failed: shape[i] >= 0" in message and "SIGABRT" in message


def test_run_mode_snapshot_artifact(tmp_path: Path) -> None:
    log = CORPUS / "akompaniyets__Robotic-Inference__caffe_output.log"
    res = subprocess.run(
        em_caffe("run", "--name", "snap", "--", sys.executable, str(FAKE), "train", "--log",
                 str(log), "--touch-snapshots"),
        capture_output=True, env=env(), cwd=tmp_path, check=False)
    assert res.returncode == 0
    run = the_run(tmp_path)
    assert run.status == em.Status.COMPLETE
    (out,) = run.associations["outputs"]
    art = em.load_artifact(out["local"])
    assert sorted(art.objects) == [f"snapshot_iter_{i}.{ext}" for i in (1185, 237, 474, 711, 948)
                                   for ext in ("caffemodel", "solverstate")] or \
        len(art.objects) == 10
    assert "snapshot_iter_1185.caffemodel" in art.objects


@pytest.mark.parametrize(("signum", "status", "code"), [
    (signal.SIGINT, em.Status.KILLED, 0),      # caffe stops early, exits 0: still Killed
    (signal.SIGTERM, em.Status.KILLED, 143),   # caffe dies of the forwarded SIGTERM
])
def test_run_mode_forwards_signals(tmp_path: Path, signum: int, status: em.Status,
                                   code: int) -> None:
    proc = subprocess.Popen(
        em_caffe("run", "--name", "f", "--", sys.executable, str(FAKE), "train", "--log",
                 str(QIEXING), "--pause-at", "Iteration 1000, lr"),
        stdout=subprocess.PIPE, env=env(), cwd=tmp_path)
    while b"Iteration 1000, lr" not in read_line_or_fail(proc.stdout):
        pass
    proc.send_signal(signum)
    rest = proc.stdout.read()
    assert proc.wait(60) == code
    if signum == signal.SIGINT:
        assert rest.endswith(b"Optimization Done.\n")  # the child's last words came through
    run = the_run(tmp_path)
    assert run.status == status
    assert run.metrics["train"][-1]["sequence"]["step"] == 1000


def test_run_mode_missing_program(tmp_path: Path) -> None:
    res = subprocess.run(em_caffe("run", "--", "/no/such/caffe", "train"), capture_output=True,
                         env=env(), cwd=tmp_path, check=False)
    assert res.returncode == 127 and "/no/such/caffe" in res.stderr.decode()
    assert the_run(tmp_path).status == em.Status.FAILED


def test_recorder_in_process(tmp_path: Path) -> None:
    from integrations.caffe import CaffeRecorder
    from integrations.logpipe.stream import run_stdin

    data = QIEXING.read_bytes()
    r, w = os.pipe()
    out_r, out_w = os.pipe()
    box: list[bytes] = []

    def drain() -> None:
        while chunk := os.read(out_r, 1 << 16):
            box.append(chunk)

    def feed() -> None:
        with open(w, "wb") as f:  # a file object writes all of it (os.write may not)
            f.write(data)

    writer = threading.Thread(target=feed)
    reader = threading.Thread(target=drain)
    writer.start()
    reader.start()
    run = em.create_run(name="inproc")
    recorder = CaffeRecorder(run)
    outcome = run_stdin(recorder, fd_in=r, fd_out=out_w)
    os.close(out_w)
    writer.join(60)
    reader.join(60)
    os.close(r)
    os.close(out_r)
    assert outcome.signal is None and outcome.error is None
    assert recorder.finish() == em.Status.COMPLETE
    assert b"".join(box) == data
    assert em.load_run(run.local).metrics["test"][-1]["sequence"]["step"] == 20000


def test_an_inline_net_in_the_solver_dump_is_not_a_hyperparameter() -> None:
    from integrations.caffe import CaffeRecorder

    log = CORPUS / "ducha-aiki__caffenet-benchmark__SqueezeNet224_2gpu_new_solver.log"
    assert b"net_param {" in log.read_bytes()
    run = em.create_run(name="dump")
    recorder = CaffeRecorder(run)
    recorder.feed(log.read_bytes())
    recorder.finish()
    hp = em.load_run(run.local).hparams
    assert "base_lr" in hp and not {"net_param", "train_net_param", "test_net_param"} & set(hp)


def test_a_caffe_that_stopped_early_is_killed_not_complete() -> None:
    from integrations.caffe import CaffeRecorder

    run = em.create_run(name="early")
    recorder = CaffeRecorder(run)
    recorder.feed(b"".join(QIEXING.read_bytes().splitlines(keepends=True)[:700])
                  + b"I0101 00:00:00.000000 1 solver.cpp:1] Optimization stopped early.\n"
                  + b"I0101 00:00:00.000000 1 caffe.cpp:1] Optimization Done.\n")
    assert recorder.finish() == em.Status.KILLED
    assert "stopped early" in em.load_run(run.local).to_dict()["error"]["message"]


def test_main_arguments_in_process() -> None:
    from integrations.caffe import main

    assert main(["run", "--name", "x"]) == 2  # no '--': nothing is started
    assert main(["run", "--"]) == 2
    assert main(["run", "--bad-option", "--", "caffe"]) == 2


# ------------------------------------------------------------ the two-process pipe

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


def through_pipes(data: bytes, got: bytearray, done: threading.Event | None = None
                  ) -> tuple[int, int, int, list[threading.Thread]]:
    """Pipes in and out of a pass-through, with threads writing ``data`` in and reading
    into ``got`` (``done`` set once all of it came out): (fd_in, fd_out, out_r, threads)."""
    fd_in, in_w = os.pipe()
    out_r, fd_out = os.pipe()

    def write() -> None:
        with open(in_w, "wb") as f:  # a file object writes all of it (os.write may not)
            f.write(data)

    def read() -> None:
        while len(got) < len(data) and (chunk := os.read(out_r, 1 << 16)):
            got.extend(chunk)
        if done is not None:
            done.set()

    threads = [threading.Thread(target=write), threading.Thread(target=read)]
    for t in threads:
        t.start()
    return fd_in, fd_out, out_r, threads


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
    got = bytearray()
    sink = Blocks()  # released once everything came out while the recorder was stuck
    in_r, out_w, out_r, threads = through_pipes(data, got, sink.release)
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
    assert outcome.signal is None and outcome.error is None


class Calls:
    """A sink that notes what it is told, in order."""

    def __init__(self) -> None:
        self.calls: list[bytes | None] = []  # a block fed, or None for idle()

    def feed(self, block: bytes) -> None:
        self.calls.append(block)

    def idle(self) -> None:
        self.calls.append(None)


def test_idle_comes_once_the_input_pauses_not_between_lines(tmp_path: Path) -> None:
    """glog writes a test pass's output lines one write each: the recorder hears idle() only
    after a pause, so a parser can close the pass then."""
    lines = QIEXING.read_bytes().splitlines(keepends=True)
    burst, later = lines[:300], lines[300:310]
    fd_in, in_w = os.pipe()
    out_r, fd_out = os.pipe()

    def write() -> None:
        for line in burst:  # one write per line, as glog does
            os.write(in_w, line)
        time.sleep(1.0)
        for line in later:
            os.write(in_w, line)
        os.close(in_w)

    def drain() -> None:
        while os.read(out_r, 1 << 16):
            pass

    threads = [threading.Thread(target=write), threading.Thread(target=drain)]
    for t in threads:
        t.start()
    sink = Calls()
    with open(tmp_path / "copy", "w+b", buffering=0) as copy:
        outcome = record(sink, copy.fileno(), fd_in=fd_in, fd_out=fd_out, nice=0)
    os.close(fd_out)
    for t in threads:
        t.join(60)
    for fd in (fd_in, out_r):
        os.close(fd)
    assert outcome.signal is None
    first_idle = sink.calls.index(None)
    assert b"".join(c for c in sink.calls[:first_idle] if c) == b"".join(burst)
    assert b"".join(c for c in sink.calls if c) == b"".join(burst + later)


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


@pytest.mark.parametrize("ends", ["files", "pipes"])  # pipes: the tee(2)/splice(2) path
def test_a_copy_that_cannot_be_written_is_an_error_and_the_output_flows(tmp_path: Path,
                                                                        ends: str) -> None:
    data = QIEXING.read_bytes() * 3
    (tmp_path / "copy").write_bytes(b"")
    read_only = os.open(tmp_path / "copy", os.O_RDONLY)
    got = bytearray()
    if ends == "files":
        (tmp_path / "in.log").write_bytes(data)
        fd_in = os.open(tmp_path / "in.log", os.O_RDONLY)
        fd_out = os.open(tmp_path / "out.log", os.O_WRONLY | os.O_CREAT)
        threads: list[threading.Thread] = []
    else:
        fd_in, fd_out, out_r, threads = through_pipes(data, got)
    sink = Blocks()
    sink.release.set()
    try:
        outcome = record(sink, read_only, fd_in=fd_in, fd_out=fd_out, nice=0)
    finally:
        for t in threads:
            t.join(60)
        for fd in (read_only, fd_in, fd_out) + ((out_r,) if ends == "pipes" else ()):
            os.close(fd)
    if ends == "files":
        got = bytearray((tmp_path / "out.log").read_bytes())
    assert bytes(got) == data
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
