"""The token lifecycle: the stored token, else the configured one, else one from the cloud; a reused session.

Every change (a new token, a new session, a cloud failure) is committed at once in its own transaction, so a
run that fails later still leaves what it learned for the next run.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta

from envoylog.config import GatewaySettings
from envoylog.errors import AuthError
from envoylog.gateway.client import READ_TIMEOUT_S, Answer, GatewayClient
from envoylog.gateway.cloud import CloudClient, CloudError, CloudTimeUp
from envoylog.gateway.store import AuthStore, TokenSource
from envoylog.gateway.tokens import TokenInfo, decode_token

log = logging.getLogger(__name__)

# The gateway drops a session unused for 10 minutes; a little less, so a run never sends a dead cookie.
SESSION_IDLE_LIMIT = timedelta(minutes=9, seconds=30)

CREDENTIALS_HINT = (
    "set ENVOYLOG_USERNAME and ENVOYLOG_PASSWORD (or username/password in the config file), "
    "or store a token with `envoylog auth set-token`"
)


class GatewayAuth:
    """Authorized requests to one gateway of firmware 7 or later."""

    def __init__(
        self,
        *,
        store: AuthStore,
        serial: str,
        settings: GatewaySettings,
        client: GatewayClient,
        cloud: CloudClient,
        clock: Callable[[], datetime],
    ) -> None:
        self.store = store
        self.serial = serial
        self.settings = settings
        self.client = client
        self.cloud = cloud
        self.clock = clock
        self.token: TokenInfo | None = None
        self.session_id: str | None = None
        self.session_used = False
        self._recovered = False
        # This run told the user about a cloud failure only they can fix (a warning or its error): the
        # escalation of a lasting renewal failure adds no line of its own.
        self.told_user = False

    # --- before the first request ---

    def prepare(self) -> None:
        """Pick the token and session to start with; renew a token that is close to its expiry."""
        now = self.clock()
        stored = self.store.load_token()
        session = self.store.load_session()
        self.token = self._usable(stored.secret if stored else None, now)
        reason = "no usable token is stored"
        if self.token is None and self.settings.token:
            configured = decode_token(self.settings.token)
            if not configured.expired(now):
                self._store(configured, "config")
            else:
                reason = (
                    f"the configured token (ENVOYLOG_TOKEN or `token`) expired at "
                    f"{configured.expires_at:%Y-%m-%d %H:%M} UTC"
                )
        if self.token is None:
            self._from_cloud(reason=reason)
        elif self.token.due_for_renewal(now) and self._has_credentials():
            if stored is not None and stored.cloud_retry_at and now < stored.cloud_retry_at:
                # No attempt while the back-off lasts: nothing new to say (the failed attempt said it).
                log.info("the token expires soon; the next cloud attempt is after %s", stored.cloud_retry_at)
            else:
                try:
                    self._from_cloud(reason="the token expires soon")
                except CloudTimeUp as exc:
                    # No attempt was made (the run's time ran out): the next run tries, nothing to say.
                    log.info("could not renew the token early: %s", exc)
                except AuthError as exc:
                    if exc.transient:
                        # The cloud is down or slow: said only if it lasts (a day by default: escalation).
                        log.info("could not renew the token early (the current one still works): %s", exc)
                    else:
                        # Said once per failed attempt, so at most once per back-off step under cron.
                        log.warning("could not renew the token early (the current one still works): %s", exc)
                        self.told_user = True
        if session is not None and session.last_used_at and now - session.last_used_at < SESSION_IDLE_LIMIT:
            self.session_id = session.secret

    def _usable(self, secret: str | None, now: datetime) -> TokenInfo | None:
        if not secret:
            return None
        try:
            token = decode_token(secret)
        except Exception:  # a stored token that no longer decodes is as good as none
            return None
        return None if token.expired(now) else token

    # --- requests ---

    def get(self, path: str, *, read_timeout: float = READ_TIMEOUT_S) -> Answer:
        """GET a data endpoint with the session; on 401/403 re-authenticate once per run and retry once."""
        if self.session_id is None:
            self._recovered = True  # a fresh check_jwt now is this run's one recovery
            self._open_session()
        answer = self.client.get(
            path, read_timeout=read_timeout, cookies={"sessionId": self.session_id or ""}
        )
        if answer.status in (401, 403) and not self._recovered:
            self._recovered = True
            log.info("%s answered %s: opening a new session", path, answer.status)
            self._open_session()
            answer = self.client.get(
                path, read_timeout=read_timeout, cookies={"sessionId": self.session_id or ""}
            )
        if answer.status == 200:
            self.session_used = True
        return answer

    def _open_session(self) -> None:
        """check_jwt with the token; a refused token is replaced from the cloud once."""
        if self.token is not None and self._check_jwt(self.token):
            return
        if not self._has_credentials():
            raise AuthError(f"gateway {self.serial} refuses the token: {CREDENTIALS_HINT}")
        self._from_cloud(reason="the gateway refused the token")
        assert self.token is not None
        if not self._check_jwt(self.token):
            raise AuthError(f"gateway {self.serial} refuses even a new token from the Enphase cloud")

    def _check_jwt(self, token: TokenInfo) -> bool:
        answer = self.client.get("/auth/check_jwt", headers={"Authorization": f"Bearer {token.token}"})
        session_id = answer.cookies.get("sessionId")
        if answer.status != 200 or not session_id:
            log.info("check_jwt refused the token (HTTP %s)", answer.status)
            return False
        self.session_id = session_id
        self.store.save_session(session_id, self.clock())
        log.info("new gateway session")
        return True

    # --- the cloud ---

    def _has_credentials(self) -> bool:
        return bool(self.settings.username and self.settings.password)

    def _from_cloud(self, *, reason: str) -> None:
        if not self._has_credentials():
            raise AuthError(f"{reason} for gateway {self.serial}: {CREDENTIALS_HINT}")
        now = self.clock()
        stored = self.store.load_token()
        if stored and stored.cloud_retry_at and now < stored.cloud_retry_at:
            # No attempt this time; the cause of the last failure is what the user can act on.
            failed = "the last Enphase cloud login failed"
            if stored.cloud_error:  # absent only from a back-off recorded before causes were kept
                failed += f": {stored.cloud_error}"
            waiting = AuthError(f"{reason}; {failed}; {_next_attempt(stored.cloud_retry_at)}")
            # Said by the run that failed; a run that only waits is quiet (its exit code stays 3).
            waiting.quiet = True
            # Whether it lasts past the quiet window is escalation's to say, unless the user was told.
            waiting.transient = True
            raise waiting
        try:
            self.token = fetch_and_store_token(self.store, self.serial, self.settings, self.cloud, now)
        except CloudError as exc:
            assert exc.retry_at is not None  # recorded by fetch_and_store_token
            error = AuthError(f"{exc}; {_next_attempt(exc.retry_at)}")
            error.transient = not getattr(exc, "needs_user", False)
            self.told_user = not error.transient
            raise error from None

    def _store(self, token: TokenInfo, source: TokenSource) -> None:
        self.store.save_token(token, source, self.clock())
        self.token = token


def _next_attempt(retry_at: datetime) -> str:
    """When the back-off allows the next cloud attempt, and how to make one now."""
    return f"next attempt after {retry_at:%Y-%m-%d %H:%M} UTC (`envoylog auth login` tries now)"


def fetch_and_store_token(
    store: AuthStore,
    serial: str,
    settings: GatewaySettings,
    cloud: CloudClient,
    now: datetime,
) -> TokenInfo:
    """Get a token from the cloud and store it; a failure is recorded, with its cause, for the back-off.

    The routes are tried in order, the one remembered from the last token first; one failure is recorded for
    the whole attempt (every route failed), and the route that worked is remembered.
    """
    # The cloud's routes (and their HTML parsing) are loaded only by the runs that need a token.
    from envoylog.gateway.routes import fetch_token

    assert settings.username and settings.password
    stored = store.load_token()
    try:
        got = fetch_token(
            cloud,
            username=settings.username,
            password=settings.password,
            serial=serial,
            first=stored.cloud_route if stored else None,
        )
    except CloudError as exc:
        exc.retry_at = store.record_cloud_failure(now, str(exc))
        raise
    token = got.token
    if token.serial and token.serial != serial:
        raise AuthError(f"the Enphase cloud issued a token for gateway {token.serial}, not {serial}")
    store.save_token(token, "cloud", now, got.route)
    return token
