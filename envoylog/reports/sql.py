"""SQL that differs between SQLite and PostgreSQL: a time column as epoch seconds, and rows made in Python
as a table to join with.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, cast

from sqlalchemy import (
    DateTime,
    Float,
    Integer,
    bindparam,
    column,
    func,
    text,
    type_coerce,
)
from sqlalchemy import cast as sql_cast
from sqlalchemy.engine import Connection
from sqlalchemy.sql.elements import ColumnElement

from envoylog.db.types import UtcDateTime

IN_LIST = 500  # old SQLite allows 999 parameters in a statement


def epoch_seconds(conn: Connection, value: ColumnElement[Any]) -> ColumnElement[float]:
    """A UtcDateTime column as epoch seconds, for arithmetic: SQLite stores exactly that."""
    if conn.dialect.name == "sqlite":
        # As REAL: SQLite divides integers by integers as integers.
        return sql_cast(type_coerce(value, Integer), Float)
    # date_part gives a double; EXTRACT a numeric, several times slower to compute with.
    return func.date_part("epoch", value, type_=Float)


def rows_param(
    conn: Connection, name: str, numbers: Mapping[str, list[int]], times: Mapping[str, list[datetime]]
) -> Any:
    """A table of rows (integer and time columns) made in Python, to join with."""
    # Not SQLAlchemy's values(): it compiles the list anew at every call, row by row (20 ms for a year of
    # days). PostgreSQL unnests one array parameter per column. SQLite gets a VALUES list of integers written
    # into the SQL (its times are epoch seconds): bound through JSON instead, the values would be extracted
    # again for every row the query compares them with.
    names = [*numbers, *times]
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import ARRAY  # not imported by a report on SQLite

        stamps = ARRAY(cast(Any, DateTime(timezone=True)))
        arrays = [bindparam(f"{name}_{n}", list(v), type_=ARRAY(Integer)) for n, v in numbers.items()]
        arrays += [bindparam(f"{name}_{n}", list(v), type_=stamps) for n, v in times.items()]
        typed = [column(n, Integer) for n in numbers] + [column(n, UtcDateTime) for n in times]
        return func.unnest(*arrays).table_valued(*typed).render_derived(name=name)
    epochs = [[int(t.timestamp()) for t in v] for v in times.values()]
    rows = ", ".join(
        "(" + ", ".join(str(int(v)) for v in row) + ")"
        for row in zip(*numbers.values(), *epochs, strict=True)
    )
    labels = ", ".join(f"column{k + 1} AS {n}" for k, n in enumerate(names))
    # Only integers made here are written into the SQL.
    query = text(f"SELECT {labels} FROM (VALUES {rows})")  # noqa: S608
    return query.columns(*[column(n, Integer) for n in names]).cte(name)
