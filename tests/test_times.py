"""Times the gateway gets wrong: a reading whose own time cannot be believed is stored at the collection
time, never dropped, and `-v` says so once a run."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

import pytest
from conftest import Site
from typer.testing import CliRunner

from envoylog.cli import app
from envoylog.readings import model, parse
from envoylog.simulator import EndpointFault

NOW = datetime(2026, 6, 21, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("stamp", "believed"),
    [
        (NOW.timestamp() - 600, True),  # ten minutes old: when the report was made
        (NOW.timestamp() - 86_400 * 3, True),  # days old: an inverter that stopped reporting
        ((NOW + timedelta(minutes=59)).timestamp(), True),
        (0, False),
        (-5, False),
        ((NOW + timedelta(hours=2)).timestamp(), False),
        ("soon", False),
    ],
)
def test_an_inverter_report_is_kept_whatever_its_time(stamp: object, believed: bool) -> None:
    times = parse.TimeCheck(NOW)
    data = [{"serialNumber": "482052011234", "lastReportDate": stamp, "lastReportWatts": 210, "devType": 1}]
    (inverter,) = parse.parse_inverters(data, times)
    assert inverter.watts == 210
    if believed:
        assert inverter.reported_at == datetime.fromtimestamp(stamp, UTC)  # type: ignore[arg-type]
        assert times.replaced == {}
    else:
        assert inverter.reported_at == NOW
        assert times.replaced == {"/api/v1/production/inverters": 1}


def test_device_data_and_meter_readings_count_what_they_replace() -> None:
    times = parse.TimeCheck(NOW)
    device_data = {
        "1": {
            "sn": "482052011234",
            "devName": "pcu",
            "channels": [{"lastReading": {"endDate": 0}, "watts": {"now": 12}, "lifetime": {}}],
        },
        "deviceCount": 1,
    }
    (inverter,) = parse.parse_device_data(device_data, times).inverters
    assert inverter.reported_at == NOW
    (ct,) = parse.parse_meter_readings([{"eid": 1, "timestamp": -1, "activePower": 5.0}], times)
    assert ct.read_at == NOW
    assert times.replaced == {"/ivp/pdm/device_data": 1, "/ivp/meters/readings": 1}


def device_data_body(end_date: float, inverters: int = 3) -> str:
    """/ivp/pdm/device_data with `inverters` reports whose time is `end_date` (epoch seconds)."""
    devices = ", ".join(
        f'"{n}": {{"sn": "48205201{n:04d}", "devName": "pcu", "channels": [{{"lastReading": '
        f'{{"endDate": {end_date:.0f}}}, "watts": {{"now": {100 + n}, "max": 290}}, '
        f'"lifetime": {{"joulesProduced": {1000 + n}}}}}]}}'
        for n in range(1, inverters + 1)
    )
    return f'{{{devices}, "deviceCount": {inverters}, "deviceDataLimit": 50}}'


def stored_seconds(site: Site, sql: str) -> list[int]:
    return [at if isinstance(at, int) else int(at.timestamp()) for (at,) in site.query(sql)]


def test_inverter_reports_hours_ahead_are_stored_at_the_collection_time(
    site: Site, caplog: pytest.LogCaptureFixture
) -> None:
    ahead = site.sim.clock.now() + timedelta(hours=2)
    site.sim.set_endpoint_fault(
        "/ivp/pdm/device_data", EndpointFault(body=device_data_body(ahead.timestamp()))
    )
    with caplog.at_level(logging.INFO, logger="envoylog"):
        run = site.collect()
    collected_at = site.sim.clock.now().timestamp()
    assert run.rows_added["inverter"] == 3, run.summary()
    for at in stored_seconds(site, "SELECT reported_at FROM inverter_readings"):
        assert abs(at - collected_at) < 30  # stored at the collection time, not dropped
    said = [record.getMessage() for record in caplog.records if "no believable time" in record.getMessage()]
    assert len(said) == 1, said
    assert "3 from /ivp/pdm/device_data" in said[0] and "stored at the collection time" in said[0]


# --- the clocks disagree (SPEC section 5; the adversarial issue's second defect) ---------------------------


@pytest.mark.parametrize("offset_h", [3, -2], ids=["this machine 3 h behind", "this machine 2 h ahead"])
def test_a_wrong_clock_on_this_machine_times_nothing_wrong(site: Site, offset_h: int) -> None:
    site.sim.clock.set(datetime(2026, 6, 21, 10, 0, tzinfo=UTC))

    def wrong() -> datetime:
        return site.sim.clock.now() - timedelta(hours=offset_h)

    run = site.collect(clock=wrong)
    assert run.outcome == "partial" and run.error is None
    side = "behind" if offset_h > 0 else "ahead of"
    assert f"this machine's clock is {abs(offset_h):.1f} h {side} the gateway's" in run.endpoint_errors[0]
    assert run.rows_added["inverter"] == 30  # every inverter report kept
    truth = site.sim.clock.now().timestamp()
    newest_meter = max(stored_seconds(site, "SELECT read_at FROM meter_readings"))
    assert abs(newest_meter - truth) < 60  # timed by the gateway's clock, not hours off
    (started,) = stored_seconds(site, "SELECT started_at FROM runs")
    assert abs(started - truth) < 60  # so that coverage counts the right minutes
    status = CliRunner().invoke(app, ["--db", site.db_url, "status"])
    assert f"this machine's clock is {abs(offset_h):.1f} h" in status.stdout
    # The clock is put right (NTP answered): the next run stores as ever.
    site.sim.clock.advance(timedelta(minutes=1))
    after = site.collect()
    assert after.outcome == "ok" and sum(after.rows_added.values()) > 0


def test_a_reading_dated_50_minutes_ahead_does_not_hold_back_the_next(site: Site) -> None:
    assert site.collect().outcome == "ok"
    site.sim.clock.advance(timedelta(minutes=5))  # the inverters are due again
    ahead = site.sim.clock.now() + timedelta(minutes=50)
    site.sim.set_endpoint_fault(
        "/ivp/pdm/device_data", EndpointFault(body=device_data_body(ahead.timestamp()))
    )
    glitch = site.collect()
    assert any("dated ahead of this run" in note for note in glitch.endpoint_errors), glitch.endpoint_errors
    site.sim.set_endpoint_fault("/ivp/pdm/device_data", None)
    for _ in range(6):  # the next reports are stored: none is hidden behind a row in the future
        site.sim.clock.advance(timedelta(minutes=5))
        run = site.collect()
        assert run.rows_added.get("production", 0) > 0
    newest = max(stored_seconds(site, "SELECT reported_at FROM inverter_readings"))
    assert newest <= site.sim.clock.now().timestamp() + 120


def test_rows_a_clock_left_in_the_future_are_taken_out_so_the_series_goes_on(db_url: str) -> None:
    from envoylog.db import gateways, samples
    from envoylog.db.migrate import open_database
    from envoylog.readings.model import Snapshot

    engine = open_database(db_url, create=True)
    info = model.GatewayInfo("1222", "8.2.4345", None, True, True)
    now = datetime(2026, 6, 21, 10, 0, tzinfo=UTC)

    def production(at: datetime, watts: float) -> Snapshot:
        return Snapshot(meters=[model.MeterReading("production", 0, "api_v1", at, watts, 1000.0 + watts)])

    try:
        with engine.begin() as conn:
            gateway = gateways.save_gateway(conn, info, "home", now)
            samples.save_snapshot(
                conn, gateway.id, production(now + timedelta(hours=2), 5.0)
            )  # no clock check
            saved = samples.save_snapshot(conn, gateway.id, production(now, 7.0), now)
    finally:
        engine.dispose()
    assert saved.added == {"production": 1} and saved.removed == 1
    assert "1 stored readings were dated in the future (a clock that ran ahead): removed" in saved.notes()
