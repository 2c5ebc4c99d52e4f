"""The Grafana views and dashboards: each panel's SQL runs as Grafana would send it, on SQLite and PostgreSQL,
and shows what `envoylog report` says about the same days.

The history is the demo filler's (Amsterdam's days, the spring change of clocks among them), read in two
zones: UTC and Europe/Amsterdam, set as Grafana's reader would have it (the SQLite process's local time; the
PostgreSQL session's TimeZone). The `metered` site has CTs and inverters with joules counters; the `standard`
site, the most common, neither: its production is `/api/v1/production`'s, its inverters' energy their watts.
"""

from __future__ import annotations

import importlib.util
import json
import re
import sys
import time as clock
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from alembic import command
from sqlalchemy import Engine, create_engine, inspect, text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import ProgrammingError

from envoylog.db.migrate import alembic_config, head_revision
from envoylog.demo.filler import fill_history
from envoylog.reports import daily_report, inverter_report
from envoylog.simulator.profiles import get_profile

ROOT = Path(__file__).resolve().parents[1]
FIRST, LAST = date(2025, 3, 29), date(2025, 3, 31)  # Amsterdam's clocks go forward on the 30th: 23 hours
FILL_ZONE = ZoneInfo("Europe/Amsterdam")  # the simulated site's: the filler's days are its days
VIEWS = {
    "envoylog_gateways",
    "envoylog_series",
    "envoylog_meter",
    "envoylog_inverters",
    "envoylog_batteries",
    "envoylog_energy_steps",
    "envoylog_inverter_steps",
    "envoylog_daily_yields",
    "envoylog_inverter_days",
}


