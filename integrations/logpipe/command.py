"""The command behind ``em caffe`` and ``em mxnet``: options, run creation, the pipe,
the run's status and the exit code. A framework contributes only its parser and recorder
(``make_recorder``), and any options or initial hyperparameters of its own.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

from .passthrough import Early, open_copy, start_early
from .stream import Outcome, PassThrough, Recorder, adopt, run_child, run_stdin, start_pass_through

__all__ = ["CONSOLE_LOG", "HparamsFrom", "add_run_arguments", "command_main", "create_run",
           "exit_code", "pass_through_only", "say", "split_command"]

CONSOLE_LOG = "console.log"
#: What a command takes its initial hyperparameters from: its options and the command.
HparamsFrom = Callable[[argparse.Namespace, "list[str] | None"], "dict[str, Any]"]


def create_run(em: Any, args: argparse.Namespace, command: list[str] | None,
                hparams: HparamsFrom | None,
                prog: str) -> Any:
    """The run for the log, or None (said on stderr) when it cannot be created."""
    try:
        initial = hparams(args, command) if hparams is not None else {}
        return em.create_run(name=args.name, hparams=initial or None, labels=args.labels,
                             description=args.description, auto_upload=args.upload,
                             folder=args.folder, make_folder=args.make_folder,
                             console=False)  # the pass-through keeps console.log already
    except (OSError, ValueError, TypeError, em.EmError) as exc:
        say(prog, f"cannot create the run ({exc}); recording nothing")
        return None


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """The options every log command shares (run name, folder, upload, labels)."""
    parser.add_argument("--name", default="default", help="run name (default: %(default)s)")
    parser.add_argument("--folder", default="default",
                        help="server folder for --upload (default: %(default)s)")
    parser.add_argument("--upload", action="store_true",
                        help="upload the run to the em server while it records (auto_upload: "
                             "needs `em login`; a server that is down never stops the pipe)")
    parser.add_argument("--make-folder", action="store_true",
                        help="create the --folder on the server if missing")
    parser.add_argument("--label", action="append", default=[], dest="labels",
                        help="a label for the run (repeatable)")
    parser.add_argument("--description", default="", help="free text stored with the run")
    parser.add_argument("--no-console-log", dest="console_log", action="store_false",
                        help=f"do not keep the log in the run directory as {CONSOLE_LOG} "
                             f"(kept by default, byte for byte as it passed through)")


_EXIT_SIGNAL = {"SIGINT": 130, "SIGTERM": 143, "SIGPIPE": 141}


def split_command(argv: Sequence[str]) -> tuple[list[str], list[str] | None, str | None]:
    """``['run', opts..., '--', cmd...]`` -> (opts, cmd, None); plain options -> (opts, None,
    None); a malformed ``run`` -> ([], None, error message)."""
    args = list(argv)
    if args[:1] != ["run"]:
        return args, None, None
    rest = args[1:]
    if "--" not in rest:
        return [], None, "usage: run [options] -- COMMAND [ARGS...]"
    cut = rest.index("--")
    if cut + 1 >= len(rest):
        return [], None, "no command after '--'"
    return rest[:cut], rest[cut + 1:], None


def exit_code(outcome: Outcome, *, child: bool) -> int:
    """The command's exit status: the child's (128+N if killed by signal N) in ``run`` mode;
    0, or 130/143/141 after SIGINT/SIGTERM/a closed stdout, in pipe mode."""
    if child and outcome.returncode is not None:
        rc = outcome.returncode
        return 128 - rc if rc < 0 else rc
    return _EXIT_SIGNAL.get(outcome.signal or "", 0)


def pass_through_only(command: Sequence[str] | None) -> int:
    """em cannot record (bad options, no run): still pass the output through untouched."""
    outcome = run_child(command, None) if command else run_stdin(None)
    return exit_code(outcome, child=command is not None)


def say(prog: str, message: str) -> None:
    try:
        print(f"{prog}: {message}", file=sys.stderr, flush=True)
    except OSError:
        pass


def _options(argv: list[str], early: Early | None, prog: str, description: str,
             add_arguments: Callable[[argparse.ArgumentParser], None] | None,
             ) -> tuple[argparse.Namespace | None, list[str] | None, int]:
    """(options, command, 0), or (None, None, exit status) when there is nothing to record:
    a malformed ``run``, ``--help``, or bad options (pipe mode still passes the output
    through then)."""
    args_in, command, problem = split_command(argv)
    if problem:
        say(prog, problem)
        return None, None, 2
    parser = argparse.ArgumentParser(prog=f"{prog} run" if command else prog,
                                     description=description)
    add_run_arguments(parser)
    if add_arguments is not None:
        add_arguments(parser)
    try:
        return parser.parse_args(args_in), command, 0
    except SystemExit as exc:
        if exc.code in (0, None) and early is None:
            return None, None, 0
        if command:
            return None, None, 2  # nothing started yet: better not to start a training with a typo
    say(prog, "recording nothing; passing the output through")
    if early is not None:
        os.unlink(early.copy_path)
        try:
            return None, None, exit_code(adopt(early).follow(None), child=False) or 2
        finally:
            os.close(early.copy_fd)
    return None, None, pass_through_only(None) or 2


def _recorder(em: Any, run: Any, args: argparse.Namespace, prog: str,
              make_recorder: Callable[[Any, argparse.Namespace], Recorder]) -> Recorder | None:
    """The framework's recorder for ``run``, or None (said on stderr; the run ends Failed)."""
    if run is None:
        return None
    try:
        return make_recorder(run, args)
    except (OSError, ValueError, TypeError, em.EmError) as exc:
        say(prog, f"cannot record the run ({exc}); recording nothing")
        run.finish(em.Status.FAILED, error=f"em could not record the log: {exc}")
        return None


