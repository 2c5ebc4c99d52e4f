"""The cloud routes to a token: tried in order until one gives a token, the one that worked remembered.

Against the simulated cloud over real HTTPS and a real database (SQLite and, when configured, PostgreSQL): the
order of the cloud requests is read from the simulator's request log.
"""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from conftest import Site, point_at
from sqlalchemy import select
from test_cli_collect import (
    assert_ok_and_silent,
    cloud_requests,
    envoylog,
    error_line,
    is_utc_iso,
    json_output,
    quiet_failure,
    status_lines,
)

from envoylog.collect.run import collect_all
from envoylog.db.models import AUTH
from envoylog.gateway.routes import WAY_OUT, route_order, token_in_page
from envoylog.simulator import EndpointFault, Fleet
from envoylog.simulator.admin import faults_to_json, merge_faults
from envoylog.simulator.faults import HTML_PAGE, Faults, apply_fault_spec

ENLIGHTEN_ROUTE = ["enlighten /login/login.json", "entrez /tokens"]
WEB_ROUTE = ["entrez /login", "entrez /entrez_tokens"]
SESSION_ID = re.compile(r"[0-9a-f]{32}")  # the shape of the simulated cloud's session ids and cookies
RENEWAL_DUE = timedelta(days=340)  # an owner token (a year) then has less than the 30 days that renew it


def stored_cloud(site: Site) -> tuple[Any, ...]:
    """The token row's remembered route, failed attempts, per-route failures and since when it fails."""
    columns = (AUTH.c.cloud_route, AUTH.c.cloud_failures, AUTH.c.cloud_error)
    with site.transaction() as conn:
        row = conn.execute(select(*columns, AUTH.c.cloud_failing_since).where(AUTH.c.kind == "token"))
        return tuple(row.one())


@pytest.fixture
def cli(site: Site, isolated_env: Path, monkeypatch: pytest.MonkeyPatch) -> Site:
    """The simulator and a fresh database, with the environment pointing the command line at both."""
    point_at(monkeypatch, site.sim, site.db_url)
    return site


def refused_by_entrez(site: Site) -> str:
    return f"Entrez refused a token for gateway {site.sim.serial} to {site.sim.username}"


# --- the chain ----------------------------------------------------------------------------------------


def test_tokens_refused_gives_a_token_by_entrez_web_which_is_tried_first_next_time(site: Site) -> None:
    site.sim.faults.set_cloud("/tokens", EndpointFault(status=403))
    run = site.collect()
    assert run.error is None and run.outcome == "ok"
    assert cloud_requests(site) == ENLIGHTEN_ROUTE + WEB_ROUTE
    assert stored_cloud(site) == ("entrez-web", 0, f"enlighten route: {refused_by_entrez(site)}", None)

    site.sim.clock.advance(RENEWAL_DUE)
    run = site.collect()
    assert run.error is None and run.cloud_requests == 2
    assert cloud_requests(site) == WEB_ROUTE  # the remembered route first, and it works: no other asked
    assert stored_cloud(site) == ("entrez-web", 0, None, None)


@pytest.mark.parametrize(
    ("fault", "cause"),
    [
        (EndpointFault(status=400), "Entrez token request answered HTTP 400"),
        (EndpointFault(body=HTML_PAGE), "Entrez token request answered an HTML page, not a token"),
        (EndpointFault(malformed=True), "Entrez token request answered something that is not a token"),
    ],
    ids=["400", "html", "garbage"],
)
def test_a_tokens_route_answering_wrong_falls_back_to_entrez_web(
    site: Site, fault: EndpointFault, cause: str
) -> None:
    site.sim.faults.set_cloud("/tokens", fault)
    run = site.collect()
    assert run.error is None
    assert cloud_requests(site) == ENLIGHTEN_ROUTE + WEB_ROUTE
    assert stored_cloud(site) == ("entrez-web", 0, f"enlighten route: {cause}", None)


def test_entrez_web_refused_and_enlighten_working_goes_back_to_enlighten(site: Site) -> None:
    site.sim.faults.set_cloud("/tokens", EndpointFault(status=403))
    assert site.collect().error is None  # entrez-web remembered
    site.sim.faults.set_cloud("/tokens", None)
    site.sim.faults.set_cloud("/entrez_tokens", EndpointFault(body="<html><body><p>Moved.</p></body></html>"))
    site.sim.clock.advance(RENEWAL_DUE)
    run = site.collect()
    assert run.error is None
    assert cloud_requests(site) == WEB_ROUTE + ENLIGHTEN_ROUTE
    cause = "entrez-web route: Entrez token page answered a page without a token"
    assert stored_cloud(site) == ("enlighten", 0, cause, None)


