"""`envoylog status` on a fleet: a line per gateway, problem ones first, a summary line, the same in JSON; and
one gateway's details as before. On SQLite and PostgreSQL.

The fleet's history is written through the collector's own storage functions (the run log, tokens, events,
readings), relative to the real clock: the command tells ages against it.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from conftest import DATABASES, empty_database, envoylog_command, user_environment
from sqlalchemy import event
from sqlalchemy.engine import Connection
from typer.testing import CliRunner, Result

from envoylog.cli import app
from envoylog.db import credentials, gateways, runs, samples
from envoylog.db.migrate import open_database
from envoylog.readings.model import GatewayInfo, MeterReading, Snapshot
from envoylog.reports.status import status_document

runner = CliRunner()

HISTORY_MINUTES = 40  # a run a minute before now, for the gateways that are collected
UNREACHABLE = "cannot reach http://barn.local: unknown host name"
REFUSED = "cannot reach https://10.0.0.22: connection refused"
BAD_LOGIN = "Enlighten refused the username or password of owner@example.com"
BUSY = "/ivp/meters/readings: HTTP 503"
DISCOVERED = "firmware 8.2.4345; CTs: production (enabled), net-consumption (enabled)"

# The lines a user sees, in the order they come: worst first, the longest without a successful read first.
EXPECTED = [
    ("barn", "never collected"),  # configured, never reached: every run failed before /info
    ("garage", "never collected"),  # a token stored with `auth set-token`, never collected
    ("shed", "never collected"),  # reached, but every run failed
    ("site-21", "failing"),  # for 30 minutes
    ("site-23", "failing"),  # for 12 minutes
    ("site-22", "failing"),  # for 5 minutes
    ("site-25", "stale"),  # no run for 3.3 hours, one left "running" by a process that died
    ("site-24", "stale"),  # no run for 2.5 hours
    ("site-18", "partial"),
    ("site-19", "partial"),
    ("site-20", "partial"),
    ("site-27", "token expiring"),  # 10 days left, its renewal fails
    ("site-26", "token expiring"),  # a pasted token, 20 days left
    *((f"site-{n:02d}", "ok") for n in range(1, 18)),
]


@dataclass(frozen=True)
class Fleet:
    """A database holding the fleet's history, and when that history ends."""

    db_url: str
    now: datetime  # the minute the history was written up to
    serials: dict[str, str]  # by name, for the stored gateways


def serial_of(n: int) -> str:
    return f"1222380800{n:02d}"


class History:
    """Writes a gateway's history as the collector would: its row, runs, token, events, a reading or more."""

    def __init__(self, conn: Connection, now: datetime) -> None:
        self.conn = conn
        self.now = now
        self.serials: dict[str, str] = {}

    def gateway(self, name: str, serial: str, firmware: str = "8.2.4345") -> int:
        info = GatewayInfo(serial, firmware, "800-00654-r08", True, True)
        record = gateways.save_gateway(self.conn, info, name, self.now - timedelta(days=30))
        gateways.record_event(self.conn, record.id, "discovered", DISCOVERED, self.now - timedelta(days=30))
        self.serials[name] = serial
        return record.id

    def runs(
        self,
        name: str,
        gateway_id: int | None,
        minutes_ago: range,
        outcome: runs.RunOutcome = "ok",
        error: str | None = None,
    ) -> None:
        """A run starting each of these minutes before now, ending two seconds later."""
        for minutes in sorted(minutes_ago, reverse=True):
            started = self.now - timedelta(minutes=minutes)
            run_id = runs.start_run(self.conn, name, started)
            runs.finish_run(
                self.conn,
                run_id,
                gateway_id=gateway_id,
                now=started + timedelta(seconds=2),
                outcome=outcome,
                requests=3 if gateway_id else 1,
                cloud_requests=0,
                rows_added=1 if outcome != "failed" else 0,
                error=error,
            )

    def running(self, name: str, minutes_ago: int) -> None:
        """A run that started then and has not ended (under way, or its process died)."""
        runs.start_run(self.conn, name, self.now - timedelta(minutes=minutes_ago))

    def token(self, gateway_id: int, days_left: float, source: str = "cloud") -> datetime:
        expires_at = self.now + timedelta(days=days_left)
        credentials.save_token(
            self.conn,
            gateway_id,
            secret="eyJhbGciOiJFUzI1NiJ9.eyJlbnBoYXNlVXNlciI6Im93bmVyIn0.c2lnbmF0dXJl",
            source=source,
            enphase_user="owner",
            issued_at=expires_at - timedelta(days=365),
            expires_at=expires_at,
            now=self.now - timedelta(days=30),
        )
        return expires_at

    def reading(self, gateway_id: int, minutes_ago: int, watts: float) -> None:
        at = self.now - timedelta(minutes=minutes_ago)
        meter = MeterReading("production", 0, "eim", at, watts, 1_000_000.0 + watts)
        samples.save_snapshot(self.conn, gateway_id, Snapshot(meters=[meter]))


