"""The shapes of the gateway's answers: plain values in, JSON-ready dicts and /info XML out."""

# Key names, nesting and value types follow real gateways' answers. Reactive and apparent quantities are
# not modelled physically: they follow active power and energy with fixed ratios, which keeps their
# lifetime counters monotonic like the real ones.

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from xml.sax.saxutils import escape

import numpy as np
from numpy.typing import NDArray

JsonDict = dict[str, Any]

PRODUCTION = "production"
NET_CONSUMPTION = "net-consumption"
TOTAL_CONSUMPTION = "total-consumption"
STORAGE = "storage"

# Identifiers the gateway gives its CTs and their phase channels.
CT_EIDS = {PRODUCTION: 704643328, NET_CONSUMPTION: 704643584, STORAGE: 704643840}
CHANNEL_EIDS = {PRODUCTION: 1778385169, NET_CONSUMPTION: 1778385425, STORAGE: 1778385681}
DEVICE_DATA_LIMIT = 50
WRAP_JOULES = 2**32


@dataclass(frozen=True)
class Channel:
    """One phase of a CT at one moment: power and counters in the CT's own direction."""

    watts: float
    dlvd_wh: float  # lifetime energy in the positive direction (production, import, consumption)
    rcvd_wh: float  # lifetime energy in the negative direction (night draw, export)
    today_wh: float  # whToday as the gateway shows it (quirks included)
    seven_days_wh: float
    volts: float
    freq_hz: float
    yesterday_wh: float = 0.0
    max_watts: float = 0.0


@dataclass(frozen=True)
class Ct:
    """A current transformer (or the total the gateway derives from two of them), phase by phase."""

    measurement: str  # PRODUCTION, NET_CONSUMPTION, TOTAL_CONSUMPTION or STORAGE
    phases: tuple[Channel, ...]
    label: str | None = None  # the measurementType production.json prints, when firmware gets it wrong

    @property
    def watts(self) -> float:
        """Power summed over phases."""
        return sum(c.watts for c in self.phases)

    @property
    def dlvd_wh(self) -> float:
        """Lifetime positive energy summed over phases."""
        return sum(c.dlvd_wh for c in self.phases)

    @property
    def rcvd_wh(self) -> float:
        """Lifetime negative energy summed over phases."""
        return sum(c.rcvd_wh for c in self.phases)


@dataclass(frozen=True)
class InverterReport:
    """What one micro-inverter last reported, and what the gateway keeps about it."""

    serial: str
    eid: int
    reported_at: int  # end of the latest report interval (epoch s)
    watts: int  # average power over that interval
    max_watts: int
    interval_s: int
    interval_joules: int
    lifetime_joules: int  # the inverter's own register
    created_at: int
    today_wh: int
    yesterday_wh: int
    week_wh: int
    ac_volts: float
    ac_freq_hz: float
    dc_volts: float
    temp_c: int


@dataclass(frozen=True)
class InvertersTotal:
    """The production.json `inverters` entry."""

    active_count: int
    reading_time: int  # 0 at night
    watts: int
    wh_lifetime: int


@dataclass(frozen=True)
class AcBattery:
    """The AC Batteries of a site, which the gateway reports only in aggregate."""

    count: int
    reported_at: int
    watts: float  # positive while discharging, negative while charging
    wh_now: float
    soc_percent: float


@dataclass(frozen=True)
class Battery:
    """One Encharge / IQ Battery unit."""

    serial: str
    soc_percent: float
    watts: float  # positive while discharging, negative while charging
    capacity_wh: int
    phase: str
    installed_at: int
    reported_at: int
    temp_c: int


def _r3(value: float) -> float:
    """Three decimals, as the gateway prints meter values; never -0.0."""
    return round(value, 3) + 0.0


# Per measurement: (reactive var per W, standing var per phase, varh-lead, varh-lag, vah per Wh).
_REACTIVE = {
    PRODUCTION: (0.04, 0.0, 0.002, 0.05, 1.02),
    NET_CONSUMPTION: (0.2, 150.0, 0.21, 0.18, 1.25),
    TOTAL_CONSUMPTION: (0.25, 120.0, 0.15, 0.12, 1.3),
    STORAGE: (0.05, 15.0, 0.01, 0.02, 1.05),
}
_NIGHT_VAR = 25.0  # the inverters' AC filters at night, as a production CT sees them


