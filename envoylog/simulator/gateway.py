"""The simulated gateway's HTTP side: /info, check_jwt, session cookies, Digest on old firmware, faults."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.utils import formatdate
from typing import Protocol
from urllib.request import parse_http_list, parse_keqv_list

from envoylog.simulator.clock import SimClock
from envoylog.simulator.endpoints import Body
from envoylog.simulator.faults import EndpointFault, Faults, Quirks
from envoylog.simulator.tokens import TokenClaims, TokenError, TokenIssuer
from envoylog.simulator.web import Request, Response

SESSION_IDLE = timedelta(minutes=10)
SESSION_COOKIE = "sessionId"
DIGEST_REALM = "enphaseenergy.com"
DIGEST_USER = "envoy"
DIGEST_PATHS = frozenset({"/api/v1/production/inverters"})  # what firmware before 7 protects
OPEN_PATHS = frozenset({"/info"})
CHECK_JWT = "/auth/check_jwt"
_MAX_NONCES = 256
_HTML = "text/html; charset=utf-8"
_UNAUTHORIZED = "<html><head><title>401 Authorization Required</title></head><body>401</body></html>\n"


class SiteProfile(Protocol):
    """What the HTTP side needs to know about the site it serves."""

    @property
    def name(self) -> str: ...
    @property
    def serial(self) -> str: ...
    @property
    def firmware(self) -> str: ...
    @property
    def metered(self) -> bool: ...
    @property
    def https(self) -> bool: ...
    @property
    def needs_token(self) -> bool: ...


class SiteModel(Protocol):
    """What a gateway serves: the simulated site (endpoints.GatewayModel) or a recorded one (captured.py)."""

    @property
    def profile(self) -> SiteProfile: ...

    def render(self, path: str, query: Mapping[str, str], now: datetime, quirks: Quirks) -> Body | None:
        """The body served for GET `path` at `now`; None if there is no such endpoint."""
        ...


@dataclass
class _Session:
    claims: TokenClaims
    last_used: datetime


def digest_password(serial: str) -> str:
    """The Digest password of firmware before 7: the serial's last six characters."""
    return serial[-6:]


def _md5(text: str) -> str:
    return hashlib.md5(text.encode(), usedforsecurity=False).hexdigest()


class _Digest:
    """The server side of HTTP Digest (RFC 7616, MD5, qop=auth), as old gateway firmware does it."""

    def __init__(self, username: str, password: str) -> None:
        self._username = username
        self._password = password
        self._nonces: OrderedDict[str, None] = OrderedDict()
        self._lock = threading.Lock()

    def challenge(self) -> str:
        """A WWW-Authenticate value with a fresh nonce."""
        nonce = secrets.token_hex(16)
        with self._lock:
            self._nonces[nonce] = None
            while len(self._nonces) > _MAX_NONCES:
                self._nonces.popitem(last=False)
        return f'Digest realm="{DIGEST_REALM}", qop="auth", nonce="{nonce}", algorithm=MD5'

    def accepts(self, request: Request) -> bool:
        """Whether the request's Authorization header answers one of our challenges correctly."""
        header = request.header("Authorization") or ""
        scheme, _, rest = header.partition(" ")
        if scheme.lower() != "digest":
            return False
        fields = parse_keqv_list(parse_http_list(rest))
        with self._lock:
            known_nonce = fields.get("nonce", "") in self._nonces
        if not known_nonce or fields.get("username") != self._username or fields.get("realm") != DIGEST_REALM:
            return False
        if fields.get("uri") != request.target or fields.get("qop") != "auth":
            return False
        ha1 = _md5(f"{self._username}:{DIGEST_REALM}:{self._password}")
        ha2 = _md5(f"{request.method}:{fields['uri']}")
        nonce, count, cnonce = fields["nonce"], fields.get("nc", ""), fields.get("cnonce", "")
        expected = _md5(f"{ha1}:{nonce}:{count}:{cnonce}:auth:{ha2}")
        return hmac.compare_digest(expected, fields.get("response", ""))


