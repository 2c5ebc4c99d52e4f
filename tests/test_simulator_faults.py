"""Inverter faults in the simulated site's physics: a dead inverter, a derated one, a string of them dropped.

A fault shows everywhere the site's energy does: the inverter's own reports, the production CT, the grid,
and the history `demo --days` stores. Each history test fills the same days twice into one database (on
SQLite and, when ENVOYLOG_TEST_POSTGRES_URL is set, PostgreSQL): the healthy site under one gateway, the
faulty one under another, and compares what the reports make of them with each other and with the truth.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import requests
from test_history import query
from typer.testing import CliRunner

from envoylog.cli import app
from envoylog.demo.filler import fill_history
from envoylog.errors import ConfigError
from envoylog.reports import daily_report, inverter_report
from envoylog.simulator import Simulator
from envoylog.simulator.cli_support import profile_with_faults
from envoylog.simulator.endpoints import GatewayModel
from envoylog.simulator.plant import plant_of
from envoylog.simulator.profiles import InverterFault, get_profile

runner = CliRunner()
ZONE = ZoneInfo("Europe/Amsterdam")  # the profiles' zone
FIRST, LAST = date(2025, 6, 19), date(2025, 6, 21)
LAST_START = datetime(2025, 6, 21, tzinfo=ZONE)
LAST_END = LAST_START + timedelta(days=1)
NOON = datetime(2025, 6, 21, 12, tzinfo=ZONE)
SICK_SERIAL = "122238000001"  # the faulty site's gateway, next to the healthy one in the same database
# The report reads CT counters the gateway prints with three decimals: two days' ends, two gateways.
REPORT_WH = 0.005
INVERTER_WH = 0.05  # an inverter's day from its joules counter, against the truth


def fill_both(db_url: str, faults: tuple[InverterFault, ...]) -> tuple[GatewayModel, GatewayModel]:
    """The metered site's last days, healthy and with `faults`; the two sites' models, for their truth."""
    fill_history(db_url, FIRST, LAST, profile="metered", gateway="healthy")
    fill_history(
        db_url, FIRST, LAST, profile="metered", gateway="sick", serial=SICK_SERIAL, inverter_faults=faults
    )
    metered = get_profile("metered")
    return GatewayModel(metered), GatewayModel(replace(metered, inverter_faults=faults))


def last_reports(db_url: str, gateway: str) -> dict[str, float]:
    """Each inverter's newest stored report, as epoch seconds."""
    rows = query(
        db_url,
        "SELECT s.device, MAX(r.reported_at) FROM inverter_readings r JOIN series s ON s.id = r.series_id "
        "JOIN gateways g ON g.id = s.gateway_id WHERE g.name = :name GROUP BY s.device",
        name=gateway,
    )
    return {device: at.timestamp() if isinstance(at, datetime) else float(at) for device, at in rows}


def days(db_url: str, gateway: str) -> dict[date, Any]:
    frame = daily_report(db_url, FIRST, LAST, timezone="Europe/Amsterdam", gateway=gateway)
    return {row.day: row for row in frame.itertuples()}


def inverter_days(db_url: str, gateway: str) -> dict[tuple[date, str], float]:
    frame = inverter_report(db_url, FIRST, LAST, timezone="Europe/Amsterdam", gateway=gateway)
    return {(row.day, row.serial): row.wh for row in frame.itertuples()}


# --- the history ---------------------------------------------------------------------------------------


def test_a_dead_inverter_stops_reporting_and_the_production_ct_misses_its_energy(db_url: str) -> None:
    healthy, sick = fill_both(db_url, (InverterFault(3, 0.0, NOON),))
    serials = sick.inverter_serials()
    dead = serials[3]

    newest = last_reports(db_url, "sick")
    assert NOON.timestamp() - 300 < newest[dead] < NOON.timestamp()
    assert all(newest[s] > NOON.timestamp() + 6 * 3600 for s in serials if s != dead)  # into the evening
    assert last_reports(db_url, "healthy")[dead] > NOON.timestamp() + 6 * 3600

    well, broken = days(db_url, "healthy"), days(db_url, "sick")
    for day in (FIRST, FIRST + timedelta(days=1)):
        assert broken[day].production_wh == pytest.approx(well[day].production_wh, abs=REPORT_WH)
    lost = sick.inverter_loss_wh(dead, LAST_START, LAST_END)
    # What the dead inverter would have made in the afternoon, to within a crumb a minute.
    assert lost == pytest.approx(healthy.inverter_wh(dead, NOON, LAST_END), abs=0.01)
    assert lost > 100.0
    assert well[LAST].production_wh - broken[LAST].production_wh == pytest.approx(lost, abs=REPORT_WH)
    # The truth the check compares with agrees with the report of the faulty site.
    assert broken[LAST].production_wh == pytest.approx(
        sick.production_wh(LAST_START, LAST_END), abs=REPORT_WH
    )
    assert broken[LAST].export_wh == pytest.approx(sick.export_wh(LAST_START, LAST_END), abs=REPORT_WH)
    # The history's last run is at 23:59: the night's last minute of import is not in the last day.
    last_run = LAST_END - timedelta(minutes=1)
    assert broken[LAST].import_wh == pytest.approx(sick.import_wh(LAST_START, last_run), abs=REPORT_WH)
    assert broken[LAST].import_wh > well[LAST].import_wh  # the dead inverter's share of the house, bought
    assert broken[LAST].export_wh < well[LAST].export_wh - 0.9 * lost  # a sunny afternoon: most was exported

    # Its energy that day: what it reported before it died, the minutes up to noon unreported. (The report
    # reads an inverter's counter at midnight between its evening and morning reports: a few hundredths off.)
    energy = inverter_days(db_url, "sick")
    assert energy[(LAST, dead)] == pytest.approx(
        sick.inverter_wh(dead, LAST_START, datetime.fromtimestamp(newest[dead], UTC)), abs=INVERTER_WH
    )
    assert (
        energy[(LAST, dead)]
        < sick.inverter_wh(dead, LAST_START, LAST_END)
        < healthy.inverter_wh(dead, LAST_START, NOON + timedelta(minutes=1))
    )


