"""When a problem is worth a line (and so, under cron, a mail): once it has become real, not before.

A gateway read successfully within the quiet window (`[collect] quiet_minutes`, 15 by default) fails
quietly: its nightly outage around 23:00, a reboot, a minute of "503 busy" reach the run log and `status`
only. The first run past the window says it, with how long there has been no successful read; the runs after
it stay quiet until a run succeeds again, which says so in one line. A gateway never read successfully says
every failure: it is being set up, and somebody is watching.

Problems of a gateway that is read follow the same rule with thresholds of their own (`escalate_problems`):
one endpoint failing while the rest answer (an hour), the token not renewed although it is due (a day),
discovery incomplete (a day). The problems table remembers since when each one lasts and whether it was said.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.engine import Connection, Row

from envoylog.config import CollectSettings
from envoylog.db import problems, runs
from envoylog.db.runs import SUCCESS
from envoylog.errors import AuthError, GatewayError


def escalate(
    conn: Connection,
    gateway_id: int,
    name: str,
    outcome: str,
    error: Exception | None,
    now: datetime,
    window: int,
    told: bool = False,
) -> str | None:
    """Quiet a transient gateway failure, or name one that became real; returns the line a recovery says.

    `told`: the failure's cause was said already, to the user who must fix it (a refused cloud login).
    """
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
    if not (isinstance(error, GatewayError) or (isinstance(error, AuthError) and error.transient)):
        return None  # needs the user: said each time (auth says it per attempt, quiet while waiting)
    if told and isinstance(error, AuthError):
        return None  # the user was told by the attempt that failed: its waits stay quiet
    success = runs.last_run(conn, gateway_id, successful=True)
    if success is None:
        return None
    if now - success.finished_at < quiet_for or _was_said(previous, success, quiet_for):
        error.quiet = True
    else:
        error.args = (f"no successful read for {_minutes(now - success.finished_at)}: {error}",)
        error.quiet = False  # a run that only waits out the cloud's back-off was quiet until now
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
    if minutes < 1:
        return "less than a minute"
    if minutes < 120:
        return f"{minutes} min"
    return f"{minutes / 60:.1f} h" if minutes < 48 * 60 else f"{minutes / 1440:.0f} days"


@dataclass(frozen=True)
class Observation:
    """What one run found about one possible problem: failing or not, and why.

    A run reports only what it looked at: an endpoint it did not ask keeps its state, failing or not.
    """

    kind: str  # "endpoint" | "token" | "discovery" | "mqtt" | "mqtt_setup"
    subject: str  # the endpoint's path; "" for the others
    failing: bool
    detail: str | None = None  # the latest failure, one line without secrets
    since: datetime | None = None  # when it began, where another table knows it better than this run
    said: bool = False  # this run's own error says it already (an auth problem that needs the user)


# A problem not seen by any run for this long (and not said) starts again when it is seen next.
UNSEEN = timedelta(minutes=90)


def thresholds(settings: CollectSettings) -> dict[str, timedelta]:
    """How long each kind of problem lasts before it is said."""
    return {
        "endpoint": timedelta(minutes=settings.endpoint_quiet_minutes),
        "token": timedelta(hours=settings.token_quiet_hours),
        "discovery": timedelta(hours=settings.discovery_quiet_hours),
        # The broker follows the gateway's rule: a restart or an upgrade of a few minutes is not worth a mail.
        "mqtt": timedelta(minutes=settings.quiet_minutes),
        # Refused credentials, an untrusted certificate, paho missing: nothing changes until the user acts.
        "mqtt_setup": timedelta(0),
    }


def escalate_problems(
    conn: Connection,
    gateway_id: int,
    name: str,
    observations: Iterable[Observation],
    now: datetime,
    settings: CollectSettings,
    known: dict[tuple[str, str], problems.StoredProblem] | None = None,
) -> tuple[list[str], list[str]]:
    """Record what this run saw; return the lines to say: problems that became real, problems that cleared."""
    seen = list(observations)
    said: list[str] = []
    cleared: list[str] = []
    if not seen:
        return said, cleared
    if known is None:
        known = problems.load(conn, gateway_id)
    limits = thresholds(settings)
    for obs in seen:
        stored = known.get((obs.kind, obs.subject))
        if not obs.failing:
            if stored is not None:
                problems.close_problem(conn, gateway_id, obs.kind, obs.subject)
                if stored.said_at is not None:
                    cleared.append(f"gateway {name}: {_cleared(obs.kind, obs.subject, now - stored.since)}")
            continue
        if stored is not None and stored.said_at is None and now - stored.seen_at > UNSEEN:
            # Not looked at for long (the gateway was off, the endpoint not asked): no telling that it failed
            # all along, so it starts again rather than being said at once.
            problems.close_problem(conn, gateway_id, obs.kind, obs.subject)
            stored = None
        since = obs.since or (stored.since if stored is not None else now)
        said_at = stored.said_at if stored is not None else None
        if said_at is None and (obs.said or now - since >= limits[obs.kind]):
            said_at = now
            if not obs.said:
                said.append(f"gateway {name}: {_lasting(obs, now - since, stored)}")
        if stored is None:
            problems.open_problem(conn, gateway_id, obs.kind, obs.subject, since, said_at, now, obs.detail)
        else:
            # A skipped endpoint keeps the failure that opened its breaker.
            detail = obs.detail or stored.detail
            problems.update_problem(
                conn,
                gateway_id,
                obs.kind,
                obs.subject,
                since=since,
                said_at=said_at,
                seen_at=now,
                detail=detail,
            )
    return said, cleared


def _lasting(obs: Observation, lasted: timedelta, stored: problems.StoredProblem | None) -> str:
    why = obs.detail or (stored.detail if stored is not None else None)
    detail = f": {why}" if why else ""
    if obs.kind == "endpoint":
        return f"{obs.subject} has failed for {_minutes(lasted)} while the others answer{detail}"
    if obs.kind == "token":
        return f"the token could not be renewed for {_minutes(lasted)}{detail}"
    if obs.kind == "mqtt":
        return f"MQTT publishing has failed for {_minutes(lasted)} (the readings are stored){detail}"
    if obs.kind == "mqtt_setup":
        return f"MQTT publishing fails (the readings are stored){detail}"
    return f"discovery has been incomplete for {_minutes(lasted)}{detail}"


def _cleared(kind: str, subject: str, lasted: timedelta) -> str:
    if kind == "endpoint":
        return f"{subject} answers again after {_minutes(lasted)} of failures"
    if kind == "token":
        return f"a new token is stored, {_minutes(lasted)} after the first failed cloud attempt"
    if kind in ("mqtt", "mqtt_setup"):
        return f"MQTT publishing works again after {_minutes(lasted)} of failures"
    return f"discovery complete after {_minutes(lasted)}"
