"""The metric log under faults: a full disk, a file-size limit, fork, a race with finish(),
values that raise, lone surrogates, a metrics.bin killed inside create_run, shape rotation.

Full disks are real: a small tmpfs mounted for the test (needs root, as CI has), written by
a child process so that a SIGBUS or SIGXFSZ would show as the child's death.
"""

from __future__ import annotations

import json
import os
import signal
import struct
import subprocess
import sys
import textwrap
import threading
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import em_core as em
from em_core import _metricfile, _metricread

REPO = Path(__file__).resolve().parents[2]
TIMEOUT = 120
MiB = 1 << 20


def _child(tmp_path: Path, code: str, runs: Path, *, strict: bool = False
           ) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter; its last stdout line is returned parsed."""
    script = tmp_path / f"child_{uuid.uuid4().hex[:8]}.py"
    script.write_text(textwrap.dedent(code), encoding="utf-8")
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env["EM_RUN_PARENT_DIR"] = str(runs)
    env["EM_STRICT"] = "1" if strict else "0"
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=TIMEOUT)


def _result(proc: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    assert proc.returncode == 0, (
        f"child died (rc {proc.returncode}"
        f"{', ' + signal.Signals(-proc.returncode).name if proc.returncode < 0 else ''}): "
        f"{proc.stderr[-3000:]}")
    out: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return out


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 6 MiB tmpfs: about one and a half windows of the metric log."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root (CI runs as root)")
    disk = tmp_path / "disk"
    disk.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=6m", "tmpfs", str(disk)], check=True)
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=True)


# A training loop that outlives the disk: 40,000 records of 20 values (~7.5 MiB).
_FILL = """
    import json, os, warnings
    import em_core as em
    run = em.create_run(name='full')
    names = [f'm{i}' for i in range(20)]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        for step in range(40_000):
            run.log('train', dict.fromkeys(names, float(step)), step=step)
        run.log('val', {'acc': 0.5}, step=0)  # a new shape after the disk filled
        run.log('train', dict.fromkeys(names, -1.0), step=40_000)
    run.finish()
    back = em.load_run(run.local)
    train = back.metrics.get('train', [])
    print(json.dumps({
        'warnings': [str(w.message) for w in caught if issubclass(w.category, em.EmWarning)],
        'steps': [p['sequence']['step'] for p in train],
        'intact': all(set(p['value'].values()) == {float(p['sequence']['step'])}
                      and len(p['value']) == 20 for p in train),
        'status': back.status.value, 'dropped': back.to_dict().get('metrics_dropped'),
        'val': len(back.metrics.get('val', [])),
        'size': os.path.getsize(os.path.join(run.local, 'metrics.bin'))}))
