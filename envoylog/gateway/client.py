"""HTTP to one gateway: one session, one request at a time, timeouts bounded by the run's deadline."""

from __future__ import annotations

import logging
import time
import warnings
from dataclasses import dataclass
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from urllib3.exceptions import InsecureRequestWarning

from envoylog.errors import GatewayError

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 10.0
READ_TIMEOUT_S = 45.0
# Below this much time left a request is not started: it could not finish before the deadline.
MIN_REQUEST_TIME_S = 0.5


class GatewayUnreachable(GatewayError):
    """No connection, a timeout, or the run's deadline reached."""


@dataclass(frozen=True)
class Answer:
    """A gateway response, reduced to what the collector uses."""

    status: int
    body: bytes
    content_type: str
    cookies: dict[str, str]


class _PinnedAdapter(HTTPAdapter):
    """Checks the gateway certificate's SHA-256 fingerprint instead of a CA chain (it is self-signed)."""

    def __init__(self, fingerprint: str) -> None:
        self._fingerprint = fingerprint
        super().__init__()

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        kwargs["assert_fingerprint"] = self._fingerprint
        super().init_poolmanager(*args, **kwargs)


class GatewayClient:
    """Requests to one gateway base URL, counted, each bounded by the deadline (a time.monotonic() value)."""

    def __init__(self, base_url: str, *, deadline: float, fingerprint: str | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.deadline = deadline
        self.requests_made = 0
        self.session = requests.Session()
        self.session.headers["User-Agent"] = "envoylog"
        if fingerprint:
            self.session.mount("https://", _PinnedAdapter(fingerprint))

    def close(self) -> None:
        """Close the connection pool."""
        self.session.close()

    def remaining(self) -> float:
        """Seconds left before the deadline."""
        return self.deadline - time.monotonic()

    def get(self, path: str, **kwargs: Any) -> Answer:
        """GET `path`; a GatewayUnreachable for no connection, a timeout, or too little time left."""
        remaining = self.remaining()
        if remaining < MIN_REQUEST_TIME_S:
            raise GatewayUnreachable(f"deadline reached before GET {path}")
        timeout = (min(CONNECT_TIMEOUT_S, remaining), min(READ_TIMEOUT_S, remaining))
        started = time.monotonic()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", InsecureRequestWarning)
                # verify per request: requests lets REQUESTS_CA_BUNDLE override a session-level False.
                # The gateway's certificate is self-signed; a configured fingerprint pins it instead.
                response = self.session.get(
                    f"{self.base_url}{path}", timeout=timeout, allow_redirects=False, verify=False, **kwargs
                )
        except requests.exceptions.RequestException as exc:
            self.requests_made += 1
            raise self._unreachable(exc, path, timeout[1]) from None
        # A Digest challenge is a request of its own: count the answers that led to this one too.
        self.requests_made += 1 + len(response.history)
        log.info("GET %s -> %s in %.2f s", path, response.status_code, time.monotonic() - started)
        return Answer(
            response.status_code,
            response.content,
            response.headers.get("Content-Type", ""),
            dict(response.cookies.items()),
        )

    def _unreachable(self, exc: Exception, path: str, waited: float) -> GatewayUnreachable:
        if isinstance(exc, requests.exceptions.SSLError):
            return GatewayUnreachable(f"TLS failed with {self.base_url}: {_reason(exc)}")
        if isinstance(exc, requests.exceptions.Timeout):
            return GatewayUnreachable(f"{self.base_url}{path} did not answer within {waited:.0f} s")
        return GatewayUnreachable(f"cannot reach {self.base_url}: {_reason(exc)}")


def _reason(exc: Exception) -> str:
    """The innermost reason of a requests error, in one short line."""
    inner: BaseException = exc
    while inner.__context__ is not None and inner.__context__ is not inner:
        inner = inner.__context__
    text = str(inner).strip().splitlines()[0] if str(inner).strip() else type(inner).__name__
    if "Connection refused" in text:
        return "connection refused"
    if "Name or service not known" in text or "nodename nor servname" in text:
        return "unknown host name"
    return text[:160]