def _power_triangle(measurement: str, watts: float) -> tuple[float, float, float]:
    """(reactive var, apparent VA, power factor) for one phase."""
    per_watt, standing, _, _, _ = _REACTIVE[measurement]
    if measurement == PRODUCTION:
        var = per_watt * watts if watts > 0 else _NIGHT_VAR
    else:
        var = -(standing + per_watt * abs(watts))
    apparent = math.hypot(watts, var)
    return var, apparent, (watts / apparent if apparent else 0.0)


def power_triangles(measurement: str, watts: NDArray[np.float64]) -> tuple[NDArray[np.float64], ...]:
    """`_power_triangle` for an array of watts: (reactive var, apparent VA)."""
    per_watt, standing, _, _, _ = _REACTIVE[measurement]
    if measurement == PRODUCTION:
        var = np.where(watts > 0, per_watt * watts, _NIGHT_VAR)
    else:
        var = -(standing + per_watt * np.abs(watts))
    return var, np.hypot(watts, var)


def _energy_triangle(measurement: str, dlvd: float, rcvd: float) -> tuple[float, float, float]:
    """(varh lead, varh lag, vah) matching the active energies."""
    _, _, lead, lag, vah = _REACTIVE[measurement]
    if measurement == PRODUCTION:
        return lead * dlvd, lag * dlvd + 8.0 * rcvd, vah * dlvd + 9.0 * rcvd
    return lead * (dlvd + rcvd), lag * (dlvd + rcvd), vah * (dlvd + rcvd)


def _power_sums(measurement: str, channels: Sequence[Channel]) -> tuple[float, float, float]:
    """(reactive var, apparent VA, current A) summed over phases, as the gateway adds them."""
    var = apparent = amps = 0.0
    for c in channels:
        phase_var, phase_va, _ = _power_triangle(measurement, c.watts)
        var += phase_var
        apparent += phase_va
        amps += phase_va / c.volts if c.volts else 0.0
    return var, apparent, amps


def _eim_fields(measurement: str, channels: Sequence[Channel]) -> JsonDict:
    """The numbers of a production.json `eim` entry (or one of its `lines`) for these phases."""
    watts = sum(c.watts for c in channels)
    dlvd = sum(c.dlvd_wh for c in channels)
    rcvd = sum(c.rcvd_wh for c in channels)
    var, apparent, amps = _power_sums(measurement, channels)
    lead, lag, vah = _energy_triangle(measurement, dlvd, rcvd)
    if measurement == NET_CONSUMPTION:
        # Real gateways leave the "today" fields of the net-consumption entry at zero.
        wh_lifetime, today, seven = dlvd - rcvd, 0.0, 0.0
    else:
        wh_lifetime = dlvd
        today = sum(c.today_wh for c in channels)
        seven = sum(c.seven_days_wh for c in channels)
    t_lead, t_lag, t_vah = _energy_triangle(measurement, today, 0.0)
    return {
        "wNow": _r3(watts),
        "whLifetime": _r3(wh_lifetime),
        "varhLeadLifetime": _r3(lead),
        "varhLagLifetime": _r3(lag),
        "vahLifetime": _r3(vah),
        "rmsCurrent": _r3(amps),
        "rmsVoltage": _r3(sum(c.volts for c in channels)),
        "reactPwr": _r3(var),
        "apprntPwr": _r3(apparent),
        "pwrFactor": round(watts / apparent, 2) + 0.0 if apparent else 0.0,
        "whToday": _r3(today),
        "whLastSevenDays": _r3(seven),
        "vahToday": _r3(t_vah),
        "varhLeadToday": _r3(t_lead),
        "varhLagToday": _r3(t_lag),
    }


def _eim_entry(ct: Ct, reading_time: int, details: bool, active: bool) -> JsonDict:
    entry: JsonDict = {
        "type": "eim",
        "activeCount": 1 if active else 0,  # 0: no CT behind the entry, whatever its numbers say
        "measurementType": ct.label or ct.measurement,
        "readingTime": reading_time,
        **_eim_fields(ct.measurement, ct.phases),
    }
    if details:
        entry["lines"] = [_eim_fields(ct.measurement, [c]) for c in ct.phases]
    return entry


