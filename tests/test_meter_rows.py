"""A meter channel's total and phases in one row: every reading comes back as it was, through every reader."""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from sqlalchemy import Engine, select

from envoylog.db import gateways, samples
from envoylog.db.meters import (
    METER_DATA,
    PHASES,
    VALUES,
    decode_row,
    encode_row,
    slot,
)
from envoylog.db.migrate import open_database
from envoylog.db.models import SERIES
from envoylog.db.stored import SOURCES
from envoylog.db.views import METER_READINGS, METER_TOTALS
from envoylog.demo.filler import _channel_rows, _Series
from envoylog.readings.model import GatewayInfo, MeterReading, Snapshot
from envoylog.reports.export import TABLES, _chunks, _series

T0 = datetime(2026, 6, 21, 10, 0, tzinfo=UTC)
# Up to the plausibility bounds, in thousandths: counters to 10^9 Wh, watts to 500 kW, amps to 5 kA.
LIMITS = {"wh_lifetime": 10**12, "wh_imported_lifetime": 10**12, "wh_exported_lifetime": 10**12}
LIMITS |= {"watts": 5 * 10**8, "volts": 10**6, "amps": 5 * 10**6, "hz": 10**5, "power_factor": 1000}


def _fabricated(values: dict[str, int | None]) -> bool:
    """A net counter unknown although both of its parts are known: the collector never makes one (it is their
    difference), and the rows would read it as that difference."""
    parts = values["wh_imported_lifetime"] is not None and values["wh_exported_lifetime"] is not None
    return values["wh_lifetime"] is None and parts


def _value(name: str) -> st.SearchStrategy[int | None]:
    low = 0 if name in ("wh_imported_lifetime", "wh_exported_lifetime", "volts", "hz") else -LIMITS[name]
    return st.one_of(st.none(), st.integers(low, LIMITS[name]), st.integers(low, low + 3))


def _phase() -> st.SearchStrategy[dict[str, int | None]]:
    return st.fixed_dictionaries(
        {name: _value(name) for name in VALUES if name != "watts"}
        | {"watts": st.integers(-LIMITS["watts"], LIMITS["watts"])}
    )


def _net(values: dict[str, int | None]) -> dict[str, int | None]:
    """A net channel's phase as the collector makes it: the counter is imported minus exported."""
    imported, exported = values["wh_imported_lifetime"], values["wh_exported_lifetime"]
    if imported is not None and exported is not None:
        return values | {"wh_lifetime": imported - exported}
    return values


@given(st.dictionaries(st.sampled_from(PHASES), _phase(), min_size=1), st.booleans())
def test_a_row_gives_back_each_phase_it_was_made_of(
    phases: dict[int, dict[str, int | None]], net: bool
) -> None:
    if net:
        phases = {phase: _net(values) for phase, values in phases.items()}
    assume(not any(_fabricated(values) for values in phases.values()))
    row = encode_row(7, T0, "meters", phases)
    assert decode_row(row) == phases
    assert {phase for phase in PHASES if row[slot(phase, "watts")] is not None} == set(phases)


def test_what_follows_from_the_row_takes_next_to_no_bytes() -> None:
    phases = {
        1: {"watts": 1_000_123, "wh_lifetime": 5_000_000_001, "amps": 4_100, "volts": 230_001, "hz": 50_012},
        2: {"watts": 2_000_456, "wh_lifetime": 6_000_000_002, "amps": 8_200, "volts": 231_000, "hz": 50_012},
        3: {"watts": 0, "wh_lifetime": 1, "amps": 0, "volts": 229_000, "hz": None},
        0: {
            "watts": 3_000_579,
            "wh_lifetime": 11_000_000_004,
            "amps": 12_300,
            "volts": 230_000,
            "hz": 50_012,
        },
    }
    full = {phase: dict.fromkeys(VALUES) | values for phase, values in phases.items()}
    row = encode_row(1, T0, "eim", full)
    # What is left of each total is the gateway's rounding, here none.
    assert (row["watts"], row["wh_lifetime"], row["amps"]) == (3_000_579, 0, 0)
    # The total's voltage is the phases' mean, L1 and L2 are at the total's frequency, L3's is unknown.
    assert (row["volts"], row["l1_hz"], row["l2_hz"], row["l3_hz"]) == (None, None, None, -1)
    assert decode_row(row) == full


# --- the views and the export read what Python decodes ---


