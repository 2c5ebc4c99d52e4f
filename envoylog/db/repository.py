"""Reads and writes of the collector: gateways, auth, changed-only readings and the run log."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, fields, replace
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import Boolean, Float, Integer, Table, and_, delete, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Row

from envoylog.db.models import (
    AuthRecord,
    BatterySample,
    Event,
    Gateway,
    InverterSample,
    MeterSample,
    Run,
    Series,
)
from envoylog.db.types import UtcDateTime
from envoylog.errors import ConfigError
from envoylog.gateway.tokens import TokenInfo
from envoylog.readings.parse import BatteryReading, GatewayInfo, InverterReading, MeterReading

CLOUD_BACKOFF_FIRST = timedelta(hours=1)
CLOUD_BACKOFF_MAX = timedelta(hours=12)


@dataclass(frozen=True)
class GatewayRecord:
    """A stored gateway and what discovery knows of it."""

    id: int
    serial: str
    name: str
    firmware: str | None
    discovery: dict[str, Any]
    previous_firmware: str | None = None  # set when the firmware differs from the one stored before


@dataclass(frozen=True)
class StoredToken:
    """The token row of a gateway (its secret may be absent when only a cloud back-off is recorded)."""

    secret: str | None
    source: str | None
    enphase_user: str | None
    issued_at: datetime | None
    expires_at: datetime | None
    cloud_failures: int
    cloud_retry_at: datetime | None
    cloud_error: str | None  # why the last cloud attempt failed (no secrets in it)


@dataclass(frozen=True)
class StoredSession:
    """A gateway session cookie and when it was last used."""

    secret: str
    last_used_at: datetime | None


@dataclass(frozen=True)
class Snapshot:
    """Everything one run read from a gateway, ready to store."""

    meters: Sequence[MeterReading] = ()
    inverters: Sequence[InverterReading] = ()
    batteries: Sequence[BatteryReading] = ()


def _table(model: Any) -> Table:
    """The Core table of a declarative model."""
    return cast(Table, model.__table__)


# --- gateways ---


def save_gateway(conn: Connection, info: GatewayInfo, name: str, now: datetime) -> GatewayRecord:
    """Insert or update the gateway `info` describes; tell whether its firmware changed."""
    row = conn.execute(select(Gateway).where(Gateway.serial == info.serial)).one_or_none()
    if row is None:
        _insert_ignore(
            conn,
            _table(Gateway),
            [
                {
                    "serial": info.serial,
                    "name": name,
                    "firmware": info.firmware,
                    "part_number": info.part_number,
                    "metered": info.metered,
                    "first_seen_at": now,
                    "last_seen_at": now,
                }
            ],
            ["serial"],
        )
        row = conn.execute(select(Gateway).where(Gateway.serial == info.serial)).one()
        return GatewayRecord(row.id, row.serial, row.name, row.firmware, {})
    previous = row.firmware if row.firmware is not None and row.firmware != info.firmware else None
    conn.execute(
        update(Gateway)
        .where(Gateway.id == row.id)
        .values(
            name=name,
            firmware=info.firmware,
            part_number=info.part_number,
            metered=info.metered,
            last_seen_at=now,
        )
    )
    discovery = json.loads(row.discovery) if row.discovery else {}
    return GatewayRecord(row.id, row.serial, name, info.firmware, discovery, previous_firmware=previous)


def save_seen(conn: Connection, gateway_id: int, first_at: datetime, last_at: datetime) -> None:
    """Widen the time the gateway was seen to include [first_at, last_at] (for history filled later)."""
    row = conn.execute(
        select(Gateway.first_seen_at, Gateway.last_seen_at).where(Gateway.id == gateway_id)
    ).one()
    conn.execute(
        update(Gateway)
        .where(Gateway.id == gateway_id)
        .values(first_seen_at=min(row.first_seen_at, first_at), last_seen_at=max(row.last_seen_at, last_at))
    )


def ensure_gateway(conn: Connection, serial: str, name: str, now: datetime) -> int:
    """The id of the gateway `serial`, added without details when it is new (for `auth set-token`)."""
    _insert_ignore(
        conn,
        _table(Gateway),
        [{"serial": serial, "name": name, "first_seen_at": now, "last_seen_at": now}],
        ["serial"],
    )
    return int(conn.execute(select(Gateway.id).where(Gateway.serial == serial)).scalar_one())


def find_gateway(conn: Connection, *, name: str | None = None, serial: str | None = None) -> Row[Any] | None:
    """The stored gateway with this serial, else the latest seen with this configured name."""
    if serial:
        found = conn.execute(select(Gateway).where(Gateway.serial == serial)).one_or_none()
        if found is not None:
            return found
    if name:
        query = select(Gateway).where(Gateway.name == name).order_by(Gateway.last_seen_at.desc()).limit(1)
        return conn.execute(query).one_or_none()
    return None


def lookup_gateways(conn: Connection, name_or_serial: str | None) -> list[Row[Any]]:
    """Every stored gateway by serial; or the one with this serial, else those with this configured name.

    The one lookup behind every command's `--gateway`, so they all accept the same words and fail alike.
    """
    query = select(Gateway).order_by(Gateway.serial)
    if name_or_serial is None:
        return list(conn.execute(query))
    found = list(conn.execute(query.where(Gateway.serial == name_or_serial)))
    found = found or list(conn.execute(query.where(Gateway.name == name_or_serial)))
    if not found:
        raise ConfigError(
            f"no gateway {name_or_serial!r} in the database: give its serial or its configured name"
        )
    return found


def list_gateways(conn: Connection) -> list[Row[Any]]:
    """Every stored gateway, by name then serial."""
    return list(conn.execute(select(Gateway).order_by(Gateway.name, Gateway.serial)))


def save_discovery(conn: Connection, gateway_id: int, discovery: dict[str, Any]) -> None:
    """Store what discovery found (as JSON)."""
    conn.execute(
        update(Gateway)
        .where(Gateway.id == gateway_id)
        .values(discovery=json.dumps(discovery, sort_keys=True))
    )


# --- auth ---


def load_token(conn: Connection, gateway_id: int) -> StoredToken | None:
    """The stored token row of a gateway."""
    row = _auth_row(conn, gateway_id, "token")
    if row is None:
        return None
    return StoredToken(
        row.secret,
        row.source,
        row.enphase_user,
        row.issued_at,
        row.expires_at,
        row.cloud_failures,
        row.cloud_retry_at,
        row.cloud_error,
    )


def load_session(conn: Connection, gateway_id: int) -> StoredSession | None:
    """The stored session cookie of a gateway."""
    row = _auth_row(conn, gateway_id, "session")
    if row is None or not row.secret:
        return None
    return StoredSession(row.secret, row.last_used_at)


def save_token(conn: Connection, gateway_id: int, token: TokenInfo, source: str, now: datetime) -> None:
    """Store a token (replacing any other) and clear the cloud back-off."""
    _upsert_auth(
        conn,
        gateway_id,
        "token",
        secret=token.token,
        source=source,
        enphase_user=token.enphase_user,
        issued_at=token.issued_at,
        expires_at=token.expires_at,
        last_used_at=None,
        updated_at=now,
        cloud_failures=0,
        cloud_retry_at=None,
        cloud_error=None,
    )


def record_cloud_failure(conn: Connection, gateway_id: int, now: datetime, error: str) -> datetime:
    """Count a failed cloud attempt and its reason; return when the next may be made (1 h, doubling to 12 h).

    `error` is shown again by later runs and `auth status`: one line that holds no password, token or session.
    """
    stored = load_token(conn, gateway_id)
    failures = (stored.cloud_failures if stored else 0) + 1
    wait = min(CLOUD_BACKOFF_FIRST * (1 << min(failures - 1, 8)), CLOUD_BACKOFF_MAX)
    retry_at = now + wait
    values = {"cloud_failures": failures, "cloud_retry_at": retry_at, "cloud_error": error, "updated_at": now}
    if stored is None:
        _upsert_auth(conn, gateway_id, "token", **values)
    else:
        conn.execute(
            update(AuthRecord)
            .where(AuthRecord.gateway_id == gateway_id, AuthRecord.kind == "token")
            .values(**values)
        )
    return retry_at


def save_session(conn: Connection, gateway_id: int, session_id: str, now: datetime) -> None:
    """Store a new session cookie, used just now."""
    _upsert_auth(conn, gateway_id, "session", secret=session_id, last_used_at=now, updated_at=now)


def touch_session(conn: Connection, gateway_id: int, now: datetime) -> None:
    """Record that the stored session was used successfully at `now`."""
    conn.execute(
        update(AuthRecord)
        .where(AuthRecord.gateway_id == gateway_id, AuthRecord.kind == "session")
        .values(last_used_at=now, updated_at=now)
    )


def delete_auth(conn: Connection, gateway_id: int, kinds: Iterable[str] = ("token", "session")) -> int:
    """Forget a gateway's token and/or session; return how many were deleted."""
    result = conn.execute(
        delete(AuthRecord).where(AuthRecord.gateway_id == gateway_id, AuthRecord.kind.in_(list(kinds)))
    )
    return int(result.rowcount or 0)


