"""The schema: made by the migrations only, matching the models, upgraded once even by racing processes."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from pandas.testing import assert_frame_equal
from sqlalchemy import Engine, inspect, text
from sqlalchemy.engine import make_url
from typer.testing import CliRunner

from envoylog.cli import app
from envoylog.db.engine import create_db_engine
from envoylog.db.migrate import (
    HEAD_REVISION,
    alembic_config,
    current_revision,
    head_revision,
    open_database,
    upgrade,
)
from envoylog.db.models import with_partial_indexes
from envoylog.demo.filler import fill_history
from envoylog.errors import DatabaseError
from envoylog.reports.days import daily_report
from envoylog.reports.export import TABLES, _chunks, _series


def test_models_and_migrations_agree(db_url: str) -> None:
    engine = open_database(db_url, create=True)
    metadata = with_partial_indexes()
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        diff = compare_metadata(context, metadata)
        # Alembic leaves partial indexes out of its comparison: their names and columns are compared here.
        made = {
            (table, index["name"], tuple(index["column_names"]))
            for table in metadata.tables
            for index in inspect(conn).get_indexes(table)
            if not index.get("duplicates_constraint")  # PostgreSQL's index behind a unique constraint
        }
    engine.dispose()
    assert diff == []
    declared = {
        (table.name, index.name, tuple(column.name for column in index.columns))
        for table in metadata.tables.values()
        for index in table.indexes
    }
    assert made == declared


def test_first_use_upgrades_an_empty_database_and_second_use_changes_nothing(db_url: str) -> None:
    engine = create_db_engine(db_url, create=True)
    assert current_revision(engine) is None
    assert upgrade(engine) is True
    assert current_revision(engine) == head_revision()
    assert "gateways" in inspect(engine).get_table_names()
    assert upgrade(engine) is False
    engine.dispose()


def test_racing_upgrades_apply_the_migrations_once(db_url: str) -> None:
    engines = [create_db_engine(db_url, create=True) for _ in range(4)]
    with ThreadPoolExecutor(max_workers=4) as pool:
        applied = list(pool.map(upgrade, engines))
    assert applied.count(True) == 1
    assert current_revision(engines[0]) == head_revision()
    for engine in engines:
        engine.dispose()


def test_new_sqlite_file_is_private_to_its_owner(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "dir" / "envoylog.db"
    open_database(f"sqlite:///{path}", create=True).dispose()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_db_commands(db_url: str, isolated_env: Path) -> None:
    runner = CliRunner()
    before = runner.invoke(app, ["--db", db_url, "db", "current"])
    if db_url.startswith("sqlite"):  # a file that is not there is not made by a command that only reads
        assert before.exit_code == 2 and before.stderr.startswith("envoylog: error: no database at ")
        assert not Path(make_url(db_url).database or "").exists()
    else:
        assert before.exit_code == 0, before.output
        assert "current: none (empty database)" in before.stdout
    upgraded = runner.invoke(app, ["--db", db_url, "-v", "db", "upgrade"])
    assert upgraded.exit_code == 0, upgraded.output
    after = runner.invoke(app, ["--db", db_url, "db", "current"])
    assert f"current: {head_revision()}" in after.stdout


def test_unusable_database_is_exit_5_with_one_line(tmp_path: Path, isolated_env: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    result = CliRunner().invoke(app, ["--db", f"sqlite:///{blocker}/sub/envoylog.db", "db", "upgrade"])
    assert result.exit_code == 5
    assert result.stderr.startswith("envoylog: error: cannot create the SQLite database")
    assert result.stderr.count("\n") == 1


def test_unreachable_postgresql_is_exit_5(isolated_env: Path) -> None:
    # Port 9 (discard) on loopback has no PostgreSQL: the connection is refused at once.
    result = CliRunner().invoke(
        app, ["--db", "postgresql+psycopg://nobody@127.0.0.1:9/none", "db", "current"]
    )
    assert result.exit_code == 5
    assert result.stderr.startswith("envoylog: error: cannot open the PostgreSQL database none on 127.0.0.1")
    assert "Traceback" not in result.output


def test_a_garbage_sqlite_file_is_exit_5_and_left_untouched(tmp_path: Path, isolated_env: Path) -> None:
    path = tmp_path / "notes.db"
    path.write_bytes(b"my precious notes, not a database" * 100)
    before = path.read_bytes()
    result = CliRunner().invoke(app, ["--db", f"sqlite:///{path}", "db", "upgrade"])
    assert result.exit_code == 5
    assert "file is not a database" in result.stderr
    assert path.read_bytes() == before


def test_module_entry_point_runs_outside_the_source_tree(tmp_path: Path) -> None:
    env = {**os.environ, "ENVOYLOG_DB": f"sqlite:///{tmp_path / 'e.db'}"}
    done = subprocess.run(
        [sys.executable, "-m", "envoylog", "db", "upgrade"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "e.db").exists()


def test_the_head_the_code_knows_is_the_scripts_head() -> None:
    # open_database skips Alembic when the database is at HEAD_REVISION: a new migration must move it.
    assert head_revision() == HEAD_REVISION


def test_a_database_at_head_is_opened_without_loading_alembic(db_url: str) -> None:
    open_database(db_url, create=True).dispose()
    # A fresh interpreter, as cron starts one: open the database at head and report what got imported.
    code = (
        "import sys\n"
        "from envoylog.db.migrate import open_database, current_revision\n"
        f"engine = open_database({db_url!r}, create=True)\n"
        "print(current_revision(engine), any(name.split('.')[0] == 'alembic' for name in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.split() == [HEAD_REVISION, "False"]


def test_an_older_database_is_still_upgraded_and_a_newer_one_refused(db_url: str) -> None:
    open_database(db_url, create=True).dispose()
    engine = create_db_engine(db_url, create=False)
    try:
        with engine.begin() as conn:
            command.downgrade(alembic_config(conn), "0008")
        assert current_revision(engine) == "0008"
        open_database(db_url, create=False).dispose()  # not at head: Alembic upgrades it
        assert current_revision(engine) == HEAD_REVISION
        with engine.begin() as conn:
            conn.exec_driver_sql("UPDATE alembic_version SET version_num = '9999'")
        with pytest.raises(DatabaseError, match="newer than this envoylog's"):
            open_database(db_url, create=False)
    finally:
        engine.dispose()


def _exported(engine: Engine) -> dict[str, list[tuple[Any, ...]]]:
    """Every stored reading, as `envoylog export` reads them, per table."""
    start, end = datetime(2025, 6, 1, tzinfo=UTC), datetime(2025, 7, 1, tzinfo=UTC)
    with engine.connect() as conn:
        return {
            name: [
                row
                for chunk in _chunks(conn, spec, _series(conn, spec, None), start, end, 10_000)
                for row in chunk
            ]
            for name, spec in TABLES.items()
        }


def _as_sql_reads(engine: Engine) -> dict[str, list[tuple[Any, ...]]]:
    """Every stored reading as SQL reads it: the readings' tables before 0010, their views since."""
    found = {}
    with engine.connect() as conn:
        for name, at in (
            ("meter_readings", "read_at"),
            ("inverter_readings", "reported_at"),
            ("battery_readings", "read_at"),
        ):
            query = f"SELECT * FROM {name} ORDER BY series_id, {at}"  # noqa: S608 - names from this list
            found[name] = [tuple(row) for row in conn.execute(text(query))]
    return found


