"""The endpoint breakers of each gateway: loaded before a run reads it, the changes saved as the run ends."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, select
from sqlalchemy.engine import Connection

from envoylog.db.models import BREAKERS
from envoylog.db.sql import dialect_insert
from envoylog.readings.breakers import Breaker, Breakers


def load_breakers(conn: Connection, gateway_id: int) -> Breakers:
    """The breakers of a gateway's endpoints, as the last run left them."""
    query = select(BREAKERS.c.path, BREAKERS.c.timeouts, BREAKERS.c.open_until).where(
        BREAKERS.c.gateway_id == gateway_id
    )
    return Breakers({row.path: Breaker(row.timeouts, row.open_until) for row in conn.execute(query)})


def save_breakers(conn: Connection, gateway_id: int, breakers: Breakers, now: datetime) -> None:
    """Store what this run changed: a breaker opened or its pause grown, or closed (its row deleted)."""
    closed = [path for path in breakers.changed if path not in breakers.state]
    if closed:
        conn.execute(delete(BREAKERS).where(BREAKERS.c.gateway_id == gateway_id, BREAKERS.c.path.in_(closed)))
    for path in sorted(breakers.changed - set(closed)):
        breaker = breakers.state[path]
        values = {"timeouts": breaker.timeouts, "open_until": breaker.open_until, "updated_at": now}
        insert = dialect_insert(conn)(BREAKERS).values(gateway_id=gateway_id, path=path, **values)
        conn.execute(insert.on_conflict_do_update(index_elements=["gateway_id", "path"], set_=values))
    breakers.changed.clear()


@dataclass(frozen=True)
class OpenBreaker:
    """An endpoint that a gateway's runs skip until `open_until`."""

    path: str
    timeouts: int
    open_until: datetime


def load_open_breakers(
    conn: Connection, gateway_ids: Collection[int] | None, now: datetime
) -> dict[int, list[OpenBreaker]]:
    """The endpoints skipped at `now`, per gateway (all gateways when `gateway_ids` is None); one query."""
    query = (
        select(BREAKERS.c.gateway_id, BREAKERS.c.path, BREAKERS.c.timeouts, BREAKERS.c.open_until)
        .where(BREAKERS.c.open_until > now)
        .order_by(BREAKERS.c.gateway_id, BREAKERS.c.path)
    )
    if gateway_ids is not None:
        query = query.where(BREAKERS.c.gateway_id.in_(list(gateway_ids)))
    found: dict[int, list[OpenBreaker]] = {}
    for row in conn.execute(query):
        found.setdefault(row.gateway_id, []).append(OpenBreaker(row.path, row.timeouts, row.open_until))
    return found
