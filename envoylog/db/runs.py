"""The run log: a row per gateway and run, written as the run starts (a killed run shows) and as it ends."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, cast

from sqlalchemy import String, Subquery, and_, column, select, text, update
from sqlalchemy.engine import Connection, Row
from sqlalchemy.sql.elements import ColumnElement

from envoylog.db.models import GATEWAYS, RUNS
from envoylog.db.sql import newest_per_owner

# How a run ended: "running" until it does (and for good if its process died); "partial" when some endpoint
# failed but readings were stored.
RunOutcome = Literal["running", "ok", "partial", "failed"]
# The outcomes of runs that read the gateway: they vouch for the minutes after them.
SUCCESS: tuple[RunOutcome, ...] = ("ok", "partial")


def load_run_minutes(conn: Connection, gateway_id: int, start: datetime, end: datetime) -> set[int]:
    """The minutes (epoch seconds // 60) in [start, end) in which a run of this gateway started."""
    query = select(RUNS.c.started_at).where(
        RUNS.c.gateway_id == gateway_id, RUNS.c.started_at >= start, RUNS.c.started_at < end
    )
    return {int(at.timestamp()) // 60 for (at,) in conn.execute(query)}


def start_run(conn: Connection, gateway_name: str, now: datetime) -> int:
    """Record that a run of this gateway started; it stays "running" if the process dies."""
    result = conn.execute(
        RUNS.insert()
        .values(gateway_name=gateway_name, started_at=now, outcome="running")
        .returning(RUNS.c.id)
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
        update(RUNS)
        .where(RUNS.c.id == run_id)
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
        select(RUNS.c.outcome, RUNS.c.started_at, RUNS.c.finished_at)
        .where(RUNS.c.gateway_id == gateway_id)
        .order_by(RUNS.c.started_at.desc(), RUNS.c.id.desc())
        .limit(1)
    )
    row = conn.execute(query.where(RUNS.c.outcome.in_(SUCCESS)) if successful else query).one_or_none()
    return cast("Row[Any] | None", row)


def last_runs(conn: Connection, gateway_id: int) -> dict[str, Row[Any] | None]:
    """The gateway's newest run, newest successful run and newest run with an error."""
    # Times are stored to the second: the id orders runs that started within the same one.
    base = (
        select(RUNS)
        .where(RUNS.c.gateway_id == gateway_id)
        .order_by(RUNS.c.started_at.desc(), RUNS.c.id.desc())
        .limit(1)
    )
    return {
        "last": conn.execute(base).one_or_none(),
        "success": conn.execute(base.where(RUNS.c.outcome.in_(SUCCESS))).one_or_none(),
        "error": conn.execute(base.where(RUNS.c.error.is_not(None))).one_or_none(),
    }


@dataclass(frozen=True)
class LoggedRun:
    """A row of the run log, as `status` tells it."""

    id: int
    started_at: datetime
    finished_at: datetime | None
    outcome: str
    requests: int
    error: str | None


@dataclass(frozen=True)
class NewestRuns:
    """A gateway's newest run (maybe running), newest finished, newest successful and newest with an error."""

    last: LoggedRun | None = None
    finished: LoggedRun | None = None
    success: LoggedRun | None = None
    error: LoggedRun | None = None

    def merged(self, other: NewestRuns) -> NewestRuns:
        """The newer of each, as if the runs of both were one gateway's."""
        return NewestRuns(*(_newer(getattr(self, name), getattr(other, name)) for name in _PICKS))


def _newer(one: LoggedRun | None, other: LoggedRun | None) -> LoggedRun | None:
    if one is None or other is None:
        return one or other
    # Times are stored to the second: the id orders runs that started within the same one.
    return max(one, other, key=lambda run: (run.started_at, run.id))


_PICKS: dict[str, tuple[ColumnElement[bool], ...]] = {
    "last": (),
    "finished": (RUNS.c.outcome != "running",),
    "success": (RUNS.c.outcome.in_(SUCCESS),),
    "error": (RUNS.c.error.is_not(None),),
}


def newest_runs(conn: Connection, gateway_ids: Collection[int] | None = None) -> dict[int, NewestRuns]:
    """The NewestRuns of every stored gateway (or of those in `gateway_ids`), by gateway id, in one query.

    Each is an index lookup per gateway (ix_runs_gateway_started, ix_runs_gateway_error): the cost grows with
    the gateways, not with the run log.
    """
    owners = select(GATEWAYS.c.id.label("owner"))
    if gateway_ids is not None:
        owners = owners.where(GATEWAYS.c.id.in_(list(gateway_ids)))
    subquery = owners.subquery("owners")
    return _newest(conn, subquery, RUNS.c.gateway_id == subquery.c.owner, _PICKS)


def newest_unattributed_runs(conn: Connection, names: Collection[str] | None = None) -> dict[str, NewestRuns]:
    """The NewestRuns of the runs that never learned their gateway, by the configured name they ran under.

    Such runs failed before the gateway's /info answered, or are still running (a run learns its gateway as it
    ends). None of them is a success: a run that read its gateway knows it. ix_runs_unattributed holds them.
    """
    owners = select(RUNS.c.gateway_name.label("owner")).where(RUNS.c.gateway_id.is_(None)).distinct()
    if names is not None:
        subquery = owners.where(RUNS.c.gateway_name.in_(list(names))).subquery("owners")
    elif conn.dialect.name == "sqlite":
        # Without statistics SQLite reads `gateway_id IS NULL` from the index by gateway, fetching every such
        # run (a year of nightly outages: a second); ix_runs_unattributed holds their names, in order.
        subquery = (
            text(
                "SELECT DISTINCT gateway_name AS owner FROM runs INDEXED BY ix_runs_unattributed "
                "WHERE gateway_id IS NULL"
            )
            .columns(column("owner", String))
            .subquery("owners")
        )
    else:
        subquery = owners.subquery("owners")
    owned = and_(RUNS.c.gateway_id.is_(None), RUNS.c.gateway_name == subquery.c.owner)
    picks = {name: where for name, where in _PICKS.items() if name != "success"}
    return _newest(conn, subquery, owned, picks)


def _newest(
    conn: Connection,
    owners: Subquery,
    owned: ColumnElement[bool],
    picks: dict[str, tuple[ColumnElement[bool], ...]],
) -> dict[Any, NewestRuns]:
    found = newest_per_owner(
        conn,
        owners,
        RUNS,
        (RUNS.c.started_at.desc(), RUNS.c.id.desc()),
        {name: (owned, *where) for name, where in picks.items()},
        ("id", "started_at", "finished_at", "outcome", "requests", "error"),
    )
    return {
        owner: NewestRuns(
            **{
                name: LoggedRun(row.id, row.started_at, row.finished_at, row.outcome, row.requests, row.error)
                for name, row in picked.items()
            }
        )
        for owner, picked in found.items()
    }
