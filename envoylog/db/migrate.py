"""Alembic, driven from code: find the scripts (in the wheel or the source tree), upgrade under a lock."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import SQLAlchemyError

from envoylog.db.engine import SQLITE_BEGIN, create_db_engine, describe_db_error
from envoylog.db.lock import PG_LOCK_KEY
from envoylog.errors import DatabaseError


def migrations_dir() -> Path:
    """The Alembic script directory: packaged in the wheel, or `migrations/` in a source checkout."""
    package = Path(__file__).resolve().parents[1]
    for candidate in (package / "_migrations", package.parent / "migrations"):
        if (candidate / "env.py").is_file():
            return candidate
    raise DatabaseError("the database migrations are missing from this installation of envoylog")


def alembic_config(connection: Connection | None = None) -> Config:
    """An Alembic Config pointing at the scripts, optionally bound to an open connection."""
    cfg = Config()
    cfg.set_main_option("script_location", str(migrations_dir()))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def head_revision() -> str | None:
    """The newest revision the scripts know."""
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def current_revision(engine: Engine) -> str | None:
    """The revision the database is at; None for an empty database."""
    try:
        with engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()
    except SQLAlchemyError as exc:
        raise DatabaseError(f"cannot read the database: {describe_db_error(exc)}") from None


def upgrade(engine: Engine) -> bool:
    """Upgrade to the newest revision, one process at a time; True when something was applied."""
    head = head_revision()
    try:
        with engine.connect() as conn:
            conn = conn.execution_options(**{SQLITE_BEGIN: "IMMEDIATE"})
            with conn.begin():
                if conn.dialect.name == "postgresql":
                    conn.execute(
                        text(f"SELECT pg_advisory_xact_lock({PG_LOCK_KEY})"), {"purpose": ":migrate"}
                    )
                # Checked again under the lock: another process may have upgraded meanwhile.
                if MigrationContext.configure(conn).get_current_revision() == head:
                    return False
                command.upgrade(alembic_config(conn), "head")
        return True
    except SQLAlchemyError as exc:
        raise DatabaseError(f"cannot upgrade the database: {describe_db_error(exc)}") from None


def open_database(url: str) -> Engine:
    """An engine for `url` whose schema is at the newest revision (an empty database is created)."""
    engine = create_db_engine(url)
    if current_revision(engine) != head_revision():
        upgrade(engine)
    return engine
