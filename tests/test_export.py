"""`envoylog export`: a period's readings as CSV or Parquet, on a database filled with simulated history.

Every test runs on SQLite and, when ENVOYLOG_TEST_POSTGRES_URL is set, on PostgreSQL.
"""

from __future__ import annotations

import csv
import gc
import io
import sys
import warnings
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from typer.testing import CliRunner, Result

from envoylog.cli import app
from envoylog.db.migrate import open_database
from envoylog.demo.filler import fill_history
from envoylog.render import export
from envoylog.reports.export import TABLES, _chunks, _series

runner = CliRunner()
DAY = "2025-06-21"
# The local day in Amsterdam (UTC+2 in summer) as UTC instants.
DAY_START, DAY_END = datetime(2025, 6, 20, 22, tzinfo=UTC), datetime(2025, 6, 21, 22, tzinfo=UTC)
METER_COLUMNS = [
    "gateway",
    "kind",
    "phase",
    "read_at",
    "source",
    "watts",
    "wh_lifetime",
    "wh_imported_lifetime",
    "wh_exported_lifetime",
    "volts",
    "amps",
    "hz",
    "power_factor",
]
INVERTER_COLUMNS = [
    "gateway",
    "serial",
    "reported_at",
    "watts",
    "max_watts",
    "joules_lifetime",
    "ac_volts",
    "ac_amps",
    "dc_volts",
    "dc_amps",
    "hz",
    "temperature_c",
]


@pytest.fixture
def filled(db_url: str, isolated_env: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """Three days of the metered simulator around DAY, reports in Amsterdam time."""
    fill_history(db_url, date(2025, 6, 20), date(2025, 6, 22), profile="metered")
    monkeypatch.setenv("ENVOYLOG_TIMEZONE", "Europe/Amsterdam")
    return db_url


def envoylog(db_url: str, *args: str) -> Result:
    return runner.invoke(app, ["--db", db_url, "export", *args])


def stored(db_url: str, table: str, time_column: str) -> int:
    """Rows of a readings table within DAY."""
    engine = create_engine(db_url)
    sqlite = db_url.startswith("sqlite")
    start = int(DAY_START.timestamp()) if sqlite else DAY_START
    end = int(DAY_END.timestamp()) if sqlite else DAY_END
    sql = f"SELECT COUNT(*) FROM {table} WHERE {time_column} >= :start AND {time_column} < :end"  # noqa: S608
    try:
        with engine.connect() as conn:
            return int(conn.execute(text(sql), {"start": start, "end": end}).scalar_one())
    finally:
        engine.dispose()


def parse(csv_text: str) -> tuple[list[str], list[dict[str, str]]]:
    reader = csv.DictReader(io.StringIO(csv_text))
    rows = list(reader)
    return list(reader.fieldnames or []), rows


def test_csv_to_stdout_holds_the_local_days_meter_readings(filled: str) -> None:
    result = envoylog(filled, "--from", DAY)
    assert result.exit_code == 0, result.output
    header, rows = parse(result.stdout)
    assert header == METER_COLUMNS
    assert len(rows) == stored(filled, "meter_readings", "read_at")
    assert {(r["kind"], r["phase"]) for r in rows} == {
        (kind, str(phase)) for kind in ("production", "consumption", "net_consumption") for phase in range(4)
    }
    production = [r for r in rows if (r["kind"], r["phase"]) == ("production", "0")]
    assert production[0]["read_at"] == "2025-06-20T22:00:00Z"  # local midnight, in UTC
    assert production[-1]["read_at"] == "2025-06-21T21:59:00Z"
    assert [r["read_at"] for r in production] == sorted(r["read_at"] for r in production)
    net = next(r for r in rows if r["kind"] == "net_consumption")
    assert net["source"] == "meters" and float(net["wh_lifetime"]) == pytest.approx(
        float(net["wh_imported_lifetime"]) - float(net["wh_exported_lifetime"])
    )
    assert production[0]["hz"] == ""  # NULL: the eim entry has no frequency


def test_inverters_to_a_file(filled: str, tmp_path: Path) -> None:
    output = tmp_path / "inverters.csv"
    result = envoylog(filled, "--from", DAY, "--to", DAY, "--table", "inverters", "--output", str(output))
    assert result.exit_code == 0, result.output
    count = stored(filled, "inverter_readings", "reported_at")
    assert result.stdout == f"exported {count:,} inverters readings of {DAY} to {DAY} to {output}\n"
    header, rows = parse(output.read_text())
    assert header == INVERTER_COLUMNS
    assert len(rows) == count and len({r["serial"] for r in rows}) == 30
    assert all(DAY_START.isoformat()[:19] <= r["reported_at"][:19] < DAY_END.isoformat()[:19] for r in rows)


def test_batteries(db_url: str, isolated_env: Path) -> None:
    fill_history(db_url, date(2025, 6, 21), date(2025, 6, 21), profile="battery")
    result = runner.invoke(app, ["--db", db_url, "export", "--from", DAY, "--table", "batteries"])
    assert result.exit_code == 0, result.output
    header, rows = parse(result.stdout)
    assert header == ["gateway", "serial", "read_at", "soc_percent", "watts", "wh_available"]
    assert len({r["serial"] for r in rows}) == 2
    assert all(0 <= float(r["soc_percent"]) <= 100 for r in rows)


def test_parquet_round_trip(filled: str, tmp_path: Path) -> None:
    pq = pytest.importorskip("pyarrow.parquet")
    output = tmp_path / "meters.parquet"
    result = envoylog(filled, "--from", DAY, "--format", "parquet", "-o", str(output))
    assert result.exit_code == 0, result.output
    table = pq.read_table(output)
    assert table.column_names == METER_COLUMNS
    read_at = table.schema.field("read_at").type
    assert read_at.tz == "UTC" and read_at.unit in ("s", "ms")  # Parquet keeps seconds as milliseconds
    _, rows = parse(envoylog(filled, "--from", DAY).stdout)
    assert table.num_rows == len(rows)
    first = table.slice(0, 1).to_pylist()[0]
    assert first["read_at"] == datetime.fromisoformat(rows[0]["read_at"])
    assert (first["kind"], first["phase"], first["watts"]) == (
        rows[0]["kind"],
        int(rows[0]["phase"]),
        float(rows[0]["watts"]),
    )
    assert first["hz"] is None


def test_parquet_without_pyarrow_says_how_to_get_it(
    filled: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The outermost edge: an installation without the optional dependency.
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    output = tmp_path / "meters.parquet"
    result = envoylog(filled, "--from", DAY, "--format", "parquet", "-o", str(output))
    assert result.exit_code == 2
    assert result.stderr == f"envoylog: error: {export.PYARROW_MISSING}\n"
    assert "pip install pyarrow" in result.stderr
    assert not output.exists()


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (
            ["--from", "2025-06-31"],
            "bad --from '2025-06-31': expected a date like 2026-06-21, today or yesterday",
        ),
        (["--from", DAY, "--to", "2025-06-20"], "--to 2025-06-20 is before --from 2025-06-21"),
        (["--from", DAY, "--format", "xlsx"], "Invalid value for '--format': 'xlsx' is not one of 'csv'"),
        (["--from", DAY, "--table", "runs"], "Invalid value for '--table': 'runs' is not one of 'meters'"),
        (
            ["--from", DAY, "--gateway", "barn"],
            "no gateway 'barn' in the database: give its serial or its configured name",
        ),
    ],
)
def test_bad_requests_are_exit_2_with_one_line(filled: str, options: list[str], message: str) -> None:
    result = envoylog(filled, *options)
    assert result.exit_code == 2
    assert result.stderr.startswith(f"envoylog: error: {message}")
    assert len(result.stderr.splitlines()) == 1


