"""Database tables (SQLAlchemy 2 Core) and the engine: SQLite in WAL mode or PostgreSQL.

The schema is created and upgraded by Alembic (``em_server/migrations``) when the server or
an admin command opens the database; these table objects mirror the newest migration.
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    event,
)
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError, OperationalError

metadata = MetaData()
T = TypeVar("T")

users = Table(
    "users", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(200), nullable=False, unique=True),
    Column("created_at", Float, nullable=False),
)
api_keys = Table(
    "api_keys", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("user_id", Integer, ForeignKey("users.id"), nullable=False),
    Column("key_hash", String(64), nullable=False, unique=True),
    Column("created_at", Float, nullable=False),
    Column("revoked_at", Float, nullable=True),
)
folders = Table(
    "folders", metadata,
    Column("path", String(2000), primary_key=True),
    Column("owner", String(200), nullable=False),
    Column("created_at", Float, nullable=False),
)
grants = Table(
    "grants", metadata,
    Column("folder", String(2000), primary_key=True),
    Column("user_id", Integer, ForeignKey("users.id"), primary_key=True),
    Column("write", Boolean, nullable=False),
)
runs = Table(
    "runs", metadata,
    Column("id", String(36), primary_key=True),
    Column("folder", String(2000), nullable=False, index=True),
    Column("name", String(200), nullable=False),
    Column("alternative_name", String(400), nullable=False),
    Column("status", String(40), nullable=True),
    Column("labels", Text, nullable=False),
    Column("description", Text, nullable=False),
    Column("start_timestamp", Float, nullable=True),
    Column("end_timestamp", Float, nullable=True),
    Column("meta", Text, nullable=False),
    Column("metrics_length", BigInteger, nullable=False),
    Column("schemas", Text, nullable=False),
    Column("last", Text, nullable=False),
    Column("console_length", BigInteger, nullable=False, server_default="0"),
)
metric_bytes = Table(
    "metric_bytes", metadata,
    Column("run_id", String(36), ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True),
    Column("offset", BigInteger, primary_key=True),
    Column("data", LargeBinary, nullable=False),
)
series = Table(
    "series", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("run_id", String(36), ForeignKey("runs.id", ondelete="CASCADE"), nullable=False,
           index=True),
    Column("type", String(400), nullable=False),
    Column("name", String(400), nullable=False),
)
chunks = Table(
    "chunks", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("series_id", Integer, ForeignKey("series.id", ondelete="CASCADE"), nullable=False,
           index=True),
    Column("n", Integer, nullable=False),
    Column("steps", LargeBinary, nullable=False),
    Column("epochs", LargeBinary, nullable=False),
    Column("times", LargeBinary, nullable=False),
    Column("vals", LargeBinary, nullable=False),
)
# one row per chunk (em_server/summaries.py), in a table of its own so that reading them
# never walks past the chunks' point columns: a downsampled view reads no points
chunk_summaries = Table(
    "chunk_summaries", metadata,
    Column("chunk_id", Integer, ForeignKey("chunks.id", ondelete="CASCADE"), primary_key=True),
    Column("series_id", Integer, ForeignKey("series.id", ondelete="CASCADE"), nullable=False,
           index=True),
    Column("start", BigInteger, nullable=False),
    Column("n", Integer, nullable=False),
    Column("step_lo", BigInteger, nullable=True),
    Column("step_hi", BigInteger, nullable=True),
    Column("epoch_lo", BigInteger, nullable=True),
    Column("epoch_hi", BigInteger, nullable=True),
    Column("time_lo", Float, nullable=True),
    Column("time_hi", Float, nullable=True),
    Column("summary", LargeBinary, nullable=False),
)

artifacts = Table(
    "artifacts", metadata,
    Column("id", String(36), primary_key=True),
    Column("folder", String(2000), nullable=False, index=True),
    Column("name", String(200), nullable=False),
    Column("alternative_name", String(400), nullable=False),
    Column("labels", Text, nullable=False),
    Column("description", Text, nullable=False),
    Column("meta", Text, nullable=False),
)
uploads = Table(
    "uploads", metadata,
    Column("id", String(36), primary_key=True),
    Column("user_id", Integer, ForeignKey("users.id"), nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("offset", BigInteger, nullable=False),
    Column("created_at", Float, nullable=False),
)
sessions = Table(
    "sessions", metadata,
    Column("token_hash", String(64), primary_key=True),
    Column("user_id", Integer, ForeignKey("users.id"), nullable=False),
    Column("key_id", Integer, ForeignKey("api_keys.id"), nullable=False),
    Column("csrf", String(64), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("used_at", Float, nullable=False),
)
console_bytes = Table(
    "console_bytes", metadata,
    Column("run_id", String(36), ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True),
    Column("offset", BigInteger, primary_key=True),
    Column("data", LargeBinary, nullable=False),
)


Index("runs_folder_start", runs.c.folder, runs.c.start_timestamp)
Index("runs_folder_name", runs.c.folder, runs.c.name, unique=True)
Index("runs_folder_alt", runs.c.folder, runs.c.alternative_name, unique=True)
Index("artifacts_folder_name", artifacts.c.folder, artifacts.c.name, unique=True)
Index("artifacts_folder_alt", artifacts.c.folder, artifacts.c.alternative_name, unique=True)


class Retry(Exception):
    """Raised inside a ``retrying`` transaction that saw another writer's change land first."""


def retrying(fn: Callable[[], T], tries: int = 40) -> T:
    """Run a transaction function again when it lost a race with another writer (a unique
    name taken meanwhile, SQLite's snapshot moved on): the next try sees the winner's row."""
    for i in range(tries):
        try:
            return fn()
        except (IntegrityError, OperationalError, Retry):
            if i == tries - 1:
                raise
            time.sleep(random.uniform(0.005, 0.02) * min(i + 1, 10))
    raise AssertionError("unreachable")


def data_dir(data: str | os.PathLike[str] | None = None) -> Path:
    """The data directory (artifact bytes, the default SQLite database)."""
    return Path(data or os.environ.get("EM_SERVER_DATA") or "em-server-data").resolve()


def db_url(data: str | os.PathLike[str] | None, db: str | None) -> str:
    """The database URL: ``db`` when given, else SQLite at ``<data>/em.sqlite3``."""
    if db:
        if db.startswith("postgresql://"):
            return "postgresql+psycopg://" + db[len("postgresql://"):]
        return db
    root = data_dir(data)
    root.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{root / 'em.sqlite3'}"


def make_engine(url: str) -> Engine:
    """An engine; SQLite connections get WAL mode, foreign keys and a busy timeout."""
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})

        @event.listens_for(engine, "connect")
        def _pragmas(conn: Any, _rec: Any) -> None:
            cur = conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()

        return engine
    return create_engine(url, pool_pre_ping=True)


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Bring the database schema up to ``revision`` with Alembic."""
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(Path(__file__).parent / "migrations"))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)


def now() -> float:
    """Unix time, the unit of every timestamp column."""
    return time.time()
