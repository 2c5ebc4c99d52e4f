"""envoylog.reports on SQLite and PostgreSQL: a day collected from the simulator against its exact energies,
and histories written through the collector's repository with wraps, resets, gaps, DST days and missing
counters.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pandas as pd
import pytest
from conftest import DATABASES, empty_database, postgres_base_url
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from envoylog.collect.run import collect_all
from envoylog.config import GatewaySettings, Settings
from envoylog.db import gateways, samples
from envoylog.db.meters import METER_DATA
from envoylog.db.migrate import open_database
from envoylog.db.models import GATEWAYS, RUNS, SERIES
from envoylog.db.runs import finish_run, start_run
from envoylog.db.stored import INVERTER
from envoylog.errors import ConfigError
from envoylog.readings import model
from envoylog.readings.model import GatewayInfo, InverterReading, MeterReading
from envoylog.render.report import report_document
from envoylog.reports import (
    CURVE_COLUMNS,
    DAILY_COLUMNS,
    INVERTER_COLUMNS,
    daily_report,
    inverter_report,
    power_curve,
)
from envoylog.reports.counters import WRAP_TOLERANCE, WRAP_WH
from envoylog.simulator import Simulator
from envoylog.simulator.endpoints import GatewayModel

ZONE = "Europe/Amsterdam"
SERIAL = "122238082763"  # the metered profile's
STEP = timedelta(minutes=10)


def local(day: date, hours: float = 0.0) -> datetime:
    """`hours` after local midnight of `day`, in UTC (DST days included)."""
    midnight = datetime.combine(day, time(), tzinfo=ZoneInfo(ZONE)).astimezone(UTC)
    return midnight + timedelta(hours=hours)


def every(start: datetime, end: datetime, step: timedelta = STEP) -> list[datetime]:
    """Times from `start` to `end`, both included."""
    count = int((end - start) / step)
    return [start + k * step for k in range(count + 1)]


# --- a day collected from the simulator ---


@dataclass(frozen=True)
class Collected:
    """A database holding one local day collected every ten minutes, and the simulator's model of it."""

    db_url: str
    model: GatewayModel
    day: date


@pytest.fixture(scope="module")
def collected_sqlite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Collected]:
    """Midsummer's day from the metered simulator, collected from 23:50 the evening before to midnight."""
    directory = tmp_path_factory.mktemp("reports")
    day = date(2026, 6, 21)
    times = every(local(day) - STEP, local(day + timedelta(days=1)))
    with (
        empty_database("sqlite", directory) as db_url,
        Simulator("metered", start=times[0], speed=1e-6, state_dir=directory / "sim") as sim,
    ):
        settings = Settings(
            db_url=db_url,
            timezone=ZONE,
            enlighten_url=sim.enlighten_url,
            entrez_url=sim.entrez_url,
            gateways=(GatewaySettings("home", sim.gateway_url, sim.username, sim.password),),
        )
        for at in times:
            sim.clock.set(at, speed=1e-6)
            (run,) = collect_all(settings, clock=sim.clock.now, cloud_verify=str(sim.ca_file))
            assert run.error is None, run.error
        assert isinstance(sim.model, GatewayModel)
        yield Collected(db_url, sim.model, day)


@pytest.fixture(scope="module", params=DATABASES)
def collected(
    request: pytest.FixtureRequest, collected_sqlite: Collected, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Collected]:
    """The collected day on SQLite, and its rows copied to PostgreSQL (collecting takes half a minute)."""
    if request.param == "sqlite":
        yield collected_sqlite
        return
    with empty_database(request.param, tmp_path_factory.mktemp("copy")) as db_url:
        copy_rows(collected_sqlite.db_url, db_url)
        yield Collected(db_url, collected_sqlite.model, collected_sqlite.day)


def copy_rows(source_url: str, target_url: str) -> None:
    """Copy what reports read (gateways, series, readings, runs) to a new database, ids included."""
    source, target = open_database(source_url, create=True), open_database(target_url, create=True)
    try:
        with source.connect() as reading, target.begin() as writing:
            for table in (GATEWAYS, SERIES, METER_DATA, INVERTER.data, RUNS):
                rows = [dict(row) for row in reading.execute(select(table)).mappings()]
                if rows:
                    writing.execute(table.insert(), rows)
    finally:
        source.dispose()
        target.dispose()


