"""Readings to files for `envoylog export`: CSV or Parquet, written beside the target, then renamed."""

from __future__ import annotations

import csv
import os
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from envoylog.errors import ConfigError
from envoylog.render.text import spreadsheet_cell
from envoylog.reports.export import CHUNK_ROWS, TABLES, ExportTable, database_files, export_rows
from envoylog.times import iso_z

if TYPE_CHECKING:
    from sqlalchemy import Engine

PYARROW_MISSING = "Parquet export needs pyarrow: pip install pyarrow (or pip install 'envoylog[parquet]')"


FORMATS = ("csv", "parquet")


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
    if output is None and stdout is None:
        raise ConfigError("CSV export needs --output FILE or a standard output")
    spec = TABLES[table]
    rows = export_rows(
        engine, first, last, timezone=timezone, table=table, gateway=gateway, chunk_rows=chunk_rows
    )
    with rows as chunks:
        if output is None:
            assert stdout is not None
            return _write_csv(spec, chunks, stdout)
        with atomic_output(output, protected=database_files(engine)) as path:
            if format == "parquet":
                return _write_parquet(spec, chunks, path)
            with path.open("w", newline="", encoding="utf-8") as stream:
                return _write_csv(spec, chunks, stream)


@contextmanager
def atomic_output(output: Path, *, protected: Sequence[Path] = ()) -> Iterator[Path]:
    """A path to write instead of `output`, renamed onto it when the block succeeds and removed otherwise.

    A device or a pipe (`/dev/stdout`, `/dev/full`) cannot be replaced: it is written directly.
    """
    _check_output(output, protected)
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


def _check_output(output: Path, protected: Sequence[Path]) -> None:
    if output.is_dir():
        raise ConfigError(f"--output {output} is a folder: give a file name")
    if not output.parent.is_dir():
        raise ConfigError(f"--output {output}: the folder {output.parent} does not exist")
    if protected and output.resolve() in protected:
        raise ConfigError(
            f"refusing to overwrite the database {protected[0]} with an export: give another file"
        )


@contextmanager
def _output_errors(output: Path) -> Iterator[None]:
    """Trouble writing the output is one line: a full disk, a read-only folder, a vanished file."""
    try:
        yield
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise ConfigError(f"cannot write the export to {output}: {reason.lower()}") from None


def _write_csv(spec: ExportTable, chunks: Iterator[list[tuple[Any, ...]]], stream: TextIO) -> int:
    writer = csv.writer(stream, lineterminator="\n")
    writer.writerow(spec.columns)
    at = spec.time_at
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


def _write_parquet(spec: ExportTable, chunks: Iterator[list[tuple[Any, ...]]], output: Path) -> int:
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
