"""Under cron every printed line is a mail: a gateway failure is said when it has become real, and once."""

from __future__ import annotations

import logging
import sqlite3
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from envoylog.collect.run import GatewayRun, RunsFailed, raise_for_runs
from envoylog.config import CollectSettings
from envoylog.db.models import PROBLEMS
from envoylog.simulator.faults import EndpointFault
from tests.conftest import Site


def later(site: Site, minutes: float) -> GatewayRun:
    site.sim.clock.advance(timedelta(minutes=minutes))
    return site.collect()


def test_an_outage_is_quiet_until_it_lasts_then_said_once_and_its_end_said(site: Site) -> None:
    assert site.collect().error is None
    site.sim.set_endpoint_fault("/info", EndpointFault(status=503))  # the nightly outage, a reboot
    transient = later(site, 1)
    assert transient.error is not None and transient.error.quiet and transient.error.status == 4
    assert later(site, 13).error.quiet  # type: ignore[union-attr]
    crossing = later(site, 2)  # 16 minutes without a successful read: now it is worth a mail
    assert crossing.error is not None and not crossing.error.quiet
    assert str(crossing.error).startswith("no successful read for 16 min: ")
    assert "/info answered HTTP 503" in str(crossing.error)
    for _ in range(3):
        assert later(site, 1).error.quiet  # type: ignore[union-attr]  # said already: not every minute
    site.sim.clear_faults()
    back = later(site, 1)
    assert back.error is None
    assert back.recovered == "gateway home: read again after 20 min without a successful read"
    assert later(site, 1).recovered is None  # said once


def test_the_quiet_window_is_configurable(site: Site) -> None:
    settings = replace(site.settings(), collect=CollectSettings(quiet_minutes=2))
    assert site.collect(settings).error is None
    site.sim.set_endpoint_fault("/info", EndpointFault(status=503))
    site.sim.clock.advance(timedelta(minutes=1))
    assert site.collect(settings).error.quiet  # type: ignore[union-attr]
    site.sim.clock.advance(timedelta(minutes=2))
    assert not site.collect(settings).error.quiet  # type: ignore[union-attr]


def test_a_gateway_never_read_says_every_failure(site: Site) -> None:
    site.sim.set_endpoint_fault("/info", EndpointFault(status=503))
    assert site.collect().error is not None
    first = later(site, 1)
    assert first.error is not None and not first.error.quiet  # being set up: somebody is watching


def test_a_quiet_failure_beside_a_said_one_is_named_with_it_and_keeps_the_worst_exit_code() -> None:
    quiet, said = GatewayRun("home"), GatewayRun("barn")
    quiet.error, said.error = RunsFailed("gone for a minute", 4), RunsFailed("wrong password", 3)
    quiet.error.quiet = True
    with pytest.raises(RunsFailed) as info:
        raise_for_runs([quiet, said])
    assert (str(info.value), info.value.status, info.value.quiet) == (
        "gateway barn: wrong password",
        4,
        False,
    )
    with pytest.raises(RunsFailed) as info:
        raise_for_runs([quiet, GatewayRun("shed")])
    assert (str(info.value), info.value.status, info.value.quiet) == (
        "gateway home: gone for a minute",
        4,
        True,
    )


def test_a_gateway_that_does_not_answer_is_timed_by_its_clock_of_the_last_answer(site: Site) -> None:
    # This machine's clock is a month off (a Raspberry Pi without its network time): the gateway's clock
    # times the runs, also the one that gets no answer at all, so the outage is a minute old, not a month.
    site.sim.clock.set(site.sim.clock.now() - timedelta(days=30))
    assert site.collect(clock=lambda: datetime.now(UTC)).clock_offset is not None
    site.sim.set_endpoint_fault("/info", EndpointFault(drops=2))
    silent = site.collect(clock=lambda: datetime.now(UTC))
    assert silent.error is not None and silent.error.quiet
    first, second = (at for (at,) in site.query("SELECT started_at FROM runs ORDER BY id"))
    gap = second - first
    assert abs(gap.total_seconds() if isinstance(gap, timedelta) else gap) < 60  # both by the gateway's clock


# --- problems of a gateway that is read: one endpoint, the token, discovery ---

METERS = "/ivp/meters/readings"


