"""Alembic, driven from code: find the scripts (in the wheel or the source tree), upgrade under a lock.

Alembic is imported only when the schema is not at HEAD_REVISION: a cron `collect` on a database that is
up to date reads the revision with one query and never loads Alembic's runtime.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Engine, inspect, text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import SQLAlchemyError

from envoylog.db.engine import (
    FIRST_STEP,
    SQLITE_BEGIN,
    NoDatabase,
    create_db_engine,
    describe_db_error,
    describe_sqlite_trouble,
)
from envoylog.db.lock import PG_LOCK_KEY
from envoylog.errors import DatabaseError

if TYPE_CHECKING:
    from alembic.config import Config

# The newest migration in migrations/versions; a test keeps it equal to the scripts' head.
HEAD_REVISION = "0011"
VERSION_TABLE = "alembic_version"


def migrations_dir() -> Path:
    """The Alembic script directory: packaged in the wheel, or `migrations/` in a source checkout."""
    package = Path(__file__).resolve().parents[1]
    for candidate in (package / "_migrations", package.parent / "migrations"):
        if (candidate / "env.py").is_file():
            return candidate
    raise DatabaseError("the database migrations are missing from this installation of envoylog")


def alembic_config(connection: Connection | None = None) -> Config:
    """An Alembic Config pointing at the scripts, optionally bound to an open connection."""
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(migrations_dir()))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def head_revision() -> str | None:
    """The newest revision the scripts know."""
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def current_revision(engine: Engine) -> str | None:
    """The revision the database is at; None for an empty database. One query when there is one."""
    try:
        try:
            with engine.connect() as conn:
                versions = conn.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).scalars().all()  # noqa: S608
        except SQLAlchemyError:
            with engine.connect() as conn:
                if not inspect(conn).has_table(VERSION_TABLE):
                    return None  # a new (or foreign) database: no envoylog schema yet
            raise
    except SQLAlchemyError as exc:
        reason = describe_db_error(exc)
        if engine.dialect.name == "sqlite":
            reason = describe_sqlite_trouble(Path(engine.url.database or "")) or reason
        raise DatabaseError(f"cannot open {describe_location(engine)}: {reason}") from None
    if len(versions) > 1:
        raise DatabaseError(
            f"{describe_location(engine)} is at several revisions at once: {', '.join(versions)}"
        )
    return versions[0] if versions else None


def upgrade(engine: Engine) -> bool:
    """Upgrade to the newest revision, one process at a time; True when something was applied."""
    from alembic import command
    from alembic.runtime.migration import MigrationContext

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
                revision = MigrationContext.configure(conn).get_current_revision()
                if revision == head:
                    return False
                _check_known(revision)
                command.upgrade(alembic_config(conn), "head")
        return True
    except SQLAlchemyError as exc:
        raise DatabaseError(f"cannot upgrade the database: {describe_db_error(exc)}") from None


def open_database(
    url: str, *, create: bool, connections: int | None = None, pool_wait_s: float | None = None
) -> Engine:
    """An engine for `url` whose schema is at the newest revision.

    Only the commands that write (`collect`, `demo`, `db upgrade`, `auth login|set-token`) pass `create`,
    which makes a new database and its schema; every other use refuses a database without envoylog's tables.
    """
    pool = {"pool_wait_s": pool_wait_s} if pool_wait_s is not None else {}
    engine = create_db_engine(url, create=create, connections=connections, **pool)
    try:
        revision = current_revision(engine)
        if revision == HEAD_REVISION:
            return engine  # the steady state: no Alembic
        _check_known(revision)
        if revision is None and not create:
            raise NoDatabase(f"{describe_location(engine)} holds no envoylog data: {FIRST_STEP}")
        if revision != head_revision():
            upgrade(engine)
    except BaseException:
        engine.dispose()
        raise
    return engine


def _check_known(revision: str | None) -> None:
    """Refuse a database that a newer envoylog has upgraded: this one cannot know its tables."""
    if revision is None:
        return
    from alembic.script import ScriptDirectory
    from alembic.util.exc import CommandError

    scripts = ScriptDirectory.from_config(alembic_config())
    try:
        known = scripts.get_revision(revision) is not None
    except CommandError:
        known = False
    if not known:
        raise DatabaseError(
            f"the database is at revision {revision}, newer than this envoylog's {head_revision()}: "
            "upgrade envoylog"
        )


def require_database(engine: Engine) -> None:
    """Refuse an engine whose database does not exist or holds no envoylog tables (never creating one)."""
    if engine.dialect.name == "sqlite":
        path = Path(engine.url.database or "")
        if not path.is_file():
            raise NoDatabase(f"no database at {path}: {FIRST_STEP}")
    if current_revision(engine) is None:
        raise NoDatabase(f"{describe_location(engine)} holds no envoylog data: {FIRST_STEP}")


def describe_location(engine: Engine) -> str:
    """Where a database is, for messages: a SQLite file's path, or PostgreSQL's host and database."""
    url = engine.url
    if url.get_backend_name() == "sqlite":
        return f"the database {url.database}"
    return f"the PostgreSQL database {url.database} on {url.host or 'localhost'}"
