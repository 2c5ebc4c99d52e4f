"""The simulated gateway's physics and payloads, straight from the model (no HTTP): a believable day."""

from __future__ import annotations

import dataclasses
import itertools
import json
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from envoylog.simulator.endpoints import GatewayModel
from envoylog.simulator.faults import Quirks
from envoylog.simulator.profiles import PROFILES

CAPTURES = Path(__file__).parents[1].parent / "shared" / "envoy-captures"
AMSTERDAM = ZoneInfo("Europe/Amsterdam")  # the profiles' time zone
WRAP_WH = 2**32 / 3600
HEALTHY = Quirks()
# A spring day on which the clocks go forward (23 hours long), and a long summer day.
DST_DAY = datetime(2025, 3, 30, tzinfo=AMSTERDAM)
SUMMER_DAY = datetime(2025, 6, 21, tzinfo=AMSTERDAM)


@cache
def model(name: str) -> GatewayModel:
    return GatewayModel(PROFILES[name])


def get(m: GatewayModel, path: str, when: datetime, quirks: Quirks = HEALTHY, **query: str) -> Any:
    body = m.render(path, query, when, quirks)
    assert body is not None, f"{m.profile.name} has no {path}"
    assert body.content_type == "application/json"
    return json.loads(body.data)


def parse_xml(data: bytes) -> ET.Element:
    """Parse XML we trust: the model's own /info and the captures."""
    return ET.fromstring(data)  # noqa: S314


def minutes(day: datetime, step: int = 1) -> Iterator[datetime]:
    """Every `step` minutes of a local day, midnight included, the next midnight excluded (in UTC)."""
    t = local_midnight(day)
    end = local_midnight(day + timedelta(days=1))
    while t < end:
        yield t
        t += timedelta(minutes=step)


def local_midnight(day: datetime) -> datetime:
    return datetime.combine(day.date(), datetime.min.time(), AMSTERDAM).astimezone(UTC)


def eim(body: dict[str, Any], section: str, measurement: str) -> dict[str, Any]:
    return next(e for e in body[section] if e.get("measurementType") == measurement)


def counters(
    production: dict[str, Any], readings: list[dict[str, Any]], api: dict[str, Any] | None = None
) -> dict[str, float]:
    """Every lifetime counter a logger may store, by a readable name."""
    out: dict[str, float] = {"inverters": production["production"][0]["whLifetime"]}
    if api is not None:
        out["api/v1"] = api["wattHoursLifetime"]
    for section, measurement in (("production", "production"), ("consumption", "total-consumption")):
        entry = eim(production, section, measurement)
        out[measurement] = entry["whLifetime"]
        out[f"{measurement} vah"] = entry["vahLifetime"]
        for i, line in enumerate(entry["lines"]):
            out[f"{measurement} line {i}"] = line["whLifetime"]
    for ct in readings:
        for key in ("actEnergyDlvd", "actEnergyRcvd", "apparentEnergy", "reactEnergyLagg", "reactEnergyLead"):
            out[f"{ct['eid']} {key}"] = ct[key]
            for channel in ct["channels"]:
                out[f"{channel['eid']} {key}"] = channel[key]
    return out


@dataclasses.dataclass
class DayWalk:
    """What a logger polling the metered gateway every minute of one local day would have seen."""

    times: list[datetime] = dataclasses.field(default_factory=list)
    production: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    readings: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    inverters: list[list[dict[str, Any]]] = dataclasses.field(default_factory=list)
    api: list[dict[str, Any]] = dataclasses.field(default_factory=list)


@pytest.fixture(scope="module")
def metered_walk() -> DayWalk:
    m = model("metered")
    walk = DayWalk()
    # The next local midnight closes the day.
    for t in [*minutes(DST_DAY), local_midnight(DST_DAY + timedelta(days=1))]:
        walk.times.append(t)
        walk.production.append(get(m, "/production.json", t, details="1"))
        walk.readings.append(get(m, "/ivp/meters/readings", t))
        walk.inverters.append(get(m, "/api/v1/production/inverters", t))
        walk.api.append(get(m, "/api/v1/production", t))
    return walk


def test_the_dst_day_is_walked_in_23_hours(metered_walk: DayWalk) -> None:
    assert len(metered_walk.times) == 23 * 60 + 1