def test_a_derated_inverter_reports_80_percent_of_its_healthy_energy(db_url: str) -> None:
    healthy, sick = fill_both(db_url, (InverterFault(5, 0.8),))
    serials = sick.inverter_serials()
    weak = serials[5]
    well, broken = inverter_days(db_url, "healthy"), inverter_days(db_url, "sick")
    for day in (FIRST, FIRST + timedelta(days=1), LAST):
        assert broken[(day, weak)] == pytest.approx(0.8 * well[(day, weak)], rel=1e-5)
        for serial in serials:
            if serial != weak:
                assert broken[(day, serial)] == pytest.approx(well[(day, serial)], abs=1e-6)
    assert broken[(LAST, weak)] == pytest.approx(
        sick.inverter_wh(weak, LAST_START, LAST_END), abs=INVERTER_WH
    )
    # It goes on reporting as long as the others.
    newest = last_reports(db_url, "sick")
    assert newest[weak] == pytest.approx(last_reports(db_url, "healthy")[weak], abs=300)

    lost = sick.inverter_loss_wh(weak, LAST_START, LAST_END)
    assert lost == pytest.approx(0.2 * healthy.inverter_wh(weak, LAST_START, LAST_END), abs=0.01)
    site_well, site_broken = days(db_url, "healthy"), days(db_url, "sick")
    assert site_well[LAST].production_wh - site_broken[LAST].production_wh == pytest.approx(
        lost, abs=REPORT_WH
    )


def test_a_string_of_five_dead_inverters(db_url: str) -> None:
    ten = datetime(2025, 6, 21, 10, tzinfo=ZONE)
    string = range(10, 15)  # on all three phases (the inverters take the phases in turn)
    healthy, sick = fill_both(db_url, tuple(InverterFault(i, 0.0, ten) for i in string))
    serials = sick.inverter_serials()
    dead = {serials[i] for i in string}

    newest = last_reports(db_url, "sick")
    assert all(ten.timestamp() - 300 < newest[s] < ten.timestamp() for s in dead)
    assert all(newest[s] > NOON.timestamp() + 6 * 3600 for s in serials if s not in dead)

    lost = sum(sick.inverter_loss_wh(s, LAST_START, LAST_END) for s in dead)
    assert lost == pytest.approx(sum(healthy.inverter_wh(s, ten, LAST_END) for s in dead), abs=0.05)
    well, broken = days(db_url, "healthy"), days(db_url, "sick")
    assert well[LAST].production_wh - broken[LAST].production_wh == pytest.approx(lost, abs=REPORT_WH)
    assert broken[LAST].production_wh == pytest.approx(
        sick.production_wh(LAST_START, LAST_END), abs=REPORT_WH
    )
    # The string is a sixth of the site: its afternoon is most of the day's shortfall.
    assert 0.1 < lost / well[LAST].production_wh < 1 / 6


# --- the live simulator --------------------------------------------------------------------------------


START = datetime(2026, 6, 21, 10, 0, tzinfo=UTC)  # noon in Amsterdam: every inverter is reporting


def inverter_list(sim: Simulator, token: str) -> dict[str, int]:
    """Each inverter's lastReportDate in /api/v1/production/inverters."""
    response = requests.get(
        f"{sim.gateway_url}/api/v1/production/inverters",
        headers={"Authorization": f"Bearer {token}"},
        verify=False,  # the simulator's self-signed certificate (quiet_tls)
        timeout=5.0,
    )
    assert response.status_code == 200
    return {entry["serialNumber"]: entry["lastReportDate"] for entry in response.json()}


