"""Describe the git checkout a run's code comes from.

`collect_git` is called once when a run starts; its result is stored as the run's ``git``
record. It runs the ``git`` binary (never a library), each call bounded by a timeout, and
returns None rather than raising when git is missing, times out, or the code is not in a
repository. Credentials embedded in remote URLs are removed before anything is recorded.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from typing import Any

__all__ = ["collect_git", "strip_credentials"]

_GIT_TIMEOUT_S = 5.0
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*")
# For these schemes the user name (`ssh://git@host/...`) is a login, not a secret, so it
# is kept; anywhere else a lone user name may be a token (`https://<token>@github.com/`).
_KEEP_USER_SCHEMES = frozenset({"ssh", "git+ssh", "ssh+git"})


def collect_git(start: str | os.PathLike[str] | None = None) -> dict[str, Any] | None:
    """Collect the state of the git repository containing ``start``.

    Args:
        start: A file or directory inside the repository. Default: the directory of the
            entry-point script (``sys.argv[0]``) when that is a file, else the current
            working directory.

    Returns:
        None when git is not installed, ``start`` is not inside a work tree, or git fails.
        Otherwise a dict with the keys:

        - ``root`` (str): the work tree's top-level directory.
        - ``remote_name`` (str or None): ``origin`` when it exists, else the first remote.
        - ``remote_url`` (str or None): that remote's URL without credentials
          (see `strip_credentials`).
        - ``branch`` (str or None): the checked-out branch; None on a detached HEAD.
        - ``commit`` (str or None): the full SHA of HEAD; None before the first commit.
        - ``dirty`` (bool or None): whether tracked files differ from HEAD (untracked files
          are ignored); None when ``git status`` failed.
        - ``entry_point`` (str or None): ``sys.argv[0]`` relative to ``root`` (with ``/``
          separators) when the script lies inside the repository, else None.
    """
    git = shutil.which("git")
    if git is None:
        return None
    start_dir = _start_dir(start)
    if start_dir is None:
        return None
    root = _run_git(git, start_dir, "rev-parse", "--show-toplevel")
    if not root:  # not a repository, a bare repository, or inside `.git`
        return None
    commit = _run_git(git, root, "rev-parse", "--verify", "--quiet", "HEAD^{commit}")
    branch = _run_git(git, root, "symbolic-ref", "--quiet", "--short", "HEAD")
    remote_name = _pick_remote(_run_git(git, root, "remote"))
    remote_url = None
    if remote_name is not None:
        url = _run_git(git, root, "remote", "get-url", remote_name)
        remote_url = strip_credentials(url) if url else None
    status = _run_git(git, root, "status", "--porcelain", "--untracked-files=no")
    return {
        "root": root,
        "remote_name": remote_name,
        "remote_url": remote_url,
        "branch": branch or None,
        "commit": commit or None,
        "dirty": None if status is None else bool(status.strip()),
        "entry_point": _entry_point(root),
    }


def strip_credentials(url: str) -> str:
    """Remove the ``user:password@`` part from a URL, keeping everything else verbatim.

    ``https://user:token@host/x.git`` becomes ``https://host/x.git``; a user name alone is
    also removed for non-SSH schemes because it is often a token. SSH URLs keep their user
    name (``ssh://git@host/x.git``), and scp-like ``git@host:path`` and local paths are
    returned unchanged since they carry no secret.

    Example:
        >>> strip_credentials('https://me:ghp_abc@github.com/org/repo.git')
        'https://github.com/org/repo.git'
        >>> strip_credentials('git@github.com:org/repo.git')
        'git@github.com:org/repo.git'
    """
    scheme, sep, rest = url.partition("://")
    if not sep or not _SCHEME.fullmatch(scheme):
        return url
    end = len(rest)
    for delimiter in "/?#":
        pos = rest.find(delimiter)
        if pos != -1:
            end = min(end, pos)
    netloc = rest[:end]
    # rfind: an unescaped `@` inside a password must not leave its tail behind.
    at = netloc.rfind("@")
    if at == -1:
        return url
    userinfo, host = netloc[:at], netloc[at + 1 :]
    if scheme.lower() in _KEEP_USER_SCHEMES:
        user = userinfo.partition(":")[0]
        host = f"{user}@{host}" if user else host
    return f"{scheme}://{host}{rest[end:]}"


def _start_dir(start: str | os.PathLike[str] | None) -> str | None:
    try:
        if start is None:
            script = sys.argv[0] if sys.argv else ""
            if script and os.path.isfile(script):
                return os.path.dirname(os.path.abspath(script))
            return os.getcwd()
        path = os.path.abspath(os.fspath(start))
    except OSError:  # the working directory was deleted
        return None
    if os.path.isfile(path):
        return os.path.dirname(path)
    return path if os.path.isdir(path) else None


def _run_git(git: str, cwd: str, *args: str) -> str | None:
    """Run one git command; its stdout without the trailing newline, or None on failure."""
    try:
        proc = subprocess.run(
            # --no-optional-locks: `status` must not take index.lock and race the user's git.
            [git, "--no-optional-locks", *args],
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            errors="replace",
            timeout=_GIT_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if proc.returncode != 0:
        return None
    return proc.stdout.rstrip("\r\n")


def _pick_remote(listing: str | None) -> str | None:
    names = [line.strip() for line in (listing or "").splitlines() if line.strip()]
    if not names:
        return None
    return "origin" if "origin" in names else names[0]


def _entry_point(root: str) -> str | None:
    script = sys.argv[0] if sys.argv else ""
    if not script or not os.path.isfile(script):
        return None
    script_path = os.path.realpath(script)
    root_path = os.path.realpath(root)
    try:
        if os.path.commonpath([script_path, root_path]) != root_path:
            return None
    except ValueError:  # different drives on Windows
        return None
    return os.path.relpath(script_path, root_path).replace(os.sep, "/")
