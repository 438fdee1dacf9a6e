"""HTTP access to an em server (API v1): one pooled keep-alive session, the API key in a
header, timeouts, retries with backoff on connection errors and 5xx answers, and errors
mapped to em's exceptions. No message or log line ever contains the key.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

import requests

from .errors import LoginError, RemoteError, RemoteNotFoundError

__all__ = ["Client", "client_for_current"]

log = logging.getLogger("em")
API = "/api/v1"


class Client:
    """A connection to one em server as one user.

    Args:
        host: ``http(s)://host:port``.
        api_key: the key, sent as ``Authorization: Bearer``.
        timeout: seconds for connecting and for each read.
        retries: how many times a request that met a network error or a 5xx answer is
            tried again (with backoff 0.5 s, 1 s, 2 s, ... up to 10 s); ``None``: forever,
            until ``stop()`` returns True.
        stop: polled between retries; True ends the retrying (the last error is raised).
        on_wait: called once per request that starts retrying, with the reason (no key).
    """

    def __init__(self, host: str, api_key: str, *, timeout: float = 30.0,
                 retries: int | None = 4, stop: Callable[[], bool] | None = None,
                 on_wait: Callable[[str], None] | None = None) -> None:
        self.host = host.rstrip("/")
        self.timeout = timeout
        self.retries = retries
        self._stop = stop or (lambda: False)
        self._on_wait = on_wait
        self._session = requests.Session()
        self._session.headers["Authorization"] = f"Bearer {api_key}"
        self._session.headers["User-Agent"] = "em-client/1"
        self._user: str | None = None

    def close(self) -> None:
        self._session.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # ----------------------------------------------------------------- transport
    def request(self, method: str, path: str, *, params: dict[str, Any] | None = None,
                json_body: Any = None, data: bytes | Iterable[bytes] | None = None,
                stream: bool = False, ok: tuple[int, ...] = (),
                login: bool = False) -> requests.Response:
        """Send a request to ``/api/v1<path>``; return the response when its status is
        2xx or in ``ok``, else raise the mapped :class:`RemoteError`."""
        url = self.host + API + path
        body, headers = _encode(json_body, data)
        attempt = 0
        delay = 0.5
        waited = False
        while True:
            answer = self._attempt(method, url, params, body, headers, stream, login)
            if not isinstance(answer, str):
                if answer.status_code < 300 or answer.status_code in ok:
                    return answer
                raise _mapped(answer, method, path, login)
            reason = answer
            attempt += 1
            if (self.retries is not None and attempt > self.retries) or self._stop():
                raise RemoteError(reason)
            if not waited and self._on_wait is not None:
                self._on_wait(reason)
            waited = True
            time.sleep(delay)
            delay = min(delay * 2, 10.0)

    def _attempt(self, method: str, url: str, params: Any, body: Any, headers: dict[str, str],
                 stream: bool, login: bool) -> requests.Response | str:
        """One try: the response to return or map, or why to try again (a timeout, no
        connection, a 5xx that can be retried). A login attempt is never retried."""
        try:
            resp = self._session.request(method, url, params=params, data=body,
                                         headers=headers, stream=stream,
                                         timeout=(self.timeout, self.timeout))
        except requests.Timeout:
            reason = f"the em server at {self.host} did not answer within {self.timeout:g} s"
        except requests.ConnectionError as e:
            reason = f"cannot reach the em server at {self.host} ({_short(e)})"
        else:
            if resp.status_code < 500 or not _retryable(body):
                return resp
            reason = (f"the em server at {self.host} answered {resp.status_code} to "
                      f"{method} {url.split(API, 1)[-1]}")
            resp.close()
            return reason
        if login:
            raise LoginError(reason) from None
        return reason

    def get_json(self, endpoint: str, /, **params: Any) -> Any:
        return self.request("GET", endpoint, params=params or None).json()

    def post_json(self, path: str, body: Any, ok: tuple[int, ...] = ()) -> Any:
        return self.request("POST", path, json_body=body, ok=ok).json()

    # ----------------------------------------------------------------- helpers
    def whoami(self, *, login: bool = False) -> str:
        """The user the key belongs to (cached)."""
        if self._user is None:
            self._user = str(self.request("GET", "/whoami", login=login).json()["user"])
        return self._user

    def absolute(self, folder: str) -> str:
        """A folder path without a leading '/' is under the logged-in user."""
        if folder.startswith("/"):
            return folder.rstrip("/") or "/"
        return f"/{self.whoami()}/{folder.strip('/')}"


def _encode(json_body: Any, data: Any) -> tuple[Any, dict[str, str]]:
    """The request body and its Content-Type header."""
    if json_body is not None:
        return (json.dumps(json_body, allow_nan=True).encode("utf-8"),
                {"Content-Type": "application/json"})
    if data is not None:
        return data, {"Content-Type": "application/octet-stream"}
    return None, {}


def _retryable(body: Any) -> bool:
    # a generator body is consumed by the first try; only bytes (or nothing) can be resent
    return body is None or isinstance(body, (bytes, bytearray))


def _short(e: BaseException) -> str:
    # requests nests the reason deep inside; keep the innermost, short and key-free
    inner: BaseException = e
    while inner.args and isinstance(inner.args[0], BaseException):
        inner = inner.args[0]
    text = str(getattr(inner, "reason", None) or inner)
    if "Connection refused" in text or "Errno 111" in text:
        return "connection refused"
    return text[:200]


def _mapped(resp: requests.Response, method: str, path: str, login: bool) -> RemoteError:
    try:
        body = resp.json()
        if not isinstance(body, dict):
            body = {}
    except ValueError:
        body = {}
    detail = str(body.get("detail") or resp.reason or "")[:500]
    status = resp.status_code
    resp.close()
    if status == 401:
        return LoginError(f"the em server refused the API key ({detail}); run `em login` "
                          "with a valid key", status, body)
    if status == 404 and login:
        return LoginError(f"{resp.url.split('/api/', 1)[0]} does not look like an em server "
                          f"(404 for {method} {API}{path})", status, body)
    if status == 404:
        return RemoteNotFoundError(f"not found on the em server: {detail}", status, body)
    return RemoteError(f"the em server answered {status} to {method} {path}: {detail}",
                       status, body)


def client_for_current(**kwargs: Any) -> Client:
    """A client for the current login context.

    Raises:
        LoginError: no API key is configured.
    """
    from ._userconfig import current

    ctx = current()
    if not ctx.api_key:
        raise LoginError(f"not logged in to an em server ({ctx.host}): run `em login` or "
                         "em.login(ais_host=..., api_key=...), or set EM_API_KEY")
    c = Client(ctx.host, ctx.api_key, **kwargs)
    c._user = ctx.user
    return c