def test_a_collected_day_matches_the_simulators_energies(collected: Collected) -> None:
    report = daily_report(collected.db_url, collected.day, collected.day, timezone=ZONE)
    assert list(report.columns) == DAILY_COLUMNS
    (row,) = report.itertuples(index=False)
    start, end = local(collected.day), local(collected.day + timedelta(days=1))
    model = collected.model
    truth = {
        "production_wh": model.production_wh(start, end),
        "consumption_wh": model.consumption_wh(start, end),
        "import_wh": model.import_wh(start, end),
        "export_wh": model.export_wh(start, end),
    }
    for name, expected in truth.items():
        assert getattr(row, name) == pytest.approx(expected, rel=0.01), name
    assert truth["production_wh"] > 10_000  # a sunny midsummer's day, so the comparison means something
    assert row.self_consumed_wh == pytest.approx(row.production_wh - row.export_wh)
    assert row.coverage == 1.0
    assert row.notes == []
    assert row.gateway == SERIAL
    assert start <= row.peak_at.to_pydatetime() < end
    assert 1_000 < row.peak_watts < 30 * 400


def test_per_inverter_energy_from_joules_matches_the_simulator(collected: Collected) -> None:
    report = inverter_report(collected.db_url, collected.day, collected.day, timezone=ZONE, gateway="home")
    assert list(report.columns) == INVERTER_COLUMNS
    start, end = local(collected.day), local(collected.day + timedelta(days=1))
    assert sorted(report.serial) == sorted(collected.model.inverter_serials())
    assert set(report.basis) == {"joules"}
    for row in report.itertuples(index=False):
        assert row.wh == pytest.approx(collected.model.inverter_wh(row.serial, start, end), rel=0.01)


def test_the_power_curve_aligns_the_days_readings(collected: Collected) -> None:
    curve = power_curve(collected.db_url, collected.day, timezone=ZONE)
    assert list(curve.columns) == CURVE_COLUMNS
    assert len(curve) == 144  # a reading every ten minutes, the one at midnight ending the day excluded
    start, end = local(collected.day), local(collected.day + timedelta(days=1))
    assert curve["at"].min() == pd.Timestamp(start) and curve["at"].max() < pd.Timestamp(end)
    assert curve[["production_watts", "consumption_watts", "net_watts"]].notna().all().all()
    noon = curve.loc[curve["at"] == pd.Timestamp(local(collected.day, 13.5))].iloc[0]
    assert noon.production_watts > 3_000
    # The net CT sees consumption less production (per phase, so only roughly on the total).
    assert noon.net_watts == pytest.approx(noon.consumption_watts - noon.production_watts, abs=50)


def test_the_json_document_follows_the_contract(collected: Collected) -> None:
    days = daily_report(collected.db_url, collected.day, collected.day, timezone=ZONE)
    inverters = inverter_report(collected.db_url, collected.day, collected.day, timezone=ZONE)
    document = report_document(days, inverters, ZONE)
    json.dumps(document, allow_nan=False)
    assert document["timezone"] == ZONE
    (day,) = document["days"]
    assert list(day) == [*DAILY_COLUMNS[:-1], "inverters", "notes"]
    assert day["day"] == "2026-06-21" and day["gateway"] == SERIAL
    assert day["peak_at"].startswith("2026-06-21T") and day["peak_at"].endswith("Z")
    assert len(day["inverters"]) == 30 and set(day["inverters"][0]) == {"serial", "wh"}
    assert sum(i["wh"] for i in day["inverters"]) == pytest.approx(day["production_wh"], rel=0.03)
    assert "inverters" not in report_document(days, None, ZONE)["days"][0]


# --- written histories ---


@dataclass
class Plant:
    """Steady power from `start`, and the counters it makes (Wh since `start`), for writing histories."""

    start: datetime
    production_w: float = 1_000.0
    consumption_w: float = 400.0
    production_base: float = 4_000_000.0

    def hours(self, at: datetime) -> float:
        """Hours since the start."""
        return (at - self.start).total_seconds() / 3600

    def production(self, at: datetime) -> tuple[float, float | None]:
        """Production watts and lifetime at `at`."""
        return self.production_w, self.production_base + self.production_w * self.hours(at)


def site_readings(
    plant: Plant,
    at: datetime,
    production: tuple[float, float | None] | None = None,
    *,
    net_counters: bool = True,
    source: str = "meters",
) -> list[MeterReading]:
    """Production, consumption and net readings of `plant` at `at`."""
    watts, lifetime = production or plant.production(at)
    hours = plant.hours(at)
    exported = max(plant.production_w - plant.consumption_w, 0.0) * hours
    imported = max(plant.consumption_w - plant.production_w, 0.0) * hours
    return [
        MeterReading("production", 0, source, at, watts, lifetime),
        MeterReading(
            "consumption", 0, source, at, plant.consumption_w, 2_000_000.0 + plant.consumption_w * hours
        ),
        MeterReading(
            "net_consumption",
            0,
            source,
            at,
            plant.consumption_w - plant.production_w,
            imported - exported,
            wh_imported_lifetime=1_000_000.0 + imported if net_counters else None,
            wh_exported_lifetime=500_000.0 + exported if net_counters else None,
        ),
    ]