def test_lifetime_counters_never_decrease_minute_by_minute(metered_walk: DayWalk) -> None:
    walk = metered_walk
    previous = counters(walk.production[0], walk.readings[0], walk.api[0])
    for t, production, readings, api in zip(
        walk.times[1:], walk.production[1:], walk.readings[1:], walk.api[1:], strict=True
    ):
        current = counters(production, readings, api)
        dropped = {name: (previous[name], value) for name, value in current.items() if value < previous[name]}
        assert not dropped, f"counters went down at {t}: {dropped}"
        previous = current
    assert previous["production"] > counters(walk.production[0], walk.readings[0])["production"]


def test_inverters_report_staggered_every_interval(metered_walk: DayWalk) -> None:
    interval = PROFILES["metered"].report_interval_s
    seen: dict[str, set[int]] = {}
    for reports in metered_walk.inverters:
        for r in reports:
            seen.setdefault(r["serialNumber"], set()).add(r["lastReportDate"])
    assert set(seen) == set(model("metered").inverter_serials())
    offsets = {min(dates) % interval for dates in seen.values()}
    assert len(offsets) > len(seen) // 2, "inverters should not all report at the same second"
    for dates in seen.values():
        ordered = sorted(dates)
        daytime = [b - a for a, b in itertools.pairwise(ordered)][1:]  # the first gap spans the night
        assert all(gap % interval == 0 for gap in daytime)
        assert daytime.count(interval) > len(daytime) * 0.9


def test_night_reading_time_zero_frozen_reports_and_negative_production_ct() -> None:
    m = model("metered")
    evening = datetime(2025, 6, 20, 23, 30, tzinfo=AMSTERDAM)
    small_hours = datetime(2025, 6, 21, 2, 30, tzinfo=AMSTERDAM)
    late = get(m, "/api/v1/production/inverters", evening)
    early = get(m, "/api/v1/production/inverters", small_hours)
    assert late == early, "at night the inverters stay silent: nothing changes"
    sunset = datetime(2025, 6, 20, 22, 30, tzinfo=AMSTERDAM).timestamp()
    for report in early:
        assert report["lastReportWatts"] == 0
        assert sunset - 3600 < report["lastReportDate"] < sunset + 1800

    body = get(m, "/production.json", small_hours, details="1")
    inverters = body["production"][0]
    assert (inverters["readingTime"], inverters["wNow"]) == (0, 0)
    assert inverters["whLifetime"] > 1_000_000
    ct = eim(body, "production", "production")
    assert -5.0 <= ct["wNow"] <= -1.0
    assert all(line["wNow"] < 0 for line in ct["lines"])

    before = get(m, "/ivp/meters/readings", evening)[0]
    after = get(m, "/ivp/meters/readings", small_hours)[0]
    assert after["actEnergyDlvd"] == before["actEnergyDlvd"]
    hours = (small_hours - evening).total_seconds() / 3600
    assert 1.0 * hours <= after["actEnergyRcvd"] - before["actEnergyRcvd"] <= 5.0 * hours


def test_energy_adds_up_over_a_day(metered_walk: DayWalk) -> None:
    m = model("metered")
    interval = m.profile.report_interval_s
    start, end = metered_walk.times[0], metered_walk.times[-1]
    reports: dict[tuple[str, int], int] = {}
    for snapshot in metered_walk.inverters:
        for r in snapshot:
            if start.timestamp() < r["lastReportDate"] <= end.timestamp():
                reports[(r["serialNumber"], r["lastReportDate"])] = r["lastReportWatts"]
    reported_wh = sum(watts * interval / 3600 for watts in reports.values())
    first, last = metered_walk.readings[0][0], metered_walk.readings[-1][0]
    ct_wh = last["actEnergyDlvd"] - first["actEnergyDlvd"]
    truth = m.production_wh(start, end)
    assert truth > 10_000, "a March day in Amsterdam still gives this 9 kWp site several kWh"
    assert reported_wh == pytest.approx(ct_wh, rel=0.02)
    assert ct_wh == pytest.approx(truth, rel=1e-6)
    inverters_entry = (
        metered_walk.production[-1]["production"][0]["whLifetime"]
        - metered_walk.production[0]["production"][0]["whLifetime"]
    )
    assert inverters_entry == pytest.approx(truth, rel=0.02)
    per_inverter = sum(m.inverter_wh(s, start, end) for s in m.inverter_serials())
    assert per_inverter == pytest.approx(truth, abs=0.01)
    for serial in m.inverter_serials()[:5]:
        mine = sum(w * interval / 3600 for (s, _), w in reports.items() if s == serial)
        assert mine == pytest.approx(m.inverter_wh(serial, start, end), rel=0.02)