def write_fleet(db_url: str, now: datetime) -> Fleet:
    """30 gateways in every state `status` knows."""
    engine = open_database(db_url, create=True)
    try:
        with engine.begin() as conn:
            history = History(conn, now)
            collected = range(1, HISTORY_MINUTES + 1)
            for n in range(1, 28):
                name = f"site-{n:02d}"
                gateway_id = history.gateway(name, serial_of(n))
                history.reading(gateway_id, HISTORY_MINUTES, 1000.0 + n)
                if n == 26:
                    history.token(gateway_id, days_left=20.125, source="manual")
                else:
                    history.token(gateway_id, days_left=300.125)
                if n == 27:
                    history.token(gateway_id, days_left=10.125)
                    credentials.record_cloud_failure(conn, gateway_id, now - timedelta(minutes=30), BAD_LOGIN)
                if n <= 17 or n >= 26:
                    if n == 2:  # a blip half an hour ago: ok again since
                        history.runs(name, gateway_id, range(31, HISTORY_MINUTES + 1))
                        history.runs(name, None, range(30, 31), "failed", REFUSED)
                        history.runs(name, gateway_id, range(1, 30))
                    else:
                        history.runs(name, gateway_id, collected)
                    if n in (3, 4, 5):
                        history.running(name, 0)  # this minute's run, under way
                elif n <= 20:
                    history.runs(name, gateway_id, range(2, HISTORY_MINUTES + 1))
                    history.runs(name, gateway_id, range(1, 2), "partial", BUSY)
                elif n <= 23:
                    failing_for = {21: 30, 22: 5, 23: 12}[n]
                    history.runs(name, gateway_id, range(failing_for + 1, HISTORY_MINUTES + 1))
                    history.runs(name, gateway_id, range(1, failing_for + 1), "failed", REFUSED)
                elif n == 24:
                    history.runs(name, gateway_id, range(150, 190))
                else:
                    history.runs(name, gateway_id, range(200, 240))
                    history.running(name, 170)
            site_01 = gateways.configured_gateway(conn, name="site-01")
            assert site_01 is not None
            gateways.record_firmware_change(conn, site_01.id, "8.2.4345", "8.3.5433", now - timedelta(days=2))
            gateways.save_gateway(
                conn, GatewayInfo(serial_of(1), "8.3.5433", "800-00654-r08", True, True), "site-01", now
            )
            for minutes in (20, 10):
                history.reading(site_01.id, minutes, 2000.0 + minutes)
            # Never collected: a host nobody answers at, a token without a run, a gateway refusing every run.
            history.runs("barn", None, collected, "failed", UNREACHABLE)
            garage = gateways.ensure_gateway(conn, serial_of(90), "garage", now - timedelta(hours=1))
            history.token(garage, days_left=300.125, source="manual")
            history.serials["garage"] = serial_of(90)
            shed = history.gateway("shed", serial_of(91))
            history.runs("shed", shed, collected, "failed", f"gateway {serial_of(91)} refuses the token")
        return Fleet(db_url, now, history.serials)
    finally:
        engine.dispose()


