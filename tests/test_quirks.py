"""Every rule of SPEC section 4 "Sources and quirks", met by the real collector on a simulated gateway.

Each rule has a simulator profile that shows it (envoylog/simulator/profiles.py), so these tests need no
captures. The simulated clock stands still between requests: what a run stored can be compared with what
the gateway serves. Every test runs on SQLite and, when ENVOYLOG_TEST_POSTGRES_URL is set, on PostgreSQL.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from conftest import Site
from sqlalchemy import create_engine
from typer.testing import CliRunner

from envoylog.cli import app
from envoylog.errors import GatewayError
from envoylog.reports.status import latest_document
from envoylog.simulator import EndpointFault, Quirks, Simulator
from envoylog.simulator.payloads import CT_EIDS, NET_CONSUMPTION, PRODUCTION

NOON = datetime(2025, 6, 21, 10, 0, tzinfo=UTC)  # local noon in Amsterdam, the longest day
STILL = 1e-9  # simulated seconds per real second: the clock stands still unless a test moves it
WRAP_WH = 2**32 / 3600  # one inverter's 32-bit joule counter
SITE_KINDS = ("production", "consumption", "net_consumption")

MakeSite = Callable[..., Site]


@pytest.fixture
def make_site(db_url: str, tmp_path: Path) -> Iterator[MakeSite]:
    """Sites of any profile on an empty database, their clocks standing still at `start`."""
    simulators: list[Simulator] = []

    def make(profile: str, start: datetime = NOON) -> Site:
        sim = Simulator(profile, start=start, speed=STILL, state_dir=tmp_path / profile)
        simulators.append(sim.start())
        return Site(sim, db_url)

    yield make
    for sim in simulators:
        sim.stop()


def served(site: Site, path: str, **query: str) -> Any:
    """The JSON the simulated gateway serves at `path` now."""
    sim = site.sim
    body = sim.model.render(path, query, sim.clock.now(), sim.faults.quirks)
    assert body is not None, f"{sim.profile.name} has no {path}"
    return json.loads(body.data)


def collect(site: Site, advance: timedelta | None = None) -> None:
    """One collect run, after moving the clock on by `advance`; it must end without an error."""
    if advance is not None:
        site.sim.clock.advance(advance)
    run = site.collect()
    assert run.error is None, run.error


def latest(site: Site) -> dict[str, Any]:
    """The one gateway of `envoylog latest --format json`."""
    engine = create_engine(site.db_url)
    try:
        (gateway,) = latest_document(engine)["gateways"]
    finally:
        engine.dispose()
    return dict(gateway)


def meter_rows(site: Site) -> dict[tuple[str, int], dict[str, Any]]:
    """The newest stored reading of every site series, by (kind, phase)."""
    rows = site.query(
        "SELECT s.kind, s.phase, m.source, m.watts, m.wh_lifetime FROM series s "
        "JOIN meter_readings m ON m.series_id = s.id "
        "WHERE m.read_at = (SELECT MAX(read_at) FROM meter_readings WHERE series_id = s.id)"
    )
    return {
        (kind, phase): {"source": source, "watts": watts, "wh_lifetime": wh}
        for kind, phase, source, watts, wh in rows
    }


def inverters_entry(site: Site) -> dict[str, Any]:
    """production.json's `inverters` entry as served now."""
    body = served(site, "/production.json", details="1")
    return dict(next(e for e in body["production"] if e["type"] == "inverters"))


def ct_reading(site: Site, measurement: str) -> dict[str, Any]:
    """The /ivp/meters/readings entry of one CT, found by its eid."""
    readings = served(site, "/ivp/meters/readings")
    return dict(next(r for r in readings if r["eid"] == CT_EIDS[measurement]))


# --- where production comes from ------------------------------------------------------------------


