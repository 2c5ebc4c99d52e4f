"""The command line as cron and users run it: collect, latest, status and auth against the simulator.

The commands run through Typer's CliRunner with the environment a user would set (`sim.environment()` and
ENVOYLOG_DB), and a few run as a separate process, as cron does. Every test that touches a database runs
on SQLite and, when ENVOYLOG_TEST_POSTGRES_URL is set, on PostgreSQL.
"""

from __future__ import annotations

import json
import os
import re
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from conftest import Site, envoylog_command, point_at
from sqlalchemy import create_engine, select, update
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError
from typer.testing import CliRunner, Result

from envoylog.cli import app
from envoylog.db import claims
from envoylog.db.migrate import open_database
from envoylog.db.models import AUTH, EVENTS, PROBLEMS, RUNS
from envoylog.gateway.routes import WAY_OUT
from envoylog.simulator import EndpointFault, Quirks, Simulator

runner = CliRunner()

ERROR_PREFIX = "envoylog: error: "
DEAD_HOST = "127.0.0.1:9"  # the discard port: nothing listens there, so connecting is refused at once
LATEST_KEYS = {
    "serial",
    "firmware",
    "part_number",
    "metered",
    "collected_at",
    "production",
    "consumption",
    "net_consumption",
    "inverters",
    "batteries",
}


@pytest.fixture
def cli(site: Site, isolated_env: Path, monkeypatch: pytest.MonkeyPatch) -> Site:
    """The metered simulator and a fresh database, with the environment pointing the CLI at both."""
    point_at(monkeypatch, site.sim, site.db_url)
    return site


def envoylog(*args: str, input: str | None = None) -> Result:
    """Run the command line in this process, stdout and stderr apart."""
    return runner.invoke(app, list(args), input=input)


def assert_ok_and_silent(result: Result) -> None:
    """Exit 0 with nothing on stdout or stderr: what cron needs to mail nothing."""
    assert (result.exit_code, result.stdout, result.stderr) == (0, "", ""), result.stderr


def error_line(result: Result, code: int) -> str:
    """The one line a failing command prints on stderr, after checking the exit code and the shape."""
    assert result.exit_code == code, (result.exit_code, result.stdout, result.stderr)
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(ERROR_PREFIX)
    assert "Traceback" not in result.output
    return lines[0].removeprefix(ERROR_PREFIX)


def quiet_failure(result: Result, code: int) -> None:
    """A failure that is transient (the gateway was read within the quiet window): its exit code, no line."""
    assert (result.exit_code, result.stdout, result.stderr) == (code, "", "")


def json_output(result: Result) -> Any:
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


def is_utc_iso(value: Any) -> bool:
    """An ISO 8601 time in UTC with a trailing Z, as the JSON contracts promise."""
    if not isinstance(value, str) or not value.endswith("Z"):
        return False
    return datetime.fromisoformat(value).utcoffset() == timedelta(0)


def cloud_requests(site: Site) -> list[str]:
    return [f"{e.service} {e.path}" for e in site.sim.request_log() if e.service in ("enlighten", "entrez")]


def stored_secret(site: Site, kind: str) -> str:
    ((secret,),) = site.query("SELECT secret FROM auth WHERE kind = :kind", kind=kind)
    assert secret
    return str(secret)


def count(site: Site, table: str) -> int:
    return int(site.query(f"SELECT COUNT(*) FROM {table}")[0][0])  # noqa: S608 - a fixed table name


# --- collect ------------------------------------------------------------------------------------------


def test_collect_is_silent_on_success_and_stores_readings(cli: Site) -> None:
    assert_ok_and_silent(envoylog("collect"))
    rows = cli.rows()
    assert rows["meter_readings"] > 0
    assert rows["inverter_readings"] == 30
    assert cli.query("SELECT outcome FROM runs") == [("ok",)]
    # The next minute's run, the steady state, is just as quiet.
    assert_ok_and_silent(envoylog("collect"))


def test_verbose_collect_tells_requests_and_rows_but_never_a_secret(cli: Site) -> None:
    first = envoylog("-v", "collect")
    second = envoylog("--verbose", "collect")
    assert first.exit_code == 0 and second.exit_code == 0
    summary = re.compile(
        rf"^envoylog: default \({cli.sim.serial}\): ok; (\d+) gateway requests, (\d+) cloud requests; "
        r"rows added: (.*)$",
        re.MULTILINE,
    )
    match = summary.search(first.stderr)
    assert match is not None, first.stderr
    assert int(match[1]) >= 4 and int(match[2]) == 2  # logged in: Enlighten and Entrez
    added = dict(item.rsplit(" ", 1) for item in match[3].split(", "))
    assert added["inverter"] == "30"
    assert int(added["production"]) > 0 and int(added["net_consumption"]) > 0
    steady = summary.search(second.stderr)
    assert steady is not None and int(steady[2]) == 0
    # Each request the run made is named, so a user can see what the gateway was asked.
    assert "GET /info" in first.stderr and "GET /production.json" in first.stderr

    token, session = stored_secret(cli, "token"), stored_secret(cli, "session")
    secrets = {
        "password": cli.sim.password,
        "token": token,
        "token claims": token.split(".")[1],
        "token signature": token.split(".")[2],
        "session id": session,
    }
    for result in (first, second):
        for what, secret in secrets.items():
            assert secret not in result.stdout, what
            assert secret not in result.stderr, what  # the log lines of -v go to stderr


