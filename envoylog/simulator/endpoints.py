"""The simulated gateway's answers: each endpoint rendered from the site, all of them in one table.

site.py says what the hardware does and payloads.py how the JSON is laid out; this module (with cts.py
for the meters) is what the gateway makes of the one for the other: what it sums, what it leaves out, and
how the quirks of its firmware bend the numbers. To add an endpoint, write its renderer and give it a line
in `ENDPOINTS`.
"""

from __future__ import annotations

import dataclasses
import json
import math
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime

from envoylog.simulator import cts
from envoylog.simulator import payloads as pl
from envoylog.simulator.faults import Quirks
from envoylog.simulator.plant import BATTERY_WH, RESERVE_PERCENT, Inverter
from envoylog.simulator.profiles import Profile
from envoylog.simulator.site import Moment, Report, Site
from envoylog.simulator.sky import hash_unit

_WRAP_WH = pl.WRAP_JOULES / 3600.0
_JSON = "application/json"


@dataclass(frozen=True)
class Body:
    """One answer of the gateway: its content type and bytes."""

    content_type: str  # "application/json", "text/xml" (for /info) or "text/html" (old firmware)
    data: bytes
    status: int = 200  # a recorded gateway (simulator/captured.py) also answers 401, 404, 500 ... with a body


@dataclass(frozen=True)
class _Get:
    """One GET being answered: the site at the moment asked about, the query string, the quirks in force."""

    site: Site
    m: Moment
    query: Mapping[str, str]
    quirks: Quirks


def _always(profile: Profile) -> bool:
    return True


def _ivp(profile: Profile) -> bool:
    """Firmware before 7 has none of the /ivp endpoints."""
    return profile.needs_token


def _ivp_device_data(profile: Profile) -> bool:
    return profile.needs_token and profile.device_data


def _ivp_metered(profile: Profile) -> bool:
    return profile.needs_token and profile.metered


@dataclass(frozen=True)
class Endpoint:
    """How the gateway answers GET on one path."""

    render: Callable[[_Get], Body]
    served: Callable[[Profile], bool] = _always  # whether a gateway of this profile has the endpoint at all
    web_page: bool = True  # old firmware may answer with a page of its web interface instead


def _json(build: Callable[[_Get], object]) -> Callable[[_Get], Body]:
    """A renderer of JSON from one that builds the payload."""

    def render(get: _Get) -> Body:
        return Body(_JSON, json.dumps(build(get)).encode())

    return render


# --- the endpoints ------------------------------------------------------------------------------------


def _info(get: _Get) -> Body:
    profile = get.site.profile
    firmware = get.quirks.firmware or profile.firmware
    xml = pl.info_xml(
        profile.serial, profile.part_number, firmware, profile.metered, int(get.m.t), _build(firmware)
    )
    return Body("text/xml", xml.encode())


def _production_json(get: _Get) -> pl.JsonDict:
    site, m, quirks = get.site, get.m, get.quirks
    details = get.query.get("details") == "1"
    inverters = _inverters_total(site, site.reports(m), m, quirks)
    if _booting(m, quirks):
        inverters = dataclasses.replace(inverters, reading_time=0, watts=0, wh_lifetime=0)
    profile = site.profile
    acb = _acb(site, m.t)
    if profile.disabled_cts:
        production, net, total = (cts.unmetered(ct) for ct in cts.readings(site, m, quirks))
        return pl.production_json(
            inverters, production, [total, net], int(m.t), details, cts_active=False, acb=acb
        )
    if not (profile.production_ct or profile.consumption_ct):
        return pl.production_json(inverters, None, [], int(m.t), details, acb=acb)
    production, net, total = cts.readings(site, m, quirks)
    if profile.total_is_net:
        total = dataclasses.replace(net, label=pl.TOTAL_CONSUMPTION)  # a firmware bug, copied faithfully
    # Total consumption is net plus production: without a production CT the gateway cannot give it.
    consumption = ([total] if profile.production_ct else []) + [net]
    return pl.production_json(
        inverters,
        production if profile.production_ct else None,
        consumption if profile.consumption_ct else [],
        int(m.t),
        details,
        acb=acb,
    )


