"""The simulated Enphase cloud: Enlighten's login and Entrez's token service, as envoylog uses them."""

from __future__ import annotations

import hmac
import secrets
import threading
from collections.abc import Collection
from urllib.parse import parse_qs

from envoylog.simulator.clock import SimClock
from envoylog.simulator.faults import Faults
from envoylog.simulator.tokens import LIFETIMES, TokenIssuer
from envoylog.simulator.web import Request, Response

LOGIN_PATH = "/login/login.json"
TOKENS_PATH = "/tokens"


def service_of(path: str) -> str:
    """Which cloud service a path belongs to: entrez or enlighten."""
    return "entrez" if path == TOKENS_PATH or path.startswith(TOKENS_PATH + "/") else "enlighten"


class Cloud:
    """Logs an account in and issues tokens for the gateways it owns; thread-safe."""

    def __init__(
        self,
        clock: SimClock,
        faults: Faults,
        issuer: TokenIssuer,
        *,
        serials: Collection[str],
        username: str,
        password: str,
        enphase_user: str = "owner",
    ) -> None:
        if enphase_user not in LIFETIMES:
            raise ValueError(f"the cloud's tokens are for 'owner' or 'installer', not {enphase_user!r}")
        self.clock = clock
        self.faults = faults
        self.issuer = issuer
        self.serials = frozenset(serials)
        self.enphase_user = enphase_user
        self._username = username
        self._password = password
        self._sessions: dict[str, str] = {}  # Enlighten session id -> the account's e-mail
        self._lock = threading.Lock()

    def handle(self, request: Request) -> Response:
        """The cloud's answer to one request."""
        if self.faults.cloud_down:
            return Response.json(503, {"message": "Service Unavailable"})
        if request.path == LOGIN_PATH:
            return self._login(request) if request.method == "POST" else _not_allowed()
        if request.path == TOKENS_PATH:
            return self._token(request) if request.method == "POST" else _not_allowed()
        return Response.json(404, {"message": "Not Found"})

    def _login(self, request: Request) -> Response:
        form = parse_qs(request.body.decode("utf-8", "replace"), keep_blank_values=True)
        email = (form.get("user[email]") or [""])[0]
        password = (form.get("user[password]") or [""])[0]
        right = email.strip().casefold() == self._username.casefold() and hmac.compare_digest(
            password.encode(), self._password.encode()
        )
        if not right or self.faults.wrong_password:
            return Response.json(401, {"success": False, "message": "Invalid email or password."})
        if self.faults.mfa:
            # The account is fine, but the login continues with a one-time code envoylog cannot enter.
            return Response.json(
                200,
                {
                    "success": True,
                    "isBlocked": False,
                    "requireMfa": True,
                    "message": "Login requires multi-factor authentication.",
                },
            )
        session_id = secrets.token_hex(16)
        with self._lock:
            self._sessions[session_id] = self._username
        return Response.json(
            200, {"message": "success", "session_id": session_id, "is_consumer": True, "user_name": email}
        )

    def _token(self, request: Request) -> Response:
        try:
            data = request.json()
        except ValueError:
            data = None
        if not isinstance(data, dict) or not all(
            isinstance(data.get(key), str) for key in ("session_id", "serial_num", "username")
        ):
            return Response.json(400, {"message": "session_id, serial_num and username are required"})
        with self._lock:
            email = self._sessions.get(data["session_id"])
        if email is None:
            return Response.json(401, {"message": "Invalid session"})
        if data["serial_num"] not in self.serials:
            return Response.json(403, {"message": "This account has no gateway with that serial number"})
        token = self.issuer.issue(
            serial=data["serial_num"], username=email, now=self.clock.now(), enphase_user=self.enphase_user
        )
        return Response.text(200, token)


def _not_allowed() -> Response:
    response = Response.json(405, {"message": "Method Not Allowed"})
    response.headers.append(("Allow", "POST"))
    return response
