"""HTTP to one gateway: one session, one request at a time, timeouts bounded by the run's deadline."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any

import requests
from urllib3.exceptions import ProtocolError

from envoylog.errors import GatewayError
from envoylog.gateway.http import BodyTooLarge, BoundedSession, DeadlineReached

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 10.0
READ_TIMEOUT_S = 45.0
# Below this much time left a request is not started: it could not finish before the deadline.
MIN_REQUEST_TIME_S = 0.5


class GatewayUnreachable(GatewayError):
    """No connection, a timeout, or the run's deadline reached."""


class EndpointTimeout(GatewayUnreachable):
    """Connected, but no answer came: the read timeout or the run's deadline passed, or the gateway closed the
    connection without answering, also when asked once more."""


@dataclass(frozen=True)
class Answer:
    """A gateway response, reduced to what the collector uses."""

    status: int
    body: bytes
    content_type: str
    cookies: dict[str, str]
    date: datetime | None = None  # the gateway's clock, from its Date header
    retry_after_s: float | None = None  # how long a busy gateway asks to be left alone (Retry-After)


class _Dropped(Exception):
    """The gateway closed a connection without answering (a reset, not a refusal or a timeout)."""

    def __init__(self, error: GatewayError) -> None:
        super().__init__(str(error))
        self.error = error


def _dropped(exc: requests.exceptions.RequestException) -> bool:
    if not isinstance(exc, requests.exceptions.ConnectionError) or isinstance(
        exc, requests.exceptions.Timeout | requests.exceptions.SSLError
    ):
        return False
    cause = exc.args[0] if exc.args else None
    return isinstance(cause, ProtocolError)  # "Connection aborted": reset or closed mid-request


class AnswerTooLarge(GatewayError):
    """An endpoint answered more than any real gateway does (a broken or hostile peer)."""


class CertificateMismatch(GatewayError):
    """The gateway's certificate is not the one the configured fingerprint pins: maybe an impostor."""


class GatewayClient:
    """Requests to one gateway base URL, counted, each ending by the deadline (a time.monotonic() value)."""

    def __init__(self, base_url: str, *, deadline: float, fingerprint: str | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.deadline = deadline
        self.requests_made = 0
        self.session = BoundedSession(fingerprint=fingerprint, self_signed=True)
        # The gateway's clock as its last answer's Date header gave it, and when (monotonic) that was.
        self.gateway_time: tuple[datetime, float] | None = None

    def close(self) -> None:
        """Close the connection pool."""
        self.session.close()

    def renew(self, deadline: float) -> None:
        """Start another run on this session, its connection kept: a new deadline, no request made yet."""
        self.deadline = deadline
        self.requests_made = 0
        self.gateway_time = None

    def gateway_now(self) -> datetime | None:
        """The gateway's clock now, as its last Date header tells it (to the second); None without one."""
        if self.gateway_time is None:
            return None
        date, received = self.gateway_time
        return date + timedelta(seconds=time.monotonic() - received)

    def remaining(self) -> float:
        """Seconds left before the deadline."""
        return self.deadline - time.monotonic()

    def get(self, path: str, *, read_timeout: float = READ_TIMEOUT_S, **kwargs: Any) -> Answer:
        """GET `path`; GatewayUnreachable for no connection, a timeout or the deadline; AnswerTooLarge.

        EndpointTimeout (a GatewayUnreachable) when the gateway took the request but gave no answer. A
        connection the gateway closes without an answer is tried once more: real gateways drop the odd one,
        and a second try costs a moment where a failed run costs a minute of readings.
        """
        try:
            return self._get(path, read_timeout, **kwargs)
        except _Dropped as dropped:
            if self.remaining() < MIN_REQUEST_TIME_S:
                raise dropped.error from None
            log.info("GET %s: %s; once more", path, dropped.error)
        try:
            return self._get(path, read_timeout, **kwargs)
        except _Dropped as dropped:
            raise EndpointTimeout(str(dropped.error)) from None

    def _get(self, path: str, read_timeout: float, **kwargs: Any) -> Answer:
        remaining = self.remaining()
        if remaining < MIN_REQUEST_TIME_S:
            raise GatewayUnreachable(f"deadline reached before GET {path}")
        timeout = (min(CONNECT_TIMEOUT_S, remaining), min(read_timeout, remaining))
        started = time.monotonic()
        try:
            # verify per request: requests lets REQUESTS_CA_BUNDLE override a session-level False.
            # The gateway's certificate is self-signed; a configured fingerprint pins it instead.
            response, body = self.session.fetch(
                "GET",
                f"{self.base_url}{path}",
                deadline=self.deadline,
                timeout=timeout,
                allow_redirects=False,
                verify=False,
                **kwargs,
            )
        except DeadlineReached:
            self.requests_made += 1
            waited = time.monotonic() - started
            raise EndpointTimeout(
                f"{self.base_url}{path} did not answer within {waited:.0f} s (the run's deadline)"
            ) from None
        except BodyTooLarge as exc:
            self.requests_made += 1
            raise AnswerTooLarge(f"{path} {exc}: not a gateway's answer") from None
        except requests.exceptions.RequestException as exc:
            self.requests_made += 1
            error = self._unreachable(exc, path, timeout[1])
            if _dropped(exc):
                raise _Dropped(error) from None
            raise error from None
        # A Digest challenge is a request of its own: count the answers that led to this one too.
        self.requests_made += 1 + len(response.history)
        date = _http_date(response.headers.get("Date"))
        if date is not None:
            self.gateway_time = (date, time.monotonic())
        log.info("GET %s -> %s in %.2f s", path, response.status_code, time.monotonic() - started)
        return Answer(
            response.status_code,
            body,
            response.headers.get("Content-Type", ""),
            dict(response.cookies.items()),
            date,
            _retry_after(response.headers.get("Retry-After"), date) if response.status_code == 503 else None,
        )

    def _unreachable(self, exc: Exception, path: str, waited: float) -> GatewayError:
        if isinstance(exc, requests.exceptions.SSLError):
            if "fingerprint" in str(exc).lower():
                return CertificateMismatch(
                    f"{self.base_url} presents a certificate that is not the configured "
                    "fingerprint: refusing to talk to it (check `fingerprint`; or a device pretends to be it)"
                )
            return GatewayUnreachable(f"TLS failed with {self.base_url}: {_reason(exc)}")
        if isinstance(exc, requests.exceptions.ConnectTimeout):
            return GatewayUnreachable(
                f"cannot reach {self.base_url}: no connection within {CONNECT_TIMEOUT_S:.0f} s"
            )
        if isinstance(exc, requests.exceptions.Timeout):
            return EndpointTimeout(f"{self.base_url}{path} did not answer within {waited:.0f} s")
        return GatewayUnreachable(f"cannot reach {self.base_url}: {_reason(exc)}")


def _http_date(value: str | None) -> datetime | None:
    """An HTTP Date header as an aware UTC time; None when absent or unreadable."""
    if not value:
        return None
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return moment.astimezone(UTC) if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _retry_after(value: str | None, date: datetime | None) -> float | None:
    """Retry-After in seconds (it gives seconds or an HTTP date); None when absent or unreadable.

    A date is read against the answer's own Date header where there is one: the gateway's clock, not this
    machine's, set it.
    """
    if value is None:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():  # "³" is a digit to str.isdigit, not to float()
        return float(value)
    moment = _http_date(value)
    if moment is None:
        return None
    return max(0.0, (moment - (date or datetime.now(UTC))).total_seconds())


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