def _api_v1_production(get: _Get) -> pl.JsonDict:
    site, m = get.site, get.m
    mode = site.profile.api_v1_production
    if _booting(m, get.quirks):
        return pl.api_v1_production(0, 0, 0, 0)
    if mode == "stalled":
        # Metered gateways without CTs from firmware 8.2.4264 on: the values stopped moving hours ago.
        m = site.moment(m.midnight(0) - 12 * 3600.0)
    body = _api_v1_live(site, m)
    if mode == "zeros":
        body |= {"wattHoursToday": 0, "wattHoursSevenDays": 0, "wattHoursLifetime": 0}
    return body


def _api_v1_inverters(get: _Get) -> list[pl.JsonDict]:
    site, m = get.site, get.m
    payload = pl.api_v1_inverters([_public_report(site, r, m, get.quirks, False) for r in site.reports(m)])
    acb = _acb(site, m.t)
    if acb is not None:
        payload += pl.api_v1_ac_batteries(acb, site.acb_serials())
    return payload


def _home(get: _Get) -> pl.JsonDict:
    site, t = get.site, get.m.t
    local = datetime.fromtimestamp(t, site.plant.tz)
    mac = [int(float(hash_unit(site.seed, 220, i)) * 256) for i in range(4)]
    profile = site.profile
    return pl.home_json(
        pl.HomeFacts(
            timezone=profile.timezone,
            local_date=local.strftime("%m/%d/%Y"),
            local_time=local.strftime("%H:%M"),
            build_epoch=_build(profile.firmware),
            last_report_at=int(t) - int(t) % 300,
            mac_ethernet="00:1D:C0:{:02X}:{:02X}:{:02X}".format(*mac[:3]),
            mac_wifi="60:E8:5B:{:02X}:{:02X}:{:02X}".format(*mac[1:]),
            ip=f"192.168.1.{20 + mac[3] % 200}",
            inverters=profile.inverter_count,
            batteries=profile.battery_count,
            relays=1 if profile.metered else 0,
            ac_batteries=profile.acb_count,
        )
    )


def _meters(get: _Get) -> list[pl.JsonDict]:
    profile = get.site.profile
    listed = cts.listed(get.site, get.m, get.quirks)
    return pl.meters(listed, profile.phases, enabled=not profile.disabled_cts)


def _meter_readings(get: _Get) -> list[pl.JsonDict]:
    site, m, quirks = get.site, get.m, get.quirks
    profile = site.profile
    # Some firmware gives every CT three channels, those of phases the site lacks reading all zero.
    channels = 3 if profile.phantom_channels else 0
    readings = pl.meters_readings(cts.listed(site, m, quirks), int(m.t), channels)
    if profile.scrambled_readings and readings:
        # Matched by eid only: another order than /ivp/meters, and a CT that /ivp/meters does not list.
        storage = pl.meters_readings([cts.storage(site, m, quirks)], int(m.t), channels)
        readings = storage + readings[::-1]
    return readings


def _device_data(get: _Get) -> pl.JsonDict:
    site, m, quirks = get.site, get.m, get.quirks
    reports = [_public_report(site, r, m, quirks, True) for r in site.reports(m)]
    eims: list[pl.EimDevice] = []
    profile = site.profile
    if profile.production_ct and profile.consumption_ct:
        end = math.floor(m.t / 900.0) * 900.0  # CTs report in quarter hours
        production, net, total = cts.readings(site, site.moment(end), quirks)
        created = int(site.plant.installed_s)
        serial = profile.serial
        eims = [
            pl.EimDevice(f"{serial}EIM1", 704643328, 1778385169, created, int(end), production, production),
            pl.EimDevice(f"{serial}EIM2", 704643584, 1778385425, created, int(end), total, net),
        ]
    return pl.device_data(reports, eims)


def _ensemble_inventory(get: _Get) -> list[pl.JsonDict]:
    t = get.m.t
    return pl.ensemble_inventory(_batteries(get.site, t), get.site.enpower_serial(), int(t))


