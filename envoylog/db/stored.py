"""How readings are stored: tables of integers, and views under the readings' names that show them as floats.

Every value is kept as an integer in thousandths of its unit (milliwatts, milliwatt-hours, millivolts,
milliamperes, millihertz, thousandths of a power factor, of a percent, of a degree), an inverter's energy in
whole joules, and a meter's source as a small code. The gateway reports no value finer than that (its JSON has
at most three decimals; device data comes in mV, mA and mHz), so nothing is lost, and an integer takes one to
six bytes in SQLite where a float takes eight (four in PostgreSQL for all but the lifetime counters).

Readers read the views (`inverter_readings`, `battery_readings`, `meter_readings`: views.py): they divide in
the database, which gives the same float as the gateway's decimal, so reports, `check`, exports, Grafana and
notebooks see the rows they always saw. Writers write the `*_data` tables, through `encode`; a collect reads
the newest rows of the tables themselves (`decode`), and never loads the views.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    ForeignKey,
    Integer,
    SmallInteger,
    Table,
    case,
)
from sqlalchemy.sql.elements import ColumnElement

from envoylog.db.models import METADATA
from envoylog.db.types import UtcDateTime

# The meter's sources, by code: 0 and 1 take no bytes at all in a SQLite row.
SOURCES = ("eim", "meters", "api_v1", "inverters")
SOURCE_CODES = {name: code for code, name in enumerate(SOURCES)}

MILLI = 1000  # the stored integer per unit
WHOLE = 1

# Value columns in their stored types and scales. PostgreSQL lays a row out in column order: the migrations
# put the eight-byte columns first, then the four- and two-byte ones, so that none is padded.
_INVERTER = (
    ("joules_lifetime", BigInteger, WHOLE),
    ("watts", Integer, MILLI),
    ("max_watts", Integer, MILLI),
    ("ac_volts", Integer, MILLI),
    ("ac_amps", SmallInteger, MILLI),  # plausible.py: at most 32 A, so a milliampere count fits two bytes
    ("dc_volts", Integer, MILLI),
    ("dc_amps", SmallInteger, MILLI),
    ("hz", Integer, MILLI),
    ("temperature_c", Integer, MILLI),
)
_BATTERY = (
    ("wh_available", BigInteger, MILLI),
    ("soc_percent", Integer, MILLI),
    ("watts", Integer, MILLI),
)
_REQUIRED = {"inverter": ("watts",), "battery": ()}


def _data_table(name: str, time: str, values: Any, source: bool, required: tuple[str, ...]) -> Table:
    columns: list[Column[Any]] = [
        Column("series_id", Integer, ForeignKey("series.id", ondelete="CASCADE"), primary_key=True),
        Column(time, UtcDateTime, primary_key=True),
        *[Column(column, kind, nullable=column not in required) for column, kind, _ in values],
    ]
    if source:
        columns.append(Column("source", SmallInteger, nullable=False))
    # On SQLite the rows live in the key's index (WITHOUT ROWID), as migrations 0010-0011 made them. Not
    # declared here: a dialect's option makes SQLAlchemy load that dialect, SQLite's on PostgreSQL too.
    return Table(name, METADATA, *columns)


@dataclass(frozen=True)
class StoredReadings:
    """One kind of reading: the table writers write, its view's columns, and how a value is stored."""

    data: Table
    time_column: str
    scales: Mapping[str, int]  # value column -> stored integers per unit
    view_columns: tuple[str, ...]  # the view's value columns (db/views.py), in the old tables' order

    def decode(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """A stored row's values as the view gives them: floats in their units."""
        return {name: None if (v := values[name]) is None else v / self.scales[name] for name in values}

    def encode(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """A row's values as stored: integers in their units, the source as its code."""
        return {name: encode_value(name, value, self.scales) for name, value in values.items()}

    def quantize(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """The values as the view gives them back: what change detection compares with the newest row."""
        out = {}
        for name, value in values.items():
            scale = self.scales.get(name)
            out[name] = value if scale is None else quantize(value, scale)
        return out


def meter_source(column: ColumnElement[Any]) -> ColumnElement[Any]:
    """A meter's source code as its name, in SQL."""
    return case(*((column == code, name) for code, name in enumerate(SOURCES)))


def quantize(value: float | None, scale: int) -> float | None:
    """A value as it is stored and read back: rounded to 1/scale of its unit."""
    return value if value is None else round(value * scale) / scale


def encode_value(name: str, value: Any, scales: Mapping[str, int]) -> Any:
    if value is None:
        return None
    if name == "source":
        return SOURCE_CODES[value]
    scale = scales.get(name)
    return value if scale is None else round(value * scale)


def _readings(name: str, time: str, values: Any, order: tuple[str, ...]) -> StoredReadings:
    """`order`: the view's columns, in the order of the float tables the readings had before (0009)."""
    source = "source" in order
    return StoredReadings(
        data=_data_table(f"{name}_data", time, values, source, _REQUIRED[name]),
        time_column=time,
        scales={column: scale for column, _, scale in values},
        view_columns=order,
    )


INVERTER = _readings(
    "inverter",
    "reported_at",
    _INVERTER,
    (
        "watts",
        "max_watts",
        "joules_lifetime",
        "ac_volts",
        "ac_amps",
        "dc_volts",
        "dc_amps",
        "hz",
        "temperature_c",
    ),
)
BATTERY = _readings("battery", "read_at", _BATTERY, ("soc_percent", "watts", "wh_available"))
