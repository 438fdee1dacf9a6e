"""Per-framework nox sessions, one module each (imported by ../noxfile.py).

Each module defines its sessions with ``@nox.session`` and lists the names that belong in a
default ``nox`` run in ``DEFAULT``.
"""
