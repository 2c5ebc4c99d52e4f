"""Where a gateway's token and session live between runs: an interface the use case supplies.

The gateway layer speaks HTTP only; the collector hands it a store backed by the database, tests may hand it
anything that keeps the same promises.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal, Protocol

from envoylog.gateway.tokens import TokenInfo

# Where a stored token came from: the Enphase cloud, the config file or environment, or `auth set-token`.
TokenSource = Literal["cloud", "config", "manual"]


@dataclass(frozen=True)
class SavedToken:
    """The stored token of a gateway, and the cloud back-off recorded with it (the token may be absent)."""

    secret: str | None
    cloud_retry_at: datetime | None  # no cloud attempt before this time
    cloud_error: str | None  # why the last cloud attempt failed, to say again while the back-off lasts
    cloud_route: str | None = None  # the cloud route that last gave a token: tried first


@dataclass(frozen=True)
class CloudRoute:
    """The cloud route that gave a token, and what failed on the routes tried before it (one line, no
    secrets; None when none failed)."""

    name: str
    failures: str | None = None


@dataclass(frozen=True)
class SavedSession:
    """A gateway session cookie and when it last worked."""

    secret: str
    last_used_at: datetime | None


class AuthStore(Protocol):
    """Token and session persistence for one gateway. Each write is committed at once, so that a run that
    fails later still leaves what it learned for the next run."""

    def load_token(self) -> SavedToken | None:
        """The stored token, if any."""
        ...

    def load_session(self) -> SavedSession | None:
        """The stored session, if any."""
        ...

    def save_token(
        self, token: TokenInfo, source: TokenSource, now: datetime, route: CloudRoute | None = None
    ) -> None:
        """Store a token in place of any other and clear the cloud back-off; remember the cloud route that
        gave it (None keeps the one remembered)."""
        ...

    def save_session(self, session_id: str, now: datetime) -> None:
        """Store a new session, used just now."""
        ...

    def record_cloud_failure(self, now: datetime, error: str) -> datetime:
        """Count a failed cloud attempt and why (a line without secrets); return when the next may be made."""
        ...