def _load_generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("grafana_dashboards", ROOT / "grafana" / "dashboards.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


dashboards = _load_generator()


@dataclass(frozen=True)
class History:
    """The filled database, read in `zone`."""

    db_url: str
    kind: str  # "sqlite" | "postgresql"
    zone: str
    profile: str
    serial: str
    start: datetime  # the history's first and last instants
    end: datetime

    def full_days(self) -> list[date]:
        """The local days of `zone` wholly inside the history."""
        zone = ZoneInfo(self.zone)
        days = [FIRST - timedelta(days=1) + timedelta(days=n) for n in range((LAST - FIRST).days + 3)]
        return [
            d
            for d in days
            if datetime.combine(d, datetime.min.time(), zone) >= self.start
            and datetime.combine(d + timedelta(days=1), datetime.min.time(), zone) <= self.end
        ]

    def bounds(self, day: date) -> tuple[datetime, datetime]:
        """A local day's start and end."""
        zone = ZoneInfo(self.zone)
        return (
            datetime.combine(day, datetime.min.time(), zone),
            datetime.combine(day + timedelta(days=1), datetime.min.time(), zone),
        )

    def panels(self) -> dict[str, dict[str, Any]]:
        """The dashboard of this database, as committed, by panel title."""
        flavour = dashboards.POSTGRESQL if self.kind == "postgresql" else dashboards.SQLITE
        document = json.loads(dashboards.path_of(flavour).read_text(encoding="utf-8"))
        return {panel["title"]: panel for panel in document["panels"]}

    def panel(self, title: str, start: datetime, end: datetime) -> list[dict[str, Any]]:
        """A panel's rows for the range, its SQL substituted and run as Grafana would."""
        (target,) = self.panels()[title]["targets"]
        sql = target["rawSql"] if self.kind == "postgresql" else target["rawQueryText"]
        return self.query(dashboards.grafana_sql(sql, start, end, self.serial))

    def query(self, sql: str, **params: Any) -> list[dict[str, Any]]:
        """Rows of `sql`, read in the history's zone."""
        with self.connect() as conn:
            return [dict(row._mapping) for row in conn.execute(text(sql), params)]

    def connect(self) -> Any:
        return _ZonedConnection(self.db_url, self.kind, self.zone)


class _ZonedConnection:
    """A connection whose local days are those of a zone, as the reading process or session sets them."""

    def __init__(self, db_url: str, kind: str, zone: str) -> None:
        self.engine = create_engine(db_url)
        self.kind, self.zone = kind, zone

    def __enter__(self) -> Connection:
        self.conn = self.engine.connect()
        if self.kind == "postgresql":
            self.conn.execute(text("SELECT set_config('TimeZone', :zone, false)"), {"zone": self.zone})
        return self.conn

    def __exit__(self, *exc: object) -> None:
        self.conn.close()
        self.engine.dispose()


@pytest.fixture
def local_zone(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """This process's local time zone (SQLite's 'localtime'), set to the test's zone and back afterwards."""
    zone: str = request.param
    monkeypatch.setenv("TZ", zone)
    clock.tzset()
    yield zone
    monkeypatch.undo()
    clock.tzset()


@pytest.fixture
def profile(request: pytest.FixtureRequest) -> str:
    """The simulated site whose history is filled: `metered` unless a test asks for others."""
    return getattr(request, "param", "metered")


@pytest.fixture
def history(db_url: str, local_zone: str, profile: str) -> History:
    summary = fill_history(db_url, FIRST, LAST, profile=profile)
    kind = "postgresql" if db_url.startswith("postgresql") else "sqlite"
    start = datetime.combine(FIRST, datetime.min.time(), FILL_ZONE)
    end = datetime.combine(LAST + timedelta(days=1), datetime.min.time(), FILL_ZONE)
    return History(db_url, kind, local_zone, profile, summary.serial, start, end)


ZONES = pytest.mark.parametrize("local_zone", ["UTC", "Europe/Amsterdam"], indirect=True)
# With CTs and joules counters, and without either (the views then count the watts the inverters report).
PROFILES = pytest.mark.parametrize("profile", ["metered", "standard"], indirect=True)


def close(a: float, b: float, *, tolerance_wh: float = 15.0) -> bool:
    """Equal within a few Wh: a view gives a step to the day it ends in, the report splits it at midnight."""
    return abs(a - b) <= max(tolerance_wh, 0.002 * abs(b))


def test_the_committed_dashboards_are_the_generated_ones() -> None:
    for flavour in (dashboards.POSTGRESQL, dashboards.SQLITE):
        assert dashboards.path_of(flavour).read_text(encoding="utf-8") == dashboards.render(flavour)


@ZONES
@PROFILES
def test_daily_yields_are_the_reports_days(history: History) -> None:
    days = history.full_days()
    assert len(days) >= 2
    report = daily_report(history.db_url, days[0], days[-1], timezone=history.zone)
    view = {
        row["day"] if isinstance(row["day"], date) else date.fromisoformat(row["day"]): row
        for row in history.query("SELECT * FROM envoylog_daily_yields WHERE gateway = :g", g=history.serial)
    }
    start, end = history.bounds(days[0])[0], history.bounds(days[-1])[1]
    energy = {_day_of(r["time"], history.zone): r for r in history.panel("Daily energy", start, end)}
    grid = {_day_of(r["time"], history.zone): r for r in history.panel("Import and export", start, end)}
    assert sorted(energy) == sorted(grid) == days  # a bar per day of the range, no sliver of the day before
    metered = history.profile == "metered"
    for expected in report.itertuples():
        found = view[expected.day]
        assert expected.production_wh > 1000  # a spring day's sun
        assert close(found["production_wh"], expected.production_wh), (expected.day, found)
        assert close(energy[expected.day]["production"] * 1000, expected.production_wh)
        if not metered:  # no CTs: no consumption, no grid, in the report or the views
            assert found["consumption_wh"] is found["import_wh"] is found["export_wh"] is None
            assert energy[expected.day]["consumption"] is None
            assert grid[expected.day]["import"] is grid[expected.day]["export"] is None
            continue
        for column in ("consumption_wh", "import_wh", "export_wh"):
            assert close(found[column], getattr(expected, column)), (expected.day, column, found[column])
        assert close(energy[expected.day]["consumption"] * 1000, expected.consumption_wh)
        assert close(grid[expected.day]["import"] * 1000, expected.import_wh)
        assert close(-grid[expected.day]["export"] * 1000, expected.export_wh)


def _day_of(value: Any, zone: str) -> date:
    """A panel's day start (epoch seconds on SQLite, a timestamp on PostgreSQL) as the local date."""
    at = datetime.fromtimestamp(value, UTC) if isinstance(value, int) else value
    return at.astimezone(ZoneInfo(zone)).date()  # type: ignore[no-any-return]


@ZONES
def test_power_today_shows_the_days_readings(history: History) -> None:
    day = history.full_days()[-1]
    start, end = history.bounds(day)
    rows = history.panel("Power today", start, end)
    assert len(rows) >= 24 * 60 - 60  # a row a minute: the CTs' power changes every minute
    times = [r["time"] for r in rows]
    assert times == sorted(times)
    (peak,) = daily_report(history.db_url, day, day, timezone=history.zone).itertuples()
    assert max(r["production"] for r in rows if r["production"] is not None) == pytest.approx(peak.peak_watts)
    assert all(r["consumption"] is not None and r["net"] is not None for r in rows[1:])


@ZONES
@PROFILES
def test_inverters_against_the_median_has_a_row_per_inverter(history: History) -> None:
    inverters = get_profile(history.profile).inverter_count
    days = history.full_days()
    start, end = history.bounds(days[0])[0], history.bounds(days[-1])[1]
    rows = history.panel("Inverters against the median", start, end)
    assert len(rows) == inverters
    assert len({r["inverter"] for r in rows}) == inverters
    report = inverter_report(history.db_url, days[0], days[-1], timezone=history.zone)
    # The metered site's inverters count joules; the standard site's report only their watts.
    assert set(report["basis"]) == {"joules" if history.profile == "metered" else "watts"}
    by_inverter = report.groupby("serial")["wh"].sum()
    assert (by_inverter > 1000).all()  # a spring day's sun on every inverter
    for row in rows:
        assert close(row["energy"] * 1000, by_inverter[row["inverter"]], tolerance_wh=5.0)
    percents = sorted(r["percent_of_median"] for r in rows)
    assert percents[(inverters - 1) // 2] <= 100.0 <= percents[inverters // 2]
    assert 50 < percents[0] < percents[-1] < 150  # the simulated array differs a little, none dead
    daily = history.query(
        "SELECT inverter, wh, percent_of_median FROM envoylog_inverter_days WHERE day = :d",
        d=days[-1] if history.kind == "postgresql" else days[-1].isoformat(),
    )
    one_day = report[report["day"] == days[-1]].set_index("serial")["wh"]
    assert len(daily) == inverters
    assert all(close(r["wh"], one_day[r["inverter"]], tolerance_wh=5.0) for r in daily)
    assert all(50 < r["percent_of_median"] < 150 for r in daily)


@ZONES
def test_the_gateway_variable_lists_the_gateway(history: History) -> None:
    flavour = dashboards.POSTGRESQL if history.kind == "postgresql" else dashboards.SQLITE
    document = json.loads(dashboards.path_of(flavour).read_text(encoding="utf-8"))
    (variable,) = document["templating"]["list"]
    query = variable["query"] if history.kind == "postgresql" else variable["query"]["rawQueryText"]
    assert history.query(query) == [{"gateway": history.serial}]


def test_downgrade_drops_the_views_and_upgrade_brings_them_back(db_url: str) -> None:
    fill_history(db_url, FIRST, FIRST, profile="metered")
    engine = create_engine(db_url)
    try:
        assert set(inspect(engine).get_view_names()) >= VIEWS
        _alembic(engine, "downgrade", "0007")
        assert not VIEWS & set(inspect(engine).get_view_names())
        assert "meter_readings" in inspect(engine).get_table_names()
        _alembic(engine, "upgrade", "head")
        assert set(inspect(engine).get_view_names()) >= VIEWS
        with engine.connect() as conn:
            assert conn.execute(text("SELECT COUNT(*) FROM envoylog_meter")).scalar_one() > 10_000
    finally:
        engine.dispose()


def _alembic(engine: Engine, verb: str, revision: str) -> None:
    with engine.begin() as conn:
        getattr(command, verb)(alembic_config(conn), revision)
    assert head_revision() is not None


@pytest.mark.postgres
def test_the_readmes_grafana_role_reads_the_views_and_nothing_else(db_url: str) -> None:
    if not db_url.startswith("postgresql"):
        pytest.skip("the role is PostgreSQL's; SQLite's reader is a read-only file")
    fill_history(db_url, FIRST, FIRST, profile="metered")
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("### Grafana") : readme.index("## Using it from Python")]
    (role_sql,) = re.findall(r"^```sql\n(.*?)^```$", section, re.S | re.M)
    engine = create_engine(db_url)
    try:
        with engine.connect() as conn:
            if conn.execute(text("SELECT 1 FROM pg_roles WHERE rolname = 'envoylog_grafana'")).first():
                pytest.skip("this PostgreSQL server has a role envoylog_grafana of its own")
            schema = conn.execute(text("SELECT current_schema()")).scalar_one()
            conn.rollback()
            # The test's own schema stands for public; each try is rolled back, as the role is the server's.
            role_sql = role_sql.replace("SCHEMA public", f'SCHEMA "{schema}"')
            for table, readable in (("envoylog_daily_yields", True), ("meter_readings", False)):
                transaction = conn.begin()
                try:
                    conn.exec_driver_sql(role_sql)
                    conn.exec_driver_sql("SET ROLE envoylog_grafana")
                    if readable:
                        assert conn.execute(text(f"SELECT COUNT(*) FROM {table}")).scalar_one() >= 1  # noqa: S608
                    else:
                        with pytest.raises(ProgrammingError, match="permission denied"):
                            conn.execute(text(f"SELECT COUNT(*) FROM {table}"))  # noqa: S608
                finally:
                    transaction.rollback()
    finally:
        engine.dispose()
