"""Readings stored only when they change: the series, the newest row of each, and what `latest` shows."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, fields, replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Table, and_, delete, func, select
from sqlalchemy.engine import Connection

from envoylog.db.models import SERIES
from envoylog.db.sql import insert_ignore
from envoylog.db.stored import BATTERY, INVERTER, METER, StoredReadings
from envoylog.readings.model import InverterReading, MeterReading, Snapshot

# --- gateways ---


# --- auth ---


# --- readings ---

_METER_VALUES = tuple(f.name for f in fields(MeterReading) if f.name not in ("kind", "phase", "read_at"))
_INVERTER_VALUES = tuple(f.name for f in fields(InverterReading) if f.name not in ("serial", "reported_at"))
_BATTERY_VALUES = ("soc_percent", "watts", "wh_available")


# A reading is never stored later than this after the run's time: a clock ahead (the gateway's, or the
# collector's before NTP synced) must not leave rows in the future, where they would hide the next readings.
FUTURE_TOLERANCE = timedelta(minutes=2)
# An inverter that keeps reporting the same values (clipped at its maximum, a steady winter trickle) still
# gets a row this often: the newest stored report shows it still reports (`check` tells it from a dead one).
INVERTER_HEARTBEAT = timedelta(minutes=30)


@dataclass
class Saved:
    """What save_snapshot did: rows added per kind; readings moved back to the run's time; future rows."""

    added: dict[str, int]
    clamped: int = 0  # readings dated ahead of the run, stored at the run's time instead
    removed: int = 0  # rows an earlier clock put in the future, taken out so that the series goes on

    def notes(self) -> list[str]:
        """The run log's words for what went wrong with the clocks."""
        notes = []
        if self.clamped:
            notes.append(f"{self.clamped} readings dated ahead of this run: stored at the run's time")
        if self.removed:
            notes.append(
                f"{self.removed} stored readings were dated in the future (a clock that ran ahead): removed"
            )
        return notes


def save_snapshot(
    conn: Connection, gateway_id: int, snapshot: Snapshot, now: datetime | None = None
) -> Saved:
    """Append the readings that differ from the latest stored row of their series.

    With `now` (the run's time), no reading is stored more than FUTURE_TOLERANCE ahead of it, and rows that a
    clock running ahead left in the future of these series are removed first: otherwise no reading would be
    newer than them for hours, and nothing would be stored.
    """
    result = Saved({})
    if now is not None:
        snapshot, result.clamped = _not_ahead(snapshot, now + FUTURE_TOLERANCE, now)
    meters: dict[tuple[str, int, str], Any] = {(m.kind, m.phase, ""): m for m in snapshot.meters}
    inverters = {("inverter", 0, i.serial): i for i in snapshot.inverters}
    batteries = {("battery", 0, b.serial or "acb"): b for b in snapshot.batteries}
    series_ids = find_series_ids(conn, gateway_id, [*meters, *inverters, *batteries])
    kind_of = {sid: key[0] for key, sid in series_ids.items()}
    plans: list[tuple[ReadingTable, dict[tuple[str, int, str], Any]]] = [
        (READING_TABLES["meter"], meters),
        (READING_TABLES["inverter"], inverters),
        (READING_TABLES["battery"], batteries),
    ]
    added = result.added
    for kind, readings in plans:
        data, time_name = kind.stored.data, kind.time_column
        ids = [series_ids[k] for k in readings]
        latest = load_latest_readings(conn, kind, ids)
        if now is not None and any(at > now + FUTURE_TOLERANCE for at, _ in latest.values()):
            gone = conn.execute(
                delete(data).where(data.c.series_id.in_(ids), data.c[time_name] > now + FUTURE_TOLERANCE)
            )
            result.removed += int(gone.rowcount or 0)
            latest = load_latest_readings(conn, kind, ids)
        heartbeat = INVERTER_HEARTBEAT if kind.stored is INVERTER else None
        rows = []
        for key, reading in readings.items():
            sid = series_ids[key]
            at = getattr(reading, time_name)
            # Compared as stored: a reading finer than the stored thousandths is no change.
            values = kind.stored.quantize({name: getattr(reading, name) for name in kind.value_columns})
            if is_new(latest.get(sid), at, values, heartbeat):
                rows.append({"series_id": sid, time_name: at, **kind.stored.encode(values)})
        for sid in insert_ignore(conn, data, rows, ["series_id", time_name]):
            added[kind_of[sid]] = added.get(kind_of[sid], 0) + 1
    return result


def _not_ahead(snapshot: Snapshot, limit: datetime, now: datetime) -> tuple[Snapshot, int]:
    """The snapshot with every reading dated after `limit` moved to `now`; how many were moved."""
    moved = 0

    def fix(reading: Any, name: str) -> Any:
        nonlocal moved
        if getattr(reading, name) <= limit:
            return reading
        moved += 1
        return replace(reading, **{name: now})

    fixed = Snapshot(
        meters=[fix(r, "read_at") for r in snapshot.meters],
        inverters=[fix(r, "reported_at") for r in snapshot.inverters],
        batteries=[fix(r, "read_at") for r in snapshot.batteries],
    )
    return fixed, moved


def is_new(
    latest: tuple[datetime, dict[str, Any]] | None,
    at: datetime,
    values: dict[str, Any],
    heartbeat: timedelta | None = None,
) -> bool:
    """The change-detection rule: a reading is stored when it is later than the newest row and differs, or
    (with `heartbeat`) when the newest row is that much older: an inverter still reporting the same values."""
    if latest is None:
        return True
    latest_at, latest_values = latest
    if at <= latest_at:
        return False
    return values != latest_values or (heartbeat is not None and at - latest_at >= heartbeat)