def _keep_copy(em: Any, run: Any, path: str, prog: str) -> bool:
    """Move the copy of the log into the run directory as console.log; True if it is there."""
    try:
        os.replace(path, os.path.join(run.local, CONSOLE_LOG))
        return True
    except OSError as exc:
        em.handle_problem(exc, key=f"{prog}-console-log")
        return False


def _end(em: Any, recorder: Recorder | None, outcome: Outcome, prog: str) -> None:
    """The recorder ends the run from how the pipe ended; its problems are said, not raised
    past the training's own exit status."""
    if recorder is None:
        return
    try:
        recorder.finish(signal=outcome.signal, returncode=outcome.returncode,
                        error=outcome.error)
    except Exception as exc:  # noqa: BLE001 - the training's own exit status comes first
        em.handle_problem(exc, key=f"{prog}-finish")
    if outcome.error is not None:
        em.handle_problem(outcome.error, key=f"{prog}-parse")


def command_main(argv: Sequence[str] | None, *, prog: str, description: str,
                 make_recorder: Callable[[Any, argparse.Namespace], Recorder],
                 add_arguments: Callable[[argparse.ArgumentParser], None] | None = None,
                 hparams: HparamsFrom | None = None,
                 early: Early | None = None) -> int:
    """The body of ``em caffe`` and ``em mxnet``: options, run, pipe, status, exit code.

    ``argv`` is either options (pipe mode: stdin to stdout) or ``run [options] -- COMMAND``.
    The pass-through starts before the run is created: in pipe mode before the options are
    even read (:func:`~integrations.logpipe.passthrough.start_early`, unless the caller
    passes the ``early`` one it started), in ``run`` mode with the command
    (:func:`~integrations.logpipe.stream.start_pass_through`). The log it copies becomes
    ``console.log`` in the run directory (unless ``--no-console-log``). A bad option in pipe
    mode, or a run that cannot be created, still passes the output through (recording
    nothing). The recorder's exceptions are reported with ``em.handle_problem`` after the
    whole output went through. The run's status: :mod:`integrations.logpipe.ending`.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    if early is None:
        early = start_early(argv)  # pipe mode: the output flows from here on
    args, command, status = _options(argv, early, prog, description, add_arguments)
    if args is None:
        return status

    import em_core as em
    from em_core._paths import run_parent_dir

    if early is not None:
        copy_fd, path = early.copy_fd, early.copy_path
    else:
        try:
            copy_fd, path = open_copy(str(run_parent_dir()))
        except OSError as exc:
            say(prog, f"cannot write the copy of the log ({exc}); recording nothing")
            return pass_through_only(command)
    copy_path: str | None = path
    try:
        try:  # the output flows from here on, whatever creating the run takes (git, ...)
            pipe: PassThrough = (adopt(early) if early is not None
                                 else start_pass_through(copy_fd, command=command))
        except OSError as exc:
            assert command is not None
            say(prog, f"cannot start {command[0]!r}: {exc}")
            run = create_run(em, args, command, hparams, prog)
            if run is not None:
                run.finish(em.Status.FAILED, error=f"cannot start {command[0]!r}: {exc}")
            return 127
        run = create_run(em, args, command, hparams, prog)
        recorder = _recorder(em, run, args, prog, make_recorder)
        if (recorder is not None and args.console_log and getattr(run, "local", None)
                and _keep_copy(em, run, path, prog)):
            copy_path = None
        if copy_path is not None:  # not kept: gone from the folder now, from disk when closed
            os.unlink(copy_path)
            copy_path = None
        outcome = pipe.follow(recorder)
    finally:
        os.close(copy_fd)
        if copy_path is not None:
            os.unlink(copy_path)
    _end(em, recorder, outcome, prog)
    return exit_code(outcome, child=command is not None)