def test_parquet_needs_an_output_file(filled: str) -> None:
    pytest.importorskip("pyarrow")
    result = envoylog(filled, "--from", DAY, "--format", "parquet")
    assert result.exit_code == 2
    assert "give --output FILE.parquet" in result.stderr


def test_rows_come_in_chunks_and_the_output_is_the_same(filled: str) -> None:
    engine = open_database(filled, create=True)
    try:
        whole = io.StringIO()
        count = export.export_readings(
            engine, date(2025, 6, 21), date(2025, 6, 21), timezone="Europe/Amsterdam", stdout=whole
        )
        chunked = io.StringIO()
        meters = TABLES["meters"]
        with engine.connect() as conn:
            series = _series(conn, meters, "122238082763")
            batches = list(_chunks(conn, meters, series, DAY_START, DAY_END, 97))
        export.export_readings(
            engine,
            date(2025, 6, 21),
            date(2025, 6, 21),
            timezone="Europe/Amsterdam",
            stdout=chunked,
            chunk_rows=97,
        )
    finally:
        engine.dispose()
    assert max(len(batch) for batch in batches) == 97 and sum(len(b) for b in batches) == count
    assert chunked.getvalue() == whole.getvalue()


# --- nothing broken left behind (an export that fails writes nothing) ------------------------------------


def leftovers(folder: Path) -> list[str]:
    return sorted(path.name for path in folder.iterdir() if ".part" in path.name)


def test_a_failing_export_leaves_an_existing_file_as_it_was_and_makes_none(
    filled: str, tmp_path: Path
) -> None:
    kept = tmp_path / "kept.csv"
    kept.write_text("yesterday's export\n")
    new = tmp_path / "new.csv"
    for output in (kept, new):
        result = envoylog(filled, "--from", DAY, "--gateway", "barn", "-o", str(output))
        assert result.exit_code == 2 and "no gateway 'barn'" in result.stderr
    assert kept.read_text() == "yesterday's export\n"
    assert not new.exists() and leftovers(tmp_path) == []


