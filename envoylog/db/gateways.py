"""Stored gateways: what /info said and discovery found, the one lookup by serial or name, their events."""

from __future__ import annotations

import json
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.engine import Connection, Row

from envoylog.db.models import EVENTS, GATEWAYS
from envoylog.db.sql import insert_ignore, newest_per_owner
from envoylog.errors import ConfigError
from envoylog.readings.discovery import Discovery
from envoylog.readings.model import GatewayInfo


@dataclass(frozen=True)
class GatewayRecord:
    """A stored gateway and what discovery knows of it."""

    id: int
    serial: str
    name: str
    firmware: str | None
    discovery: Discovery
    previous_firmware: str | None = None  # set when the firmware differs from the one stored before


def save_gateway(conn: Connection, info: GatewayInfo, name: str, now: datetime) -> GatewayRecord:
    """Insert or update the gateway `info` describes; tell whether its firmware changed."""
    row = conn.execute(select(GATEWAYS).where(GATEWAYS.c.serial == info.serial)).one_or_none()
    if row is None:
        insert_ignore(
            conn,
            GATEWAYS,
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
        row = conn.execute(select(GATEWAYS).where(GATEWAYS.c.serial == info.serial)).one()
        return GatewayRecord(row.id, row.serial, row.name, row.firmware, Discovery())
    save_answer(conn, row.id, info, name, now)
    return gateway_record(row, info, name)


def gateway_record(row: Row[Any], info: GatewayInfo, name: str) -> GatewayRecord:
    """The stored gateway `row` as `info` finds it now (under the configured `name`); nothing is written.

    Its firmware is the one `info` tells, and `previous_firmware` the stored one when they differ.
    """
    previous = row.firmware if row.firmware is not None and row.firmware != info.firmware else None
    discovery = Discovery.from_json(json.loads(row.discovery)) if row.discovery else Discovery()
    return GatewayRecord(row.id, row.serial, name, info.firmware, discovery, previous_firmware=previous)


def save_answer(conn: Connection, gateway_id: int, info: GatewayInfo, name: str, now: datetime) -> None:
    """Store what the gateway's /info told at `now`, and the configured name it answered under."""
    conn.execute(
        update(GATEWAYS)
        .where(GATEWAYS.c.id == gateway_id)
        .values(
            name=name,
            firmware=info.firmware,
            part_number=info.part_number,
            metered=info.metered,
            last_seen_at=now,
        )
    )


def save_seen(conn: Connection, gateway_id: int, first_at: datetime, last_at: datetime) -> None:
    """Widen the time the gateway was seen to include [first_at, last_at] (for history filled later)."""
    row = conn.execute(
        select(GATEWAYS.c.first_seen_at, GATEWAYS.c.last_seen_at).where(GATEWAYS.c.id == gateway_id)
    ).one()
    conn.execute(
        update(GATEWAYS)
        .where(GATEWAYS.c.id == gateway_id)
        .values(first_seen_at=min(row.first_seen_at, first_at), last_seen_at=max(row.last_seen_at, last_at))
    )


def ensure_gateway(conn: Connection, serial: str, name: str, now: datetime) -> int:
    """The id of the gateway `serial`, added without details when it is new (for `auth set-token`)."""
    insert_ignore(
        conn,
        GATEWAYS,
        [{"serial": serial, "name": name, "first_seen_at": now, "last_seen_at": now}],
        ["serial"],
    )
    return int(conn.execute(select(GATEWAYS.c.id).where(GATEWAYS.c.serial == serial)).scalar_one())


def matching_gateways(conn: Connection, *, serial: str | None, name: str | None) -> list[Row[Any]]:
    """The stored gateways a serial or a configured name stands for, by serial.

    The serial wins: the gateway with it, else every gateway stored under the name (a gateway replaced by
    another keeps its name). The one lookup behind the commands' `--gateway` and the collector alike.
    """
    query = select(GATEWAYS).order_by(GATEWAYS.c.serial)
    found = list(conn.execute(query.where(GATEWAYS.c.serial == serial))) if serial else []
    if not found and name:
        found = list(conn.execute(query.where(GATEWAYS.c.name == name)))
    return found


def lookup_gateways(conn: Connection, name_or_serial: str | None) -> list[Row[Any]]:
    """Every stored gateway; or those a word given by the user stands for (see matching_gateways)."""
    if name_or_serial is None:
        return list(conn.execute(select(GATEWAYS).order_by(GATEWAYS.c.serial)))
    found = matching_gateways(conn, serial=name_or_serial, name=name_or_serial)
    if not found:
        raise ConfigError(
            f"no gateway {name_or_serial!r} in the database: give its serial or its configured name"
        )
    return found


def configured_gateway(conn: Connection, *, name: str | None, serial: str | None = None) -> Row[Any] | None:
    """The stored gateway a configured one is: by its serial if set and known, else the last seen by name."""
    found = matching_gateways(conn, serial=serial, name=name)
    return max(found, key=lambda row: (row.last_seen_at, row.id)) if found else None


def list_gateways(conn: Connection) -> list[Row[Any]]:
    """Every stored gateway, by name then serial."""
    return list(conn.execute(select(GATEWAYS).order_by(GATEWAYS.c.name, GATEWAYS.c.serial)))


def save_discovery(conn: Connection, gateway_id: int, discovery: Discovery) -> None:
    """Store what discovery found (as JSON)."""
    conn.execute(
        update(GATEWAYS)
        .where(GATEWAYS.c.id == gateway_id)
        .values(discovery=json.dumps(discovery.to_json(), sort_keys=True))
    )


def find_gateway_by_id(conn: Connection, gateway_id: int) -> Row[Any]:
    """The stored gateway with this id."""
    return conn.execute(select(GATEWAYS).where(GATEWAYS.c.id == gateway_id)).one()


def record_event(conn: Connection, gateway_id: int, kind: str, detail: str, now: datetime) -> None:
    """Record a change of the gateway (a firmware update, what discovery found)."""
    conn.execute(EVENTS.insert().values(gateway_id=gateway_id, at=now, kind=kind, detail=detail))


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
        select(EVENTS)
        .where(EVENTS.c.gateway_id == gateway_id, EVENTS.c.kind == "firmware_changed")
        .order_by(EVENTS.c.at.desc(), EVENTS.c.id.desc())
        .limit(1)
    )
    row = conn.execute(query).one_or_none()
    return None if row is None else _firmware_change(row)


