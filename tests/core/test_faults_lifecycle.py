"""Issue 11 (lifecycle under faults): signals landing anywhere, exit codes, forked helpers,
SIGTERM during finish(), rank -1. Every test runs the training script in a real process."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import em_core as em

REPO = Path(__file__).resolve().parents[2]
TIMEOUT = 60


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env["EM_RUN_PARENT_DIR"] = str(tmp_path / "runs")
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


def _script(tmp_path: Path, code: str) -> list[str]:
    script = tmp_path / "train.py"
    script.write_text(textwrap.dedent(code), encoding="utf-8")
    return [sys.executable, str(script)]


def _start(tmp_path: Path, code: str) -> subprocess.Popen[str]:
    return subprocess.Popen(_script(tmp_path, code), cwd=tmp_path, env=_env(tmp_path),
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _run(tmp_path: Path, code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(_script(tmp_path, code), cwd=tmp_path, env=_env(tmp_path),
                          capture_output=True, text=True, timeout=TIMEOUT)


def _wait_for(proc: subprocess.Popen[str], line: str) -> None:
    assert proc.stdout is not None
    for got in proc.stdout:
        if got.strip() == line:
            return
    proc.wait(TIMEOUT)
    raise AssertionError(f"child ended before printing {line!r}: {proc.stderr.read()}")  # type: ignore[union-attr]


def _runs(tmp_path: Path) -> list[em.Run]:
    return [em.load_run(p) for p in sorted((tmp_path / "runs").iterdir())]


def _only_run(tmp_path: Path) -> em.Run:
    (run,) = _runs(tmp_path)
    return run


# ------------------------------------------------------------ 2: no lock in the handler
@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_signals_during_register_unregister_never_hang(tmp_path: Path, signum: int) -> None:
    # The child creates and finishes runs in a tight loop and survives every signal (its
    # own handler, installed before em, returns; Ctrl-C is caught), so that each signal
    # lands somewhere in register/unregister/finish.
    proc = _start(tmp_path, """
        import signal, sys, time
        import em_core as em
        from em_core import _lifecycle
        hits = [0]
        signal.signal(signal.SIGTERM, lambda s, f: hits.__setitem__(0, hits[0] + 1))
        em.create_run(name='first').finish()
        deadline = time.monotonic() + 4
        ready = [False]
        def loop():
            while time.monotonic() < deadline:
                try:
                    if not ready[0]:  # inside the try: a signal may land while it prints
                        ready[0] = True
                        print('ready', flush=True)
                    for _ in range(20):
                        _lifecycle.register(_lifecycle)  # any object: only stored
                        _lifecycle.unregister(_lifecycle)
                    em.create_run(name='loop').finish()
                except KeyboardInterrupt:
                    pass
        while True:
            try:
                loop()
                break
            except KeyboardInterrupt:
                pass
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a late signal must not cut 'done'
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        print('done')
        """)
    try:
        _wait_for(proc, "ready")
        rng = random.Random(7)
        for _ in range(300):
            if proc.poll() is not None:
                break
            proc.send_signal(signum)
            time.sleep(rng.uniform(0, 0.01))
        out, err = proc.communicate(timeout=TIMEOUT)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert "done" in out


# ------------------------------------------------------------ 9: caught signals go on
def test_caught_ctrl_c_keeps_recording_to_complete(tmp_path: Path) -> None:
    proc = _start(tmp_path, """
        import time
        import em_core as em
        run = em.create_run(name='ctrlc-caught')
        run.log('train', {'loss': 1.0}, step=0)
        try:
            print('ready')
            time.sleep(60)
        except KeyboardInterrupt:
            print('caught')
        run.log('train', {'loss': 0.5}, step=1)
        run.finish()
        print('finished', run.status)
        """)
    try:
        _wait_for(proc, "ready")
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=TIMEOUT)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert "caught" in out and "finished Complete" in out
    run = _only_run(tmp_path)
    assert run.status is em.Status.COMPLETE
    assert [p["value"]["loss"] for p in run.metrics["train"]] == [1.0, 0.5]


def test_graceful_sigterm_handler_that_returns_goes_on(tmp_path: Path) -> None:
    proc = _start(tmp_path, """
        import signal, time
        stop = []
        signal.signal(signal.SIGTERM, lambda s, f: stop.append(s))
        import em_core as em
        run = em.create_run(name='preempt')
        print('ready')
        step = 0
        while not stop:
            run.log('train', {'loss': 1.0}, step=step)
            step += 1
            time.sleep(0.001)
        run.log('train', {'loss': 0.0}, step=step)  # the checkpoint step after the signal
        run.resume()  # must not say another process holds it
        run.finish()
        """)
    try:
        _wait_for(proc, "ready")
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=TIMEOUT)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    run = _only_run(tmp_path)
    assert run.status is em.Status.COMPLETE
    assert run.metrics["train"][-1]["value"] == {"loss": 0.0}


def test_plain_sigterm_is_killed(tmp_path: Path) -> None:
    proc = _start(tmp_path, """
        import time
        import em_core as em
        run = em.create_run(name='term')
        run.log('train', {'loss': 1.0}, step=0)
        print('ready')
        time.sleep(60)
        """)
    try:
        _wait_for(proc, "ready")
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(TIMEOUT)
    finally:
        proc.kill()
        proc.communicate()
    assert code == -signal.SIGTERM
    run = _only_run(tmp_path)
    assert run.status is em.Status.KILLED
    assert run.error is not None and "SIGTERM" in run.error["message"]


def test_plain_uncaught_ctrl_c_is_killed(tmp_path: Path) -> None:
    proc = _start(tmp_path, """
        import time
        import em_core as em
        run = em.create_run(name='int')
        print('ready')
        time.sleep(60)
        """)
    try:
        _wait_for(proc, "ready")
        proc.send_signal(signal.SIGINT)
        code = proc.wait(TIMEOUT)
    finally:
        proc.kill()
        _, err = proc.communicate()
    assert code == -signal.SIGINT and "KeyboardInterrupt" in err
    assert _only_run(tmp_path).status is em.Status.KILLED


def test_user_handler_exiting_is_killed(tmp_path: Path) -> None:
    proc = _start(tmp_path, """
        import signal, sys, time
        signal.signal(signal.SIGTERM, lambda s, f: sys.exit(0))
        import em_core as em
        with em.create_run(name='exit-on-term'):
            print('ready')
            time.sleep(60)
        """)
    try:
        _wait_for(proc, "ready")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(TIMEOUT) == 0
    finally:
        proc.kill()
        proc.communicate()
    run = _only_run(tmp_path)
    assert run.status is em.Status.KILLED
    assert run.error is not None and "SIGTERM" in run.error["message"]


# ------------------------------------------------------------ 10: exit codes
@pytest.mark.parametrize("with_block", [True, False])
@pytest.mark.parametrize(("call", "status", "message"), [
    ("sys.exit(0)", em.Status.COMPLETE, None),
    ("sys.exit()", em.Status.COMPLETE, None),
    ("sys.exit('bad data')", em.Status.FAILED, "bad data"),
    ("sys.exit(3)", em.Status.FAILED, "exit code 3"),
])
def test_sys_exit_code_decides_status(tmp_path: Path, with_block: bool, call: str,
                                      status: em.Status, message: str | None) -> None:
    body = (f"with em.create_run(name='x'):\n    {call}\n" if with_block
            else f"run = em.create_run(name='x')\n{call}\n")
    proc = _run(tmp_path, "import sys\nimport em_core as em\n" + body)
    run = _only_run(tmp_path)
    assert run.status is status, proc.stderr
    assert (run.error or {}).get("message") == message


def test_keyboard_interrupt_ending_script_without_with_is_killed(tmp_path: Path) -> None:
    proc = _run(tmp_path, """
        import em_core as em
        run = em.create_run(name='ki')
        raise KeyboardInterrupt
        """)
    assert proc.returncode != 0
    assert _only_run(tmp_path).status is em.Status.KILLED


# ------------------------------------------------------------ 11a: forked helpers
def test_forked_helper_does_not_keep_sigkilled_run_alive(tmp_path: Path) -> None:
    proc = _start(tmp_path, """
        import os, sys, time
        import em_core as em
        run = em.create_run(name='forks')
        pid = os.fork()
        if pid == 0:
            # the fork hooks ran before this line: only now has the helper closed its copy
            # of the lock (on a loaded machine the parent can be killed before that)
            os.write(1, b'helper ready\\n')  # one write: the two processes' lines never mix
            time.sleep(30)
            os._exit(0)
        os.write(1, b'%d\\n' % pid)  # (print, unbuffered, writes the text and the newline apart)
        time.sleep(60)
        """)
    helper = 0
    try:
        assert proc.stdout is not None
        got = sorted(proc.stdout.readline().strip() for _ in range(2))
        if "" in got:  # its output ended early: say why
            proc.kill()
            pytest.fail(f"the script ended early ({got}): {proc.communicate()[1][-3000:]}")
        helper = int(got[0])  # digits sort before letters
        assert got[1] == "helper ready", got
        proc.send_signal(signal.SIGKILL)
        proc.wait(TIMEOUT)
        os.kill(helper, 0)  # the helper is still alive
        assert _only_run(tmp_path).status is em.Status.CRASHED
    finally:
        proc.kill()
        if helper:
            os.kill(helper, signal.SIGKILL)  # it holds the stdout pipe open
        proc.communicate()


# ------------------------------------------------------------ 11b: SIGTERM during finish
@pytest.mark.slow
def test_sigterm_during_finish_never_leaves_crashed(tmp_path: Path) -> None:
    rng = random.Random(11)
    code = """
        import em_core as em
        hp = {f'k{i}': 'x' * 200 for i in range(3000)}  # a slow run.json to write
        run = em.create_run(name='fin', hparams=hp)
        for i in range(200):
            run.log('train', {'loss': float(i)}, step=i)
        print('ready')
        run.finish()
        """
    for attempt in range(12):
        d = tmp_path / str(attempt)
        d.mkdir()
        proc = _start(d, code)
        try:
            _wait_for(proc, "ready")
            time.sleep(rng.uniform(0, 0.03))
            proc.send_signal(signal.SIGTERM)
            proc.wait(TIMEOUT)
        finally:
            proc.kill()
            proc.communicate()
        status = _only_run(d).status
        assert status in (em.Status.COMPLETE, em.Status.KILLED), (attempt, status)


# ------------------------------------------------------------ 12: rank -1
@pytest.mark.parametrize("var", ["LOCAL_RANK", "RANK"])
def test_rank_minus_one_is_not_distributed(tmp_path: Path, var: str) -> None:
    info = em.dist_info({var: "-1"})
    assert (info.rank, info.world_size, info.launcher) == (0, 1, None)
    proc = subprocess.run(_script(tmp_path, """
        import em_core as em
        run = em.create_run(name='single')
        print(type(run).__name__)
        run.finish()
        """), cwd=tmp_path, env=_env(tmp_path, **{var: "-1"}), capture_output=True,
        text=True, timeout=TIMEOUT)
    assert proc.stdout.strip() == "Run", proc.stderr
    assert _only_run(tmp_path).status is em.Status.COMPLETE