def test_a_run_with_a_failing_endpoint_still_exits_0_silently_and_status_tells(cli: Site) -> None:
    assert_ok_and_silent(envoylog("collect"))
    cli.sim.set_endpoint_fault("/ivp/meters/readings", EndpointFault(status=503))
    assert_ok_and_silent(envoylog("collect"))
    assert cli.query("SELECT outcome FROM runs ORDER BY id DESC LIMIT 1") == [("partial",)]
    status = envoylog("status")
    assert status.exit_code == 0
    (line,) = [line for line in status.stdout.splitlines() if "last error:" in line]
    assert "/ivp/meters/readings: HTTP 503" in line


# --- latest -------------------------------------------------------------------------------------------


def test_latest_json_of_a_metered_gateway_follows_the_contract(cli: Site) -> None:
    assert_ok_and_silent(envoylog("collect"))
    document = json_output(envoylog("latest", "--format", "json"))
    (gateway,) = document["gateways"]
    assert set(gateway) >= LATEST_KEYS
    assert gateway["serial"] == cli.sim.serial
    assert gateway["firmware"] == "8.2.4345"
    assert gateway["part_number"] == cli.sim.profile.part_number
    assert gateway["metered"] is True
    assert is_utc_iso(gateway["collected_at"])

    production, consumption, net = (
        gateway[kind] for kind in ("production", "consumption", "net_consumption")
    )
    assert production["source"] == "eim"
    for site in (production, consumption, net):
        assert {"watts", "wh_lifetime", "read_at"} <= set(site)
        assert is_utc_iso(site["read_at"])
    assert production["wh_lifetime"] > 0 and consumption["wh_lifetime"] > 0
    # The grid exchange is what the house uses minus what the panels make.
    assert net["watts"] == pytest.approx(consumption["watts"] - production["watts"], abs=1.0)

    inverters = gateway["inverters"]
    assert len(inverters) == 30
    assert len({inverter["serial"] for inverter in inverters}) == 30
    for inverter in inverters:
        assert set(inverter) >= {"serial", "watts", "max_watts", "reported_at"}
        assert isinstance(inverter["serial"], str)
        assert inverter["watts"] >= 0 and inverter["max_watts"] > 0
        assert is_utc_iso(inverter["reported_at"])
    assert gateway["batteries"] == []


def test_latest_json_lists_the_batteries(start_site: Callable[[str], Site]) -> None:
    site = start_site("battery")
    assert_ok_and_silent(envoylog("collect"))
    (gateway,) = json_output(envoylog("latest", "--format", "json"))["gateways"]
    assert gateway["serial"] == site.sim.serial
    batteries = gateway["batteries"]
    assert len(batteries) == 2
    assert len({battery["serial"] for battery in batteries}) == 2
    for battery in batteries:
        assert battery["kind"] == "encharge"
        assert isinstance(battery["serial"], str) and battery["serial"]
        assert 0 <= battery["soc_percent"] <= 100
        assert "watts" in battery


def test_latest_json_of_a_gateway_without_cts(start_site: Callable[[str], Site]) -> None:
    site = start_site("standard")
    assert_ok_and_silent(envoylog("collect"))
    (gateway,) = json_output(envoylog("latest", "--format", "json"))["gateways"]
    assert gateway["metered"] is False
    assert gateway["consumption"] is None and gateway["net_consumption"] is None
    assert gateway["production"]["source"] == "api_v1"
    assert len(gateway["inverters"]) == site.sim.profile.inverter_count


def test_latest_table_shows_the_serial_and_the_production_watts(cli: Site) -> None:
    assert_ok_and_silent(envoylog("collect"))
    (gateway,) = json_output(envoylog("latest", "--format", "json"))["gateways"]
    table = envoylog("latest")
    assert table.exit_code == 0 and table.stderr == ""
    assert cli.sim.serial in table.stdout
    (production,) = [line for line in table.stdout.splitlines() if line.strip().startswith("production")]
    assert f"{gateway['production']['watts']:,.1f} W" in production
    assert "30" in next(line for line in table.stdout.splitlines() if "inverters" in line)


def test_latest_on_an_empty_database_says_so_kindly(db_url: str, isolated_env: Path) -> None:
    assert envoylog("--db", db_url, "db", "upgrade").exit_code == 0
    table = envoylog("--db", db_url, "latest")
    assert table.exit_code == 0 and table.stderr == ""
    assert "nothing stored yet" in table.stdout and "envoylog collect" in table.stdout
    assert json_output(envoylog("--db", db_url, "latest", "--format", "json")) == {"gateways": []}


