"""Daily yield: one row per gateway and local day with energy, peak power, coverage and notes."""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import date, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    Engine,
    select,
)
from sqlalchemy.engine import Connection

from envoylog.db.views import METER_TOTALS
from envoylog.reports.columns import DAILY_COLUMNS
from envoylog.reports.common import Day, connection, gateway_ids, local_days, site_series
from envoylog.reports.counters import METER_ROWS, SITE_MEASURES, Energy, day_energies
from envoylog.reports.coverage import Coverage, day_coverage
from envoylog.reports.sql import IN_LIST, rows_param

if TYPE_CHECKING:
    import pandas as pd

# --- the API ---


def daily_report(
    db: Engine | str, start: date, end: date, *, timezone: str, gateway: str | None = None
) -> pd.DataFrame:
    """One row per gateway and local day from `start` to `end` (inclusive): energy, peak, coverage, notes."""
    return daily_frame(daily_rows(db, start, end, timezone=timezone, gateway=gateway))


def daily_rows(
    db: Engine | str, start: date, end: date, *, timezone: str, gateway: str | None = None
) -> list[dict[str, Any]]:
    """The rows of `daily_report`, as dicts with its columns: the queries, without pandas.

    Nothing here loads pandas, so that `envoylog report` can query while pandas loads (see `daily_frame`).
    """
    days = local_days(start, end, timezone)
    rows: list[dict[str, Any]] = []
    with connection(db) as conn:
        for gateway_id, serial in gateway_ids(conn, gateway):
            rows += _gateway_days(conn, gateway_id, serial, days)
    return rows


def daily_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """The DataFrame of `daily_report` from the rows of `daily_rows`."""
    import pandas as pd

    frame = pd.DataFrame(rows, columns=DAILY_COLUMNS)
    for name in [*DAILY_COLUMNS[2:8], "coverage"]:
        frame[name] = frame[name].astype("float64")
    frame["peak_at"] = pd.to_datetime(frame["peak_at"], utc=True).astype("datetime64[us, UTC]")
    return frame


# --- days, gateways, the connection ---


# --- SQL that differs between SQLite and PostgreSQL ---


# --- counters: read off at midnight, or row by row where they do not add up ---


# --- the daily report ---


def _gateway_days(conn: Connection, gateway_id: int, serial: str, days: list[Day]) -> list[dict[str, Any]]:
    series = site_series(conn, gateway_id)
    coverage = day_coverage(conn, gateway_id, days)
    measures = {series[kind]: SITE_MEASURES[kind] for kind in SITE_MEASURES if kind in series}
    energies = day_energies(conn, METER_ROWS, measures, days, coverage) if measures else {}
    peaks = _peaks(conn, series["production"], days) if "production" in series else {}
    rows = []
    for day in days:
        found: dict[str, Energy] = {}
        for kind, kind_measures in SITE_MEASURES.items():
            for measure in kind_measures:
                if kind in series:
                    found[measure.name] = energies[(series[kind], measure.name, day.index)]
        wh = {
            name: found[name].wh if name in found else math.nan
            for name in ("production", "consumption", "import", "export")
        }
        peak_watts, peak_at = peaks.get(day.index, (math.nan, None))
        rows.append(
            {
                "gateway": serial,
                "day": day.day,
                "production_wh": wh["production"],
                "consumption_wh": wh["consumption"],
                "import_wh": wh["import"],
                "export_wh": wh["export"],
                "self_consumed_wh": not_below_zero(wh["production"] - wh["export"]),
                "peak_watts": peak_watts,
                "peak_at": peak_at,
                "coverage": coverage[day.index].share,
                "notes": _notes(found, coverage[day.index]),
            }
        )
    return rows


def _notes(found: Mapping[str, Energy], coverage: Coverage) -> list[str]:
    """What a day's numbers rest on, in words."""
    any_rows = any(e.rows_in_day for e in found.values())
    notes = []
    if not any_rows and coverage.share == 0:
        notes.append("no data")
    elif coverage.share == 0:
        notes.append("no collect run logged")
    elif coverage.share < 1:
        notes += coverage.gap_notes()
    if any(e.wraps for e in found.values()):
        notes.append("counter wrap")
    if any(e.resets for e in found.values()):
        notes.append("counter reset")
    if any(e.jumps for e in found.values()):
        notes.append("counter jump")
    power = {name: e for name, e in found.items() if e.from_power}
    labels = {"import": "import", "export": "export"}
    if "import" in power and "export" in power:
        power.pop("export")
        labels["import"] = "import and export"
    for name, energy in power.items():
        label = labels.get(name, name)
        notes.append(
            f"{label} from power, no counter" if not energy.from_counter else f"{label} partly from power"
        )
    if any(e.spans_gap for e in found.values()) and coverage.share < 1:
        notes.append("energy spread over a gap in the data")
    return notes


def _peaks(conn: Connection, series_id: int, days: list[Day]) -> dict[int, tuple[float, datetime]]:
    """Per day, the highest production watts stored and when (the first time, on a tie)."""
    meters = METER_TOTALS
    bounds = rows_param(
        conn, "d", {"i": [d.index for d in days]}, {"s": [d.start for d in days], "e": [d.end for d in days]}
    )
    top = (
        select(meters.c.read_at)
        .where(meters.c.series_id == series_id, meters.c.read_at >= bounds.c.s, meters.c.read_at < bounds.c.e)
        .order_by(meters.c.watts.desc(), meters.c.read_at)
        .limit(1)
        .scalar_subquery()
    )
    # Two steps: joined in one query, the top-1 subquery would be pulled up and run more than once a day.
    times = {i: at for i, at in conn.execute(select(bounds.c.i, top)) if at is not None}
    watts: dict[datetime, float] = {}
    found = sorted(set(times.values()))
    for first in range(0, len(found), IN_LIST):
        query = select(meters.c.read_at, meters.c.watts).where(
            meters.c.series_id == series_id, meters.c.read_at.in_(found[first : first + IN_LIST])
        )
        watts.update((at, float(w)) for at, w in conn.execute(query))
    return {i: (watts[at], at) for i, at in times.items()}


# --- coverage ---


# --- per inverter ---


# --- the power curve ---


# --- JSON ---


def not_below_zero(value: float) -> float:
    return value if math.isnan(value) else max(value, 0.0)
