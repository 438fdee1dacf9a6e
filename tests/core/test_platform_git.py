"""Tests of the platform and git records (em_core._platform, em_core._git).

Git tests drive the real `git` binary on throw-away repositories; GPU tests put a fake
`nvidia-smi` first on PATH.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import platform
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from em_core import _platform
from em_core._git import collect_git, strip_credentials
from em_core._platform import ML_PACKAGES, collect_platform, redact_argv

REPO_ROOT = Path(__file__).resolve().parents[2]
SENTINEL = "sentinel-secret-123"


# --------------------------------------------------------------------------- helpers


def _git(cwd: Path, *args: str) -> str:
    proc = subprocess.run(
        ["git", *args], cwd=cwd, capture_output=True, text=True, check=True, timeout=30
    )
    return proc.stdout.strip()


@pytest.fixture
def git_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Isolate git from the user's configuration and from any repository above tmp_path."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(home / ".gitconfig"))
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))
    for var in ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE"):
        monkeypatch.delenv(var, raising=False)
    for role in ("AUTHOR", "COMMITTER"):
        monkeypatch.setenv(f"GIT_{role}_NAME", "Test")
        monkeypatch.setenv(f"GIT_{role}_EMAIL", "test@example.com")
    return tmp_path


@pytest.fixture
def repo(git_env: Path) -> Path:
    """A repository on branch `main` with one commit holding src/train.py and README."""
    path = git_env / "repo"
    (path / "src").mkdir(parents=True)
    _git(path, "init", "-q", "-b", "main")
    (path / "src" / "train.py").write_text("print('train')\n")
    (path / "README").write_text("hello\n")
    _git(path, "add", "-A")
    _git(path, "commit", "-q", "-m", "first")
    return path


def _fake_nvidia_smi(bin_dir: Path, body: str, monkeypatch: pytest.MonkeyPatch) -> None:
    bin_dir.mkdir(exist_ok=True)
    script = bin_dir / "nvidia-smi"
    script.write_text("#!/bin/sh\n" + body)
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")


# --------------------------------------------------------------------------- git


def test_git_clean_repo_records_root_branch_commit(
    repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    info = collect_git(repo)
    assert info is not None
    assert os.path.realpath(info["root"]) == os.path.realpath(repo)
    assert info["branch"] == "main"
    assert info["commit"] == _git(repo, "rev-parse", "HEAD")
    assert re.fullmatch(r"[0-9a-f]{40}", info["commit"])
    assert info["dirty"] is False
    assert info["remote_name"] is None and info["remote_url"] is None
    assert json.loads(json.dumps(info)) == info


def test_git_start_may_be_a_file_or_subdirectory(repo: Path) -> None:
    from_file = collect_git(repo / "src" / "train.py")
    from_dir = collect_git(str(repo / "src"))
    assert from_file is not None and from_dir is not None
    assert from_file["root"] == from_dir["root"]
    assert os.path.realpath(from_file["root"]) == os.path.realpath(repo)


def test_git_remote_url_has_credentials_stripped(repo: Path) -> None:
    _git(repo, "remote", "add", "backup", "https://other.example.com/b.git")
    _git(repo, "remote", "add", "origin", "https://alice:tok-s3cr3t-999@example.com/org/x.git")
    info = collect_git(repo)
    assert info is not None
    assert info["remote_name"] == "origin"
    assert info["remote_url"] == "https://example.com/org/x.git"
    dumped = json.dumps(info)
    assert "tok-s3cr3t-999" not in dumped and "alice" not in dumped


def test_git_first_remote_when_no_origin_and_scp_url_kept(repo: Path) -> None:
    _git(repo, "remote", "add", "upstream", "git@example.com:org/x.git")
    info = collect_git(repo)
    assert info is not None
    assert info["remote_name"] == "upstream"
    assert info["remote_url"] == "git@example.com:org/x.git"


def test_git_dirty_tracks_modified_files_not_untracked(repo: Path) -> None:
    (repo / "notes.txt").write_text("untracked\n")
    info = collect_git(repo)
    assert info is not None and info["dirty"] is False
    (repo / "README").write_text("changed\n")
    info = collect_git(repo)
    assert info is not None and info["dirty"] is True


def test_git_staged_change_is_dirty(repo: Path) -> None:
    (repo / "new.py").write_text("x = 1\n")
    _git(repo, "add", "new.py")
    info = collect_git(repo)
    assert info is not None and info["dirty"] is True


def test_git_detached_head_has_no_branch(repo: Path) -> None:
    (repo / "README").write_text("second\n")
    _git(repo, "commit", "-q", "-am", "second")
    first = _git(repo, "rev-parse", "HEAD~1")
    _git(repo, "checkout", "-q", "--detach", first)
    info = collect_git(repo)
    assert info is not None
    assert info["branch"] is None
    assert info["commit"] == first


def test_git_repo_without_commits(git_env: Path) -> None:
    path = git_env / "empty"
    path.mkdir()
    _git(path, "init", "-q", "-b", "trunk")
    info = collect_git(path)
    assert info is not None
    assert info["commit"] is None
    assert info["branch"] == "trunk"


def test_git_not_a_repository_returns_none(git_env: Path) -> None:
    plain = git_env / "plain"
    plain.mkdir()
    assert collect_git(plain) is None
    assert collect_git(git_env / "does-not-exist") is None


def test_git_inside_dot_git_returns_none(repo: Path) -> None:
    assert collect_git(repo / ".git") is None


def test_git_missing_binary_returns_none(
    repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    empty_bin = tmp_path / "empty-bin"
    empty_bin.mkdir()
    monkeypatch.setenv("PATH", str(empty_bin))
    assert collect_git(repo) is None


def test_git_default_start_is_entry_point_directory(
    repo: Path, git_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    elsewhere = git_env / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    monkeypatch.setattr(sys, "argv", [str(repo / "src" / "train.py"), "--lr", "0.1"])
    info = collect_git()
    assert info is not None
    assert os.path.realpath(info["root"]) == os.path.realpath(repo)
    assert info["entry_point"] == "src/train.py"


def test_git_default_start_is_cwd_without_script(
    repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(repo / "src")
    monkeypatch.setattr(sys, "argv", ["-c"])
    info = collect_git()
    assert info is not None
    assert os.path.realpath(info["root"]) == os.path.realpath(repo)
    assert info["entry_point"] is None


def test_git_entry_point_outside_repo_is_none(
    repo: Path, git_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    script = git_env / "outside.py"
    script.write_text("pass\n")
    monkeypatch.setattr(sys, "argv", [str(script)])
    info = collect_git(repo)
    assert info is not None
    assert info["entry_point"] is None


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://user:token@host/x.git", "https://host/x.git"),
        ("https://ghp_onlytoken@github.com/o/r.git", "https://github.com/o/r.git"),
        ("http://u:p@host:8080/a/b?x=1#f", "http://host:8080/a/b?x=1#f"),
        ("https://u:p@ss@host/x.git", "https://host/x.git"),
        ("https://host/x.git", "https://host/x.git"),
        ("ssh://git@host:22/x.git", "ssh://git@host:22/x.git"),
        ("ssh://git:pw@host/x.git", "ssh://git@host/x.git"),
        ("git+ssh://git@host/x.git", "git+ssh://git@host/x.git"),
        ("git@github.com:org/repo.git", "git@github.com:org/repo.git"),
        ("/srv/git/repo.git", "/srv/git/repo.git"),
        ("file:///srv/git/repo.git", "file:///srv/git/repo.git"),
        ("https://host/path@v1", "https://host/path@v1"),
    ],
)
def test_strip_credentials(url: str, expected: str) -> None:
    assert strip_credentials(url) == expected


# --------------------------------------------------------------------------- platform


def test_platform_identity_fields_match_the_process() -> None:
    info = collect_platform()
    assert info["hostname"] == socket.gethostname()
    assert info["pid"] == os.getpid()
    assert info["cwd"] == os.getcwd()
    assert info["python"] == {
        "version": platform.python_version(),
        "implementation": platform.python_implementation(),
        "executable": sys.executable,
    }
    assert info["os"]["system"] == platform.system()
    assert info["os"]["release"] == platform.release()
    assert info["cpu"]["count"] == os.cpu_count()
    assert json.loads(json.dumps(info)) == info


@pytest.mark.skipif(not os.path.exists("/proc/meminfo"), reason="reads Linux /proc")
def test_platform_memory_and_cpu_model_from_proc() -> None:
    info = collect_platform()
    meminfo = Path("/proc/meminfo").read_text()
    total_kib = re.search(r"^MemTotal:\s*(\d+) kB$", meminfo, re.MULTILINE)
    assert total_kib is not None
    assert info["memory_bytes"] == int(total_kib.group(1)) * 1024
    cpuinfo = Path("/proc/cpuinfo").read_text(errors="replace")
    match = re.search(r"^model name\s*:\s*(.+)$", cpuinfo, re.MULTILINE)
    if match:
        assert info["cpu"]["model"] == match.group(1).strip()
    else:
        assert info["cpu"]["model"] is None or isinstance(info["cpu"]["model"], str)


def test_platform_packages_come_from_metadata() -> None:
    packages = collect_platform()["packages"]
    assert packages["numpy"] == importlib.metadata.version("numpy")
    for dist in ML_PACKAGES:
        try:
            expected = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            assert dist not in packages
        else:
            assert packages[dist] == expected
    assert set(packages) <= set(ML_PACKAGES)


def test_platform_does_not_import_frameworks(tmp_path: Path) -> None:
    code = (
        "import sys, json\n"
        f"sys.path.insert(0, {str(REPO_ROOT)!r})\n"
        "from em_core._platform import collect_platform\n"
        "info = collect_platform()\n"
        "print(json.dumps({'numpy_listed': 'numpy' in info['packages'],"
        " 'numpy_imported': 'numpy' in sys.modules}))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    result = json.loads(out.stdout)
    assert result == {"numpy_listed": True, "numpy_imported": False}


def test_platform_parses_fake_nvidia_smi(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    args_file = tmp_path / "args.txt"
    _fake_nvidia_smi(
        tmp_path / "bin",
        f'echo "$@" > "{args_file}"\n'
        'echo "0, NVIDIA H100 80GB HBM3, 81559, 550.54.15, GPU-0a1b2c3d"\n'
        'echo "1, Tesla T4, [N/A], 550.54.15, GPU-ffff0000"\n',
        monkeypatch,
    )
    info = collect_platform()
    assert info["gpu_error"] is None
    assert info["gpus"] == [
        {
            "index": 0,
            "name": "NVIDIA H100 80GB HBM3",
            "memory_total_mb": 81559,
            "driver_version": "550.54.15",
            "uuid": "GPU-0a1b2c3d",
        },
        {
            "index": 1,
            "name": "Tesla T4",
            "memory_total_mb": None,
            "driver_version": "550.54.15",
            "uuid": "GPU-ffff0000",
        },
    ]
    assert "--format=csv,noheader,nounits" in args_file.read_text()


def test_platform_failing_nvidia_smi_reports_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _fake_nvidia_smi(
        tmp_path / "bin",
        'echo "NVIDIA-SMI has failed because it could not communicate" >&2\nexit 9\n',
        monkeypatch,
    )
    info = collect_platform()
    assert info["gpus"] == []
    assert "9" in info["gpu_error"] and "could not communicate" in info["gpu_error"]


def test_platform_garbled_nvidia_smi_output_reports_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _fake_nvidia_smi(tmp_path / "bin", 'echo "not, a, gpu"\n', monkeypatch)
    info = collect_platform()
    assert info["gpus"] == []
    assert "not understood" in info["gpu_error"]


def test_platform_hanging_nvidia_smi_times_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_platform, "_NVIDIA_SMI_TIMEOUT_S", 0.3)
    # exec: the sleeping process must be the one that is killed (a child would hold the pipes).
    _fake_nvidia_smi(tmp_path / "bin", "exec sleep 30\n", monkeypatch)
    info = collect_platform()
    assert info["gpus"] == []
    assert "timed out" in info["gpu_error"]


def test_platform_without_nvidia_smi(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    empty_bin = tmp_path / "empty-bin"
    empty_bin.mkdir()
    monkeypatch.setenv("PATH", str(empty_bin))
    info = collect_platform()
    assert info["gpus"] == [] and info["gpu_error"] is None


def test_platform_command_redacts_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    argv = [
        "train.py",
        "--password",
        "hunter2-pass",
        "--token=tok-abc-123",
        "--api_key",
        "key-one-111",
        "--api-key",
        "key-two-222",
        "--secret",
        "shh-333",
        "--wandb-key=key-three-444",
        "--db",
        "postgres://admin:pw-555@db.local/runs",
        "--max-tokens",
        "512",
        "--tokenizer",
        "bpe",
        "--lr=0.1",
    ]
    monkeypatch.setattr(sys, "argv", argv)
    info = collect_platform()
    assert info["command"] == [
        "train.py",
        "--password",
        "***",
        "--token=***",
        "--api_key",
        "***",
        "--api-key",
        "***",
        "--secret",
        "***",
        "--wandb-key=***",
        "--db",
        "postgres://***@db.local/runs",
        "--max-tokens",
        "512",
        "--tokenizer",
        "bpe",
        "--lr=0.1",
    ]
    dumped = json.dumps(info)
    for secret in ("hunter2", "tok-abc", "key-one", "key-two", "shh-333", "key-three", "pw-555"):
        assert secret not in dumped
    assert sys.argv == argv  # the caller's list is not modified


def test_redact_argv_secret_flag_at_end_of_argv() -> None:
    assert redact_argv(["x.py", "--token"]) == ["x.py", "--token"]
    # a flag that follows is the next option, not a value (issue 11: '--lr' is not swallowed)
    assert redact_argv(["x.py", "--token", "--lr", "0.1"]) == ["x.py", "--token", "--lr", "0.1"]


def test_platform_records_no_environment_values(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EM_TEST_SECRET", SENTINEL)
    monkeypatch.setenv("EM_API_KEY", "em-api-key-sentinel-456")
    dumped = json.dumps(collect_platform())
    assert SENTINEL not in dumped
    assert "em-api-key-sentinel-456" not in dumped


def test_platform_no_environment_value_anywhere_in_record(tmp_path: Path) -> None:
    # A controlled environment, so that every value in it can be checked: in the test
    # process PWD, HOSTNAME or `_` legitimately equal recorded fields.
    env = {
        "PATH": os.environ.get("PATH", ""),
        "EM_TEST_SECRET": SENTINEL,
        "AWS_SECRET_ACCESS_KEY": "aws-sentinel-secret-789",
        "LANG": "C.UTF-8",
    }
    code = (
        "import sys, json, os\n"
        f"sys.path.insert(0, {str(REPO_ROOT)!r})\n"
        "from em_core._platform import collect_platform\n"
        "print(json.dumps({'env': dict(os.environ), 'info': collect_platform()}))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    result = json.loads(out.stdout)
    dumped = json.dumps(result["info"])
    assert result["env"]["EM_TEST_SECRET"] == SENTINEL
    long_values = [value for value in result["env"].values() if len(value) > 8]
    assert SENTINEL in long_values
    for value in long_values:
        assert value not in dumped
