"""The problems a gateway's runs have seen: since when, and whether a run has said them yet."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, select, update
from sqlalchemy.engine import Connection

from envoylog.db.models import PROBLEMS


@dataclass(frozen=True)
class StoredProblem:
    """One row of the problems table."""

    kind: str
    subject: str
    since: datetime
    said_at: datetime | None
    seen_at: datetime
    detail: str | None


def load(conn: Connection, gateway_id: int) -> dict[tuple[str, str], StoredProblem]:
    """The gateway's open problems, by (kind, subject)."""
    rows = conn.execute(select(PROBLEMS).where(PROBLEMS.c.gateway_id == gateway_id))
    return {
        (row.kind, row.subject): StoredProblem(
            row.kind, row.subject, row.since, row.said_at, row.seen_at, row.detail
        )
        for row in rows
    }


def load_all(conn: Connection, gateway_ids: Collection[int]) -> dict[int, list[StoredProblem]]:
    """The open problems of several gateways, by gateway id (for `status`)."""
    found: dict[int, list[StoredProblem]] = {}
    if not gateway_ids:
        return found
    rows = conn.execute(
        select(PROBLEMS)
        .where(PROBLEMS.c.gateway_id.in_(list(gateway_ids)))
        .order_by(PROBLEMS.c.kind, PROBLEMS.c.subject)
    )
    for row in rows:
        found.setdefault(row.gateway_id, []).append(
            StoredProblem(row.kind, row.subject, row.since, row.said_at, row.seen_at, row.detail)
        )
    return found


def open_problem(
    conn: Connection,
    gateway_id: int,
    kind: str,
    subject: str,
    since: datetime,
    said_at: datetime | None,
    now: datetime,
    detail: str | None,
) -> None:
    """Record a problem seen for the first time."""
    conn.execute(
        PROBLEMS.insert().values(
            gateway_id=gateway_id,
            kind=kind,
            subject=subject,
            since=since,
            said_at=said_at,
            seen_at=now,
            detail=detail,
        )
    )


def update_problem(conn: Connection, gateway_id: int, kind: str, subject: str, **values: object) -> None:
    """Change a problem's `since`, `said_at` or `detail`."""
    conn.execute(
        update(PROBLEMS)
        .where(PROBLEMS.c.gateway_id == gateway_id, PROBLEMS.c.kind == kind, PROBLEMS.c.subject == subject)
        .values(**values)
    )


def close_problem(conn: Connection, gateway_id: int, kind: str, subject: str) -> None:
    """Forget a problem that has cleared."""
    conn.execute(
        delete(PROBLEMS).where(
            PROBLEMS.c.gateway_id == gateway_id, PROBLEMS.c.kind == kind, PROBLEMS.c.subject == subject
        )
    )
