"""Daily yield, per-inverter energy and power curves as DataFrames (SPEC section 6). The SQL does the work.

A report reads a handful of rows per series and day, whatever the polling rate: lifetime counters are read off
at each local midnight with two index lookups (the last row at or before it, the first at or after it) and
interpolated linearly between them. Only a day whose counters do not add up (a drop, a jump, a change of
source, a missing counter) is examined row by row, with a window over that day's rows alone; there a power
estimate replaces what the counter cannot tell. Peak power is a top-1 lookup per day over the (series, time)
key, and coverage a count of five-minute buckets holding a run, made exact for the days with an empty one.

Rows are stored only when a reading changes, so between two rows a reading held its value while the logger
was running; across a silence of the logger (no successful run) a power holds for 15 minutes at most.
"""

from __future__ import annotations

from datetime import date
from typing import Any

import pandas as pd
from sqlalchemy import (
    Engine,
    select,
)
from sqlalchemy.engine import Connection

from envoylog.db.models import Series
from envoylog.reports.columns import INVERTER_COLUMNS
from envoylog.reports.common import Day, connection, gateway_ids, local_days
from envoylog.reports.counters import INVERTER_MEASURE, INVERTER_ROWS, day_energies
from envoylog.reports.coverage import day_coverage


def inverter_report(
    db: Engine | str, start: date, end: date, *, timezone: str, gateway: str | None = None
) -> pd.DataFrame:
    """Energy per inverter and local day: from joules counters where reported, else from watts over time."""
    days = local_days(start, end, timezone)
    rows: list[dict[str, Any]] = []
    with connection(db) as conn:
        for gateway_id, serial in gateway_ids(conn, gateway):
            rows += _inverter_days(conn, gateway_id, serial, days)
    frame = pd.DataFrame(rows, columns=INVERTER_COLUMNS)
    frame["wh"] = frame["wh"].astype("float64")
    return frame


def _inverter_days(conn: Connection, gateway_id: int, serial: str, days: list[Day]) -> list[dict[str, Any]]:
    query = (
        select(Series.id, Series.device)
        .where(Series.gateway_id == gateway_id, Series.kind == "inverter")
        .order_by(Series.device)
    )
    inverters = [(sid, device) for sid, device in conn.execute(query)]
    if not inverters:
        return []
    measures = {sid: (INVERTER_MEASURE,) for sid, _ in inverters}
    energies = day_energies(conn, INVERTER_ROWS, measures, days, day_coverage(conn, gateway_id, days))
    rows = []
    for day in days:
        for sid, device in inverters:
            energy = energies[(sid, INVERTER_MEASURE.name, day.index)]
            basis = "watts" if energy.from_power and not energy.from_counter else "joules"
            rows.append(
                {"gateway": serial, "day": day.day, "serial": device, "wh": energy.wh, "basis": basis}
            )
    return rows