def _auth_row(conn: Connection, gateway_id: int, kind: str) -> Row[Any] | None:
    query = select(AuthRecord).where(AuthRecord.gateway_id == gateway_id, AuthRecord.kind == kind)
    return conn.execute(query).one_or_none()


def _upsert_auth(conn: Connection, gateway_id: int, kind: str, **values: Any) -> None:
    table = _table(AuthRecord)
    insert = _insert(conn)(table).values(gateway_id=gateway_id, kind=kind, **values)
    conn.execute(insert.on_conflict_do_update(index_elements=["gateway_id", "kind"], set_=values))


# --- readings ---

_METER_VALUES = tuple(f.name for f in fields(MeterReading) if f.name not in ("kind", "phase", "read_at"))
_INVERTER_VALUES = tuple(f.name for f in fields(InverterReading) if f.name not in ("serial", "reported_at"))
_BATTERY_VALUES = ("soc_percent", "watts", "wh_available")


# A reading is never stored later than this after the run's time: a clock ahead (the gateway's, or the
# collector's before NTP synced) must not leave rows in the future, where they would hide the next readings.
FUTURE_TOLERANCE = timedelta(minutes=2)


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
    meters = {(m.kind, m.phase, ""): m for m in snapshot.meters}
    inverters = {("inverter", 0, i.serial): i for i in snapshot.inverters}
    batteries = {("battery", 0, b.serial or "acb"): b for b in snapshot.batteries}
    series_ids = find_series_ids(conn, gateway_id, [*meters, *inverters, *batteries])
    kind_of = {sid: key[0] for key, sid in series_ids.items()}
    plans: list[tuple[Any, dict[tuple[str, int, str], Any], str, Sequence[str]]] = [
        (MeterSample, meters, "read_at", _METER_VALUES),
        (InverterSample, inverters, "reported_at", _INVERTER_VALUES),
        (BatterySample, batteries, "read_at", _BATTERY_VALUES),
    ]
    added = result.added
    for model, readings, time_name, value_names in plans:
        table = _table(model)
        ids = [series_ids[k] for k in readings]
        latest = _latest_values(conn, table, time_name, ids, value_names)
        if now is not None and any(at > now + FUTURE_TOLERANCE for at, _ in latest.values()):
            gone = conn.execute(
                delete(table).where(table.c.series_id.in_(ids), table.c[time_name] > now + FUTURE_TOLERANCE)
            )
            result.removed += int(gone.rowcount or 0)
            latest = _latest_values(conn, table, time_name, ids, value_names)
        rows = []
        for key, reading in readings.items():
            sid = series_ids[key]
            at = getattr(reading, time_name)
            values = {name: getattr(reading, name) for name in value_names}
            if is_new(latest.get(sid), at, values):
                rows.append({"series_id": sid, time_name: at, **values})
        for sid in _insert_ignore(conn, table, rows, ["series_id", time_name]):
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


