"""The ``em`` command: look at runs recorded on this machine.

    em ls [DIR]                       runs under DIR (default $EM_RUN_PARENT_DIR or .em/runs)
    em show RUN                       one run: hyperparameters, platform, git, metrics, data flow
    em export RUN --format csv|jsonl  its metrics, one row per logged value set
    em login|logout|upload|download, em ls --remote [FOLDER]   (see _remote_commands)

RUN is a run directory, or a run's directory name or name under DIR (the newest wins).
Integrations add subcommands (``em caffe``, ``em mxnet``) through the ``em.commands``
entry-point group.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence

__all__ = ["main"]

_REMOTE = frozenset({"login", "logout", "upload", "download"})  # see _remote_commands
BUILTIN = frozenset({"ls", "show", "export"}) | _REMOTE
# em's own log commands (the same as their entry points), found without importlib.metadata,
# which takes ~50 ms to import: `em caffe` passes the log through that much sooner
_OWN = {"caffe": "integrations.caffe.command", "mxnet": "integrations.mxnet_log.command"}


def _plugins() -> dict[str, Callable[[list[str]], int]]:
    from importlib.metadata import entry_points

    found: dict[str, Callable[[list[str]], int]] = {}
    for ep in entry_points(group="em.commands"):
        found[ep.name] = ep  # type: ignore[assignment]  # loaded only when used
    return found


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``em`` command; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in _OWN:
        import importlib

        try:
            command = importlib.import_module(_OWN[argv[0]]).main
        except ImportError:  # em_core without its integrations: look for a plugin
            pass
        else:
            return int(command(argv[1:]) or 0)
    plugins = _plugins()
    if argv and argv[0] in plugins and argv[0] not in BUILTIN:
        # nothing else of em is loaded yet: `em caffe` starts its pass-through first
        fn = plugins[argv[0]].load()  # type: ignore[attr-defined]
        return int(fn(argv[1:]) or 0)
    if argv and (argv[0] in _REMOTE or (argv[0] == "ls" and "--remote" in argv)):
        from ._remote_commands import main as remote_main

        return remote_main(argv)
    from ._commands import run_builtin

    return run_builtin(argv, sorted(plugins))


if __name__ == "__main__":
    sys.exit(main())
