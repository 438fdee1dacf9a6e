"""The ASGI application: ``create_app()`` (uvicorn factory) wiring the routers under /api/v1.

Configuration comes from the environment set by ``em server start``: ``EM_SERVER_DATA`` (the
data directory) and ``EM_SERVER_DB`` (a database URL; SQLite under the data directory when
unset). The database is upgraded with Alembic when the app starts.
"""

# ruff: noqa: B008  # FastAPI's dependency idiom: Depends()/Query() as defaults

from __future__ import annotations

import os
from typing import Any

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from sqlalchemy.exc import DataError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from . import __version__, db
from .auth import User, authenticate, local_mode

JSON_LIMIT = 16 << 20
BINARY_LIMIT = 64 << 20


class BodyLimit:
    """Refuses (413) a body over the limit for its content type: at once when its
    Content-Length says so, else (chunked transfer) as soon as the bytes read pass the limit,
    before the endpoint has seen the whole body (so before it could write anything)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            headers = dict(scope["headers"])
            ctype = headers.get(b"content-type", b"").decode("latin-1")
            limit = BINARY_LIMIT if ctype.startswith("application/octet-stream") else JSON_LIMIT
            length = headers.get(b"content-length")
            try:
                too_big = length is not None and int(length) > limit
            except ValueError:
                too_big = True
            if too_big:
                resp = JSONResponse({"detail": f"request body over the limit of {limit} bytes"},
                                    status_code=413)
                await resp(scope, receive, send)
                return
            # NUL in a path or query value: no database column can hold it (PostgreSQL
            # refuses it outright), so it is bad input for every endpoint
            query = scope.get("query_string", b"").lower()
            if "\x00" in scope.get("path", "") or b"%00" in query or b"\x00" in query:
                resp = JSONResponse({"detail": "NUL (%00) is not allowed in a path or query"},
                                    status_code=400)
                await resp(scope, receive, send)
                return
            if length is None:
                receive = _counting(receive, limit)
        await self.app(scope, receive, send)


def _counting(receive: Receive, limit: int) -> Receive:
    """``receive`` that raises 413 (answered by the app's handler) once the body read so far
    is over ``limit`` bytes."""
    seen = 0

    async def wrapped() -> Message:
        nonlocal seen
        message = await receive()
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > limit:
                raise HTTPException(413, f"request body over the limit of {limit} bytes")
        return message

    return wrapped


async def binary_body(request: Request) -> bytes:
    """A binary request body, read whole; 413 as soon as it passes ``BINARY_LIMIT``."""
    body = bytearray()
    async for part in request.stream():
        body += part
        if len(body) > BINARY_LIMIT:
            raise HTTPException(413, f"request body over the limit of {BINARY_LIMIT} bytes")
    return bytes(body)


def create_app() -> FastAPI:  # noqa: C901 - the app's set-up with its exception handlers defined inline (FastAPI's idiom)
    """The app, on the database named by the environment (upgraded to the newest schema)."""
    from . import (
        artifacts,
        blobs,
        consolelog,
        folders,
        graph,
        metrics,
        pages,
        runlist,
        runs,
        sessions,
    )
    from .storage import store_from_env

    url = db.db_url(os.environ.get("EM_SERVER_DATA"), os.environ.get("EM_SERVER_DB"))
    engine = db.make_engine(url)
    db.upgrade(engine)
    app = FastAPI(title="em server", version=__version__, openapi_url="/api/v1/openapi.json",
                  docs_url="/api/v1/docs", redoc_url=None)
    app.state.engine = engine
    if local_mode():
        from .auth import local_user

        app.state.local_user = local_user(engine)
    app.state.store = store_from_env()  # EM_SERVER_OBJECTS: s3://... or the data directory
    app.add_middleware(BodyLimit)

    @app.exception_handler(HTTPException)
    async def _http(_req: Request, exc: HTTPException) -> Response:
        body: dict[str, Any] = {"detail": exc.detail}
        if exc.headers and "x-em-length" in exc.headers:
            body["length"] = int(exc.headers["x-em-length"])
        return JSONResponse(body, status_code=exc.status_code)

    @app.exception_handler(DataError)
    async def _data(_req: Request, exc: DataError) -> Response:
        # a value the database cannot store (NUL in a JSON string on PostgreSQL, a number
        # out of its column's range): bad input, answered without the value itself
        return JSONResponse({"detail": "a value in the request cannot be stored: "
                             f"{type(exc.orig).__name__}"}, status_code=400)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_req: Request, exc: RequestValidationError) -> Response:
        msgs = []
        for e in exc.errors():
            loc = ".".join(str(x) for x in e.get("loc", ()))
            msgs.append(f"{loc}: {e.get('msg')}")
        return JSONResponse({"detail": "; ".join(msgs) or "invalid request"}, status_code=422)

    @app.get("/api/v1/health")
    def health() -> dict[str, str]:
        return {"status": "ok", "version": __version__}

    @app.get("/api/v1/whoami")
    def whoami(user: User = Depends(authenticate)) -> dict[str, Any]:
        return {"user": user.name, "key_id": user.key_id, "local": local_mode(),
                "home": f"/{user.name}"}  # where the console's run list starts

    def openapi() -> dict[str, Any]:
        # our 4xx bodies are {"detail": "<message>"}, also for validation errors
        if app.openapi_schema is None:
            from fastapi.openapi.utils import get_openapi

            schema = get_openapi(title=app.title, version=app.version, routes=app.routes)
            comps = schema.setdefault("components", {}).setdefault("schemas", {})
            comps["HTTPValidationError"] = {
                "type": "object", "required": ["detail"], "title": "HTTPValidationError",
                "properties": {"detail": {"type": "string", "title": "Detail"}}}
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    app.include_router(folders.router, prefix="/api/v1")
    app.include_router(runlist.router, prefix="/api/v1")  # before /runs/{run_id}
    app.include_router(runs.router, prefix="/api/v1")
    app.include_router(metrics.router, prefix="/api/v1")
    app.include_router(blobs.router, prefix="/api/v1")
    app.include_router(artifacts.router, prefix="/api/v1")
    app.include_router(sessions.router, prefix="/api/v1")
    app.include_router(graph.router, prefix="/api/v1")
    app.include_router(consolelog.router, prefix="/api/v1")
    pages.mount(app)  # last: its catch-all must not shadow the API
    return app