def test_eim_entries_without_a_ct_are_neither_production_nor_consumption(make_site: MakeSite) -> None:
    site = make_site("metered-no-cts")
    body = served(site, "/production.json", details="1")
    eims = [e for e in body["production"] + body["consumption"] if e["type"] == "eim"]
    assert len(eims) == 3 and all(e["activeCount"] == 0 for e in eims)  # the quirk is served
    assert {m["state"] for m in served(site, "/ivp/meters")} == {"disabled"}
    ghost_wh = {e["whLifetime"] for e in eims}
    for advance in (None, timedelta(minutes=1)):  # the first (discovering) run, then a steady-state one
        collect(site, advance)
        gateway = latest(site)
        assert gateway["production"]["source"] in ("api_v1", "inverters")
        assert gateway["production"]["wh_lifetime"] in (
            served(site, "/api/v1/production")["wattHoursLifetime"],
            inverters_entry(site)["whLifetime"],
        )
        assert gateway["consumption"] is None and gateway["net_consumption"] is None
    stored = site.query("SELECT wh_lifetime FROM meter_readings")
    assert stored and not {wh for (wh,) in stored} & ghost_wh
    assert site.query("SELECT kind FROM series WHERE kind IN ('consumption', 'net_consumption')") == []


def assert_production_from_inverters_entry(site: Site) -> None:
    production = latest(site)["production"]
    entry = inverters_entry(site)
    assert production["source"] == "inverters"
    assert production["watts"] == entry["wNow"]
    assert production["wh_lifetime"] == entry["whLifetime"]


def test_stalled_api_v1_on_metered_hardware_without_cts_gives_way_to_the_inverters_entry(
    make_site: MakeSite,
) -> None:
    site = make_site("stalled-api")
    frozen = served(site, "/api/v1/production")
    assert frozen["wattsNow"] != inverters_entry(site)["wNow"]  # the quirk is served
    for advance in (None, timedelta(minutes=1), timedelta(minutes=6)):
        collect(site, advance)
        assert served(site, "/api/v1/production") == frozen
        assert_production_from_inverters_entry(site)
    assert site.query("SELECT DISTINCT source FROM meter_readings") == [("inverters",)]


def test_api_v1_with_every_energy_value_zero_gives_way_to_the_inverters_entry(make_site: MakeSite) -> None:
    site = make_site("zero-api")
    api = served(site, "/api/v1/production")
    assert api["wattsNow"] > 0 and api["wattHoursLifetime"] == api["wattHoursToday"] == 0
    for advance in (None, timedelta(minutes=1), timedelta(minutes=6)):
        collect(site, advance)
        assert_production_from_inverters_entry(site)
    assert site.query("SELECT COUNT(*) FROM meter_readings WHERE wh_lifetime = 0") == [(0,)]


def test_total_consumption_reported_as_net_is_rebuilt_from_net_and_production(make_site: MakeSite) -> None:
    site = make_site("total-is-net")
    body = served(site, "/production.json", details="1")
    total, net = (
        next(e for e in body["consumption"] if e["measurementType"] == kind)
        for kind in ("total-consumption", "net-consumption")
    )
    assert (total["wNow"], total["whLifetime"]) == (net["wNow"], net["whLifetime"])  # the quirk is served
    for advance in (None, timedelta(minutes=1)):
        collect(site, advance)
        rows = meter_rows(site)
        for phase in range(4):  # the whole site, then L1..L3
            production, net_row = rows[("production", phase)], rows[("net_consumption", phase)]
            consumption = rows[("consumption", phase)]
            assert consumption["watts"] == pytest.approx(net_row["watts"] + production["watts"], abs=0.01)
            assert consumption["wh_lifetime"] == pytest.approx(
                net_row["wh_lifetime"] + production["wh_lifetime"], abs=0.01
            )
            assert consumption["watts"] > 0  # a house always draws something; net is negative at noon


