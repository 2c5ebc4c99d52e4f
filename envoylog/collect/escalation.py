"""When a failing gateway is worth a line (and so, under cron, a mail): once it has become real, not before.

A gateway read successfully within the quiet window (`[collect] quiet_minutes`, 15 by default) fails
quietly: its nightly outage around 23:00, a reboot, a minute of "503 busy" reach the run log and `status`
only. The first run past the window says it, with how long there has been no successful read; the runs after
it stay quiet until a run succeeds again, which says so in one line. A gateway never read successfully says
every failure: it is being set up, and somebody is watching.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.engine import Connection, Row

from envoylog.db import runs
from envoylog.db.runs import SUCCESS
from envoylog.errors import GatewayError


def escalate(
    conn: Connection,
    gateway_id: int,
    name: str,
    outcome: str,
    error: Exception | None,
    now: datetime,
    window: int,
) -> str | None:
    """Quiet a transient gateway failure, or name one that became real; returns the line a recovery says."""
    quiet_for = timedelta(minutes=window)
    # This run is not in the run log's reckoning until it is finished (its row has no gateway yet).
    previous = runs.last_run(conn, gateway_id)
    if outcome in SUCCESS:
        if previous is None or previous.outcome in SUCCESS:
            return None  # the common case: one query
        success = runs.last_run(conn, gateway_id, successful=True)
        if success is not None and _was_said(previous, success, quiet_for):
            gap = _minutes(now - success.finished_at)
            return f"gateway {name}: read again after {gap} without a successful read"
        return None
    if not isinstance(error, GatewayError):
        return None
    success = runs.last_run(conn, gateway_id, successful=True)
    if success is None:
        return None
    if now - success.finished_at < quiet_for or _was_said(previous, success, quiet_for):
        error.quiet = True
    else:
        error.args = (f"no successful read for {_minutes(now - success.finished_at)}: {error}",)
    return None


def _was_said(previous: Row[Any] | None, success: Row[Any], quiet_for: timedelta) -> bool:
    """The run before this one failed past the window: the problem was said then (or by a run before it)."""
    return (
        previous is not None
        and previous.outcome not in SUCCESS
        and previous.started_at >= success.finished_at + quiet_for
    )


def _minutes(delta: timedelta) -> str:
    minutes = round(delta.total_seconds() / 60)
    if minutes < 120:
        return f"{minutes} min"
    return f"{minutes / 60:.1f} h" if minutes < 48 * 60 else f"{minutes / 1440:.0f} days"