"""


def _check_filled(out: dict[str, Any], *, least: int) -> None:
    steps = out["steps"]
    assert len(steps) > least, "the log must have grown as far as it could"
    assert steps == list(range(len(steps))), "the records before the disk filled, in order"
    assert out["intact"]
    assert out["status"] == "Complete"
    assert out["dropped"]["records"] == 40_002 - len(steps) - out["val"]
    assert len(out["warnings"]) == 1, out["warnings"]


def test_full_tmpfs_keeps_training_and_records(tmp_path: Path, small_disk: Path) -> None:
    out = _result(_child(tmp_path, _FILL, small_disk / "runs"))
    assert "No space left on device (ENOSPC)" in out["warnings"][0]
    assert "metrics_dropped" in out["warnings"][0]
    _check_filled(out, least=(4 * MiB + 64 * 1024) // 196)
    assert out["dropped"]["reason"] == "No space left on device (ENOSPC)"
    assert out["size"] < 6 * MiB


def test_full_tmpfs_strict_mode_raises_oserror_and_keeps_records(tmp_path: Path,
                                                                   small_disk: Path) -> None:
    proc = _child(tmp_path, """
        import errno, json
        import em_core as em
        run = em.create_run(name='full')
        step, errs = 0, []
        while len(errs) < 3:
            try:
                run.log('train', {'a': float(step), 'b': step}, step=step)
                step += 1
            except OSError as e:
                errs.append(e.errno)
        run.finish()
        back = em.load_run(run.local)
        print(json.dumps({'errs': errs, 'logged': step, 'status': back.status.value,
                          'kept': [p['value']['b'] for p in back.metrics['train']]}))
        """, small_disk / "runs", strict=True)
    out = _result(proc)
    assert out["errs"] == [28, 28, 28]  # ENOSPC, raised as OSError under EM_STRICT=1
    assert out["kept"] == list(range(out["logged"]))
    assert out["status"] == "Complete"


def test_disk_filled_by_other_files_then_freed(tmp_path: Path, small_disk: Path) -> None:
    out = _result(_child(tmp_path, """
        import json, os, time, warnings
        import em_core as em
        run = em.create_run(name='others')
        step = 0
        def log(n):
            global step
            for _ in range(n):
                run.log('train', {'a': float(step), 'b': step}, step=step)
                step += 1
        log(100)
        fd = os.open(os.path.join(os.path.dirname(run.local), 'checkpoint'),
                     os.O_WRONLY | os.O_CREAT)
        try:
            while True:  # the training's checkpoints fill the disk
                os.write(fd, bytes(4096))
        except OSError:
            pass
        os.close(fd)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter('always')
            log(150_000)  # goes on in the window reserved before, then is dropped
            full_at = len(run.metric_records())
            os.unlink(os.path.join(os.path.dirname(run.local), 'checkpoint'))
            time.sleep(1.1)  # em tries again at most once a second
            log(10)
        run.finish()
        back = em.load_run(run.local)
        print(json.dumps({
            'warnings': [str(w.message) for w in caught if issubclass(w.category, em.EmWarning)],
            'full_at': full_at, 'steps': [r.step for r in back.metric_records()],
            'intact': all(r.values == {'a': float(r.step), 'b': r.step}
                          for r in back.metric_records()),
            'status': back.status.value, 'dropped': back.to_dict()['metrics_dropped']}))
        """, small_disk / "runs"))
    full_at = out["full_at"]
    assert full_at > 100  # the window reserved before the disk filled was used
    assert out["steps"] == [*range(full_at), *range(150_100, 150_110)]
    assert out["intact"]
    assert out["status"] == "Complete"
    assert out["dropped"]["records"] == 150_100 - full_at
    assert len(out["warnings"]) == 1


# Python ignores SIGXFSZ at start-up (then a write past the limit fails with EFBIG); a
# program may restore the default action, which kills the process.
@pytest.mark.parametrize("sigxfsz", ["SIG_DFL", "SIG_IGN"])
def test_file_size_limit_is_not_fatal(tmp_path: Path, sigxfsz: str) -> None:
    limit = 3 * MiB  # below the first 4 MiB window: even create_run must stay inside it
    out = _result(_child(tmp_path, textwrap.dedent(f"""
        import resource, signal
        signal.signal(signal.SIGXFSZ, signal.{sigxfsz})
        resource.setrlimit(resource.RLIMIT_FSIZE, ({limit}, resource.RLIM_INFINITY))
        """) + textwrap.dedent(_FILL), tmp_path / "runs"))
    assert "EFBIG" in out["warnings"][0] and "RLIMIT_FSIZE" in out["warnings"][0]
    assert out["size"] <= limit
    assert out["dropped"]["reason"].endswith("(EFBIG)")
    _check_filled(out, least=(limit - 4096) // 196)  # the log grew up to the limit


def test_create_run_on_a_full_disk_is_a_clear_error_and_leaves_nothing(
        tmp_path: Path, small_disk: Path) -> None:
    out = _result(_child(tmp_path, """
        import errno, json, os
        import em_core as em
        runs = os.environ['EM_RUN_PARENT_DIR']
        os.makedirs(runs)
        filler = os.path.join(os.path.dirname(runs), 'checkpoint')
        result = {}
        for left in (0, 256 * 1024):  # nothing left; too little for the metric log
            with open(filler, 'wb') as f:  # the training's own files filled the disk
                try:
                    while True:
                        f.write(bytes(64 * 1024))
                        f.flush()
                except OSError:
                    pass
            os.truncate(filler, os.path.getsize(filler) - left)
            try:
                em.create_run(name='nospace')
                result[left] = 'created'
            except OSError as e:
                result[left] = [e.errno, str(e), os.listdir(runs)]
        os.unlink(filler)
        run = em.create_run(name='room')  # once there is room again, all is normal
        run.log('train', {'a': 1}, step=0)
        run.finish()
        result['after'] = [em.load_run(run.local).metrics, os.listdir(runs)]
        print(json.dumps(result))
        """, small_disk / "runs"))
    for left in ("0", str(256 * 1024)):
        code, message, remaining = out[left]
        assert code == 28, out
        assert "ENOSPC" in message and str(small_disk / "runs") in message
        assert remaining == [], "no half-made run may be left"
    metrics, dirs = out["after"]
    assert metrics == {"train": [{"value": {"a": 1}, "sequence": metrics["train"][0]["sequence"]}]}
    assert len(dirs) == 1


# --------------------------------------------------------------------------- fork


def test_forked_child_records_nothing_and_leaves_parent_intact(tmp_path: Path) -> None:
    out = _result(_child(tmp_path, """
        import json, os, sys, warnings
        import em_core as em
        run = em.create_run(name='parent')
        names = [f'v{i}' for i in range(50)]  # ~450 bytes a record: windows are crossed
        step = 0
        def log(n):
            global step
            for _ in range(n):
                run.log('train', dict.fromkeys(names, float(step)), step=step)
                step += 1
        log(500)
        pid = os.fork()
        if pid == 0:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter('always')
                for i in range(1000):
                    run.log('train', dict.fromkeys(names, -1.0), step=i)
                    run.log('child', {f'new{i}': -1.0}, step=i)
                run.hparams['child'] = True
                run.flush()
                run.finish()
            texts = [str(w.message) for w in caught if issubclass(w.category, em.EmWarning)]
            ok = len(texts) == 1 and 'fork' in texts[0]
            sys.stderr.write(repr(texts))
            sys.exit(0 if ok else 3)  # exit hooks run in the child too
        log(5000)
        _, status = os.waitpid(pid, 0)
        meta = json.load(open(os.path.join(run.local, 'run.json')))
        from em_core import _lifecycle
        lock_held = _lifecycle.writer_alive(run.local, None)  # the child did not unlock it
        log(10000)
        run.hparams['parent'] = 1
        run.finish()
        back = em.load_run(run.local)
        train = back.metrics['train']
        print(json.dumps({
            'child_exit': os.waitstatus_to_exitcode(status), 'status_after_child': meta['status'],
            'lock_held': lock_held,
            'steps': [p['sequence']['step'] for p in train], 'logged': step,
            'intact': all(set(p['value'].values()) == {float(p['sequence']['step'])}
                          and len(p['value']) == 50 for p in train),
            'types': sorted(back.metrics), 'status': back.status.value,
            'hparams': back.hparams.as_dict()}))
        """, tmp_path / "runs"))
    assert out["child_exit"] == 0, "the child warned once that it records nothing"
    assert out["status_after_child"] == "Running"
    assert out["lock_held"] is True
    assert out["steps"] == list(range(out["logged"]))
    assert out["intact"]
    assert out["types"] == ["train"]
    assert out["status"] == "Complete"
    assert out["hparams"] == {"parent": 1}


def test_forked_child_in_strict_mode_raises_run_finished(tmp_path: Path) -> None:
    out = _result(_child(tmp_path, """
        import json, os
        import em_core as em
        run = em.create_run(name='parent')
        run.log('train', {'a': 1.0}, step=0)
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            try:
                run.log('train', {'a': 2.0}, step=1)
                os.write(w, b'no error')
            except em.RunFinishedError as e:
                os.write(w, str(e).encode())
            os._exit(0)
        os.waitpid(pid, 0)
        said = os.read(r, 4096).decode()
        run.log('train', {'a': 3.0}, step=1)
        run.finish()
        print(json.dumps({'said': said, 'values': [p['value']['a'] for p in
                                                   em.load_run(run.local).metrics['train']]}))
        """, tmp_path / "runs", strict=True))
    assert "fork" in out["said"] and str(os.getpid()) not in out["said"]
    assert out["values"] == [1.0, 3.0]


# --------------------------------------------------------------------------- races, values


@pytest.fixture
def busy_switching() -> Iterator[None]:
    """Threads switch every 10 us instead of every 5 ms: races show up within a test."""
    before = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)
    yield
    sys.setswitchinterval(before)


@pytest.mark.usefixtures("fast_platform", "busy_switching")
def test_finish_racing_threads_that_log_new_names() -> None:
    unexpected: list[BaseException] = []
    for _ in range(50):
        run = em.create_run(name="race")
        assert isinstance(run, em.Run)
        go = threading.Event()

        def hammer(tid: int, run: em.Run = run, go: threading.Event = go) -> None:
            go.wait()
            for i in range(3000):
                try:
                    run.log("train", {f"t{tid}_{i}": float(i)}, step=i)
                except em.RunFinishedError:
                    return
                except BaseException as e:  # what the test looks for
                    unexpected.append(e)
                    return

        threads = [threading.Thread(target=hammer, args=(t,)) for t in range(6)]
        for t in threads:
            t.start()
        go.set()
        run.log("train", {"main": 1.0}, step=0)
        run.finish()
        for t in threads:
            t.join(TIMEOUT)
        assert em.load_run(run.local).status is em.Status.COMPLETE
    assert unexpected == [], [f"{type(e).__name__}: {e}" for e in unexpected[:5]]


class _Broken:
    """A tensor whose device failed: its ``item()`` (or its ``shape``) raises."""

    def __init__(self, where: str) -> None:
        self.where = where

    @property
    def shape(self) -> tuple[int, ...]:
        if self.where == "shape":
            raise RuntimeError("CUDA error: an illegal memory access was encountered")
        return ()

    def item(self) -> float:
        raise RuntimeError("CUDA error: device-side assert triggered")

    def __repr__(self) -> str:
        raise RuntimeError("CUDA error: cannot print")


@pytest.mark.parametrize("where", ["item", "shape"])
def test_value_whose_own_code_raises_is_a_bad_value(run: em.Run, where: str) -> None:
    with pytest.raises(ValueError, match="'loss'.*_Broken.*RuntimeError.*CUDA"):
        run.log("train", {"loss": _Broken(where), "acc": 0.5}, step=0)


@pytest.mark.usefixtures("lenient")
@pytest.mark.parametrize("where", ["item", "shape"])
def test_lenient_value_whose_own_code_raises_warns_once_keeps_others(run: em.Run,
                                                                     where: str) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for step in range(4):
            run.log("train", {"loss": _Broken(where), "acc": 0.5 + step}, step=step)
    texts = [str(w.message) for w in caught if issubclass(w.category, em.EmWarning)]
    assert len(texts) == 1 and "CUDA" in texts[0] and "'loss'" in texts[0]
    assert [r.values for r in run.metric_records()] == [{"acc": 0.5 + s} for s in range(4)]


def test_lone_surrogates_in_names_and_types_are_stored_escaped(run: em.Run) -> None:
    run.log("train", {"loss\udcff": 1.0, "ok": 2}, step=0)
    run.log("train", {"loss\udcff": 3.0, "ok": 4}, step=1)  # the cached fast path
    run.log("val\udc80", {"acc": 0.5}, step=0)
    run.finish()
    back = em.load_run(run.local)
    assert [p["value"] for p in back.metrics["train"]] == [
        {"loss\\udcff": 1.0, "ok": 2}, {"loss\\udcff": 3.0, "ok": 4}]
    assert back.metrics["val\\udc80"][0]["value"] == {"acc": 0.5}
    for key in [*back.metrics, *back.metrics["train"][0]["value"]]:
        key.encode("utf-8")  # every name read back is valid text


# --------------------------------------------------------------------------- 11c


@pytest.fixture(scope="module")
def crashed_runs(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Runs whose process died without finishing (five of them, made by one child)."""
    tmp = tmp_path_factory.mktemp("crashed")
    _result(_child(tmp, """
        import os
        import em_core as em
        for i in range(5):
            em.create_run(name=f'killed{i}').log('train', {'a': 1.0}, step=0)
        print('{}')
        os._exit(0)  # no finish, no exit hooks: as SIGKILL leaves them
        """, tmp / "runs"))
    return sorted((tmp / "runs").iterdir())


