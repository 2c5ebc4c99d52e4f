"""What is stored, as JSON-ready documents (SPEC section 3) and plain-text tables: latest, status, auth."""

from __future__ import annotations

import os
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, and_, or_, select, text
from sqlalchemy.engine import Connection

from envoylog.db import credentials, runs, samples
from envoylog.db.gateways import list_gateways, load_events, load_firmware_change
from envoylog.db.models import Run
from envoylog.db.samples import LatestRow

SITE_KINDS = ("production", "consumption", "net_consumption")


def iso(value: datetime | None) -> str | None:
    """ISO 8601 UTC with a Z, as the JSON contracts want."""
    if value is None:
        return None
    return value.isoformat(timespec="seconds").replace("+00:00", "Z")


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
                "collected_at": iso(success.finished_at) if success else None,
            }
            for kind in SITE_KINDS:
                document[kind] = _site(rows, kind)
            document["inverters"] = sorted(
                (
                    {
                        "serial": row.device,
                        "watts": row.values["watts"],
                        "max_watts": row.values["max_watts"],
                        "reported_at": iso(row.at),
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
                    "read_at": iso(row.at),
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
        "read_at": iso(total.at),
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


def format_latest(document: dict[str, Any]) -> str:
    """`envoylog latest` as a table a person reads."""
    if not document["gateways"]:
        return "nothing stored yet: run `envoylog collect` (or try `envoylog demo`)"
    lines = []
    for gateway in document["gateways"]:
        lines.append(
            f"gateway {gateway['serial']} ({gateway['name']}), firmware {gateway['firmware']}, "
            f"collected {gateway['collected_at'] or 'never'}"
        )
        for kind in SITE_KINDS:
            site = gateway[kind]
            if site is None:
                lines.append(f"  {kind:<16} not measured")
                continue
            energy = (
                f"{site['wh_lifetime'] / 1000:,.1f} kWh lifetime" if site["wh_lifetime"] is not None else ""
            )
            source = f" [{site['source']}]" if "source" in site else ""
            lines.append(f"  {kind:<16} {site['watts']:>10,.1f} W  {energy}{source}  at {site['read_at']}")
        inverters = gateway["inverters"]
        if inverters:
            total = sum(inverter["watts"] for inverter in inverters)
            newest = max(inverter["reported_at"] for inverter in inverters)
            lines.append(
                f"  inverters        {len(inverters)} reporting {total:,.0f} W in all, newest report {newest}"
            )
        for battery in gateway["batteries"]:
            name = battery["serial"] or "AC Battery"
            lines.append(
                f"  battery {name}: {_number(battery['soc_percent'])} %, {_number(battery['watts'])} W"
            )
    return "\n".join(lines)


def _number(value: float | None) -> str:
    return "?" if value is None else f"{value:,.0f}"


def status_document(engine: Engine, now: datetime) -> dict[str, Any]:
    """Per gateway: firmware, last success, last error, token expiry, rows; and the database size."""
    gateways = []
    with engine.connect() as conn:
        stored = list_gateways(conn)
        # A run that never reached its gateway knows only the configured name: it belongs to the gateway
        # last seen under that name, or, for a gateway never reached at all, to an entry of its own.
        newest_by_name: dict[str, Any] = {}
        for gateway in stored:
            known = newest_by_name.get(gateway.name)
            if known is None or gateway.last_seen_at > known.last_seen_at:
                newest_by_name[gateway.name] = gateway
        for gateway in stored:
            unattributed = gateway.name if newest_by_name[gateway.name] is gateway else None
            token = credentials.load_token(conn, gateway.id)
            gateways.append(
                {
                    "serial": gateway.serial,
                    "name": gateway.name,
                    "firmware": gateway.firmware,
                    "last_firmware_change": _firmware_change(conn, gateway.id),
                    **_run_fields(conn, gateway.id, unattributed),
                    "token_expires_at": iso(token.expires_at) if token and token.secret else None,
                    "token_days_left": _days_left(token.expires_at, now) if token and token.secret else None,
                    "rows": samples.count_rows(conn, gateway.id),
                    "last_event": _last_event(conn, gateway.id),
                }
            )
        for name in _never_reached(conn, set(newest_by_name)):
            gateways.append(
                {
                    "serial": None,
                    "name": name,
                    "firmware": None,
                    "last_firmware_change": None,
                    **_run_fields(conn, None, name),
                    "token_expires_at": None,
                    "token_days_left": None,
                    "rows": {"meter": 0, "inverter": 0, "battery": 0},
                    "last_event": None,
                }
            )
        size = _database_bytes(engine, conn)
    return {"gateways": gateways, "database_bytes": size}


def _run_fields(conn: Connection, gateway_id: int | None, unattributed: str | None) -> dict[str, Any]:
    """Last run, last success and last error of a gateway, with the runs that failed before knowing it."""
    mine = [Run.gateway_id == gateway_id] if gateway_id is not None else []
    if unattributed is not None:
        mine.append(and_(Run.gateway_id.is_(None), Run.gateway_name == unattributed))
    # Runs a second apart share a started_at (stored to the second): the id tells which came last.
    base = select(Run).where(or_(*mine)).order_by(Run.started_at.desc(), Run.id.desc()).limit(1)
    last = conn.execute(base).one_or_none()
    success = conn.execute(base.where(Run.outcome.in_(("ok", "partial")))).one_or_none()
    error = conn.execute(base.where(Run.error.is_not(None))).one_or_none()
    # `at` is the start of a run, as it always was; `finished_at` is when it ended (null while it runs).
    return {
        "last_run": None
        if last is None
        else {
            "at": iso(last.started_at),
            "finished_at": iso(last.finished_at),
            "outcome": last.outcome,
            "requests": last.requests,
        },
        "last_success_at": iso(success.finished_at) if success else None,
        "last_error": None
        if error is None
        else {"at": iso(error.started_at), "finished_at": iso(error.finished_at), "message": error.error},
    }


def _firmware_change(conn: Connection, gateway_id: int) -> dict[str, Any] | None:
    change = load_firmware_change(conn, gateway_id)
    if change is None:
        return None
    return {"at": iso(change.at), "from": change.previous, "to": change.current}


def _last_event(conn: Connection, gateway_id: int) -> dict[str, Any] | None:
    events = load_events(conn, gateway_id, limit=1)
    if not events:
        return None
    return {"at": iso(events[0].at), "kind": events[0].kind, "detail": events[0].detail}


def _never_reached(conn: Connection, known_names: set[str]) -> list[str]:
    """Names of configured gateways whose runs all failed before the gateway said who it is."""
    query = select(Run.gateway_name).where(Run.gateway_id.is_(None)).distinct()
    return sorted(name for name in conn.execute(query).scalars() if name not in known_names)


def format_status(document: dict[str, Any]) -> str:
    """`envoylog status` as a table."""
    lines = []
    for gateway in document["gateways"]:
        error = gateway["last_error"]
        run = gateway["last_run"]
        rows = gateway["rows"]
        change = gateway["last_firmware_change"]
        lines += [
            f"gateway {gateway['serial'] or '(never reached)'} ({gateway['name']})",
            f"  firmware:        {gateway['firmware'] or 'unknown'}",
        ]
        if change is not None:
            lines.append(f"  firmware update: {change['at']} {change['from']} -> {change['to']}")
        # Every time below is when a run ended, so the lines compare at a glance.
        lines += [
            f"  last success:    {gateway['last_success_at'] or 'never'}",
            f"  last run:        {_run_line(run)}",
            f"  last error:      {_error_line(error)}",
            f"  token expires:   {_token_line(gateway)}",
            f"  rows stored:     {rows['meter']:,} meter, {rows['inverter']:,} inverter, "
            f"{rows['battery']:,} battery",
        ]
        event = gateway["last_event"]
        if event is not None:
            lines.append(f"  last event:      {event['at']} {event['kind']}: {event['detail']}")
    if not document["gateways"]:
        lines.append("no gateway collected yet: run `envoylog collect`")
    size = document["database_bytes"]
    lines.append(f"database size: {size / 1e6:,.1f} MB" if size is not None else "database size: unknown")
    return "\n".join(lines)


def _run_line(run: dict[str, Any] | None) -> str:
    if run is None:
        return "never"
    if run["finished_at"] is None:
        return f"running since {run['at']}"
    return f"{run['finished_at']} {run['outcome']}"


def _error_line(error: dict[str, Any] | None) -> str:
    if error is None:
        return "none"
    return f"{error['finished_at'] or error['at']} {error['message']}"


def _token_line(gateway: dict[str, Any]) -> str:
    if gateway["token_expires_at"] is None:
        return "no token stored"
    return f"{gateway['token_expires_at']} ({_days_text(gateway['token_days_left'])})"


def _days_text(days_left: float | None) -> str:
    if days_left is None:
        return "expiry unknown"
    return "expired" if days_left <= 0 else f"{days_left:.1f} days left"


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
                        "issued_at": iso(token.issued_at) if has_token and token else None,
                        "expires_at": iso(token.expires_at) if has_token and token else None,
                        "days_left": _days_left(token.expires_at, now) if has_token and token else None,
                        "cloud_failures": token.cloud_failures if token else 0,
                        "cloud_retry_at": iso(token.cloud_retry_at) if token else None,
                        "cloud_error": token.cloud_error if token else None,
                    },
                    "session": {
                        "present": session is not None,
                        "last_used_at": iso(session.last_used_at) if session else None,
                    },
                }
            )
    return {"gateways": gateways}