def test_net_and_total_consumption_balance(metered_walk: DayWalk) -> None:
    m = model("metered")
    start, end = metered_walk.times[0], metered_walk.times[-1]
    for body in metered_walk.production[::97]:
        production = eim(body, "production", "production")
        total = eim(body, "consumption", "total-consumption")
        net = eim(body, "consumption", "net-consumption")
        assert total["wNow"] == pytest.approx(net["wNow"] + production["wNow"], abs=0.01)
        assert total["wNow"] > 0
    first, last = metered_walk.readings[0][1], metered_walk.readings[-1][1]
    assert last["actEnergyDlvd"] - first["actEnergyDlvd"] == pytest.approx(m.import_wh(start, end), abs=0.01)
    assert last["actEnergyRcvd"] - first["actEnergyRcvd"] == pytest.approx(m.export_wh(start, end), abs=0.01)
    net_entry = [eim(b, "consumption", "net-consumption")["whLifetime"] for b in metered_walk.production]
    assert net_entry[-1] - net_entry[0] == pytest.approx(
        m.import_wh(start, end) - m.export_wh(start, end), abs=0.01
    )
    total_entry = [eim(b, "consumption", "total-consumption")["whLifetime"] for b in metered_walk.production]
    assert total_entry[-1] - total_entry[0] == pytest.approx(m.consumption_wh(start, end), abs=0.01)
    assert 5_000 < m.consumption_wh(start, end) < 20_000, "a household uses some 5 to 20 kWh a day"


def test_phases_split_production_evenly_and_totals_are_sums(metered_walk: DayWalk) -> None:
    noon = metered_walk.times.index(datetime(2025, 3, 30, 11, 0, tzinfo=UTC))
    body = metered_walk.production[noon]
    production = eim(body, "production", "production")
    lines = production["lines"]
    assert len(lines) == 3
    assert sum(line["wNow"] for line in lines) == pytest.approx(production["wNow"], abs=0.01)
    assert sum(line["whLifetime"] for line in lines) == pytest.approx(production["whLifetime"], abs=0.01)
    assert max(line["wNow"] for line in lines) < 1.3 * min(line["wNow"] for line in lines)
    assert all(220 < line["rmsVoltage"] < 240 for line in lines)
    assert production["rmsVoltage"] == pytest.approx(sum(line["rmsVoltage"] for line in lines), abs=0.01)
    readings = metered_walk.readings[noon]
    for ct in readings:
        assert ct["activePower"] == pytest.approx(sum(c["activePower"] for c in ct["channels"]), abs=0.01)
        assert ct["voltage"] == pytest.approx(sum(c["voltage"] for c in ct["channels"]), abs=0.01)
    load_lines = [line["whLifetime"] for line in eim(body, "consumption", "total-consumption")["lines"]]
    assert max(load_lines) > 1.5 * min(load_lines), "a house loads its phases unevenly"


def test_whtoday_resets_at_local_midnight(metered_walk: DayWalk) -> None:
    def wh_today(body: dict[str, Any]) -> float:
        return float(eim(body, "production", "production")["whToday"])

    assert wh_today(metered_walk.production[0]) == 0
    assert wh_today(metered_walk.production[-1]) == 0
    day_total = max(wh_today(b) for b in metered_walk.production)
    assert day_total == pytest.approx(wh_today(metered_walk.production[-2]), abs=0.001)
    assert day_total > 10_000
    consumption_today = eim(metered_walk.production[0], "consumption", "total-consumption")["whToday"]
    assert 0 <= consumption_today < 20

    m = model("metered")
    just_after = local_midnight(SUMMER_DAY) + timedelta(minutes=1)
    api = get(m, "/api/v1/production", just_after)
    assert api["wattHoursToday"] == 0
    assert api["wattHoursSevenDays"] > 50_000


def test_late_whtoday_reset_quirk() -> None:
    m = model("metered")
    late = Quirks(late_whtoday_reset=True)
    midnight = local_midnight(SUMMER_DAY)
    yesterday = eim(get(m, "/production.json", midnight - timedelta(minutes=1)), "production", "production")
    at_five_past = eim(
        get(m, "/production.json", midnight + timedelta(minutes=5), late), "production", "production"
    )
    assert at_five_past["whToday"] == pytest.approx(yesterday["whToday"], rel=0.01)
    assert at_five_past["whToday"] > 10_000
    at_twenty_past = eim(
        get(m, "/production.json", midnight + timedelta(minutes=20), late), "production", "production"
    )
    assert 0 < at_twenty_past["whToday"] < 100, "the late reset leaves a few Wh, not zero"
    healthy = eim(get(m, "/production.json", midnight + timedelta(minutes=20)), "production", "production")
    assert healthy["whToday"] == 0
    assert healthy["whLifetime"] == at_twenty_past["whLifetime"], "the quirk touches only whToday"


