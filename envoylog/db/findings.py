"""What `envoylog check` found and said, and the log of sessions and tokens it counts for a storm."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, func, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.sql.elements import ColumnElement

from envoylog.db.models import AUTH_LOG, CHECK_FINDINGS

AUTH_LOG_KEPT = timedelta(days=2)  # a storm is counted over the last hour or day; older rows go


@dataclass(frozen=True)
class SaidFinding:
    """One row of check_findings."""

    gateway: str
    kind: str
    subject: str
    since: datetime
    said_at: datetime | None
    seen_at: datetime
    line: str


Key = tuple[str, str, str]  # the gateway's configured name, the kind, the subject


def load_findings(conn: Connection, gateways: Collection[str]) -> dict[Key, SaidFinding]:
    """The open findings of these gateways, by (gateway, kind, subject)."""
    if not gateways:
        return {}
    rows = conn.execute(select(CHECK_FINDINGS).where(CHECK_FINDINGS.c.gateway.in_(list(gateways))))
    return {
        (row.gateway, row.kind, row.subject): SaidFinding(
            row.gateway, row.kind, row.subject, row.since, row.said_at, row.seen_at, row.line
        )
        for row in rows
    }


def open_finding(conn: Connection, key: Key, since: datetime, now: datetime, line: str, said: bool) -> None:
    """Remember a finding seen for the first time."""
    gateway, kind, subject = key
    conn.execute(
        CHECK_FINDINGS.insert().values(
            gateway=gateway,
            kind=kind,
            subject=subject,
            since=since,
            said_at=now if said else None,
            seen_at=now,
            line=line,
        )
    )


def update_finding(conn: Connection, key: Key, now: datetime, line: str, said: bool) -> None:
    """A finding seen again: its newest line, and when it was said if it was said now."""
    values: dict[str, object] = {"seen_at": now, "line": line}
    if said:
        values["said_at"] = now
    conn.execute(update(CHECK_FINDINGS).where(*_match(key)).values(**values))


def close_finding(conn: Connection, key: Key) -> None:
    """A finding that is no longer there."""
    conn.execute(delete(CHECK_FINDINGS).where(*_match(key)))


def _match(key: Key) -> list[ColumnElement[bool]]:
    gateway, kind, subject = key
    return [
        CHECK_FINDINGS.c.gateway == gateway,
        CHECK_FINDINGS.c.kind == kind,
        CHECK_FINDINGS.c.subject == subject,
    ]


def log_auth(conn: Connection, gateway_id: int, kind: str, now: datetime) -> None:
    """Log a session opened or a token taken (no secret: the time and the kind only); drop old entries."""
    conn.execute(AUTH_LOG.insert().values(gateway_id=gateway_id, at=now, kind=kind))
    conn.execute(
        delete(AUTH_LOG).where(AUTH_LOG.c.gateway_id == gateway_id, AUTH_LOG.c.at < now - AUTH_LOG_KEPT)
    )


def count_auth(conn: Connection, gateway_id: int, kind: str, since: datetime) -> int:
    """Sessions opened (or tokens taken) by this gateway's collectors since `since`."""
    query = select(func.count()).where(
        AUTH_LOG.c.gateway_id == gateway_id, AUTH_LOG.c.at >= since, AUTH_LOG.c.kind == kind
    )
    return int(conn.execute(query).scalar_one())