def _acb_entry(acb: AcBattery | None) -> JsonDict:
    if acb is None:
        return {"type": "acb", "activeCount": 0, "readingTime": 0, "wNow": 0, "whNow": 0, "state": "idle"}
    watts = round(acb.watts)
    if watts < 0:
        state = "charging"
    elif watts > 0:
        state = "discharging"
    else:
        state = "full" if acb.soc_percent >= 99.5 else "idle"
    return {
        "type": "acb",
        "activeCount": acb.count,
        "readingTime": acb.reported_at,
        "wNow": watts,
        "whNow": round(acb.wh_now),
        "state": state,
        "percentFull": round(acb.soc_percent),
    }


def production_json(
    inverters: InvertersTotal,
    production: Ct | None,
    consumption: Sequence[Ct],
    reading_time: int,
    details: bool,
    *,
    cts_active: bool = True,
    acb: AcBattery | None = None,
) -> JsonDict:
    """/production.json: the `inverters` entry, the CTs' `eim` entries, and the AC Battery (idle if none)."""
    entries: list[JsonDict] = [
        {
            "type": "inverters",
            "activeCount": inverters.active_count,
            "readingTime": inverters.reading_time,
            "wNow": inverters.watts,
            "whLifetime": inverters.wh_lifetime,
        }
    ]
    body: JsonDict = {"production": entries}
    if production is not None:
        entries.append(_eim_entry(production, reading_time, details, cts_active))
    if consumption:
        body["consumption"] = [_eim_entry(ct, reading_time, details, cts_active) for ct in consumption]
    body["storage"] = [_acb_entry(acb)]
    return body


def api_v1_production(watts_now: int, wh_today: int, wh_seven_days: int, wh_lifetime: int) -> JsonDict:
    """/api/v1/production."""
    return {
        "wattHoursToday": wh_today,
        "wattHoursSevenDays": wh_seven_days,
        "wattHoursLifetime": wh_lifetime,
        "wattsNow": watts_now,
    }


def api_v1_inverters(reports: Sequence[InverterReport]) -> list[JsonDict]:
    """/api/v1/production/inverters."""
    return [
        {
            "serialNumber": r.serial,
            "lastReportDate": r.reported_at,
            "devType": 1,
            "lastReportWatts": r.watts,
            "maxReportWatts": r.max_watts,
        }
        for r in reports
    ]


def api_v1_ac_batteries(acb: AcBattery, serials: Sequence[str]) -> list[JsonDict]:
    """AC Batteries as /api/v1/production/inverters lists them among the inverters: devType 11."""
    watts = max(0, round(acb.watts / acb.count))  # only what they feed into the house
    return [
        {
            "serialNumber": serial,
            "lastReportDate": acb.reported_at,
            "devType": 11,
            "lastReportWatts": watts,
            "maxReportWatts": 270,
        }
        for serial in serials
    ]


def meters(cts: Sequence[Ct], phases: int, *, enabled: bool = True) -> list[JsonDict]:
    """/ivp/meters: the CTs the gateway has, enabled or (no CT on the port, or switched off) disabled."""
    mode = {1: "single", 2: "split"}.get(phases, "three")
    return [
        {
            "eid": CT_EIDS[ct.measurement],
            "state": "enabled" if enabled else "disabled",
            "measurementType": ct.measurement,
            "phaseMode": mode,
            "phaseCount": phases,
            "meteringStatus": "normal",
            "statusFlags": [],
        }
        for ct in cts
    ]


def _reading(eid: int, timestamp: int, measurement: str, channels: Sequence[Channel]) -> JsonDict:
    watts = sum(c.watts for c in channels)
    dlvd = sum(c.dlvd_wh for c in channels)
    rcvd = sum(c.rcvd_wh for c in channels)
    var, apparent, amps = _power_sums(measurement, channels)
    lead, lag, vah = _energy_triangle(measurement, dlvd, rcvd)
    return {
        "eid": eid,
        "timestamp": timestamp,
        "actEnergyDlvd": _r3(dlvd),
        "actEnergyRcvd": _r3(rcvd),
        "apparentEnergy": _r3(vah),
        "reactEnergyLagg": _r3(lag),
        "reactEnergyLead": _r3(lead),
        "instantaneousDemand": _r3(watts),
        "activePower": _r3(watts),
        "apparentPower": _r3(apparent),
        "reactivePower": _r3(var),
        "pwrFactor": round(watts / apparent, 3) + 0.0 if apparent else 0.0,
        "voltage": _r3(sum(c.volts for c in channels)),
        "current": _r3(amps),
        "freq": _r3(channels[0].freq_hz),
    }