def is_new(latest: tuple[datetime, dict[str, Any]] | None, at: datetime, values: dict[str, Any]) -> bool:
    """The change-detection rule: a reading is stored when it is later than the newest row and differs."""
    if latest is None:
        return True
    latest_at, latest_values = latest
    return at > latest_at and values != latest_values


def find_series_ids(
    conn: Connection, gateway_id: int, keys: list[tuple[str, int, str]]
) -> dict[tuple[str, int, str], int]:
    """The ids of a gateway's series by (kind, phase, device), adding those that are new."""
    if not keys:
        return {}
    table = _table(Series)
    rows = [{"gateway_id": gateway_id, "kind": k, "phase": p, "device": d} for k, p, d in keys]
    _insert_ignore(conn, table, rows, ["gateway_id", "kind", "phase", "device"])
    found = conn.execute(
        select(Series.id, Series.kind, Series.phase, Series.device).where(Series.gateway_id == gateway_id)
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
    """The newest row of each series, or its newest before `before` (one index lookup per series)."""
    if not series_ids:
        return {}
    inner = table.alias("newest")
    condition = inner.c.series_id == table.c.series_id
    if before is not None:
        condition = and_(condition, inner.c[time_column] < before)
    newest = select(func.max(inner.c[time_column])).where(condition).scalar_subquery()
    query = select(table).where(and_(table.c.series_id.in_(series_ids), table.c[time_column] == newest))
    result = {}
    for row in conn.execute(query).mappings():
        result[row["series_id"]] = (row[time_column], {name: row[name] for name in names})
    return result


@dataclass(frozen=True)
class ReadingTable:
    """A readings table: its time column and the value columns that change detection compares."""

    table: Table
    time_column: str
    value_columns: tuple[str, ...]


READING_TABLES = {
    "meter": ReadingTable(_table(MeterSample), "read_at", _METER_VALUES),
    "inverter": ReadingTable(_table(InverterSample), "reported_at", _INVERTER_VALUES),
    "battery": ReadingTable(_table(BatterySample), "read_at", _BATTERY_VALUES),
}


def load_latest_readings(
    conn: Connection, table: ReadingTable, series_ids: list[int], before: datetime | None = None
) -> dict[int, tuple[datetime, dict[str, Any]]]:
    """The newest stored row of each series (before `before`): its time and the values it compares."""
    return _latest_values(conn, table.table, table.time_column, series_ids, table.value_columns, before)


def save_rows_bulk(
    conn: Connection, table: Table, columns: Sequence[str], rows: list[tuple[Any, ...]]
) -> int:
    """Insert many rows at once, skipping those whose unique key exists; return how many were added.

    For speed the rows go to the driver as they are, past the column types: times are epoch seconds (int).
    """
    if not rows:
        return 0
    names = ", ".join(columns)
    if conn.dialect.name == "postgresql":
        return _copy_rows(conn, table, columns, rows)
    marks = ", ".join("?" for _ in columns)
    insert = f"INSERT INTO {table.name} ({names}) VALUES ({marks}) ON CONFLICT DO NOTHING"  # noqa: S608 - names from the models
    return int(conn.exec_driver_sql(insert, rows).rowcount)


def _copy_rows(conn: Connection, table: Table, columns: Sequence[str], rows: list[tuple[Any, ...]]) -> int:
    """PostgreSQL: COPY into a temporary table, then one INSERT ... ON CONFLICT DO NOTHING from it.

    COPY alone cannot skip existing keys; a binary COPY is some ten times faster than batched INSERTs.
    """
    stage = f"envoylog_stage_{table.name}"
    types = [_copy_type(table.c[name]) for name in columns]
    names = ", ".join(columns)
    selected = ", ".join(
        f"to_timestamp({name})" if isinstance(table.c[name].type, UtcDateTime) else name for name in columns
    )
    definition = ", ".join(f"{name} {kind}" for name, kind in zip(columns, types, strict=True))
    driver = conn.connection.driver_connection
    assert driver is not None
    with driver.cursor() as cursor:
        cursor.execute(f"CREATE TEMPORARY TABLE {stage} ({definition})")
        with cursor.copy(f"COPY {stage} ({names}) FROM STDIN (FORMAT BINARY)") as copy:
            copy.set_types(types)
            for row in rows:
                copy.write_row(row)
        cursor.execute(
            f"INSERT INTO {table.name} ({names}) SELECT {selected} FROM {stage} ON CONFLICT DO NOTHING"  # noqa: S608 - names from the models
        )
        added = int(cursor.rowcount)
        cursor.execute(f"DROP TABLE {stage}")
    return added


def _copy_type(column: Any) -> str:
    """The PostgreSQL type a value of this column travels as in a binary COPY."""
    kind = column.type
    if isinstance(kind, UtcDateTime):
        return "int8"  # epoch seconds, turned into timestamptz by the INSERT
    if isinstance(kind, Boolean):
        return "bool"
    if isinstance(kind, Integer):
        return "int8"
    if isinstance(kind, Float):
        return "float8"
    return "text"


def _insert_ignore(
    conn: Connection, table: Table, rows: list[dict[str, Any]], unique: list[str]
) -> list[Any]:
    """Insert rows, skipping those whose unique key exists (so racing writers never duplicate).

    Returns the first unique column of each row inserted.
    """
    if not rows:
        return []
    insert = _insert(conn)(table).values(rows).on_conflict_do_nothing(index_elements=unique)
    return [value for (value,) in conn.execute(insert.returning(table.c[unique[0]]))]


def _insert(conn: Connection) -> Any:
    return postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert


# --- runs ---

RUNS_TABLE = _table(Run)


def load_run_minutes(conn: Connection, gateway_id: int, start: datetime, end: datetime) -> set[int]:
    """The minutes (epoch seconds // 60) in [start, end) in which a run of this gateway started."""
    query = select(Run.started_at).where(
        Run.gateway_id == gateway_id, Run.started_at >= start, Run.started_at < end
    )
    return {int(at.timestamp()) // 60 for (at,) in conn.execute(query)}


def start_run(conn: Connection, gateway_name: str, now: datetime) -> int:
    """Record that a run of this gateway started; it stays "running" if the process dies."""
    table = _table(Run)
    result = conn.execute(
        table.insert()
        .values(gateway_name=gateway_name, started_at=now, outcome="running")
        .returning(table.c.id)
    )
    return int(result.scalar_one())


def finish_run(
    conn: Connection,
    run_id: int,
    *,
    gateway_id: int | None,
    started_at: datetime | None = None,
    now: datetime,
    outcome: str,
    requests: int,
    cloud_requests: int,
    rows_added: int,
    error: str | None,
) -> None:
    """Record how a run ended (and when it started, where the clock that timed its start was wrong)."""
    moved = {"started_at": started_at} if started_at is not None else {}
    conn.execute(
        update(Run)
        .where(Run.id == run_id)
        .values(
            **moved,
            gateway_id=gateway_id,
            finished_at=now,
            outcome=outcome,
            requests=requests,
            cloud_requests=cloud_requests,
            rows_added=rows_added,
            error=error,
        )
    )


def as_dict(value: Any) -> dict[str, Any]:
    """A dataclass as a plain dict (for JSON output)."""
    return asdict(value)


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
            select(Series.id, Series.kind, Series.phase, Series.device).where(Series.gateway_id == gateway_id)
        )
    }
    rows: list[LatestRow] = []
    for model, time_name, names in (
        (MeterSample, "read_at", _METER_VALUES),
        (InverterSample, "reported_at", _INVERTER_VALUES),
        (BatterySample, "read_at", _BATTERY_VALUES),
    ):
        table = _table(model)
        for sid, (at, values) in _latest_values(conn, table, time_name, list(series), names).items():
            kind, phase, device = series[sid]
            rows.append(LatestRow(kind, phase, device, at, values))
    return rows


