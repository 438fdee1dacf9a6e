"""Browser sign-in for the console: an API key is exchanged for a session cookie.

The cookie ``em_session`` is HttpOnly and SameSite=Strict and holds a random token stored
only hashed; ``em_csrf`` is readable by the page, which sends it back in the ``X-EM-CSRF``
header on every request that changes something (a request with the session cookie and
without a matching header is refused with 403). Signing out deletes the session, and a
revoked API key ends every session made with it.
"""

from __future__ import annotations

import hmac
import secrets

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import and_, delete, insert, select, update

from . import db
from .auth import CSRF_COOKIE, SESSION_COOKIE, User, authenticate, hash_key

router = APIRouter()
IDLE_LIMIT = 30 * 86400  # seconds a session lives without use
_SAFE = ("GET", "HEAD", "OPTIONS")


class SignIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    api_key: str = Field(max_length=500)


def session_user(request: Request) -> User:
    """The user of the request's session cookie (401 when unknown, expired or its key was
    revoked; 403 when a changing request lacks the CSRF header)."""
    token = request.cookies.get(SESSION_COOKIE, "")
    s, k = db.sessions.c, db.api_keys.c
    with request.app.state.engine.begin() as conn:
        row = conn.execute(
            select(s.user_id, s.key_id, s.csrf, s.used_at, db.users.c.name)
            .join(db.users, db.users.c.id == s.user_id)
            .join(db.api_keys, db.api_keys.c.id == s.key_id)
            .where(and_(s.token_hash == hash_key(token), k.revoked_at.is_(None)))).first()
        if row is None or db.now() - row.used_at > IDLE_LIMIT:
            raise HTTPException(401, "signed out: sign in again with an API key")
        if request.method not in _SAFE:
            sent = request.headers.get("x-em-csrf", "")
            if not sent or not hmac.compare_digest(sent, row.csrf):
                raise HTTPException(403, "missing or wrong X-EM-CSRF header")
        if db.now() - row.used_at > 3600:  # one write an hour keeps the session alive
            conn.execute(update(db.sessions).where(s.token_hash == hash_key(token))
                         .values(used_at=db.now()))
    return User(id=row.user_id, name=row.name, key_id=row.key_id)


@router.post("/session")
def sign_in(body: SignIn, request: Request) -> Response:
    """Exchange an API key for a session cookie."""
    fake = Request({"type": "http", "method": "GET", "app": request.app, "headers": [
        (b"authorization", f"Bearer {body.api_key}".encode("utf-8", "replace"))]})
    user = authenticate(fake)
    token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(24)
    with request.app.state.engine.begin() as conn:
        conn.execute(delete(db.sessions).where(db.sessions.c.used_at < db.now() - IDLE_LIMIT))
        conn.execute(insert(db.sessions).values(
            token_hash=hash_key(token), user_id=user.id, key_id=user.key_id, csrf=csrf,
            created_at=db.now(), used_at=db.now()))
    resp = JSONResponse({"user": user.name})
    secure = request.url.scheme == "https"
    resp.set_cookie(SESSION_COOKIE, token, max_age=IDLE_LIMIT, httponly=True,
                    samesite="strict", secure=secure, path="/")
    resp.set_cookie(CSRF_COOKIE, csrf, max_age=IDLE_LIMIT, samesite="strict", secure=secure,
                    path="/")
    return resp


@router.delete("/session", status_code=204)
def sign_out(request: Request) -> Response:
    """Sign out: the session is deleted and its cookies cleared (also when already gone)."""
    token = request.cookies.get(SESSION_COOKIE)
    if token:
        session_user(request)  # the CSRF check: a foreign page cannot sign the user out
        with request.app.state.engine.begin() as conn:
            conn.execute(delete(db.sessions).where(db.sessions.c.token_hash == hash_key(token)))
    resp = Response(status_code=204)
    resp.delete_cookie(SESSION_COOKIE, path="/")
    resp.delete_cookie(CSRF_COOKIE, path="/")
    return resp