def _silent_reading(eid: int, timestamp: int) -> JsonDict:
    """A channel with nothing connected: every value zero."""
    template = _reading(eid, timestamp, PRODUCTION, [Channel(0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0)])
    return {key: value if key in ("eid", "timestamp") else 0.0 for key, value in template.items()}


def meters_readings(cts: Sequence[Ct], timestamp: int, channels: int = 0) -> list[JsonDict]:
    """/ivp/meters/readings: per CT the totals, and per phase its `channels` (padded to `channels`)."""
    out = []
    for ct in cts:
        first = CHANNEL_EIDS[ct.measurement]
        reading = _reading(CT_EIDS[ct.measurement], timestamp, ct.measurement, ct.phases)
        reading["channels"] = [
            _reading(first + i, timestamp, ct.measurement, [c]) for i, c in enumerate(ct.phases)
        ] + [_silent_reading(first + i, timestamp) for i in range(len(ct.phases), channels)]
        out.append(reading)
    return out


def _pcu_device(r: InverterReport) -> JsonDict:
    amps = r.watts / r.ac_volts if r.ac_volts else 0.0
    dc_amps = r.watts / 0.965 / r.dc_volts if r.dc_volts else 0.0
    chan_eid = 1627390225 + (r.eid - 553648384)
    return {
        "devName": "pcu",
        "sn": r.serial,
        "active": True,
        "modGone": False,
        "channels": [
            {
                "chanEid": chan_eid,
                "created": r.reported_at,
                "wattHours": {"today": r.today_wh, "yesterday": r.yesterday_wh, "week": r.week_wh},
                "watts": {"now": r.watts, "nowUsed": 0, "max": r.max_watts},
                "lastReading": {
                    "eid": chan_eid,
                    "interval_type": 0,
                    "endDate": r.reported_at,
                    "duration": r.interval_s,
                    "flags": 0,
                    "flags_hex": "0x0000000000000000",
                    "joulesProduced": r.interval_joules,
                    "acVoltageINmV": round(r.ac_volts * 1000),
                    "acFrequencyINmHz": round(r.ac_freq_hz * 1000),
                    "dcVoltageINmV": round(r.dc_volts * 1000) if r.watts else 0,
                    "dcCurrentINmA": round(dc_amps * 1000),
                    "channelTemp": r.temp_c,
                    "pwrConvErrSecs": 0,
                    "pwrConvMaxErrCycles": 0,
                    "joulesUsed": 0,
                    "leadingVArs": 0,
                    "laggingVArs": round(0.15 * r.watts),
                    "acCurrentInmA": round(amps * 1000),
                    "l1NAcVoltageInmV": 0,
                    "l2NAcVoltageInmV": 0,
                    "l3NAcVoltageInmV": 0,
                    "rssi": 110,
                    "issi": 68,
                },
                "lifetime": {
                    "createdTime": r.created_at,
                    "duration": max(0, r.reported_at - r.created_at),
                    "joulesProduced": r.lifetime_joules,
                },
            }
        ],
    }


@dataclass(frozen=True)
class EimDevice:
    """A CT as /ivp/pdm/device_data lists it: its last 15-minute reading, phase by phase."""

    serial: str
    eid: int
    chan_eid: int
    created_at: int
    end_at: int  # end of the last 15-minute interval
    main: Ct  # what `wh_dlvd_cum` and `curr_w` follow
    split: Ct  # what `wh_pos` / `wh_neg` follow


