"""Claims on gateways: a gateway is polled by one collector at a time, while collectors share the database.

A collector claims a gateway just before polling it and lets go when done. A claim ends by itself at its
`until` time (the collector's deadline and a margin), so a collector that dies, or a machine that loses power,
holds nothing past the minute it was running in. Times come from the database's clock: collectors on machines
whose clocks disagree still agree on when a claim ends.
"""

from __future__ import annotations

import os
import secrets
import socket
from dataclasses import dataclass
from typing import Literal

from sqlalchemy import BigInteger, Engine, literal_column, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.sql.elements import ColumnElement

from envoylog.db.models import CLAIMS
from envoylog.db.sql import dialect_insert

# Milliseconds since the epoch by the database's clock: the server's on PostgreSQL, the machine's on SQLite.
_NOW_MS = {
    "postgresql": "CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT)",
    "sqlite": "CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)",
}


def this_process() -> str:
    """The holder name of this process: host and pid for people, a nonce so that a reused pid is not us."""
    return f"{socket.gethostname()[:120]} pid {os.getpid()} {secrets.token_hex(4)}"


def holder_for_people(holder: str) -> str:
    """'host pid N' without the nonce."""
    return holder.rsplit(" ", 1)[0]


@dataclass(frozen=True)
class Refusal:
    """Why a gateway could not be claimed."""

    reason: Literal["held", "done"]  # another collector holds it, or polled it since this run began
    holder: str
    until_ms: int
    now_ms: int

    @property
    def seconds_left(self) -> float:
        """How long the other collector's claim lasts from now."""
        return max(0.0, (self.until_ms - self.now_ms) / 1000)


def now_ms(conn: Connection) -> int:
    """The database's clock, in milliseconds since the epoch."""
    return int(conn.execute(select(_now(conn))).scalar_one())


def claim(
    engine: Engine,
    gateway_name: str,
    holder: str,
    *,
    lease_s: float,
    run_started_ms: int | None = None,
) -> Refusal | None:
    """Claim `gateway_name` for `lease_s` seconds, in a transaction of its own (see `claim_in`)."""
    with engine.begin() as conn:
        return claim_in(conn, gateway_name, holder, lease_s=lease_s, run_started_ms=run_started_ms)


def claim_in(
    conn: Connection,
    gateway_name: str,
    holder: str,
    *,
    lease_s: float,
    run_started_ms: int | None = None,
) -> Refusal | None:
    """Claim `gateway_name` for `lease_s` seconds; None when claimed, else who has it.

    A claim is taken over when it has ended (its holder finished, or died and its time ran out), or when it
    is this holder's own. With `run_started_ms`, a gateway another collector finished polling after that time
    is refused too ("done"): collectors sharing one config then poll each gateway once per round. The claim
    holds once the transaction of `conn` commits.
    """
    now = _now(conn)
    insert = dialect_insert(conn)(CLAIMS).values(
        gateway_name=gateway_name,
        holder=holder,
        claimed_ms=now,
        until_ms=now + int(lease_s * 1000),
        done_ms=None,
    )
    current = CLAIMS.c
    free: ColumnElement[bool] = current.until_ms <= insert.excluded.claimed_ms
    if run_started_ms is not None:
        free = free & (current.done_ms.is_(None) | (current.done_ms < run_started_ms))
    upsert = insert.on_conflict_do_update(
        index_elements=[current.gateway_name],
        set_={
            "holder": insert.excluded.holder,
            "claimed_ms": insert.excluded.claimed_ms,
            "until_ms": insert.excluded.until_ms,
            "done_ms": None,
        },
        where=(current.holder == insert.excluded.holder) | free,
    )
    if conn.execute(upsert.returning(current.gateway_name)).first() is not None:
        return None
    row = conn.execute(
        select(current.holder, current.until_ms, current.done_ms, now).where(
            current.gateway_name == gateway_name
        )
    ).one()
    held = row.until_ms > row[3]
    return Refusal("held" if held else "done", row.holder, row.until_ms, row[3])


def release(engine: Engine, gateway_name: str, holder: str) -> None:
    """Let go of a claim, in a transaction of its own (see `release_in`)."""
    with engine.begin() as conn:
        release_in(conn, gateway_name, holder)


def release_in(conn: Connection, gateway_name: str, holder: str) -> None:
    """Let go of a claim: polled, so another collector may take the gateway (from its next round on)."""
    now = _now(conn)
    conn.execute(
        update(CLAIMS)
        .where(CLAIMS.c.gateway_name == gateway_name, CLAIMS.c.holder == holder)
        .values(until_ms=now, done_ms=now)
    )


def last_polled(engine: Engine) -> dict[str, int]:
    """When each gateway was last polled to the end (ms by the database's clock), by gateway name."""
    with engine.connect() as conn:
        rows = conn.execute(
            select(CLAIMS.c.gateway_name, CLAIMS.c.done_ms).where(CLAIMS.c.done_ms.is_not(None))
        )
        return {name: int(done) for name, done in rows}


def _now(conn: Connection) -> ColumnElement[int]:
    return literal_column(_NOW_MS[conn.dialect.name], BigInteger)