def test_counter_wrap_drops_the_inverters_entry_by_two_to_the_32_joules() -> None:
    m = model("metered")
    now = datetime(2025, 8, 1, 13, 0, tzinfo=UTC)
    wrapped = Quirks(counter_wrap_at=now - timedelta(hours=1))
    before = get(m, "/production.json", now)["production"][0]["whLifetime"]
    after = get(m, "/production.json", now, wrapped)["production"][0]["whLifetime"]
    assert before - after == pytest.approx(WRAP_WH, abs=1)
    not_yet = Quirks(counter_wrap_at=now + timedelta(hours=1))
    assert get(m, "/production.json", now, not_yet)["production"][0]["whLifetime"] == before

    plain = get(m, "/ivp/pdm/device_data", now)
    bent = get(m, "/ivp/pdm/device_data", now, wrapped)
    drops = {
        eid: plain[eid]["channels"][0]["lifetime"]["joulesProduced"]
        - bent[eid]["channels"][0]["lifetime"]["joulesProduced"]
        for eid in plain
        if eid.isdigit() and plain[eid]["devName"] == "pcu"
    }
    assert sorted(drops.values()) == [0] * (len(drops) - 1) + [2**32]
    assert all(bent[eid]["channels"][0]["lifetime"]["joulesProduced"] > 0 for eid in drops)


def test_device_data_lists_at_most_fifty_devices() -> None:
    big = GatewayModel(dataclasses.replace(PROFILES["metered"], inverter_count=60))
    now = datetime(2025, 6, 21, 12, 0, tzinfo=UTC)
    data = get(big, "/ivp/pdm/device_data", now)
    devices = {k: v for k, v in data.items() if k.isdigit()}
    assert len(devices) == 50
    assert (data["deviceCount"], data["deviceDataLimit"]) == (50, 50)
    assert len(get(big, "/api/v1/production/inverters", now)) == 60
    listed = {d["sn"] for d in devices.values()}
    assert listed < set(big.inverter_serials())


def test_device_data_agrees_with_the_inverter_reports() -> None:
    m = model("metered")
    now = datetime(2025, 6, 21, 13, 2, tzinfo=UTC)
    data = get(m, "/ivp/pdm/device_data", now)
    reports = {r["serialNumber"]: r for r in get(m, "/api/v1/production/inverters", now)}
    pcus = [d for k, d in data.items() if k.isdigit() and d["devName"] == "pcu"]
    assert len(pcus) == 30
    for device in pcus:
        channel = device["channels"][0]
        report = reports[device["sn"]]
        reading = channel["lastReading"]
        assert reading["endDate"] == report["lastReportDate"]
        assert channel["watts"]["now"] == report["lastReportWatts"]
        assert channel["watts"]["max"] == report["maxReportWatts"]
        assert reading["joulesProduced"] == pytest.approx(
            report["lastReportWatts"] * reading["duration"], abs=900
        )
        assert 225_000 < reading["acVoltageINmV"] < 240_000
        assert 49_900 < reading["acFrequencyINmHz"] < 50_100
        assert channel["wattHours"]["today"] > 0
        assert channel["wattHours"]["week"] >= channel["wattHours"]["today"]
    local = now.astimezone(AMSTERDAM)
    midnight = local_midnight(local)
    serial = pcus[0]["sn"]
    expected_today = m.inverter_wh(
        serial, midnight, datetime.fromtimestamp(reports[serial]["lastReportDate"], UTC)
    )
    assert pcus[0]["channels"][0]["wattHours"]["today"] == pytest.approx(expected_today, abs=1)
    eims = [d for k, d in data.items() if k.isdigit() and d["devName"] == "eim"]
    assert {d["sn"] for d in eims} == {f"{m.profile.serial}EIM1", f"{m.profile.serial}EIM2"}


def test_a_restarted_model_shows_the_same_counters_whatever_was_asked_before() -> None:
    when = datetime(2025, 9, 3, 14, 7, 30, tzinfo=UTC)
    # Another profile object with the same site: a fresh model with cold caches, asked in another order.
    twin = GatewayModel(dataclasses.replace(PROFILES["battery"], name="battery-twin"))
    later = get(twin, "/production.json", when + timedelta(days=40), details="1")
    assert later["production"][1]["whLifetime"] > 0
    for path in (
        "/production.json",
        "/ivp/meters/readings",
        "/ivp/ensemble/secctrl",
        "/api/v1/production/inverters",
    ):
        assert get(twin, path, when) == get(model("battery"), path, when)


