"""Energy per inverter and local day: from joules counters where reported, else from watts over time."""

from __future__ import annotations

from datetime import date
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    Engine,
    select,
)
from sqlalchemy.engine import Connection

from envoylog.db.models import SERIES
from envoylog.reports.columns import INVERTER_COLUMNS
from envoylog.reports.common import Day, connection, gateway_ids, local_days
from envoylog.reports.counters import INVERTER_MEASURE, INVERTER_ROWS, day_energies
from envoylog.reports.coverage import day_coverage

if TYPE_CHECKING:
    import pandas as pd


def inverter_report(
    db: Engine | str, start: date, end: date, *, timezone: str, gateway: str | None = None
) -> pd.DataFrame:
    """Energy per inverter and local day: from joules counters where reported, else from watts over time."""
    return inverter_frame(inverter_rows(db, start, end, timezone=timezone, gateway=gateway))


def inverter_rows(
    db: Engine | str, start: date, end: date, *, timezone: str, gateway: str | None = None
) -> list[dict[str, Any]]:
    """The rows of `inverter_report`, as dicts with its columns: the queries, without pandas."""
    days = local_days(start, end, timezone)
    rows: list[dict[str, Any]] = []
    with connection(db) as conn:
        for gateway_id, serial in gateway_ids(conn, gateway):
            rows += _inverter_days(conn, gateway_id, serial, days)
    return rows


def inverter_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """The DataFrame of `inverter_report` from the rows of `inverter_rows`."""
    import pandas as pd

    frame = pd.DataFrame(rows, columns=INVERTER_COLUMNS)
    frame["wh"] = frame["wh"].astype("float64")
    return frame


def _inverter_days(conn: Connection, gateway_id: int, serial: str, days: list[Day]) -> list[dict[str, Any]]:
    query = (
        select(SERIES.c.id, SERIES.c.device)
        .where(SERIES.c.gateway_id == gateway_id, SERIES.c.kind == "inverter")
        .order_by(SERIES.c.device)
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