@pytest.fixture(scope="module", params=DATABASES)
def fleet(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    """The fleet on SQLite and on PostgreSQL, written once per module."""
    with empty_database(request.param, tmp_path_factory.mktemp("fleet")) as db_url:
        yield write_fleet(db_url, datetime.now(UTC).replace(microsecond=0))


def envoylog(*args: str) -> Result:
    return runner.invoke(app, list(args))


def fleet_lines(result: Result) -> tuple[list[list[str]], str]:
    """The gateway lines of the fleet view split into columns (two spaces or more apart), and the summary."""
    assert result.exit_code == 0, result.stderr
    header, *lines, summary = result.stdout.splitlines()
    assert re.split(r"\s{2,}", header) == ["GATEWAY", "SERIAL", "STATE", "LAST SUCCESS", "PROBLEM"]
    return [re.split(r"\s{2,}", line.rstrip()) for line in lines], summary


def test_a_fleet_is_a_line_per_gateway_problem_ones_first_then_a_summary(fleet: Fleet) -> None:
    lines, summary = fleet_lines(envoylog("--db", fleet.db_url, "status"))
    assert [(line[0], line[2]) for line in lines] == EXPECTED
    by_name = {line[0]: line for line in lines}
    assert by_name["barn"][1:] == ["-", "never collected", "never", UNREACHABLE]
    assert by_name["garage"][1:] == [serial_of(90), "never collected", "never", "no run yet"]
    assert by_name["shed"][4] == f"gateway {serial_of(91)} refuses the token"
    assert by_name["site-21"][1:3] + by_name["site-21"][4:] == [serial_of(21), "failing", REFUSED]
    assert minutes_ago(by_name["site-21"][3]) == pytest.approx(31, abs=1.5)
    assert minutes_ago(by_name["site-22"][3]) == pytest.approx(6, abs=1.5)
    assert minutes_ago(by_name["site-24"][3]) == pytest.approx(150, abs=6)
    assert re.fullmatch(r"no run for 2\.[56] h", by_name["site-24"][4])
    assert minutes_ago(by_name["site-25"][3]) == pytest.approx(200, abs=6)
    assert re.fullmatch(
        r"no successful read for 3\.[34] h; a run started 2\.[89] h ago has not ended", by_name["site-25"][4]
    )
    assert by_name["site-18"][4] == BUSY
    assert by_name["site-26"][4] == "token expires in 20.1 days; not renewed (no Enphase login to renew it)"
    assert by_name["site-27"][4].startswith(
        f"token expires in 10.1 days; renewing it failed: {BAD_LOGIN}"[:79]
    )
    assert by_name["site-27"][4].endswith("…") and len(by_name["site-27"][4]) == 80  # the rest: --gateway
    for name in ("site-01", "site-02", "site-03", "site-17"):  # a blip long past, a run under way: still ok
        assert by_name[name][1:3] == [fleet.serials[name], "ok"] and len(by_name[name]) == 4
        assert minutes_ago(by_name[name][3]) == pytest.approx(1, abs=1.5)
    assert re.fullmatch(
        r"30 gateways: 17 ok, 2 token expiring, 3 partial, 2 stale, 3 failing, 3 never collected; "
        r"last success (\S+) \(\d+ (s|min) ago\); database [\d.]+ MB",
        summary,
    ), summary
    newest = fleet.now - timedelta(minutes=1) + timedelta(seconds=2)
    assert f"last success {iso(newest)} " in summary


def minutes_ago(text: str) -> float:
    """An age as the fleet view shows it ("58 s ago", "31 min ago", "2.0 h ago"), in minutes."""
    number, unit, ago = text.split()
    assert ago == "ago"
    return float(number) * {"s": 1 / 60, "min": 1.0, "h": 60.0, "days": 1440.0}[unit]


def iso(at: datetime) -> str:
    return at.isoformat().replace("+00:00", "Z")


def test_the_json_has_the_same_order_the_summary_counts_and_every_field_of_before(fleet: Fleet) -> None:
    result = envoylog("--db", fleet.db_url, "status", "--format", "json")
    assert result.exit_code == 0, result.stderr
    document = json.loads(result.stdout)
    words = {"never_collected": "never collected", "token_expiring": "token expiring"}
    assert [(g["name"], words.get(g["state"], g["state"])) for g in document["gateways"]] == EXPECTED
    assert document["summary"] == {
        "gateways": 30,
        "states": {
            "ok": 17,
            "token_expiring": 2,
            "partial": 3,
            "stale": 2,
            "failing": 3,
            "never_collected": 3,
        },
        "last_success_at": iso(fleet.now - timedelta(minutes=1) + timedelta(seconds=2)),
    }
    assert document["database_bytes"] > 0
    before = {
        "serial",
        "name",
        "firmware",
        "last_firmware_change",
        "last_run",
        "last_success_at",
        "last_error",
        "token_expires_at",
        "token_days_left",
        "rows",
        "last_event",
    }
    for gateway in document["gateways"]:
        assert set(gateway) == before | {"state", "problem", "cloud", "open_breakers"}
        assert gateway["open_breakers"] == []
        assert (gateway["problem"] is None) == (gateway["state"] == "ok")
    by_name = {g["name"]: g for g in document["gateways"]}
    assert by_name["site-27"]["problem"] == f"token expires in 10.1 days; renewing it failed: {BAD_LOGIN}"
    assert by_name["site-01"]["rows"] == {"meter": 3, "inverter": 0, "battery": 0}
    assert by_name["barn"]["rows"] == {"meter": 0, "inverter": 0, "battery": 0}
    assert by_name["barn"]["serial"] is None
    # A blip long past is still the last error; a run under way is the last run, and not a problem.
    assert by_name["site-02"]["last_error"]["message"] == REFUSED
    assert by_name["site-02"]["last_error"]["at"] == iso(fleet.now - timedelta(minutes=30))
    assert by_name["site-03"]["last_run"] == {
        "at": iso(fleet.now),
        "finished_at": None,
        "outcome": "running",
        "requests": 0,
    }
    assert by_name["site-03"]["last_success_at"] == iso(
        fleet.now - timedelta(minutes=1) + timedelta(seconds=2)
    )
    assert by_name["site-25"]["last_run"]["outcome"] == "running"
    assert by_name["site-21"]["last_error"]["message"] == REFUSED


def test_one_gateway_chosen_by_name_or_serial_is_shown_in_detail_as_before(fleet: Fleet) -> None:
    by_name = envoylog("--db", fleet.db_url, "status", "--gateway", "site-01")
    by_serial = envoylog("--db", fleet.db_url, "status", "--gateway", serial_of(1))
    assert by_name.exit_code == 0, by_name.stderr
    success = iso(fleet.now - timedelta(minutes=1) + timedelta(seconds=2))
    expires = iso(fleet.now + timedelta(days=300.125))
    *block, size = by_name.stdout.splitlines()
    assert block == [
        f"gateway {serial_of(1)} (site-01)",
        "  firmware:        8.3.5433",
        f"  firmware update: {iso(fleet.now - timedelta(days=2))} 8.2.4345 -> 8.3.5433",
        f"  last success:    {success}",
        f"  last run:        {success} ok",
        "  last error:      none",
        f"  token expires:   {expires} (300.1 days left)",
        "  rows stored:     3 meter, 0 inverter, 0 battery",
        f"  last event:      {iso(fleet.now - timedelta(days=2))} firmware_changed: 8.2.4345 -> 8.3.5433",
    ]
    assert re.fullmatch(r"database size: [\d.]+ MB", size)
    assert by_serial.stdout == by_name.stdout

    (gateway,) = json.loads(
        envoylog("--db", fleet.db_url, "status", "--gateway", "site-21", "--format", "json").stdout
    )["gateways"]
    assert (gateway["state"], gateway["problem"]) == ("failing", REFUSED)
    never = envoylog("--db", fleet.db_url, "status", "--gateway", "barn")
    assert never.stdout.splitlines()[:5] == [
        "gateway (never reached) (barn)",
        "  firmware:        unknown",
        "  last success:    never",
        f"  last run:        {iso(fleet.now - timedelta(minutes=1) + timedelta(seconds=2))} failed",
        f"  last error:      {iso(fleet.now - timedelta(minutes=1) + timedelta(seconds=2))} {UNREACHABLE}",
    ]


def test_a_gateway_the_database_does_not_know_is_exit_2(fleet: Fleet) -> None:
    result = envoylog("--db", fleet.db_url, "status", "--gateway", "attic")
    assert result.exit_code == 2
    assert result.stderr == (
        "envoylog: error: no gateway 'attic' in the database: give its serial or its configured name\n"
    )


def test_the_quiet_window_of_the_config_is_how_long_a_gateway_may_go_unread(
    fleet: Fleet, tmp_path: Path
) -> None:
    config = tmp_path / "config.toml"
    config.write_text(f'db = "{fleet.db_url}"\n\n[collect]\nquiet_minutes = 240\n')
    lines, summary = fleet_lines(envoylog("--config", str(config), "status"))
    states = {line[0]: line[2] for line in lines}
    assert (states["site-24"], states["site-25"]) == ("ok", "ok")  # 2.5 and 3.3 hours are within 4
    assert summary.startswith(
        "30 gateways: 19 ok, 2 token expiring, 3 partial, 3 failing, 3 never collected;"
    )


def test_the_queries_do_not_grow_with_the_fleet(fleet: Fleet) -> None:
    engine = open_database(fleet.db_url, create=False)
    queries: list[str] = []

    def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.lstrip().upper().startswith("SELECT"):
            queries.append(statement)

    event.listen(engine, "before_cursor_execute", count)
    try:
        document = status_document(engine, datetime.now(UTC), count_rows=False)
    finally:
        engine.dispose()
    assert len(document["gateways"]) == 30
    # The gateways, their runs (by gateway, and by name for the runs that never learned theirs), the tokens,
    # the events, the open endpoint breakers, and on PostgreSQL the database's size: not a query more for a
    # gateway more.
    assert len(queries) <= 7, queries


def test_the_installed_command_shows_the_fleet(fleet: Fleet, tmp_path: Path) -> None:
    done = subprocess.run(
        [*envoylog_command(), "status"],
        env=user_environment(tmp_path, ENVOYLOG_DB=fleet.db_url),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (done.returncode, done.stderr) == (0, "")
    lines = done.stdout.splitlines()
    assert len(lines) == 1 + 30 + 1
    assert [re.split(r"\s{2,}", line)[0] for line in lines[1:4]] == ["barn", "garage", "shed"]
    assert lines[-1].startswith("30 gateways: 17 ok, ")


def test_a_database_of_one_gateway_shows_it_in_detail(db_url: str) -> None:
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    engine = open_database(db_url, create=True)
    try:
        with engine.begin() as conn:
            history = History(conn, now)
            gateway_id = history.gateway("home", serial_of(1))
            history.runs("home", gateway_id, range(1, 3))
    finally:
        engine.dispose()
    result = envoylog("--db", db_url, "status")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.splitlines()[:2] == [f"gateway {serial_of(1)} (home)", "  firmware:        8.2.4345"]
    (gateway,) = json.loads(envoylog("--db", db_url, "status", "--format", "json").stdout)["gateways"]
    assert (gateway["state"], gateway["problem"]) == ("ok", None)


def test_an_empty_database_says_so(db_url: str) -> None:
    assert envoylog("--db", db_url, "db", "upgrade").exit_code == 0
    result = envoylog("--db", db_url, "status")
    assert result.stdout.splitlines()[0] == "no gateway collected yet: run `envoylog collect`"
    document: dict[str, Any] = json.loads(envoylog("--db", db_url, "status", "--format", "json").stdout)
    assert document["gateways"] == []
    assert document["summary"]["gateways"] == 0 and document["summary"]["last_success_at"] is None
