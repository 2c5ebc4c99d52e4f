"""The Enphase cloud's plumbing: its errors, one login per account and run, requests counted and bounded.

The routes to a token that use it are in envoylog.gateway.routes.
"""

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

log = logging.getLogger(__name__)

CLOUD_TIMEOUT = (10.0, 30.0)
MIN_CLOUD_TIME_S = 0.5  # below this much time left a request is not started
CLOUD_DEADLINE_S = 60.0  # a login and a token request together, outside a collect run (auth login)


class CloudError(AuthError):
    """A failed cloud login or token request; its message is stored for the back-off: it holds no secret."""

    # When the next attempt may be made, once the failure is recorded (envoylog.gateway.auth).
    retry_at: datetime | None = None


class CloudRefused(CloudError):
    """The cloud refused a token for the gateway (or, as CloudBadLogin, the username or password)."""


class CloudBadLogin(CloudRefused):
    """A login refused the username or password."""


class CloudMfa(CloudError):
    """A login asks for a one-time code (multi-factor authentication): envoylog cannot log in for it."""


class CloudUnavailable(CloudError):
    """The cloud could not be reached or answered an error."""


class CloudTimeUp(AuthError):
    """The run's deadline came first: the next run tries again, without waiting out a back-off."""

    transient = True


@dataclass(frozen=True)
class Reply:
    """A cloud service's answer: its status, its body (read whole, up to the size cap), cookies, redirect."""

    status: int
    body: bytes
    cookies: dict[str, str] = field(default_factory=dict)
    location: str = ""

    @property
    def text(self) -> str:
        """The body as text (undecodable bytes replaced)."""
        return self.body.decode("utf-8", "replace")

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


# Which login of which account: the route, the service's URL, the username (casefolded) and the password.
LoginKey = tuple[str, str, str, str]


class CloudLogins:
    """The cloud logins of one run, one per account and route: every gateway of an account shares it.

    An account with a hundred gateways due for tokens logs in once on each route it tries (Enlighten's
    login, Entrez's web login), not a hundred times (which is how accounts get rate-limited or locked); a
    refused login is not repeated by the account's other gateways. Thread-safe: the gateways of one account
    wait for the first one's login.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._accounts: dict[LoginKey, _Account] = {}

    def session_id(self, key: LoginKey, login: Callable[[], str]) -> str:
        """The account's session (id or cookie), logging in with `login` the first time it is asked for."""
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
        logins: CloudLogins | None = None,
    ) -> None:
        self.enlighten_url = enlighten_url
        self.logins = logins if logins is not None else CloudLogins()
        self.entrez_url = entrez_url
        self.verify = verify  # True: the system's CAs or REQUESTS_CA_BUNDLE; a path: that CA file
        self.deadline = deadline
        self.requests_made = 0

    def post(self, session: BoundedSession, url: str, what: str, **kwargs: Any) -> Reply:
        """POST to a cloud service, counted; `what` names it in errors. Redirects are not followed."""
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
        cookies = {cookie.name: cookie.value or "" for cookie in response.cookies}
        return Reply(response.status_code, body, cookies, response.headers.get("Location", ""))
