"""Where an uploaded run or artifact goes in its folder: the folder made when asked, and
the seed's conflict strategies applied to the name. Runs and artifacts follow the same
rules, so both routers call these (one copy of the rules, not two that can drift)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import HTTPException
from sqlalchemy.engine import Connection

from .auth import User, require
from .folders import exists, make

__all__ = ["open_folder", "place"]


def open_folder(conn: Connection, user: User, folder: str, make_folder: bool) -> None:
    """Check ``user`` may write in ``folder``; create it (with its parents) when it does not
    exist and ``make_folder``, else answer 404."""
    require(conn, user, folder, write=True)
    if not exists(conn, folder):
        if not make_folder:
            raise HTTPException(404, f"folder {folder!r} not found")
        make(conn, user, folder, True, True)


def place(conn: Connection, kind: str, folder: str, name: str, alt: str, strategy: str,
          find: Callable[[Connection, str], Any],
          remove: Callable[[Connection, Any], None]) -> tuple[str, Any]:
    """Apply ``strategy`` to an upload of ``alt`` (its alternative name: the identity that
    makes a repeated upload the same one) named ``name`` in ``folder``, once the caller
    knows no row of that identity is there yet.

    ``find(conn, name)`` returns the row of that name in the folder or None; ``remove``
    deletes a row that ``'replace'`` replaces. Returns ``('create', name to create it
    under)`` or ``('existing' | 'skipped', row)`` to answer with. ``'error'``, and ``'new'``
    when the alternative name is taken by another upload too, answer 409.
    """
    other = find(conn, name)
    if other is None:
        return "create", name
    if other.alternative_name == alt:  # a concurrent upload of this same one
        return "existing", other
    if strategy == "skip":
        return "skipped", other
    if strategy == "error":
        raise HTTPException(409, f"{kind} {name!r} already exists in {folder}")
    if strategy == "replace":
        remove(conn, other)
        return "create", name
    taken = find(conn, alt)  # 'new': under the alternative name
    if taken is None:
        return "create", alt
    if taken.alternative_name == alt:  # created meanwhile by a concurrent upload of this one
        return "existing", taken
    raise HTTPException(409, f"{kind} {alt!r} already exists in {folder}")