def last_runs(conn: Connection, gateway_id: int) -> dict[str, Row[Any] | None]:
    """The gateway's newest run, newest successful run and newest run with an error."""
    # Times are stored to the second: the id orders runs that started within the same one.
    base = (
        select(Run)
        .where(Run.gateway_id == gateway_id)
        .order_by(Run.started_at.desc(), Run.id.desc())
        .limit(1)
    )
    return {
        "last": conn.execute(base).one_or_none(),
        "success": conn.execute(base.where(Run.outcome.in_(("ok", "partial")))).one_or_none(),
        "error": conn.execute(base.where(Run.error.is_not(None))).one_or_none(),
    }


def count_rows(conn: Connection, gateway_id: int) -> dict[str, int]:
    """Stored reading rows of a gateway, per table."""
    counts = {}
    for name, model in (("meter", MeterSample), ("inverter", InverterSample), ("battery", BatterySample)):
        table = _table(model)
        query = (
            select(func.count())
            .select_from(table.join(_table(Series), table.c.series_id == Series.id))
            .where(Series.gateway_id == gateway_id)
        )
        counts[name] = int(conn.execute(query).scalar_one())
    return counts


def find_gateway_by_id(conn: Connection, gateway_id: int) -> Row[Any]:
    """The stored gateway with this id."""
    return conn.execute(select(Gateway).where(Gateway.id == gateway_id)).one()


