"""What the simulated gateway would answer at many moments at once, as numpy arrays (for `demo --days`).

Rendering JSON for every minute of a year and parsing it back would take hours; these functions compute the
numbers a collector reads from each endpoint for whole arrays of times, from the site's integrals and with
the gateway's rounding, so that a history built from them holds what polling the simulator would have
stored. tests/test_history.py checks the two against each other.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from envoylog.simulator import payloads as pl
from envoylog.simulator.plant import BATTERY_WH
from envoylog.simulator.site import ReportHistory, Site
from envoylog.simulator.sky import FloatArray, ambient_celsius


@dataclass(frozen=True)
class PhaseArrays:
    """One phase of a CT at many times, unrounded (what payloads.Channel holds at one time)."""

    watts: FloatArray
    dlvd_wh: FloatArray
    rcvd_wh: FloatArray
    volts: FloatArray
    hz: FloatArray


@dataclass(frozen=True)
class EimArrays:
    """An `eim` entry of /production.json (or one of its `lines`) at many times, as the gateway prints it."""

    watts: FloatArray
    wh_lifetime: FloatArray
    volts: FloatArray
    amps: FloatArray
    power_factor: FloatArray


@dataclass(frozen=True)
class CtArrays:
    """A reading of /ivp/meters/readings (or one of its `channels`) at many times, as printed."""

    watts: FloatArray
    wh_delivered: FloatArray
    wh_received: FloatArray
    volts: FloatArray
    amps: FloatArray
    hz: FloatArray
    power_factor: FloatArray


@dataclass(frozen=True)
class DeviceDataArrays:
    """The inverter readings /ivp/pdm/device_data gives for a set of reports, after the parser's scaling."""

    watts: FloatArray
    max_watts: FloatArray
    joules_lifetime: FloatArray
    ac_volts: FloatArray
    ac_amps: FloatArray
    dc_volts: FloatArray
    dc_amps: FloatArray
    hz: FloatArray
    temperature_c: FloatArray


def ct_phases(site: Site, times: FloatArray) -> dict[str, list[PhaseArrays]]:
    """The production, net-consumption and total-consumption CTs phase by phase (as cts.readings has them)."""
    plant, rows = site.plant, site.rows
    life = plant.lifetimes(times)
    # Power is constant within a minute; energies are exact multiples of 2**-20 Wh, so differences are too.
    minute = np.floor(times / 60.0) * 60.0
    watts = (plant.lifetimes(minute + 60.0) - plant.lifetimes(minute)) * 60.0
    zeros = np.zeros(times.size)
    out: dict[str, list[PhaseArrays]] = {pl.PRODUCTION: [], pl.NET_CONSUMPTION: [], pl.TOTAL_CONSUMPTION: []}
    for p in range(site.profile.phases):
        volts, hz = site.grid(times, p)
        pv, sb, cons = rows.pv + p, rows.standby + p, rows.cons + p
        imp, exp = rows.imp + p, rows.exp + p
        out[pl.PRODUCTION].append(
            PhaseArrays(watts[:, pv] - watts[:, sb], life[:, pv], life[:, sb], volts, hz)
        )
        out[pl.NET_CONSUMPTION].append(
            PhaseArrays(watts[:, imp] - watts[:, exp], life[:, imp], life[:, exp], volts, hz)
        )
        out[pl.TOTAL_CONSUMPTION].append(PhaseArrays(watts[:, cons], life[:, cons], zeros, volts, hz))
    return out


def _r3(values: FloatArray) -> FloatArray:
    """Three decimals, as the gateway prints meter values; never -0.0."""
    return np.round(values, 3) + 0.0


def _ratio(watts: FloatArray, apparent: FloatArray, decimals: int) -> FloatArray:
    """The power factor as the gateway prints it: 0 where there is no apparent power."""
    factor = np.divide(watts, apparent, out=np.zeros_like(watts), where=apparent != 0)
    return np.asarray(np.round(factor, decimals) + 0.0, dtype=np.float64)


def _sums(measurement: str, phases: Sequence[PhaseArrays]) -> tuple[FloatArray, ...]:
    """Watts, delivered, received, apparent power, current and voltage summed over phases in their order."""
    watts, dlvd, rcvd, apparent, amps, volts = (np.zeros(phases[0].watts.size) for _ in range(6))
    for phase in phases:
        _, phase_va = pl.power_triangles(measurement, phase.watts)
        watts = watts + phase.watts
        dlvd = dlvd + phase.dlvd_wh
        rcvd = rcvd + phase.rcvd_wh
        apparent = apparent + phase_va
        amps = amps + np.divide(phase_va, phase.volts, out=np.zeros_like(phase_va), where=phase.volts != 0)
        volts = volts + phase.volts
    return watts, dlvd, rcvd, apparent, amps, volts


def eim_entry(measurement: str, phases: Sequence[PhaseArrays]) -> EimArrays:
    """The `eim` entry of these phases (one phase: one of its `lines`), as `payloads._eim_fields` has it."""
    watts, dlvd, rcvd, apparent, amps, volts = _sums(measurement, phases)
    lifetime = dlvd - rcvd if measurement == pl.NET_CONSUMPTION else dlvd
    return EimArrays(_r3(watts), _r3(lifetime), _r3(volts), _r3(amps), _ratio(watts, apparent, 2))