# --- status -------------------------------------------------------------------------------------------


def test_status_shows_firmware_last_success_token_expiry_rows_and_the_last_error(cli: Site) -> None:
    assert_ok_and_silent(envoylog("collect"))
    before = envoylog("status")
    assert before.exit_code == 0
    lines = dict(line.strip().split(":", 1) for line in before.stdout.splitlines() if ":  " in line)
    assert lines["firmware"].strip() == "8.2.4345"
    finished_at = stored_time(cli, RUNS.c.finished_at)
    assert lines["last success"].strip() == finished_at
    assert (
        lines["token expires"].strip().startswith(stored_time(cli, AUTH.c.expires_at, AUTH.c.kind == "token"))
    )
    assert lines["rows stored"].strip().startswith(f"{count(cli, 'meter_readings'):,} meter, 30 inverter")
    assert lines["last error"].strip() == "none"
    assert "database size:" in before.stdout

    cli.sim.set_endpoint_fault("/info", EndpointFault(status=503))
    quiet_failure(envoylog("collect"), 4)  # read a moment ago: a transient failure, in the run log only
    after = envoylog("status")
    lines = dict(line.strip().split(":", 1) for line in after.stdout.splitlines() if ":  " in line)
    assert "/info answered HTTP 503" in lines["last error"]
    assert lines["last success"].strip() == finished_at  # the failed run is not a success
    (gateway,) = json_output(envoylog("status", "--format", "json"))["gateways"]
    assert "/info answered HTTP 503" in gateway["last_error"]["message"]


def status_lines(result: Result) -> dict[str, str]:
    """The `label: value` lines of `envoylog status` (one gateway), by label, in the order printed."""
    assert result.exit_code == 0, result.stderr
    pairs = (line.strip().split(": ", 1) for line in result.stdout.splitlines() if line.startswith("  "))
    return {label: value.strip() for label, value in pairs}


def test_status_shows_the_last_firmware_update_behind_the_events_after_it(cli: Site) -> None:
    assert_ok_and_silent(envoylog("collect"))
    assert "firmware update" not in status_lines(envoylog("status"))
    (gateway,) = json_output(envoylog("status", "--format", "json"))["gateways"]
    assert gateway["last_firmware_change"] is None

    cli.sim.set_faults(quirks=Quirks(firmware="8.3.5433"))
    assert_ok_and_silent(envoylog("collect"))
    changed_at = stored_time(cli, EVENTS.c.at, EVENTS.c.kind == "firmware_changed")
    lines = status_lines(envoylog("status"))
    assert list(lines)[:3] == ["firmware", "firmware update", "last success"]
    assert lines["firmware"] == "8.3.5433"
    assert lines["firmware update"] == f"{changed_at} 8.2.4345 -> 8.3.5433"
    assert lines["last event"].split()[1] == "discovered:"  # the new discovery came after the update
    (gateway,) = json_output(envoylog("status", "--format", "json"))["gateways"]
    assert gateway["last_firmware_change"] == {"at": changed_at, "from": "8.2.4345", "to": "8.3.5433"}
    assert gateway["firmware"] == "8.3.5433" and gateway["last_event"]["kind"] == "discovered"


