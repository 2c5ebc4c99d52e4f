"""How a run's answers become readings: which endpoint each series comes from, by the gateway's hardware."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime

from envoylog.readings.discovery import Discovery
from envoylog.readings.model import (
    ApiV1Production,
    BatteryReading,
    CtReading,
    DeviceData,
    EimEntry,
    EnsembleInventory,
    GatewayInfo,
    InverterReading,
    MeterConfig,
    MeterKind,
    MeterReading,
    ProductionJson,
    Snapshot,
)

# From this firmware on, a metered gateway without CTs serves /api/v1/production values that never change.
API_V1_STALLS_FROM = (8, 2, 4264)
# From this firmware on, total consumption may be reported equal to net consumption.
TOTAL_IS_NET_FROM = (8, 3, 5433)


def api_v1_stalls(info: GatewayInfo, cts: Sequence[MeterConfig]) -> bool:
    """True where /api/v1/production is known to freeze: metered hardware, no production CT, new firmware."""
    has_production_ct = any(ct.enabled and ct.measurement_type == "production" for ct in cts)
    return info.metered and not has_production_ct and info.firmware_version >= API_V1_STALLS_FROM


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


def learn(discovery: Discovery, answers: Answers) -> None:
    """Record in `discovery` what the answers tell about the gateway's hardware."""
    if answers.meters is not None:
        discovery.meters = answers.meters
    pj = answers.production_json
    if pj is not None:
        discovery.eim_production = _active(pj.production_eim)
        discovery.eim_consumption = any(e.active_count > 0 for e in pj.consumption_eims)
        discovery.acb = pj.acb is not None
    if answers.api_v1 is not None:
        discovery.api_v1_zero = answers.api_v1.energy_all_zero
    if answers.inventory is not None:
        discovery.batteries = bool(answers.inventory.batteries)
    if answers.device_data is not None:
        listed = {i.serial for i in answers.device_data.inverters}
        beyond = answers.inverters is None or any(i.serial not in listed for i in answers.inverters)
        discovery.inverters_beyond_device_data = device_data_cut(answers.device_data) and beyond


def device_data_cut(device_data: DeviceData) -> bool:
    """True when device_data's list is full: larger systems have inverters beyond its cap."""
    count = device_data.device_count if device_data.device_count is not None else len(device_data.inverters)
    return count >= (device_data.limit or 50)


def build_snapshot(
    info: GatewayInfo, cts: Sequence[MeterConfig], answers: Answers, now: datetime
) -> Snapshot:
    """Choose each series' source and turn the answers into readings.

    Production: an active production CT (production.json's eim entry, else /ivp/meters/readings), else
    /api/v1/production where it does not stall or read all zeros, else the inverters' sum. Consumption and net
    consumption: their CTs, matched by eid; a total reported equal to net (newer firmware) is net plus
    production. Inverters: device_data, and /api/v1/production/inverters for those beyond its capped list.
    """
    enabled = {ct.eid: ct for ct in cts if ct.enabled}
    by_type = {ct.measurement_type: ct for ct in enabled.values()}
    # CT readings are matched to /ivp/meters by eid, never by position; unknown eids are ignored.
    readings = {r.eid: r for r in answers.meter_readings or () if r.eid is not None and r.eid in enabled}
    pj = answers.production_json

    production = _production(info, cts, answers, readings, by_type, now)
    net = _from_ct(readings, by_type.get("net-consumption"), "net_consumption", balanced=True)
    if not net and pj is not None:
        net = _from_eim(_consumption_eim(pj, "net-consumption"), "net_consumption")
    consumption = _from_ct(readings, by_type.get("total-consumption"), "consumption", balanced=False)
    if not consumption and pj is not None:
        total_eim = _consumption_eim(pj, "total-consumption")
        net_eim = _consumption_eim(pj, "net-consumption")
        if info.firmware_version >= TOTAL_IS_NET_FROM and _same(total_eim, net_eim) and production:
            # The gateway reports net consumption as total: the house used what came in plus what was made.
            consumption = _sum_by_phase("consumption", _from_eim(net_eim, "net_consumption"), production)
        else:
            consumption = _from_eim(total_eim, "consumption")

    inverters: dict[str, InverterReading] = {i.serial: i for i in answers.inverters or ()}
    if answers.device_data is not None:
        if not device_data_cut(answers.device_data):
            inverters = {}  # a complete device_data list is the whole truth
        inverters.update({i.serial: i for i in answers.device_data.inverters})

    batteries: list[BatteryReading] = []
    if answers.inventory is not None:
        watts = answers.battery_watts or {}
        batteries += [replace(b, watts=watts.get(b.serial or "")) for b in answers.inventory.batteries]
    if pj is not None and pj.acb is not None:
        batteries.append(pj.acb)
    return Snapshot(
        meters=[*production, *net, *consumption], inverters=list(inverters.values()), batteries=batteries
    )


