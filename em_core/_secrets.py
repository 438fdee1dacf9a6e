"""What em treats as a secret, and how it is masked: one list of names, used for the command
line, hyperparameters and artifact references alike.

A name (a flag, a hyperparameter key, an assignment's left side, an HTTP header's name, a URL
query parameter) is split into lowercase words at ``-``, ``_``, ``.``, spaces, digits and
camelCase (``wandbApiKey`` -> wandb, api, key; ``api_key2`` -> api, key) and is a secret
when:

* any word is one of :data:`SECRET_WORDS` (``password``, ``passwd``, ``pwd``, ``secret``,
  ``credentials``, ``authorization``, ``bearer``, ``cookie``, ``apikey``, ``jwt``, ...);
* its last word is ``token`` or ``auth``, unless ``token`` follows one of
  :data:`TOKEN_NOT_SECRET` (``pad_token``, ``eos_token``, ``max_token``: tokenizer settings):
  ``--hf-token``, ``--authToken`` and ``--auth`` are secrets; ``--max-tokens``,
  ``--tokenizer``, ``token_dropout`` and ``pad_token`` are not;
* its last word is ``pass`` and it is the whole name or follows one of :data:`PASS_OWNERS`
  (``--pass``, ``db_pass``, ``user_pass``); ``--pass-rate`` and ``forward_pass`` are not;
* its last word is ``key`` after one of :data:`KEY_OWNERS` (``api``, ``access``, ``secret``,
  ``private``, ``wandb``, ...): ``--api-key``, ``AWS_SECRET_ACCESS_KEY``; ``--key``,
  ``--key-dim`` and ``monitor_key`` are not;
* it is a URL query parameter named ``sig``, ``signature`` or ``key`` (presigned URLs, Google
  API keys); elsewhere those names are kept (an MLflow model ``signature``);
* it has as words one of the names in the environment variable ``EM_SECRET_NAMES``
  (comma-separated, split into words the same way: ``EM_SECRET_NAMES=license_server,pin``).

A name whose first word is ``no`` (``--no-password``) is a switch, not a secret. A masked
value is recorded as ``***``.
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Iterable
from typing import Any

__all__ = ["MASK", "is_secret_name", "mask_text", "mask_url", "mask_value", "redact_argv"]

MASK = "***"
SECRET_WORDS = frozenset({
    "password", "passwd", "pwd", "passphrase", "secret", "secrets", "credential",
    "credentials", "authorization", "bearer", "cookie", "cookies", "apikey", "privatekey",
    "accesskey", "secretkey", "jwt", "sessionid", "jsessionid", "csrftoken",
})
# `token` last is a secret (`--hf-token`) except after these: tokenizer and sequence settings
TOKEN_NOT_SECRET = frozenset({
    "pad", "eos", "bos", "unk", "sep", "cls", "mask", "start", "end", "stop", "special",
    "image", "audio", "video", "vision", "eot", "sos", "blank", "null", "begin", "new", "max",
    "min", "num", "n", "additional", "default", "placeholder", "prefix", "suffix", "decoder",
    "encoder", "first", "last",
})
# `pass` last is a secret only as the whole name or after one of these (`db_pass`)
PASS_OWNERS = frozenset({
    "db", "user", "admin", "root", "login", "mysql", "postgres", "pg", "sql", "redis", "ftp",
    "smtp", "mail", "email", "proxy", "ldap", "ssh", "sudo", "account", "master", "keystore",
    "truststore", "store", "key", "http", "basic", "api", "app", "mongo", "amqp", "server",
})
KEY_OWNERS = frozenset({
    "api", "access", "secret", "private", "wandb", "auth", "encryption", "signing", "client",
    "master", "ssh", "aws", "license", "session",
})
# secret only as the name of a URL query parameter (presigned URLs, `?key=` API keys)
QUERY_WORDS = frozenset({"sig", "signature", "key"})

_WORDS = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+")
# `scheme://user:pass@host` anywhere in a string (database URLs, authenticated git URLs); the
# password may itself hold '@' (unencoded), so everything up to the last '@' of the authority
_URL_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)[^/\s?#]+@")
# `name=value` inside a URL query or fragment
_QUERY_PARAM = re.compile(r"(?P<pre>[?&;#])(?P<name>[^=&;#\s]+)=(?P<value>[^&;#\s]*)")
# an HTTP header, alone (`Authorization: Bearer x`), as `--header=...` or curl's `-H...`
_HEADER = re.compile(r"^(?P<pre>-{1,2}[\w-]+=|-H)?\s*(?P<name>[A-Za-z][\w-]*)\s*:\s*\S")
# the left side of `NAME=value`, `--flag=value` or a Hydra override (`+db.password=x`)
_ASSIGNED = re.compile(r"^[+~]{0,2}-{0,2}[A-Za-z_][\w.-]*$")
_FLAG = re.compile(r"^--?[A-Za-z]")
# `name=value` and `"name": "value"` inside a longer argument (`--opts lr=0.1,api_key=x`, a
# JSON or Python-repr config, a shell command line given as one argument)
_EMBEDDED = re.compile(r"""(?P<pre>(?:^|[\s,;({\[])["']?)(?P<name>[A-Za-z_][\w.-]*)"""
                       r"""(?P<mid>["']?\s*[=:]\s*)(?P<value>"[^"]*"|'[^']*'|[^\s,;&)}\]"']+)""")


def _extra_names() -> str:
    return os.environ.get("EM_SECRET_NAMES", "")


def _words(name: str) -> list[str]:
    return [w.lower() for w in _WORDS.findall(name)]


def is_secret_name(name: str) -> bool:
    """Whether a value recorded under ``name`` must be masked (see the module docstring).

    Example:
        >>> [is_secret_name(n) for n in ("--wandbApiKey", "db.password", "HF_TOKEN",
        ...                               "--max-tokens", "tokenizer", "--key-dim", "pad_token")]
        [True, True, True, False, False, False, False]
    """
    return _is_secret(name, _extra_names(), False)


@functools.lru_cache(maxsize=4096)
def _is_secret(name: str, extra: str, query: bool) -> bool:
    words = _words(name)
    if not words or (words[0] == "no" and len(words) > 1):
        return False
    for own in extra.split(","):
        own_words = _words(own)
        n = len(own_words)
        if n and any(words[i:i + n] == own_words for i in range(len(words) - n + 1)):
            return True
    last = words[-1]
    if query and last in QUERY_WORDS:
        return True
    if SECRET_WORDS.intersection(words) or last == "auth":
        return True
    before = words[-2] if len(words) > 1 else ""
    if last == "token":
        return before not in TOKEN_NOT_SECRET
    if last == "pass":
        return not before or before in PASS_OWNERS
    return last in ("key", "keys") and before in KEY_OWNERS


def mask_value(value: Any) -> Any:
    """What is recorded for a value under a secret name: ``***``, except ``None`` and booleans
    (``use_auth: True`` says nothing secret). A dict or list under the name is masked whole."""
    return value if value is None or isinstance(value, bool) else MASK


def mask_url(text: str) -> str:
    """``text`` with the ``user:password@`` of URLs and secret query parameters masked.

    Example:
        >>> mask_url("https://bob:pw@host/x?token=abc&page=2&X-Amz-Signature=s")
        'https://***@host/x?token=***&page=2&X-Amz-Signature=***'
    """
    text = _URL_USERINFO.sub(rf"\g<scheme>{MASK}@", text)
    if "=" not in text:
        return text
    extra = _extra_names()
    return _QUERY_PARAM.sub(
        lambda m: (f"{m['pre']}{m['name']}={MASK}" if _is_secret(m["name"], extra, True)
                   else m.group(0)), text)


def _mask_embedded(m: re.Match[str]) -> str:
    if not is_secret_name(m["name"]) or m["value"].startswith("//"):  # `https://...`
        return m.group(0)
    value = m["value"]
    masked = f"{value[0]}{MASK}{value[0]}" if value[:1] in ("'", '"') else MASK
    return f"{m['pre']}{m['name']}{m['mid']}{masked}"


def mask_text(text: str) -> str:
    """:func:`mask_url`, and secret ``name=value`` / ``"name": "value"`` pairs inside
    ``text`` masked.

    Example:
        >>> mask_text('lr=0.1,api_key=abc {"password": "x"} https://u:p@h/a')
        'lr=0.1,api_key=*** {"password": "***"} https://***@h/a'
    """
    text = mask_url(text)
    if "=" not in text and ":" not in text:
        return text
    return _EMBEDDED.sub(_mask_embedded, text)


def _mask_header(arg: str) -> str | None:
    m = _HEADER.match(arg)
    if m is None or not is_secret_name(m["name"]):
        return None
    return f"{m['pre'] or ''}{m['name']}: {MASK}"


def redact_argv(argv: Iterable[str]) -> list[str]:
    """A copy of a command line with secret values replaced by ``***``.

    Masked: the value after a secret flag (``--password X``, ``--authToken X``; a flag that
    follows is not a value), ``--flag=value`` and ``NAME=value`` (environment-style and
    Hydra ``db.password=...`` overrides) for secret names, HTTP headers with a secret name
    (``Authorization: Bearer ...``, also as ``--header=...`` and ``-H...``), and the
    credentials of URLs (``user:password@``, ``?token=``, ``&X-Amz-Signature=``).

    Example:
        >>> redact_argv(['train.py', '--token', '--lr', '0.1', '--authToken', 'abc'])
        ['train.py', '--token', '--lr', '0.1', '--authToken', '***']
        >>> redact_argv(['db.password=pw', 'HF_TOKEN=hf_x', '--header', 'Authorization: Bearer x'])
        ['db.password=***', 'HF_TOKEN=***', '--header', 'Authorization: ***']
    """
    out: list[str] = []
    expect_value = False  # the previous argument was a secret flag without '='
    for arg in argv:
        expect, expect_value = expect_value, False
        header = _mask_header(arg)
        if header is not None:
            out.append(header)
            continue
        if expect and not _FLAG.match(arg):  # '-5' is a value; '--lr' the next option
            out.append(MASK)
            continue
        name, sep, _value = arg.partition("=")
        if sep and _ASSIGNED.match(name) and is_secret_name(name):
            out.append(f"{name}={MASK}")
            continue
        if not sep and _FLAG.match(arg):
            out.append(arg)
            expect_value = is_secret_name(arg)
            continue
        out.append(mask_text(arg))
    return out
