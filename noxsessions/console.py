"""The web console's browser tests (tests/console): Debian's chromium driven by Playwright
against a real ``em server`` process on SQLite.

    python3 -m nox -s console

Chromium is Debian's package, installed with apt-get when /usr/bin/chromium is missing (CI
runs as root); Playwright's own browser download is never used. Screenshots of every page
are saved in ``.nox/console/tmp/console-shots`` (``$EM_CONSOLE_SHOTS``).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import nox

from noxsessions._common import install_em

DEFAULT = ["console"]
CHROMIUM = "/usr/bin/chromium"
PLAYWRIGHT = "playwright==1.65.3"


@nox.session
def console(session: nox.Session) -> None:
    """tests/console in headless chromium against the server as a process."""
    if not os.path.exists(CHROMIUM):
        session.run("apt-get", "update", external=True)
        session.run("apt-get", "install", "-y", "--no-install-recommends", "chromium",
                    external=True, env={"DEBIAN_FRONTEND": "noninteractive"})
    if not os.path.exists(CHROMIUM):
        session.error(f"{CHROMIUM} is still missing after apt-get install chromium")
    install_em(session, "-e", ".[server]", PLAYWRIGHT, "pytest==9.0.3")
    shots = Path(session.create_tmp()).resolve() / "console-shots"
    shutil.rmtree(shots, ignore_errors=True)
    session.run("pytest", "tests/console", *session.posargs,
                env={"EM_CONSOLE_SHOTS": str(shots), "PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD": "1"})
    session.log(f"screenshots of every console page: {shots}")
