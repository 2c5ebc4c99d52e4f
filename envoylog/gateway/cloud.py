"""The Enphase cloud: Enlighten login, then an Entrez token for one gateway (SPEC section 4)."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

import requests

from envoylog.errors import AuthError, ConfigError
from envoylog.gateway.tokens import TokenInfo, decode_token

log = logging.getLogger(__name__)

CLOUD_TIMEOUT = (10.0, 30.0)


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


MFA_HINT = (
    "the Enphase account uses multi-factor authentication: get a token at entrez.enphaseenergy.com "
    "and store it with `envoylog auth set-token -`"
)


class CloudClient:
    """Requests to Enlighten and Entrez, counted."""

    def __init__(self, enlighten_url: str, entrez_url: str, *, verify: str | bool = True) -> None:
        self.enlighten_url = enlighten_url
        self.entrez_url = entrez_url
        self.verify = verify  # True: the system's CAs or REQUESTS_CA_BUNDLE; a path: that CA file
        self.requests_made = 0

    def fetch_token(self, *, username: str, password: str, serial: str) -> TokenInfo:
        """Log into Enlighten and ask Entrez for a token for the gateway `serial`."""
        with requests.Session() as session:  # verifies TLS; REQUESTS_CA_BUNDLE is honoured by requests
            session.headers["User-Agent"] = "envoylog"
            login = self._post(
                session,
                f"{self.enlighten_url}/login/login.json",
                "Enlighten login",
                data={"user[email]": username, "user[password]": password},
            )
            if login.status_code in (401, 403):
                raise CloudRefused(f"Enlighten refused the username or password of {username}")
            _check(login, "Enlighten login")
            body = _json(login, "Enlighten login")
            session_id = body.get("session_id") if isinstance(body, dict) else None
            if not session_id:
                # An account with MFA gets a 200 without session_id: not a wrong password.
                raise CloudMfa(MFA_HINT)
            answer = self._post(
                session,
                f"{self.entrez_url}/tokens",
                "Entrez token request",
                json={"session_id": session_id, "serial_num": serial, "username": username},
            )
            if answer.status_code in (401, 403):
                raise CloudRefused(f"Entrez refused a token for gateway {serial} to {username}")
            _check(answer, "Entrez token request")
        try:
            token = decode_token(answer.text)
        except ConfigError:
            raise CloudUnavailable("Entrez answered something that is not a token") from None
        log.info("new %s token from the Enphase cloud, valid until %s", token.enphase_user, token.expires_at)
        return token

    def _post(self, session: requests.Session, url: str, what: str, **kwargs: Any) -> requests.Response:
        self.requests_made += 1
        try:
            return session.post(
                url, timeout=CLOUD_TIMEOUT, allow_redirects=False, verify=self.verify, **kwargs
            )
        except requests.exceptions.SSLError:
            host = url.split("/")[2]
            raise CloudUnavailable(f"{what}: the TLS certificate of {host} is not trusted") from None
        except requests.exceptions.RequestException as exc:
            raise CloudUnavailable(f"{what} failed: {type(exc).__name__}") from None


def _check(response: requests.Response, what: str) -> None:
    if response.status_code != 200:
        raise CloudUnavailable(f"{what} answered HTTP {response.status_code}")


def _json(response: requests.Response, what: str) -> Any:
    try:
        return response.json()
    except ValueError:
        raise CloudUnavailable(f"{what} answered something that is not JSON") from None
