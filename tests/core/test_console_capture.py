"""Console capture (issue 15): a training process's stdout and stderr, at the descriptor level,
reach its terminal (a pty) or pipe byte for byte and are kept in the run's console.log; a
SIGKILLed process leaves a readable console.log; EM_CONSOLE=off turns it off; forked
children, tracebacks, Ctrl-C, pdb and the size cap. Each case runs in a child process."""

from __future__ import annotations

import fcntl
import os
import pty
import signal
import struct
import subprocess
import sys
import termios
import textwrap
import time
from pathlib import Path

import pytest

import em_core as em

REPO = Path(__file__).resolve().parents[2]
CONSOLE = "console.log"

# What the child writes through every route: Python's print, os.write on 1 and 2 (what a C
# extension does), a carriage return and bytes that are not UTF-8.
_WRITES = """
    import os, sys
    print("from python", flush=True)
    os.write(1, b"from os.write\\r\\nraw \\xff\\xfe\\n")
    sys.stderr.write("to stderr\\n"); sys.stderr.flush()
    os.write(2, b"fd 2\\n")
"""
OUT = b"from python\nfrom os.write\r\nraw \xff\xfe\n"
ERR = b"to stderr\nfd 2\n"


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "EM_RUN_PARENT_DIR": str(tmp_path / "runs")}
    env.pop("EM_CONSOLE", None)  # the suite turns capture off; these tests use the default
    env.update(extra)
    return env


def _script(body: str) -> str:
    return textwrap.dedent(body).replace("@WRITES@", textwrap.dedent(_WRITES).strip()
                                         .replace("\n", "\n" + " " * 0))


def _child(body: str) -> list[str]:
    return [sys.executable, "-c", textwrap.dedent(body)]


def _run_dir(tmp_path: Path) -> Path:
    (d,) = list((tmp_path / "runs").iterdir())
    return d


def _log(tmp_path: Path) -> bytes:
    return (_run_dir(tmp_path) / CONSOLE).read_bytes()


_BASIC = """
import os, sys
import em_core as em
print("before the run", flush=True)
run = em.create_run(name="console", system_interval=0)
print("from python", flush=True)
os.write(1, b"from os.write\\r\\nraw \\xff\\xfe\\n")
sys.stderr.write("to stderr\\n"); sys.stderr.flush()
os.write(2, b"fd 2\\n")
print("isatty", os.isatty(1), sys.stdout.isatty(), os.isatty(2), flush=True)
run.finish()
print("after finish", flush=True)
"""


def test_pipes_byte_for_byte_and_in_console_log(tmp_path: Path) -> None:
    res = subprocess.run(_child(_BASIC), env=_env(tmp_path), capture_output=True, timeout=60)
    assert res.returncode == 0, res.stderr
    assert res.stdout == (b"before the run\n" + OUT + b"isatty False False False\n"
                          b"after finish\n")
    assert res.stderr == ERR
    log = _log(tmp_path)
    # one stream at a time, line by line; stdout and stderr interleave as they were read
    assert sorted(log.splitlines(keepends=True)) == sorted(
        (OUT + ERR + b"isatty False False False\n").splitlines(keepends=True))
    assert OUT in log or (b"from python\n" in log and b"raw \xff\xfe\n" in log)
    assert b"before the run" not in log and b"after finish" not in log


def _pty_run(argv: list[str], env: dict[str, str], *, send: bytes = b"",
             timeout: float = 30.0, on_output: tuple[bytes, bytes] | None = None,
             kill_when: bytes | None = None) -> tuple[bytes, int]:
    """Run ``argv`` with stdin, stdout and stderr on a new pseudo-terminal whose output
    processing is off (so the bytes read are the bytes written); returns (output, status)."""
    master, slave = pty.openpty()
    attrs = termios.tcgetattr(slave)
    attrs[1] &= ~termios.OPOST
    termios.tcsetattr(slave, termios.TCSANOW, attrs)
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 33, 111, 0, 0))
    proc = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, env=env,
                            start_new_session=True)
    os.close(slave)
    if send:
        os.write(master, send)
    out = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            chunk = os.read(master, 4096)
        except OSError:  # EIO: every holder of the terminal closed it
            break
        if not chunk:
            break
        out += chunk
        if on_output is not None and on_output[0] in out:
            os.write(master, on_output[1])
            on_output = None
        if kill_when is not None and kill_when in out:
            os.kill(proc.pid, signal.SIGKILL)
            kill_when = None
    os.close(master)
    return out, proc.wait(timeout)


