"""Login contexts: which em server to talk to, with which API key.

The file is ``$EM_CONFIG`` or ``~/.config/em/config.yaml``, readable by its owner only
(mode 0600)::

    current_context: default
    contexts:
      default: {host: "http://127.0.0.1:8745", api_key: "em_...", user: alice}

``EM_HOST`` and ``EM_API_KEY`` override the current context's values.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ._files import write_text_atomic
from .errors import CorruptRunError, LoginError

__all__ = ["Context", "config_path", "current", "login", "logout", "read_config"]

DEFAULT_HOST = "http://127.0.0.1:8745"


@dataclass(frozen=True)
class Context:
    """A server address and key. ``repr`` hides the key."""

    host: str
    api_key: str | None
    user: str | None = None
    name: str = "default"

    def __repr__(self) -> str:
        key = "set" if self.api_key else "none"
        return f"Context(name={self.name!r}, host={self.host!r}, user={self.user!r}, key={key})"


def config_path() -> Path:
    """``$EM_CONFIG``, else ``~/.config/em/config.yaml``."""
    env = os.environ.get("EM_CONFIG")
    return Path(env) if env else Path.home() / ".config" / "em" / "config.yaml"


def read_config() -> dict[str, Any]:
    """The whole config file as a dict (empty when there is none)."""
    import yaml

    path = config_path()
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {"current_context": "default", "contexts": {}}
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as e:
        raise CorruptRunError(f"em config file {str(path)!r} is not valid YAML: "
                              f"{type(e).__name__}; fix or delete it") from None
    if not isinstance(data, dict) or not isinstance(data.get("contexts", {}), dict):
        raise CorruptRunError(f"em config file {str(path)!r} is not a mapping with 'contexts'")
    data.setdefault("contexts", {})
    data.setdefault("current_context", "default")
    return data


def write_config(data: dict[str, Any]) -> Path:
    """Replace the config file atomically, created with mode 0600 (it holds keys)."""
    import yaml

    path = config_path()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    write_text_atomic(path, yaml.safe_dump(data, sort_keys=False), mode=0o600)
    return path


def current() -> Context:
    """The current context, with ``EM_HOST``/``EM_API_KEY`` applied."""
    data = read_config()
    name = str(data.get("current_context") or "default")
    ctx = data["contexts"].get(name) or {}
    host = os.environ.get("EM_HOST") or ctx.get("host") or DEFAULT_HOST
    key = os.environ.get("EM_API_KEY") or ctx.get("api_key") or None
    # the stored user belongs to the stored key; an overriding key may be someone else's
    user = ctx.get("user") if not os.environ.get("EM_API_KEY") else None
    return Context(normalize_host(host), key, user, name)


def normalize_host(host: Any) -> str:
    """``host:port`` or ``http(s)://host[:port][/]`` -> ``http(s)://host[:port]``."""
    if not isinstance(host, str) or not host.strip():
        raise TypeError(f"ais_host must be a server address such as {DEFAULT_HOST!r}, got "
                        f"{host!r}")
    h = host.strip().rstrip("/")
    if "://" not in h:
        h = "http://" + h
    if not h.startswith(("http://", "https://")):
        raise ValueError(f"ais_host {host!r} is not an http:// or https:// address")
    if "@" in h.split("://", 1)[1].split("/", 1)[0]:
        raise ValueError("ais_host must not carry credentials; give the key as api_key")
    return h


def login(ais_host: str | None = None, api_key: str | None = None,
          timeout: float | None = None) -> str:
    """Check an API key against an em server and save it as the current context.

    Args:
        ais_host: the server's address (default: the current context's, ``EM_HOST``, or
            ``http://127.0.0.1:8745``).
        api_key: the key (default: the current context's or ``EM_API_KEY``).
        timeout: seconds to wait for the server (default 10).

    Returns:
        The user name the key belongs to.

    Raises:
        LoginError: no key, a bad or revoked key, a server that cannot be reached, or one
            that did not answer within ``timeout``. The message never shows the key.
    """
    from ._client import Client

    ctx = current()
    host = normalize_host(ais_host) if ais_host is not None else ctx.host
    key = api_key
    if key is None and (host == ctx.host or os.environ.get("EM_API_KEY")):
        key = ctx.api_key  # a saved key goes only to the host it was saved for
    if key is not None and (not isinstance(key, str) or not key.strip()):
        raise TypeError(f"api_key must be a non-empty string, got {type(key).__name__}")
    if not key:
        raise LoginError(f"no API key for {host}: pass api_key=..., set EM_API_KEY, or run "
                         "`em login --host HOST` (an admin creates keys with "
                         "`em server user add NAME`)")
    if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, (int, float))
                                or timeout <= 0):
        raise ValueError(f"timeout must be a positive number of seconds, got {timeout!r}")
    client = Client(host, key.strip(), timeout=float(timeout or 10), retries=0)
    try:
        user = client.whoami(login=True)
    finally:
        client.close()
    data = read_config()
    name = str(data.get("current_context") or "default")
    data["current_context"] = name
    data["contexts"][name] = {"host": host, "api_key": key.strip(), "user": user}
    write_config(data)
    return user


def logout() -> None:
    """Forget the current context's API key (the host stays as the default address)."""
    data = read_config()
    name = str(data.get("current_context") or "default")
    ctx = data["contexts"].get(name)
    if ctx:
        ctx.pop("api_key", None)
        ctx.pop("user", None)
        write_config(data)
