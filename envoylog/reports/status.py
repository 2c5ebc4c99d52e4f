"""What is stored, as JSON-ready documents: the latest readings, each gateway's status, the auth state."""

from __future__ import annotations

import os
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, text
from sqlalchemy.engine import Connection, Row

from envoylog.db import breakers, credentials, runs, samples
from envoylog.db.gateways import NewestEvents, list_gateways, load_newest_events, lookup_gateways
from envoylog.db.runs import NewestRuns
from envoylog.db.samples import LatestRow
from envoylog.errors import ConfigError
from envoylog.gateway.tokens import RENEW_BEFORE
from envoylog.reports.columns import SITE_KINDS
from envoylog.times import duration_text, iso_z


def latest_document(engine: Engine) -> dict[str, Any]:
    """The latest stored readings of every gateway (`envoylog latest --format json`)."""
    gateways = []
    with engine.connect() as conn:
        for gateway in list_gateways(conn):
            rows = samples.load_latest(conn, gateway.id)
            success = runs.last_runs(conn, gateway.id)["success"]
            document: dict[str, Any] = {
                "serial": gateway.serial,
                "name": gateway.name,
                "firmware": gateway.firmware,
                "part_number": gateway.part_number,
                "metered": gateway.metered,
                "collected_at": iso_z(success.finished_at) if success else None,
            }
            for kind in SITE_KINDS:
                document[kind] = _site(rows, kind)
            document["inverters"] = sorted(
                (
                    {
                        "serial": row.device,
                        "watts": row.values["watts"],
                        "max_watts": row.values["max_watts"],
                        "reported_at": iso_z(row.at),
                    }
                    for row in rows
                    if row.kind == "inverter"
                ),
                key=lambda inverter: str(inverter["serial"]),
            )
            document["batteries"] = [
                {
                    "serial": None if row.device == "acb" else row.device,
                    "kind": "acb" if row.device == "acb" else "encharge",
                    "soc_percent": row.values["soc_percent"],
                    "watts": row.values["watts"],
                    "read_at": iso_z(row.at),
                }
                for row in sorted((r for r in rows if r.kind == "battery"), key=lambda r: r.device)
            ]
            gateways.append(document)
    return {"gateways": gateways}


def _site(rows: list[LatestRow], kind: str) -> dict[str, Any] | None:
    total = next((row for row in rows if row.kind == kind and row.phase == 0), None)
    if total is None:
        return None
    site: dict[str, Any] = {
        "watts": total.values["watts"],
        "wh_lifetime": total.values["wh_lifetime"],
        "read_at": iso_z(total.at),
    }
    if kind == "production":
        site["source"] = total.values["source"]
    if kind == "net_consumption":
        site["wh_imported_lifetime"] = total.values["wh_imported_lifetime"]
        site["wh_exported_lifetime"] = total.values["wh_exported_lifetime"]
    phases = sorted((row for row in rows if row.kind == kind and row.phase > 0), key=lambda row: row.phase)
    if phases:
        site["phases"] = [{"phase": f"L{row.phase}", "watts": row.values["watts"]} for row in phases]
    return site


# A gateway's state in `status`, worst first, as the lines of a fleet come: no data at all yet; its last run
# failed; no successful read for a while without a failure (no collector polls it); some endpoints failed;
# read fine, but its token runs out soon and is not being renewed; fine.
STATES = ("never_collected", "failing", "stale", "partial", "token_expiring", "ok")
# No successful read for longer than this is a problem: the quiet window of `collect` (`quiet_minutes`).
STALE_AFTER = timedelta(minutes=15)


