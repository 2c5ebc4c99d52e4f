"""The database behind a gateway's token and session: the store the gateway layer's auth asks for."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Engine
from sqlalchemy.engine import Connection

from envoylog.db import credentials, findings
from envoylog.gateway.store import CloudRoute, SavedSession, SavedToken, TokenSource
from envoylog.gateway.tokens import TokenInfo


class DatabaseAuthStore:
    """A gateway's auth rows; every write in a transaction of its own (see gateway.store.AuthStore).

    `read`: the rows as the run read them with its start, answered until the first write (a steady run then
    asks the database nothing more).
    """

    def __init__(self, engine: Engine, gateway_id: int, read: credentials.StoredAuth | None = None) -> None:
        self.engine = engine
        self.gateway_id = gateway_id
        self.read = read

    def load_token(self) -> SavedToken | None:
        """The stored token and the cloud back-off."""
        if self.read is not None:
            stored = self.read.token
        else:
            with self.engine.connect() as conn:
                stored = credentials.load_token(conn, self.gateway_id)
        if stored is None:
            return None
        return SavedToken(stored.secret, stored.cloud_retry_at, stored.cloud_error, stored.cloud_route)

    def load_session(self) -> SavedSession | None:
        """The stored session cookie."""
        if self.read is not None:
            stored = self.read.session
        else:
            with self.engine.connect() as conn:
                stored = credentials.load_session(conn, self.gateway_id)
        return SavedSession(stored.secret, stored.last_used_at) if stored is not None else None

    def save_token(
        self, token: TokenInfo, source: TokenSource, now: datetime, route: CloudRoute | None = None
    ) -> None:
        """Store a token in place of any other, clear the cloud back-off, remember the route that gave it."""
        self.read = None
        with self.engine.begin() as conn:
            store_token(conn, self.gateway_id, token, source, now, route)
            findings.log_auth(conn, self.gateway_id, "token", now)

    def save_session(self, session_id: str, now: datetime) -> None:
        """Store a new session, used just now."""
        self.read = None
        with self.engine.begin() as conn:
            credentials.save_session(conn, self.gateway_id, session_id, now)
            # `check` counts them: a session a minute is a refresh storm that loads the gateway.
            findings.log_auth(conn, self.gateway_id, "session", now)

    def record_cloud_failure(self, now: datetime, error: str) -> datetime:
        """Count a failed cloud attempt; return when the next may be made."""
        self.read = None
        with self.engine.begin() as conn:
            return credentials.record_cloud_failure(conn, self.gateway_id, now, error)


def store_token(
    conn: Connection,
    gateway_id: int,
    token: TokenInfo,
    source: TokenSource,
    now: datetime,
    route: CloudRoute | None = None,
) -> None:
    """Store a token's secret and the claims envoylog acts on, in place of any other."""
    credentials.save_token(
        conn,
        gateway_id,
        secret=token.token,
        source=source,
        enphase_user=token.enphase_user,
        issued_at=token.issued_at,
        expires_at=token.expires_at,
        now=now,
        cloud_route=route.name if route else None,
        cloud_error=route.failures if route else None,
    )