def record_event(conn: Connection, gateway_id: int, kind: str, detail: str, now: datetime) -> None:
    """Record a change of the gateway (a firmware update, what discovery found)."""
    conn.execute(_table(Event).insert().values(gateway_id=gateway_id, at=now, kind=kind, detail=detail))


@dataclass(frozen=True)
class FirmwareChange:
    """A firmware update, at the run that first saw the new version."""

    at: datetime
    previous: str
    current: str


def record_firmware_change(
    conn: Connection, gateway_id: int, previous: str, current: str, now: datetime
) -> None:
    """Record that the gateway's firmware is `current` now, `previous` before."""
    record_event(conn, gateway_id, "firmware_changed", f"{previous} -> {current}", now)


def load_firmware_change(conn: Connection, gateway_id: int) -> FirmwareChange | None:
    """The gateway's latest firmware change, if it ever had one."""
    query = (
        select(Event)
        .where(Event.gateway_id == gateway_id, Event.kind == "firmware_changed")
        .order_by(Event.at.desc(), Event.id.desc())
        .limit(1)
    )
    row = conn.execute(query).one_or_none()
    if row is None:
        return None
    previous, _, current = row.detail.partition(" -> ")
    return FirmwareChange(row.at, previous, current)


def load_events(conn: Connection, gateway_id: int, limit: int = 20) -> list[Row[Any]]:
    """The gateway's newest events, newest first."""
    query = (
        select(Event)
        .where(Event.gateway_id == gateway_id)
        .order_by(Event.at.desc(), Event.id.desc())
        .limit(limit)
    )
    return list(conn.execute(query))
