"""Readings stored only when they change: the series, the newest row of each, and what `latest` shows."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, fields, replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Table, and_, delete, func, select
from sqlalchemy.engine import Connection

from envoylog.db.meters import KINDS, METER_DATA, PHASES, decode_row, encode_row, present, slot
from envoylog.db.models import SERIES
from envoylog.db.sql import dialect_insert, insert_ignore
from envoylog.db.stored import BATTERY, INVERTER, MILLI, SOURCES, StoredReadings, quantize
from envoylog.readings.model import InverterReading, MeterReading, Snapshot

METER_VALUES = tuple(f.name for f in fields(MeterReading) if f.name not in ("kind", "phase", "read_at"))
_METER_NUMBERS = tuple(name for name in METER_VALUES if name != "source")
_INVERTER_VALUES = tuple(f.name for f in fields(InverterReading) if f.name not in ("serial", "reported_at"))
_BATTERY_VALUES = ("soc_percent", "watts", "wh_available")


# A reading is never stored later than this after the run's time: a clock ahead (the gateway's, or the
# collector's before NTP synced) must not leave rows in the future, where they would hide the next readings.
FUTURE_TOLERANCE = timedelta(minutes=2)
# An inverter that keeps reporting the same values (clipped at its maximum, a steady winter trickle) still
# gets a row this often: the newest stored report shows it still reports (`check` tells it from a dead one).
INVERTER_HEARTBEAT = timedelta(minutes=30)
# How far back from its channel's newest row a phase's newest reading is looked for (load_latest_meters).
PHASE_LOOKBACK = timedelta(days=7)


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
    # A channel's rows hang on its total's series, which exists even if only its phases are read.
    channels = {(kind, 0, "") for kind, _, _ in meters}
    series_ids = find_series_ids(
        conn, gateway_id, [*meters, *(channels - meters.keys()), *inverters, *batteries]
    )
    if meters:
        _save_meters(conn, series_ids, meters, now, result)
    kind_of = {sid: key[0] for key, sid in series_ids.items()}
    plans: list[tuple[ReadingTable, dict[tuple[str, int, str], Any]]] = [
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


def _save_meters(
    conn: Connection,
    series_ids: dict[tuple[str, int, str], int],
    meters: dict[tuple[str, int, str], Any],
    now: datetime | None,
    result: Saved,
) -> None:
    """The meter readings that changed, a row per channel and time with each changed phase in its slot."""
    wanted = {series_ids[key]: (series_ids[(key[0], 0, "")], key[1]) for key in meters}
    channels = sorted({channel for channel, _ in wanted.values()})
    latest = load_latest_meters(conn, wanted)
    if now is not None and any(at > now + FUTURE_TOLERANCE for at, _ in latest.values()):
        gone = conn.execute(
            delete(METER_DATA).where(
                METER_DATA.c.series_id.in_(channels), METER_DATA.c.read_at > now + FUTURE_TOLERANCE
            )
        )
        result.removed += int(gone.rowcount or 0)
        latest = load_latest_meters(conn, wanted)
    changed: dict[tuple[int, datetime], dict[int, Any]] = {}
    kinds = {}
    for key, reading in meters.items():
        sid = series_ids[key]
        channel, phase = wanted[sid]
        values = {name: getattr(reading, name) for name in METER_VALUES}
        values.update({name: quantize(values[name], MILLI) for name in _METER_NUMBERS})
        if is_new(latest.get(sid), reading.read_at, values):
            # Stored to the second: the key a row's phases share.
            changed.setdefault((channel, reading.read_at.replace(microsecond=0)), {})[phase] = reading
            kinds[channel] = key[0]
    rows = [_meter_row(channel, at, phases) for (channel, at), phases in changed.items()]
    if not rows:
        return
    insert = (
        dialect_insert(conn)(METER_DATA)
        .values(rows)
        .on_conflict_do_nothing(index_elements=["series_id", "read_at"])
    )
    inserted = {
        (sid, at) for sid, at in conn.execute(insert.returning(METER_DATA.c.series_id, METER_DATA.c.read_at))
    }
    for (channel, at), phases in changed.items():
        if (channel, at) in inserted:
            result.added[kinds[channel]] = result.added.get(kinds[channel], 0) + len(phases)


def _meter_row(channel: int, at: datetime, phases: dict[int, Any]) -> dict[str, Any]:
    source = next(iter(phases.values())).source
    encoded = {
        phase: {
            name: None if (v := getattr(r, name)) is None else round(v * MILLI) for name in _METER_NUMBERS
        }
        for phase, r in phases.items()
    }
    return encode_row(channel, at, source, encoded)


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
    def time_column(self) -> str:
        return self.stored.time_column


# The meters are stored a channel to a row (`db/meters.py`): see load_latest_meters and _save_meters.
READING_TABLES = {
    "inverter": ReadingTable(INVERTER, _INVERTER_VALUES),
    "battery": ReadingTable(BATTERY, _BATTERY_VALUES),
}


def load_latest_readings(
    conn: Connection, table: ReadingTable, series_ids: list[int], before: datetime | None = None
) -> dict[int, tuple[datetime, dict[str, Any]]]:
    """The newest stored row of each series (before `before`): its time and the values it compares, as the
    readings' view gives them."""
    stored = table.stored
    found = _latest_values(conn, stored.data, table.time_column, series_ids, table.value_columns, before)
    return {sid: (at, stored.decode(values)) for sid, (at, values) in found.items()}


