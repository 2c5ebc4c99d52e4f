"""`envoylog export`: the stored readings of a period as CSV or Parquet, streamed a chunk at a time.

Each series is read in the order of its table's key (series, time), a chunk of rows at a time, so a year
of readings never has to fit in memory and the database never has to sort it.
"""

from __future__ import annotations

import csv
import os
import tempfile
from collections.abc import Generator, Iterator
from contextlib import ExitStack, closing, contextmanager
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any, TextIO

from sqlalchemy import Engine, select
from sqlalchemy.engine import Connection
from sqlalchemy.exc import SQLAlchemyError

from envoylog.db.engine import describe_db_error
from envoylog.db.gateways import lookup_gateways
from envoylog.db.models import BatterySample, InverterSample, MeterSample, Series
from envoylog.errors import ConfigError, DatabaseError
from envoylog.render.text import spreadsheet_cell
from envoylog.times import iso_z, local_day_bounds, parse_day, zone_of

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
    chunk_rows: int = CHUNK_ROWS,
) -> int:
    """Write the readings of the local days `first`..`last` to `output` (or CSV to `stdout`); count them.

    Nothing is left behind when it fails: a file is written beside `output` and renamed into place at the
    end, so an existing file there stays as it was, and the database itself is never a possible output.
    """
    check_export(table, format, output)
    spec = TABLES[table]
    start, end = local_day_bounds(first, last, zone_of(timezone))
    if output is None and stdout is None:
        raise ConfigError("CSV export needs --output FILE or a standard output")
    try:
        with ExitStack() as stack:
            conn = stack.enter_context(engine.connect())
            series = _series(conn, spec, gateway)  # an unknown gateway fails before any file is made
            # closing(): a write that fails ends the reading too, its server-side cursor included.
            chunks = stack.enter_context(closing(_chunks(conn, spec, series, start, end, chunk_rows)))
            if output is None:
                assert stdout is not None
                return _write_csv(spec, chunks, stdout)
            with atomic_output(output, database=engine) as path:
                if format == "parquet":
                    return _write_parquet(spec, chunks, path)
                with path.open("w", newline="", encoding="utf-8") as stream:
                    return _write_csv(spec, chunks, stream)
    except SQLAlchemyError as exc:
        raise DatabaseError(f"cannot read the readings: {describe_db_error(exc)}") from None


@contextmanager
def atomic_output(output: Path, *, database: Engine) -> Iterator[Path]:
    """A path to write instead of `output`, renamed onto it when the block succeeds and removed otherwise.

    A device or a pipe (`/dev/stdout`, `/dev/full`) cannot be replaced: it is written directly.
    """
    _check_output(output, database)
    if output.exists() and not output.is_file():
        with _output_errors(output):
            yield output
        return
    with _output_errors(output):
        handle, name = tempfile.mkstemp(prefix=f".{output.name}.", suffix=".part", dir=output.parent)
        os.close(handle)
    temporary = Path(name)
    try:
        with _output_errors(output):
            yield temporary
            os.replace(temporary, output)
    finally:
        temporary.unlink(missing_ok=True)


def _check_output(output: Path, database: Engine) -> None:
    if output.is_dir():
        raise ConfigError(f"--output {output} is a folder: give a file name")
    if not output.parent.is_dir():
        raise ConfigError(f"--output {output}: the folder {output.parent} does not exist")
    if database.dialect.name == "sqlite" and database.url.database:
        stored = Path(database.url.database).resolve()
        companions = [
            stored,
            *(stored.with_name(stored.name + suffix) for suffix in ("-wal", "-shm", ".lock")),
        ]
        if output.resolve() in companions:
            raise ConfigError(
                f"refusing to overwrite the database {stored} with an export: give another file"
            )


@contextmanager
def _output_errors(output: Path) -> Iterator[None]:
    """Trouble writing the output is one line: a full disk, a read-only folder, a vanished file."""
    try:
        yield
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise ConfigError(f"cannot write the export to {output}: {reason.lower()}") from None


def _chunks(
    conn: Connection,
    spec: _Table,
    series: list[tuple[int, tuple[Any, ...]]],
    start: datetime,
    end: datetime,
    chunk_rows: int,
) -> Generator[list[tuple[Any, ...]]]:
    """The rows of every chosen series, a chunk at a time, series by series in time order."""
    model = spec.model
    time_column = getattr(model, spec.time_column)
    values = [getattr(model, name) for name in spec.value_columns]
    # yield_per streams the rows (a server-side cursor on PostgreSQL) instead of fetching them all.
    streaming = conn.execution_options(yield_per=chunk_rows)
    for sid, prefix in series:
        query = (
            select(time_column, *values)
            .where(model.series_id == sid, time_column >= start, time_column < end)
            .order_by(time_column)
        )
        with streaming.execute(query) as result:
            for partition in result.partitions():
                yield [(*prefix, *row) for row in partition]


def _series(conn: Any, spec: _Table, gateway: str | None) -> list[tuple[int, tuple[Any, ...]]]:
    """The series to export, each with the values of its series columns."""
    gateways = {row.id: row.serial for row in lookup_gateways(conn, gateway)}
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
        writer.writerows(
            (*map(spreadsheet_cell, row[:at]), iso_z(row[at]), *map(spreadsheet_cell, row[at + 1 :]))
            for row in chunk
        )
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
