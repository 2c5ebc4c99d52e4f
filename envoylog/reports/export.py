"""The stored readings of a period as rows, for `envoylog export`: streamed a chunk at a time.

Each series is read in the order of its table's key (series, time), a chunk of rows at a time, so a year
of readings never has to fit in memory and the database never has to sort it.
"""

from __future__ import annotations

from collections.abc import Generator, Iterator
from contextlib import ExitStack, closing, contextmanager
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, Select, Table, select
from sqlalchemy.engine import Connection
from sqlalchemy.exc import SQLAlchemyError

from envoylog.db.engine import describe_db_error
from envoylog.db.gateways import lookup_gateways
from envoylog.db.meters import METER_DATA, decoded_columns, present
from envoylog.db.models import SERIES
from envoylog.db.samples import meter_series
from envoylog.db.views import BATTERY_READINGS, INVERTER_READINGS, METER_READINGS
from envoylog.errors import ConfigError, DatabaseError
from envoylog.times import local_day_bounds, zone_of

CHUNK_ROWS = 50_000


@dataclass(frozen=True)
class ExportTable:
    """What one export table holds: the series it takes, the columns it writes, where they come from."""

    table: Table  # the readings view
    kinds: tuple[str, ...]
    series_columns: tuple[str, ...]  # from the series: "gateway" (its serial), "kind", "phase", "serial"
    time_column: str
    value_columns: tuple[str, ...]  # stored columns, written under the same names
    text_values: tuple[str, ...] = ()

    @property
    def columns(self) -> list[str]:
        """The header."""
        return [*self.series_columns, self.time_column, *self.value_columns]

    @property
    def time_at(self) -> int:
        """The position of the time in a row."""
        return len(self.series_columns)

    def select_rows(self, key: Any, start: datetime, end: datetime) -> Select[Any]:
        """One series' rows in [start, end), in time order (the order of the key)."""
        table = self.table
        time_column = table.c[self.time_column]
        return (
            select(time_column, *(table.c[name] for name in self.value_columns))
            .where(table.c.series_id == key, time_column >= start, time_column < end)
            .order_by(time_column)
        )


class MeterExport(ExportTable):
    """The meters, read from their rows (a channel's phases side by side) one phase's slot at a time: in the
    order of the rows' key, which the view of every phase (a union) would not keep."""

    def select_rows(self, key: Any, start: datetime, end: datetime) -> Select[Any]:
        channel, phase = key
        decoded = {column.name: column for column in decoded_columns(phase)}
        at = METER_DATA.c.read_at
        return (
            select(at, *(decoded[name] for name in self.value_columns))
            .where(METER_DATA.c.series_id == channel, present(phase), at >= start, at < end)
            .order_by(at)
        )


def _values(view: Table) -> tuple[str, ...]:
    """A readings view's value columns, in its order: all but the series and the time."""
    return tuple(column.name for column in view.columns if not column.primary_key)


TABLES = {
    "meters": MeterExport(
        METER_READINGS,
        ("production", "consumption", "net_consumption"),
        ("gateway", "kind", "phase"),
        "read_at",
        _values(METER_READINGS),
        text_values=("source",),
    ),
    "inverters": ExportTable(
        INVERTER_READINGS, ("inverter",), ("gateway", "serial"), "reported_at", _values(INVERTER_READINGS)
    ),
    "batteries": ExportTable(
        BATTERY_READINGS, ("battery",), ("gateway", "serial"), "read_at", _values(BATTERY_READINGS)
    ),
}


def _chunks(
    conn: Connection,
    spec: ExportTable,
    series: list[tuple[int, tuple[Any, ...]]],
    start: datetime,
    end: datetime,
    chunk_rows: int,
) -> Generator[list[tuple[Any, ...]]]:
    """The rows of every chosen series, a chunk at a time, series by series in time order."""
    # yield_per streams the rows (a server-side cursor on PostgreSQL) instead of fetching them all.
    streaming = conn.execution_options(yield_per=chunk_rows)
    for key, prefix in series:
        with streaming.execute(spec.select_rows(key, start, end)) as result:
            for partition in result.partitions():
                yield [(*prefix, *row) for row in partition]


def _series(conn: Any, spec: ExportTable, gateway: str | None) -> list[tuple[Any, tuple[Any, ...]]]:
    """The series to export, each as `select_rows` takes it and with the values of its series columns."""
    gateways = {row.id: row.serial for row in lookup_gateways(conn, gateway)}
    query = (
        select(SERIES.c.id, SERIES.c.gateway_id, SERIES.c.kind, SERIES.c.phase, SERIES.c.device)
        .where(SERIES.c.kind.in_(spec.kinds), SERIES.c.gateway_id.in_(list(gateways)))
        .order_by(SERIES.c.kind, SERIES.c.phase, SERIES.c.device)
    )
    found: list[tuple[Any, tuple[Any, ...]]] = []
    rows = conn.execute(query).all()
    channels = meter_series(
        {sid: (kind, phase, f"{gateway_id}/{device}") for sid, gateway_id, kind, phase, device in rows}
    )
    for sid, gateway_id, kind, phase, device in rows:
        named = {"gateway": gateways[gateway_id], "kind": kind, "phase": phase, "serial": _device(device)}
        key = channels.get(sid) if isinstance(spec, MeterExport) else sid
        if key is not None:
            found.append((key, tuple(named[name] for name in spec.series_columns)))
    # Gateway by gateway, each in the order of its series.
    return sorted(found, key=lambda item: str(item[1][0]))


def _device(device: str) -> str | None:
    """A device's serial; the AC Battery aggregate, stored as "acb", has none."""
    return None if device in ("", "acb") else device


@contextmanager
def export_rows(
    engine: Engine,
    first: date,
    last: date,
    *,
    timezone: str,
    table: str,
    gateway: str | None = None,
    chunk_rows: int = CHUNK_ROWS,
) -> Iterator[Iterator[list[tuple[Any, ...]]]]:
    """The rows of `table` in the local days `first`..`last`, a chunk at a time, while the block runs.

    An unknown gateway fails on entry, before any file is made; trouble reading the database is a
    DatabaseError, also while the rows are being read.
    """
    if table not in TABLES:
        raise ConfigError(f"--table must be one of {', '.join(TABLES)}, not {table!r}")
    spec = TABLES[table]
    start, end = local_day_bounds(first, last, zone_of(timezone))
    try:
        with ExitStack() as stack:
            conn = stack.enter_context(engine.connect())
            series = _series(conn, spec, gateway)
            # closing(): a write that fails ends the reading too, its server-side cursor included.
            yield stack.enter_context(closing(_chunks(conn, spec, series, start, end, chunk_rows)))
    except SQLAlchemyError as exc:
        raise DatabaseError(f"cannot read the readings: {describe_db_error(exc)}") from None


def database_files(engine: Engine) -> list[Path]:
    """The files of a SQLite database (with its journal and lock): never an export's output."""
    if engine.dialect.name != "sqlite" or not engine.url.database:
        return []
    stored = Path(engine.url.database).resolve()
    return [stored, *(stored.with_name(stored.name + suffix) for suffix in ("-wal", "-shm", ".lock"))]