def test_summer_days_are_long_and_strong_winter_days_short_and_weak() -> None:
    m = model("standard")
    summer = [
        m.production_wh(
            local_midnight(SUMMER_DAY + timedelta(days=d)), local_midnight(SUMMER_DAY + timedelta(days=d + 1))
        )
        for d in range(14)
    ]
    winter_day = datetime(2024, 12, 21, tzinfo=AMSTERDAM)
    winter = [
        m.production_wh(
            local_midnight(winter_day + timedelta(days=d)), local_midnight(winter_day + timedelta(days=d + 1))
        )
        for d in range(14)
    ]
    assert sum(summer) > 3 * sum(winter)
    assert min(summer) < 0.7 * max(summer), "passing clouds make some days duller than others"
    year = m.production_wh(datetime(2024, 1, 1, tzinfo=UTC), datetime(2025, 1, 1, tzinfo=UTC))
    kwp = m.profile.inverter_count * m.profile.peak_watts_per_inverter / 1000
    assert 700 < year / 1000 / kwp < 1200, "the Netherlands give some 900 kWh per kWp a year"


def test_standard_profile_counters_and_endpoints() -> None:
    m = model("standard")
    previous = (0, 0)
    awake = 0
    for t in minutes(SUMMER_DAY, step=2):
        body = get(m, "/production.json", t)
        assert [e["type"] for e in body["production"]] == ["inverters"]
        api = get(m, "/api/v1/production", t)
        entry = body["production"][0]
        current = (entry["whLifetime"], api["wattHoursLifetime"])
        assert current >= previous
        assert api["wattHoursLifetime"] == entry["whLifetime"]
        assert api["wattsNow"] == entry["wNow"]
        awake += entry["readingTime"] > 0
        previous = current
    assert 0.5 < awake / (24 * 30) < 0.8, "a midsummer day in Amsterdam has some 16 hours of light"
    assert get(m, "/ivp/meters", SUMMER_DAY) == []
    assert get(m, "/ivp/meters/readings", SUMMER_DAY) == []
    assert get(m, "/ivp/ensemble/inventory", SUMMER_DAY) == []
    assert get(m, "/ivp/ensemble/power", SUMMER_DAY) == {"devices:": []}
    assert m.render("/ivp/pdm/device_data", {}, SUMMER_DAY, HEALTHY) is None


def test_legacy_firmware_has_no_ivp_endpoints() -> None:
    m = model("legacy")
    for path in ("/ivp/meters", "/ivp/meters/readings", "/ivp/ensemble/inventory", "/ivp/pdm/device_data"):
        assert m.render(path, {}, SUMMER_DAY, HEALTHY) is None
    assert m.render("/nope", {}, SUMMER_DAY, HEALTHY) is None
    info = m.render("/info", {}, SUMMER_DAY, HEALTHY)
    assert info is not None and info.content_type == "text/xml"
    root = parse_xml(info.data)
    assert root.findtext("device/software") == "D5.0.62"
    assert root.find("web-tokens") is None
    assert len(get(m, "/api/v1/production/inverters", SUMMER_DAY)) == 12


def test_info_follows_the_firmware_quirk() -> None:
    m = model("metered")
    when = datetime(2025, 6, 21, 12, 0, tzinfo=UTC)
    body = m.render("/info", {}, when, Quirks(firmware="8.3.5433"))
    assert body is not None
    root = parse_xml(body.data)
    assert root.findtext("device/software") == "D8.3.5433"
    assert root.findtext("device/sn") == m.profile.serial
    assert root.findtext("device/imeter") == "true"
    assert root.findtext("web-tokens") == "true"
    assert root.findtext("time") == str(int(when.timestamp()))