def write(
    db_url: str,
    snapshots: list[model.Snapshot],
    runs: list[datetime],
    *,
    serial: str = SERIAL,
    name: str = "home",
) -> None:
    """Store the snapshots through the collector's own write path, and a successful run at each time."""
    engine = open_database(db_url, create=True)
    now = datetime(2026, 1, 1, tzinfo=UTC)
    with engine.begin() as conn:
        info = GatewayInfo(serial, "8.2.4345", "800-00654-r08", True, True)
        gateway = gateways.save_gateway(conn, info, name, now)
        for snapshot in snapshots:
            samples.save_snapshot(conn, gateway.id, snapshot)
        for at in runs:
            run_id = start_run(conn, name, at)
            finish_run(
                conn,
                run_id,
                gateway_id=gateway.id,
                now=at + timedelta(seconds=2),
                outcome="ok",
                requests=3,
                cloud_requests=0,
                rows_added=3,
                error=None,
            )
    engine.dispose()


def steady_history(
    db_url: str,
    first: date,
    last: date,
    *,
    production: Callable[[Plant, datetime], tuple[float, float | None]] | None = None,
    skip: Callable[[datetime], bool] = lambda at: False,
    net_counters: bool = True,
    lead: timedelta = STEP,
    serial: str = SERIAL,
    name: str = "home",
) -> None:
    """A plant at steady power read every ten minutes over whole days, from `lead` before the first."""
    plant = Plant(local(first))
    times = [at for at in every(local(first) - lead, local(last + timedelta(days=1))) if not skip(at)]
    snapshots = [
        model.Snapshot(
            meters=site_readings(
                plant, at, production(plant, at) if production else None, net_counters=net_counters
            )
        )
        for at in times
    ]
    write(db_url, snapshots, times, serial=serial, name=name)


def one_day(db_url: str, day: date) -> Any:
    """The report row of one day."""
    (row,) = daily_report(db_url, day, day, timezone=ZONE).itertuples(index=False)
    return row


DAY = date(2026, 5, 12)


def test_a_32_bit_wrap_in_the_middle_of_a_day_is_added_back(db_url: str) -> None:
    # The counter reaches 2^32 J at 12:05 and starts again near zero, as the gateway's register does.
    def wrapping(plant: Plant, at: datetime) -> tuple[float, float | None]:
        watts, lifetime = plant.production(at)
        assert lifetime is not None
        lifetime += WRAP_WH - plant.production_base - plant.production_w * 12.08
        return watts, lifetime - WRAP_WH if lifetime >= WRAP_WH else lifetime

    steady_history(db_url, DAY, DAY, production=wrapping)
    row = one_day(db_url, DAY)
    assert row.production_wh == pytest.approx(24_000, rel=1e-6)
    assert row.notes == ["counter wrap"]
    assert row.coverage == 1.0


def test_a_reset_continues_from_the_new_value_and_estimates_its_interval_from_power(db_url: str) -> None:
    def resetting(plant: Plant, at: datetime) -> tuple[float, float | None]:
        watts, lifetime = plant.production(at)
        return watts, lifetime if at < local(DAY, 12) else 5.0 + plant.production_w * (plant.hours(at) - 12)

    steady_history(db_url, DAY, DAY + timedelta(days=1), production=resetting)
    report = daily_report(db_url, DAY, DAY + timedelta(days=1), timezone=ZONE)
    assert list(report.production_wh) == pytest.approx([24_000, 24_000], rel=1e-6)
    assert list(report.notes) == [["counter reset"], []]
    assert (report[["production_wh", "consumption_wh", "export_wh"]] >= 0).all().all()


def test_a_two_hour_gap_lowers_coverage_but_not_counter_energy(db_url: str) -> None:
    gap = (local(DAY, 10), local(DAY, 12))
    steady_history(db_url, DAY, DAY, skip=lambda at: gap[0] < at < gap[1])
    row = one_day(db_url, DAY)
    assert row.production_wh == pytest.approx(24_000, rel=1e-6)
    assert row.consumption_wh == pytest.approx(9_600, rel=1e-6)
    assert row.export_wh == pytest.approx(14_400, rel=1e-6)
    # Covered: 10 minutes after the 10:00 run; silent until the 12:00 run.
    assert row.coverage == pytest.approx(1 - 110 / 1440, abs=1e-4)
    assert row.notes == ["gap of 120 min"]


