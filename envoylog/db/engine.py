"""Opening a database: the engine, SQLite's file and pragmas, and the upgrade on first use."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.exc import SQLAlchemyError

from envoylog.errors import ConfigError, DatabaseError

# Execution option naming how a SQLite transaction begins; IMMEDIATE takes the write lock at once.
SQLITE_BEGIN = "sqlite_begin"


class NoDatabase(ConfigError):
    """A command that only reads was pointed at a database that does not exist (or holds no envoylog data)."""


FIRST_STEP = "run envoylog collect or envoylog demo first"


def create_db_engine(url: str, *, create: bool = False) -> Engine:
    """An engine for `url`; with `create`, a new SQLite file (readable by its owner only) is made for it.

    Without `create` a SQLite file that does not exist is refused: a mistyped path must not leave an empty
    database (and its folders) behind.
    """
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        path = Path(parsed.database or "")
        if create:
            _create_sqlite_file(path)
        elif not path.is_file():
            raise NoDatabase(f"no database at {path}: {FIRST_STEP}")
        return _sqlite_engine(url)
    try:
        return create_engine(url, pool_pre_ping=True)
    except ModuleNotFoundError as exc:
        raise ConfigError(
            f"PostgreSQL needs psycopg: pip install 'envoylog[postgres]' ({exc.name} missing)"
        ) from None


def _create_sqlite_file(path: Path) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists():
            # Created here rather than by SQLite so the mode is 0600 whatever the umask.
            os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
    except OSError as exc:
        raise DatabaseError(f"cannot create the SQLite database {path}: {exc.strerror}") from None


def _sqlite_engine(url: str) -> Engine:
    engine = create_engine(url, connect_args={"timeout": 30})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy, not the driver, decide when transactions begin (the documented pysqlite recipe).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        # A read-only file cannot switch its journal mode; it can still be read.
        with contextlib.suppress(Exception):
            cursor.execute("PRAGMA journal_mode=WAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        mode = conn.get_execution_options().get(SQLITE_BEGIN, "DEFERRED")
        conn.exec_driver_sql(f"BEGIN {mode}")

    return engine


def describe_db_error(exc: SQLAlchemyError) -> str:
    """One line about a database failure, without the SQL or parameters."""
    orig = getattr(exc, "orig", None)
    text = str(orig if orig is not None else exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
