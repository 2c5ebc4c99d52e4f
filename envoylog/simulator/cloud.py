"""The simulated Enphase cloud: Enlighten's login and Entrez's token service, as envoylog uses them."""

from __future__ import annotations

import hmac
import secrets
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any
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


@dataclass(frozen=True)
class Account:
    """One Enlighten account: its credentials and the gateways (serials) it owns."""

    username: str  # the e-mail address it logs in with
    password: str = field(repr=False)
    serials: frozenset[str] = frozenset()


class Cloud:
    """Logs accounts in and issues tokens for the gateways each one owns; thread-safe."""

    def __init__(
        self,
        clock: SimClock,
        faults: Faults,
        issuer: TokenIssuer,
        *,
        accounts: Iterable[Account],
        enphase_user: str = "owner",
    ) -> None:
        if enphase_user not in LIFETIMES:
            raise ValueError(f"the cloud's tokens are for 'owner' or 'installer', not {enphase_user!r}")
        self.clock = clock
        self.faults = faults
        self.issuer = issuer
        self.enphase_user = enphase_user
        self.accounts = {account.username.casefold(): account for account in accounts}
        if not self.accounts:
            raise ValueError("the cloud needs at least one account")
        self._sessions: dict[str, Account] = {}  # Enlighten session id -> its account
        self._lock = threading.Lock()

    @property
    def serials(self) -> frozenset[str]:
        """Every gateway some account owns."""
        return frozenset().union(*(account.serials for account in self.accounts.values()))

    def handle(self, request: Request) -> Response:
        """The cloud's answer to one request."""
        if self.faults.cloud_down:
            return Response.json(503, {"message": "Service Unavailable"})
        if request.path == LOGIN_PATH:
            return self._login(request) if request.method == "POST" else _not_allowed()
        if request.path == TOKENS_PATH:
            return self._token(request) if request.method == "POST" else _not_allowed()
        return Response.json(404, {"message": "Not Found"})

    def account_of(self, request: Request) -> str | None:
        """The known account a request is for (by its e-mail, or its session), for the request log."""
        if request.path == LOGIN_PATH:
            account = self.accounts.get(_login_form(request)[0].strip().casefold())
        elif request.path == TOKENS_PATH:
            data = _json_body(request)
            with self._lock:
                account = self._sessions.get(str(data.get("session_id"))) if data else None
        else:
            account = None
        return account.username if account is not None else None

    def _login(self, request: Request) -> Response:
        email, password = _login_form(request)
        account = self.accounts.get(email.strip().casefold())
        right = account is not None and hmac.compare_digest(password.encode(), account.password.encode())
        if account is None or not right or self.faults.wrong_password:
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
            self._sessions[session_id] = account
        return Response.json(
            200, {"message": "success", "session_id": session_id, "is_consumer": True, "user_name": email}
        )

    def _token(self, request: Request) -> Response:
        data = _json_body(request)
        if data is None or not all(
            isinstance(data.get(key), str) for key in ("session_id", "serial_num", "username")
        ):
            return Response.json(400, {"message": "session_id, serial_num and username are required"})
        with self._lock:
            account = self._sessions.get(data["session_id"])
        if account is None:
            return Response.json(401, {"message": "Invalid session"})
        if data["serial_num"] not in account.serials:
            return Response.json(403, {"message": "This account has no gateway with that serial number"})
        token = self.issuer.issue(
            serial=data["serial_num"],
            username=account.username,
            now=self.clock.now(),
            enphase_user=self.enphase_user,
        )
        return Response.text(200, token)


def _login_form(request: Request) -> tuple[str, str]:
    """The e-mail and password of a login form."""
    form = parse_qs(request.body.decode("utf-8", "replace"), keep_blank_values=True)
    return (form.get("user[email]") or [""])[0], (form.get("user[password]") or [""])[0]


def _json_body(request: Request) -> dict[str, Any] | None:
    """The body as a JSON object, or None."""
    try:
        data = request.json()
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def _not_allowed() -> Response:
    response = Response.json(405, {"message": "Method Not Allowed"})
    response.headers.append(("Allow", "POST"))
    return response
