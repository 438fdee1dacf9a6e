"""What em treats as a secret, and how it is masked: one list of names, used for the command
line, hyperparameters and artifact references alike.

A name (a flag, a hyperparameter key, an assignment's left side, a URL query parameter) is
split into words at ``-``, ``_``, ``.``, spaces and camelCase (``wandbApiKey`` -> wandb,
api, key) and is a secret when:

* any word is one of :data:`SECRET_WORDS` (``password``, ``passwd``, ``pwd``, ``secret``,
  ``credentials``, ``authorization``, ``bearer``, ``cookie``, ``apikey``, ...);
* its last word is one of :data:`LAST_WORDS` (``token``, ``pass``, ``auth``, ``sig``,
  ``signature``): ``--hf-token``, ``db_pass`` and ``--auth`` are secrets, while
  ``--max-tokens``, ``--tokenizer``, ``token_dropout`` and ``--pass-rate`` are not;
* its last word is ``key`` after one of :data:`KEY_OWNERS` (``api``, ``access``, ``secret``,
  ``private``, ``wandb``, ...): ``--api-key``, ``AWS_SECRET_ACCESS_KEY``; ``--key-dim`` and
  ``monitor_key`` are not;
* it equals (case-insensitively) or has as a word one of the names in the environment
  variable ``EM_SECRET_NAMES`` (comma-separated), for names of your own.

A masked value is recorded as ``***``.
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Iterable

__all__ = ["MASK", "is_secret_name", "mask_url", "redact_argv"]

MASK = "***"
SECRET_WORDS = frozenset({
    "password", "passwd", "pwd", "passphrase", "secret", "secrets", "credential",
    "credentials", "authorization", "bearer", "cookie", "cookies", "apikey", "privatekey",
    "accesskey", "secretkey",
})
LAST_WORDS = frozenset({"token", "pass", "auth", "sig", "signature"})
KEY_OWNERS = frozenset({
    "api", "access", "secret", "private", "wandb", "auth", "encryption", "signing", "client",
    "master", "ssh", "aws", "license", "session",
})
_WORDS = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|\d+")
# `scheme://user:pass@host` anywhere in a string (database URLs, authenticated git URLs)
_URL_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)[^/\s?#@]+@")
# `name=value` inside a URL query or fragment
_QUERY_PARAM = re.compile(r"(?P<pre>[?&;#])(?P<name>[^=&;#\s]+)=(?P<value>[^&;#\s]*)")
# an HTTP header carrying credentials, e.g. an argument "Authorization: Bearer abc"
_HEADER = re.compile(r"(?i)^(?P<name>(?:proxy-)?authorization|cookie|x-[\w-]*(?:key|token)"
                     r"|api-key)\s*:\s*\S.*$")
_FLAG = re.compile(r"^--?[A-Za-z]")


def _extra_names() -> str:
    return os.environ.get("EM_SECRET_NAMES", "")


def is_secret_name(name: str) -> bool:
    """Whether a value recorded under ``name`` must be masked (see the module docstring).

    Example:
        >>> [is_secret_name(n) for n in ("--wandbApiKey", "db.password", "HF_TOKEN",
        ...                               "--max-tokens", "tokenizer", "--key-dim")]
        [True, True, True, False, False, False]
    """
    return _is_secret(name, _extra_names())


@functools.lru_cache(maxsize=4096)
def _is_secret(name: str, extra: str) -> bool:
    words = [w.lower() for w in _WORDS.findall(name.lstrip("-+~"))]
    if not words:
        return False
    own = {re.sub(r"[-.\s]", "_", n.strip().lower()) for n in extra.split(",") if n.strip()}
    if own and ("_".join(words) in own or own.intersection(words)):
        return True
    if SECRET_WORDS.intersection(words) or words[-1] in LAST_WORDS:
        return True
    return words[-1] in ("key", "keys") and len(words) > 1 and words[-2] in KEY_OWNERS


def mask_url(text: str) -> str:
    """``text`` with the ``user:password@`` of URLs and secret query parameters masked.

    Example:
        >>> mask_url("https://bob:pw@host/x?token=abc&page=2")
        'https://***@host/x?token=***&page=2'
    """
    text = _URL_USERINFO.sub(rf"\g<scheme>{MASK}@", text)
    if "=" not in text:
        return text
    return _QUERY_PARAM.sub(
        lambda m: (f"{m['pre']}{m['name']}={MASK}" if is_secret_name(m["name"])
                   else m.group(0)), text)


def _looks_like_flag(arg: str) -> bool:
    # '-5' and '-0.1' are values; '--lr' and '-v' are the next option
    return bool(_FLAG.match(arg))


def redact_argv(argv: Iterable[str]) -> list[str]:
    """A copy of a command line with secret values replaced by ``***``.

    Masked: the value after a secret flag (``--password X``, ``--authToken X``; a flag that
    follows is not a value), ``--flag=value`` and ``NAME=value`` (environment-style and
    Hydra ``db.password=...`` overrides) for secret names, HTTP credential headers
    (``Authorization: Bearer ...``), and the credentials of URLs.

    Example:
        >>> redact_argv(['train.py', '--token', '--lr', '0.1', '--authToken', 'abc'])
        ['train.py', '--token', '--lr', '0.1', '--authToken', '***']
        >>> redact_argv(['db.password=pw', 'HF_TOKEN=hf_x', '--header', 'Authorization: Bearer x'])
        ['db.password=***', 'HF_TOKEN=***', '--header', 'Authorization: ***']
    """
    out: list[str] = []
    pending = ""  # "value": the previous flag was a secret one; "header": it was --header
    for arg in argv:
        expect, pending = pending, ""
        if _HEADER.match(arg):
            out.append(_HEADER.sub(rf"\g<name>: {MASK}", arg))
            continue
        if expect == "value" and not _looks_like_flag(arg):
            out.append(MASK)
            continue
        name, sep, _value = arg.partition("=")
        if sep and name and " " not in name and is_secret_name(name):
            out.append(f"{name}={MASK}")
            continue
        if arg.startswith("-") and not sep:
            out.append(arg)
            if is_secret_name(arg):
                pending = "value"
            elif arg.lstrip("-").lower() == "header":
                pending = "header"
            continue
        out.append(mask_url(arg))
    return out