@pytest.fixture
def channel(db_url: str) -> Iterator[tuple[Engine, dict[int, int]]]:
    """A gateway with a production channel of three phases: the database, and the series id of each phase."""
    engine = open_database(db_url, create=True)
    try:
        with engine.begin() as conn:
            gateway = gateways.save_gateway(
                conn, GatewayInfo("1222", "8.2.4345", None, True, True), "home", T0
            )
            keys = [("production", phase, "") for phase in PHASES]
            ids = samples.find_series_ids(conn, gateway.id, keys)
        yield engine, {phase: ids[("production", phase, "")] for phase in PHASES}
    finally:
        engine.dispose()


def _random_rows(channel_id: int, count: int) -> list[dict[str, Any]]:
    """Rows of every shape: slots empty or filled, values unknown, counters that are and are not derived."""
    rng = random.Random(11)
    rows = []
    for minute in range(count):
        phases = {}
        for phase in PHASES:
            if rng.random() < 0.2:
                continue
            values: dict[str, int | None] = {
                name: None if rng.random() < 0.15 else rng.randint(-LIMITS[name], LIMITS[name])
                for name in VALUES
            }
            values["watts"] = rng.randint(-LIMITS["watts"], LIMITS["watts"])
            values["hz"] = None if values["hz"] is None else 50_000 + rng.randint(-30, 30)
            phases[phase] = _net(values) if rng.random() < 0.5 else values
            if _fabricated(phases[phase]):
                phases[phase]["wh_lifetime"] = 0
        if phases:
            source = SOURCES[rng.randrange(len(SOURCES))]
            rows.append(encode_row(channel_id, T0 + timedelta(minutes=minute), source, phases))
    return rows


def test_the_views_and_the_export_read_what_was_stored(channel: tuple[Engine, dict[int, int]]) -> None:
    engine, series = channel
    rows = _random_rows(series[0], 300)
    with engine.begin() as conn:
        conn.execute(METER_DATA.insert(), rows)
    expected = {}  # (series, time) -> the view's values
    for row in rows:
        for phase, values in decode_row(row).items():
            floats = {name: None if value is None else value / 1000 for name, value in values.items()}
            expected[(series[phase], row["read_at"])] = {"source": SOURCES[row["source"]], **floats}
    with engine.connect() as conn:
        view = {
            (r.series_id, r.read_at): {name: getattr(r, name) for name in expected[(r.series_id, r.read_at)]}
            for r in conn.execute(select(METER_READINGS))
        }
        totals = conn.execute(select(METER_TOTALS.c.series_id, METER_TOTALS.c.read_at)).all()
        spec = TABLES["meters"]
        exported = [
            row
            for chunk in _chunks(conn, spec, _series(conn, spec, None), T0, T0 + timedelta(days=1), 100)
            for row in chunk
        ]
    assert view == expected
    assert sorted(totals) == sorted(key for key in expected if key[0] == series[0])
    # The export: gateway, kind, phase, time, then the view's columns in their order.
    names = [column.name for column in METER_READINGS.columns][2:]
    by_phase = {phase: sid for sid, phase in ((v, k) for k, v in series.items())}
    assert len(exported) == len(expected)
    for gateway, kind, phase, at, *values in exported:
        assert (gateway, kind) == ("1222", "production")
        assert dict(zip(names, values, strict=True)) == expected[(by_phase[phase], at)]


# --- the demo's encoding in arrays is the collector's ---


