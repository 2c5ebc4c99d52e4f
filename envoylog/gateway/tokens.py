"""Enphase tokens: JWTs whose claims are read without verifying the signature (the gateway verifies it)."""

from __future__ import annotations

import binascii
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from envoylog.errors import ConfigError
from envoylog.jwt import b64url_decode

# How long before expiry a token is renewed: owner tokens live a year, installer tokens twelve hours.
RENEW_BEFORE = {"owner": timedelta(days=30), "installer": timedelta(hours=1)}


@dataclass(frozen=True)
class TokenInfo:
    """A token and the claims envoylog acts on."""

    token: str = field(repr=False)
    enphase_user: str  # "owner" | "installer" (other values are kept as given)
    issued_at: datetime | None
    expires_at: datetime
    username: str | None
    serial: str | None  # the `aud` claim: the gateway the token is for

    def expired(self, now: datetime) -> bool:
        """True once the token's `exp` has passed."""
        return now >= self.expires_at

    def due_for_renewal(self, now: datetime) -> bool:
        """True when the token is close enough to its expiry to fetch a new one."""
        return now >= self.expires_at - RENEW_BEFORE.get(self.enphase_user, timedelta(hours=1))


def redact(secret: str | None) -> str:
    """A few leading characters of a secret, enough to tell two apart in a message."""
    if not secret:
        return "(none)"
    return f"{secret[:6]}…" if len(secret) > 10 else "…"


def decode_token(token: str) -> TokenInfo:
    """Read a token's claims; a ConfigError says why a string is not a usable Enphase token."""
    token = token.strip()
    parts = token.split(".")
    if len(parts) != 3 or not all(parts):
        raise ConfigError("the token is not a JWT (three dot-separated parts): paste the whole token")
    try:
        claims = json.loads(b64url_decode(parts[1]))
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise ConfigError("the token's claims cannot be decoded: paste the whole token") from None
    if not isinstance(claims, dict):
        raise ConfigError("the token's claims are not a JSON object")
    expires_at = _epoch(claims.get("exp"))
    if expires_at is None:
        raise ConfigError("the token has no valid expiry (exp claim)")
    user = claims.get("enphaseUser")
    audience = claims.get("aud")
    username = claims.get("username")
    return TokenInfo(
        token=token,
        enphase_user=user if isinstance(user, str) and user else "owner",
        issued_at=_epoch(claims.get("iat")),
        expires_at=expires_at,
        username=username if isinstance(username, str) else None,
        serial=str(audience) if isinstance(audience, str | int) and not isinstance(audience, bool) else None,
    )


def _epoch(value: Any) -> datetime | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        return None
    try:
        return datetime.fromtimestamp(value, UTC)
    except (OverflowError, OSError, ValueError):
        return None