def test_status_tells_when_runs_ended_last_success_first(cli: Site) -> None:
    # An endpoint that takes over a second: the run ends in a later second than it started.
    cli.sim.set_endpoint_fault("/production.json", EndpointFault(hang_seconds=1.2))
    assert_ok_and_silent(envoylog("collect"))
    cli.sim.set_endpoint_fault("/production.json", None)
    started_at, finished_at = stored_time(cli, RUNS.c.started_at), stored_time(cli, RUNS.c.finished_at)
    assert started_at < finished_at
    lines = status_lines(envoylog("status"))
    assert list(lines)[:4] == ["firmware", "last success", "last run", "last error"]
    assert lines["last success"] == finished_at
    assert lines["last run"] == f"{finished_at} ok"
    (gateway,) = json_output(envoylog("status", "--format", "json"))["gateways"]
    assert gateway["last_run"] == {
        "at": started_at,
        "finished_at": finished_at,
        "outcome": "ok",
        "requests": cli.query("SELECT requests FROM runs")[0][0],
    }
    assert gateway["last_success_at"] == finished_at

    cli.sim.set_endpoint_fault("/info", EndpointFault(status=503))
    quiet_failure(envoylog("collect"), 4)
    cli.sim.set_endpoint_fault("/info", None)
    failed_at = stored_time(cli, RUNS.c.finished_at, RUNS.c.outcome == "failed")
    lines = status_lines(envoylog("status"))
    assert lines["last success"] == finished_at
    assert lines["last run"] == f"{failed_at} failed"
    assert (
        lines["last error"].startswith(f"{failed_at} ") and "/info answered HTTP 503" in lines["last error"]
    )

    # A collect that is still reading its gateway, as cron's next run finds it.
    cli.sim.set_endpoint_fault("/ivp/meters/readings", EndpointFault(hang_seconds=5))
    cli.sim.clear_request_log()
    running = subprocess.Popen(
        [*envoylog_command(), "collect"], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and "/ivp/meters/readings" not in cli.requests():
            time.sleep(0.05)
        since = stored_time(cli, RUNS.c.started_at, RUNS.c.outcome == "running")
        lines = status_lines(envoylog("status"))
        assert lines["last run"] == f"running since {since}"
        assert lines["last success"] == finished_at
        (gateway,) = json_output(envoylog("status", "--format", "json"))["gateways"]
        assert gateway["last_run"]["outcome"] == "running" and gateway["last_run"]["finished_at"] is None
    finally:
        _, stderr = running.communicate(timeout=60)
        assert running.returncode == 0, stderr
    assert status_lines(envoylog("status"))["last run"].endswith(" ok")


def stored_time(site: Site, column: Any, *where: Any) -> str:
    """The one stored value of a time column, as the commands print it: ISO 8601 UTC with a Z."""
    engine = create_engine(site.db_url)
    try:
        with engine.connect() as conn:
            (value,) = conn.execute(select(column).where(*where)).scalars().all()
    finally:
        engine.dispose()
    return str(value.isoformat().replace("+00:00", "Z"))


# --- auth ---------------------------------------------------------------------------------------------


def test_auth_status_json_follows_the_contract_after_a_collect_with_credentials(cli: Site) -> None:
    assert envoylog("db", "upgrade").exit_code == 0
    assert envoylog("auth", "status").stdout.startswith("no gateway known yet")
    assert_ok_and_silent(envoylog("collect"))
    result = envoylog("auth", "status", "--format", "json")
    (gateway,) = json_output(result)["gateways"]
    assert gateway["serial"] == cli.sim.serial
    token, session = gateway["token"], gateway["session"]
    assert set(token) >= {"present", "source", "enphase_user", "issued_at", "expires_at", "days_left"}
    assert set(session) >= {"present", "last_used_at"}
    assert token["present"] is True
    assert token["source"] == "cloud"
    assert token["enphase_user"] == "owner"
    assert is_utc_iso(token["issued_at"]) and is_utc_iso(token["expires_at"])
    assert 364 <= token["days_left"] <= 366  # an owner token lives a year
    assert session["present"] is True and is_utc_iso(session["last_used_at"])
    assert stored_secret(cli, "token") not in result.stdout
    assert stored_secret(cli, "session") not in result.stdout
    table = envoylog("auth", "status")
    assert "owner token from the Enphase cloud" in table.stdout and cli.sim.serial in table.stdout


@pytest.mark.parametrize("given", ["argument", "stdin"])
def test_a_pasted_token_is_stored_and_collect_needs_no_cloud(
    cli: Site, monkeypatch: pytest.MonkeyPatch, given: str
) -> None:
    token = cli.sim.issue_token()
    if given == "argument":
        result = envoylog("auth", "set-token", token)
    else:
        # Pasted into standard input; the serial is not configured, so envoylog asks the gateway.
        monkeypatch.delenv("ENVOYLOG_SERIAL")
        result = envoylog("auth", "set-token", "-", input=f"{token}\n")
    assert result.exit_code == 0, result.stderr
    assert cli.sim.serial in result.stdout and "owner" in result.stdout
    assert token not in result.stdout + result.stderr
    assert cloud_requests(cli) == []
    (gateway,) = json_output(envoylog("auth", "status", "--format", "json"))["gateways"]
    assert gateway["token"]["source"] == "manual" and gateway["token"]["present"] is True
    assert "owner token pasted with `auth set-token`" in envoylog("auth", "status").stdout

    monkeypatch.delenv("ENVOYLOG_USERNAME")
    monkeypatch.delenv("ENVOYLOG_PASSWORD")
    cli.sim.clear_request_log()
    assert_ok_and_silent(envoylog("collect"))
    assert cloud_requests(cli) == []
    assert cli.requests(path="/auth/check_jwt") == ["/auth/check_jwt"]
    assert cli.rows()["inverter_readings"] == 30
    assert stored_secret(cli, "token") == token


def test_a_token_in_the_environment_is_used_and_shown_as_config(
    cli: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ENVOYLOG_TOKEN", cli.sim.issue_token())
    monkeypatch.delenv("ENVOYLOG_USERNAME")
    monkeypatch.delenv("ENVOYLOG_PASSWORD")
    assert_ok_and_silent(envoylog("collect"))
    assert cloud_requests(cli) == []
    (gateway,) = json_output(envoylog("auth", "status", "--format", "json"))["gateways"]
    assert gateway["token"]["source"] == "config"


def test_set_token_checks_the_token_before_storing_it(cli: Site) -> None:
    expired = cli.sim.issue_token(lifetime=timedelta(minutes=-1))
    foreign = cli.sim.issue_token(serial="999")
    cases = [
        ("garbage", "not a JWT"),
        ("abc.!!!.def", "cannot be decoded"),
        (expired, "expired"),
        (foreign, "999"),
    ]
    for token, reason in cases:
        message = error_line(envoylog("auth", "set-token", token), 2)
        assert reason in message, (token, message)
        assert token not in message  # a token, even a bad one, is never echoed whole
    assert "expired" in error_line(envoylog("auth", "set-token", "-", input=f"{expired}\n"), 2)
    assert count(cli, "auth") == 0
    assert cli.sim.request_log() == []  # every check is local: no gateway or cloud request


def test_an_mfa_account_is_told_to_paste_a_token(cli: Site) -> None:
    cli.sim.set_faults(mfa=True)
    message = error_line(envoylog("collect"), 3)
    assert "multi-factor" in message and "auth set-token" in message


def test_auth_login_gets_a_token_now_even_during_the_back_off(cli: Site) -> None:
    cli.sim.set_faults(wrong_password=True)
    assert "refused" in error_line(envoylog("collect"), 3)
    assert cloud_requests(cli) == ["enlighten /login/login.json", "entrez /login"]
    cli.sim.clear_faults()
    cli.sim.clear_request_log()
    # The password is right again, but the next collect waits out the back-off: quietly under cron, and
    # with -v it says how to skip it.
    quiet_failure(envoylog("collect"), 3)
    assert "auth login" in envoylog("-v", "collect").stderr.splitlines()[-1]
    assert cloud_requests(cli) == []

    login = envoylog("auth", "login")
    assert login.exit_code == 0, login.stderr
    assert f"stored an owner token for gateway {cli.sim.serial}" in login.stdout
    assert cloud_requests(cli) == ["enlighten /login/login.json", "entrez /tokens"]
    assert stored_secret(cli, "token") not in login.stdout
    (gateway,) = json_output(envoylog("auth", "status", "--format", "json"))["gateways"]
    assert gateway["token"]["source"] == "cloud"
    fixed = envoylog("collect")  # the problem the first run said is over: one line says so
    assert (fixed.exit_code, fixed.stderr) == (0, "")
    assert fixed.stdout == (
        "gateway default: a new token is stored, less than a minute after the first failed cloud attempt\n"
    )
    assert_ok_and_silent(envoylog("collect"))


def test_during_the_back_off_every_message_keeps_the_cause_and_no_secret(
    cli: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert_ok_and_silent(envoylog("collect"))
    secrets = [stored_secret(cli, "token"), stored_secret(cli, "session"), cli.sim.password]
    wrong_password = "hunter2-Wrong-Pa55word"
    secrets.append(wrong_password)
    monkeypatch.setenv("ENVOYLOG_PASSWORD", wrong_password)
    cli.sim.revoke_tokens()  # the gateway refuses the stored token: only a new one from the cloud helps
    cause = (
        "no token from the Enphase cloud: Enlighten login and Entrez web login both refused the username or "
        f"password of {cli.sim.username}: check ENVOYLOG_USERNAME and ENVOYLOG_PASSWORD (or username and "
        f"password in the config file), or {WAY_OUT}"
    )
    next_attempt = re.compile(
        r"; next attempt after \d{4}-\d\d-\d\d \d\d:\d\d UTC \(`envoylog auth login` tries now\)$"
    )

    first = envoylog("collect")
    assert error_line(first, 3).startswith(f"{cause}; next attempt after ")
    assert next_attempt.search(error_line(first, 3))
    cli.sim.clear_request_log()
    later = [envoylog("collect"), envoylog("-v", "collect")]
    assert cloud_requests(cli) == []  # the back-off holds...
    quiet_failure(later[0], 3)  # ...quietly under cron (the first run said it)...
    for result in later[1:]:  # ...and with -v still says why
        said = result.stderr.splitlines()[-1].removeprefix(ERROR_PREFIX)
        assert said.startswith(
            f"the gateway refused the token; the last Enphase cloud login failed: {cause}; "
        )
        assert next_attempt.search(said)
    assert cli.query("SELECT cloud_error FROM auth WHERE kind = 'token'") == [(cause,)]

    table = envoylog("auth", "status")
    (cloud_line,) = [line for line in table.stdout.splitlines() if line.startswith("  cloud:")]
    assert cloud_line.startswith(f"  cloud:   login failed 1x: {cause}; next attempt after ")
    as_json = envoylog("auth", "status", "--format", "json")
    (gateway,) = json_output(as_json)["gateways"]
    assert gateway["token"]["cloud_error"] == cause and gateway["token"]["cloud_failures"] == 1
    assert is_utc_iso(gateway["token"]["cloud_retry_at"])
    status = envoylog("status")
    assert cause in status_lines(status)["last error"]
    for result in (first, *later, table, as_json, status):
        for secret in secrets:
            assert secret not in result.stdout + result.stderr

    monkeypatch.setenv("ENVOYLOG_PASSWORD", cli.sim.password)
    assert envoylog("auth", "login").exit_code == 0
    (gateway,) = json_output(envoylog("auth", "status", "--format", "json"))["gateways"]
    assert (gateway["token"]["cloud_error"], gateway["token"]["cloud_failures"]) == (None, 0)
    assert "cloud:" not in envoylog("auth", "status").stdout


def test_auth_logout_forgets_the_token_and_the_session(cli: Site) -> None:
    assert_ok_and_silent(envoylog("collect"))
    result = envoylog("auth", "logout")
    assert result.exit_code == 0 and "deleted 2" in result.stdout
    (gateway,) = json_output(envoylog("auth", "status", "--format", "json"))["gateways"]
    assert gateway["token"]["present"] is False and gateway["session"]["present"] is False
    assert cli.query("SELECT COUNT(*) FROM auth WHERE secret IS NOT NULL") == [(0,)]
    cli.sim.clear_request_log()
    assert_ok_and_silent(envoylog("collect"))  # logs in again with the credentials
    assert len(cloud_requests(cli)) == 2


# --- exit codes ---------------------------------------------------------------------------------------


def test_bad_host_is_exit_2(cli: Site, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENVOYLOG_HOST", "envoy local")
    assert "bad gateway host 'envoy local'" in error_line(envoylog("collect"), 2)


def test_gateway_down_is_exit_4_and_status_tells(cli: Site, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENVOYLOG_HOST", DEAD_HOST)
    message = error_line(envoylog("collect"), 4)
    assert DEAD_HOST in message and "connection refused" in message
    assert cli.query("SELECT gateway_name, outcome FROM runs") == [("default", "failed")]
    # A gateway that was never reached still shows up, with what went wrong.
    status = envoylog("status")
    assert "(never reached)" in status.stdout
    (line,) = [line for line in status.stdout.splitlines() if "last error:" in line]
    assert DEAD_HOST in line

    verbose = envoylog("-v", "collect")
    assert verbose.exit_code == 4
    assert "Traceback" in verbose.stderr  # -v adds the traceback...
    assert verbose.stderr.splitlines()[-1].startswith(ERROR_PREFIX)  # ...before the same one line


def test_gateway_down_after_success_is_shown_against_that_gateway(
    cli: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert_ok_and_silent(envoylog("collect"))
    monkeypatch.setenv("ENVOYLOG_HOST", DEAD_HOST)
    quiet_failure(envoylog("collect"), 4)
    (gateway,) = json_output(envoylog("status", "--format", "json"))["gateways"]
    assert gateway["serial"] == cli.sim.serial
    assert gateway["last_run"]["outcome"] == "failed"
    assert DEAD_HOST in gateway["last_error"]["message"]
    assert gateway["last_success_at"] is not None


def test_a_hanging_gateway_is_exit_4_within_the_deadline(cli: Site) -> None:
    assert_ok_and_silent(envoylog("collect"))
    before = cli.rows()
    cli.sim.set_endpoint_fault("/info", EndpointFault(hang_seconds=5))
    started = time.monotonic()
    # -v: the gateway was read a moment ago, so without it the failure is quiet (the run log keeps it).
    failed = envoylog("-v", "collect", "--deadline", "1.5")
    assert time.monotonic() - started < 4
    assert failed.exit_code == 4
    assert "did not answer within" in failed.stderr.splitlines()[-1]
    assert cli.rows() == before  # nothing lost, nothing half-stored
    cli.sim.clear_faults()
    assert_ok_and_silent(envoylog("collect"))  # and the next run recovers by itself


def test_serial_mismatch_is_exit_2_and_stores_nothing(cli: Site, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENVOYLOG_SERIAL", "000000000000")
    message = error_line(envoylog("collect"), 2)
    assert "000000000000" in message and cli.sim.serial in message
    assert cli.rows() == {"meter_readings": 0, "inverter_readings": 0, "battery_readings": 0}
    assert cloud_requests(cli) == []  # no token is asked for a gateway that is not the configured one


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_database_error_is_exit_5(
    sim: Simulator, isolated_env: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, backend: str
) -> None:
    if backend == "sqlite":
        regular_file = tmp_path / "not-a-directory"
        regular_file.write_text("")
        url = f"sqlite:///{regular_file / 'envoylog.db'}"
    else:
        url = "postgresql+psycopg://envoylog@127.0.0.1:9/envoylog"  # no server listens there
    point_at(monkeypatch, sim, url)
    message = error_line(envoylog("collect"), 5)
    assert ("not-a-directory" in message) if backend == "sqlite" else ("127.0.0.1" in message)
    assert sim.request_log() == []  # the gateway is not bothered when nothing could be stored


def test_another_collect_holding_the_lock_is_exit_6(cli: Site) -> None:
    engine = open_database(cli.db_url, create=True)
    try:
        assert claims.claim(engine, "default", "other-host pid 7 0000", lease_s=60) is None
        message = error_line(envoylog("collect"), 6)
        claims.release(engine, "default", "other-host pid 7 0000")
    finally:
        engine.dispose()
    assert "another envoylog collect is running for gateway default (other-host pid 7" in message
    assert cli.sim.request_log() == []
    assert count(cli, "runs") == 0
    assert_ok_and_silent(envoylog("collect"))  # once the other run is done, the next one goes ahead


# --- several gateways ---------------------------------------------------------------------------------


def test_config_file_with_a_live_and_a_dead_gateway(
    site: Site, isolated_env: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    sim = site.sim
    config = tmp_path / "config.toml"
    config.write_text(
        "\n".join(
            [
                f"db = {json.dumps(site.db_url)}",
                f"username = {json.dumps(sim.username)}",
                f"password = {json.dumps(sim.password)}",
                f"enlighten_url = {json.dumps(sim.enlighten_url)}",
                f"entrez_url = {json.dumps(sim.entrez_url)}",
                "",
                "[gateways.house]",
                f"host = {json.dumps(sim.gateway_url)}",
                f"serial = {json.dumps(sim.serial)}",
                "",
                "[gateways.shed]",
                f'host = "{DEAD_HOST}"',
                "",
            ]
        )
    )
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(sim.ca_file))
    message = error_line(envoylog("--config", str(config), "collect"), 4)
    assert message.startswith("gateway shed: ") and DEAD_HOST in message
    assert "house" not in message
    assert site.query("SELECT name, serial FROM gateways") == [("house", sim.serial)]
    assert site.rows()["inverter_readings"] == 30
    runs = site.query("SELECT gateway_name, outcome FROM runs ORDER BY gateway_name")
    assert runs == [("house", "ok"), ("shed", "failed")]


# --- the legacy firmware ------------------------------------------------------------------------------


def test_legacy_gateway_is_collected_without_a_token(start_site: Callable[[str], Site]) -> None:
    site = start_site("legacy")
    assert site.sim.gateway_url.startswith("http://")
    assert_ok_and_silent(envoylog("collect"))
    assert site.rows()["inverter_readings"] == site.sim.profile.inverter_count
    assert cloud_requests(site) == []
    assert count(site, "auth") == 0
    # The inverters' endpoint wanted HTTP Digest auth: a challenge, then the answer.
    statuses = [e.status for e in site.sim.request_log() if e.path == "/api/v1/production/inverters"]
    assert statuses == [401, 200]
    (gateway,) = json_output(envoylog("latest", "--format", "json"))["gateways"]
    assert gateway["firmware"] == "5.0.62"
    assert gateway["production"]["source"] == "api_v1"


# --- as cron runs it ----------------------------------------------------------------------------------


def cron_environment(sim: Simulator, db_url: str, home: Path) -> dict[str, str]:
    """What cron gives a job: a bare PATH and HOME, plus the variables from the crontab.

    And PYTHONPATH, when the tests were given one: the code under test is then not the installed one.
    """
    tested = {"PYTHONPATH": os.environ["PYTHONPATH"]} if "PYTHONPATH" in os.environ else {}
    return {
        "PATH": "/usr/bin:/bin",
        "HOME": str(home),
        "LANG": "C.UTF-8",
        **tested,
        **sim.environment(),
        "ENVOYLOG_DB": db_url,
    }


def test_cron_run_is_silent_and_never_imports_pandas(cli: Site, tmp_path: Path) -> None:
    home = tmp_path / "cron-home"
    home.mkdir()
    env = cron_environment(cli.sim, cli.db_url, home)
    done = subprocess.run(
        [*envoylog_command(), "collect"], env=env, cwd=home, capture_output=True, text=True, timeout=60
    )
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")
    assert cli.rows()["inverter_readings"] == 30
    if make_url(cli.db_url).get_backend_name() == "sqlite":
        database = Path(make_url(cli.db_url).database or "")
        assert stat.S_IMODE(database.stat().st_mode) == 0o600  # readable by its owner only

    # The same run again under -X importtime: still silent but for the import report, and no pandas or numpy.
    timed = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "envoylog", "collect"],
        env=env,
        cwd=home,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert timed.returncode == 0 and timed.stdout == ""
    lines = timed.stderr.splitlines()
    assert all(line.startswith("import time:") for line in lines), timed.stderr[-2000:]
    imported = {line.rsplit("|", 1)[-1].strip().split(".")[0] for line in lines}
    assert "sqlalchemy" in imported and "requests" in imported
    assert not imported & {"pandas", "numpy", "matplotlib"}


def test_collect_every_keeps_polling_and_stops_cleanly_on_sigterm(cli: Site, tmp_path: Path) -> None:
    env = cron_environment(cli.sim, cli.db_url, tmp_path)
    process = start_every(env, tmp_path)
    try:
        deadline = time.monotonic() + 30
        runs = 0
        while time.monotonic() < deadline and process.poll() is None:
            runs = _finished_runs(cli)
            if runs >= 2:
                break
            time.sleep(0.2)
        assert runs >= 2, process.poll()
        process.send_signal(signal.SIGTERM)
        stopping = time.monotonic()
        out, err = process.communicate(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert time.monotonic() - stopping < 5
    assert (process.returncode, out, err) == (0, "", "")
    assert cli.query("SELECT DISTINCT outcome FROM runs") == [("ok",)]  # no run left "running"


def test_collect_every_keeps_its_connections_and_the_gateway_session_across_cycles(
    cli: Site, tmp_path: Path
) -> None:
    assert_ok_and_silent(envoylog("collect"))  # the first run: a token from the cloud, a gateway session
    cli.sim.clear_request_log()
    connections = cli.sim.gateway_connections()
    url = make_url(cli.db_url)
    if url.get_backend_name() == "postgresql":  # its connections are found by their name
        url = url.update_query_dict({"application_name": "envoylog-every-pool"})
    env = cron_environment(cli.sim, url.render_as_string(hide_password=False), tmp_path)
    process = start_every(env, tmp_path)
    try:
        database_sessions = [
            _database_sessions(cli, url.get_backend_name()) for _ in _cycles(cli, process, 3)
        ]
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert (process.returncode, out, err) == (0, "", "")
    cycles = _finished_runs(cli) - 1
    log = cli.sim.request_log()
    assert sum(entry.path == "/info" for entry in log) == cycles >= 3
    assert [entry.path for entry in log if entry.path.startswith("/auth/")] == []  # no new session
    assert {entry.service for entry in log} == {"gateway"}  # and no cloud login
    assert cli.sim.gateway_connections() - connections == 1  # one TLS handshake for every cycle
    assert len(set(database_sessions)) == 1  # one database connection, opened once


def start_every(env: dict[str, str], folder: Path) -> subprocess.Popen[str]:
    """`envoylog collect --every 1` as a process of its own, as a service manager starts it."""
    return subprocess.Popen(
        [sys.executable, "-m", "envoylog", "collect", "--every", "1"],
        env=env,
        cwd=folder,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _cycles(site: Site, process: subprocess.Popen[str], count: int) -> Iterator[int]:
    """Yield after each of `count` cycles of a `collect --every` process (besides the runs before it)."""
    before = _finished_runs(site)
    seen = 0
    deadline = time.monotonic() + 30
    while seen < count:
        assert time.monotonic() < deadline and process.poll() is None, process.poll()
        finished = _finished_runs(site) - before
        if finished > seen:
            seen = finished
            yield seen
        time.sleep(0.1)


def _database_sessions(site: Site, backend: str) -> tuple[Any, ...]:
    """The PostgreSQL connections of the collector (pids and when each began); nothing to tell on SQLite."""
    if backend != "postgresql":
        return ()
    rows = site.query(
        "SELECT pid, backend_start FROM pg_stat_activity WHERE application_name = 'envoylog-every-pool'"
    )
    return tuple(sorted((row[0], row[1]) for row in rows))


def _finished_runs(site: Site) -> int:
    try:
        return int(site.query("SELECT COUNT(*) FROM runs WHERE finished_at IS NOT NULL")[0][0])
    except SQLAlchemyError:  # the schema is not there yet: the process is still starting
        return 0


def test_a_lasting_endpoint_failure_is_one_warning_under_cron_and_its_end_one_line(cli: Site) -> None:
    assert_ok_and_silent(envoylog("collect"))
    cli.sim.set_endpoint_fault("/ivp/meters/readings", EndpointFault(status=500))
    assert_ok_and_silent(envoylog("collect"))  # partial, and new: the run log knows, no mail
    with cli.transaction() as conn:  # as if it had failed for the last 70 minutes
        since = conn.execute(select(PROBLEMS.c.since)).scalar_one()
        conn.execute(update(PROBLEMS).values(since=since - timedelta(minutes=70)))
    crossing = envoylog("collect")
    assert crossing.exit_code == 0 and crossing.stdout == ""  # the rest was stored
    assert crossing.stderr == (
        "envoylog: warning: gateway default: /ivp/meters/readings has failed for 70 min while the others "
        "answer: HTTP 500\n"
    )
    assert_ok_and_silent(envoylog("collect"))  # said once
    cli.sim.clear_faults()
    healed = envoylog("collect")
    assert (healed.exit_code, healed.stderr) == (0, "")
    assert healed.stdout.startswith("gateway default: /ivp/meters/readings answers again after 70 min")