def ct_reading(measurement: str, phases: Sequence[PhaseArrays]) -> CtArrays:
    """The meter reading of these phases (one phase: one of its `channels`), as `payloads._reading` does."""
    watts, dlvd, rcvd, apparent, amps, volts = _sums(measurement, phases)
    return CtArrays(
        watts=_r3(watts),
        wh_delivered=_r3(dlvd),
        wh_received=_r3(rcvd),
        volts=_r3(volts),
        amps=_r3(amps),
        hz=_r3(phases[0].hz),
        power_factor=_ratio(watts, apparent, 3),
    )


def reports_watts(site: Site, reports: ReportHistory) -> FloatArray:
    """Each report's average power, in whole watts as the gateway gives it."""
    return np.round(reports.interval_wh * 3600.0 / site.profile.report_interval_s)


def max_watts(site: Site, reports: ReportHistory) -> FloatArray:
    """Each reporting inverter's rated maximum."""
    ratings = np.array([inv.max_watts for inv in site.inverters], dtype=np.float64)
    return ratings[reports.inverter]


def device_data(site: Site, reports: ReportHistory) -> DeviceDataArrays:
    """What /ivp/pdm/device_data gives for these reports (endpoints._public_report, payloads._pcu_device)."""
    inverters = site.inverters
    watts = reports_watts(site, reports)
    rated = max_watts(site, reports)
    prior = np.array([inv.prior_joules for inv in inverters], dtype=np.float64)[reports.inverter]
    phase = np.array([inv.phase for inv in inverters], dtype=np.int64)[reports.inverter]
    ac_volts = np.zeros(watts.size)
    hz = np.zeros(watts.size)
    for p in range(site.profile.phases):
        chosen = phase == p
        ac_volts[chosen], hz[chosen] = site.grid(reports.reported_at[chosen], p)
    profile = site.profile
    ambient = ambient_celsius(site.seed, reports.reported_at, profile.latitude, profile.longitude)
    share = np.divide(watts, rated, out=np.zeros_like(watts), where=rated != 0)
    dc_volts = 30.0 + 8.0 * share
    ac_amps = np.divide(watts, ac_volts, out=np.zeros_like(watts), where=ac_volts != 0)
    dc_amps = watts / 0.965 / dc_volts
    return DeviceDataArrays(
        watts=watts,
        max_watts=rated,
        joules_lifetime=prior + np.round(reports.lifetime_wh * 3600.0),
        ac_volts=_milli(ac_volts),
        ac_amps=_milli(ac_amps),
        dc_volts=np.where(watts != 0, _milli(dc_volts), 0.0),
        dc_amps=_milli(dc_amps),
        hz=_milli(hz),
        temperature_c=np.round(ambient + 25.0 * share),
    )


def _milli(values: FloatArray) -> FloatArray:
    """A value the gateway gives in thousandths (mV, mA, mHz), as the parser reads it back."""
    return np.round(values * 1000.0) / 1000.0


def latest_report(reports: ReportHistory, inverter: int, times: FloatArray) -> NDArray[np.int64]:
    """Index into `reports` of one inverter's latest report at each of `times` (-1: none yet)."""
    own = np.flatnonzero(reports.inverter == inverter)
    position = np.searchsorted(reports.reported_at[own], times, side="right") - 1
    return np.where(position >= 0, own[np.maximum(position, 0)], -1)


def api_v1_production(site: Site, reports: ReportHistory, times: FloatArray) -> tuple[FloatArray, FloatArray]:
    """/api/v1/production's wattsNow and wattHoursLifetime without a production CT: the inverters' sums."""
    each_watts = reports_watts(site, reports)
    watts = np.zeros(times.size)
    lifetime = np.zeros(times.size)
    for inverter in range(len(site.inverters)):  # summed in the gateway's order, as it does
        index = latest_report(reports, inverter, times)
        known = index >= 0
        watts = watts + np.where(known, each_watts[index], 0.0)
        lifetime = lifetime + np.where(known, reports.lifetime_wh[index], 0.0)
    return watts, np.round(lifetime)


@dataclass(frozen=True)
class BatteryArrays:
    """The Encharge / IQ Batteries at many times, as /ivp/ensemble/inventory and /power give them."""

    serials: list[str]
    reported_at: FloatArray  # inventory's last_rpt_date
    soc_percent: FloatArray  # the same for every unit: they charge and discharge together
    watts: FloatArray  # each unit's power, positive discharging


def batteries(site: Site, times: FloatArray) -> BatteryArrays:
    """The batteries' state at each of `times` (see `Site.encharge` and endpoints._batteries)."""
    plant, rows, count = site.plant, site.rows, site.profile.battery_count
    serials = site.battery_serials() if count and times.size else []
    if not serials:
        empty = np.zeros(0)
        return BatteryArrays([], empty, empty, empty)
    stored = plant.battery_whs(times)
    minute = np.floor(times / 60.0) * 60.0
    flows = (plant.lifetimes(minute + 60.0) - plant.lifetimes(minute)) * 60.0
    share = BATTERY_WH * count / plant.capacity_wh  # the rest is AC Batteries'
    each = (flows[:, rows.discharge] - flows[:, rows.charge]) * share / count
    whole = np.floor(times)
    return BatteryArrays(
        serials=serials,
        reported_at=whole - whole % 30,
        soc_percent=np.round(100.0 * stored / plant.capacity_wh),
        watts=np.round(each * 1000.0) / 1000.0,
    )