def _eim_device(dev: EimDevice) -> JsonDict:
    channels = []
    for i, (c, s) in enumerate(zip(dev.main.phases, dev.split.phases, strict=True)):
        lead, lag, vah = _energy_triangle(dev.main.measurement, c.dlvd_wh, c.rcvd_wh)
        values = {"createdTime": dev.created_at, "duration": dev.end_at - dev.created_at}
        cumulative = {"wh_dlvd_cum": round(c.dlvd_wh), "varh_lead_cum": round(lead)}
        cumulative |= {"varh_lag_cum": round(lag), "vah_cum": round(vah)}
        amps = abs(c.watts) / c.volts if c.volts else 0.0
        channels.append(
            {
                "chanEid": dev.chan_eid + i,
                "created": dev.end_at,
                "wattHours": {
                    "today": round(c.today_wh),
                    "yesterday": round(c.yesterday_wh),
                    "week": round(c.seven_days_wh),
                },
                "watts": {"now": round(c.watts), "nowUsed": 0, "max": round(c.max_watts)},
                "lastReading": {
                    "eid": dev.chan_eid + i,
                    "interval_type": 0,
                    "endDate": dev.end_at,
                    "duration": 900,
                    "curr_w": round(c.watts),
                    **cumulative,
                    "rms_mvolt": round(c.volts * 1000),
                    "rms_mamp": round(amps * 1000),
                    "freq_mhz": round(c.freq_hz * 1000),
                    "wh_pos": round(s.dlvd_wh),
                    "wh_neg": round(s.rcvd_wh),
                },
                "lifetime": values | cumulative,
            }
        )
    return {"devName": "eim", "sn": dev.serial, "active": True, "modGone": False, "channels": channels}


def device_data(reports: Sequence[InverterReport], eims: Sequence[EimDevice]) -> JsonDict:
    """/ivp/pdm/device_data: devices keyed by eid, at most DEVICE_DATA_LIMIT of them."""
    devices: list[tuple[int, JsonDict]] = [(r.eid, _pcu_device(r)) for r in reports]
    devices += [(e.eid, _eim_device(e)) for e in eims]
    devices.sort(key=lambda item: item[0])
    listed = devices[:DEVICE_DATA_LIMIT]
    body: JsonDict = {str(eid): device for eid, device in listed}
    body["deviceCount"] = len(listed)
    body["deviceDataLimit"] = DEVICE_DATA_LIMIT
    return body


def ensemble_inventory(batteries: Sequence[Battery], enpower_serial: str, now_s: int) -> list[JsonDict]:
    """/ivp/ensemble/inventory: the batteries, and the system controller that comes with them."""
    if not batteries:
        return []
    encharge = [
        {
            "part_num": "836-01826-r76",
            "serial_num": b.serial,
            "installed": b.installed_at,
            "device_status": ["envoy.global.ok", "prop.done"],
            "last_rpt_date": b.reported_at,
            "admin_state": 6,
            "admin_state_str": "ENCHG_STATE_READY",
            "created_date": b.installed_at,
            "img_load_date": b.installed_at,
            "img_pnum_running": "3.0.6614_rel/31.13",
            "bmu_fw_version": "3.8.63",
            "communicating": True,
            "sleep_enabled": False,
            "percentFull": round(b.soc_percent),
            "temperature": b.temp_c,
            "maxCellTemp": b.temp_c + 1,
            "reported_enc_grid_state": "grid-tied",
            "comm_level_sub_ghz": 4,
            "comm_level_2_4_ghz": 4,
            "led_status": 12 if abs(b.watts) < 1 else 13,
            "dc_switch_off": False,
            "encharge_rev": 3,
            "encharge_capacity": b.capacity_wh,
            "phase": b.phase,
            "der_index": 2,
        }
        for b in batteries
    ]
    installed = min(b.installed_at for b in batteries)
    enpower = {
        "part_num": "860-01801-r70",
        "serial_num": enpower_serial,
        "installed": installed,
        "device_status": ["envoy.global.ok", "prop.done"],
        "last_rpt_date": now_s,
        "admin_state": 24,
        "admin_state_str": "ENPWR_STATE_OPER_CLOSED",
        "created_date": installed,
        "img_load_date": installed,
        "img_pnum_running": "2.7.6360_rel/31.33",
        "communicating": True,
        "temperature": 76,
        "comm_level_sub_ghz": 5,
        "comm_level_2_4_ghz": 5,
        "mains_admin_state": "closed",
        "mains_oper_state": "closed",
        "Enpwr_grid_mode": "grid-tied",
        "Enchg_grid_mode": "multimode-ongrid",
        "Enpwr_relay_state_bm": 975,
        "Enpwr_curr_state_id": 16,
    }
    return [{"type": "ENCHARGE", "devices": encharge}, {"type": "ENPOWER", "devices": [enpower]}]


