"""A hanging or busy endpoint does not eat every minute: endpoint breakers, and 503 with Retry-After.

Real simulator over real HTTPS, real databases (SQLite and, when configured, PostgreSQL); run deadlines of a
few seconds stand in for the 50 s of a cron run.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from datetime import UTC, datetime, timedelta
from email.utils import formatdate
from pathlib import Path

import pytest
from conftest import Site
from sqlalchemy import create_engine

from envoylog.collect import read
from envoylog.db.breakers import load_breakers
from envoylog.readings.breakers import Breaker, Breakers, pause_after
from envoylog.readings.discovery import Discovery
from envoylog.readings.endpoints import (
    API_V1_PRODUCTION,
    DEVICE_DATA,
    ENSEMBLE_INVENTORY,
    ENSEMBLE_POWER,
    METER_READINGS,
    PRODUCTION_JSON,
    steady_paths,
)
from envoylog.readings.model import GatewayInfo
from envoylog.render.status import format_status
from envoylog.reports.status import status_document
from envoylog.simulator import EndpointFault, Latency, NightlyOutage, Simulator

DEADLINE_S = 3.0  # a cron run's 50 s, shortened: a hang costs the whole of it
FAST_S = 1.0  # a run that skips the hanging endpoint


def breakers_of(site: Site) -> dict[str, Breaker]:
    """The stored breakers of the site's one gateway."""
    engine = create_engine(site.db_url)
    try:
        with engine.connect() as conn:
            (gateway_id,) = conn.exec_driver_sql("SELECT id FROM gateways").one()
            return load_breakers(conn, gateway_id).state
    finally:
        engine.dispose()


def timed_collect(site: Site, deadline_s: float = DEADLINE_S) -> tuple[object, float, datetime]:
    started_at = site.sim.clock.now()
    started = time.monotonic()
    run = site.collect(deadline_s=deadline_s)
    return run, time.monotonic() - started, started_at


def last_error(site: Site) -> str:
    ((error,),) = site.query("SELECT error FROM runs ORDER BY id DESC LIMIT 1")
    return str(error)


def test_a_hanging_endpoint_is_skipped_probed_after_its_pause_and_closed_by_an_answer(site: Site) -> None:
    site.collect()  # discovery and the token
    site.sim.clock.advance(timedelta(minutes=1))
    site.sim.set_endpoint_fault(METER_READINGS, EndpointFault(hang_seconds=120))

    # The first run meets the hang: it costs the run's deadline, and the rest of the gateway is stored.
    run, took, started_at = timed_collect(site)
    assert took >= DEADLINE_S - 0.5
    assert run.outcome == "partial" and run.rows_added.get("production")
    assert run.reading is not None and METER_READINGS in run.reading.asked
    assert "did not answer within" in run.reading.failed[METER_READINGS]
    (breaker,) = breakers_of(site).values()
    assert breaker.timeouts == 1 and breaker.open_until is not None
    paused = breaker.open_until - started_at.replace(microsecond=0)
    assert timedelta(minutes=2) <= paused <= timedelta(minutes=2, seconds=DEADLINE_S + 1)

    # While it rests, runs skip it and finish at once; the other endpoints are read and stored.
    site.sim.clock.advance(timedelta(minutes=1))
    run, took, _ = timed_collect(site)
    assert took < FAST_S, took
    assert run.outcome == "partial" and run.error is None and run.rows_added.get("production")
    assert METER_READINGS not in site.requests() and PRODUCTION_JSON in site.requests()
    assert run.reading is not None and run.reading.skipped == {METER_READINGS: breaker.open_until}
    assert METER_READINGS not in run.reading.asked and METER_READINGS not in run.reading.failed
    until = f"{breaker.open_until.astimezone(UTC):%H:%M}"
    assert f"{METER_READINGS}: skipped until {until} UTC after 1 timeout in a row" in last_error(site)

    # `status` shows it, in text and JSON.
    engine = create_engine(site.db_url)
    try:
        document = status_document(engine, site.sim.clock.now())
    finally:
        engine.dispose()
    (gateway,) = document["gateways"]
    assert gateway["state"] == "partial"
    assert gateway["open_breakers"] == [
        {"path": METER_READINGS, "timeouts": 1, "until": breaker.open_until.strftime("%Y-%m-%dT%H:%M:%SZ")}
    ]
    assert f"skipping:        {METER_READINGS} until" in format_status(document, now=site.sim.clock.now())

    # The pause over, the next run probes it; it hangs still: the pause doubles.
    site.sim.clock.advance(timedelta(minutes=1))
    run, took, started_at = timed_collect(site)
    assert METER_READINGS in site.requests() and took >= DEADLINE_S - 0.5
    (breaker,) = breakers_of(site).values()
    assert breaker.timeouts == 2 and breaker.open_until is not None
    assert breaker.open_until - started_at.replace(microsecond=0) >= timedelta(minutes=4)
    site.sim.clock.advance(timedelta(minutes=3))
    run, took, _ = timed_collect(site)
    assert took < FAST_S and METER_READINGS not in site.requests()
    assert "after 2 timeouts in a row" in last_error(site)

    # Any answer closes it, an HTTP error too; then the endpoint is read as before.
    site.sim.set_endpoint_fault(METER_READINGS, EndpointFault(status=500))
    site.sim.clock.advance(timedelta(minutes=1))
    run, took, _ = timed_collect(site)
    assert took < FAST_S and METER_READINGS in site.requests()
    assert run.outcome == "partial" and run.reading is not None
    assert run.reading.failed == {METER_READINGS: "HTTP 500"} and not run.reading.skipped
    assert breakers_of(site) == {}
    site.sim.clear_faults()
    site.sim.clock.advance(timedelta(minutes=1))
    run, _, _ = timed_collect(site)
    assert (run.outcome, run.error) == ("ok", None)
    assert site.requests(path=METER_READINGS) == [METER_READINGS]