class Gateway:
    """Answers gateway requests from the model, behind the firmware's authentication; thread-safe."""

    def __init__(self, model: SiteModel, clock: SimClock, faults: Faults, issuer: TokenIssuer) -> None:
        self.model = model
        self.clock = clock
        self.faults = faults
        self.issuer = issuer
        self.serial = model.profile.serial
        self._sessions: dict[str, _Session] = {}
        self._lock = threading.Lock()
        self._digest = _Digest(DIGEST_USER, digest_password(self.serial))

    def handle(self, request: Request) -> Response:
        """The gateway's answer to one request."""
        fault = self.faults.endpoints.get(request.path)
        response = self._answer(request, fault)
        if fault is not None and fault.hang_seconds > 0:
            response.delay_seconds = fault.hang_seconds
        # A real gateway's answers carry its own clock in the Date header, as every web server's do.
        response.headers.append(("Date", formatdate(self.clock.now().timestamp(), usegmt=True)))
        return response

    def expire_sessions(self) -> int:
        """End every session (as a gateway reboot does); returns how many there were."""
        with self._lock:
            count = len(self._sessions)
            self._sessions.clear()
        return count

    def _answer(self, request: Request, fault: EndpointFault | None) -> Response:
        if fault is not None and fault.drops > 0:
            fault.drops -= 1
            return Response.reset()
        if request.method not in ("GET", "HEAD"):
            return Response(405, b"", headers=[("Allow", "GET")])
        now = self.clock.now()
        needs_token = self.model.profile.needs_token
        if needs_token and request.path == CHECK_JWT:
            return self._check_jwt(request, now)
        if needs_token and request.path not in OPEN_PATHS and not self._authorized(request, now):
            return Response.text(401, _UNAUTHORIZED, _HTML)
        if not needs_token and request.path in DIGEST_PATHS and not self._digest.accepts(request):
            response = Response.text(401, _UNAUTHORIZED, _HTML)
            response.headers.append(("WWW-Authenticate", self._digest.challenge()))
            return response
        if fault is not None and fault.status is not None and fault.times != 0:
            if fault.times is not None:
                fault.times -= 1
            response = Response.text(fault.status, f"simulated fault: HTTP {fault.status}\n")
            if fault.retry_after is not None:
                response.headers.append(("Retry-After", fault.retry_after))
            return response
        if fault is not None and fault.body is not None:
            return Response(200, fault.body.encode(), "application/json")
        body = self.model.render(request.path, request.query, now, self.faults.quirks)
        if body is None:
            return Response.text(404, "Not Found\n")
        if fault is not None and fault.malformed:
            # A body cut short, as when the gateway drops the connection mid-answer.
            return Response(body.status, body.data[: max(1, len(body.data) // 2)], body.content_type)
        return Response(body.status, body.data, body.content_type)

    def _check_jwt(self, request: Request, now: datetime) -> Response:
        claims = self._bearer_claims(request, now)
        if claims is None:
            return Response.text(401, "<!DOCTYPE html><h2>Invalid token.</h2>\n", _HTML)
        session_id = secrets.token_hex(16)
        with self._lock:
            self._drop_lapsed(now)
            self._sessions[session_id] = _Session(claims, now)
        response = Response.text(200, "<!DOCTYPE html><h2>Valid token.</h2>\n", _HTML)
        response.headers.append(("Set-Cookie", f"{SESSION_COOKIE}={session_id}; Path=/; Secure; HttpOnly"))
        return response

    def _authorized(self, request: Request, now: datetime) -> bool:
        session_id = request.cookies().get(SESSION_COOKIE)
        if session_id is not None and self._use_session(session_id, now):
            return True
        # Firmware also takes the token itself on a data request, checking its signature each time.
        return self._bearer_claims(request, now) is not None

    def _use_session(self, session_id: str, now: datetime) -> bool:
        with self._lock:
            session = self._sessions.get(session_id)
            if session is None:
                return False
            if now - session.last_used > SESSION_IDLE:
                del self._sessions[session_id]
                return False
            try:
                # A session ends with its token: expired or revoked.
                self.issuer.check_current(session.claims, now)
            except TokenError:
                del self._sessions[session_id]
                return False
            session.last_used = now
            return True

    def _bearer_claims(self, request: Request, now: datetime) -> TokenClaims | None:
        scheme, _, token = (request.header("Authorization") or "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return None
        try:
            return self.issuer.verify(token.strip(), serial=self.serial, now=now)
        except TokenError:
            return None

    def _drop_lapsed(self, now: datetime) -> None:
        lapsed = [key for key, session in self._sessions.items() if now - session.last_used > SESSION_IDLE]
        for key in lapsed:
            del self._sessions[key]