_TOKEN_ORIGINS = {
    "cloud": "from the Enphase cloud",
    "manual": "pasted with `auth set-token`",
    "config": "from the configuration",
}


def format_auth(document: dict[str, Any]) -> str:
    """`envoylog auth status` as a table."""
    if not document["gateways"]:
        return "no gateway known yet: run `envoylog collect` or `envoylog auth login`"
    lines = []
    for gateway in document["gateways"]:
        token, session = gateway["token"], gateway["session"]
        if token["present"]:
            origin = _TOKEN_ORIGINS.get(token["source"], f"from {token['source']}")
            described = (
                f"{token['enphase_user']} token {origin}, expires {token['expires_at']} "
                f"({_days_text(token['days_left'])})"
            )
        else:
            described = "none stored"
        session_text = f"last used {session['last_used_at']}" if session["present"] else "none"
        lines += [
            f"gateway {gateway['serial']} ({gateway['name']})",
            f"  token:   {described}",
            f"  session: {session_text}",
        ]
        if token["cloud_retry_at"]:
            cause = f": {token['cloud_error']}" if token["cloud_error"] else ""
            lines.append(
                f"  cloud:   login failed {token['cloud_failures']}x{cause}; "
                f"next attempt after {token['cloud_retry_at']}"
            )
    return "\n".join(lines)