@pytest.mark.parametrize("index, content", [
    (0, b""), (1, b"EMME"), (2, bytes(16)), (3, bytes(_metricfile._WINDOW)),
    (4, b"EMMETRIC" + bytes(4096)),
], ids=["empty", "short-header", "zero-header", "zero-window", "magic-only"])
def test_metric_log_killed_inside_create_run(crashed_runs: list[Path], index: int,
                                             content: bytes) -> None:
    path = crashed_runs[index]
    (path / "metrics.bin").write_bytes(content)
    run = em.load_run(path)
    assert run.status is em.Status.CRASHED
    assert run.metrics == {}
    assert run.metric_records() == []
    run.resume()
    run.log("train", {"a": 2.0}, step=1)
    run.finish()
    back = em.load_run(path)
    assert back.status is em.Status.COMPLETE
    assert [p["value"] for p in back.metrics["train"]] == [{"a": 2.0}]
    assert (path / "metrics.bin").read_bytes()[:16] == _metricfile.HEADER.pack(
        _metricfile.MAGIC, _metricfile.VERSION, _metricfile.HEADER.size)


def test_bad_magic_is_still_an_error(tmp_path: Path) -> None:
    bad = tmp_path / "m.bin"
    bad.write_bytes(b"NOTEMLOG" + bytes(8))
    with pytest.raises(em.CorruptRunError, match="bad magic"):
        _metricfile.read_records(bad)


