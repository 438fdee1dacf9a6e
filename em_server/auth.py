"""API keys (stored as sha256 hex, shown once), users, and folder permissions."""

from __future__ import annotations

import hashlib
import os
import re
import secrets
from dataclasses import dataclass

from fastapi import HTTPException, Request
from sqlalchemy import and_, insert, select
from sqlalchemy.engine import Connection, Engine

from . import db

SESSION_COOKIE = "em_session"
CSRF_COOKIE = "em_csrf"
_NAME_BAD = re.compile(r"[\x00-\x1f\x7f/]")


def hash_key(key: str) -> str:
    """The stored form of an API key."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def check_name(name: object, what: str = "name") -> str:
    """A folder, run or user name: 1-200 chars, no '/', no control chars, not '.'/'..'."""
    if not isinstance(name, str) or not 1 <= len(name) <= 200 or _NAME_BAD.search(name) \
            or name in (".", ".."):
        raise HTTPException(400, f"invalid {what} {name!r}: expected 1-200 characters, "
                                 "no '/', no control characters, not '.' or '..'")
    return name


def check_path(path: object) -> str:
    """An absolute folder path ``/<user>/...`` with valid names; returned without a trailing /."""
    if not isinstance(path, str) or not path.startswith("/") or len(path) > 2000:
        raise HTTPException(400, f"invalid path {path!r}: expected an absolute path /<user>/...")
    parts = path.rstrip("/").split("/")[1:]
    if not parts:
        raise HTTPException(400, f"invalid path {path!r}: expected /<user>/...")
    for p in parts:
        check_name(p, "path component")
    return "/" + "/".join(parts)


def add_user(conn: Connection, name: str) -> str:
    """Create a user with its root folder; returns its first key."""
    check_name(name, "user name")
    uid = conn.execute(insert(db.users).values(name=name, created_at=db.now())) \
        .inserted_primary_key[0]
    conn.execute(insert(db.folders).values(path=f"/{name}", owner=name, created_at=db.now()))
    return add_key(conn, int(uid))


def add_key(conn: Connection, user_id: int) -> str:
    """A new key for the user; only its hash is stored."""
    key = "em_" + secrets.token_urlsafe(32)
    conn.execute(insert(db.api_keys).values(user_id=user_id, key_hash=hash_key(key),
                                            created_at=db.now()))
    return key


@dataclass(frozen=True)
class User:
    """The authenticated caller."""

    id: int
    name: str
    key_id: int


LOCAL_USER = "local"


def local_mode() -> bool:
    """True under ``em ui``: one implicit user, no keys, bound to loopback."""
    return os.environ.get("EM_SERVER_LOCAL") == "1"


def local_user(engine: Engine) -> User:
    """Under ``em ui``: the one user, made with its root folder ``/local`` if missing (called
    once as the app starts, before any request)."""
    def attempt() -> User:
        with engine.begin() as conn:
            if conn.execute(select(db.users.c.id).where(db.users.c.name == LOCAL_USER)) \
                    .first() is None:
                add_user(conn, LOCAL_USER)
            uid = conn.execute(select(db.users.c.id).where(db.users.c.name == LOCAL_USER)) \
                .scalar_one()
            kid = conn.execute(select(db.api_keys.c.id).where(db.api_keys.c.user_id == uid)
                               .limit(1)).scalar_one()
        return User(id=int(uid), name=LOCAL_USER, key_id=int(kid))

    return db.retrying(attempt)


def authenticate(request: Request) -> User:
    """The caller: the bearer key's user, or the browser session's (its cookie; requests
    other than GET/HEAD must also carry the ``X-EM-CSRF`` header), or 401. The key or token
    is never echoed."""
    if local_mode():
        return request.app.state.local_user  # type: ignore[no-any-return]
    header = request.headers.get("authorization", "")
    scheme, _, key = header.partition(" ")
    engine = request.app.state.engine
    if not header and request.cookies.get(SESSION_COOKIE):
        from .sessions import session_user

        return session_user(request)
    if scheme.lower() != "bearer" or not key.strip():
        raise HTTPException(401, "invalid or revoked API key")
    with engine.connect() as conn:
        row = conn.execute(
            select(db.api_keys.c.id, db.users.c.id, db.users.c.name)
            .join(db.users, db.users.c.id == db.api_keys.c.user_id)
            .where(and_(db.api_keys.c.key_hash == hash_key(key.strip()),
                        db.api_keys.c.revoked_at.is_(None)))).first()
    if row is None:
        raise HTTPException(401, "invalid or revoked API key")
    return User(id=row[1], name=row[2], key_id=row[0])


def _ancestors(path: str) -> list[str]:
    parts = path.split("/")[1:]
    return ["/" + "/".join(parts[:i]) for i in range(1, len(parts) + 1)]


def access(conn: Connection, user: User, path: str) -> tuple[bool, bool]:
    """(can read, can write) for ``user`` on folder ``path`` (own root or a grant above it)."""
    if path.split("/")[1] == user.name:
        return True, True
    rows = conn.execute(select(db.grants.c.write).where(and_(
        db.grants.c.user_id == user.id, db.grants.c.folder.in_(_ancestors(path))))).all()
    if not rows:
        return False, False
    return True, any(r[0] for r in rows)


def require(conn: Connection, user: User, path: str, write: bool = False) -> None:
    """404 when ``path`` is unreadable (as if absent), 403 when readable but not writable."""
    r, w = access(conn, user, path)
    if not r:
        raise HTTPException(404, f"folder {path!r} not found")
    if write and not w:
        raise HTTPException(403, f"no write access to folder {path!r}")
