"""The collector against the simulated gateway over HTTPS: the token lifecycle, changed-only storage, faults.

Every test runs on SQLite and, when ENVOYLOG_TEST_POSTGRES_URL is set, on PostgreSQL.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest
from conftest import Site
from sqlalchemy import select

from envoylog.collect.auth_store import store_token
from envoylog.collect.run import GatewayRun, collect_all, raise_for_runs
from envoylog.db import claims, runs
from envoylog.db.migrate import open_database
from envoylog.db.models import AUTH
from envoylog.errors import AuthError, GatewayError, LockedError
from envoylog.gateway.routes import WAY_OUT
from envoylog.gateway.tokens import decode_token
from envoylog.simulator import EndpointFault, Quirks, Simulator

STEADY_STATE_LIMIT = 4  # SPEC section 9: gateway requests of a steady-state run, /info included


def test_first_run_gets_a_token_with_the_credentials_and_stores_readings(site: Site) -> None:
    run = site.collect()
    assert run.error is None and run.outcome == "ok"
    assert site.requests("enlighten") == ["/login/login.json"]
    assert site.requests("entrez") == ["/tokens"]
    assert site.requests(path="/auth/check_jwt") == ["/auth/check_jwt"]
    assert run.rows_added == {"production": 4, "consumption": 4, "net_consumption": 4, "inverter": 30}
    ((source, user),) = site.query("SELECT source, enphase_user FROM auth WHERE kind = 'token'")
    assert (source, user) == ("cloud", "owner")
    assert site.query("SELECT COUNT(*) FROM auth WHERE kind = 'session' AND secret IS NOT NULL")[0][0] == 1


def test_steady_state_runs_make_at_most_four_gateway_requests_and_no_cloud_request(site: Site) -> None:
    site.collect()
    per_run = []
    for _ in range(12):  # twelve simulated minutes: the inverters and other slow endpoints come due
        site.sim.clock.advance(timedelta(minutes=1))
        run = site.collect()
        assert run.error is None
        per_run.append(len(site.requests()))
        assert site.cloud_requests() == 0
        assert site.requests(path="/auth/check_jwt") == []
    assert max(per_run) <= STEADY_STATE_LIMIT
    assert min(per_run) == 3  # /info, /production.json, /ivp/meters/readings
    inverter_rows = site.query("SELECT COUNT(DISTINCT reported_at) FROM inverter_readings")[0][0]
    assert inverter_rows >= 2  # the inverters were read again once their next reports were due


def test_expired_sessions_cost_exactly_one_check_jwt(site: Site) -> None:
    site.collect()
    site.sim.clock.advance(timedelta(minutes=1))
    site.sim.expire_sessions()
    run = site.collect()
    assert run.error is None and run.outcome == "ok"
    assert site.requests(path="/auth/check_jwt") == ["/auth/check_jwt"]
    assert site.cloud_requests() == 0


def test_a_run_after_a_long_pause_goes_straight_to_check_jwt(site: Site) -> None:
    site.collect()
    site.sim.clock.advance(timedelta(minutes=30))  # the session lapsed meanwhile
    run = site.collect()
    assert run.error is None
    paths = site.requests()
    assert paths[:2] == ["/info", "/auth/check_jwt"]  # no data request wasted on a 401
    assert all(entry.status != 401 for entry in site.sim.request_log())


def test_revoked_token_is_replaced_from_the_cloud_once(site: Site) -> None:
    site.collect()
    old = site.query("SELECT secret FROM auth WHERE kind = 'token'")[0][0]
    site.sim.clock.advance(timedelta(minutes=1))
    site.sim.revoke_tokens()
    run = site.collect()
    assert run.error is None and run.outcome == "ok"
    assert site.cloud_requests() == 2  # login and token, once
    assert site.requests(path="/auth/check_jwt") == ["/auth/check_jwt", "/auth/check_jwt"]
    new = site.query("SELECT secret FROM auth WHERE kind = 'token'")[0][0]
    assert new != old
    assert run.rows_added.get("production")


def test_token_close_to_expiry_is_renewed_early(site: Site) -> None:
    site.collect()
    short = site.sim.issue_token(lifetime=timedelta(days=10))  # an owner token with 10 of 365 days left
    with site.transaction() as conn:
        gateway_id = conn.exec_driver_sql("SELECT id FROM gateways").scalar_one()
        store_token(conn, gateway_id, decode_token(short), "cloud", site.sim.clock.now())
    site.sim.clock.advance(timedelta(minutes=1))
    run = site.collect()
    assert run.error is None
    assert site.cloud_requests() == 2
    ((secret,),) = site.query("SELECT secret FROM auth WHERE kind = 'token'")
    assert secret != short
    assert decode_token(secret).expires_at > site.sim.clock.now() + timedelta(days=360)


def test_installer_token_is_renewed_in_its_last_hour(sim_installer: Site) -> None:
    site = sim_installer
    site.collect()
    site.sim.clock.advance(timedelta(hours=11, minutes=30))  # twelve-hour tokens: 30 minutes left
    run = site.collect()
    assert run.error is None
    assert site.cloud_requests() == 2
    ((secret,),) = site.query("SELECT secret FROM auth WHERE kind = 'token'")
    assert decode_token(secret).expires_at > site.sim.clock.now() + timedelta(hours=11)


def test_expired_token_with_the_cloud_down_fails_with_exit_3_and_loses_nothing(site: Site) -> None:
    site.collect()
    before = site.rows()
    site.sim.clock.advance(timedelta(days=366))  # the owner token has expired
    site.sim.set_faults(cloud_down=True)
    run = site.collect()
    assert isinstance(run.error, AuthError) and run.error.status == 3
    assert "503" in str(run.error)
    assert site.rows() == before
    ((outcome, error),) = site.query("SELECT outcome, error FROM runs ORDER BY id DESC LIMIT 1")
    assert outcome == "failed" and "503" in error
    site.sim.set_faults(cloud_down=False)
    site.sim.clock.advance(timedelta(hours=2))  # past the back-off
    assert site.collect().error is None  # the next run recovers by itself


def test_mfa_account_is_told_to_paste_a_token(site: Site) -> None:
    site.sim.set_faults(mfa=True)
    run = site.collect()
    assert isinstance(run.error, AuthError) and run.error.status == 3
    assert "multi-factor" in str(run.error) and "envoylog auth set-token" in str(run.error)


def test_wrong_password_is_not_retried_against_the_cloud_by_the_next_run(site: Site) -> None:
    site.sim.set_faults(wrong_password=True)
    first = site.collect()
    assert isinstance(first.error, AuthError) and not first.error.quiet
    assert site.cloud_requests() == 2  # one login on each route: Enlighten's and Entrez's web login
    site.sim.clock.advance(timedelta(minutes=1))
    second = site.collect()
    assert isinstance(second.error, AuthError)
    assert site.cloud_requests() == 0
    assert "next attempt after" in str(second.error)
    assert second.error.quiet  # only waiting: the first run said it
    site.sim.clock.advance(timedelta(minutes=61))  # after the hour of back-off, one more attempt
    third = site.collect()
    assert site.cloud_requests() == 2
    assert isinstance(third.error, AuthError) and not third.error.quiet


# What a failed cloud attempt says, and what the back-off repeats: "{serial}" is the gateway's serial.
BOTH_LOGINS = "Enlighten login and Entrez web login both"
CLOUD_FAILURES = {
    "wrong_password": f"no token from the Enphase cloud: {BOTH_LOGINS} refused the username or password of "
    "owner@example.com: check ENVOYLOG_USERNAME and ENVOYLOG_PASSWORD (or username and password in the "
    f"config file), or {WAY_OUT}",
    "mfa": "no token from the Enphase cloud: the account owner@example.com uses multi-factor authentication "
    f"({BOTH_LOGINS} ask for a one-time code, which envoylog cannot give): {WAY_OUT}",
    "cloud_down": "no token from the Enphase cloud: enlighten route: Enlighten login answered HTTP 503; "
    f"entrez-web route: Entrez web login answered HTTP 503 — {WAY_OUT}",
    "entrez_refuses": "no token from the Enphase cloud: enlighten route: Entrez refused a token for gateway "
    "{serial} to owner@example.com; entrez-web route: Entrez's token page refused a token for gateway "
    f"{{serial}} to owner@example.com — {WAY_OUT}",
}
SESSION_ID = re.compile(r"[0-9a-f]{32}")  # the shape of the simulated Enlighten's session ids


@pytest.mark.parametrize("failure", list(CLOUD_FAILURES))
def test_the_back_off_keeps_the_cause_of_the_cloud_failure_and_no_secret(
    site: Site, failure: str, tmp_path: Path
) -> None:
    cloud = site.sim
    settings = site.settings()
    if failure == "entrez_refuses":
        # An account that owns another gateway: Enlighten logs it in, Entrez refuses a token for this one.
        cloud = Simulator("standard", state_dir=tmp_path / "other-account").start()
        settings = replace(settings, enlighten_url=cloud.enlighten_url, entrez_url=cloud.entrez_url)
    else:
        site.sim.set_faults(**{failure: True})

    def collect() -> GatewayRun:
        cloud.clear_request_log()
        (run,) = collect_all(settings, clock=site.sim.clock.now, cloud_verify=str(cloud.ca_file))
        return run

    def cloud_requests() -> int:
        return sum(1 for entry in cloud.request_log() if entry.service in ("enlighten", "entrez"))

    try:
        cause = CLOUD_FAILURES[failure].format(serial=site.sim.serial)
        first = collect()
        assert cloud_requests() >= 1
        with site.transaction() as conn:
            stored_cause, retry_at = conn.execute(select(AUTH.c.cloud_error, AUTH.c.cloud_retry_at)).one()
        assert stored_cause == cause
        when = f"next attempt after {retry_at:%Y-%m-%d %H:%M} UTC (`envoylog auth login` tries now)"
        assert isinstance(first.error, AuthError) and first.error.status == 3
        assert str(first.error) == f"{cause}; {when}"

        site.sim.clock.advance(timedelta(minutes=1))
        second = collect()
        assert cloud_requests() == 0  # the back-off holds, and the cause is still told
        assert isinstance(second.error, AuthError)
        assert str(second.error) == (
            f"no usable token is stored; the last Enphase cloud login failed: {cause}; {when}"
        )
        for said in (stored_cause, str(first.error), str(second.error)):
            assert site.sim.password not in said and not SESSION_ID.search(said)
    finally:
        if cloud is not site.sim:
            cloud.stop()

    site.sim.clear_faults()
    site.sim.clock.advance(timedelta(hours=1))  # past the back-off, with a working account
    assert site.collect().error is None
    assert site.query("SELECT cloud_failures, cloud_error FROM auth WHERE kind = 'token'") == [(0, None)]


def test_gateway_down_is_exit_4(site: Site) -> None:
    run = site.collect(site.settings(host="127.0.0.1:9"))
    assert isinstance(run.error, GatewayError) and run.error.status == 4
    assert "127.0.0.1:9" in str(run.error)


def test_an_endpoint_that_hangs_ends_the_run_within_its_deadline(site: Site) -> None:
    site.collect()
    site.sim.clock.advance(timedelta(minutes=1))
    site.sim.set_endpoint_fault("/ivp/meters/readings", EndpointFault(hang_seconds=30))
    started = time.monotonic()
    run = site.collect(deadline_s=3)
    elapsed = time.monotonic() - started
    assert elapsed < 6
    assert run.outcome == "partial"  # production.json was read before the hang: it is stored
    assert run.rows_added.get("production")


def test_malformed_json_on_one_endpoint_keeps_the_rest(site: Site) -> None:
    site.collect()
    site.sim.clock.advance(timedelta(minutes=1))
    site.sim.set_endpoint_fault("/ivp/meters/readings", EndpointFault(malformed=True))
    run = site.collect()
    assert run.error is None and run.outcome == "partial"
    assert run.rows_added.get("production") and run.rows_added.get("consumption")
    assert "net_consumption" in run.rows_added  # from production.json's net-consumption entry instead
    ((error,),) = site.query("SELECT error FROM runs ORDER BY id DESC LIMIT 1")
    assert "/ivp/meters/readings" in error and "not JSON" in error


def test_unchanged_data_adds_no_rows(site: Site) -> None:
    site.sim.clock.set(site.sim.clock.now(), speed=1e-9)  # time stands still: every answer repeats
    site.collect()
    before = site.rows()
    run = site.collect()
    assert run.error is None
    assert run.rows_added == {}
    assert site.rows() == before


def test_overlapping_collects_never_both_write(site: Site) -> None:
    site.collect()
    engine = open_database(site.db_url, create=True)
    try:
        # Another collector, elsewhere, is polling the gateway right now.
        assert claims.claim(engine, "home", "other-host pid 7 0000", lease_s=60) is None
        site.sim.clear_request_log()
        runs = collect_all(site.settings(), clock=site.sim.clock.now, cloud_verify=str(site.sim.ca_file))
        with pytest.raises(LockedError) as info:
            raise_for_runs(runs)
        assert info.value.status == 6
        assert "other-host pid 7" in str(info.value)
        assert site.sim.request_log() == []
    finally:
        engine.dispose()


def test_two_collects_at_once_store_no_duplicates(site: Site) -> None:
    site.collect()
    site.sim.clock.advance(timedelta(minutes=6))
    outcomes: list[str] = []

    def one() -> None:
        runs = collect_all(site.settings(), clock=site.sim.clock.now, cloud_verify=str(site.sim.ca_file))
        outcomes.append("locked" if isinstance(runs[0].error, LockedError) else "ran")

    threads = [threading.Thread(target=one) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert "ran" in outcomes
    duplicates = site.query(
        "SELECT series_id, read_at, COUNT(*) FROM meter_readings "
        "GROUP BY series_id, read_at HAVING COUNT(*) > 1"
    )
    assert duplicates == []


def test_a_run_killed_midway_leaves_a_database_the_next_run_continues(site: Site) -> None:
    site.collect()
    before = site.rows()
    # A run that dies after writing its run-log entry (as a killed process would) leaves it "running".
    with site.transaction() as conn:
        runs.start_run(conn, "home", site.sim.clock.now())
    site.sim.clock.advance(timedelta(minutes=1))
    run = site.collect()
    assert run.error is None
    after = site.rows()
    assert after["meter_readings"] > before["meter_readings"]
    outcomes = [row[0] for row in site.query("SELECT outcome FROM runs ORDER BY id")]
    assert outcomes == ["ok", "running", "ok"]


@pytest.fixture
def sim_installer(db_url: str, tmp_path: Path) -> Iterator[Site]:
    """A site whose cloud issues installer tokens (twelve hours)."""
    with Simulator("metered", state_dir=tmp_path / "installer", cloud_token_user="installer") as simulator:
        yield Site(simulator, db_url)


def test_a_collect_process_killed_mid_run_leaves_a_consistent_database(site: Site, tmp_path: Path) -> None:
    site.sim.set_endpoint_fault("/ivp/meters/readings", EndpointFault(hang_seconds=60))
    env = {
        **os.environ,
        **site.sim.environment(),
        "ENVOYLOG_DB": site.db_url,
        "REQUESTS_CA_BUNDLE": str(site.sim.ca_file),
        "HOME": str(tmp_path),
    }
    process = subprocess.Popen([sys.executable, "-m", "envoylog", "collect"], env=env, cwd=tmp_path)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and "/ivp/meters/readings" not in site.requests():
        time.sleep(0.05)
    process.kill()  # SIGKILL: no clean-up of any kind
    process.wait(timeout=10)
    assert site.query("SELECT outcome FROM runs") == [("running",)]
    site.sim.clear_faults()
    run = site.collect()
    assert run.error is None
    assert site.cloud_requests() == 0  # the killed run had already stored its token and session
    assert run.rows_added.get("production")
    if site.db_url.startswith("sqlite"):
        assert site.query("PRAGMA integrity_check") == [("ok",)]


def test_the_password_is_never_stored(site: Site) -> None:
    site.collect()
    password = site.sim.password
    for table in ("gateways", "auth", "runs", "series"):
        for row in site.query(f"SELECT * FROM {table}"):  # noqa: S608 - fixed table names
            assert all(password not in str(value) for value in row)
    if site.db_url.startswith("sqlite:///"):
        path = Path(site.db_url.removeprefix("sqlite:///"))
        for file in (path, Path(f"{path}-wal")):
            if file.exists():
                assert password.encode() not in file.read_bytes()


def test_cloud_tls_is_verified(site: Site) -> None:
    (run,) = collect_all(
        site.settings(), clock=site.sim.clock.now
    )  # the system's CAs do not know the simulator's
    assert isinstance(run.error, AuthError)
    assert "not trusted" in str(run.error)
    assert site.query("SELECT COUNT(*) FROM auth WHERE secret IS NOT NULL")[0][0] == 0


def test_a_bare_host_is_tried_over_https_then_http(db_url: str, tmp_path: Path) -> None:
    with Simulator("legacy", state_dir=tmp_path / "legacy") as legacy:
        site = Site(legacy, db_url)
        bare = legacy.gateway_url.removeprefix("http://")
        run = site.collect(site.settings(host=bare, username=None, password=None))
        assert run.error is None and run.outcome == "ok"
        assert run.rows_added.get("inverter") == 12  # behind Digest auth, with the serial's last six digits
        assert site.cloud_requests() == 0
        assert [e.status for e in legacy.request_log() if e.path == "/api/v1/production/inverters"] == [
            401,
            200,
        ]


def test_a_bare_host_of_a_modern_gateway_stays_on_https(site: Site) -> None:
    bare = site.sim.gateway_url.removeprefix("https://")
    run = site.collect(site.settings(host=bare))
    assert run.error is None
    assert site.query("SELECT COUNT(*) FROM gateways")[0][0] == 1


def test_a_configured_token_serves_without_credentials(site: Site) -> None:
    token = site.sim.issue_token()
    run = site.collect(site.settings(token=token, username=None, password=None))
    assert run.error is None and run.outcome == "ok"
    assert site.cloud_requests() == 0
    assert site.query("SELECT source FROM auth WHERE kind = 'token'") == [("config",)]


def test_a_refused_token_without_credentials_asks_the_user(site: Site) -> None:
    token = site.sim.issue_token()
    site.sim.revoke_tokens()
    run = site.collect(site.settings(token=token, username=None, password=None))
    assert isinstance(run.error, AuthError) and run.error.status == 3
    assert "refuses the token" in str(run.error) and "auth set-token" in str(run.error)
    assert token not in str(run.error)
    assert site.cloud_requests() == 0


def test_a_firmware_update_is_recorded_and_the_gateway_discovered_again(site: Site) -> None:
    site.collect()
    site.sim.clock.advance(timedelta(minutes=1))
    site.collect()
    assert "/ivp/meters" not in site.requests()  # steady state: no discovery
    site.sim.set_faults(quirks=Quirks(firmware="8.3.5433"))
    site.sim.clock.advance(timedelta(minutes=1))
    run = site.collect()
    assert run.error is None
    assert "/ivp/meters" in site.requests()  # discovered again
    events = site.query("SELECT kind, detail FROM events ORDER BY id")
    assert ("firmware_changed", "8.2.4345 -> 8.3.5433") in events
    assert [kind for kind, _ in events].count("discovered") == 2
    assert site.query("SELECT firmware FROM gateways") == [("8.3.5433",)]
    site.sim.clock.advance(timedelta(minutes=1))
    site.collect()
    assert "/ivp/meters" not in site.requests()
