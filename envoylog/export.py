"""`envoylog export`: the stored readings of a period as CSV or Parquet, streamed a chunk at a time.

Each series is read in the order of its table's key (series, time), a chunk of rows at a time, so a year
of readings never has to fit in memory and the database never has to sort it.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any, TextIO

from sqlalchemy import Engine, select

from envoylog.db import repository
from envoylog.db.models import BatterySample, InverterSample, MeterSample, Series
from envoylog.errors import ConfigError
from envoylog.timeutil import iso_z, local_day_bounds, parse_day, zone_of

CHUNK_ROWS = 50_000
PYARROW_MISSING = "Parquet export needs pyarrow: pip install pyarrow (or pip install 'envoylog[parquet]')"


@dataclass(frozen=True)
class _Table:
    """What one export table holds: the series it takes, the columns it writes, where they come from."""

    model: Any
    kinds: tuple[str, ...]
    series_columns: tuple[str, ...]  # from the series: "gateway" (its serial), "kind", "phase", "serial"
    time_column: str
    value_columns: tuple[str, ...]  # stored columns, written under the same names
    text_values: tuple[str, ...] = ()

    @property
    def columns(self) -> list[str]:
        """The header."""
        return [*self.series_columns, self.time_column, *self.value_columns]


TABLES = {
    "meters": _Table(
        MeterSample,
        ("production", "consumption", "net_consumption"),
        ("gateway", "kind", "phase"),
        "read_at",
        (
            "source",
            "watts",
            "wh_lifetime",
            "wh_imported_lifetime",
            "wh_exported_lifetime",
            "volts",
            "amps",
            "hz",
            "power_factor",
        ),
        text_values=("source",),
    ),
    "inverters": _Table(
        InverterSample,
        ("inverter",),
        ("gateway", "serial"),
        "reported_at",
        (
            "watts",
            "max_watts",
            "joules_lifetime",
            "ac_volts",
            "ac_amps",
            "dc_volts",
            "dc_amps",
            "hz",
            "temperature_c",
        ),
    ),
    "batteries": _Table(
        BatterySample,
        ("battery",),
        ("gateway", "serial"),
        "read_at",
        ("soc_percent", "watts", "wh_available"),
    ),
}
FORMATS = ("csv", "parquet")


def parse_period(start: str, end: str | None, today: date) -> tuple[date, date]:
    """The first and last local day of `--from` and `--to` (which defaults to `--from`)."""
    first = parse_day(start, "--from", today)
    last = parse_day(end, "--to", today) if end is not None else first
    if last < first:
        raise ConfigError(f"--to {last} is before --from {first}")
    return first, last


def check_export(table: str, format: str, output: Path | None) -> None:
    """Refuse an impossible export before anything is opened or written."""
    if table not in TABLES:
        raise ConfigError(f"--table must be one of {', '.join(TABLES)}, not {table!r}")
    if format not in FORMATS:
        raise ConfigError(f"--format must be csv or parquet, not {format!r}")
    if format == "parquet":
        _pyarrow()
        if output is None:
            raise ConfigError("Parquet is written to a file: give --output FILE.parquet")


def export_readings(
    engine: Engine,
    first: date,
    last: date,
    *,
    timezone: str,
    table: str = "meters",
    format: str = "csv",
    output: Path | None = None,
    stdout: TextIO | None = None,
    gateway: str | None = None,
) -> int:
    """Write the readings of the local days `first`..`last` to `output` (or CSV to `stdout`); count them."""
    check_export(table, format, output)
    spec = TABLES[table]
    start, end = local_day_bounds(first, last, zone_of(timezone))
    chunks = _chunks(engine, spec, start, end, gateway)
    if format == "parquet":
        assert output is not None
        return _write_parquet(spec, chunks, output)
    with ExitStack() as stack:
        if output is not None:
            stream: TextIO = stack.enter_context(output.open("w", newline="", encoding="utf-8"))
        elif stdout is not None:
            stream = stdout
        else:
            raise ConfigError("CSV export needs --output FILE or a standard output")
        return _write_csv(spec, chunks, stream)


def _chunks(
    engine: Engine, spec: _Table, start: datetime, end: datetime, gateway: str | None
) -> Iterator[list[tuple[Any, ...]]]:
    """The rows of every chosen series, a chunk at a time, series by series in time order."""
    model = spec.model
    time_column = getattr(model, spec.time_column)
    values = [getattr(model, name) for name in spec.value_columns]
    with engine.connect() as conn:
        series = _series(conn, spec, gateway)
        # yield_per streams the rows (a server-side cursor on PostgreSQL) instead of fetching them all.
        streaming = conn.execution_options(yield_per=CHUNK_ROWS)
        for sid, prefix in series:
            query = (
                select(time_column, *values)
                .where(model.series_id == sid, time_column >= start, time_column < end)
                .order_by(time_column)
            )
            for partition in streaming.execute(query).partitions():
                yield [(*prefix, *row) for row in partition]


def _series(conn: Any, spec: _Table, gateway: str | None) -> list[tuple[int, tuple[Any, ...]]]:
    """The series to export, each with the values of its series columns."""
    gateways = {row.id: row.serial for row in repository.lookup_gateways(conn, gateway)}
    query = (
        select(Series.id, Series.gateway_id, Series.kind, Series.phase, Series.device)
        .where(Series.kind.in_(spec.kinds), Series.gateway_id.in_(list(gateways)))
        .order_by(Series.kind, Series.phase, Series.device)
    )
    found = []
    for sid, gateway_id, kind, phase, device in conn.execute(query):
        named = {"gateway": gateways[gateway_id], "kind": kind, "phase": phase, "serial": _device(device)}
        found.append((sid, tuple(named[name] for name in spec.series_columns)))
    # Gateway by gateway, each in the order of its series.
    return sorted(found, key=lambda item: str(item[1][0]))


def _device(device: str) -> str | None:
    """A device's serial; the AC Battery aggregate, stored as "acb", has none."""
    return None if device in ("", "acb") else device


def _write_csv(spec: _Table, chunks: Iterator[list[tuple[Any, ...]]], stream: TextIO) -> int:
    writer = csv.writer(stream, lineterminator="\n")
    writer.writerow(spec.columns)
    at = len(spec.series_columns)
    count = 0
    for chunk in chunks:
        writer.writerows((*row[:at], iso_z(row[at]), *row[at + 1 :]) for row in chunk)
        count += len(chunk)
    return count


def _pyarrow() -> tuple[Any, Any]:
    try:
        import pyarrow
        import pyarrow.parquet
    except ImportError:
        raise ConfigError(PYARROW_MISSING) from None
    return pyarrow, pyarrow.parquet


def _write_parquet(spec: _Table, chunks: Iterator[list[tuple[Any, ...]]], output: Path) -> int:
    pa, pq = _pyarrow()
    kinds = {"phase": pa.int16(), spec.time_column: pa.timestamp("s", tz="UTC")}
    kinds |= dict.fromkeys(("gateway", "kind", "serial", *spec.text_values), pa.string())
    schema = pa.schema([(name, kinds.get(name, pa.float64())) for name in spec.columns])
    count = 0
    with pq.ParquetWriter(output, schema) as writer:
        for chunk in chunks:
            columns = zip(*chunk, strict=True)
            arrays = [pa.array(v, type=f.type) for v, f in zip(columns, schema, strict=True)]
            writer.write_batch(pa.record_batch(arrays, schema=schema))
            count += len(chunk)
    return count