def test_terminal_byte_for_byte_and_isatty_kept(tmp_path: Path) -> None:
    """On a terminal the streams stay terminals (isatty, window size: tqdm, colours, Keras
    progress bars behave as before) and every byte arrives unchanged."""
    body = _BASIC.replace('print("isatty"', 'print("size", os.get_terminal_size())\nprint("isatty"')
    out, status = _pty_run(_child(body), _env(tmp_path))
    assert status == 0, out
    size = b"size os.terminal_size(columns=111, lines=33)\n"
    # the program's stdout and stderr share this terminal: the order they were written in
    assert out == (b"before the run\n" + OUT + ERR + size + b"isatty True True True\n"
                   b"after finish\n")
    log = _log(tmp_path)
    assert sorted(log.splitlines(keepends=True)) == sorted(
        (OUT + ERR + size + b"isatty True True True\n").splitlines(keepends=True))


def test_sigkill_leaves_a_readable_console_log(tmp_path: Path) -> None:
    """SIGKILL of the training process: everything it wrote is in console.log and reached
    the terminal (the tee is another process, and drains the pipe after the kill)."""
    body = """
        import os, time
        import em_core as em
        run = em.create_run(name="killed", system_interval=0)
        for i in range(100):
            print(f"line {i}")
        os.write(1, b"last words\\n")
        time.sleep(60)
    """
    proc = subprocess.Popen(_child(body), env=_env(tmp_path), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    assert proc.stdout is not None
    first = proc.stdout.readline()
    assert first == b"line 0\n"
    proc.kill()
    rest = proc.stdout.read()  # ends: the tee exits once the killed process's pipes close
    proc.wait(10)
    expected = b"".join(f"line {i}\n".encode() for i in range(100)) + b"last words\n"
    assert first + rest == expected
    assert _log(tmp_path) == expected
    assert em.load_run(_run_dir(tmp_path)).status is em.Status.CRASHED


def test_os_exit_right_after_writing_loses_nothing(tmp_path: Path) -> None:
    body = """
        import os
        import em_core as em
        run = em.create_run(name="exit", system_interval=0)
        os.write(1, b"x" * 100000 + b"\\nend\\n")
        os.write(2, b"Fatal Python error: pretend\\n")
        os._exit(7)
    """
    res = subprocess.run(_child(body), env=_env(tmp_path), capture_output=True, timeout=60)
    assert res.returncode == 7
    assert res.stdout == b"x" * 100000 + b"\nend\n"
    assert res.stderr == b"Fatal Python error: pretend\n"
    log = _log(tmp_path)
    assert b"x" * 100000 + b"\nend\n" in log and b"Fatal Python error: pretend\n" in log


@pytest.mark.parametrize("how", ["env", "argument"])
def test_console_off(tmp_path: Path, how: str) -> None:
    body = _BASIC if how == "env" else _BASIC.replace("system_interval=0", "system_interval=0, "
                                                      "console=False")
    env = _env(tmp_path, EM_CONSOLE="off") if how == "env" else _env(tmp_path)
    res = subprocess.run(_child(body), env=env, capture_output=True, timeout=60)
    assert res.returncode == 0, res.stderr
    assert res.stdout == b"before the run\n" + OUT + b"isatty False False False\nafter finish\n"
    assert not (_run_dir(tmp_path) / CONSOLE).exists()


def test_bad_console_settings_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(TypeError, match="console must be True, False or None"):
        em.create_run(name="x", console="yes")  # type: ignore[arg-type]
    monkeypatch.setenv("EM_CONSOLE", "maybe")
    with pytest.raises(ValueError, match="EM_CONSOLE='maybe'"):
        em.create_run(name="x")
    monkeypatch.setenv("EM_CONSOLE", "on")
    monkeypatch.setenv("EM_CONSOLE_MAX_BYTES", "-5")
    with pytest.raises(ValueError, match="EM_CONSOLE_MAX_BYTES='-5'"):
        em.create_run(name="x")


def test_uncaught_exception_traceback_reaches_terminal_and_log(tmp_path: Path) -> None:
    body = """
        import em_core as em
        run = em.create_run(name="boom", system_interval=0)
        print("training", flush=True)
        raise RuntimeError("boom at step 3")
    """
    res = subprocess.run(_child(body), env=_env(tmp_path), capture_output=True, timeout=60)
    assert res.returncode == 1
    assert res.stdout == b"training\n"
    assert b"RuntimeError: boom at step 3\n" in res.stderr
    assert b"Traceback (most recent call last)" in res.stderr
    log = _log(tmp_path)
    assert b"training\n" in log and b"RuntimeError: boom at step 3\n" in log
    assert em.load_run(_run_dir(tmp_path)).status is em.Status.FAILED


def test_with_block_exception_traceback_in_log(tmp_path: Path) -> None:
    body = """
        import em_core as em
        with em.create_run(name="boom", system_interval=0):
            raise ValueError("bad batch")
    """
    res = subprocess.run(_child(body), env=_env(tmp_path), capture_output=True, timeout=60)
    assert res.returncode == 1 and b"ValueError: bad batch" in res.stderr
    assert b"ValueError: bad batch" in _log(tmp_path)


def test_ctrl_c_still_interrupts(tmp_path: Path) -> None:
    """Ctrl-C (SIGINT to the terminal's foreground process group, the tee included) stops
    the training with KeyboardInterrupt as before; its traceback is kept; the run Killed."""
    body = """
        import time
        import em_core as em
        run = em.create_run(name="ctrlc", system_interval=0)
        print("ready", flush=True)
        time.sleep(30)
    """
    master, slave = pty.openpty()
    proc = subprocess.Popen(_child(body), stdin=slave, stdout=slave, stderr=slave,
                            env=_env(tmp_path), start_new_session=True)
    os.close(slave)
    out = b""
    while b"ready" not in out:
        out += os.read(master, 4096)
    os.killpg(proc.pid, signal.SIGINT)  # what the terminal does on Ctrl-C
    while True:
        try:
            chunk = os.read(master, 4096)
        except OSError:
            break
        if not chunk:
            break
        out += chunk
    os.close(master)
    # Python ends an uncaught KeyboardInterrupt by dying of SIGINT, as without em
    assert proc.wait(10) == -signal.SIGINT
    assert b"KeyboardInterrupt" in out
    assert b"KeyboardInterrupt" in _log(tmp_path)
    assert em.load_run(_run_dir(tmp_path)).status is em.Status.KILLED


def test_pdb_works_on_a_terminal(tmp_path: Path) -> None:
    body = """
        import em_core as em
        run = em.create_run(name="pdb", system_interval=0)
        x = 20
        breakpoint()
        print("resumed", x + 1)
        run.finish()
    """
    out, status = _pty_run(_child(body), _env(tmp_path), on_output=(b"(Pdb) ", b"p x * 2\nc\n"))
    assert status == 0, out
    assert b"(Pdb) " in out and b"40" in out and b"resumed 21" in out
    log = _log(tmp_path)
    assert b"(Pdb) " in log and b"resumed 21\n" in log


def test_forked_child_output_is_kept_and_finish_does_not_wait_for_it(tmp_path: Path) -> None:
    """A forked child writes through the same capture; its exit does not end it; a child
    still alive at finish() keeps reaching the terminal afterwards."""
    body = """
        import os, sys, time
        import em_core as em
        run = em.create_run(name="fork", system_interval=0)
        pid = os.fork()
        if pid == 0:
            os.write(1, b"child says hi\\n")
            sys.exit(0)  # Python's normal exit: em's exit hooks run in the child
        os.waitpid(pid, 0)
        print("parent goes on", flush=True)
        r, w = os.pipe()
        late = os.fork()
        if late == 0:
            os.close(w)
            os.read(r, 1)  # until the parent finished
            os.write(1, b"late child\\n")
            os._exit(0)
        os.close(r)
        t = time.monotonic()
        run.finish()
        print("finish took under 2 s:", time.monotonic() - t < 2, flush=True)
        os.write(w, b"go")
        os.waitpid(late, 0)
    """
    res = subprocess.run(_child(body), env=_env(tmp_path), capture_output=True, timeout=60)
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines() == [b"child says hi", b"parent goes on",
                                       b"finish took under 2 s: True", b"late child"]
    log = _log(tmp_path)
    assert b"child says hi\n" in log and b"parent goes on\n" in log
    assert b"finish took" not in log


def test_size_cap_keeps_the_oldest_and_says_so(tmp_path: Path) -> None:
    body = """
        import em_core as em
        run = em.create_run(name="cap", system_interval=0)
        for i in range(200):
            print(f"line {i:04d}")
        run.finish()
    """
    res = subprocess.run(_child(body), env=_env(tmp_path, EM_CONSOLE_MAX_BYTES="1000"),
                         capture_output=True, timeout=60)
    assert res.returncode == 0, res.stderr
    assert res.stdout == b"".join(f"line {i:04d}\n".encode() for i in range(200))
    log = _log(tmp_path)
    kept, _, note = log.partition(b"[em: console.log reached its size cap of 1000 bytes")
    assert kept == b"".join(f"line {i:04d}\n".encode() for i in range(100))
    assert note.endswith(b"later output was not kept here]\n")


def test_partial_line_reaches_the_log(tmp_path: Path) -> None:
    """A line without its newline (a prompt, a progress bar) is in console.log by the end."""
    body = """
        import sys
        import em_core as em
        run = em.create_run(name="partial", system_interval=0)
        sys.stdout.write("epoch 1 10%\\repoch 1 100%")
        sys.stdout.flush()
        run.finish()
    """
    res = subprocess.run(_child(body), env=_env(tmp_path), capture_output=True, timeout=60)
    assert res.stdout == b"epoch 1 10%\repoch 1 100%"
    assert _log(tmp_path) == b"epoch 1 10%\repoch 1 100%"


def test_em_caffe_keeps_one_console_log(tmp_path: Path) -> None:
    """em caffe's pass-through writes console.log itself: the run it makes captures
    nothing more (no doubled lines)."""
    data = b"I1205 10:00:00.000000  1 solver.cpp:218] Iteration 0, loss = 2.3\n" * 3
    res = subprocess.run([sys.executable, "-m", "integrations.caffe", "--name", "caffe"],
                         input=data, env=_env(tmp_path), capture_output=True, timeout=60)
    assert res.returncode == 0, res.stderr
    assert res.stdout == data
    assert _log(tmp_path) == data


def test_em_show_console_and_tail(tmp_path: Path) -> None:
    body = """
        import em_core as em
        run = em.create_run(name="shown", system_interval=0)
        for i in range(5):
            print(f"epoch {i}")
        print("\\x1b[32mgreen\\x1b[0m")
        run.finish()
    """
    res = subprocess.run(_child(body), env=_env(tmp_path), capture_output=True, timeout=60)
    assert res.returncode == 0, res.stderr
    run_dir = str(_run_dir(tmp_path))
    em_cmd = [sys.executable, "-m", "em_core.cli", "show", run_dir]
    env = _env(tmp_path)
    full = subprocess.run([*em_cmd, "--console"], env=env, capture_output=True, timeout=60)
    assert full.returncode == 0 and full.stdout == _log(tmp_path)
    assert full.stdout.endswith(b"epoch 4\n\x1b[32mgreen\x1b[0m\n")  # as the program wrote it
    tail = subprocess.run([*em_cmd, "--console", "--tail", "2"], env=env, capture_output=True,
                          timeout=60)
    assert tail.stdout == b"epoch 4\n\x1b[32mgreen\x1b[0m\n"
    show = subprocess.run(em_cmd, env=env, capture_output=True, timeout=60)
    assert b"Console      " in show.stdout and b"--console" in show.stdout


def test_em_show_console_without_one(tmp_path: Path) -> None:
    run = em.create_run(name="none", console=False, system_interval=0)
    run.finish()
    res = subprocess.run([sys.executable, "-m", "em_core.cli", "show", str(run.local),
                          "--console"], env=_env(tmp_path), capture_output=True, timeout=60)
    assert res.returncode == 2 and b"has no console.log" in res.stderr


def test_many_open_files(tmp_path: Path) -> None:
    """A process with over 1024 descriptors open (big data loaders): the capture's own
    descriptors get high numbers and it still works."""
    body = """
        import os, resource
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(4096, hard), hard))
        held = [os.open(os.devnull, os.O_RDONLY) for _ in range(1100)]
        import em_core as em
        run = em.create_run(name="fds", system_interval=0)
        print("many files", flush=True)
        run.finish()
    """
    res = subprocess.run(_child(body), env=_env(tmp_path), capture_output=True, timeout=60)
    assert res.returncode == 0, res.stderr
    assert res.stdout == b"many files\n"
    assert _log(tmp_path) == b"many files\n"
