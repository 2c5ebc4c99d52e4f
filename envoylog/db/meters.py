"""Meter readings as stored: a row per channel and time, its total and its phases side by side.

The gateway reads a channel (production, net consumption, consumption) whole: the total and up to three
phases at one time. A row per phase cost each of them a key, a record header and, on PostgreSQL, a tuple
header and an index entry (some 60 bytes before the first value); here the four share one row, keyed by the
channel's total series (phase 0) and the time. Each phase's columns are a slot: the total's bear the values'
names, L1's the prefix `l1_`, and so on.

A slot is empty (its watts NULL) when its phase had no new reading at that time: change detection stays per
phase, and every stored reading is one filled slot.

Encodings keep every value in fewer bytes; the views (migration 0011) and `decode_row` undo them:
- a total's amps and counters are stored minus the phases in the same row: what is left is the
  gateway's rounding, zero or a few thousandths, which SQLite stores in one byte or none;
- a value that follows from the others in the row is not stored (NULL): a counter that is exactly imported
  minus exported (a net channel's, as the collector computes it), a phase's frequency that is the total's
  (one grid), a total's voltage that is the mean of three phases' (as the collector makes it). Where such a
  value is unknown although the others are known, -1 is stored (no voltage or frequency is negative).
NULL costs nothing in either database; a small number costs SQLite one byte or none, but PostgreSQL its
column's width, so the NULLs are what shrink a PostgreSQL row.

Readers read the views (views.py): `meter_totals` (the totals, a plain projection that keeps the key's order
for the reports) and `meter_readings` (every slot as a row of its phase's series, for Grafana and SQL); the
export reads each slot from the table (`decoded_columns`), in the key's order.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    Double,
    ForeignKey,
    Integer,
    PrimaryKeyConstraint,
    SmallInteger,
    Table,
    case,
    cast,
    func,
)
from sqlalchemy.sql.elements import ColumnElement

from envoylog.db.models import METADATA
from envoylog.db.stored import MILLI, SOURCES, meter_source
from envoylog.db.types import UtcDateTime

KINDS = ("production", "consumption", "net_consumption")  # the channels: series of these kinds
SLOTS = ("", "l1_", "l2_", "l3_")  # the total (phase 0), then L1..L3: a slot's column prefix by phase
PHASES = range(len(SLOTS))

COUNTERS = ("wh_lifetime", "wh_imported_lifetime", "wh_exported_lifetime")  # BIGINT
MEASURES = ("watts", "volts", "amps", "hz")  # INTEGER
RATIOS = ("power_factor",)  # SMALLINT
VALUES = (*COUNTERS, *MEASURES, *RATIOS)  # every slot's columns, in thousandths of their units

# A total's watts stay whole: reports order a day's rows by them (the peak), which a sum per row would slow.
RESIDUAL = ("wh_lifetime", "wh_imported_lifetime", "wh_exported_lifetime", "amps")
# Stored where a value is unknown but its derived form would give one: no voltage or frequency is negative
# (readings/plausible.py keeps them in bounds).
UNKNOWN = -1
# The readings' columns as the views give them, in the order of the float tables (0009).
VIEW_COLUMNS = (
    "source",
    "watts",
    "wh_lifetime",
    "wh_imported_lifetime",
    "wh_exported_lifetime",
    "volts",
    "amps",
    "hz",
    "power_factor",
)


def _columns() -> list[Column[Any]]:
    # PostgreSQL lays a row out in column order: the eight-byte ones first, so that none is padded.
    kinds = ((COUNTERS, BigInteger), (MEASURES, Integer), (RATIOS, SmallInteger))
    columns: list[Column[Any]] = [Column("read_at", UtcDateTime, nullable=False)]
    for names, kind in kinds:
        if kind is Integer:
            series = ForeignKey("series.id", ondelete="CASCADE")
            columns.append(Column("series_id", Integer, series, nullable=False))
        columns += [Column(f"{prefix}{name}", kind) for prefix in SLOTS for name in names]
    columns.append(Column("source", SmallInteger, nullable=False))
    return columns


# On SQLite the rows live in the key's index (WITHOUT ROWID), as migration 0011 made the table: not declared
# here, where a dialect's option would make SQLAlchemy load that dialect on the other database too.
METER_DATA = Table("meter_data", METADATA, *_columns(), PrimaryKeyConstraint("series_id", "read_at"))


def slot(phase: int, name: str) -> str:
    """A value's column in a phase's slot."""
    return f"{SLOTS[phase]}{name}"


# --- encoding (Python) ---


def encode_row(
    series_id: int, at: Any, source: str, phases: Mapping[int, Mapping[str, int | None]]
) -> dict[str, Any]:
    """The stored row of a channel's readings at one time: `phases` holds each present phase's values as
    integers in thousandths (phase 0 the total); absent phases leave their slot empty."""
    row: dict[str, Any] = {"series_id": series_id, "read_at": at, "source": SOURCES.index(source)}
    for phase in PHASES:
        values = phases.get(phase)
        for name in VALUES:
            row[slot(phase, name)] = None if values is None else values.get(name)
    total = phases.get(0)
    total_hz = None if total is None else total.get("hz")
    for phase, values in phases.items():
        if _derived_counter(values):
            row[slot(phase, "wh_lifetime")] = None
        if phase and total_hz is not None:
            hz = values.get("hz")
            row[slot(phase, "hz")] = UNKNOWN if hz is None else None if hz == total_hz else hz
    if total is not None:
        for name in RESIDUAL:
            if name == "wh_lifetime" and _derived_counter(total):
                continue
            value = total.get(name)
            if value is not None:
                row[name] = value - sum((phases[p].get(name) or 0) for p in phases if p)
        mean = _mean_volts([phases[p].get("volts") if p in phases else None for p in (1, 2, 3)])
        if mean is not None:
            volts = total.get("volts")
            row["volts"] = UNKNOWN if volts is None else None if volts == mean else volts
    return row


def _mean_volts(volts: list[int | None]) -> int | None:
    """The three phases' mean voltage to the millivolt (half up), as the collector makes a total's."""
    if any(value is None for value in volts):
        return None
    return (sum(value for value in volts if value is not None) + 1) // 3


def _derived_counter(values: Mapping[str, int | None]) -> bool:
    imported, exported = values.get("wh_imported_lifetime"), values.get("wh_exported_lifetime")
    counter = values.get("wh_lifetime")
    return (
        counter is not None
        and imported is not None
        and exported is not None
        and counter == imported - exported
    )


def decode_row(row: Mapping[str, Any]) -> dict[int, dict[str, int | None]]:
    """A stored row's readings by phase, as integers in thousandths (the inverse of `encode_row`)."""
    phases = {
        phase: {name: row[slot(phase, name)] for name in VALUES}
        for phase in PHASES
        if row[slot(phase, "watts")] is not None
    }
    total = phases.pop(0, None)
    for values in phases.values():
        if total is not None and total["hz"] is not None:
            values["hz"] = total["hz"] if values["hz"] is None else _known(values["hz"])
        _undo_derived_counter(values)
    if total is not None:
        for name in RESIDUAL:
            if total[name] is not None:
                total[name] += sum((values[name] or 0) for values in phases.values())
        _undo_derived_counter(total)
        mean = _mean_volts([row[slot(p, "volts")] for p in (1, 2, 3)])
        if mean is not None:
            total["volts"] = mean if total["volts"] is None else _known(total["volts"])
        phases[0] = total
    return phases