def test_a_failing_chain_is_one_failure_and_records_since_when_it_fails(site: Site) -> None:
    assert site.collect().error is None
    site.sim.clock.advance(RENEWAL_DUE)
    site.sim.set_faults(cloud_down=True)
    first_failure = site.sim.clock.now()
    run = site.collect()
    assert run.outcome == "ok"  # the early renewal failed; the token still works
    route, failures, error, since = stored_cloud(site)
    assert (route, failures) == ("enlighten", 1)  # one failure for the whole chain, the route kept
    assert error.startswith(
        "no token from the Enphase cloud: enlighten route: Enlighten login answered HTTP 503;"
    )
    assert abs(since - first_failure) < timedelta(minutes=1)
    site.sim.clock.advance(timedelta(hours=2))  # past the hour of back-off: one more failed attempt
    site.collect()
    assert stored_cloud(site)[1] == 2 and stored_cloud(site)[3] == since  # still failing since the first
    site.sim.clear_faults()
    site.sim.clock.advance(timedelta(hours=3))
    assert site.collect().error is None
    assert stored_cloud(site) == ("enlighten", 0, None, None)


def test_route_order_puts_the_remembered_route_first() -> None:
    assert route_order(None) == ("enlighten", "entrez-web")
    assert route_order("entrez-web") == ("entrez-web", "enlighten")
    assert route_order("a-route-of-an-older-version") == ("enlighten", "entrez-web")


def test_the_token_is_found_in_the_page_whatever_its_markup() -> None:
    token = "eyJhbGciOiJFUzI1NiJ9.eyJhdWQiOiIxIn0.c2ln"
    pages = [
        f'<textarea name="accessToken" id="JWTToken" cols="30" rows="10" >{token}</textarea>',
        f"<TEXTAREA ID='JWTToken' readonly>\n   {token}\n</TEXTAREA>",
        f'<textarea rows=4 id = "JWTToken">{token.replace(".", "&#46;")}</textarea>',
        f'<textarea id="other">not it</textarea><p><textarea class="x" id="JWTToken">{token}</textarea></p>',
    ]
    for page in pages:
        assert token_in_page(f"<!DOCTYPE html><html><body>{page}</body></html>") == token, page
    for page in ("<html><body><p>Signed out</p></body></html>", '<textarea id="JWTToken">  </textarea>', ""):
        assert token_in_page(page) is None


# --- what the command line says -------------------------------------------------------------------


def test_every_route_refused_is_one_line_naming_both_and_the_way_out(cli: Site) -> None:
    cli.sim.faults.set_cloud("/tokens", EndpointFault(status=403))
    cli.sim.faults.set_cloud("/entrez_tokens", EndpointFault(status=403))
    result = envoylog("collect")
    line = error_line(result, 3)  # one line on stderr, no traceback
    assert result.stdout == ""
    assert line.startswith(
        f"no token from the Enphase cloud: enlighten route: {refused_by_entrez(cli)}; entrez-web route: "
        f"Entrez's token page refused a token for gateway {cli.sim.serial} to {cli.sim.username} — "
        f"{WAY_OUT}; next attempt after "
    )
    assert "`envoylog auth set-token -`" in line
    assert cli.sim.password not in line and not SESSION_ID.search(line)
    assert cloud_requests(cli) == ENLIGHTEN_ROUTE + WEB_ROUTE


def test_mfa_on_both_routes_is_said_as_such(cli: Site) -> None:
    cli.sim.set_faults(mfa=True)
    line = error_line(envoylog("collect"), 3)
    assert line.startswith(
        f"no token from the Enphase cloud: the account {cli.sim.username} uses multi-factor authentication "
        f"(Enlighten login and Entrez web login both ask for a one-time code, which envoylog cannot give): "
        f"{WAY_OUT}; next attempt after "
    )
    assert cloud_requests(cli) == ["enlighten /login/login.json", "entrez /login"]


def test_a_wrong_password_is_tried_once_per_back_off_and_the_wait_is_quiet(cli: Site) -> None:
    cli.sim.set_faults(wrong_password=True)
    line = error_line(envoylog("collect"), 3)
    assert "Enlighten login and Entrez web login both refused the username or password of" in line
    assert cli.sim.password not in line
    assert cloud_requests(cli) == ["enlighten /login/login.json", "entrez /login"]  # one login per route
    cli.sim.clear_request_log()
    quiet_failure(envoylog("collect"), 3)  # within the hour: no attempt, nothing printed, still exit 3
    assert cloud_requests(cli) == []
    assert cli.query("SELECT cloud_failures FROM auth WHERE kind = 'token'") == [(1,)]


