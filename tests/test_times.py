"""Times the gateway gets wrong: a reading whose own time cannot be believed is stored at the collection
time, never dropped, and `-v` says so once a run."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

import pytest
from conftest import Site

from envoylog import readings

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
    times = readings.TimeCheck(NOW)
    data = [{"serialNumber": "482052011234", "lastReportDate": stamp, "lastReportWatts": 210, "devType": 1}]
    (inverter,) = readings.parse_inverters(data, times)
    assert inverter.watts == 210
    if believed:
        assert inverter.reported_at == datetime.fromtimestamp(stamp, UTC)  # type: ignore[arg-type]
        assert times.replaced == {}
    else:
        assert inverter.reported_at == NOW
        assert times.replaced == {"/api/v1/production/inverters": 1}


def test_device_data_and_meter_readings_count_what_they_replace() -> None:
    times = readings.TimeCheck(NOW)
    device_data = {
        "1": {
            "sn": "482052011234",
            "devName": "pcu",
            "channels": [{"lastReading": {"endDate": 0}, "watts": {"now": 12}, "lifetime": {}}],
        },
        "deviceCount": 1,
    }
    (inverter,) = readings.parse_device_data(device_data, times).inverters
    assert inverter.reported_at == NOW
    (ct,) = readings.parse_meter_readings([{"eid": 1, "timestamp": -1, "activePower": 5.0}], times)
    assert ct.read_at == NOW
    assert times.replaced == {"/ivp/pdm/device_data": 1, "/ivp/meters/readings": 1}


def test_a_gateway_clock_hours_ahead_still_stores_every_inverter(
    site: Site, caplog: pytest.LogCaptureFixture
) -> None:
    site.sim.clock.set(datetime(2026, 6, 21, 10, 0, tzinfo=UTC))  # midday: every inverter reports
    behind = timedelta(hours=2)  # the collector's clock two hours behind the gateway's

    def clock() -> datetime:
        return site.sim.clock.now() - behind

    with caplog.at_level(logging.INFO, logger="envoylog"):
        run = site.collect(clock=clock)
    assert run.outcome == "ok", run.summary()
    assert run.rows_added["inverter"] == 30
    stored = [row[0] for row in site.query("SELECT reported_at FROM inverter_readings")]
    collected_at = (site.sim.clock.now() - behind).timestamp()
    for at in stored:
        seconds = at if isinstance(at, int) else at.timestamp()
        assert abs(seconds - collected_at) < 30  # stored at the collection time, not dropped
    said = [record.getMessage() for record in caplog.records if "no believable time" in record.getMessage()]
    assert len(said) == 1, said
    assert "stored at the collection time" in said[0] and "/ivp/pdm/device_data" in said[0]