def test_readings_upgrade_in_place_with_every_value_kept(db_url: str) -> None:
    """A database of the float tables (0009) upgrades to integers (0010) and to a row per meter channel
    (0011): the same rows, the same values at the stored precision (thousandths; only a float's noise beyond
    them is gone), the same report; and `export`, which reads the channel rows itself, reads what SQL does."""
    fill_history(db_url, date(2025, 6, 20), date(2025, 6, 21), profile="metered")
    engine = create_db_engine(db_url, create=False)
    try:
        # The report as this version gives it (the old versions' read the same columns of meter_readings).
        report_before = daily_report(
            engine, date(2025, 6, 20), date(2025, 6, 21), timezone="Europe/Amsterdam"
        )
        with engine.begin() as conn:
            command.downgrade(alembic_config(conn), "0009")
            assert "meter_readings" in inspect(conn).get_table_names()
            # A float as the collector computed it (delivered minus received): noise in the 9th decimal.
            conn.execute(
                text("UPDATE meter_readings SET wh_lifetime = wh_lifetime + 3e-9 WHERE source = 'meters'")
            )
        before = _as_sql_reads(engine)
        upgrade(engine)
        assert current_revision(engine) == HEAD_REVISION
        assert "meter_readings" in inspect(engine).get_view_names()
        after = _as_sql_reads(engine)
        exported = _exported(engine)
        report_after = daily_report(engine, date(2025, 6, 20), date(2025, 6, 21), timezone="Europe/Amsterdam")
    finally:
        engine.dispose()

    def at_stored_precision(row: tuple[Any, ...]) -> tuple[Any, ...]:
        return tuple(round(v, 3) if isinstance(v, float) else v for v in row)

    assert {name: len(rows) for name, rows in after.items()} == {
        name: len(rows) for name, rows in before.items()
    }
    assert len(after["meter_readings"]) > 5_000 and len(after["inverter_readings"]) > 1_000
    for name, rows in before.items():
        assert after[name] == [at_stored_precision(row) for row in rows], name
    assert_frame_equal(report_after, report_before)
    # The export's meter rows: (gateway, kind, phase, time, values...); the view's: (series, time, values...).
    assert sorted(row[4:] for row in exported["meters"]) == sorted(row[2:] for row in after["meter_readings"])
    assert len(exported["meters"]) == len(after["meter_readings"])
