"""What the storage modules share: a model's Core table, and inserts that skip existing keys."""

from __future__ import annotations

from typing import Any, cast

from sqlalchemy import Table
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection


def table_of(model: Any) -> Table:
    """The Core table of a declarative model."""
    return cast(Table, model.__table__)


def insert_ignore(conn: Connection, table: Table, rows: list[dict[str, Any]], unique: list[str]) -> list[Any]:
    """Insert rows, skipping those whose unique key exists (so racing writers never duplicate).

    Returns the first unique column of each row inserted.
    """
    if not rows:
        return []
    insert = dialect_insert(conn)(table).values(rows).on_conflict_do_nothing(index_elements=unique)
    return [value for (value,) in conn.execute(insert.returning(table.c[unique[0]]))]


def dialect_insert(conn: Connection) -> Any:
    return postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