def ensemble_power(batteries: Sequence[Battery]) -> JsonDict:
    """/ivp/ensemble/power: the key really is "devices:" (with the colon); power in mW."""
    return {
        "devices:": [
            {
                "serial_num": b.serial,
                "real_power_mw": round(b.watts * 1000),
                "apparent_power_mva": round(math.hypot(b.watts, 0.05 * b.watts) * 1000),
                "soc": round(b.soc_percent),
            }
            for b in batteries
        ]
    }


def secctrl(batteries: Sequence[Battery], reserve_percent: int, acb: AcBattery | None = None) -> JsonDict:
    """/ivp/ensemble/secctrl: aggregate state of charge and energy (all zero without batteries)."""
    capacity = sum(b.capacity_wh for b in batteries)
    stored = sum(b.soc_percent / 100.0 * b.capacity_wh for b in batteries)
    soc = round(100.0 * stored / capacity) if capacity else 0
    reserve = reserve_percent if batteries else 0
    body: JsonDict = {"shutdown": False, "freq_bias_hz": 0.0, "voltage_bias_v": 0.0}
    body |= {"freq_bias_hz_q8": 0, "voltage_bias_v_q5": 0}
    for suffix in ("phaseb", "phasec"):
        body |= {f"freq_bias_hz_{suffix}": 0.0, f"voltage_bias_v_{suffix}": 0.0}
        body |= {f"freq_bias_hz_q8_{suffix}": 0, f"voltage_bias_v_q5_{suffix}": 0}
    return body | {
        "configured_backup_soc": reserve,
        "adjusted_backup_soc": reserve,
        "agg_soc": soc,
        "Max_energy": capacity,
        "ENC_agg_soc": soc,
        "ENC_agg_soh": 100 if batteries else 0,
        "ENC_agg_backup_energy": round(capacity * reserve / 100),
        "ENC_agg_avail_energy": round(stored),
        "Enc_commissioned_capacity": capacity,
        "Enc_max_available_capacity": capacity,
        "ACB_agg_soc": round(acb.soc_percent) if acb else 0,
        "ACB_agg_energy": round(acb.wh_now) if acb else 0,
        "VLS_Limit": 10,
        "soc_rec_enabled": True,
        "soc_recovery_entry": 0,
        "soc_recovery_exit": 10,
        "Commission_in_progress": False,
        "ESS_in_progress": False,
    }


@dataclass(frozen=True)
class HomeFacts:
    """What /home.json tells about the gateway's network and radio links."""

    timezone: str
    local_date: str  # MM/DD/YYYY
    local_time: str  # HH:MM
    build_epoch: int
    last_report_at: int
    mac_ethernet: str
    mac_wifi: str
    ip: str
    inverters: int
    batteries: int
    relays: int
    ac_batteries: int = 0


def home_json(facts: HomeFacts) -> JsonDict:
    """/home.json."""
    devices = facts.inverters + facts.batteries + facts.relays + facts.ac_batteries
    return {
        "software_build_epoch": facts.build_epoch,
        "timezone": facts.timezone,
        "current_date": facts.local_date,
        "current_time": facts.local_time,
        "network": {
            "web_comm": True,
            "ever_reported_to_enlighten": True,
            "last_enlighten_report_time": facts.last_report_at,
            "primary_interface": "eth0",
            "interfaces": [
                {
                    "type": "ethernet",
                    "interface": "eth0",
                    "mac": facts.mac_ethernet,
                    "dhcp": True,
                    "ip": facts.ip,
                    "signal_strength": 1,
                    "signal_strength_max": 1,
                    "carrier": True,
                },
                {
                    "signal_strength": 0,
                    "signal_strength_max": 0,
                    "type": "wifi",
                    "interface": "wlan0",
                    "mac": facts.mac_wifi,
                    "dhcp": True,
                    "ip": None,
                    "carrier": False,
                    "supported": True,
                    "present": True,
                    "configured": False,
                    "status": "connecting",
                },
            ],
        },
        "tariff": "single_rate",
        "comm": {
            "num": devices,
            "level": 5,
            "pcu": {"num": facts.inverters, "level": 5},
            "acb": {"num": facts.ac_batteries, "level": 5 if facts.ac_batteries else 0},
            "nsrb": {"num": facts.relays, "level": 5 if facts.relays else 0},
            "esub": {"num": 0, "level": 0},
            "encharge": [
                {
                    "num": facts.batteries,
                    "level": 5 if facts.batteries else 0,
                    "level_24g": 5 if facts.batteries else 0,
                    "level_subg": 5 if facts.batteries else 0,
                }
            ],
        },
        "wireless_connection": [
            {"signal_strength": 0, "signal_strength_max": 0, "type": "BLE", "connected": True}
        ],
    }


