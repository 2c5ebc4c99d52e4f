"""The Enphase cloud: an Enlighten login, then an Entrez token for one gateway."""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import requests

from envoylog.errors import AuthError, ConfigError
from envoylog.gateway.http import BodyTooLarge, BoundedSession, DeadlineReached
from envoylog.gateway.tokens import TokenInfo, decode_token

log = logging.getLogger(__name__)

CLOUD_TIMEOUT = (10.0, 30.0)
MIN_CLOUD_TIME_S = 0.5  # below this much time left a request is not started
CLOUD_DEADLINE_S = 60.0  # a login and a token request together, outside a collect run (auth login)


class CloudError(AuthError):
    """A failed cloud login or token request; its message is stored for the back-off: it holds no secret."""

    # When the next attempt may be made, once the failure is recorded (envoylog.gateway.auth).
    retry_at: datetime | None = None


class CloudRefused(CloudError):
    """Enlighten refused the username or password, or Entrez a token."""


class CloudMfa(CloudError):
    """The account uses multi-factor authentication: envoylog cannot log in for it."""


class CloudUnavailable(CloudError):
    """The cloud could not be reached or answered an error."""


class CloudTimeUp(AuthError):
    """The run's deadline came first: the next run tries again, without waiting out a back-off."""


MFA_HINT = (
    "the Enphase account uses multi-factor authentication: get a token at entrez.enphaseenergy.com "
    "and store it with `envoylog auth set-token -`"
)


@dataclass(frozen=True)
class _Reply:
    """A cloud service's answer: its status and its body (read whole, up to the size cap)."""

    status: int
    body: bytes

    def json(self, what: str) -> Any:
        try:
            return json.loads(self.body)
        except (ValueError, UnicodeDecodeError, RecursionError):
            raise CloudUnavailable(f"{what} answered something that is not JSON") from None

    def check(self, what: str) -> None:
        if self.status != 200:
            raise CloudUnavailable(f"{what} answered HTTP {self.status}")


@dataclass
class _Account:
    lock: threading.Lock = field(default_factory=threading.Lock)
    session_id: str | None = None
    failure: CloudError | None = None


class EnlightenLogins:
    """The Enlighten logins of one run, one per account: every gateway of an account shares it.

    An account with a hundred gateways due for tokens logs in once, not a hundred times (which is how
    accounts get rate-limited or locked); a refused login is not repeated by the account's other gateways.
    Thread-safe: the gateways of one account wait for the first one's login.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._accounts: dict[tuple[str, str, str], _Account] = {}

    def session_id(self, key: tuple[str, str, str], login: Callable[[], str]) -> str:
        """The account's session id, logging in with `login` the first time it is asked for."""
        with self._lock:
            account = self._accounts.setdefault(key, _Account())
        with account.lock:
            if account.failure is not None:
                # A new exception each time: the caller records its own back-off on it.
                raise type(account.failure)(str(account.failure))
            if account.session_id is None:
                try:
                    account.session_id = login()
                except CloudError as exc:
                    account.failure = exc
                    raise
            return account.session_id


class CloudClient:
    """Requests to Enlighten and Entrez, counted, each ending by the deadline (a time.monotonic() value)."""

    def __init__(
        self,
        enlighten_url: str,
        entrez_url: str,
        *,
        verify: str | bool = True,
        deadline: float | None = None,
        logins: EnlightenLogins | None = None,
    ) -> None:
        self.enlighten_url = enlighten_url
        self.logins = logins if logins is not None else EnlightenLogins()
        self.entrez_url = entrez_url
        self.verify = verify  # True: the system's CAs or REQUESTS_CA_BUNDLE; a path: that CA file
        self.deadline = deadline
        self.requests_made = 0

    def fetch_token(self, *, username: str, password: str, serial: str) -> TokenInfo:
        """Log into Enlighten and ask Entrez for a token for the gateway `serial`."""
        with BoundedSession() as session:  # verifies TLS; REQUESTS_CA_BUNDLE is honoured by requests
            session_id = self.logins.session_id(
                (self.enlighten_url, username.casefold(), password),
                lambda: self._login(session, username, password),
            )
            answer = self._post(
                session,
                f"{self.entrez_url}/tokens",
                "Entrez token request",
                json={"session_id": session_id, "serial_num": serial, "username": username},
            )
            if answer.status in (401, 403):
                raise CloudRefused(f"Entrez refused a token for gateway {serial} to {username}")
            answer.check("Entrez token request")
        try:
            token = decode_token(answer.body.decode("utf-8", "replace"))
        except ConfigError:
            raise CloudUnavailable("Entrez answered something that is not a token") from None
        log.info("new %s token from the Enphase cloud, valid until %s", token.enphase_user, token.expires_at)
        return token

    def _login(self, session: BoundedSession, username: str, password: str) -> str:
        login = self._post(
            session,
            f"{self.enlighten_url}/login/login.json",
            "Enlighten login",
            data={"user[email]": username, "user[password]": password},
        )
        if login.status in (401, 403):
            raise CloudRefused(f"Enlighten refused the username or password of {username}")
        login.check("Enlighten login")
        body = login.json("Enlighten login")
        session_id = body.get("session_id") if isinstance(body, dict) else None
        if not session_id:
            # An account with MFA gets a 200 without session_id: not a wrong password.
            raise CloudMfa(MFA_HINT)
        return str(session_id)

    def _post(self, session: BoundedSession, url: str, what: str, **kwargs: Any) -> _Reply:
        self.requests_made += 1
        deadline = self.deadline if self.deadline is not None else time.monotonic() + CLOUD_DEADLINE_S
        remaining = deadline - time.monotonic()
        if remaining < MIN_CLOUD_TIME_S:
            raise CloudTimeUp(f"{what}: no time was left in this run")
        timeout = (min(CLOUD_TIMEOUT[0], remaining), min(CLOUD_TIMEOUT[1], remaining))
        try:
            response, body = session.fetch(
                "POST",
                url,
                deadline=deadline,
                timeout=timeout,
                allow_redirects=False,
                verify=self.verify,
                **kwargs,
            )
        except DeadlineReached:
            raise CloudTimeUp(f"{what} did not answer before this run's deadline") from None
        except BodyTooLarge as exc:
            raise CloudUnavailable(f"{what} {exc}") from None
        except requests.exceptions.SSLError:
            host = url.split("/")[2]
            raise CloudUnavailable(f"{what}: the TLS certificate of {host} is not trusted") from None
        except requests.exceptions.RequestException as exc:
            raise CloudUnavailable(f"{what} failed: {type(exc).__name__}") from None
        except OSError as exc:
            # requests reads REQUESTS_CA_BUNDLE when it connects: a file that is not there ends up here.
            bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
            raise ConfigError(
                f"cannot check the TLS certificate of the Enphase cloud: {exc}"
                + (f" (REQUESTS_CA_BUNDLE={bundle})" if bundle else "")
            ) from None
        return _Reply(response.status_code, body)
