"""The ``em`` command: look at runs recorded on this machine.

    em ls [DIR]                       runs under DIR (default $EM_RUN_PARENT_DIR or .em/runs)
    em show RUN                       one run: hyperparameters, platform, git, metrics, data flow
    em export RUN --format csv|jsonl  its metrics, one row per logged value set
    em login|logout|upload|download, em ls --remote [FOLDER]   (see _remote_commands)

RUN is a run directory, or a run's directory name or name under DIR (the newest wins).
Integrations add subcommands (``em caffe``, ``em mxnet``, ``em server``) through the
``em.commands`` entry-point group of pyproject.toml, and only through it: em_core names no
integration (see ``_entrypoints``).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

__all__ = ["main"]

_REMOTE = frozenset({"login", "logout", "upload", "download"})  # see _remote_commands
BUILTIN = frozenset({"ls", "show", "export"}) | _REMOTE


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``em`` command; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    from ._entrypoints import find_commands, load_command

    plugins = find_commands()
    if argv and argv[0] in plugins and argv[0] not in BUILTIN:
        # nothing else of em is loaded yet: `em caffe` starts its pass-through first
        return int(load_command(plugins[argv[0]])(argv[1:]) or 0)
    if argv and (argv[0] in _REMOTE or (argv[0] == "ls" and "--remote" in argv)):
        from ._remote_commands import main as remote_main

        return remote_main(argv)
    from ._commands import run_builtin

    return run_builtin(argv, sorted(plugins))


if __name__ == "__main__":
    sys.exit(main())
