"""The power curve of one day: the stored power readings of every site channel aligned on time."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date

import pandas as pd
from sqlalchemy import (
    Engine,
    select,
)

from envoylog.db.views import METER_TOTALS
from envoylog.reports.columns import CURVE_COLUMNS
from envoylog.reports.common import connection, gateway_ids, local_days, site_series
from envoylog.reports.counters import MAX_HOLD_S


def power_curve(db: Engine | str, day: date, *, timezone: str, gateway: str | None = None) -> pd.DataFrame:
    """The stored power readings (all phases) of one local day, aligned on time; a value holds 15 minutes."""
    (the_day,) = local_days(day, day, timezone)
    meters = METER_TOTALS
    frames = []
    with connection(db) as conn:
        for gateway_id, serial in gateway_ids(conn, gateway):
            series = site_series(conn, gateway_id)
            query = (
                select(meters.c.series_id, meters.c.read_at, meters.c.watts)
                .where(
                    meters.c.series_id.in_(list(series.values())),
                    meters.c.read_at >= the_day.start,
                    meters.c.read_at < the_day.end,
                )
                .order_by(meters.c.read_at)
            )
            readings = pd.DataFrame(conn.execute(query).all(), columns=["series_id", "at", "watts"])
            frames.append(_aligned_curve(serial, series, readings))
    if not frames:
        return pd.DataFrame(columns=CURVE_COLUMNS)
    return pd.concat(frames, ignore_index=True)


def _aligned_curve(serial: str, series: Mapping[str, int], readings: pd.DataFrame) -> pd.DataFrame:
    """One row per stored time, each channel's last value within MAX_HOLD_S (NaN after a longer gap)."""
    readings["at"] = pd.to_datetime(readings["at"], utc=True)
    times = pd.DataFrame({"at": readings["at"].drop_duplicates().sort_values(ignore_index=True)})
    curve = times
    for kind, name in (
        ("production", "production_watts"),
        ("consumption", "consumption_watts"),
        ("net_consumption", "net_watts"),
    ):
        channel = readings.loc[readings["series_id"] == series.get(kind, -1), ["at", "watts"]].rename(
            columns={"watts": name}
        )
        curve = pd.merge_asof(
            curve, channel, on="at", direction="backward", tolerance=pd.Timedelta(seconds=MAX_HOLD_S)
        )
    curve.insert(0, "gateway", serial)
    return curve[CURVE_COLUMNS]