def load_latest_meters(
    conn: Connection, wanted: Mapping[int, tuple[int, int]], before: datetime | None = None
) -> dict[int, tuple[datetime, dict[str, Any]]]:
    """The newest stored reading of each meter series (before `before`) and its values.

    `wanted` maps each series to its channel (the total's series, which keys the rows) and its phase. One
    lookup per channel for its newest row, and one more for a phase whose slot is empty there (a phase that
    did not change at that time), which looks back PHASE_LOOKBACK from that row at most: a phase silent for
    longer counts as having no reading, so its next one is stored anew (one row more), and `status` and the
    handoffs leave it out meanwhile. Unbounded, a phase no longer read would make every run (with a handoff)
    read its channel's history back to that phase's last reading. A week holds a total whose gateway time
    lags its phases' by days (a capture of firmware 7.6.175 has one).
    """
    if not wanted:
        return {}
    channels = sorted({channel for channel, _ in wanted.values()})
    names = [column.name for column in METER_DATA.columns]
    newest = _latest_values(conn, METER_DATA, "read_at", channels, names, before)
    found = {}
    for sid, (channel, phase) in wanted.items():
        row = newest[channel][1] if channel in newest else None
        if row is not None and row[slot(phase, "watts")] is None:
            row = _newest_with(conn, channel, phase, row["read_at"])
        if row is not None:
            values = decode_row(row)[phase]
            readable = {name: None if (v := values[name]) is None else v / MILLI for name in _METER_NUMBERS}
            found[sid] = (row["read_at"], {"source": SOURCES[row["source"]], **readable})
    return found


def _newest_with(conn: Connection, channel: int, phase: int, newest: datetime) -> Any:
    """A channel's newest row with a reading of this phase, looking back from its row at `newest`."""
    at = METER_DATA.c.read_at
    query = select(METER_DATA).where(
        METER_DATA.c.series_id == channel, present(phase), at <= newest, at >= newest - PHASE_LOOKBACK
    )
    return conn.execute(query.order_by(METER_DATA.c.read_at.desc()).limit(1)).mappings().first()


def meter_series(series: Mapping[int, tuple[str, int, str]]) -> dict[int, tuple[int, int]]:
    """Each meter series of `series` (id -> kind, phase, device) with its channel and phase."""
    channel_of = {
        (kind, device): sid for sid, (kind, phase, device) in series.items() if phase == 0 and kind in KINDS
    }
    return {
        sid: (channel_of[(kind, device)], phase)
        for sid, (kind, phase, device) in series.items()
        if kind in KINDS and (kind, device) in channel_of
    }


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
    for sid, (at, values) in load_latest_meters(conn, meter_series(series)).items():
        kind, phase, device = series[sid]
        rows.append(LatestRow(kind, phase, device, at, values))
    for table in READING_TABLES.values():
        for sid, (at, values) in load_latest_readings(conn, table, list(series)).items():
            kind, phase, device = series[sid]
            rows.append(LatestRow(kind, phase, device, at, values))
    return rows


def _readings_in_rows() -> Any:
    """The readings in a set of meter rows: their filled slots."""
    counts = [func.count(METER_DATA.c[slot(phase, "watts")]) for phase in PHASES]
    return counts[0] + counts[1] + counts[2] + counts[3]


# Per kind of reading: its table, and what counts its readings (a meter row holds up to four).
_COUNTED = {
    "meter": (METER_DATA, _readings_in_rows()),
    "inverter": (INVERTER.data, func.count()),
    "battery": (BATTERY.data, func.count()),
}


def count_rows(conn: Connection, gateway_id: int) -> dict[str, int]:
    """Stored reading rows of a gateway, per table."""
    counts = {}
    for name, (table, count) in _COUNTED.items():
        query = (
            select(count)
            .select_from(table.join(SERIES, table.c.series_id == SERIES.c.id))
            .where(SERIES.c.gateway_id == gateway_id)
        )
        counts[name] = int(conn.execute(query).scalar_one() or 0)
    return counts


def count_rows_by_gateway(
    conn: Connection, gateway_ids: Collection[int] | None = None
) -> dict[int, dict[str, int]]:
    """Stored reading rows per table of every gateway (or of those in `gateway_ids`), one query per table.

    Counting reads every row counted (an index-only scan at best): its cost grows with what is stored.
    """
    counts: dict[int, dict[str, int]] = {}
    for name, (table, count) in _COUNTED.items():
        per_series = select(table.c.series_id, count.label("rows")).group_by(table.c.series_id)
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
