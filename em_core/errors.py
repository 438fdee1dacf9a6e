"""em's exceptions and warnings, and the one rule for problems during training.

Set-up calls (``create_run``, ``create_artifact``, constructors of callbacks) raise
``TypeError``/``ValueError`` for bad arguments. Inside a training loop, a problem is handed
to :func:`handle_problem`: it warns once per kind of problem and training goes on, unless
the environment sets ``EM_STRICT=1`` (the test suite does), in which case it raises.
"""

from __future__ import annotations

import os
import threading
import warnings

__all__ = [
    "CorruptRunError",
    "EmError",
    "EmWarning",
    "LoginError",
    "NotARunError",
    "RemoteError",
    "RemoteNotFoundError",
    "RunFinishedError",
    "handle_problem",
    "strict_mode",
]


class EmError(Exception):
    """Base class of every exception em raises on its own account."""


class RunFinishedError(EmError, RuntimeError):
    """A run (or artifact) that has ended was asked to record more."""


class NotARunError(EmError, FileNotFoundError, RuntimeError):
    """A path given to ``load_run``/``load_artifact`` is not a run or artifact directory.

    Also a ``RuntimeError``, the type the seed (``t9k.em``) documents for these calls, so
    code written for the seed catches it; and a ``FileNotFoundError``."""


class CorruptRunError(EmError, ValueError):
    """A metadata file exists but cannot be read. It is reported, never replaced."""


class RemoteError(EmError, RuntimeError):
    """The em server refused a request, or could not be reached. ``status`` is the HTTP
    status (None when no answer came); the message never contains an API key."""

    def __init__(self, message: str, status: int | None = None,
                 body: dict[str, object] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.body = body or {}


class RemoteNotFoundError(RemoteError):
    """A server path (run, artifact, folder) does not exist, or is not visible to this user."""


class LoginError(RemoteError):
    """Logging in failed: a bad or revoked API key, a wrong address, a timeout, or no login
    at all where one is needed."""


class EmWarning(UserWarning):
    """Category of the warnings em gives instead of failing a training job."""


_warned: set[str] = set()
_warned_lock = threading.Lock()


def strict_mode() -> bool:
    """Whether ``EM_STRICT`` is set to a true value (``1``, ``true``, ``yes``)."""
    return os.environ.get("EM_STRICT", "").strip().lower() in {"1", "true", "yes", "on"}


def handle_problem(exc: BaseException, key: str | None = None, *, stacklevel: int = 3) -> None:
    """Report a problem met while training without stopping the training.

    Under ``EM_STRICT=1`` the exception is raised. Otherwise an :class:`EmWarning` with the
    exception's message is issued the first time a given ``key`` is seen (default: the
    exception's type and message) and later occurrences are silent.

    Args:
        exc: What went wrong, already carrying a message that names the bad value.
        key: Identifies "the same problem" for warn-once purposes.
        stacklevel: Passed to :func:`warnings.warn` so the warning points at user code.

    Raises:
        BaseException: ``exc`` itself, in strict mode.
    """
    if strict_mode():
        raise exc
    k = key if key is not None else f"{type(exc).__name__}: {exc}"
    with _warned_lock:
        if k in _warned:
            return
        if len(_warned) > 10_000:  # a run logging ever-new bad names must not grow memory
            _warned.clear()
        _warned.add(k)
    warnings.warn(f"em: {exc} (further occurrences are not reported)", EmWarning,
                  stacklevel=stacklevel)