def find_series_ids(
    conn: Connection, gateway_id: int, keys: list[tuple[str, int, str]]
) -> dict[tuple[str, int, str], int]:
    """The ids of a gateway's series by (kind, phase, device), adding those that are new."""
    if not keys:
        return {}
    rows = [{"gateway_id": gateway_id, "kind": k, "phase": p, "device": d} for k, p, d in keys]
    insert_ignore(conn, SERIES, rows, ["gateway_id", "kind", "phase", "device"])
    found = conn.execute(
        select(SERIES.c.id, SERIES.c.kind, SERIES.c.phase, SERIES.c.device).where(
            SERIES.c.gateway_id == gateway_id
        )
    )
    return {(kind, phase, device): sid for sid, kind, phase, device in found}


def _latest_values(
    conn: Connection,
    table: Table,
    time_column: str,
    series_ids: list[int],
    names: Sequence[str],
    before: datetime | None = None,
) -> dict[int, tuple[datetime, dict[str, Any]]]:
    """The newest row of each series, or its newest before `before` (one index lookup per series).

    The series drive the query: a top-1 lookup for each, then the row at that key. Driven by the readings
    (`WHERE series_id IN … AND time = (newest of the series)`), SQLite ran the subquery for every stored row
    of the series, a cost that grew with the history on every run.
    """
    if not series_ids:
        return {}
    series = SERIES
    condition = table.c.series_id == series.c.id
    if before is not None:
        condition = and_(condition, table.c[time_column] < before)
    newest = select(func.max(table.c[time_column])).where(condition).correlate(series).scalar_subquery()
    # OFFSET 0 keeps the planner from merging `chosen` into the join, which would run the lookups per row.
    chosen = (
        select(series.c.id.label("sid"), newest.label("at"))
        .where(series.c.id.in_(series_ids))
        .offset(0)
        .subquery("chosen")
    )
    query = select(table).join(
        chosen, and_(table.c.series_id == chosen.c.sid, table.c[time_column] == chosen.c.at)
    )
    result = {}
    for row in conn.execute(query).mappings():
        result[row["series_id"]] = (row[time_column], {name: row[name] for name in names})
    return result


@dataclass(frozen=True)
class ReadingTable:
    """A kind of reading: how it is stored, and the value columns that change detection compares."""

    stored: StoredReadings
    value_columns: tuple[str, ...]

    @property
    def table(self) -> Table:
        """The view the readings are read from."""
        return self.stored.view

    @property
    def time_column(self) -> str:
        return self.stored.time_column


READING_TABLES = {
    "meter": ReadingTable(METER, _METER_VALUES),
    "inverter": ReadingTable(INVERTER, _INVERTER_VALUES),
    "battery": ReadingTable(BATTERY, _BATTERY_VALUES),
}


def load_latest_readings(
    conn: Connection, table: ReadingTable, series_ids: list[int], before: datetime | None = None
) -> dict[int, tuple[datetime, dict[str, Any]]]:
    """The newest stored row of each series (before `before`): its time and the values it compares."""
    return _latest_values(conn, table.table, table.time_column, series_ids, table.value_columns, before)


# --- runs ---


# --- what is stored ---


@dataclass(frozen=True)
class LatestRow:
    """The newest stored reading of one series."""

    kind: str
    phase: int
    device: str
    at: datetime
    values: dict[str, Any]


def load_latest(conn: Connection, gateway_id: int) -> list[LatestRow]:
    """The newest row of every series of a gateway."""
    series = {
        sid: (kind, phase, device)
        for sid, kind, phase, device in conn.execute(
            select(SERIES.c.id, SERIES.c.kind, SERIES.c.phase, SERIES.c.device).where(
                SERIES.c.gateway_id == gateway_id
            )
        )
    }
    rows: list[LatestRow] = []
    for table in READING_TABLES.values():
        for sid, (at, values) in load_latest_readings(conn, table, list(series)).items():
            kind, phase, device = series[sid]
            rows.append(LatestRow(kind, phase, device, at, values))
    return rows


def count_rows(conn: Connection, gateway_id: int) -> dict[str, int]:
    """Stored reading rows of a gateway, per table."""
    counts = {}
    for name, kind in READING_TABLES.items():
        table = kind.stored.data
        query = (
            select(func.count())
            .select_from(table.join(SERIES, table.c.series_id == SERIES.c.id))
            .where(SERIES.c.gateway_id == gateway_id)
        )
        counts[name] = int(conn.execute(query).scalar_one())
    return counts


def count_rows_by_gateway(
    conn: Connection, gateway_ids: Collection[int] | None = None
) -> dict[int, dict[str, int]]:
    """Stored reading rows per table of every gateway (or of those in `gateway_ids`), one query per table.

    Counting reads every row counted (an index-only scan at best): its cost grows with what is stored.
    """
    counts: dict[int, dict[str, int]] = {}
    for name, kind in READING_TABLES.items():
        table = kind.stored.data
        per_series = select(table.c.series_id, func.count().label("rows")).group_by(table.c.series_id)
        if gateway_ids is not None:
            mine = select(SERIES.c.id).where(SERIES.c.gateway_id.in_(list(gateway_ids)))
            per_series = per_series.where(table.c.series_id.in_(mine))
        counted = per_series.subquery("counted")
        query = (
            select(SERIES.c.gateway_id, func.sum(counted.c.rows))
            .join(counted, counted.c.series_id == SERIES.c.id)
            .group_by(SERIES.c.gateway_id)
        )
        for gateway_id, rows in conn.execute(query):
            counts.setdefault(gateway_id, {"meter": 0, "inverter": 0, "battery": 0})[name] = int(rows)
    return counts
