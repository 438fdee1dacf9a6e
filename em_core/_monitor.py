"""What runs beside a recording run: the system-metrics sampler (:mod:`em_core._system`)
and console capture (:mod:`em_core._console`). ``create_run`` checks the options before it
makes the run's directory, starts both once the run exists, and ``Run._end`` stops both
before the metric log closes."""

from __future__ import annotations

import weakref
from typing import Any, NamedTuple

from . import _console, _system
from ._lifecycle import Status
from .dist import dist_info
from .errors import EmError, handle_problem

__all__ = ["Options", "options", "start", "stop"]


class Options(NamedTuple):
    """Checked options: seconds between system samples (0: off), and console capture."""

    system_interval: float
    console: bool


def options(system_interval: Any = None, console: Any = None) -> Options:
    """``create_run``'s ``system_interval=`` and ``console=``, or the environment's
    ``EM_SYSTEM_INTERVAL`` / ``EM_CONSOLE`` where None.

    Raises:
        TypeError, ValueError: a bad argument or variable, named with what is accepted.
    """
    opts = Options(_system.interval_from(system_interval), _console.enabled_from(console))
    if opts.console:
        _console.max_bytes()  # a bad EM_CONSOLE_MAX_BYTES is an error at set-up, not later
    return opts


_state: weakref.WeakKeyDictionary[Any, tuple[Options, Any, Any]] = weakref.WeakKeyDictionary()


def start(run: Any, opts: Options | None = None) -> None:
    """Start what ``opts`` asks for on ``run`` (on ``resume()``: the options it had, or the
    environment's). Only a run that records samples the machine: rank 0, or with
    ``EM_ALL_RANKS=1`` each node's local rank 0 (rank 0 alone when no local rank is known);
    only rank 0 captures the console."""
    if opts is None:
        old = _state.get(run)
        opts = old[0] if old is not None else options()
    info = dist_info()
    samples = info.rank == 0 or (info.local_rank == 0 and info.rank > 0)
    sampler = capture = None
    if opts.system_interval > 0 and samples:
        try:
            sampler = _system.SystemSampler(run, opts.system_interval).start()
        except RuntimeError as e:  # "can't start new thread": record the run without it
            handle_problem(EmError(f"system metrics could not start ({e})"), key="system:start")
    if opts.console and info.rank == 0:
        capture = _console.start(str(run.local))
    _state[run] = (opts, sampler, capture)


def stop(run: Any, status: Status) -> None:
    """Stop the sampler (after its last sample) and the console capture; after a failure,
    the capture lasts until the interpreter exits so that the traceback is kept too."""
    state = _state.get(run)
    if state is None:
        return
    opts, sampler, capture = state
    _state[run] = (opts, None, None)
    if sampler is not None:
        sampler.stop()
    if capture is not None:
        _console.stop(capture, defer=status is not Status.COMPLETE)