def _ensemble_power(get: _Get) -> pl.JsonDict:
    return pl.ensemble_power(_batteries(get.site, get.m.t))


def _secctrl(get: _Get) -> pl.JsonDict:
    return pl.secctrl(_batteries(get.site, get.m.t), RESERVE_PERCENT, _acb(get.site, get.m.t))


ENDPOINTS: dict[str, Endpoint] = {
    "/info": Endpoint(_info, web_page=False),  # every firmware answers /info with its XML
    "/info.xml": Endpoint(_info, web_page=False),
    "/production.json": Endpoint(_json(_production_json)),
    "/api/v1/production": Endpoint(_json(_api_v1_production)),
    "/api/v1/production/inverters": Endpoint(_json(_api_v1_inverters)),
    "/home.json": Endpoint(_json(_home)),
    "/ivp/meters": Endpoint(_json(_meters), _ivp),
    "/ivp/meters/readings": Endpoint(_json(_meter_readings), _ivp),
    "/ivp/pdm/device_data": Endpoint(_json(_device_data), _ivp_device_data),
    "/ivp/ensemble/inventory": Endpoint(_json(_ensemble_inventory), _ivp),
    "/ivp/ensemble/power": Endpoint(_json(_ensemble_power), _ivp),
    "/ivp/ensemble/secctrl": Endpoint(_json(_secctrl), _ivp_metered),
}


class GatewayModel(Site):
    """What a gateway with `profile` serves at any simulated time; deterministic for a given seed."""

    def render(self, path: str, query: Mapping[str, str], now: datetime, quirks: Quirks) -> Body | None:
        """The body the gateway serves for GET `path` at `now` (aware); None if it has no such endpoint."""
        path = path.rstrip("/") or "/"
        endpoint = ENDPOINTS.get(path)
        profile = self.profile
        if (endpoint is None or endpoint.web_page) and (profile.html_only or path in profile.html_pages):
            # Old firmware answers with a page of its web interface, with status 200 even for unknown paths.
            return Body(pl.HTML, pl.html_page(path.strip("/") or "home").encode())
        if endpoint is None or not endpoint.served(profile):
            return None
        return endpoint.render(_Get(self, self.moment(now.timestamp()), query, quirks))


# --- inverters ----------------------------------------------------------------------------------------


def _booting(m: Moment, quirks: Quirks) -> bool:
    """Whether the gateway has only just booted (firmware 3.x then reads all-zero production)."""
    return quirks.booting_until is not None and m.t < quirks.booting_until.timestamp()


def _api_v1_live(site: Site, m: Moment) -> pl.JsonDict:
    rows, t = site.rows, m.t
    if site.profile.production_ct:
        pv = rows.phase_rows(rows.pv)
        life = m.lifetime(t)[pv].sum()
        watts = site.plant.power(t)[pv].sum()
        today = life - m.lifetime(m.midnight(0))[pv].sum()
        week = life - m.lifetime(m.midnight(6))[pv].sum()
        return pl.api_v1_production(max(0, round(watts)), round(today), round(week), round(life))
    # Without a production CT the gateway sums what its inverters reported.
    reports = site.reports(m)
    interval = site.profile.report_interval_s
    lifetime = sum(r.lifetime_wh for r in reports)
    midnight, week_ago = m.midnight(0), m.midnight(6)
    today = sum(max(0.0, r.lifetime_wh - m.inverter_lifetime_wh(r.inverter, midnight)) for r in reports)
    week = sum(max(0.0, r.lifetime_wh - m.inverter_lifetime_wh(r.inverter, week_ago)) for r in reports)
    watts = sum(round(r.interval_wh * 3600.0 / interval) for r in reports)
    return pl.api_v1_production(watts, round(today), round(week), round(lifetime))


def _wrapped(site: Site, t: float, quirks: Quirks) -> Inverter | None:
    """The inverter whose 32-bit joule counter has wrapped by `t`, if the quirk is on (one, seeded)."""
    if quirks.counter_wrap_at is None or t < quirks.counter_wrap_at.timestamp():
        return None
    inverters = site.inverters
    return inverters[int(float(hash_unit(site.seed, 90, 0)) * len(inverters))] if inverters else None


