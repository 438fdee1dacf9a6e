"""The web console's files: a single-page app served by ``em server`` (and ``em ui``).

Plain JavaScript modules and CSS under ``static/``, no build step; the third-party chart
library (uPlot, MIT) is vendored in ``static/vendor/`` with its licence by ``vendor.sh``, so
nothing is fetched at run time (no CDN). See docs/console.md.
"""

from __future__ import annotations

from pathlib import Path

STATIC_DIR = Path(__file__).resolve().parent / "static"
"""Served under ``/static/``; ``STATIC_DIR / "index.html"`` answers every non-API page path."""

INDEX_HTML = STATIC_DIR / "index.html"
