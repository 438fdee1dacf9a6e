"""How a run ends when its process ends: finish, exceptions, signals, SIGKILL (subprocesses)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import em_core as em

REPO = Path(__file__).resolve().parents[2]
TIMEOUT = 60


def _env(tmp_path: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env["EM_RUN_PARENT_DIR"] = str(tmp_path / "runs")
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _script(tmp_path: Path, code: str) -> list[str]:
    script = tmp_path / "train.py"  # a file, so that tracebacks show source lines
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


def _only_run(tmp_path: Path) -> em.Run:
    (path,) = (tmp_path / "runs").iterdir()
    return em.load_run(path)


def test_sigkill_loses_no_returned_log(tmp_path: Path) -> None:
    n = 3000  # with 100 values per call, more than one 4 MiB window of the metric file
    proc = _start(tmp_path, f"""
        import em_core as em
        run = em.create_run(name='killed')
        names = [f'm{{i}}' for i in range(100)]
        step = 0
        while True:
            run.log('train', dict.fromkeys(names, float(step)), step=step, epoch=step // 100)
            step += 1
            if step >= {n}:
                print('logged', step)
        """)
    try:
        _wait_for(proc, f"logged {n}")
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(TIMEOUT) == -signal.SIGKILL
    finally:
        proc.kill()
        proc.communicate()
    run = _only_run(tmp_path)
    assert run.status is em.Status.CRASHED
    assert run.end_timestamp is None
    train = run.metrics["train"]
    assert len(train) >= n  # it may have logged a few more before the signal landed
    assert [p["sequence"]["step"] for p in train] == list(range(len(train)))
    assert all(p["value"]["m99"] == float(p["sequence"]["step"]) for p in train)
    assert train[n - 1]["sequence"]["epoch"] == (n - 1) // 100


def test_uncaught_exception_is_failed_with_traceback(tmp_path: Path) -> None:
    proc = _run(tmp_path, """
        import em_core as em
        run = em.create_run(name='boom')
        run.log('train', {'loss': 1.0}, step=0)
        def train():
            raise ValueError('diverged at step 7')
        train()
        """)
    assert proc.returncode == 1
    assert "ValueError: diverged at step 7" in proc.stderr  # the previous hook still printed
    run = _only_run(tmp_path)
    assert run.status is em.Status.FAILED
    assert run.error is not None
    assert run.error["type"] == "ValueError"
    assert run.error["message"] == "diverged at step 7"
    assert 'train.py", line 6, in train' in run.error["traceback"]
    assert "raise ValueError" in run.error["traceback"]
    assert run.end_timestamp is not None
    assert run.metrics["train"][0]["value"] == {"loss": 1.0}


def test_sigterm_is_killed_and_process_still_dies_of_it(tmp_path: Path) -> None:
    proc = _start(tmp_path, """
        import time
        import em_core as em
        run = em.create_run(name='term')
        run.log('train', {'loss': 1.0}, step=0)
        print('ready')
        time.sleep(60)
        print('not killed')
        """)
    try:
        _wait_for(proc, "ready")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(TIMEOUT) == -signal.SIGTERM
    finally:
        proc.kill()
        out, _ = proc.communicate()
    assert "not killed" not in out
    run = _only_run(tmp_path)
    assert run.status is em.Status.KILLED
    assert run.error is not None and "SIGTERM" in run.error["message"]
    assert run.metrics["train"][0]["value"] == {"loss": 1.0}


def test_sigint_is_killed(tmp_path: Path) -> None:
    proc = _start(tmp_path, """
        import time
        import em_core as em
        run = em.create_run(name='int')
        run.log('train', {'loss': 1.0}, step=0)
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
    assert code == -signal.SIGINT  # Python's way of dying of an unhandled Ctrl-C
    assert "KeyboardInterrupt" in err  # the default handler still raised it
    run = _only_run(tmp_path)
    assert run.status is em.Status.KILLED
    assert run.metrics["train"][0]["value"] == {"loss": 1.0}


def test_keyboard_interrupt_caught_by_with_block(tmp_path: Path) -> None:
    proc = _run(tmp_path, """
        import em_core as em
        try:
            with em.create_run(name='ctrlc') as run:
                raise KeyboardInterrupt
        except KeyboardInterrupt:
            print('caught')
        """)
    assert proc.returncode == 0 and "caught" in proc.stdout
    assert _only_run(tmp_path).status is em.Status.KILLED


def test_users_sigterm_handler_still_runs(tmp_path: Path) -> None:
    marker = tmp_path / "handler-ran"
    proc = _start(tmp_path, f"""
        import signal, sys, time
        def handler(signum, frame):
            open({str(marker)!r}, 'w').write(str(signum))
            sys.exit(3)
        signal.signal(signal.SIGTERM, handler)
        import em_core as em
        run = em.create_run(name='own-handler')
        run.log('train', {{'loss': 1.0}}, step=0)
        print('ready')
        time.sleep(60)
        """)
    try:
        _wait_for(proc, "ready")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(TIMEOUT) == 3
    finally:
        proc.kill()
        proc.communicate()
    assert marker.read_text() == str(int(signal.SIGTERM))
    run = _only_run(tmp_path)
    assert run.status is em.Status.KILLED  # the later exit does not overwrite it


def test_ignored_sigterm_stays_ignored(tmp_path: Path) -> None:
    proc = _start(tmp_path, """
        import signal, sys
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        import em_core as em
        run = em.create_run(name='nohup')
        print('ready')
        sys.stdin.readline()  # the parent writes a line after its SIGTERM was sent
        print('survived')
        """)
    try:
        _wait_for(proc, "ready")
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate("go\n", timeout=TIMEOUT)
    finally:
        proc.kill()
    assert proc.returncode == 0
    assert "survived" in out
    assert _only_run(tmp_path).status is em.Status.COMPLETE


def test_script_end_without_finish_is_complete(tmp_path: Path) -> None:
    proc = _run(tmp_path, """
        import em_core as em
        run = em.create_run(name='plain')
        for i in range(10):
            run.log('train', {'i': i}, step=i)
        """)
    assert proc.returncode == 0, proc.stderr
    run = _only_run(tmp_path)
    assert run.status is em.Status.COMPLETE
    assert run.end_timestamp is not None
    assert [p["value"]["i"] for p in run.metrics["train"]] == list(range(10))
    data = Path(run.local, "metrics.bin").read_bytes()
    assert not data.endswith(bytes(64))  # closed properly: padding cut


def test_sys_exit_nonzero_without_finish(tmp_path: Path) -> None:
    proc = _run(tmp_path, """
        import sys
        import em_core as em
        run = em.create_run(name='exit')
        sys.exit(0)
        """)
    assert proc.returncode == 0
    assert _only_run(tmp_path).status is em.Status.COMPLETE


def test_with_block_raising_is_failed() -> None:
    with pytest.raises(RuntimeError, match="oops"):
        with em.create_run(name="ctx") as run:
            run.log("train", {"a": 1}, step=0)
            raise RuntimeError("oops")
    back = em.load_run(run.local)
    assert back.status is em.Status.FAILED
    assert back.error is not None
    assert back.error["type"] == "RuntimeError" and back.error["message"] == "oops"
    assert back.metrics["train"][0]["value"] == {"a": 1}


def test_with_block_completes() -> None:
    with em.create_run(name="ctx") as run:
        run.log("train", {"a": 1}, step=0)
    assert isinstance(run, em.Run)
    assert em.load_run(run.local).status is em.Status.COMPLETE
    assert run.status is em.Status.COMPLETE


def test_finish_is_idempotent() -> None:
    run = em.create_run()
    run.finish()
    end = run.end_timestamp
    meta = Path(run.local, "run.json").read_bytes()
    run.finish()
    run.finish("Failed", error="late")
    assert run.status is em.Status.COMPLETE
    assert run.end_timestamp == end
    assert Path(run.local, "run.json").read_bytes() == meta


def test_finish_in_child_then_exception_keeps_complete(tmp_path: Path) -> None:
    proc = _run(tmp_path, """
        import em_core as em
        run = em.create_run(name='done')
        run.finish()
        raise SystemError('after the run')
        """)
    assert proc.returncode == 1
    assert _only_run(tmp_path).status is em.Status.COMPLETE


def test_previous_excepthook_still_called(tmp_path: Path) -> None:
    proc = _run(tmp_path, """
        import sys
        def hook(t, v, tb):
            print('my hook', t.__name__)
        sys.excepthook = hook
        import em_core as em
        run = em.create_run(name='hook')
        raise KeyError('k')
        """)
    assert "my hook KeyError" in proc.stdout
    assert _only_run(tmp_path).status is em.Status.FAILED


def test_resume_after_sigkill(tmp_path: Path) -> None:
    proc = _start(tmp_path, """
        import em_core as em
        run = em.create_run(name='again')
        step = 0
        while True:
            run.log('train', {'loss': float(step), 'n': step}, step=step)
            step += 1
            if step == 500:
                print('logged 500')
        """)
    try:
        _wait_for(proc, "logged 500")
        proc.send_signal(signal.SIGKILL)
        proc.wait(TIMEOUT)
    finally:
        proc.kill()
        proc.communicate()
    run = _only_run(tmp_path)
    assert run.status is em.Status.CRASHED
    before = len(run.metrics["train"])
    assert before >= 500
    run.resume()
    run.log("train", {"loss": -1.0, "n": -1}, step=before)
    run.finish()
    back = em.load_run(run.local)
    assert back.status is em.Status.COMPLETE
    train = back.metrics["train"]
    assert len(train) == before + 1
    assert [p["value"]["n"] for p in train] == [*range(before), -1]


def test_forked_child_does_not_end_parents_run(tmp_path: Path) -> None:
    proc = _run(tmp_path, """
        import os, sys, json
        import em_core as em
        run = em.create_run(name='parent')
        pid = os.fork()
        if pid == 0:
            raise SystemExit(0)  # a worker process ending: runs atexit hooks in the child
        os.waitpid(pid, 0)
        meta = json.load(open(os.path.join(run.local, 'run.json')))
        print('after child', meta['status'])
        run.log('train', {'a': 1}, step=0)
        """)
    assert proc.returncode == 0, proc.stderr
    assert "after child Running" in proc.stdout
    run = _only_run(tmp_path)
    assert run.status is em.Status.COMPLETE
    assert run.metrics["train"][0]["value"] == {"a": 1}