def _firmware_change(row: Row[Any]) -> FirmwareChange:
    previous, _, current = row.detail.partition(" -> ")
    return FirmwareChange(row.at, previous, current)


@dataclass(frozen=True)
class NewestEvents:
    """A gateway's newest event (its `at`, `kind` and `detail`) and its latest firmware change."""

    last: Row[Any] | None = None
    firmware_change: FirmwareChange | None = None


def load_newest_events(
    conn: Connection, gateway_ids: Collection[int] | None = None
) -> dict[int, NewestEvents]:
    """The NewestEvents of every gateway (or of those in `gateway_ids`) that has events, in one query."""
    owners = select(GATEWAYS.c.id.label("owner"))
    if gateway_ids is not None:
        owners = owners.where(GATEWAYS.c.id.in_(list(gateway_ids)))
    subquery = owners.subquery("owners")
    owned = EVENTS.c.gateway_id == subquery.c.owner
    found = newest_per_owner(
        conn,
        subquery,
        EVENTS,
        (EVENTS.c.at.desc(), EVENTS.c.id.desc()),
        {"last": (owned,), "firmware_change": (owned, EVENTS.c.kind == "firmware_changed")},
        ("id", "at", "kind", "detail"),
    )
    return {
        owner: NewestEvents(
            picked.get("last"),
            _firmware_change(picked["firmware_change"]) if "firmware_change" in picked else None,
        )
        for owner, picked in found.items()
        if picked
    }


def load_events(conn: Connection, gateway_id: int, limit: int = 20) -> list[Row[Any]]:
    """The gateway's newest events, newest first."""
    query = (
        select(EVENTS)
        .where(EVENTS.c.gateway_id == gateway_id)
        .order_by(EVENTS.c.at.desc(), EVENTS.c.id.desc())
        .limit(limit)
    )
    return list(conn.execute(query))


def save_clock_offset(conn: Connection, gateway_id: int, seconds: float | None) -> None:
    """Remember how far the gateway's clock is from this machine's (None: they agree)."""
    conn.execute(update(GATEWAYS).where(GATEWAYS.c.id == gateway_id).values(clock_offset_s=seconds))
