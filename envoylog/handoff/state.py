"""What a collect hands on: per gateway, its newest stored readings and how its last run went."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.engine import Connection

from envoylog.db import credentials, runs, samples
from envoylog.db.gateways import configured_gateway


@dataclass(frozen=True)
class RunFacts:
    """How one gateway's run went, as the collector saw it (the collect layer fills this in)."""

    name: str  # the config's gateway name
    serial: str | None
    outcome: str  # "ok" | "partial" | "failed" | "skipped"
    seconds: float  # the run's wall time for this gateway
    requests: int
    cloud_requests: int
    rows_added: int
    error: str | None = None  # one line without secrets


@dataclass(frozen=True)
class Latest:
    """The newest stored reading of one series."""

    kind: str  # "production" | "consumption" | "net_consumption" | "inverter" | "battery"
    phase: int  # 0: all phases; 1..3: L1..L3
    device: str  # inverter or battery serial ("acb" for the AC Battery aggregate); "" for the site
    at: datetime
    values: dict[str, Any]  # the table's value columns: watts, wh_lifetime, soc_percent, ...


@dataclass(frozen=True)
class GatewayState:
    """A gateway after a run: the run, the newest readings of each of its series, its token."""

    run: RunFacts
    serial: str | None  # None when the gateway has never answered
    firmware: str | None
    latest: tuple[Latest, ...]
    last_success_at: datetime | None  # the newest run that stored readings
    token_expires_at: datetime | None  # firmware 7+: the stored token's expiry


def load_states(conn: Connection, facts: Sequence[RunFacts]) -> list[GatewayState]:
    """The state of each gateway a run polled: a few indexed queries per gateway."""
    states = []
    for fact in facts:
        known = configured_gateway(conn, name=fact.name, serial=fact.serial)
        if known is None:
            states.append(GatewayState(fact, fact.serial, None, (), None, None))
            continue
        latest = tuple(
            Latest(row.kind, row.phase, row.device, row.at, row.values)
            for row in samples.load_latest(conn, known.id)
        )
        success = runs.last_run(conn, known.id, successful=True)
        token = credentials.load_token(conn, known.id)
        states.append(
            GatewayState(
                run=fact,
                serial=known.serial,
                firmware=known.firmware,
                latest=latest,
                last_success_at=success.finished_at if success is not None else None,
                token_expires_at=token.expires_at if token is not None else None,
            )
        )
    return states