def _public_report(site: Site, report: Report, m: Moment, quirks: Quirks, history: bool) -> pl.InverterReport:
    """An inverter's latest report as the gateway shows it; `history`: with /ivp/pdm/device_data's extras."""
    inv = report.inverter
    interval = site.profile.report_interval_s
    reported = report.reported_at if report.reported_at is not None else site.plant.installed_s
    watts = round(report.interval_wh * 3600.0 / interval)
    joules = inv.prior_joules + round(report.lifetime_wh * 3600.0)
    if _wrapped(site, m.t, quirks) is inv:
        joules -= pl.WRAP_JOULES
    energy = [0.0, 0.0, 0.0]  # lifetime Wh at today's, yesterday's and a week ago's midnight
    volts, freq, ambient = 0.0, 0.0, 0.0
    if history:  # only /ivp/pdm/device_data shows these
        for k, back in enumerate((0, 1, 6)):
            energy[k] = m.inverter_lifetime_wh(inv, min(m.midnight(back), reported))
        volts, freq = site.grid_at(reported, inv.phase)
        ambient = site.ambient_c(reported)
    share = watts / inv.max_watts if inv.max_watts else 0.0
    return pl.InverterReport(
        serial=inv.serial,
        eid=inv.eid,
        reported_at=int(reported),
        watts=watts,
        max_watts=inv.max_watts,
        interval_s=interval,
        interval_joules=round(report.interval_wh * 3600.0),
        lifetime_joules=joules,
        created_at=inv.created_at,
        today_wh=round(report.lifetime_wh - energy[0]),
        yesterday_wh=round(energy[0] - energy[1]),
        week_wh=round(report.lifetime_wh - energy[2]),
        ac_volts=volts,
        ac_freq_hz=freq,
        dc_volts=30.0 + 8.0 * share,
        temp_c=round(ambient + 25.0 * share),
    )


def _inverters_total(site: Site, reports: list[Report], m: Moment, quirks: Quirks) -> pl.InvertersTotal:
    """The inverters summed, as production.json's `inverters` entry shows them."""
    interval = site.profile.report_interval_s
    awake = [r.reported_at for r in reports if r.reported_at is not None and r.interval_wh > 0.0]
    lifetime = sum(r.lifetime_wh for r in reports)
    if _wrapped(site, m.t, quirks) is not None:
        lifetime = max(0.0, lifetime - _WRAP_WH)
    return pl.InvertersTotal(
        active_count=len(reports),
        reading_time=int(max(awake)) if awake else 0,
        watts=sum(round(r.interval_wh * 3600.0 / interval) for r in reports),
        wh_lifetime=round(lifetime),
    )


# --- batteries and firmware ---------------------------------------------------------------------------


def _batteries(site: Site, t: float) -> list[pl.Battery]:
    """The Encharge / IQ Batteries, unit by unit."""
    state = site.encharge(t)
    if state is None:
        return []
    each = state.unit_watts
    installed = int(site.plant.installed_s)
    temp_c = round(site.encharge_temp_c(t, each))
    phases = site.profile.phases
    return [
        pl.Battery(
            serial=serial,
            soc_percent=state.soc_percent,
            watts=each,
            capacity_wh=BATTERY_WH,
            phase=f"ph-{'abc'[i % phases]}",
            installed_at=installed,
            reported_at=int(t) - int(t) % 30,
            temp_c=temp_c,
        )
        for i, serial in enumerate(site.battery_serials())
    ]


def _acb(site: Site, t: float) -> pl.AcBattery | None:
    """The AC Batteries in aggregate, as production.json's storage[] entry shows them."""
    state = site.ac_batteries(t)
    if state is None:
        return None
    return pl.AcBattery(
        count=state.count,
        reported_at=int(t) - int(t) % 60,
        watts=state.watts,
        wh_now=state.stored_wh,
        soc_percent=state.soc_percent,
    )


def _build(firmware: str) -> int:
    """A stable build time for a firmware version (epoch s)."""
    return 1_600_000_000 + zlib.crc32(firmware.encode()) % 130_000_000
