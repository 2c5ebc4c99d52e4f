"""`envoylog demo`: the main job end to end on the simulator, in a database of its own, never ahead."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from conftest import DemoRun
from sqlalchemy import create_engine, text
from typer.testing import CliRunner

from envoylog.cli import app
from envoylog.demo.tour import demo_profile
from envoylog.simulator import Simulator
from envoylog.simulator.profiles import PROFILES

runner = CliRunner()
ZONE = ZoneInfo("Europe/Amsterdam")


def test_the_demo_collects_a_whole_day_and_reports_it(demo_run: DemoRun) -> None:
    assert (demo_run.returncode, demo_run.stderr) == (0, "")
    lines = demo_run.stdout.splitlines()
    assert lines[0] == (
        f"database: {demo_run.database} (the demo's own; delete it with: rm {demo_run.database})"
    )
    yesterday = demo_run.started_at.astimezone(ZONE).date() - timedelta(days=1)
    # The report of the simulated day: real numbers and the whole day covered.
    (row,) = [line for line in lines if line.startswith(f"{yesterday} ")]
    produced, consumed, imported, exported, used, peak = (
        float(cell.replace(",", "")) for cell in row.split()[1:7]
    )
    assert produced > 0 and consumed > 0 and imported > 0 and peak > 0
    assert produced - exported == pytest.approx(used, abs=0.011)
    assert row.split()[8] == "100%"
    assert lines[-2].startswith("next: point envoylog at your gateway: ENVOYLOG_HOST=")
    assert "* * * * * envoylog collect" in lines[-1]


def test_the_demo_keeps_to_its_own_database_and_serial(demo_run: DemoRun) -> None:
    data = demo_run.database.parent
    assert sorted(path.name for path in data.iterdir() if path.suffix == ".db") == ["demo.db"]
    serials = query(demo_run.database, "SELECT serial, name FROM gateways")
    assert serials == [(demo_profile("metered").serial, "demo")]
    assert demo_profile("metered").serial not in {profile.serial for profile in PROFILES.values()}


def test_the_demo_stores_nothing_in_the_future(demo_run: DemoRun) -> None:
    newest = max(
        query(demo_run.database, f"SELECT MAX({column}) FROM {table}")[0][0]  # noqa: S608
        for table, column in (
            ("meter_readings", "read_at"),
            ("inverter_readings", "reported_at"),
            ("runs", "finished_at"),
        )
    )
    assert datetime.fromtimestamp(newest, UTC) <= demo_run.finished_at
    runs = query(demo_run.database, "SELECT COUNT(*), MIN(started_at), MAX(started_at) FROM runs")[0]
    day = demo_run.started_at.astimezone(ZONE).date() - timedelta(days=1)
    start = datetime.combine(day, datetime.min.time(), ZONE)
    assert runs == (289, int(start.timestamp()), int((start + timedelta(days=1)).timestamp()))


def test_the_demo_refuses_a_day_that_has_not_ended(tmp_path: Path, isolated_env: Path) -> None:
    database = tmp_path / "demo.db"
    result = runner.invoke(app, ["demo", "--day", "today", "--db", f"sqlite:///{database}"])
    assert result.exit_code == 2
    assert re.fullmatch(
        r"envoylog: error: --day \S+ has not ended yet in Europe/Amsterdam: the demo collects a day that is "
        r"over \(today is \S+ there\)\n",
        result.stderr,
    )
    assert not database.exists()


def test_an_explicit_start_wins_over_the_simulators_saved_clock(tmp_path: Path) -> None:
    state = tmp_path / "state"
    # Both ahead of the real clock, which is where a simulator without a saved clock starts.
    later = datetime.now(UTC) + timedelta(days=30)
    with Simulator("standard", start=later, state_dir=state):
        pass  # leaves its clock's high-water mark in the state directory
    with Simulator("standard", state_dir=state) as resumed:
        assert resumed.clock.now() >= later  # without a start, counters never go back
        assert resumed.rewound_from is None
    earlier = later - timedelta(days=20)
    with Simulator("standard", start=earlier, state_dir=state) as chosen:
        assert earlier <= chosen.clock.now() < earlier + timedelta(minutes=1)
        assert chosen.rewound_from is not None and chosen.rewound_from >= later
    with Simulator("standard", state_dir=state) as next_time:
        # The chosen time became the high-water mark: the next start continues from there.
        assert earlier <= next_time.clock.now() < later


def query(database: Path, sql: str) -> list[tuple[object, ...]]:
    engine = create_engine(f"sqlite:///{database}")
    try:
        with engine.connect() as conn:
            return [tuple(row) for row in conn.execute(text(sql))]
    finally:
        engine.dispose()


def test_demo_day_default_is_yesterday_in_the_sites_zone() -> None:
    from envoylog.demo.tour import demo_day

    profile = demo_profile("metered")
    # 23:30 UTC on 27 November is already the 28th in Amsterdam: yesterday there is the 27th.
    assert demo_day(profile, datetime(2026, 11, 27, 23, 30, tzinfo=UTC)) == date(2026, 11, 27)