@pytest.mark.parametrize(
    ("day", "hours"), [(date(2026, 3, 29), 23), (date(2026, 10, 25), 25)], ids=["spring", "autumn"]
)
def test_dst_days_last_23_or_25_hours(db_url: str, day: date, hours: int) -> None:
    before, after = day - timedelta(days=1), day + timedelta(days=1)
    # An hour of silence at 06:00 local on the DST day: the coverage denominator shows its length.
    silent = (local(day, 6), local(day, 7))
    steady_history(db_url, before, after, skip=lambda at: silent[0] < at < silent[1])
    report = daily_report(db_url, before, after, timezone=ZONE)
    assert list(report.day) == [before, day, after]
    assert list(report.production_wh) == pytest.approx([24_000, hours * 1_000, 24_000], rel=1e-6)
    assert list(report.coverage) == pytest.approx([1.0, 1 - 50 / (hours * 60), 1.0], abs=1e-6)


def test_a_day_without_data_is_a_row_with_no_data(db_url: str) -> None:
    # The first reading is at midnight: it opens DAY, and the day before it ends has none.
    steady_history(db_url, DAY, DAY, lead=timedelta(0))
    earlier = DAY - timedelta(days=3)
    report = daily_report(db_url, earlier, DAY, timezone=ZONE, gateway=SERIAL)
    assert list(report.day) == [earlier + timedelta(days=n) for n in range(4)]
    for empty in report.iloc[:3].itertuples():
        assert empty.coverage == 0.0 and empty.notes == ["no data"]
        assert math.isnan(empty.production_wh) and pd.isna(empty.peak_at)
    assert report.iloc[-1].production_wh == pytest.approx(24_000, rel=1e-6)
    assert report.iloc[-1].notes == []
    with pytest.raises(ConfigError, match="no gateway 'garage'"):
        daily_report(db_url, DAY, DAY, timezone=ZONE, gateway="garage")


def test_every_gateway_gets_its_rows_and_one_is_chosen_by_serial_or_name(db_url: str) -> None:
    steady_history(db_url, DAY, DAY)
    steady_history(db_url, DAY, DAY, serial="121000000001", name="garage", lead=timedelta(hours=6))
    both = daily_report(db_url, DAY, DAY, timezone=ZONE)
    assert list(both.gateway) == ["121000000001", SERIAL]
    assert list(both.production_wh) == pytest.approx([24_000, 24_000], rel=1e-6)
    for chosen in ("garage", "121000000001"):
        (row,) = daily_report(db_url, DAY, DAY, timezone=ZONE, gateway=chosen).itertuples()
        assert row.gateway == "121000000001"


def test_import_and_export_come_from_net_power_where_the_ct_has_no_counters(db_url: str) -> None:
    steady_history(db_url, DAY, DAY, net_counters=False)
    row = one_day(db_url, DAY)
    assert row.export_wh == pytest.approx(14_400, rel=0.01)
    assert row.import_wh == 0.0
    assert row.notes == ["import and export from power, no counter"]


INVERTERS = ("482052000001", "482052000002")


def inverter_watts(k: int, inverter: int) -> float:
    """Report k's watts (reports five minutes apart): varying, clipped at 295 W for three hours, then 0."""
    if k > 120:
        return 0.0
    return 295.0 if 36 <= k <= 72 else 200.0 + inverter + k % 3


def inverter_snapshots(first: datetime, *, joules: bool, days: int = 1) -> list[model.Snapshot]:
    """Two inverters reporting every five minutes from `first` for ten hours and one more report, of 0 W,
    on `days` days; their joule counters (32-bit, the second one about to wrap) only if `joules`."""
    snapshots = []
    counters = [1e9, 2**32 - 1e6]
    for day in range(days):
        for k in range(122):
            at = first + timedelta(days=day, minutes=5 * k)
            readings = []
            for i, serial in enumerate(INVERTERS):
                watts = inverter_watts(k, i)
                counters[i] += watts * 300 if k else 0.0
                counter = counters[i] % 2**32 if joules else None
                readings.append(InverterReading(serial, at, watts, 300.0, counter))
            snapshots.append(model.Snapshot(inverters=readings))
    return snapshots