def test_battery_charges_from_surplus_and_discharges_in_the_evening() -> None:
    m = model("battery")
    charging = discharging = 0
    for t in minutes(SUMMER_DAY, step=3):
        secctrl = get(m, "/ivp/ensemble/secctrl", t)
        power = get(m, "/ivp/ensemble/power", t)["devices:"]
        inventory = get(m, "/ivp/ensemble/inventory", t)
        production = get(m, "/production.json", t)
        batteries = inventory[0]["devices"]
        assert inventory[0]["type"] == "ENCHARGE" and len(batteries) == 2
        assert {b["serial_num"] for b in batteries} == {d["serial_num"] for d in power}
        soc = secctrl["agg_soc"]
        assert 0 <= soc <= 100
        assert all(abs(b["percentFull"] - soc) <= 1 for b in batteries)
        assert secctrl["ENC_agg_avail_energy"] == pytest.approx(soc / 100 * secctrl["Max_energy"], abs=60)
        watts = sum(d["real_power_mw"] for d in power) / 1000
        net = eim(production, "consumption", "net-consumption")["wNow"]
        if watts < -50:  # negative while charging, from surplus only: the site is not importing then
            charging += 1
            assert net <= 5
        if watts > 50:
            discharging += 1
    assert charging > 10 and discharging > 10
    evening = datetime(2025, 6, 21, 23, 0, tzinfo=AMSTERDAM)
    power = get(m, "/ivp/ensemble/power", evening)["devices:"]
    assert sum(d["real_power_mw"] for d in power) > 0, "in the evening the batteries feed the house"


def test_battery_profile_counters_never_decrease() -> None:
    m = model("battery")
    previous: dict[str, float] | None = None
    for t in minutes(SUMMER_DAY, step=2):
        current = counters(get(m, "/production.json", t, details="1"), get(m, "/ivp/meters/readings", t))
        if previous is not None:
            assert not [name for name, value in current.items() if value < previous[name]], t
        previous = current


def test_inverter_serials_are_stable_twelve_digit_strings() -> None:
    serials = model("metered").inverter_serials()
    assert len(serials) == len(set(serials)) == 30
    assert all(len(s) == 12 and s.isdigit() for s in serials)
    assert GatewayModel(PROFILES["metered"]).inverter_serials() == serials
    assert GatewayModel(PROFILES["metered"], seed=2).inverter_serials() != serials


# --- the quirk profiles (SPEC section 4; tests/test_quirks.py runs the collector against them) ----------


def test_the_quirk_profiles_keep_their_site_and_change_only_what_they_name() -> None:
    t = SUMMER_DAY + timedelta(hours=12)
    for name, base in (("zero-api", "standard"), ("metered-no-cts", "standard"), ("stalled-api", "standard")):
        ours, theirs = get(model(name), "/production.json", t), get(model(base), "/production.json", t)
        assert ours["production"][0] == theirs["production"][0]  # the same inverters, the same counters
    live = get(model("standard"), "/api/v1/production", t)
    assert get(model("zero-api"), "/api/v1/production", t) == live | {
        "wattHoursToday": 0,
        "wattHoursSevenDays": 0,
        "wattHoursLifetime": 0,
    }
    stalled = get(model("stalled-api"), "/api/v1/production", t)
    assert stalled == get(model("stalled-api"), "/api/v1/production", t + timedelta(hours=3))
    assert stalled["wattHoursLifetime"] < live["wattHoursLifetime"]
    metered = get(model("metered"), "/production.json", t, details="1")
    assert (
        get(model("total-is-net"), "/production.json", t, details="1")["production"] == metered["production"]
    )


def test_total_is_net_repeats_the_net_entry_under_the_total_name() -> None:
    body = get(model("total-is-net"), "/production.json", SUMMER_DAY, details="1")
    total, net = eim(body, "consumption", "total-consumption"), eim(body, "consumption", "net-consumption")
    assert total == net | {"measurementType": "total-consumption"}


def test_disabled_cts_are_listed_as_disabled_and_their_entries_inactive() -> None:
    t = SUMMER_DAY + timedelta(hours=12)
    meters = get(model("metered-no-cts"), "/ivp/meters", t)
    assert [(m["measurementType"], m["state"]) for m in meters] == [
        ("production", "disabled"),
        ("net-consumption", "disabled"),
    ]
    body = get(model("metered-no-cts"), "/production.json", t, details="1")
    inverters, production = body["production"]
    assert production["activeCount"] == 0 and production["wNow"] != inverters["wNow"]
    assert [e["activeCount"] for e in body["consumption"]] == [0, 0]
    assert len(get(model("metered-no-cts"), "/ivp/meters/readings", t)) == 2


def test_phantom_channels_read_zero_and_scrambled_readings_hold_an_unlisted_ct() -> None:
    m = model("phantom-channels")
    listed = [meter["eid"] for meter in get(m, "/ivp/meters", SUMMER_DAY)]
    assert {meter["phaseCount"] for meter in get(m, "/ivp/meters", SUMMER_DAY)} == {1}
    readings = get(m, "/ivp/meters/readings", SUMMER_DAY + timedelta(hours=12))
    assert [r["eid"] for r in readings] == [704643840, *listed[::-1]]
    for reading in readings:
        first, *phantoms = reading["channels"]
        assert first["activePower"] == reading["activePower"] != 0
        assert len(phantoms) == 2
        assert all(
            value == 0 for c in phantoms for key, value in c.items() if key not in ("eid", "timestamp")
        )


