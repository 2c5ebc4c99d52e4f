"""The gateway's current transformers: what its CTs read at a moment, phase by phase, quirks included.

The site (site.py) knows the energy that flows; this is what the gateway's meters make of it: production
and net consumption measured, total consumption derived from the two, and the ways firmware gets them wrong.
"""

from __future__ import annotations

import dataclasses
import math

from envoylog.simulator import payloads as pl
from envoylog.simulator.faults import Quirks
from envoylog.simulator.plant import DAY_S
from envoylog.simulator.site import Moment, Site
from envoylog.simulator.sky import hash_unit


def _today_start(site: Site, m: Moment, late: bool) -> tuple[float, float]:
    """When whToday last reset, and the value it reset to (Wh, spread over the phases)."""
    midnight = m.midnight(0)
    if not late:
        return midnight, 0.0
    # The quirk: the reset comes about a quarter of an hour late, and leaves a few Wh behind.
    day = math.floor(midnight / DAY_S)
    reset = midnight + 780.0 + 240.0 * float(hash_unit(site.seed, 70, day))
    if m.t < reset:
        midnight = m.midnight(1)
        day = math.floor(midnight / DAY_S)
        reset = midnight + 780.0 + 240.0 * float(hash_unit(site.seed, 70, day))
    return reset, 2.0 + 30.0 * float(hash_unit(site.seed, 71, day))


def readings(site: Site, m: Moment, quirks: Quirks) -> tuple[pl.Ct, pl.Ct, pl.Ct]:
    """The production CT, the net-consumption CT and the total the gateway derives, at `m.t`."""
    rows, plant, t = site.rows, site.plant, m.t
    life = m.lifetime(t)
    watts = plant.power(t)
    reset_at, left_over = _today_start(site, m, quirks.late_whtoday_reset)
    at_reset = m.lifetime(reset_at)
    midnight = m.lifetime(m.midnight(0))
    yesterday = m.lifetime(m.midnight(1))
    week = m.lifetime(m.midnight(6))
    phases = site.profile.phases
    prod_max = plant.today_max(t, rows.pv, phases)
    cons_max = plant.today_max(t, rows.cons, phases)
    production, net, total = [], [], []
    for p in range(phases):
        volts, hz = site.grid_at(t, p)
        pv, sb, cons = rows.pv + p, rows.standby + p, rows.cons + p
        imp, exp = rows.imp + p, rows.exp + p
        production.append(
            pl.Channel(
                watts=watts[pv] - watts[sb],
                dlvd_wh=life[pv],
                rcvd_wh=life[sb],
                today_wh=life[pv] - at_reset[pv] + left_over / phases,
                seven_days_wh=life[pv] - week[pv],
                volts=volts,
                freq_hz=hz,
                yesterday_wh=midnight[pv] - yesterday[pv],
                max_watts=float(prod_max[p]),
            )
        )
        net.append(
            pl.Channel(
                watts=watts[imp] - watts[exp],
                dlvd_wh=life[imp],
                rcvd_wh=life[exp],
                today_wh=0.0,
                seven_days_wh=0.0,
                volts=volts,
                freq_hz=hz,
            )
        )
        total.append(
            pl.Channel(
                watts=watts[cons],
                dlvd_wh=life[cons],
                rcvd_wh=0.0,
                today_wh=life[cons] - at_reset[cons] + 1.7 * left_over / phases,
                seven_days_wh=life[cons] - week[cons],
                volts=volts,
                freq_hz=hz,
                yesterday_wh=midnight[cons] - yesterday[cons],
                max_watts=float(cons_max[p]),
            )
        )
    return (
        pl.Ct(pl.PRODUCTION, tuple(production)),
        pl.Ct(pl.NET_CONSUMPTION, tuple(net)),
        pl.Ct(pl.TOTAL_CONSUMPTION, tuple(total)),
    )


def listed(site: Site, m: Moment, quirks: Quirks) -> list[pl.Ct]:
    """What /ivp/meters lists: the CTs this profile has, or on hardware without working CTs its idle ports."""
    profile = site.profile
    if profile.disabled_cts:
        production, net, _ = readings(site, m, quirks)
        return [unmetered(production), unmetered(net)]
    if not (profile.production_ct or profile.consumption_ct):
        return []
    production, net, _ = readings(site, m, quirks)
    return [ct for ct, there in ((production, profile.production_ct), (net, profile.consumption_ct)) if there]


def storage(site: Site, m: Moment, quirks: Quirks) -> pl.Ct:
    """A CT on an AC-coupled battery that this gateway does not manage: it reads something else."""
    production, _, _ = readings(site, m, quirks)
    channels = tuple(
        dataclasses.replace(
            c, watts=-0.2 * c.watts, dlvd_wh=0.15 * c.dlvd_wh, rcvd_wh=0.2 * c.dlvd_wh, today_wh=0.0
        )
        for c in production.phases
    )
    return pl.Ct(pl.STORAGE, channels)


def unmetered(ct: pl.Ct) -> pl.Ct:
    """What the gateway shows for a CT port without a working CT: numbers with nothing behind them."""
    return pl.Ct(
        ct.measurement,
        tuple(
            dataclasses.replace(
                c,
                watts=0.6 * c.watts + 7.0,
                dlvd_wh=0.6 * c.dlvd_wh + 2.5e6,
                rcvd_wh=0.6 * c.rcvd_wh + 9.0e3,
                today_wh=0.6 * c.today_wh,
                seven_days_wh=0.6 * c.seven_days_wh,
            )
            for c in ct.phases
        ),
    )