def test_one_endpoint_failing_is_said_once_after_an_hour_and_its_end_said(site: Site) -> None:
    assert site.collect().error is None
    assert METERS in site.requests()  # read on every run: its failure is seen on every run
    site.sim.set_endpoint_fault(METERS, EndpointFault(status=500))
    said = []
    for _ in range(60):  # the first failure and the 59 minutes after it
        run = later(site, 1)
        assert run.outcome == "partial" and run.error is None  # the rest is stored: exit 0
        said += run.warnings
    assert said == []  # a failing endpoint for less than an hour: the run log and `status` know, no mail
    crossing = later(site, 1)
    assert crossing.warnings == [
        f"gateway home: {METERS} has failed for 60 min while the others answer: HTTP 500"
    ]
    assert [later(site, 1).warnings for _ in range(5)] == [[]] * 5  # said once
    site.sim.clear_faults()
    healed = later(site, 1)
    assert healed.outcome == "ok"
    assert healed.cleared == [f"gateway home: {METERS} answers again after 66 min of failures"]
    assert later(site, 1).cleared == []


def test_an_endpoint_that_fails_for_a_while_and_recovers_is_never_said(site: Site) -> None:
    assert site.collect().error is None
    for _ in range(3):  # three bouts of 40 minutes: each is transient, and they do not add up
        site.sim.set_endpoint_fault(METERS, EndpointFault(status=503))
        runs = [later(site, 1) for _ in range(40)]
        site.sim.clear_faults()
        runs.append(later(site, 1))
        assert all(run.warnings == [] and run.cleared == [] for run in runs)
        assert runs[-1].outcome == "ok"


def test_the_endpoint_threshold_is_configurable(site: Site) -> None:
    settings = replace(site.settings(), collect=CollectSettings(endpoint_quiet_minutes=5))
    assert site.collect(settings).error is None
    site.sim.set_endpoint_fault(METERS, EndpointFault(malformed=True))
    site.sim.clock.advance(timedelta(minutes=1))
    assert site.collect(settings).warnings == []
    site.sim.clock.advance(timedelta(minutes=5))
    (line,) = site.collect(settings).warnings
    assert line.startswith(f"gateway home: {METERS} has failed for 5 min while the others answer: ")


def test_a_gateway_failing_as_a_whole_opens_no_endpoint_problem(site: Site) -> None:
    # The nightly outage: every endpoint fails with the gateway; its own rule (quiet_minutes) covers it.
    assert site.collect().error is None
    site.sim.set_endpoint_fault("/info", EndpointFault(status=503))
    for _ in range(5):
        later(site, 1)
    site.sim.clear_faults()
    assert later(site, 1).cleared == []
    assert site.query("SELECT kind, subject FROM problems") == []


def test_discovery_incomplete_for_a_day_is_said_once_and_its_end_said(site: Site) -> None:
    # A new gateway whose inverters' endpoint fails: readings are stored, discovery waits for it.
    site.sim.set_endpoint_fault("/api/v1/production/inverters", EndpointFault(status=500))
    first = site.collect()
    assert first.outcome == "partial" and first.warnings == []
    runs = [later(site, 60) for _ in range(23)]
    assert all(run.warnings == [] for run in runs)
    (line,) = later(site, 60).warnings
    assert line.startswith("gateway home: discovery has been incomplete for 24.0 h: ")
    assert "/api/v1/production/inverters: HTTP 500" in line
    assert later(site, 60).warnings == []
    site.sim.clear_faults()
    done = later(site, 1)
    assert done.cleared == ["gateway home: discovery complete after 25.0 h"]


def test_a_token_renewal_failing_for_a_day_is_said_once_and_its_end_said(
    site: Site, caplog: pytest.LogCaptureFixture
) -> None:
    # The owner token has 10 days left and the Enphase cloud is down: the token still works, so the readings
    # go on; the renewal is tried after each back-off (1, 2, 4, 8, 12, 12 h) and said once, after a day.
    token = site.sim.issue_token(lifetime=timedelta(days=10))
    settings = site.settings(token=token)
    site.sim.set_faults(cloud_down=True)
    runs, printed = [], []
    for _ in range(30):  # one run an hour for 30 hours
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="envoylog"):
            runs.append(site.collect(settings))
        printed.append([r.getMessage() for r in caplog.records])
        site.sim.clock.advance(timedelta(hours=1))
    assert all(run.outcome == "ok" and run.error is None for run in runs)
    assert printed == [[]] * 30  # no log warnings: a cloud that is down is not the user's to fix
    said = [(hour, line) for hour, run in enumerate(runs) for line in run.warnings]
    assert len(said) == 1 and said[0][0] == 24
    assert said[0][1].startswith("gateway home: the token could not be renewed for 24.0 h: ")
    site.sim.set_faults(cloud_down=False)
    cleared = []
    for _ in range(12):  # the next attempt comes after the 12-hour back-off
        run = site.collect(settings)
        cleared += run.cleared
        assert run.warnings == []
        site.sim.clock.advance(timedelta(hours=1))
    assert len(cleared) == 1 and cleared[0].startswith("gateway home: a new token is stored, ")


