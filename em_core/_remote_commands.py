"""The ``em`` commands that talk to an em server.

    em login [--host URL] [--api-key KEY] [--timeout S]   check a key and save it
    em logout                                             forget the current key
    em upload PATH... [--folder F] [--make-folder] [--conflict-strategy S]
    em download SERVER_PATH [--kind run|artifact]
    em ls --remote [FOLDER]                               folders, runs, artifacts on the server

Without ``--api-key``, ``em login`` reads the key from ``EM_API_KEY``, else asks for it
(hidden on a terminal; one line from stdin otherwise), so that it stays out of the shell's
history and the process list.
"""

from __future__ import annotations

import argparse
import os
import sys
from datetime import datetime
from typing import IO, Any

from .errors import CorruptRunError, EmError

__all__ = ["COMMANDS", "main"]

COMMANDS = frozenset({"login", "logout", "upload", "download"})


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="em", description="Talk to an em server.")
    sub = p.add_subparsers(dest="command", required=True)
    lo = sub.add_parser("login", help="check an API key against a server and save it")
    lo.add_argument("--host", help="server address, e.g. http://127.0.0.1:8745")
    lo.add_argument("--api-key", help="the key (default: EM_API_KEY, else asked for)")
    lo.add_argument("--timeout", type=float, default=None, help="seconds (default 10)")
    sub.add_parser("logout", help="forget the current context's API key")
    up = sub.add_parser("upload", help="upload runs, artifacts or a whole .em directory")
    up.add_argument("paths", nargs="+", metavar="PATH")
    up.add_argument("--folder", default="default",
                    help="server folder; without a leading '/' under your user")
    up.add_argument("--make-folder", action="store_true", help="create the folder if missing")
    up.add_argument("--conflict-strategy", default="new",
                    choices=["skip", "error", "new", "replace"])
    dl = sub.add_parser("download", help="download a run or artifact into .em/")
    dl.add_argument("path", metavar="SERVER_PATH")
    dl.add_argument("--kind", choices=["run", "artifact"], default=None)
    ls = sub.add_parser("ls", help="list a server folder (with --remote)")
    ls.add_argument("--remote", action="store_true", required=True)
    ls.add_argument("folder", nargs="?", default="", metavar="FOLDER")
    return p


def _read_key(host: str | None) -> str | None:
    if os.environ.get("EM_API_KEY"):
        return None  # login() takes it from the environment
    from ._userconfig import current, normalize_host

    ctx = current()
    if ctx.api_key and (host is None or normalize_host(host) == ctx.host):
        return None  # login() re-checks the saved key
    if sys.stdin.isatty():
        import getpass

        return getpass.getpass("API key: ").strip() or None
    line = sys.stdin.readline().strip()
    return line or None


def cmd_login(args: Any, out: IO[str]) -> int:
    from ._userconfig import login

    key = args.api_key if args.api_key is not None else _read_key(args.host)
    user = login(args.host, key, args.timeout)
    out.write(f"logged in as {user}\n")
    return 0


def cmd_logout(args: Any, out: IO[str]) -> int:
    from ._userconfig import logout

    logout()
    out.write("logged out\n")
    return 0


def cmd_upload(args: Any, out: IO[str]) -> int:
    from ._upload import upload

    for path in args.paths:
        for entry in upload(path, args.folder, args.make_folder, args.conflict_strategy,
                            progress=True):
            out.write(f"{entry['path']}\n")
    return 0


def cmd_download(args: Any, out: IO[str]) -> int:
    from ._remote import download

    obj = download(args.path, args.kind)
    out.write(f"{obj.local}\n")
    return 0


def cmd_ls(args: Any, out: IO[str]) -> int:
    from ._client import client_for_current

    with client_for_current() as c:
        folder = c.absolute(args.folder) if args.folder else f"/{c.whoami()}"
        info = c.get_json("/folders", path=folder)
        for f in info.get("folders", []):
            out.write(f"{f['path']}/\n")
        for r in _pages(c, "/runs", "runs", folder):
            out.write(f"{r['path']}\t{r.get('status') or ''}\t{_when(r.get('start_timestamp'))}\n")
        for a in _pages(c, "/artifacts", "artifacts", folder):
            out.write(f"{a['path']}\tartifact\n")
    return 0


def _when(stamp: Any) -> str:
    """A start time as ``em ls`` prints it (this machine's local time, to the second); the
    server sends seconds since the epoch."""
    if isinstance(stamp, (int, float)) and not isinstance(stamp, bool):
        try:
            return datetime.fromtimestamp(stamp).strftime("%Y-%m-%dT%H:%M:%S")
        except (OverflowError, OSError, ValueError):
            return str(stamp)
    return str(stamp or "")[:19]


def _pages(c: Any, endpoint: str, key: str, folder: str) -> Any:
    page, seen = 1, 0
    while True:
        body = c.get_json(endpoint, folder=folder, page=page)
        items = body.get(key, [])
        yield from items
        seen += len(items)
        if not items or seen >= int(body.get("total", 0)):
            return
        page += 1


def main(argv: list[str]) -> int:
    """Run one of the server commands; returns the exit status."""
    args = _parser().parse_args(argv)
    handler = {"login": cmd_login, "logout": cmd_logout, "upload": cmd_upload,
               "download": cmd_download, "ls": cmd_ls}[args.command]
    try:
        return handler(args, sys.stdout)
    except (EmError, CorruptRunError, OSError, TypeError, ValueError) as e:
        sys.stderr.write(f"em: {e}\n")
        return 2