def status_document(
    engine: Engine,
    now: datetime,
    *,
    gateway: str | None = None,
    stale_after: timedelta = STALE_AFTER,
    count_rows: bool | None = True,
) -> dict[str, Any]:
    """Per gateway: its state and problem, firmware, last success, last error, token expiry, rows; a summary.

    The gateways come worst first (STATES); within a state, the longest without a successful read first (or
    the token that runs out first), else by name. `gateway` (a configured name or a serial) keeps those it
    stands for. A handful of queries whatever the number of gateways. Counting the stored readings reads all
    of them: with `count_rows` None they are counted only when the document is about one gateway (`rows` is
    None otherwise).
    """
    with engine.connect() as conn:
        if conn.dialect.name == "postgresql":
            # One snapshot for the handful of queries, and no JIT: compiling them costs more than they take.
            conn.exec_driver_sql("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            conn.exec_driver_sql("SET LOCAL jit = off")
        stored = list_gateways(conn)
        # A run that never reached its gateway knows only the configured name: it belongs to the gateway
        # last seen under that name, or, for a gateway never reached at all, to an entry of its own.
        newest_by_name: dict[str, Row[Any]] = {}
        for row in stored:
            known = newest_by_name.get(row.name)
            if known is None or row.last_seen_at > known.last_seen_at:
                newest_by_name[row.name] = row
        chosen, unreached = _chosen(conn, stored, gateway, set(newest_by_name))
        ids = None if gateway is None else [row.id for row in chosen]
        newest = runs.newest_runs(conn, ids)
        names = None if gateway is None else {row.name for row in chosen} | set(unreached)
        unattributed = runs.newest_unattributed_runs(conn, names)
        if gateway is None:
            unreached = sorted(set(unattributed) - set(newest_by_name))
        tokens = credentials.load_tokens(conn, ids)
        events = load_newest_events(conn, ids)
        resting = breakers.load_open_breakers(conn, ids, now)
        if count_rows is None:
            count_rows = len(chosen) + len(unreached) <= 1
        counted = samples.count_rows_by_gateway(conn, ids) if count_rows else {}
        size = _database_bytes(engine, conn)
    entries = []
    for row in chosen:
        mine = newest.get(row.id, NewestRuns())
        if newest_by_name[row.name].id == row.id:
            mine = mine.merged(unattributed.get(row.name, NewestRuns()))
        token = tokens.get(row.id)
        has_token = token is not None and bool(token.secret)
        event = events.get(row.id, NewestEvents())
        change = event.firmware_change
        entries.append(
            _entry(
                {
                    "serial": row.serial,
                    "name": row.name,
                    "firmware": row.firmware,
                    "last_firmware_change": None
                    if change is None
                    else {"at": iso_z(change.at), "from": change.previous, "to": change.current},
                    **_run_fields(mine),
                    "token_expires_at": iso_z(token.expires_at) if token and has_token else None,
                    "token_days_left": _days_left(token.expires_at, now) if token and has_token else None,
                    "cloud": cloud_document(token),
                    "rows": dict(counted.get(row.id, _NO_ROWS)) if count_rows else None,
                    "last_event": None
                    if event.last is None
                    else {"at": iso_z(event.last.at), "kind": event.last.kind, "detail": event.last.detail},
                    "open_breakers": [
                        {"path": found.path, "timeouts": found.timeouts, "until": iso_z(found.open_until)}
                        for found in resting.get(row.id, [])
                    ],
                },
                mine,
                token if has_token else None,
                now,
                stale_after,
            )
        )
    for name in unreached:
        mine = unattributed.get(name, NewestRuns())
        fields = {
            "serial": None,
            "name": name,
            "firmware": None,
            "last_firmware_change": None,
            **_run_fields(mine),
            "token_expires_at": None,
            "token_days_left": None,
            "cloud": cloud_document(None),
            "rows": dict(_NO_ROWS) if count_rows else None,
            "last_event": None,
            "open_breakers": [],
        }
        entries.append(_entry(fields, mine, None, now, stale_after))
    entries.sort(key=lambda entry: entry[0])
    gateways = [document for _, document in entries]
    return {"gateways": gateways, "database_bytes": size, "summary": _summary(gateways)}


_NO_ROWS = {"meter": 0, "inverter": 0, "battery": 0}


def _chosen(
    conn: Connection, stored: list[Row[Any]], gateway: str | None, stored_names: set[str]
) -> tuple[list[Row[Any]], list[str]]:
    """The stored gateways `gateway` stands for (all without it), and the never-reached name it may be."""
    if gateway is None:
        return stored, []
    try:
        ids = {row.id for row in lookup_gateways(conn, gateway)}
    except ConfigError:
        # Not stored: perhaps a configured gateway whose every run failed before it said who it is.
        if gateway in stored_names or not runs.newest_unattributed_runs(conn, [gateway]):
            raise
        return [], [gateway]
    return [row for row in stored if row.id in ids], []


def _run_fields(newest: NewestRuns) -> dict[str, Any]:
    """Last run, last success and last error, as the document has them."""
    last, success, error = newest.last, newest.success, newest.error
    # `at` is the start of a run, as it always was; `finished_at` is when it ended (null while it runs).
    return {
        "last_run": None
        if last is None
        else {
            "at": iso_z(last.started_at),
            "finished_at": iso_z(last.finished_at),
            "outcome": last.outcome,
            "requests": last.requests,
        },
        "last_success_at": iso_z(success.finished_at) if success else None,
        "last_error": None
        if error is None
        else {"at": iso_z(error.started_at), "finished_at": iso_z(error.finished_at), "message": error.error},
    }


def _entry(
    fields: dict[str, Any],
    newest: NewestRuns,
    token: credentials.StoredToken | None,
    now: datetime,
    stale_after: timedelta,
) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """The gateway's document with its state and problem, and where it sorts among the others."""
    state, problem = gateway_state(newest, now, stale_after)
    token_problem = _token_problem(token, now)
    if token_problem is not None:
        if state == "ok":
            state, problem = "token_expiring", token_problem
        else:
            problem = f"{problem}; {token_problem}"
    document = {"serial": fields["serial"], "name": fields["name"], "state": state, "problem": problem}
    document.update(fields)
    # Worst first within a state too: the longest without a successful read, the token that runs out soonest;
    # where nothing tells them apart (never collected, partial, ok), by name.
    worst = 0.0
    if state in ("failing", "stale") and newest.success and newest.success.finished_at:
        worst = newest.success.finished_at.timestamp()
    elif state == "token_expiring" and token and token.expires_at:
        worst = token.expires_at.timestamp()
    return (STATES.index(state), worst, fields["name"], fields["serial"] or ""), document


def gateway_state(newest: NewestRuns, now: datetime, stale_after: timedelta) -> tuple[str, str | None]:
    """A gateway's state (one of STATES but token_expiring) and its problem in a few words, from its runs."""
    last, finished, success = newest.last, newest.finished, newest.success
    if success is None or success.finished_at is None:
        if newest.error is not None:
            return "never_collected", newest.error.error
        return "never_collected", "a first run is under way" if last is not None else "no run yet"
    if finished is not None and finished.outcome == "failed":
        return "failing", finished.error or (newest.error.error if newest.error else "the last run failed")
    quiet = now - success.finished_at
    if quiet > stale_after:
        if last is not None and last.outcome == "running":
            return "stale", (
                f"no successful read for {duration_text(quiet)}; "
                f"a run started {duration_text(now - last.started_at)} ago has not ended"
            )
        return "stale", f"no run for {duration_text(quiet)}"
    if finished is not None and finished.outcome == "partial":
        return "partial", finished.error or "some endpoints failed"
    return "ok", None


def _token_problem(token: credentials.StoredToken | None, now: datetime) -> str | None:
    """A token that runs out soon and is not being renewed: it expires, or its renewal fails."""
    if token is None or token.expires_at is None:
        return None
    left = token.expires_at - now
    if left <= timedelta(0):
        return f"token expired {duration_text(-left)} ago"
    if left > RENEW_BEFORE.get(token.enphase_user or "", timedelta(hours=1)):
        return None
    if token.cloud_failures:
        cause = f": {token.cloud_error}" if token.cloud_error else ""
        return f"token expires in {duration_text(left)}; renewing it failed{cause}"
    if token.source == "cloud":
        return None  # due: the next run renews it
    # A pasted or configured token is renewed only with an Enphase login, which would have happened by now.
    return f"token expires in {duration_text(left)}; not renewed (no Enphase login to renew it)"


def _summary(gateways: list[dict[str, Any]]) -> dict[str, Any]:
    """How many gateways are in each state (the healthy first), and the newest successful read of any."""
    counts = {state: 0 for state in reversed(STATES)}
    for document in gateways:
        counts[document["state"]] += 1
    successes = [document["last_success_at"] for document in gateways if document["last_success_at"]]
    return {"gateways": len(gateways), "states": counts, "last_success_at": max(successes, default=None)}


def _days_left(expires_at: datetime | None, now: datetime) -> float | None:
    return None if expires_at is None else round((expires_at - now).total_seconds() / 86400, 1)


def _database_bytes(engine: Engine, conn: Connection) -> int | None:
    if engine.dialect.name == "sqlite":
        path = engine.url.database or ""
        return sum(os.path.getsize(p) for p in (path, f"{path}-wal") if os.path.exists(p))
    # The tables in envoylog's schema (search_path), indexes included.
    query = text(
        "SELECT COALESCE(SUM(pg_total_relation_size(c.oid)), 0) FROM pg_class c "
        "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind = 'r' AND n.nspname = current_schema()"
    )
    return int(conn.execute(query).scalar_one())


def cloud_document(token: credentials.StoredToken | None) -> dict[str, Any]:
    """How getting tokens from the Enphase cloud goes: the route that gave the last token (tried first),
    failed attempts since, and what failed on each route (after a token, the routes that failed before it)."""
    return {
        "route": token.cloud_route if token else None,
        "failures": token.cloud_failures if token else 0,
        "failing_since": iso_z(token.cloud_failing_since) if token else None,
        "retry_at": iso_z(token.cloud_retry_at) if token else None,
        "error": token.cloud_error if token else None,
    }


def auth_document(engine: Engine, now: datetime) -> dict[str, Any]:
    """Token and session per gateway (`envoylog auth status --format json`); never the secrets themselves."""
    gateways = []
    with engine.connect() as conn:
        for gateway in list_gateways(conn):
            token = credentials.load_token(conn, gateway.id)
            session = credentials.load_session(conn, gateway.id)
            has_token = token is not None and token.secret is not None
            gateways.append(
                {
                    "serial": gateway.serial,
                    "name": gateway.name,
                    "token": {
                        "present": has_token,
                        "source": token.source if has_token and token else None,
                        "enphase_user": token.enphase_user if has_token and token else None,
                        "issued_at": iso_z(token.issued_at) if has_token and token else None,
                        "expires_at": iso_z(token.expires_at) if has_token and token else None,
                        "days_left": _days_left(token.expires_at, now) if has_token and token else None,
                        "cloud_failures": token.cloud_failures if token else 0,
                        "cloud_retry_at": iso_z(token.cloud_retry_at) if token else None,
                        "cloud_error": token.cloud_error if token else None,
                    },
                    "session": {
                        "present": session is not None,
                        "last_used_at": iso_z(session.last_used_at) if session else None,
                    },
                    "cloud": cloud_document(token),
                }
            )
    return {"gateways": gateways}