@pytest.mark.usefixtures("quiet_tls")
def test_a_dead_inverters_latest_report_stops_advancing_in_the_live_simulator() -> None:
    dies = START + timedelta(minutes=10)
    profile = replace(get_profile("metered"), inverter_faults=(InverterFault(7, 0.0, dies),))
    with Simulator(profile, start=START) as sim:
        token = sim.issue_token()
        dead = GatewayModel(profile).inverter_serials()[7]
        before = inverter_list(sim, token)
        sim.clock.advance(timedelta(hours=1))
        after = inverter_list(sim, token)
    assert before[dead] <= after[dead] < dies.timestamp()
    for serial, reported in after.items():
        if serial != dead:
            assert reported > before[serial] and reported >= (START + timedelta(minutes=55)).timestamp()


# --- the faults themselves -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fault", "message"),
    [
        (lambda: InverterFault(-1, 0.5), "inverter number from 0"),
        (lambda: InverterFault(2, 1.2), "between 0 and 1"),
        (lambda: InverterFault(2, float("nan")), "between 0 and 1"),
        (lambda: InverterFault(2, 0.0, datetime(2025, 6, 21, 12)), "aware"),
    ],
)
def test_a_fault_that_makes_no_sense_is_refused(fault: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        fault()


def test_a_profile_refuses_faults_of_inverters_it_has_not(tmp_path: Any) -> None:
    standard = get_profile("standard")  # twelve inverters
    with pytest.raises(ValueError, match="no inverter 12: the standard site has 12"):
        replace(standard, inverter_faults=(InverterFault(12, 0.0),))
    with pytest.raises(ValueError, match="at most one fault per inverter"):
        replace(standard, inverter_faults=(InverterFault(1, 0.0), InverterFault(1, 0.5)))
    with pytest.raises(ConfigError, match="bad inverter fault: no inverter 40") as caught:
        fill_history(
            f"sqlite:///{tmp_path / 'db.sqlite'}", LAST, LAST, inverter_faults=[InverterFault(40, 0.5)]
        )
    assert "\n" not in str(caught.value)
    assert not (tmp_path / "db.sqlite").exists()


def test_sites_with_other_faults_do_not_share_their_physics() -> None:
    standard = get_profile("standard")
    derated = replace(standard, inverter_faults=(InverterFault(0, 0.5),))
    dead = replace(standard, inverter_faults=(InverterFault(0, 0.0),))
    plants = {id(plant_of(p, 1)) for p in (standard, derated, dead)}
    assert len(plants) == 3
    first = standard.installed_at
    produced = [
        GatewayModel(p).production_wh(first, first + timedelta(days=30)) for p in (standard, derated, dead)
    ]
    assert produced[0] > produced[1] > produced[2] > 0.8 * produced[0]  # one inverter of twelve
    # Dead since installation: it never reports, and has made nothing.
    model = GatewayModel(dead)
    (report, *_) = model.reports(model.moment((first + timedelta(days=30, hours=12)).timestamp()))
    assert report.reported_at is None and report.lifetime_wh == 0.0
    assert model.inverter_wh(model.inverter_serials()[0], first, first + timedelta(days=30)) == 0.0


# --- envoylog simulate --fault inverter:... -------------------------------------------------------------


def test_inverter_faults_from_the_command_line() -> None:
    profile = profile_with_faults("metered", ["inverter:3=0.8", "inverter:7=dead@2026-11-29T12:00"])
    assert profile.inverter_faults == (
        InverterFault(3, 0.8),
        InverterFault(7, 0.0, datetime(2026, 11, 29, 12, tzinfo=ZONE)),  # the site's local time
    )
    (fault,) = profile_with_faults("standard", ["inverter:0=0.5@2026-11-29T12:00:00+00:00"]).inverter_faults
    assert fault.start == datetime(2026, 11, 29, 12, tzinfo=UTC)
    assert profile_with_faults("standard", []) is get_profile("standard")


def test_simulate_refuses_bad_inverter_faults(isolated_env: Any) -> None:
    cases = [
        (["--fault", "inverter:12=dead"], "no inverter 12: the standard site has 12"),
        (
            ["--fault", "inverter:x=dead"],
            "bad fault 'inverter:x=dead': give inverter:N=FACTOR or inverter:N=dead",
        ),
        (["--fault", "inverter:3=half"], "bad fault 'inverter:3=half'"),
        (["--fault", "inverter:3=1.5"], "between 0 and 1"),
        (["--fault", "inverter:3=dead@noon"], "the time after '@' must be ISO 8601"),
        (["--fault", "inverter:1=dead", "--fault", "inverter:1=0.5"], "at most one fault per inverter"),
        (["--fault", "inverter:3=dead", "--gateways", "2"], "inverter faults need one simulated site"),
    ]
    for options, message in cases:
        result = runner.invoke(app, ["simulate", "--port", "0", "--profile", "standard", *options])
        assert result.exit_code == 2, options
        assert message in result.stderr, (options, result.stderr)
        assert "Traceback" not in result.output