def test_ct_readings_are_matched_by_eid_and_phantom_channels_ignored(make_site: MakeSite) -> None:
    site = make_site("phantom-channels")
    listed = [m["eid"] for m in served(site, "/ivp/meters")]
    readings = served(site, "/ivp/meters/readings")
    assert [r["eid"] for r in readings if r["eid"] in listed] == listed[::-1]  # another order
    assert {r["eid"] for r in readings} - set(listed)  # and a CT that /ivp/meters does not list
    assert {len(r["channels"]) for r in readings} == {3}
    assert all(c["activePower"] == c["actEnergyDlvd"] == 0 for r in readings for c in r["channels"][1:])
    for advance in (None, timedelta(minutes=1)):
        collect(site, advance)
        gateway = latest(site)
        net, production = ct_reading(site, NET_CONSUMPTION), ct_reading(site, PRODUCTION)
        assert gateway["net_consumption"]["watts"] == net["activePower"]
        assert gateway["net_consumption"]["wh_lifetime"] == pytest.approx(
            net["actEnergyDlvd"] - net["actEnergyRcvd"], abs=0.001
        )
        assert gateway["production"]["watts"] == production["activePower"]
        assert all("phases" not in gateway[kind] for kind in SITE_KINDS)
    assert {phase for (phase,) in site.query("SELECT phase FROM series")} == {0}
    kinds = {kind for (kind,) in site.query("SELECT DISTINCT kind FROM series")}
    assert kinds == {*SITE_KINDS, "inverter"}  # nothing from the unlisted CT


def test_three_phase_sites_store_every_phase(make_site: MakeSite) -> None:
    site = make_site("metered")
    collect(site)
    gateway = latest(site)
    body = served(site, "/production.json", details="1")
    eim = next(e for e in body["production"] if e["type"] == "eim")
    net = ct_reading(site, NET_CONSUMPTION)
    for kind in SITE_KINDS:
        phases = gateway[kind]["phases"]
        assert [p["phase"] for p in phases] == ["L1", "L2", "L3"]
        assert sum(p["watts"] for p in phases) == pytest.approx(gateway[kind]["watts"], abs=0.01)
    assert [p["watts"] for p in gateway["production"]["phases"]] == [line["wNow"] for line in eim["lines"]]
    assert [p["watts"] for p in gateway["net_consumption"]["phases"]] == [
        c["activePower"] for c in net["channels"]
    ]


# --- inverters and batteries ----------------------------------------------------------------------


def test_inverters_beyond_the_device_data_limit_come_from_the_inverters_endpoint(make_site: MakeSite) -> None:
    site = make_site("many-inverters")
    device_data = served(site, "/ivp/pdm/device_data")
    assert device_data["deviceDataLimit"] == device_data["deviceCount"] == 50
    detailed = {d["sn"] for d in device_data.values() if isinstance(d, dict) and d.get("devName") == "pcu"}
    everyone = {i["serialNumber"] for i in served(site, "/api/v1/production/inverters")}
    assert len(everyone) == 60 and len(detailed) == 50
    for advance in (None, timedelta(minutes=6), timedelta(minutes=6)):  # the slow endpoints come due
        collect(site, advance)
    assert {i["serial"] for i in latest(site)["inverters"]} == everyone
    with_joules = site.query(
        "SELECT DISTINCT s.device FROM series s JOIN inverter_readings r ON r.series_id = s.id "
        "WHERE r.joules_lifetime IS NOT NULL"
    )
    assert {serial for (serial,) in with_joules} == detailed


def test_ac_batteries_are_one_aggregate_battery(make_site: MakeSite) -> None:
    site = make_site("acb")
    (acb,) = served(site, "/production.json")["storage"]
    assert acb["activeCount"] == 3 and acb["state"] == "charging"  # the quirk is served, at noon
    collect(site)
    (battery,) = latest(site)["batteries"]
    assert battery["serial"] is None and battery["kind"] == "acb"
    assert battery["soc_percent"] == acb["percentFull"]
    assert battery["watts"] == acb["wNow"] < 0  # charging, as the gateway signs it


