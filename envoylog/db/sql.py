"""What the storage modules share: inserts that skip existing keys, the newest rows of each owner."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import Subquery, Table, select
from sqlalchemy.engine import Connection, Row
from sqlalchemy.sql.elements import ColumnElement


def insert_ignore(conn: Connection, table: Table, rows: list[dict[str, Any]], unique: list[str]) -> list[Any]:
    """Insert rows, skipping those whose unique key exists (so racing writers never duplicate).

    Returns the first unique column of each row inserted.
    """
    if not rows:
        return []
    insert = dialect_insert(conn)(table).values(rows).on_conflict_do_nothing(index_elements=unique)
    return [value for (value,) in conn.execute(insert.returning(table.c[unique[0]]))]


def dialect_insert(conn: Connection) -> Any:
    """The INSERT with ON CONFLICT of the connection's database (only its own dialect's module is loaded)."""
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects import postgresql

        return postgresql.insert
    from sqlalchemy.dialects import sqlite

    return sqlite.insert


def newest_per_owner(
    conn: Connection,
    owners: Subquery,
    table: Table,
    order: Sequence[ColumnElement[Any]],
    picks: Mapping[str, Sequence[ColumnElement[bool]]],
    columns: Sequence[str],
) -> dict[Any, dict[str, Row[Any]]]:
    """For each owner (the `owner` column of `owners`), the first row of `table` by `order` under each pick.

    A pick's conditions tie the table to `owners.c.owner`. One statement for all owners: a top-1 subquery per
    owner and pick (an index lookup each, not a scan of the table), joined back to the table for `columns`
    (the first of which is the table's key). Owners without any row are there, with no picks.
    """
    key = table.c[columns[0]]
    picking = select(
        owners.c.owner,
        *(
            select(key)
            .where(*where)
            .order_by(*order)
            .limit(1)
            .correlate(owners)
            .scalar_subquery()
            .label(f"pick_{name}")
            for name, where in picks.items()
        ),
    )
    # OFFSET 0 keeps both databases from merging `chosen` into the join below, which would run every top-1
    # subquery again for the join's condition and for each row it yields.
    chosen = picking.offset(0).subquery("chosen")
    pick_ids = [chosen.c[f"pick_{name}"] for name in picks]
    query = select(chosen, *(table.c[name] for name in columns)).outerjoin(table, key.in_(pick_ids))
    found: dict[Any, dict[str, Row[Any]]] = {}
    for row in conn.execute(query):
        picked = found.setdefault(row.owner, {})
        values = row._mapping
        for name in picks:
            if values[key.name] is not None and values[f"pick_{name}"] == values[key.name]:
                picked[name] = row
    return found
