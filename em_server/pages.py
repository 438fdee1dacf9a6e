"""The console's pages: the single-page app in ``em_server/console/static`` served at ``/``.

Every path outside ``/api`` and ``/static`` answers with ``index.html`` (the app routes in
the browser: ``/runs``, ``/run/<id>``, ``/compare``...); an unknown ``/api`` path stays a JSON
404. Static files are shipped inside the package, so the console needs no internet.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles

STATIC = Path(__file__).parent / "console" / "static"


def mount(app: FastAPI) -> None:
    """Add the console's routes; call after every API router."""
    if (STATIC / "index.html").is_file():
        app.mount("/static", StaticFiles(directory=STATIC), name="console-static")

    @app.get("/{path:path}", include_in_schema=False)
    def page(path: str) -> Response:
        if path == "api" or path.startswith(("api/", "static/")):
            return JSONResponse({"detail": f"no such path: /{path}"}, status_code=404)
        index = STATIC / "index.html"
        if not index.is_file():
            return JSONResponse({"detail": "the console is not installed"}, status_code=404)
        return FileResponse(index, headers={"Cache-Control": "no-cache",
                                            "X-Content-Type-Options": "nosniff",
                                            "Referrer-Policy": "same-origin"})
