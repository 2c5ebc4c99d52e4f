"""The queries behind `envoylog check`: a handful per gateway, over indexed ranges of the last days."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.engine import Connection

from envoylog.check.findings import DayEnergy, Reporting
from envoylog.config import GatewaySettings, Settings
from envoylog.db import gateways
from envoylog.db.models import SERIES
from envoylog.db.views import INVERTER_READINGS
from envoylog.reports.common import Day
from envoylog.reports.counters import INVERTER_MEASURE, INVERTER_ROWS, METER_ROWS, SITE_MEASURES, day_energies
from envoylog.reports.coverage import day_coverage

COVERED = 0.9  # a day (or window) the logger watched for less of tells nothing about a drop or a lag
# How far back the inverters' reports are read: a silent inverter stays said through a few dark days.
REPORTING_LOOKBACK = timedelta(days=7)
NIGHT_GAP = timedelta(hours=2)  # reports this far apart belong to two stretches of daylight


@dataclass(frozen=True)
class Checked:
    """A gateway to check: its row (None for a configured gateway never read), and its settings."""

    name: str  # the config's name
    id: int | None
    serial: str | None
    clock_offset_s: float | None
    settings: GatewaySettings | None


def gateways_to_check(conn: Connection, settings: Settings) -> list[Checked]:
    """The configured gateways, read or not; when the database knows none of them (a demo's database, one
    copied from another machine), every gateway it holds."""
    found = []
    for gateway in settings.gateways:
        row = gateways.configured_gateway(conn, name=gateway.name, serial=gateway.serial)
        if row is None:
            found.append(Checked(gateway.name, None, None, None, gateway))
        else:
            found.append(Checked(gateway.name, row.id, row.serial, row.clock_offset_s, gateway))
    if any(gateway.id is not None for gateway in found):
        return found
    rows = gateways.list_gateways(conn)
    stored = [Checked(row.name, row.id, row.serial, row.clock_offset_s, None) for row in rows]
    return stored or found


def inverter_series(conn: Connection, gateway_id: int) -> dict[int, str]:
    """The gateway's inverter series: serial by series id."""
    query = select(SERIES.c.id, SERIES.c.device).where(
        SERIES.c.gateway_id == gateway_id, SERIES.c.kind == "inverter"
    )
    return {sid: device for sid, device in conn.execute(query)}


def production_series(conn: Connection, gateway_id: int) -> int | None:
    """The gateway's all-phase production series."""
    query = select(SERIES.c.id).where(
        SERIES.c.gateway_id == gateway_id,
        SERIES.c.kind == "production",
        SERIES.c.phase == 0,
        SERIES.c.device == "",
    )
    return conn.execute(query).scalar_one_or_none()


def reporting(conn: Connection, inverters: dict[int, str], now: datetime) -> list[Reporting]:
    """Each inverter's newest report, and its stretches of reporting (with power) in the last week."""
    if not inverters:
        return []
    ids = list(inverters)
    # max() keeps the column's type, so both backends give aware UTC datetimes.
    newest = dict(
        conn.execute(
            select(INVERTER_READINGS.c.series_id, func.max(INVERTER_READINGS.c.reported_at))
            .where(INVERTER_READINGS.c.series_id.in_(ids))
            .group_by(INVERTER_READINGS.c.series_id)
        ).all()
    )
    rows = conn.execute(
        select(INVERTER_READINGS.c.series_id, INVERTER_READINGS.c.reported_at, INVERTER_READINGS.c.watts)
        .where(
            INVERTER_READINGS.c.series_id.in_(ids),
            INVERTER_READINGS.c.reported_at >= now - REPORTING_LOOKBACK,
        )
        .order_by(INVERTER_READINGS.c.series_id, INVERTER_READINGS.c.reported_at)
    )
    streaks: dict[int, list[tuple[datetime, datetime]]] = {}
    current: dict[int, tuple[datetime, datetime, datetime | None]] = {}  # start, last report, last with power
    for sid, at, watts in rows:
        start, last, producing = current.get(sid, (at, at, None))
        if at - last > NIGHT_GAP:
            if producing is not None:
                streaks.setdefault(sid, []).append((start, producing))
            start, producing = at, None
        current[sid] = (start, at, at if watts and watts > 0 else producing)
    for sid, (start, _, producing) in current.items():
        if producing is not None:
            streaks.setdefault(sid, []).append((start, producing))
    return [
        Reporting(inverters[sid], newest[sid], tuple(streaks.get(sid, ())))
        for sid in ids
        if newest.get(sid) is not None
    ]


def day_windows(
    conn: Connection,
    gateway_id: int,
    production: int | None,
    inverters: dict[int, str],
    windows: Sequence[Day],
    contiguous: bool,
) -> list[DayEnergy]:
    """Production and each inverter's energy in each window, from the same counters `report` reads.

    `contiguous`: the windows are whole days one after the other, read in one go; else each on its own.
    """
    if not windows:
        return []
    if not contiguous:
        return [
            day_windows(conn, gateway_id, production, inverters, [Day(0, w.day, w.start, w.end)], True)[0]
            for w in windows
        ]
    days = [Day(n, w.day, w.start, w.end) for n, w in enumerate(windows)]
    coverage = day_coverage(conn, gateway_id, days)
    site = {}
    if production is not None:
        site = day_energies(conn, METER_ROWS, {production: SITE_MEASURES["production"]}, days, coverage)
    made = {}
    if inverters:
        made = day_energies(
            conn, INVERTER_ROWS, {sid: (INVERTER_MEASURE,) for sid in inverters}, days, coverage
        )
    result = []
    for day in days:
        covered = coverage[day.index].share >= COVERED
        site_wh = site.get((production, "production", day.index)) if production is not None else None
        wh = site_wh.wh if site_wh is not None and covered else math.nan
        per_inverter = {
            serial: energy.wh
            for sid, serial in inverters.items()
            if covered
            and (energy := made.get((sid, INVERTER_MEASURE.name, day.index))) is not None
            and not math.isnan(energy.wh)
        }
        result.append(DayEnergy(day.day, None if math.isnan(wh) else wh, per_inverter))
    return result
