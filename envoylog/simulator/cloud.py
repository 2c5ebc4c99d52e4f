"""The simulated Enphase cloud: Enlighten's login, Entrez's token service and Entrez's web form for tokens.

Two routes to a token, as the real cloud has them: Enlighten's login (a session id) then Entrez's `/tokens`;
or Entrez's web login (a `SESSION` cookie) then its token page, an HTML page with the token in a textarea.
Either can be made to misbehave path by path (Faults.cloud_paths), as Enphase has moved or refused them.
"""

from __future__ import annotations

import hmac
import html
import secrets
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

from envoylog.simulator.clock import SimClock
from envoylog.simulator.faults import EndpointFault, Faults
from envoylog.simulator.tokens import LIFETIMES, TokenIssuer
from envoylog.simulator.web import Request, Response

LOGIN_PATH = "/login/login.json"  # Enlighten
TOKENS_PATH = "/tokens"  # Entrez, with an Enlighten session id
WEB_LOGIN_PATH = "/login"  # Entrez's web login: a SESSION cookie
WEB_TOKENS_PATH = "/entrez_tokens"  # Entrez's token page, for a SESSION cookie
SESSION_COOKIE = "SESSION"
_ENTREZ_PATHS = (TOKENS_PATH, WEB_LOGIN_PATH, WEB_TOKENS_PATH)
_HTML = "text/html; charset=utf-8"


def service_of(path: str) -> str:
    """Which cloud service a path belongs to: entrez or enlighten."""
    path = path.split("?")[0]
    if path == LOGIN_PATH:
        return "enlighten"
    entrez = any(path == known or path.startswith(known + "/") for known in _ENTREZ_PATHS)
    return "entrez" if entrez else "enlighten"


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
        self._web_sessions: dict[str, Account] = {}  # Entrez SESSION cookie -> its account
        self._lock = threading.Lock()

    @property
    def serials(self) -> frozenset[str]:
        """Every gateway some account owns."""
        return frozenset().union(*(account.serials for account in self.accounts.values()))

    def handle(self, request: Request) -> Response:
        """The cloud's answer to one request."""
        if self.faults.cloud_down:
            return Response.json(503, {"message": "Service Unavailable"})
        fault = self.faults.cloud_paths.get(request.path)
        if fault is not None:
            response = _faulty(fault)
            if response is not None:
                return response
        handler = {
            LOGIN_PATH: self._login,
            TOKENS_PATH: self._token,
            WEB_LOGIN_PATH: self._web_login,
            WEB_TOKENS_PATH: self._web_token,
        }.get(request.path)
        if handler is None:
            return Response.json(404, {"message": "Not Found"})
        response = handler(request) if request.method == "POST" else _not_allowed()
        if fault is not None and fault.hang_seconds > 0:
            response.delay_seconds = fault.hang_seconds
        return response

    def account_of(self, request: Request) -> str | None:
        """The known account a request is for (by its e-mail, or its session), for the request log."""
        if request.path == LOGIN_PATH:
            account = self.accounts.get(_login_form(request)[0].strip().casefold())
        elif request.path == TOKENS_PATH:
            data = _json_body(request)
            with self._lock:
                account = self._sessions.get(str(data.get("session_id"))) if data else None
        elif request.path == WEB_LOGIN_PATH:
            account = self.accounts.get(_form(request, "username").strip().casefold())
        elif request.path == WEB_TOKENS_PATH:
            with self._lock:
                account = self._web_sessions.get(request.cookies().get(SESSION_COOKIE, ""))
        else:
            account = None
        return account.username if account is not None else None

    def _account(self, username: str, password: str) -> Account | None:
        """The account these credentials log into, or None (unknown, wrong password, or told to refuse)."""
        account = self.accounts.get(username.strip().casefold())
        right = account is not None and hmac.compare_digest(password.encode(), account.password.encode())
        return account if right and not self.faults.wrong_password else None

    def _login(self, request: Request) -> Response:
        email, password = _login_form(request)
        account = self._account(email, password)
        if account is None:
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

    def _web_login(self, request: Request) -> Response:
        """Entrez's web login: a SESSION cookie for the right credentials."""
        account = self._account(_form(request, "username"), _form(request, "password"))
        if account is None:
            return Response.text(
                401, _page("Sign in", '<p class="error">Invalid username or password.</p>'), _HTML
            )
        if self.faults.mfa:
            # The credentials are right, but the login goes on with a one-time code sent to the owner: no
            # session until it is entered, which a script cannot do.
            form = (
                '<form method="post" action="/validate_login_otp"><p>Enter the verification code sent to '
                'your e-mail.</p><input type="text" name="otp" autocomplete="one-time-code">'
                '<button type="submit">Verify</button></form>'
            )
            return Response.text(200, _page("Verify your identity", form), _HTML)
        session = secrets.token_hex(16)
        with self._lock:
            self._web_sessions[session] = account
        response = Response.text(200, _page("Entrez", "<p>Signed in.</p>"), _HTML)
        response.headers.append(("Set-Cookie", f"{SESSION_COOKIE}={session}; Path=/; Secure; HttpOnly"))
        return response

    def _web_token(self, request: Request) -> Response:
        """Entrez's token page: the token for `serialNum` in a textarea, for a logged-in SESSION."""
        with self._lock:
            account = self._web_sessions.get(request.cookies().get(SESSION_COOKIE, ""))
        if account is None:
            return Response.text(401, _page("Sign in", "<p>Please sign in.</p>"), _HTML)
        serial = _form(request, "serialNum").strip()
        if not serial:
            return Response.text(400, _page("Entrez", "<p>Select a gateway.</p>"), _HTML)
        if serial not in account.serials:
            return Response.text(
                403, _page("Entrez", "<p>This account has no gateway with that serial.</p>"), _HTML
            )
        token = self.issuer.issue(
            serial=serial, username=account.username, now=self.clock.now(), enphase_user=self.enphase_user
        )
        textarea = (
            f'<textarea name="accessToken" id="JWTToken" cols="30" rows="10" >{html.escape(token)}</textarea>'
        )
        return Response.text(
            200, _page("Entrez", f"<h2>Token for {html.escape(serial)}</h2>{textarea}"), _HTML
        )


def _faulty(fault: EndpointFault) -> Response | None:
    """The answer a cloud path's fault gives instead of the service's, or None where it only delays it."""
    if fault.drops > 0:
        fault.drops -= 1
        return Response.reset()
    if fault.status is not None:
        return Response.text(fault.status, _page("Error", f"<p>HTTP {fault.status}</p>"), _HTML)
    if fault.body is not None:
        kind = _HTML if fault.body.lstrip().startswith("<") else "text/plain; charset=utf-8"
        return Response(200, fault.body.encode(), kind)
    if fault.malformed:
        return Response(200, b'\x00\xff{"message": "succ', "application/json")
    return None


def _page(title: str, body: str) -> str:
    return f"<!DOCTYPE html>\n<html><head><title>{title}</title></head><body>{body}</body></html>\n"


def _form(request: Request, name: str) -> str:
    """One field of a form body ("" when absent)."""
    form = parse_qs(request.body.decode("utf-8", "replace"), keep_blank_values=True)
    return (form.get(name) or [""])[0]


def _login_form(request: Request) -> tuple[str, str]:
    """The e-mail and password of Enlighten's login form."""
    return _form(request, "user[email]"), _form(request, "user[password]")


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