def test_an_export_onto_the_database_is_refused_and_the_database_kept(filled: str) -> None:
    if not filled.startswith("sqlite"):
        pytest.skip("only a SQLite database is a file an export could overwrite")
    database = Path(filled.removeprefix("sqlite:///"))
    for target in (
        database,
        database.with_name(database.name + "-wal"),
        database.with_name(database.name + ".lock"),
    ):
        result = envoylog(filled, "--from", DAY, "-o", str(target))
        assert result.exit_code == 2
        assert result.stderr == (
            f"envoylog: error: refusing to overwrite the database {database.resolve()} with an export: "
            "give another file\n"
        )
    assert envoylog(filled, "--from", DAY).exit_code == 0  # the history is all there still
    assert stored(filled, "meter_readings", "read_at") > 1000


@pytest.mark.parametrize("where", ["folder", "missing folder", "full disk"])
def test_output_trouble_is_one_line_and_exit_2(filled: str, tmp_path: Path, where: str) -> None:
    if where == "full disk" and not Path("/dev/full").exists():
        pytest.skip("this system has no /dev/full to play a full disk")
    output = {
        "folder": tmp_path,
        "missing folder": tmp_path / "nowhere" / "x.csv",
        "full disk": Path("/dev/full"),
    }
    message = {
        "folder": f"--output {tmp_path} is a folder: give a file name",
        "missing folder": f"--output {output['missing folder']}: the folder {output['folder'] / 'nowhere'} "
        "does not exist",
        "full disk": "cannot write the export to /dev/full: no space left on device",
    }[where]
    result = envoylog(filled, "--from", DAY, "-o", str(output[where]))
    assert (result.exit_code, result.stderr) == (2, f"envoylog: error: {message}\n")
    assert leftovers(tmp_path) == []


def test_text_from_the_gateway_cannot_become_a_formula_or_a_terminal_command(
    filled: str, tmp_path: Path
) -> None:
    evil = {
        '=HYPERLINK("http://x","y")': '\'=HYPERLINK("http://x","y")',
        "\x1b]0;evil\x07\x1b[2J": "?]0;evil??[2J",
    }
    engine = create_engine(filled)
    with engine.begin() as conn:
        gateway_id = conn.execute(text("SELECT id FROM gateways")).scalar_one()
        for serial in evil:
            series = conn.execute(
                text(
                    "INSERT INTO series (gateway_id, kind, phase, device) "
                    "VALUES (:g, 'inverter', 0, :d) RETURNING id"
                ),
                {"g": gateway_id, "d": serial},
            ).scalar_one()
            at = (
                int(DAY_START.timestamp()) + 3600
                if filled.startswith("sqlite")
                else datetime(2025, 6, 20, 23, tzinfo=UTC)
            )
            conn.execute(
                # -5 W, in the stored milliwatts
                text("INSERT INTO inverter_data (series_id, reported_at, watts) VALUES (:s, :t, -5000)"),
                {"s": series, "t": at},
            )
    engine.dispose()
    result = envoylog(filled, "--from", DAY, "--table", "inverters")
    assert result.exit_code == 0
    assert "\x1b" not in result.stdout and "\x07" not in result.stdout
    rows = list(csv.reader(io.StringIO(result.stdout)))
    serials = {row[1] for row in rows[1:]}
    assert set(evil.values()) <= serials
    assert all(row[3] == "-5.0" for row in rows[1:] if row[1] in evil.values())  # numbers stay numbers


@pytest.mark.postgres
def test_a_connection_lost_during_the_export_is_exit_5_in_one_line(filled: str, tmp_path: Path) -> None:
    if not filled.startswith("postgresql"):
        pytest.skip("a server that drops the connection is a PostgreSQL matter")
    from sqlalchemy.engine import make_url

    url = make_url(filled).update_query_dict({"application_name": "export-under-test"})
    engine = create_engine(url)
    admin = create_engine(filled)

    class Terminating(io.StringIO):
        """Output that, once the export has begun, has the server end the export's connection."""

        def write(self, text_: str) -> int:
            if self.tell() == 0:
                with admin.begin() as conn:
                    conn.execute(
                        text(
                            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                            "WHERE application_name = :n"
                        ),
                        {"n": "export-under-test"},
                    )
            return super().write(text_)

    from envoylog.errors import DatabaseError

    try:
        with pytest.raises(DatabaseError, match="cannot read the readings"):
            export.export_readings(
                engine, date(2025, 6, 21), date(2025, 6, 21), timezone="Europe/Amsterdam",
                stdout=Terminating(), chunk_rows=50,
            )  # fmt: skip
        with warnings.catch_warnings():
            # The server-side cursor of the dropped connection cannot be closed; psycopg says so when it goes.
            warnings.simplefilter("ignore", ResourceWarning)
            gc.collect()
    finally:
        engine.dispose()
        admin.dispose()
