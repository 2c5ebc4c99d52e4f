"""The readings as readers see them: the views that show the stored integers as floats, under the names and
in the column order of the tables they replaced (migrations 0010 and 0011 make them).

Reports, exports and `check` read these; a collect writes the tables and reads their newest rows itself, so it
never loads this module. The views are not part of the schema's metadata: the comparison of models and
migrations looks at tables only.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Column, Double, Integer, MetaData, String, Table

from envoylog.db.meters import VIEW_COLUMNS
from envoylog.db.stored import BATTERY, INVERTER
from envoylog.db.types import UtcDateTime

VIEWS = MetaData()


def _view(name: str, time: str, order: tuple[str, ...]) -> Table:
    columns: list[Column[Any]] = [
        Column("series_id", Integer, primary_key=True),
        Column(time, UtcDateTime, primary_key=True),
    ]
    columns += [Column(column, String(16) if column == "source" else Double) for column in order]
    return Table(name, VIEWS, *columns)


METER_TOTALS = _view("meter_totals", "read_at", VIEW_COLUMNS)  # the totals (phase 0), in the key's order
METER_READINGS = _view("meter_readings", "read_at", VIEW_COLUMNS)  # every phase
INVERTER_READINGS = _view("inverter_readings", INVERTER.time_column, INVERTER.view_columns)
BATTERY_READINGS = _view("battery_readings", BATTERY.time_column, BATTERY.view_columns)
