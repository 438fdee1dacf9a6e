"""The real em server app plus a stand-in of what the console needs from the server side
(browser sign-in and serving the console's files) for as long as the server in this tree does
not have them (they are built in parallel; see /api/v1/session in the console contract).

It only adds what is missing: on a server that has its own ``/api/v1/session`` and serves
``/``, this is the plain app. Run: ``python _standin_console.py DATA_DIR PORT``.
"""


import hmac
import os
import secrets
import sys
from http.cookies import SimpleCookie
from pathlib import Path


def build() -> object:
    from fastapi import HTTPException, Request
    from fastapi.responses import FileResponse, JSONResponse, Response
    from fastapi.staticfiles import StaticFiles

    from em_server.app import create_app

    app = create_app()
    paths = {getattr(r, "path", "") for r in app.routes}
    static = Path(__file__).resolve().parents[2] / "em_server" / "console" / "static"
    if "/api/v1/session" not in paths:
        sessions: dict[str, str] = {}  # token -> API key (in memory: a stand-in)

        @app.post("/api/v1/session")
        async def sign_in(request: Request) -> Response:
            body = await request.json()
            key = body.get("api_key") if isinstance(body, dict) else None
            from em_server.auth import authenticate

            fake = Request({"type": "http", "headers": [
                (b"authorization", f"Bearer {key}".encode())], "app": app})
            try:
                user = authenticate(fake)
            except HTTPException:
                return JSONResponse({"detail": "invalid or revoked API key"}, status_code=401)
            token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(16)
            sessions[token] = str(key)
            resp = JSONResponse({"user": user.name})
            resp.set_cookie("em_session", token, httponly=True, samesite="strict", path="/")
            resp.set_cookie("em_csrf", csrf, samesite="strict", path="/")
            return resp

        @app.delete("/api/v1/session")
        def sign_out(request: Request) -> Response:
            sessions.pop(request.cookies.get("em_session", ""), None)
            resp = Response(status_code=204)
            resp.delete_cookie("em_session", path="/")
            resp.delete_cookie("em_csrf", path="/")
            return resp

        inner = app.build_middleware_stack

        def stack() -> object:
            asgi = inner()

            async def cookie_auth(scope: dict, receive: object, send: object) -> None:
                if scope["type"] == "http":
                    headers = dict(scope["headers"])
                    jar = SimpleCookie(headers.get(b"cookie", b"").decode("latin-1"))
                    tok = jar["em_session"].value if "em_session" in jar else ""
                    if tok in sessions and b"authorization" not in headers:
                        csrf = jar["em_csrf"].value if "em_csrf" in jar else ""
                        if scope["method"] not in ("GET", "HEAD") and not (
                                csrf and hmac.compare_digest(
                                    headers.get(b"x-em-csrf", b"").decode(), csrf)):
                            resp = JSONResponse({"detail": "CSRF check failed"}, status_code=403)
                            await resp(scope, receive, send)
                            return
                        scope = dict(scope)
                        scope["headers"] = [*scope["headers"], (
                            b"authorization", f"Bearer {sessions[tok]}".encode())]
                await asgi(scope, receive, send)

            return cookie_auth

        app.build_middleware_stack = stack  # type: ignore[method-assign]
    if "/" not in paths and "/{path:path}" not in paths:
        app.mount("/static", StaticFiles(directory=static), name="console-static")

        @app.get("/{path:path}", include_in_schema=False)
        def spa(path: str) -> Response:
            if path.startswith("api/"):
                return JSONResponse({"detail": "not found"}, status_code=404)
            return FileResponse(static / "index.html")
    return app


if __name__ == "__main__":
    import uvicorn

    os.environ["EM_SERVER_DATA"] = os.path.abspath(sys.argv[1])
    uvicorn.run(build(), host="127.0.0.1", port=int(sys.argv[2]), log_level="warning")
