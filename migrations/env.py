"""Alembic environment: runs on the connection envoylog hands over, or on ENVOYLOG_DB from the command line."""

from __future__ import annotations

import os

from alembic import context
from sqlalchemy import Connection

from envoylog.db.engine import create_db_engine
from envoylog.db.models import with_partial_indexes

target_metadata = with_partial_indexes()


def run_on(connection: Connection) -> None:
    """Configure Alembic for `connection` and run the migrations."""
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        # SQLite cannot ALTER most things: batch mode copies the table instead.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    sqlite = connection.dialect.name == "sqlite"
    if sqlite:
        # Batch mode rebuilds a table under another name and renames it back; SQLite refuses that rename
        # while a view (0008's) reads the table, unless the rename leaves views alone.
        connection.exec_driver_sql("PRAGMA legacy_alter_table = ON")
    try:
        with context.begin_transaction():
            context.run_migrations()
    finally:
        if sqlite:
            connection.exec_driver_sql("PRAGMA legacy_alter_table = OFF")


def main() -> None:
    """Entry point Alembic calls."""
    connection = context.config.attributes.get("connection")
    if connection is not None:
        run_on(connection)
        return
    url = os.environ.get("ENVOYLOG_DB")
    if not url:
        raise SystemExit("set ENVOYLOG_DB to the database URL to run alembic by hand")
    engine = create_db_engine(url)
    with engine.connect() as conn, conn.begin():
        run_on(conn)


main()