def test_the_demo_stores_a_channel_as_the_collector_does() -> None:
    rng = np.random.default_rng(5)
    size = 200
    times = np.arange(1_780_000_000, 1_780_000_000 + 60 * size, 60, dtype=np.int64)
    phases = {}
    grid_hz = 50 + rng.integers(-30, 30, size) / 1000
    for phase in (1, 2, 3, 0):  # the total last: its voltage is the phases' mean
        imported = rng.integers(0, 10**9, size) / 1000
        exported = rng.integers(0, 10**9, size) / 1000
        values: dict[str, Any] = {
            "source": "meters",
            "watts": rng.integers(-(10**8), 10**8, size) / 1000,
            "wh_lifetime": imported - exported if phase != 2 else rng.integers(0, 10**9, size) / 1000,
            "wh_imported_lifetime": imported,
            "wh_exported_lifetime": exported,
            "volts": rng.integers(200_000, 250_000, size) / 1000,
            "amps": None if phase == 3 else rng.integers(-(10**6), 10**6, size) / 1000,
            "hz": grid_hz if phase != 1 else 50 + rng.integers(-30, 30, size) / 1000,
            "power_factor": rng.integers(-1000, 1000, size) / 1000,
        }
        if phase == 0:  # the phases' mean, as the collector makes a total's voltage, but for a few
            volts = sum(phases[p][0].values["volts"] * 1000 for p in (1, 2, 3))  # type: ignore[operator]
            mean = (np.rint(volts).astype(np.int64) + 1) // 3 / 1000
            values["volts"] = np.where(rng.random(size) < 0.9, mean, values["volts"])
        keep = rng.random(size) < 0.7
        phases[phase] = (_Series(("net_consumption", phase, ""), "meter", times, times, values), keep)
    rows, readings = _channel_rows(9, phases)
    expected = []
    for index in range(size):
        present = {}
        for phase, (one, keep) in phases.items():
            if keep[index]:
                present[phase] = {
                    name: None if one.values[name] is None else round(float(one.values[name][index]) * 1000)  # type: ignore[index]
                    for name in VALUES
                }
        if present:
            at = int(times[index])
            expected.append(encode_row(9, at, "meters", present))
    assert readings == sum(int(keep.sum()) for _, keep in phases.values())
    columns = ["series_id", "read_at", *(slot(p, name) for p in PHASES for name in VALUES), "source"]
    assert [dict(zip(columns, row, strict=True)) for row in rows] == expected


# --- change detection stays per phase ---


def _reading(phase: int, at: datetime, watts: float) -> MeterReading:
    return MeterReading("production", phase, "eim", at, watts, 1000.0 + phase, volts=230.0 + phase)


def test_only_the_phases_that_changed_are_stored_and_each_keeps_its_newest(
    channel: tuple[Engine, dict[int, int]],
) -> None:
    engine, _ = channel
    first = Snapshot(meters=[_reading(phase, T0, 100.0 + phase) for phase in PHASES])
    # A minute on, only L2 changed.
    second = Snapshot(
        meters=[_reading(phase, T0 + timedelta(minutes=1), 100.0 + phase + (phase == 2)) for phase in PHASES]
    )
    with engine.begin() as conn:
        gateway_id = conn.execute(select(SERIES.c.gateway_id)).scalars().first()
        assert samples.save_snapshot(conn, gateway_id, first).added == {"production": 4}
        assert samples.save_snapshot(conn, gateway_id, second).added == {"production": 1}
        latest = {(row.phase, row.at, row.values["watts"]) for row in samples.load_latest(conn, gateway_id)}
        counted = samples.count_rows(conn, gateway_id)["meter"]
        stored = conn.execute(select(METER_DATA.c.read_at, METER_DATA.c.l2_watts, METER_DATA.c.watts)).all()
    assert latest == {
        (0, T0, 100.0),
        (1, T0, 101.0),
        (2, T0 + timedelta(minutes=1), 103.0),
        (3, T0, 103.0),
    }
    assert counted == 5
    assert len(stored) == 2 and stored[1][2] is None  # the second row: L2's slot alone


def test_a_phase_silent_for_over_a_week_is_stored_anew_and_meanwhile_not_shown(
    channel: tuple[Engine, dict[int, int]],
) -> None:
    """The newest reading of a phase is looked for a week back from its channel's newest row, no further: a
    phase no longer read must not make every run read the channel's history."""
    engine, _ = channel
    with engine.begin() as conn:
        gateway_id = conn.execute(select(SERIES.c.gateway_id)).scalars().first()
        samples.save_snapshot(conn, gateway_id, Snapshot(meters=[_reading(p, T0, 1.0) for p in PHASES]))
        shown = {}
        for day in range(1, 9):  # the total goes on for eight days, the phases are no longer read
            at = T0 + timedelta(days=day)
            samples.save_snapshot(conn, gateway_id, Snapshot(meters=[_reading(0, at, float(day))]))
            shown[day] = {row.phase for row in samples.load_latest(conn, gateway_id)}
        back = T0 + timedelta(days=8, hours=1)
        again = samples.save_snapshot(conn, gateway_id, Snapshot(meters=[_reading(1, back, 1.0)]))
    assert shown[7] == {0, 1, 2, 3}  # a week back: still the first minute's readings
    assert shown[8] == {0}
    assert again.added == {"production": 1}  # the same value as eight days ago, stored as new