def test_a_database_locked_for_a_minute_fails_quietly_and_one_locked_for_long_says_so(site: Site) -> None:
    if not site.db_url.startswith("sqlite"):
        pytest.skip("a SQLite file held by another writer (a PostgreSQL restart: tests/test_hostile.py)")
    assert site.collect().error is None
    holder = sqlite3.connect(site.db_url.removeprefix("sqlite:///"), isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")  # a backup, a long report, `sqlite3` left open in a terminal
    try:
        brief = later_within(site, 1)
        assert brief.error is not None and brief.error.status == 5 and brief.error.quiet
        site.sim.clock.advance(timedelta(minutes=20))
        long = later_within(site, 0)
        assert long.error is not None and long.error.status == 5 and not long.error.quiet
        assert "database is locked" in str(long.error)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert later(site, 1).error is None


def later_within(site: Site, minutes: float) -> GatewayRun:
    """A run with a short deadline: a locked database keeps a run waiting until it."""
    site.sim.clock.advance(timedelta(minutes=minutes))
    return site.collect(deadline_s=3)


def test_a_revoked_token_while_the_cloud_is_down_is_said_once_when_it_lasts(site: Site) -> None:
    # The gateway refuses the stored token and the Enphase cloud answers 503: nothing the user can fix, so
    # it is the quiet rule of an unreachable gateway, not a line per cloud attempt.
    assert site.collect().error is None
    site.sim.revoke_tokens()
    site.sim.set_faults(cloud_down=True)
    runs = [later(site, 1) for _ in range(20)]
    assert all(run.error is not None and run.error.status == 3 for run in runs)
    said = [i for i, run in enumerate(runs) if not run.error.quiet]  # type: ignore[union-attr]
    assert said == [14]  # 15 min without a successful read: once
    assert str(runs[14].error).startswith("no successful read for 15 min: ")
    assert "503" in str(runs[14].error)
    site.sim.set_faults(cloud_down=False)
    site.sim.clock.advance(timedelta(hours=1))  # the next cloud attempt, after the back-off's hour
    back = site.collect()
    assert back.error is None
    assert back.recovered is not None and back.recovered.startswith("gateway home: read again after ")


def test_an_endpoint_failure_not_seen_for_long_starts_again(site: Site) -> None:
    # The endpoint timed out once, then the gateway was off for two hours: when it fails once more after
    # that, it has not been failing for two hours.
    assert site.collect().error is None
    site.sim.set_endpoint_fault(METERS, EndpointFault(status=500))
    assert later(site, 1).warnings == []
    site.sim.set_endpoint_fault("/info", EndpointFault(status=503))
    for _ in range(4):
        later(site, 30)
    site.sim.set_endpoint_fault("/info", None)
    again = later(site, 1)
    assert again.outcome == "partial" and again.warnings == []
    with site.transaction() as conn:
        since = conn.execute(select(PROBLEMS.c.since)).scalar_one()
    assert site.sim.clock.now() - since < timedelta(minutes=2)  # begun again, not two hours old
    for _ in range(59):
        assert later(site, 1).warnings == []
    assert later(site, 1).warnings != []  # an hour after it began again


def test_a_token_problem_said_does_not_make_every_gateway_outage_loud(site: Site) -> None:
    token = site.sim.issue_token(lifetime=timedelta(days=10))
    settings = site.settings(token=token)
    site.sim.set_faults(wrong_password=True)  # the renewal fails and is said: the user must act
    assert site.collect(settings).error is None
    site.sim.set_endpoint_fault("/production.json", EndpointFault(status=503))  # its nightly outage
    site.sim.set_endpoint_fault("/ivp/meters/readings", EndpointFault(status=503))
    site.sim.set_endpoint_fault("/ivp/pdm/device_data", EndpointFault(status=503))
    for _ in range(5):
        site.sim.clock.advance(timedelta(minutes=1))
        run = site.collect(settings)
        assert run.error is not None and run.error.status == 4 and run.error.quiet