def test_a_probe_waits_less_than_a_full_read_timeout_and_checks_the_gateway_still_answers(
    site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    site.collect()
    site.sim.clock.advance(timedelta(minutes=1))
    site.sim.set_endpoint_fault(METER_READINGS, EndpointFault(hang_seconds=120))
    timed_collect(site)
    assert breakers_of(site)[METER_READINGS].timeouts == 1
    # A probe's read timeout, shortened as a probe's 15 s is to a timeout's 45 s: it leaves the run time to
    # ask /info, which answers, so the endpoint hangs on its own and rests again, longer.
    monkeypatch.setattr(read, "PROBE_READ_TIMEOUT_S", 0.5)
    site.sim.clock.advance(timedelta(minutes=2))
    run, took, _ = timed_collect(site, deadline_s=5)
    assert took < 2.5, took
    assert site.requests()[-1] == "/info"
    assert breakers_of(site)[METER_READINGS].timeouts == 2
    assert run.outcome == "partial" and run.rows_added.get("production")


def test_an_unreachable_gateway_opens_no_breaker(site: Site) -> None:
    site.collect()
    site.sim.clock.advance(timedelta(minutes=1))
    site.sim.set_endpoint_fault("/info", EndpointFault(hang_seconds=120))
    run, took, _ = timed_collect(site)
    assert run.outcome == "failed" and took < DEADLINE_S + 1
    run = site.collect(site.settings(host="127.0.0.1:9"), deadline_s=DEADLINE_S)
    assert run.outcome == "failed" and "connection refused" in str(run.error)
    assert breakers_of(site) == {}


START = datetime(2026, 6, 21, 10, 0, tzinfo=UTC)  # a summer day in Amsterdam, the metered profile's zone


def outage_simulator(tmp_path: Path, latency: Latency) -> Simulator:
    """The metered profile at the pace of `latency`, its clock standing still until a test moves it."""
    return Simulator("metered", start=START, speed=0, latency=latency, state_dir=tmp_path / "sim")


def test_a_gateway_that_goes_dark_during_a_run_opens_no_breaker(db_url: str, tmp_path: Path) -> None:
    with outage_simulator(tmp_path, Latency(outage=NightlyOutage())) as sim:
        site = Site(sim, db_url)
        window = sim.outage_window(START.date())
        assert window is not None
        sim.clock.set(window.start - timedelta(minutes=5))
        assert site.collect().outcome == "ok"
        sim.clock.advance(timedelta(minutes=1))
        # production.json takes a while; while it does, the gateway goes dark: what comes after it (the
        # meters' readings, asked twice, then /info to check) finds every connection reset.
        sim.set_endpoint_fault("/production.json", EndpointFault(hang_seconds=1.5))

        def go_dark() -> None:
            while not any(entry.path == "/info" for entry in sim.request_log()):
                time.sleep(0.01)
            time.sleep(0.4)  # /info answered: the run is waiting on production.json
            sim.clock.set(window.start + timedelta(seconds=1))

        dark = threading.Thread(target=go_dark)
        sim.clear_request_log()
        dark.start()
        run = site.collect(deadline_s=6)
        dark.join()
        assert run.reading is not None and METER_READINGS in run.reading.failed
        assert PRODUCTION_JSON not in run.reading.failed  # answered before the dark
        assert site.requests()[-1] == "/info"
        assert breakers_of(site) == {}


def test_a_busy_endpoint_is_waited_for_as_asked_and_read_in_the_same_run(site: Site) -> None:
    site.collect()
    site.sim.clock.advance(timedelta(minutes=1))
    site.sim.set_endpoint_fault(METER_READINGS, EndpointFault(status=503, retry_after="1", times=1))
    run, took, _ = timed_collect(site, deadline_s=10)
    assert (run.outcome, run.error) == ("ok", None)
    assert 1.0 <= took < 3, took
    assert site.requests(path=METER_READINGS) == [METER_READINGS] * 2
    assert run.reading is not None and run.reading.answers.meter_readings is not None
    assert run.reading.asked >= {METER_READINGS, PRODUCTION_JSON} and not run.reading.failed


def test_retry_after_as_an_http_date_is_read_by_the_gateway_clock(site: Site) -> None:
    site.collect()
    site.sim.clock.advance(timedelta(minutes=1))
    # The gateway's clock is a minute ahead of the real one: the date is two seconds after its own Date.
    come_back = formatdate((site.sim.clock.now() + timedelta(seconds=2)).timestamp(), usegmt=True)
    site.sim.set_endpoint_fault(METER_READINGS, EndpointFault(status=503, retry_after=come_back, times=1))
    run, took, _ = timed_collect(site, deadline_s=10)
    assert (run.outcome, run.error) == ("ok", None)
    assert 1.0 <= took < 4, took


def test_a_retry_after_beyond_the_runs_time_is_not_waited_for(site: Site) -> None:
    site.collect()
    site.sim.clock.advance(timedelta(minutes=1))
    site.sim.set_endpoint_fault(METER_READINGS, EndpointFault(status=503, retry_after="30"))
    run, took, _ = timed_collect(site, deadline_s=5)
    assert took < FAST_S, took
    assert run.outcome == "partial" and run.rows_added.get("production")
    assert run.reading is not None
    why = "busy (503), asked to come back in 30 s, more than this run has left"
    assert run.reading.failed == {METER_READINGS: why}
    assert f"{METER_READINGS}: {why}" in last_error(site)
    assert site.requests(path=METER_READINGS) == [METER_READINGS]
    assert breakers_of(site) == {}  # busy is an answer, not a timeout


def test_a_run_waits_once_however_many_endpoints_are_busy(site: Site) -> None:
    site.collect()
    site.sim.clock.advance(timedelta(minutes=1))
    for path in ("/production.json", METER_READINGS):
        site.sim.set_endpoint_fault(path, EndpointFault(status=503, retry_after="1"))
    run, took, _ = timed_collect(site, deadline_s=10)
    assert 1.0 <= took < 2.5, took  # one wait of 1 s, not two
    assert run.outcome == "failed" and run.reading is not None
    assert run.reading.failed == {
        PRODUCTION_JSON: "busy (503) again after waiting 1 s as asked",
        METER_READINGS: "busy (503), asked to come back in 1 s; this run waited once already",
    }


def test_the_nightly_outage_fails_only_the_minutes_it_lasts_and_leaves_no_breaker(
    db_url: str, tmp_path: Path
) -> None:
    latency = dataclasses.replace(Latency.realistic().scaled(0.01), reset_rate=0.0)
    with outage_simulator(tmp_path, latency) as sim:
        site = Site(sim, db_url)
        window = sim.outage_window(START.date())
        assert window is not None
        at = window.start - timedelta(minutes=2)
        sim.clock.set(at)
        assert site.collect().outcome == "ok"
        seen: dict[str, set[str]] = {"up": set(), "dark": set(), "booting": set()}
        first_after: str | None = None
        while at < window.ready + timedelta(minutes=3):
            at += timedelta(seconds=20)
            sim.clock.set(at)
            phase = window.phase(at)
            run, took, _ = timed_collect(site, deadline_s=5)
            seen[phase].add(run.outcome)
            assert took < 2, (phase, took)  # no 30 s wait: more than the run has
            if phase == "booting":
                assert "busy (503), asked to come back in 30 s" in last_error(site)
            if phase == "up" and at > window.ready and first_after is None:
                first_after = run.outcome
                assert run.rows_added, "the first run after the outage stores readings"
            assert breakers_of(site) == {}
    assert seen["dark"] == {"failed"} and seen["booting"] == {"failed"}
    assert seen["up"] == {"ok"} and first_after == "ok"


def test_a_resting_slow_endpoint_gives_its_turn_to_the_next() -> None:
    now = START
    info = GatewayInfo("122446001637", "8.2.4345", None, metered=False, web_tokens=True)
    discovery = Discovery(firmware="8.2.4345", batteries=True)
    assert steady_paths(info, discovery, now) == [API_V1_PRODUCTION, DEVICE_DATA]
    assert steady_paths(info, discovery, now, {DEVICE_DATA}) == [API_V1_PRODUCTION, ENSEMBLE_INVENTORY]


def test_a_breaker_pauses_longer_after_each_timeout_in_a_row_and_an_answer_closes_it() -> None:
    now = START
    breakers = Breakers({DEVICE_DATA: Breaker(1, now + timedelta(minutes=2))})
    assert breakers.skip(DEVICE_DATA, now) and not breakers.probing(DEVICE_DATA, now)
    assert not breakers.skip(DEVICE_DATA, now + timedelta(minutes=2) - timedelta(seconds=5))  # cron's jitter
    assert breakers.probing(DEVICE_DATA, now + timedelta(minutes=2))
    assert [pause_after(n) for n in range(1, 8)] == [timedelta(minutes=m) for m in (2, 4, 8, 16, 30, 30, 30)]
    until = breakers.timed_out(DEVICE_DATA, now)
    assert until == now + timedelta(minutes=4) and breakers.changed == {DEVICE_DATA}
    breakers.answered(ENSEMBLE_POWER)  # never open: nothing changes
    assert breakers.changed == {DEVICE_DATA}
    breakers.answered(DEVICE_DATA)
    assert breakers.state == {} and breakers.changed == {DEVICE_DATA}
