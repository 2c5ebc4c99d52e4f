"""Which endpoints a run reads, and how their answers become readings (SPEC section 4)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from envoylog.db.repository import Snapshot
from envoylog.readings import (
    ApiV1Production,
    BatteryReading,
    CtReading,
    DeviceData,
    EnsembleInventory,
    GatewayInfo,
    InverterReading,
    MeterConfig,
    MeterReading,
    ProductionJson,
)

PRODUCTION_JSON = "/production.json?details=1"
API_V1_PRODUCTION = "/api/v1/production"
INVERTERS = "/api/v1/production/inverters"
METERS = "/ivp/meters"
METER_READINGS = "/ivp/meters/readings"
DEVICE_DATA = "/ivp/pdm/device_data"
ENSEMBLE_INVENTORY = "/ivp/ensemble/inventory"
ENSEMBLE_POWER = "/ivp/ensemble/power"

# Inverters report every 5 (or 15) minutes: asking more often only loads the gateway. Batteries change slowly.
SLOW_EVERY = timedelta(minutes=5)


@dataclass(frozen=True)
class Plan:
    """The endpoints of one run, in order."""

    paths: tuple[str, ...]
    discovering: bool  # the first run, or the first after a firmware change: look at everything


def ct_configs(discovery: Mapping[str, Any]) -> list[MeterConfig]:
    """The CTs discovery recorded."""
    return [MeterConfig(**m) for m in discovery.get("meters", [])]


def plan_run(info: GatewayInfo, discovery: Mapping[str, Any], now: datetime) -> Plan:
    """The endpoints to read now: the fast ones every run, at most one due slow one (all when discovering)."""
    discovering = discovery.get("firmware") != info.firmware
    absent = set() if discovering else set(discovery.get("absent", []))
    fast: list[str] = []
    slow: list[str] = []
    modern = info.firmware_version >= (7,)
    cts = ct_configs(discovery)
    if discovering and info.metered and modern:
        fast.append(METERS)
    if info.metered and (discovering or any(ct.enabled for ct in cts)):
        fast += [PRODUCTION_JSON, METER_READINGS] if modern else [PRODUCTION_JSON]
    else:
        fast.append(API_V1_PRODUCTION)
    slow.append(DEVICE_DATA if modern and DEVICE_DATA not in absent else INVERTERS)
    if modern and (discovering or discovery.get("batteries")):
        slow += [ENSEMBLE_INVENTORY, ENSEMBLE_POWER]
    fast = [p for p in fast if p not in absent]
    slow = [p for p in slow if p not in absent]
    if discovering:
        return Plan(tuple(fast + slow), discovering=True)
    polled = discovery.get("polled_at", {})
    due = [p for p in slow if p not in polled or now - datetime.fromisoformat(polled[p]) >= SLOW_EVERY]
    due.sort(key=lambda p: polled.get(p, ""))  # the longest-waiting first
    return Plan(tuple(fast + due[:1]), discovering=False)


@dataclass
class Answers:
    """What the endpoints of one run answered, parsed; None where an endpoint failed or was not asked."""

    production_json: ProductionJson | None = None
    api_v1: ApiV1Production | None = None
    meters: tuple[MeterConfig, ...] | None = None
    meter_readings: tuple[CtReading, ...] | None = None
    inverters: tuple[InverterReading, ...] | None = None
    device_data: DeviceData | None = None
    inventory: EnsembleInventory | None = None
    battery_watts: dict[str, float] | None = None


def build_snapshot(info: GatewayInfo, cts: list[MeterConfig], answers: Answers, now: datetime) -> Snapshot:
    """Choose each series' source by the rules of SPEC section 4 and turn the answers into readings."""
    meters: list[MeterReading] = []
    enabled = {ct.eid: ct for ct in cts if ct.enabled}
    by_type = {ct.measurement_type: ct for ct in enabled.values()}
    readings = {r.eid: r for r in answers.meter_readings or () if r.eid is not None and r.eid in enabled}

    production = _production(answers, readings, by_type, now)
    meters += production
    net = _from_ct(readings, by_type.get("net-consumption"), "net_consumption", balanced=True)
    if not net and answers.production_json is not None:
        net = _from_eim(answers.production_json, "net-consumption", "net_consumption")
    meters += net
    consumption = _from_ct(readings, by_type.get("total-consumption"), "consumption", balanced=False)
    if not consumption and answers.production_json is not None:
        consumption = _from_eim(answers.production_json, "total-consumption", "consumption")
    meters += consumption

    inverters: dict[str, InverterReading] = {i.serial: i for i in answers.inverters or ()}
    if answers.device_data is not None:
        inverters.update({i.serial: i for i in answers.device_data.inverters})

    batteries: list[BatteryReading] = []
    if answers.inventory is not None:
        watts = answers.battery_watts or {}
        batteries += [replace(b, watts=watts.get(b.serial or "")) for b in answers.inventory.batteries]
    if answers.production_json is not None and answers.production_json.acb is not None:
        batteries.append(answers.production_json.acb)
    return Snapshot(meters=meters, inverters=list(inverters.values()), batteries=batteries)