# --------------------------------------------------------------------------- 22


def _schema_count(path: Path) -> int:
    return sum(1 for _, schema, _ in _metricread.scan(path.read_bytes()) if schema is not None)


def test_rotating_more_shapes_than_the_cache_declares_each_once(run: em.Run) -> None:
    shapes = _metricfile._MAX_SHAPES + 900
    for rotation in range(3):
        for i in range(shapes):
            run.log("train", {f"m{i}": float(rotation)}, step=rotation)
    run.finish()
    path = Path(run.local, "metrics.bin")
    assert _schema_count(path) == shapes
    records = _metricfile.read_records(path)
    assert len(records) == 3 * shapes
    assert records[-1].values == {f"m{shapes - 1}": 2.0}


def test_fast_path_cache_evicts_one_entry_at_a_time(run: em.Run) -> None:
    for i in range(_metricfile._MAX_SHAPES + 10):
        run.log("train", {f"m{i}": 1.0}, step=0)
    fast = run._writer.fast  # type: ignore[union-attr]
    assert len(fast) == _metricfile._MAX_SHAPES
    assert ("train", f"m{_metricfile._MAX_SHAPES + 9}", float) in fast
    assert ("train", "m10", float) in fast and ("train", "m9", float) not in fast


@pytest.mark.usefixtures("lenient")
@pytest.mark.parametrize("kwargs", [
    lambda i: {"step": -1 - i}, lambda i: {"step": 0, "epoch": -1 - i},
    lambda i: {"step": float(i)}, lambda i: {"step": f"s{i}"},
], ids=["negative-step", "negative-epoch", "float-step", "str-step"])
def test_bad_step_warns_once_per_kind_not_per_value(run: em.Run, kwargs: Any) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for i in range(20):
            run.log("train", {"loss": 1.0}, **kwargs(i))
            run.log(f"type\n{i}", {"loss": 1.0}, step=0)  # a bad type, a new one each call
            run.log("train", {i: 1.0, "ok": 2.0}, step=1)  # a bad name, a new one each call
    texts = [str(w.message) for w in caught if issubclass(w.category, em.EmWarning)]
    assert len(texts) == 3, texts
    assert run.metrics["train"] == [
        {"value": {"ok": 2.0}, "sequence": p["sequence"]} for p in run.metrics["train"]]
    assert len(run.metrics["train"]) == 20


def test_schema_records_are_well_formed(run: em.Run) -> None:
    run.log("train", {"a": 1.0}, step=0)
    run.finish()
    data = Path(run.local, "metrics.bin").read_bytes()
    size, sid = struct.unpack_from("<II", data, 16)
    assert sid == 0
    assert json.loads(data[24:16 + size - 4]) == {"id": 1, "type": "train", "names": ["a"],
                                                  "kinds": "d"}
