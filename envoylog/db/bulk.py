"""Many rows at once, for the demo's history: a binary COPY on PostgreSQL, one multi-row INSERT on SQLite;
rows whose key exists are skipped either way.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Boolean, Float, Integer, Table
from sqlalchemy.engine import Connection

from envoylog.db.types import UtcDateTime


def save_rows_bulk(
    conn: Connection, table: Table, columns: Sequence[str], rows: list[tuple[Any, ...]]
) -> int:
    """Insert many rows at once, skipping those whose unique key exists; return how many were added.

    For speed the rows go to the driver as they are, past the column types: times are epoch seconds (int).
    """
    if not rows:
        return 0
    names = ", ".join(columns)
    if conn.dialect.name == "postgresql":
        return _copy_rows(conn, table, columns, rows)
    marks = ", ".join("?" for _ in columns)
    insert = f"INSERT INTO {table.name} ({names}) VALUES ({marks}) ON CONFLICT DO NOTHING"  # noqa: S608 - names from the models
    return int(conn.exec_driver_sql(insert, rows).rowcount)


def _copy_rows(conn: Connection, table: Table, columns: Sequence[str], rows: list[tuple[Any, ...]]) -> int:
    """PostgreSQL: COPY into a temporary table, then one INSERT ... ON CONFLICT DO NOTHING from it.

    COPY alone cannot skip existing keys; a binary COPY is some ten times faster than batched INSERTs.
    """
    stage = f"envoylog_stage_{table.name}"
    types = [_copy_type(table.c[name]) for name in columns]
    names = ", ".join(columns)
    selected = ", ".join(
        f"to_timestamp({name})" if isinstance(table.c[name].type, UtcDateTime) else name for name in columns
    )
    definition = ", ".join(f"{name} {kind}" for name, kind in zip(columns, types, strict=True))
    driver = conn.connection.driver_connection
    assert driver is not None
    with driver.cursor() as cursor:
        cursor.execute(f"CREATE TEMPORARY TABLE {stage} ({definition})")
        with cursor.copy(f"COPY {stage} ({names}) FROM STDIN (FORMAT BINARY)") as copy:
            copy.set_types(types)
            for row in rows:
                copy.write_row(row)
        cursor.execute(
            f"INSERT INTO {table.name} ({names}) SELECT {selected} FROM {stage} ON CONFLICT DO NOTHING"  # noqa: S608 - names from the models
        )
        added = int(cursor.rowcount)
        cursor.execute(f"DROP TABLE {stage}")
    return added


def _copy_type(column: Any) -> str:
    """The PostgreSQL type a value of this column travels as in a binary COPY."""
    kind = column.type
    if isinstance(kind, UtcDateTime):
        return "int8"  # epoch seconds, turned into timestamptz by the INSERT
    if isinstance(kind, Boolean):
        return "bool"
    if isinstance(kind, Integer):
        return "int8"
    if isinstance(kind, Float):
        return "float8"
    return "text"