def test_ac_batteries_charge_by_day_and_discharge_at_night_in_one_storage_entry() -> None:
    m = model("acb")
    seen = set()
    for t in minutes(SUMMER_DAY, step=30):
        (acb,) = get(m, "/production.json", t)["storage"]
        assert acb["activeCount"] == 3 and 0 <= acb["percentFull"] <= 100
        assert acb["whNow"] == pytest.approx(acb["percentFull"] / 100 * 3600, abs=20)
        expected = "charging" if acb["wNow"] < 0 else "discharging" if acb["wNow"] > 0 else None
        assert expected in (acb["state"], None)
        seen.add(acb["state"])
        secctrl = get(m, "/ivp/ensemble/secctrl", t)
        assert (secctrl["ACB_agg_soc"], secctrl["ACB_agg_energy"]) == (acb["percentFull"], acb["whNow"])
    assert {"charging", "discharging"} <= seen
    assert get(m, "/ivp/ensemble/inventory", SUMMER_DAY) == []  # no Encharge units
    listed = get(m, "/api/v1/production/inverters", SUMMER_DAY)
    assert [i["devType"] for i in listed] == [1] * 12 + [11] * 3  # and among the inverters, as devType 11


def test_html_only_firmware_serves_xml_info_and_html_for_everything_else() -> None:
    m = model("html-only")
    info = m.render("/info", {}, SUMMER_DAY, HEALTHY)
    assert info is not None and parse_xml(info.data).findtext("device/software") == "D3.7.0"
    for path in ("/production.json", "/api/v1/production", "/api/v1/production/inverters", "/nowhere"):
        page = m.render(path, {}, SUMMER_DAY, HEALTHY)
        assert page is not None and page.content_type == "text/html"
        assert page.data.lstrip().startswith(b"<!DOCTYPE html")


def test_the_boot_quirk_zeros_the_inverters_sums_until_it_ends() -> None:
    m = model("booting")
    t = SUMMER_DAY + timedelta(hours=12)
    booting = Quirks(booting_until=t + timedelta(minutes=5))
    assert set(get(m, "/api/v1/production", t, booting).values()) == {0}
    assert get(m, "/api/v1/production", t + timedelta(minutes=5), booting)["wattHoursLifetime"] > 0
    assert get(m, "/api/v1/production/inverters", t, booting) == get(m, "/api/v1/production/inverters", t)
    body = m.render("/production.json", {}, t, booting)  # firmware 3.9 serves this one as HTML
    assert body is not None and body.content_type == "text/html"


# --- the payloads have the shapes of real gateways' answers -------------------------------------------


def shape(value: Any, path: str = "") -> set[str]:
    """Every key path of a JSON document with the kind of value found there; list items merged."""
    if isinstance(value, dict):
        out = {f"{path}:object"}
        for key, item in value.items():
            name = "<eid>" if key.isdigit() else key  # device_data is keyed by device id
            out |= shape(item, f"{path}/{name}")
        return out
    if isinstance(value, list):
        out = {f"{path}:array"}
        for item in value:
            out |= shape(item, f"{path}[]")
        return out
    if isinstance(value, bool):
        kind = "bool"
    elif isinstance(value, int | float):
        kind = "number"
    elif value is None:
        kind = "null"
    else:
        kind = "string"
    return {f"{path}:{kind}"}


def xml_shape(element: ET.Element, path: str = "") -> set[str]:
    here = f"{path}/{element.tag}"
    out = {here} | {f"{here}@{name}" for name in element.attrib}
    for child in element:
        out |= xml_shape(child, here)
    return out


def capture(folder: str, name: str) -> bytes:
    if not CAPTURES.is_dir():
        pytest.skip(f"the real gateway captures are not there ({CAPTURES.name} beside the project)")
    return (CAPTURES / folder / name).read_bytes()