def test_ac_batteries_listed_with_the_inverters_are_not_stored_as_inverters(make_site: MakeSite) -> None:
    site = make_site("acb")
    listed = served(site, "/api/v1/production/inverters")
    micro = {i["serialNumber"] for i in listed if i["devType"] == 1}
    assert len(micro) == 12 and len(listed) == 15  # the quirk is served: three devType 11 entries
    for advance in (None, timedelta(minutes=6)):
        collect(site, advance)
    assert {i["serial"] for i in latest(site)["inverters"]} == micro


def test_encharge_power_comes_in_milliwatts_under_the_devices_colon_key(make_site: MakeSite) -> None:
    site = make_site("battery", start=NOON.replace(hour=6))  # the morning: both batteries charging
    power = {d["serial_num"]: d["real_power_mw"] for d in served(site, "/ivp/ensemble/power")["devices:"]}
    (encharge,) = [group for group in served(site, "/ivp/ensemble/inventory") if group["type"] == "ENCHARGE"]
    soc = {d["serial_num"]: d["percentFull"] for d in encharge["devices"]}
    assert len(power) == 2 and all(mw < -1000 for mw in power.values())
    collect(site)
    batteries = latest(site)["batteries"]
    assert {b["serial"] for b in batteries} == set(power)
    for battery in batteries:
        assert battery["kind"] == "encharge"
        assert battery["watts"] == pytest.approx(power[battery["serial"]] / 1000)
        assert battery["soc_percent"] == soc[battery["serial"]]


# --- endpoints that answer errors -----------------------------------------------------------------


def test_a_persistent_401_with_valid_auth_skips_one_endpoint_only(make_site: MakeSite) -> None:
    site = make_site("metered")
    site.sim.set_endpoint_fault("/ivp/meters/readings", EndpointFault(status=401))
    for advance in (timedelta(0), timedelta(minutes=1)):
        site.sim.clock.advance(advance)
        run = site.collect()
        assert run.error is None and run.outcome == "partial"
        assert "/ivp/meters/readings" in " ".join(run.endpoint_errors)
        assert all(run.rows_added.get(kind) for kind in SITE_KINDS)  # production.json's entries instead
    assert site.cloud_requests() == 0  # the token is fine: the second run kept it
    assert len(site.requests(path="/auth/check_jwt")) <= 1
    assert site.query("SELECT DISTINCT source FROM meter_readings") == [("eim",)]


def test_a_404_endpoint_is_not_asked_again(make_site: MakeSite) -> None:
    site = make_site("metered")
    site.sim.set_endpoint_fault("/ivp/meters/readings", EndpointFault(status=404))
    collect(site)
    assert site.requests(path="/ivp/meters/readings") == ["/ivp/meters/readings"]
    for _ in range(2):
        collect(site, timedelta(minutes=1))
        assert site.requests(path="/ivp/meters/readings") == []
        assert all(latest(site)[kind] is not None for kind in SITE_KINDS)
    assert site.query("SELECT DISTINCT source FROM meter_readings") == [("eim",)]


def test_a_503_endpoint_is_asked_again_by_the_next_run(make_site: MakeSite) -> None:
    site = make_site("metered")
    site.sim.set_endpoint_fault("/ivp/meters/readings", EndpointFault(status=503))
    run = site.collect()
    assert run.error is None and run.outcome == "partial"
    assert "HTTP 503" in " ".join(run.endpoint_errors)
    assert all(run.rows_added.get(kind) for kind in SITE_KINDS)
    site.sim.set_endpoint_fault("/ivp/meters/readings", None)  # booted
    collect(site, timedelta(minutes=1))
    assert site.requests(path="/ivp/meters/readings") == ["/ivp/meters/readings"]
    net = ct_reading(site, NET_CONSUMPTION)
    assert latest(site)["net_consumption"]["watts"] == net["activePower"]


