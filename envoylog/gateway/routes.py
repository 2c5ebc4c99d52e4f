"""The cloud routes to a gateway token, tried in order until one gives a token.

Enphase has moved or refused its token service more than once, so envoylog knows two routes:

- `enlighten`: Enlighten's login (`POST /login/login.json`, a session id), then Entrez's `POST /tokens`;
- `entrez-web`: Entrez's web login (`POST /login`, a `SESSION` cookie), then its token page
  (`POST /entrez_tokens`), an HTML page with the token in `<textarea id="JWTToken">`.

The route that last gave a token is tried first next time. Each route logs an account in at most once per run
(CloudLogins). When every route fails, one error names what failed on each and the way out.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import Any

from envoylog.errors import ConfigError
from envoylog.gateway.cloud import (
    CloudBadLogin,
    CloudClient,
    CloudError,
    CloudMfa,
    CloudRefused,
    CloudTimeUp,
    CloudUnavailable,
    Reply,
)
from envoylog.gateway.http import BoundedSession
from envoylog.gateway.store import CloudRoute
from envoylog.gateway.tokens import TokenInfo, decode_token

log = logging.getLogger(__name__)

ENLIGHTEN = "enlighten"
ENTREZ_WEB = "entrez-web"
ROUTES = (ENLIGHTEN, ENTREZ_WEB)  # the order when none has worked yet
SESSION_COOKIE = "SESSION"  # Entrez's web session

WAY_OUT = (
    "get a token at https://entrez.enphaseenergy.com (or in the Enphase app) "
    "and store it with `envoylog auth set-token -`"
)
_LOGINS = {ENLIGHTEN: "Enlighten login", ENTREZ_WEB: "Entrez web login"}


@dataclass(frozen=True)
class CloudToken:
    """A token from the cloud, the route that gave it and what failed on the routes tried before it."""

    token: TokenInfo
    route: CloudRoute


class NoCloudToken(CloudError):
    """Every route failed; the message names what failed on each, and the way out."""

    def __init__(self, message: str, failures: list[tuple[str, CloudError]]) -> None:
        super().__init__(message)
        # Refused or asking for a code on every route: only the user can change that. A route that was
        # down or answered nonsense may work next time.
        # A password refused by one route is wrong whatever the other answered.
        self.needs_user = any(isinstance(error, CloudBadLogin) for _, error in failures) or all(
            isinstance(error, CloudRefused | CloudMfa) for _, error in failures
        )


def route_order(first: str | None) -> tuple[str, ...]:
    """The routes in the order they are tried: the remembered one first, then the others."""
    if first not in ROUTES:
        return ROUTES
    return (first, *(route for route in ROUTES if route != first))


def fetch_token(
    cloud: CloudClient, *, username: str, password: str, serial: str, first: str | None = None
) -> CloudToken:
    """A token for the gateway `serial` from the first route that gives one (`first` is tried first).

    NoCloudToken when every route failed; CloudTimeUp when the run's deadline came before any route could
    fail or succeed (the next run tries again at once).
    """
    failures: list[tuple[str, CloudError]] = []
    for route in route_order(first):
        # A session per route: the cookies of one service never travel with another's requests.
        with BoundedSession() as session:
            try:
                token = _ROUTES[route](_Attempt(cloud, session, username, password), serial)
            except CloudError as exc:
                log.info("token route %s failed: %s", route, exc)
                failures.append((route, exc))
                continue
            except CloudTimeUp as exc:
                if not failures:
                    raise
                # Another route failed already: that failure is recorded, and the back-off applies.
                failures.append((route, CloudUnavailable(str(exc))))
                break
        log.info(
            "new %s token from the Enphase cloud by route %s, valid until %s",
            token.enphase_user,
            route,
            token.expires_at,
        )
        return CloudToken(token, CloudRoute(route, describe_failures(failures) if failures else None))
    raise NoCloudToken(_no_token(username, failures), failures)


def describe_failures(failures: list[tuple[str, CloudError]]) -> str:
    """One line naming what failed on each route: `enlighten route: ...; entrez-web route: ...`."""
    return "; ".join(f"{route} route: {error}" for route, error in failures)


def _no_token(username: str, failures: list[tuple[str, CloudError]]) -> str:
    """The line that says every route failed, why, and what the user can do."""
    logins = " and ".join(_LOGINS[route] for route, _ in failures)
    both = "both " if len(failures) > 1 else ""
    if all(isinstance(error, CloudMfa) for _, error in failures):
        return (
            f"no token from the Enphase cloud: the account {username} uses multi-factor authentication "
            f"({logins} {both}ask for a one-time code, which envoylog cannot give): {WAY_OUT}"
        )
    if all(isinstance(error, CloudBadLogin) for _, error in failures):
        return (
            f"no token from the Enphase cloud: {logins} {both}refused the username or password of "
            f"{username}: check ENVOYLOG_USERNAME and ENVOYLOG_PASSWORD (or username and password in the "
            f"config file), or {WAY_OUT}"
        )
    return f"no token from the Enphase cloud: {describe_failures(failures)} — {WAY_OUT}"


@dataclass(frozen=True)
class _Attempt:
    """One route's try for one account: the client, an HTTP session of its own, the credentials."""

    cloud: CloudClient
    session: BoundedSession
    username: str
    password: str = field(repr=False)

    def logged_in(self, route: str, url: str, login: Callable[[_Attempt], str]) -> str:
        """The account's session on `route` (an id or a cookie): `login` runs once per account and run."""
        key = (route, url, self.username.casefold(), self.password)
        return self.cloud.logins.session_id(key, lambda: login(self))

    def post(self, url: str, what: str, **kwargs: Any) -> Reply:
        return self.cloud.post(self.session, url, what, **kwargs)