# (name, part number, version, build) of the packages /info lists; the app version follows the firmware.
_PACKAGES = [
    ("rootfs", "500-00001-r01", "02.00.00", "1211"),
    ("kernel", "500-00011-r02", "04.04.225", "3eb4d3"),
    ("boot", "590-00019-r01", "02.00.01", "1f421b"),
    ("app", "500-00002-r01", None, "9b3c5f"),
    ("devimg", "500-00005-r01", "01.02.371", "373aab"),
    ("geo", "500-00008-r01", "02.01.24", "a74d96"),
    ("backbone", "500-00010-r01", "07.00.20", "176d57"),
    ("meter", "500-00013-r01", "03.02.08", "eaa252"),
    ("agf", "500-00012-r01", "02.02.00", "40061a"),
    ("security", "500-00016-r01", "02.00.00", "54a6dc"),
]


def info_xml(
    serial: str, part_number: str, firmware: str, metered: bool, now_s: int, build_epoch: int
) -> str:
    """/info: the XML that names the gateway, its firmware and whether it can take CTs."""
    numbers = [int(p) if p.isdigit() else 0 for p in firmware.split(".")[:3]] + [0, 0, 0]
    app_version = f"{numbers[0]:02d}.{numbers[1]:02d}.{numbers[2]:02d}"
    lines = [
        "<?xml version='1.0' encoding='UTF-8'?>",
        "<envoy_info>",
        f"  <time>{now_s}</time>",
        "  <device>",
        f"    <sn>{escape(serial)}</sn>",
        f"    <pn>{escape(part_number)}</pn>",
        f"    <software>D{escape(firmware)}</software>",
        "    <euaid>4c8675</euaid>",
        "    <seqnum>0</seqnum>",
        "    <apiver>1</apiver>",
        f"    <imeter>{'true' if metered else 'false'}</imeter>",
        "  </device>",
    ]
    if numbers[0] >= 7:
        lines.append("  <web-tokens>true</web-tokens>")
    for name, pn, version, build in _PACKAGES:
        lines += [
            f"  <package name='{name}'>",
            f"    <pn>{pn}</pn>",
            f"    <version>{version or app_version}</version>",
            f"    <build>{build}</build>",
            "  </package>",
        ]
    lines += [
        "  <build_info>",
        f"    <build_id>envoy_uber-pkg_{escape(firmware)}:pkg</build_id>",
        f"    <build_time_gmt>{build_epoch}</build_time_gmt>",
        "  </build_info>",
        "</envoy_info>",
    ]
    return "\n".join(lines) + "\n"


HTML = "text/html"


def html_page(title: str) -> str:
    """A page of the gateway's old web interface, which is all that firmware before 3.9 serves."""
    return (
        '<!DOCTYPE html PUBLIC "-//W3C//DTD HTML 4.01//EN">\n'
        '<html lang="en">\n<head>\n'
        f"  <title>{escape(title)}</title>\n"
        '  <meta http-equiv="Content-Type" content="text/html; charset=utf-8">\n'
        "</head>\n<body>\n"
        f"  <h1>Envoy</h1>\n  <h2>{escape(title)}</h2>\n"
        "  <p>This page is made for a web browser.</p>\n"
        "</body>\n</html>\n"
    )