# --- old firmware ---------------------------------------------------------------------------------


def test_all_zero_production_after_a_boot_is_not_stored(make_site: MakeSite) -> None:
    site = make_site("booting")  # starting the simulator boots the gateway: five minutes of zeros
    assert served(site, "/api/v1/production") == {
        "wattHoursToday": 0,
        "wattHoursSevenDays": 0,
        "wattHoursLifetime": 0,
        "wattsNow": 0,
    }
    for advance in (None, timedelta(minutes=2)):
        collect(site, advance)
        assert latest(site)["production"] is None
    assert site.query("SELECT COUNT(*) FROM meter_readings") == [(0,)]
    collect(site, timedelta(minutes=4))  # booted
    api = served(site, "/api/v1/production")
    production = latest(site)["production"]
    assert production["watts"] == api["wattsNow"] > 0
    assert production["wh_lifetime"] == api["wattHoursLifetime"] > 0


def test_firmware_that_serves_only_html_fails_plainly_with_exit_4(
    make_site: MakeSite, isolated_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    site = make_site("html-only")
    page = site.sim.model.render("/api/v1/production", {}, NOON, Quirks())
    assert page is not None and page.content_type.startswith("text/html")  # the quirk is served
    run = site.collect()
    assert isinstance(run.error, GatewayError) and run.error.status == 4
    assert "HTML" in str(run.error) and "\n" not in str(run.error)
    assert site.rows() == {"meter_readings": 0, "inverter_readings": 0, "battery_readings": 0}
    assert site.query("SELECT outcome FROM runs") == [("failed",)]

    for name, value in site.sim.environment().items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("ENVOYLOG_DB", site.db_url)
    result = CliRunner().invoke(app, ["collect"])
    assert result.exit_code == 4
    (line,) = result.stderr.splitlines()
    assert "HTML" in line and "Traceback" not in result.output


# --- counters -------------------------------------------------------------------------------------


def test_a_wrapped_inverters_entry_is_stored_as_served(make_site: MakeSite) -> None:
    site = make_site("stalled-api")  # production comes from the inverters entry
    collect(site)
    before = inverters_entry(site)["whLifetime"]
    site.sim.set_faults(quirks=Quirks(counter_wrap_at=site.sim.clock.now() + timedelta(seconds=30)))
    collect(site, timedelta(minutes=1))
    after = inverters_entry(site)["whLifetime"]
    assert WRAP_WH - 2_000 < before - after < WRAP_WH + 1  # the quirk is served
    rows = site.query(
        "SELECT m.source, m.wh_lifetime FROM meter_readings m JOIN series s ON s.id = m.series_id "
        "WHERE s.kind = 'production' AND s.phase = 0 ORDER BY m.read_at"
    )
    assert rows == [("inverters", before), ("inverters", after)]  # as served: the report step mends it
    assert all(wh >= 0 for (wh,) in site.query("SELECT wh_lifetime FROM meter_readings"))


def test_the_total_rows_volts_are_the_mean_of_its_phases_not_their_sum(site: Site) -> None:
    assert site.collect().outcome == "ok"
    rows = site.query(
        "SELECT s.kind, s.phase, m.volts FROM meter_readings m JOIN series s ON s.id = m.series_id "
        "WHERE s.device = '' ORDER BY s.kind, s.phase"
    )
    by_kind: dict[str, dict[int, float]] = {}
    for kind, phase, volts in rows:
        by_kind.setdefault(kind, {})[phase] = volts
    for kind, phases in by_kind.items():
        lines = [phases[phase] for phase in (1, 2, 3)]
        assert all(200 < volts < 260 for volts in lines), (kind, phases)  # 230 V mains, per phase
        assert phases[0] == pytest.approx(sum(lines) / 3, abs=0.001), kind  # not ~690 V