def _known(value: int) -> int | None:
    return None if value == UNKNOWN else value


def _undo_derived_counter(values: dict[str, int | None]) -> None:
    imported, exported = values["wh_imported_lifetime"], values["wh_exported_lifetime"]
    if values["wh_lifetime"] is None and imported is not None and exported is not None:
        values["wh_lifetime"] = imported - exported


# --- decoding (SQL), for readers that read the table itself ---


def _stored(phase: int, name: str) -> ColumnElement[Any]:
    return cast(METER_DATA.c[slot(phase, name)], BigInteger)


def _phases_sum(name: str) -> ColumnElement[Any]:
    """The phases' values in the row, an empty slot or unknown value as 0: what a total is stored minus."""
    total: ColumnElement[Any] = func.coalesce(_decoded_integer(1, name), 0)
    for phase in (2, 3):
        total = total + func.coalesce(_decoded_integer(phase, name), 0)
    return total


def _decoded_integer(phase: int, name: str) -> ColumnElement[Any]:
    """A value of a phase's slot as the integer it was (thousandths), in SQL: `decode_row`'s rules."""
    stored = _stored(phase, name)
    if name == "wh_lifetime":
        plain = stored + _phases_sum(name) if phase == 0 else stored
        imported = _decoded_integer(phase, "wh_imported_lifetime")
        return func.coalesce(plain, imported - _decoded_integer(phase, "wh_exported_lifetime"))
    if phase == 0 and name in RESIDUAL:
        return stored + _phases_sum(name)
    if phase and name == "hz":
        total = _stored(0, "hz")
        return case((stored.is_(None), total), (stored == UNKNOWN, None), else_=stored)
    if phase == 0 and name == "volts":
        mean = (_stored(1, "volts") + _stored(2, "volts") + _stored(3, "volts") + 1) // 3
        return case((stored.is_(None), mean), (stored == UNKNOWN, None), else_=stored)
    return stored


def decoded_columns(phase: int) -> list[ColumnElement[Any]]:
    """A phase's readings in the views' columns and units (floats; the source as its name)."""
    columns: list[ColumnElement[Any]] = []
    for name in VIEW_COLUMNS:
        if name == "source":
            columns.append(meter_source(METER_DATA.c.source).label(name))
        else:
            columns.append((cast(_decoded_integer(phase, name), Double) / MILLI).label(name))
    return columns


def present(phase: int) -> ColumnElement[bool]:
    """The rows whose slot holds a reading of this phase."""
    return METER_DATA.c[slot(phase, "watts")].is_not(None)