def test_auth_status_and_status_show_the_route_and_the_failures(cli: Site) -> None:
    cli.sim.faults.set_cloud("/tokens", EndpointFault(status=403))
    assert_ok_and_silent(envoylog("collect"))
    before_it = f"enlighten route: {refused_by_entrez(cli)}"
    assert f"  route:   entrez-web, tried first (before it: {before_it})" in envoylog("auth", "status").stdout
    (gateway,) = json_output(envoylog("auth", "status", "--format", "json"))["gateways"]
    assert gateway["cloud"] == {
        "route": "entrez-web",
        "failures": 0,
        "failing_since": None,
        "retry_at": None,
        "error": before_it,
    }
    assert gateway["token"]["source"] == "cloud" and gateway["token"]["cloud_failures"] == 0  # kept
    assert (
        status_lines(envoylog("status"))["token route"] == f"entrez-web, tried first (before it: {before_it})"
    )
    (gateway,) = json_output(envoylog("status", "--format", "json"))["gateways"]
    assert gateway["cloud"]["route"] == "entrez-web" and gateway["cloud"]["failures"] == 0

    # Now the remembered route fails too, and the gateway wants a new token.
    cli.sim.faults.set_cloud("/entrez_tokens", EndpointFault(status=403))
    cli.sim.revoke_tokens()
    cli.sim.clear_request_log()
    error = error_line(envoylog("collect"), 3)
    assert cloud_requests(cli) == WEB_ROUTE + ENLIGHTEN_ROUTE  # the remembered route first
    (gateway,) = json_output(envoylog("auth", "status", "--format", "json"))["gateways"]
    cloud = gateway["cloud"]
    assert cloud["route"] == "entrez-web" and cloud["failures"] == 1
    assert is_utc_iso(cloud["retry_at"]) and is_utc_iso(cloud["failing_since"])
    assert cloud["error"].startswith("no token from the Enphase cloud: entrez-web route: ")
    assert cloud["error"] in error and f"enlighten route: {refused_by_entrez(cli)}" in cloud["error"]
    text = envoylog("auth", "status").stdout
    assert "  route:   entrez-web, tried first\n" in text
    assert f"  cloud:   login failed 1x: {cloud['error']}; next attempt after {cloud['retry_at']}" in text
    renewal = status_lines(envoylog("status"))["token renewal"]
    assert renewal == (
        f"failed 1x since {cloud['failing_since']}: {cloud['error']}; next attempt after {cloud['retry_at']}"
    )
    (gateway,) = json_output(envoylog("status", "--format", "json"))["gateways"]
    assert gateway["cloud"] == cloud


# --- a fleet: one login per account and route -----------------------------------------------------


def test_a_fleet_logs_each_account_into_entrez_web_once(db_url: str, tmp_path: Path) -> None:
    from test_fleet_collect import fleet_settings

    with Fleet(6, accounts=2, state_dir=tmp_path / "fleet") as fleet:
        fleet.cloud_faults.set_cloud("/tokens", EndpointFault(status=403))
        settings = fleet_settings(fleet, db_url, tmp_path, workers=6)
        runs = collect_all(settings, clock=fleet.clock.now, cloud_verify=str(fleet.ca_file))
        assert [run.error for run in runs] == [None] * 6
        each_once = {account.username: 1 for account in fleet.accounts}
        assert fleet.logins_by_account() == each_once
        assert fleet.logins_by_account("/login") == each_once
        token_pages = [entry for entry in fleet.cloud_log() if entry.path == "/entrez_tokens"]
        assert len(token_pages) == 6 and {entry.status for entry in token_pages} == {200}


# --- the simulator's cloud faults ---------------------------------------------------------------------


def test_cloud_faults_from_the_command_line_and_the_admin_api(site: Site) -> None:
    faults = Faults()
    now = site.sim.clock.now()
    apply_fault_spec(faults, "cloud:/tokens=403", now)
    apply_fault_spec(faults, "cloud:/entrez_tokens=html", now)
    apply_fault_spec(faults, "cloud:/login=malformed", now)
    assert faults.cloud_paths == {
        "/tokens": EndpointFault(status=403),
        "/entrez_tokens": EndpointFault(body=HTML_PAGE),
        "/login": EndpointFault(malformed=True),
    }
    for bad in ("cloud:/nowhere=403", "cloud:/tokens", "cloud:/tokens=teapot"):
        with pytest.raises(ValueError, match=r"bad fault|cloud's paths"):
            apply_fault_spec(faults, bad, now)
    merge_faults(faults, {"cloud": {"/tokens": None, "/login/login.json": {"status": 500}}}, now)
    cloud = faults_to_json(faults)["cloud"]
    assert set(cloud) == {"/entrez_tokens", "/login", "/login/login.json"}
    assert cloud["/entrez_tokens"]["body"] == HTML_PAGE and cloud["/login"]["malformed"] is True
    assert cloud["/login/login.json"] == {
        "status": 500,
        "malformed": False,
        "hang_seconds": 0.0,
        "body": None,
        "drops": 0,
        "retry_after": None,
        "times": None,
    }
    with pytest.raises(ValueError, match="cloud's paths"):
        merge_faults(faults, {"cloud": {"/production.json": {"status": 500}}}, now)

    site.sim.faults.set_cloud("/login/login.json", EndpointFault(status=500))
    run = site.collect()
    assert run.error is None  # Enlighten down, Entrez's web route works
    assert cloud_requests(site) == ["enlighten /login/login.json", *WEB_ROUTE]
    site.sim.clear_faults()
    assert site.sim.faults.cloud_paths == {}
