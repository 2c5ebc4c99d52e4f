"""Opening a database: the engine, SQLite's file and pragmas, and the upgrade on first use."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from contextvars import ContextVar
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.exc import SQLAlchemyError

from envoylog.errors import ConfigError, DatabaseError

# Execution option naming how a SQLite transaction begins; IMMEDIATE takes the write lock at once.
SQLITE_BEGIN = "sqlite_begin"


# How long a command waits for a database that another process holds (a writer, a lock): a person waits this
# long; the collector waits no longer than its run's deadline (`waiting_until`).
WAIT_S = 5.0
DEADLINE_GRACE_S = 2.0  # the deadline leaves ten seconds to the next cron minute: room for the last writes
CONNECT_TIMEOUT_S = 10  # a server that accepts the connection and never answers
_deadline: ContextVar[float | None] = ContextVar("envoylog_db_deadline", default=None)


@contextlib.contextmanager
def waiting_until(deadline: float) -> Iterator[None]:
    """Within the block, database waits end by `deadline` (a time.monotonic() value) in this thread."""
    token = _deadline.set(deadline)
    try:
        yield
    finally:
        _deadline.reset(token)


def _wait_ms() -> int:
    deadline = _deadline.get()
    if deadline is None:
        return int(WAIT_S * 1000)
    # What a run read by its deadline is still stored: its last writes get a moment past it.
    return int(max(DEADLINE_GRACE_S, min(WAIT_S * 3, deadline - time.monotonic())) * 1000)


class NoDatabase(ConfigError):
    """A command that only reads was pointed at a database that does not exist (or holds no envoylog data)."""


FIRST_STEP = "run envoylog collect or envoylog demo first"


def create_db_engine(
    url: str, *, create: bool = False, connections: int | None = None, pool_wait_s: float = WAIT_S * 6
) -> Engine:
    """An engine for `url`; with `create`, a new SQLite file (readable by its owner only) is made for it.

    `connections` caps the connections the engine opens (threads beyond it wait their turn, up to
    `pool_wait_s`); by default SQLAlchemy's pool of 5 plus 10 for bursts.

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
        return _sqlite_engine(url, _pool(connections, pool_wait_s))
    try:
        # hide_parameters: a failing statement's message must not carry a token or a session id.
        # A server that accepts the connection and never answers: given up on by the run's deadline.
        connect_timeout = max(1, min(CONNECT_TIMEOUT_S, _wait_ms() // 1000))
        engine = create_engine(
            url,
            pool_pre_ping=True,
            hide_parameters=True,
            connect_args={"connect_timeout": connect_timeout},
            **_pool(connections, pool_wait_s),
        )
    except ModuleNotFoundError as exc:
        raise ConfigError(
            f"PostgreSQL needs psycopg: pip install 'envoylog[postgres]' ({exc.name} missing)"
        ) from None

    @event.listens_for(engine, "begin")
    def _on_begin_pg(conn: Connection) -> None:
        # Waiting for a lock ends with the commands' patience; within a collect run, every statement ends
        # with the run's deadline too (a bulk fill or a year's report may take longer, and may).
        ms = _wait_ms()
        within_run = f"; SET LOCAL statement_timeout = {ms}" if _deadline.get() is not None else ""
        conn.exec_driver_sql(f"SET LOCAL lock_timeout = {ms}{within_run}")

    return engine


def _pool(connections: int | None, wait_s: float) -> dict[str, Any]:
    if connections is None:
        return {}
    return {"pool_size": connections, "max_overflow": 0, "pool_timeout": wait_s}


def _create_sqlite_file(path: Path) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists():
            # Created here rather than by SQLite so the mode is 0600 whatever the umask.
            os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
    except OSError as exc:
        raise DatabaseError(f"cannot create the SQLite database {path}: {exc.strerror}") from None


def _sqlite_engine(url: str, pool: dict[str, Any]) -> Engine:
    engine = create_engine(url, connect_args={"timeout": WAIT_S}, hide_parameters=True, **pool)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy, not the driver, decide when transactions begin (the documented pysqlite recipe).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        # A read-only file cannot switch its journal mode; it can still be read.
        with contextlib.suppress(Exception):
            cursor.execute("PRAGMA journal_mode=WAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        # Another writer holding the file: wait for it until the run's deadline (or the commands' patience).
        conn.exec_driver_sql(f"PRAGMA busy_timeout = {_wait_ms()}")
        mode = conn.get_execution_options().get(SQLITE_BEGIN, "DEFERRED")
        conn.exec_driver_sql(f"BEGIN {mode}")

    return engine


def describe_db_error(exc: SQLAlchemyError) -> str:
    """One line about a database failure, without the SQL or parameters."""
    orig = getattr(exc, "orig", None)
    text = str(orig if orig is not None else exc).strip().splitlines()
    line = text[0] if text else type(exc).__name__
    if line == "attempt to write a readonly database":
        return "the database is read-only: its file, or the folder it keeps its journal in, cannot be written"
    return line


def describe_sqlite_trouble(path: Path) -> str | None:
    """What keeps a SQLite file from being opened, when it is its surroundings: None if nothing shows."""
    folder = path.parent
    if not os.access(folder, os.W_OK | os.X_OK):
        return (
            f"the folder {folder} is read-only: SQLite keeps the database's journal (-wal, -shm) beside it, "
            "so envoylog needs to write there"
        )
    if path.exists() and not os.access(path, os.R_OK):
        return f"{path} cannot be read (its permissions)"
    return None
