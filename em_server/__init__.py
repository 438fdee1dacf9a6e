"""em server: a tracking server for em runs (``em server start``).

Runs, metric points and (later) artifacts uploaded by em clients are kept in one database
(SQLite in WAL mode by default, PostgreSQL when scaled out) under a versioned REST API
(``/api/v1``). See docs/server.md.
"""

__version__ = "0.1.0"