# --- route "enlighten": Enlighten's login, then Entrez's /tokens -------------------------------------


def _enlighten(attempt: _Attempt, serial: str) -> TokenInfo:
    cloud, username = attempt.cloud, attempt.username
    session_id = attempt.logged_in(ENLIGHTEN, cloud.enlighten_url, _enlighten_login)
    what = "Entrez token request"
    body = {"session_id": session_id, "serial_num": serial, "username": username}
    answer = attempt.post(f"{cloud.entrez_url}/tokens", what, json=body)
    if answer.status in (401, 403):
        raise CloudRefused(f"Entrez refused a token for gateway {serial} to {username}")
    answer.check(what)
    return _token(answer.text, what)


def _enlighten_login(attempt: _Attempt) -> str:
    what, username = "Enlighten login", attempt.username
    form = {"user[email]": username, "user[password]": attempt.password}
    login = attempt.post(f"{attempt.cloud.enlighten_url}/login/login.json", what, data=form)
    if login.status in (401, 403):
        raise CloudBadLogin(f"Enlighten refused the username or password of {username}")
    login.check(what)
    body = login.json(what)
    session_id = body.get("session_id") if isinstance(body, dict) else None
    if not session_id:
        # An account with MFA gets a 200 without session_id: not a wrong password.
        raise CloudMfa(f"Enlighten login asks {username} for a one-time code (multi-factor authentication)")
    return str(session_id)


# --- route "entrez-web": Entrez's web login, then its token page -------------------------------------


def _entrez_web(attempt: _Attempt, serial: str) -> TokenInfo:
    cloud, username = attempt.cloud, attempt.username
    cookie = attempt.logged_in(ENTREZ_WEB, cloud.entrez_url, _entrez_login)
    what = "Entrez token page"
    answer = attempt.post(
        f"{cloud.entrez_url}/entrez_tokens",
        what,
        data={"serialNum": serial},
        cookies={SESSION_COOKIE: cookie},
    )
    if answer.status in (401, 403):
        raise CloudRefused(f"Entrez's token page refused a token for gateway {serial} to {username}")
    answer.check(what)
    found = token_in_page(answer.text)
    if found is None:
        raise CloudUnavailable(f"{what} answered a page without a token")
    return _token(found, what)


# A page that asks for the code of a second factor, rather than a session: an account with MFA.
_ASKS_FOR_CODE = re.compile(r"one-time|verification code|\botp\b|two-factor|multi-factor", re.IGNORECASE)


def _entrez_login(attempt: _Attempt) -> str:
    what, username = "Entrez web login", attempt.username
    form = {"username": username, "password": attempt.password}
    login = attempt.post(f"{attempt.cloud.entrez_url}/login", what, data=form)
    refused_by_redirect = login.status in (301, 302, 303, 307) and "error" in login.location.lower()
    if login.status in (401, 403) or refused_by_redirect:
        raise CloudBadLogin(f"Entrez web login refused the username or password of {username}")
    if login.status == 200 and _ASKS_FOR_CODE.search(login.text):
        raise CloudMfa(f"Entrez web login asks {username} for a one-time code (multi-factor authentication)")
    cookie = login.cookies.get(SESSION_COOKIE)
    if cookie and login.status in (200, 301, 302, 303):
        return cookie
    login.check(what)
    raise CloudUnavailable(f"{what} answered without a session")


class _TokenField(HTMLParser):
    """Finds the text of the first <textarea id="JWTToken">, entities decoded, whatever its attributes."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.inside = False
        self.found: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if (
            self.found is None
            and tag == "textarea"
            and any(name == "id" and (value or "").strip().casefold() == "jwttoken" for name, value in attrs)
        ):
            self.inside, self.found = True, []

    def handle_endtag(self, tag: str) -> None:
        if tag == "textarea":
            self.inside = False

    def handle_data(self, data: str) -> None:
        if self.inside and self.found is not None:
            self.found.append(data)


def token_in_page(page: str) -> str | None:
    """The token an Entrez token page holds in its `JWTToken` textarea, or None where it has none."""
    parser = _TokenField()
    try:
        parser.feed(page)
        parser.close()
    except (ValueError, AssertionError):  # a page too broken to parse holds no token either
        return None
    text = "".join(parser.found or []).strip()
    return text or None


def _token(text: str, what: str) -> TokenInfo:
    try:
        return decode_token(text.strip())
    except ConfigError:
        if text.lstrip().startswith("<"):
            raise CloudUnavailable(f"{what} answered an HTML page, not a token") from None
        raise CloudUnavailable(f"{what} answered something that is not a token") from None


_ROUTES: dict[str, Callable[[_Attempt, str], TokenInfo]] = {
    ENLIGHTEN: _enlighten,
    ENTREZ_WEB: _entrez_web,
}
