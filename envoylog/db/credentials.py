"""A gateway's token and session rows, and the back-off after failed cloud logins (1 h, doubling to 12 h)."""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.engine import Connection, Row

from envoylog.db.models import AUTH
from envoylog.db.sql import dialect_insert

CLOUD_BACKOFF_FIRST = timedelta(hours=1)


CLOUD_BACKOFF_MAX = timedelta(hours=12)


@dataclass(frozen=True)
class StoredToken:
    """The token row of a gateway (its secret may be absent when only a cloud back-off is recorded)."""

    secret: str | None
    source: str | None
    enphase_user: str | None
    issued_at: datetime | None
    expires_at: datetime | None
    cloud_failures: int
    cloud_retry_at: datetime | None
    cloud_error: str | None  # why the last cloud attempt failed, on each route (no secrets in it)
    cloud_route: str | None = None  # the cloud route that last gave a token: tried first next time
    cloud_failing_since: datetime | None = None  # the first failed cloud attempt since the last token


@dataclass(frozen=True)
class StoredSession:
    """A gateway session cookie and when it was last used."""

    secret: str
    last_used_at: datetime | None


def load_token(conn: Connection, gateway_id: int) -> StoredToken | None:
    """The stored token row of a gateway."""
    row = _auth_row(conn, gateway_id, "token")
    return None if row is None else _token(row)


def _token(row: Row[Any]) -> StoredToken:
    return StoredToken(
        row.secret,
        row.source,
        row.enphase_user,
        row.issued_at,
        row.expires_at,
        row.cloud_failures,
        row.cloud_retry_at,
        row.cloud_error,
        row.cloud_route,
        row.cloud_failing_since,
    )


def load_tokens(conn: Connection, gateway_ids: Collection[int] | None = None) -> dict[int, StoredToken]:
    """The token rows of every gateway (or of those in `gateway_ids`) that has one, by gateway id."""
    query = select(AUTH).where(AUTH.c.kind == "token")
    if gateway_ids is not None:
        query = query.where(AUTH.c.gateway_id.in_(list(gateway_ids)))
    return {row.gateway_id: _token(row) for row in conn.execute(query)}


def load_session(conn: Connection, gateway_id: int) -> StoredSession | None:
    """The stored session cookie of a gateway."""
    return _session(_auth_row(conn, gateway_id, "session"))


def _session(row: Row[Any] | None) -> StoredSession | None:
    if row is None or not row.secret:
        return None
    return StoredSession(row.secret, row.last_used_at)


@dataclass(frozen=True)
class StoredAuth:
    """A gateway's token row and session, read at once."""

    token: StoredToken | None
    session: StoredSession | None


def load_auth(conn: Connection, gateway_id: int) -> StoredAuth:
    """The token row and the session of a gateway, in one query."""
    rows = {row.kind: row for row in conn.execute(select(AUTH).where(AUTH.c.gateway_id == gateway_id))}
    token = rows.get("token")
    return StoredAuth(_token(token) if token is not None else None, _session(rows.get("session")))


def save_token(
    conn: Connection,
    gateway_id: int,
    *,
    secret: str,
    source: str,
    enphase_user: str,
    issued_at: datetime | None,
    expires_at: datetime,
    now: datetime,
    cloud_route: str | None = None,
    cloud_error: str | None = None,
) -> None:
    """Store a token (replacing any other) and clear the cloud back-off and failures.

    `cloud_route`: the cloud route that gave the token, remembered (None keeps the remembered one: a pasted
    token says nothing about the routes); `cloud_error`: what failed on the routes tried before it, if any.
    """
    values: dict[str, Any] = {
        "secret": secret,
        "source": source,
        "enphase_user": enphase_user,
        "issued_at": issued_at,
        "expires_at": expires_at,
        "last_used_at": None,
        "updated_at": now,
        "cloud_failures": 0,
        "cloud_retry_at": None,
        "cloud_error": cloud_error,
        "cloud_failing_since": None,
    }
    if cloud_route is not None:
        values["cloud_route"] = cloud_route
    _upsert_auth(conn, gateway_id, "token", **values)


def record_cloud_failure(conn: Connection, gateway_id: int, now: datetime, error: str) -> datetime:
    """Count a failed cloud attempt and its reason; return when the next may be made (1 h, doubling to 12 h).

    `error` is shown again by later runs and `auth status`: one line that holds no password, token or session.
    The first failure since the last token stored starts `cloud_failing_since`.
    """
    stored = load_token(conn, gateway_id)
    failures = (stored.cloud_failures if stored else 0) + 1
    wait = min(CLOUD_BACKOFF_FIRST * (1 << min(failures - 1, 8)), CLOUD_BACKOFF_MAX)
    retry_at = now + wait
    since = stored.cloud_failing_since if stored and stored.cloud_failing_since else now
    values = {
        "cloud_failures": failures,
        "cloud_retry_at": retry_at,
        "cloud_error": error,
        "cloud_failing_since": since,
        "updated_at": now,
    }
    if stored is None:
        _upsert_auth(conn, gateway_id, "token", **values)
    else:
        conn.execute(
            update(AUTH).where(AUTH.c.gateway_id == gateway_id, AUTH.c.kind == "token").values(**values)
        )
    return retry_at


def save_session(conn: Connection, gateway_id: int, session_id: str, now: datetime) -> None:
    """Store a new session cookie, used just now."""
    _upsert_auth(conn, gateway_id, "session", secret=session_id, last_used_at=now, updated_at=now)


def touch_session(conn: Connection, gateway_id: int, now: datetime) -> None:
    """Record that the stored session was used successfully at `now`."""
    conn.execute(
        update(AUTH)
        .where(AUTH.c.gateway_id == gateway_id, AUTH.c.kind == "session")
        .values(last_used_at=now, updated_at=now)
    )


def delete_auth(conn: Connection, gateway_id: int, kinds: Iterable[str] = ("token", "session")) -> int:
    """Forget a gateway's token and/or session; return how many were deleted."""
    result = conn.execute(delete(AUTH).where(AUTH.c.gateway_id == gateway_id, AUTH.c.kind.in_(list(kinds))))
    return int(result.rowcount or 0)


def _auth_row(conn: Connection, gateway_id: int, kind: str) -> Row[Any] | None:
    query = select(AUTH).where(AUTH.c.gateway_id == gateway_id, AUTH.c.kind == kind)
    return conn.execute(query).one_or_none()


def _upsert_auth(conn: Connection, gateway_id: int, kind: str, **values: Any) -> None:
    insert = dialect_insert(conn)(AUTH).values(gateway_id=gateway_id, kind=kind, **values)
    conn.execute(insert.on_conflict_do_update(index_elements=["gateway_id", "kind"], set_=values))