def _production(
    info: GatewayInfo,
    cts: Sequence[MeterConfig],
    answers: Answers,
    readings: Mapping[int, CtReading],
    by_type: Mapping[str, MeterConfig],
    now: datetime,
) -> list[MeterReading]:
    pj = answers.production_json
    if pj is not None and _active(pj.production_eim):
        return _from_eim(pj.production_eim, "production")
    from_ct = _from_ct(readings, by_type.get("production"), "production", balanced=False)
    if from_ct:
        return from_ct
    v1 = answers.api_v1
    if v1 is not None and not v1.energy_all_zero and not api_v1_stalls(info, cts):
        return [MeterReading("production", 0, "api_v1", now, v1.watts, v1.wh_lifetime)]
    if pj is not None and pj.inverters is not None:
        entry = pj.inverters
        if entry.watts == 0 and not entry.wh_lifetime:
            return []  # all zero, as after a boot: not a reading
        return [MeterReading("production", 0, "inverters", entry.read_at, entry.watts, entry.wh_lifetime)]
    return []


def _active(entry: EimEntry | None) -> bool:
    """An eim entry with activeCount 0 has no CT behind it: its numbers are meaningless."""
    return entry is not None and entry.active_count > 0


def _consumption_eim(pj: ProductionJson, measurement_type: str) -> EimEntry | None:
    return next((e for e in pj.consumption_eims if e.measurement_type == measurement_type), None)


def _same(total: EimEntry | None, net: EimEntry | None) -> bool:
    if not (_active(total) and _active(net)):
        return False
    assert total is not None and net is not None
    return total.wh_lifetime == net.wh_lifetime and total.watts == net.watts


def _from_eim(entry: EimEntry | None, kind: MeterKind) -> list[MeterReading]:
    if entry is None or not _active(entry):
        return []
    if kind == "production" and entry.watts == 0 and not entry.wh_lifetime:
        return []  # all zero, as after a boot: not a reading
    rows = [_eim_row(entry, kind, 0)]
    if len(entry.lines) > 1:
        rows += [_eim_row(line, kind, phase) for phase, line in enumerate(entry.lines, start=1)]
    return _with_mean_volts(rows)


def _eim_row(entry: EimEntry, kind: MeterKind, phase: int) -> MeterReading:
    return MeterReading(
        kind,
        phase,
        "eim",
        entry.read_at,
        entry.watts,
        entry.wh_lifetime,
        volts=entry.volts,
        amps=entry.amps,
        power_factor=entry.power_factor,
    )


def _sum_by_phase(
    kind: MeterKind, first: list[MeterReading], second: list[MeterReading]
) -> list[MeterReading]:
    """Per phase, the sum of two channels' power and counters."""
    other = {row.phase: row for row in second}
    summed = []
    for row in first:
        match = other.get(row.phase)
        if match is None:
            continue
        lifetime = None
        if row.wh_lifetime is not None and match.wh_lifetime is not None:
            lifetime = row.wh_lifetime + match.wh_lifetime
        summed.append(
            MeterReading(
                kind,
                row.phase,
                row.source,
                max(row.read_at, match.read_at),
                row.watts + match.watts,
                lifetime,
            )
        )
    return summed


def _from_ct(
    readings: Mapping[int, CtReading], ct: MeterConfig | None, kind: MeterKind, *, balanced: bool
) -> list[MeterReading]:
    if ct is None or ct.eid not in readings:
        return []
    reading = readings[ct.eid]
    rows = [_ct_row(reading, kind, 0, balanced)]
    if ct.phase_count > 1:
        # Channels past the CT's phase count, or reading all zeros, are phantoms of unused inputs.
        phases = enumerate(reading.channels[: ct.phase_count], start=1)
        rows += [
            _ct_row(channel, kind, phase, balanced) for phase, channel in phases if not _all_zero(channel)
        ]
    return _with_mean_volts(rows)


def mean_volts(volts: Sequence[float | None]) -> float | None:
    """The voltage of several phases as one number: their mean (None if any is unknown)."""
    known = [value for value in volts if value is not None]
    if not known or len(known) < len(volts):
        return None
    return round(sum(known) / len(known), 3)  # millivolts, as the gateway gives a phase's voltage


def _with_mean_volts(rows: list[MeterReading]) -> list[MeterReading]:
    """The total row's volts as the mean of its phases: the gateway gives their sum (690 V for 3 x 230 V)."""
    if len(rows) < 2:
        return rows
    return [replace(rows[0], volts=mean_volts([row.volts for row in rows[1:]])), *rows[1:]]


def _all_zero(reading: CtReading) -> bool:
    return not any((reading.watts, reading.wh_delivered_lifetime, reading.wh_received_lifetime, reading.amps))


def _ct_row(reading: CtReading, kind: MeterKind, phase: int, balanced: bool) -> MeterReading:
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