@pytest.mark.parametrize("joules", [True, False], ids=["joules", "watts"])
def test_per_inverter_energy_from_joules_or_from_watts(db_url: str, joules: bool) -> None:
    snapshots = inverter_snapshots(local(DAY, 8), joules=joules)
    write(db_url, snapshots, every(local(DAY) - STEP, local(DAY + timedelta(days=1))))
    report = inverter_report(db_url, DAY, DAY, timezone=ZONE)
    assert list(report.serial) == list(INVERTERS)
    # What the inverters made after their first report of the day (nothing says what came before it).
    expected = [sum(inverter_watts(k, i) for k in range(1, 122)) * 5 / 60 for i in range(2)]
    # Watts: each report's over the time since the previous one, and the three hours of identical reports
    # that were not stored (nothing changed) at the watts of the last one stored.
    assert list(report.wh) == pytest.approx(expected, rel=1e-9 if joules else 0.01)
    assert set(report.basis) == {"joules" if joules else "watts"}
    assert (report.gateway == SERIAL).all() and (report.day == DAY).all()


def test_sqlite_and_postgresql_give_the_same_reports(tmp_path: Path) -> None:
    if postgres_base_url() is None:
        pytest.skip("needs ENVOYLOG_TEST_POSTGRES_URL")
    first, last = date(2026, 3, 28), date(2026, 3, 30)
    plant = Plant(local(first))
    times = [
        at for at in every(local(first) - STEP, local(last + timedelta(days=1))) if at.hour not in (3, 4)
    ]

    def production(at: datetime) -> tuple[float, float | None]:
        watts, lifetime = plant.production(at)
        if at >= local(last, 9):
            return watts, 7.0 + plant.production_w * (at - local(last, 9)).total_seconds() / 3600  # a reset
        if at.hour == 15:
            return watts, None  # a source without a counter for an hour
        return watts, lifetime

    snapshots = [
        model.Snapshot(meters=site_readings(plant, at, production(at), net_counters=at.day != 29))
        for at in times
    ]
    snapshots += inverter_snapshots(local(first, 8), joules=True, days=3)
    reports = []
    for kind in ("sqlite", "postgresql"):
        directory = tmp_path / kind
        directory.mkdir()
        with empty_database(kind, directory) as url:
            write(url, snapshots, times)
            days = daily_report(url, first - timedelta(days=2), last, timezone=ZONE)
            inverters = inverter_report(url, first, last, timezone=ZONE)
            curve = power_curve(url, last, timezone=ZONE)
        reports.append((days, inverters, curve))
    (sqlite_days, sqlite_inverters, sqlite_curve), (pg_days, pg_inverters, pg_curve) = reports
    pd.testing.assert_frame_equal(sqlite_days, pg_days, check_exact=False, rtol=1e-9)
    pd.testing.assert_frame_equal(sqlite_inverters, pg_inverters, check_exact=False, rtol=1e-9)
    pd.testing.assert_frame_equal(sqlite_curve, pg_curve)
    assert "counter reset" in sqlite_days.iloc[-1].notes
    assert "import and export partly from power" in sqlite_days.iloc[-2].notes
    # A counter missing for an hour between two good ones is bridged by them.
    assert sqlite_days.iloc[-2].production_wh == pytest.approx(23_000, rel=1e-6)
    assert sqlite_days.iloc[0].notes == ["no data"]
    assert sqlite_inverters.wh.sum() > 0


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    steps=st.lists(
        st.tuples(
            st.integers(min_value=1, max_value=180),  # minutes to the next reading
            st.one_of(
                st.floats(min_value=0.0, max_value=3_000.0),  # Wh counted meanwhile
                st.floats(min_value=-5e6, max_value=-20.0),  # a drop: a reset or a wrap
            ),
        ),
        min_size=1,
        max_size=40,
    )
)
def test_a_days_energy_is_never_negative_nor_absurd(tmp_path: Path, steps: list[tuple[int, float]]) -> None:
    db = tmp_path / f"{abs(hash(tuple(steps)))}.db"
    at, lifetime, snapshots = local(DAY, 2), 1_500_000.0, []
    for minutes, change in steps:
        at += timedelta(minutes=minutes)
        lifetime = max(lifetime + change, 0.0)
        snapshots.append(model.Snapshot(meters=[MeterReading("production", 0, "eim", at, 500.0, lifetime)]))
    write(f"sqlite:///{db}", snapshots, [])
    report = daily_report(f"sqlite:///{db}", DAY, DAY + timedelta(days=1), timezone=ZONE)
    assert (report.production_wh.dropna() >= 0.0).all()
    # At most what the counter counted, and per drop the 15 minutes of power that estimate a reset, or what
    # a drop short of a whole wrap leaves.
    counted = sum(max(change, 0.0) for _, change in steps)
    drops = sum(1 for _, change in steps if change < 0)
    assert report.production_wh.sum() <= counted + drops * max(500.0 / 4, WRAP_TOLERANCE * WRAP_WH) + 10.0
