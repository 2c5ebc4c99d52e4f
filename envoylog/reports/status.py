"""What is stored, as JSON-ready documents: the latest readings, each gateway's status, the auth state."""

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
from envoylog.reports.columns import SITE_KINDS
from envoylog.times import iso_z


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
                    "token_expires_at": iso_z(token.expires_at) if token and token.secret else None,
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
    success = conn.execute(base.where(Run.outcome.in_(runs.SUCCESS))).one_or_none()
    error = conn.execute(base.where(Run.error.is_not(None))).one_or_none()
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


def _firmware_change(conn: Connection, gateway_id: int) -> dict[str, Any] | None:
    change = load_firmware_change(conn, gateway_id)
    if change is None:
        return None
    return {"at": iso_z(change.at), "from": change.previous, "to": change.current}


def _last_event(conn: Connection, gateway_id: int) -> dict[str, Any] | None:
    events = load_events(conn, gateway_id, limit=1)
    if not events:
        return None
    return {"at": iso_z(events[0].at), "kind": events[0].kind, "detail": events[0].detail}


def _never_reached(conn: Connection, known_names: set[str]) -> list[str]:
    """Names of configured gateways whose runs all failed before the gateway said who it is."""
    query = select(Run.gateway_name).where(Run.gateway_id.is_(None)).distinct()
    return sorted(name for name in conn.execute(query).scalars() if name not in known_names)


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
                }
            )
    return {"gateways": gateways}