def _production(
    answers: Answers,
    readings: Mapping[int, CtReading],
    by_type: Mapping[str, MeterConfig],
    now: datetime,
) -> list[MeterReading]:
    pj = answers.production_json
    if pj is not None and pj.production_eim is not None and pj.production_eim.active_count > 0:
        return _from_eim(pj, "production", "production")
    from_ct = _from_ct(readings, by_type.get("production"), "production", balanced=False)
    if from_ct:
        return from_ct
    if answers.api_v1 is not None:
        v1 = answers.api_v1
        return [MeterReading("production", 0, "api_v1", now, v1.watts, v1.wh_lifetime)]
    if pj is not None and pj.inverters is not None:
        entry = pj.inverters
        return [
            MeterReading("production", 0, "inverters", entry.read_at or now, entry.watts, entry.wh_lifetime)
        ]
    return []


def _from_eim(pj: ProductionJson, measurement_type: str, kind: str) -> list[MeterReading]:
    if measurement_type == "production":
        entry = pj.production_eim
    else:
        entry = next((e for e in pj.consumption_eims if e.measurement_type == measurement_type), None)
    if entry is None or entry.active_count <= 0:
        return []  # an eim entry without a CT behind it has meaningless numbers
    rows = [
        MeterReading(
            kind,
            0,
            "eim",
            entry.read_at,
            entry.watts,
            entry.wh_lifetime,
            volts=entry.volts,
            amps=entry.amps,
            power_factor=entry.power_factor,
        )
    ]
    if len(entry.lines) > 1:
        rows += [
            MeterReading(
                kind,
                phase,
                "eim",
                entry.read_at,
                line.watts,
                line.wh_lifetime,
                volts=line.volts,
                amps=line.amps,
                power_factor=line.power_factor,
            )
            for phase, line in enumerate(entry.lines, start=1)
        ]
    return rows


def _from_ct(
    readings: Mapping[int, CtReading], ct: MeterConfig | None, kind: str, *, balanced: bool
) -> list[MeterReading]:
    if ct is None or ct.eid not in readings:
        return []
    reading = readings[ct.eid]
    rows = [_ct_row(reading, kind, 0, balanced)]
    channels = reading.channels[: ct.phase_count] if ct.phase_count > 1 else ()
    rows += [_ct_row(channel, kind, phase, balanced) for phase, channel in enumerate(channels, start=1)]
    return rows


def _ct_row(reading: CtReading, kind: str, phase: int, balanced: bool) -> MeterReading:
    delivered, received = reading.wh_delivered_lifetime, reading.wh_received_lifetime
    if balanced:
        lifetime = delivered - received if delivered is not None and received is not None else None
    else:
        lifetime = delivered
    return MeterReading(
        kind,
        phase,
        "meters",
        reading.read_at,
        reading.watts,
        lifetime,
        wh_imported_lifetime=delivered if balanced else None,
        wh_exported_lifetime=received if balanced else None,
        volts=reading.volts,
        amps=reading.amps,
        hz=reading.hz,
        power_factor=reading.power_factor,
    )