NOON = datetime(2025, 6, 21, 11, 0, tzinfo=UTC)
SHAPES = [
    ("standard", "/production.json", {}, "7.6.175_standard", "production.json"),
    ("standard", "/api/v1/production", {}, "7.6.175_standard", "api_v1_production"),
    ("standard", "/api/v1/production/inverters", {}, "7.6.175_standard", "api_v1_production_inverters"),
    ("standard", "/ivp/ensemble/inventory", {}, "7.6.175_standard", "ivp_ensemble_inventory"),
    ("standard", "/ivp/ensemble/power", {}, "7.6.175_standard", "ivp_ensemble_power"),
    (
        "metered",
        "/production.json",
        {"details": "1"},
        "8.2.4345_with_device_data",
        "production.json_details_1",
    ),
    ("metered", "/production.json", {}, "8.2.4345_with_device_data", "production.json"),
    ("metered", "/api/v1/production", {}, "8.2.4345_with_device_data", "api_v1_production"),
    (
        "metered",
        "/api/v1/production/inverters",
        {},
        "8.2.4345_with_device_data",
        "api_v1_production_inverters",
    ),
    ("metered", "/ivp/meters", {}, "8.2.4345_with_device_data", "ivp_meters"),
    ("metered", "/ivp/meters/readings", {}, "7.6.175_with_cts_3phase", "ivp_meters_readings"),
    ("metered", "/ivp/meters/readings", {}, "8.2.4345_with_device_data", "ivp_meters_readings"),
    ("metered", "/ivp/pdm/device_data", {}, "8.2.4345_with_device_data", "ivp_pdm_device_data"),
    ("metered", "/ivp/ensemble/secctrl", {}, "8.2.4345_with_device_data", "ivp_ensemble_secctrl"),
    ("metered", "/home.json", {}, "7.6.175", "home"),
    ("battery", "/production.json", {}, "8.2.127_with_3cts_and_battery_split", "production.json"),
    ("battery", "/ivp/ensemble/power", {}, "8.2.127_with_3cts_and_battery_split", "ivp_ensemble_power"),
    ("battery", "/ivp/ensemble/secctrl", {}, "8.2.127_with_3cts_and_battery_split", "ivp_ensemble_secctrl"),
    ("legacy", "/production.json", {}, "5.0.49", "production.json"),
    ("legacy", "/api/v1/production", {}, "5.0.49", "api_v1_production"),
    ("legacy", "/api/v1/production/inverters", {}, "5.0.49", "api_v1_production_inverters"),
    # The quirk profiles (SPEC section 4) against gateways that show the same quirk.
    ("metered-no-cts", "/production.json", {}, "7.3.466_metered_disabled_cts", "production.json"),
    ("metered-no-cts", "/ivp/meters/readings", {}, "7.3.466_metered_disabled_cts", "ivp_meters_readings"),
    ("metered-no-cts", "/api/v1/production", {}, "7.3.466_metered_disabled_cts", "api_v1_production"),
    ("acb", "/production.json", {"details": "1"}, "8.2.4382_ACB", "production.json"),
    ("acb", "/ivp/meters", {}, "8.2.4382_ACB", "ivp_meters"),
    ("acb", "/ivp/meters/readings", {}, "8.2.4382_ACB", "ivp_meters_readings"),
    ("acb", "/ivp/ensemble/secctrl", {}, "8.2.4382_ACB", "ivp_ensemble_secctrl"),
    ("acb", "/api/v1/production/inverters", {}, "8.2.4382_ACB", "api_v1_production_inverters"),
    ("booting", "/api/v1/production", {}, "3.9.36", "api_v1_production"),
]


@pytest.mark.parametrize(("profile", "path", "query", "folder", "name"), SHAPES)
def test_json_shapes_match_real_captures(
    profile: str, path: str, query: dict[str, str], folder: str, name: str
) -> None:
    theirs = shape(json.loads(capture(folder, name)))
    ours = shape(get(model(profile), path, NOON, **query))
    assert ours == theirs


def test_encharge_devices_have_the_keys_of_a_real_inventory() -> None:
    theirs = json.loads(capture("8.2.127_with_3cts_and_battery_split", "ivp_ensemble_inventory"))
    ours = get(model("battery"), "/ivp/ensemble/inventory", NOON)

    def encharge(inventory: list[dict[str, Any]]) -> set[str]:
        return set().union(
            *(shape(d) for kind in inventory if kind["type"] == "ENCHARGE" for d in kind["devices"])
        )

    assert encharge(ours) == encharge(theirs)
    assert [kind["type"] for kind in ours] == ["ENCHARGE", "ENPOWER"]


@pytest.mark.parametrize(
    ("profile", "folder"), [("metered", "8.2.4345_with_device_data"), ("legacy", "5.0.49")]
)
def test_info_xml_shape_matches_real_captures(profile: str, folder: str) -> None:
    theirs = xml_shape(parse_xml(capture(folder, "info")))
    body = model(profile).render("/info", {}, NOON, HEALTHY)
    assert body is not None
    assert xml_shape(parse_xml(body.data)) == theirs
