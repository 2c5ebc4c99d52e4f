"""The run log: a row per gateway and run, written as the run starts (a killed run shows) and as it ends."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal, cast

from sqlalchemy import select, update
from sqlalchemy.engine import Connection, Row

from envoylog.db.models import (
    Run,
)
from envoylog.db.sql import table_of

# How a run ended: "running" until it does (and for good if its process died); "partial" when some endpoint
# failed but readings were stored.
RunOutcome = Literal["running", "ok", "partial", "failed"]
# The outcomes of runs that read the gateway: they vouch for the minutes after them.
SUCCESS: tuple[RunOutcome, ...] = ("ok", "partial")

RUNS_TABLE = table_of(Run)


def load_run_minutes(conn: Connection, gateway_id: int, start: datetime, end: datetime) -> set[int]:
    """The minutes (epoch seconds // 60) in [start, end) in which a run of this gateway started."""
    query = select(Run.started_at).where(
        Run.gateway_id == gateway_id, Run.started_at >= start, Run.started_at < end
    )
    return {int(at.timestamp()) // 60 for (at,) in conn.execute(query)}


def start_run(conn: Connection, gateway_name: str, now: datetime) -> int:
    """Record that a run of this gateway started; it stays "running" if the process dies."""
    table = table_of(Run)
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
    outcome: RunOutcome,
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


def last_run(conn: Connection, gateway_id: int, *, successful: bool = False) -> Row[Any] | None:
    """The gateway's newest finished-or-running run (only those that read it, with `successful`)."""
    query = (
        select(Run.outcome, Run.started_at, Run.finished_at)
        .where(Run.gateway_id == gateway_id)
        .order_by(Run.started_at.desc(), Run.id.desc())
        .limit(1)
    )
    row = conn.execute(query.where(Run.outcome.in_(SUCCESS)) if successful else query).one_or_none()
    return cast("Row[Any] | None", row)


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
        "success": conn.execute(base.where(Run.outcome.in_(SUCCESS))).one_or_none(),
        "error": conn.execute(base.where(Run.error.is_not(None))).one_or_none(),
    }
