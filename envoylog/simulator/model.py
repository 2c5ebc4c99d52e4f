"""The simulated gateway's site over time: energy flows, lifetime counters, reports, and its answers."""

# Every value is a deterministic function of (profile, seed, simulated time): power is constant within
# each UTC minute, and each lifetime counter is the exact integral of its power since `installed_at`.
# Days are computed with numpy in blocks aligned to the installation day; per-day totals are kept as
# prefix sums, so a counter three years after installation costs a lookup, and a restarted simulator
# shows the very same counters.

from __future__ import annotations

import dataclasses
import functools
import json
import math
import threading
import zlib
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import numpy as np
from numpy.typing import NDArray

from envoylog.simulator import payloads as pl
from envoylog.simulator.faults import Quirks
from envoylog.simulator.profiles import Profile
from envoylog.simulator.sky import (
    FloatArray,
    ambient_celsius,
    clear_sky_fraction,
    cloud_factor,
    hash_unit,
    house_load,
    standby_watts,
    sun_position,
    value_noise,
)

DAY_S = 86_400
MINUTES = 1_440
_BLOCK_DAYS = 4  # days are always computed in blocks aligned to installation, so results never differ
_CACHED_DAYS = 6  # a render looks at its own day and those of the local midnights up to a week back
_SURPLUS_W = 20.0  # a battery starts charging once the panels beat the house by this much
_BATTERY_WH = 5_000  # one IQ Battery 5P
_BATTERY_W = 3_840
_ACB_WH = 1_200  # one AC Battery
_ACB_W = 270
_BATTERY_EFFICIENCY = 0.95  # each way
_RESERVE_PERCENT = 10
_WRAP_WH = pl.WRAP_JOULES / 3600.0
_QUANTUM = float(2**20)  # energy steps per Wh
_FINE_QUANTUM = float(2**30)  # steps per Wh-per-watt of the basis curves, which stay below 2**20


@dataclass(frozen=True)
class Body:
    """One answer of the gateway: its content type and bytes."""

    content_type: str  # "application/json", "text/xml" (for /info) or "text/html" (old firmware)
    data: bytes
    status: int = 200  # a recorded gateway (simulator/captured.py) also answers 401, 404, 500 ... with a body


@dataclass(frozen=True)
class _Inverter:
    serial: str
    eid: int
    phase: int
    coef: tuple[float, float, float]  # watts per unit of the three basis curves (plain, eastward, shaded)
    offset_s: int  # where in the report interval this inverter reports
    max_watts: int
    prior_joules: int  # its register predates this gateway (inverters outlive gateways)
    created_at: int


class _Rows:
    """Where each quantity lives in a day's (rows x minutes) array of energy per minute."""

    def __init__(self, phases: int) -> None:
        self.phases = phases
        self.basis = slice(0, 3)  # sun on a unit panel: plain, times the sun's eastward component, shaded
        self.pv = 3  # per phase: inverter output
        self.standby = self.pv + phases  # per phase: the sleeping inverters' draw (production CT negative)
        self.cons = self.standby + phases  # per phase: house load, plus battery charging, minus discharging
        self.imp = self.cons + phases  # per phase: grid import
        self.exp = self.imp + phases  # per phase: grid export
        self.charge = self.exp + phases  # battery charging (AC side)
        self.discharge = self.charge + 1
        self.count = self.discharge + 1

    def phase_rows(self, first: int) -> slice:
        """The per-phase rows starting at `first`."""
        return slice(first, first + self.phases)


@dataclass
class _Day:
    start: float  # epoch s of minute 0
    cumulative: NDArray[np.float64]  # rows x (minutes + 1), Wh since the start of the day
    lit_ends: NDArray[np.float64]  # epoch s at which each sunlit minute ends
    soc_start_wh: float


class _Plant:
    """The physics of one site and the cached integrals of its energy flows; thread-safe."""

    def __init__(self, profile: Profile, seed: int) -> None:
        self.profile = profile
        self.seed = seed
        self.tz = ZoneInfo(profile.timezone)
        self.rows = _Rows(profile.phases)
        # Days start near local solar midnight, so a day's battery cycle and sunlight stay in one block.
        self.shift_s = -round(profile.longitude * 240.0 / 60.0) * 60
        self.installed_s = profile.installed_at.timestamp()
        self.first_day = self.day_of(self.installed_s)
        self.inverters = _make_inverters(profile, seed)
        self.phase_coef = np.zeros((profile.phases, 3))
        for inv in self.inverters:
            self.phase_coef[inv.phase] += inv.coef
        self.coef = np.array([inv.coef for inv in self.inverters], dtype=np.float64).reshape(-1, 3)
        # Encharge units and AC Batteries charge and discharge together, each in proportion to its capacity.
        self.capacity_wh = float(_BATTERY_WH * profile.battery_count + _ACB_WH * profile.acb_count)
        self.rate_w = float(_BATTERY_W * profile.battery_count + _ACB_W * profile.acb_count)
        self.reserve_wh = self.capacity_wh * _RESERVE_PERCENT / 100.0
        self._lock = threading.RLock()
        self._prefix = np.zeros((1, self.rows.count))  # [k]: Wh of days first_day .. first_day + k - 1
        self._soc_start = [0.5 * self.capacity_wh]  # [k]: battery energy at the start of day first_day + k
        self._days: OrderedDict[int, _Day] = OrderedDict()
        self._last_block: tuple[int, NDArray[np.float64]] | None = None  # neighbouring days come together
        self._at_install = self._running(np.array([self.installed_s]))[0]

    def day_of(self, t: float) -> int:
        """The index of the simulated day holding epoch second `t`."""
        return math.floor((t - self.shift_s) / DAY_S)

    def day_start(self, day: int) -> float:
        """Epoch second at which day `day` starts."""
        return float(day * DAY_S + self.shift_s)

    # --- integrals -------------------------------------------------------------------------------------

    def lifetimes(self, times: NDArray[np.float64]) -> NDArray[np.float64]:
        """Wh of every row from installation to each of `times` (times x rows; zero before installation)."""
        clamped = np.maximum(np.asarray(times, dtype=np.float64), self.installed_s)
        return np.asarray(self._running(clamped) - self._at_install)

    def _running(self, times: NDArray[np.float64]) -> NDArray[np.float64]:
        """Wh of every row from the start of the installation day to each of `times`."""
        out = np.empty((times.size, self.rows.count))
        days = np.floor((times - self.shift_s) / DAY_S).astype(np.int64)
        with self._lock:
            for day_index in np.unique(days).tolist():
                day = self._day(day_index)
                chosen = days == day_index
                seconds = times[chosen] - day.start
                minute = np.minimum(seconds // 60.0, MINUTES - 1).astype(np.int64)
                # A share below one of the minute's energy: never past the next minute's running sum.
                share = np.minimum((seconds - 60.0 * minute) / 60.0, 1.0)
                before = day.cumulative[:, minute]
                within = before + share * (day.cumulative[:, minute + 1] - before)
                out[chosen] = (self._prefix[day_index - self.first_day][:, None] + within).T
        return out

    def lifetime(self, t: float) -> NDArray[np.float64]:
        """Wh of every row from installation to `t` (zero before installation)."""
        return np.asarray(self.lifetimes(np.array([t]))[0])

    def power(self, t: float) -> NDArray[np.float64]:
        """Watts of every row during the minute holding `t`."""
        t = max(t, self.installed_s)
        with self._lock:
            day = self._day(self.day_of(t))
            minute = min(int((t - day.start) // 60), MINUTES - 1)
            return (day.cumulative[:, minute + 1] - day.cumulative[:, minute]) * 60.0

    def battery_wh(self, t: float) -> float:
        """Energy stored in the batteries at `t`."""
        return float(self.battery_whs(np.array([t], dtype=np.float64))[0])

    def battery_whs(self, times: NDArray[np.float64]) -> NDArray[np.float64]:
        """Energy stored in the batteries at each of `times`."""
        out = np.zeros(times.size)
        if not self.capacity_wh:
            return out
        rows = self.rows
        days = np.floor((np.maximum(times, self.installed_s) - self.shift_s) / DAY_S).astype(np.int64)
        with self._lock:
            for day_index in np.unique(days).tolist():
                day = self._day(day_index)
                chosen = days == day_index
                seconds = np.clip(times[chosen] - day.start, 0.0, float(DAY_S))
                minute = np.minimum(seconds // 60.0, MINUTES - 1).astype(np.int64)
                share = np.minimum((seconds - 60.0 * minute) / 60.0, 1.0)
                flows = day.cumulative[[rows.charge, rows.discharge]]
                before = flows[:, minute]
                within = before + share * (flows[:, minute + 1] - before)
                stored = day.soc_start_wh + _BATTERY_EFFICIENCY * within[0]
                stored -= within[1] / _BATTERY_EFFICIENCY
                out[chosen] = np.clip(stored, 0.0, self.capacity_wh)
        return out

    def last_lit_end(self, t: float) -> float | None:
        """The end of the last sunlit minute that ended at or before `t` (None if none in days)."""
        with self._lock:
            index = self.day_of(t)
            for day_index in range(index, max(index - 4, self.first_day - 1), -1):
                ends = self._day(day_index).lit_ends
                position = int(np.searchsorted(ends, t, side="right")) - 1
                if position >= 0:
                    return float(ends[position])
        return None

    def today_max(self, t: float, first_row: int, rows: int) -> NDArray[np.float64]:
        """The highest minute power of each of `rows` rows so far in the day holding `t`."""
        t = max(t, self.installed_s)
        with self._lock:
            day = self._day(self.day_of(t))
            minute = min(int((t - day.start) // 60), MINUTES - 1)
            energy = np.diff(day.cumulative[first_row : first_row + rows, : minute + 2], axis=1)
            return np.asarray(energy.max(axis=1) * 60.0)

    # --- day computation -------------------------------------------------------------------------------

    def _day(self, day_index: int) -> _Day:
        day_index = max(day_index, self.first_day)
        cached = self._days.get(day_index)
        if cached is not None:
            self._days.move_to_end(day_index)
            return cached
        block_first = day_index - (day_index - self.first_day) % _BLOCK_DAYS
        fresh = self._extend(block_first + _BLOCK_DAYS)
        if fresh is not None:
            self._last_block = fresh
        if self._last_block is None or self._last_block[0] != block_first:
            self._last_block = (block_first, self._block(block_first))
        energy = self._last_block[1]
        minute_wh = np.ascontiguousarray(energy[:, day_index - block_first])
        cumulative = np.zeros((self.rows.count, MINUTES + 1))
        np.cumsum(minute_wh, axis=1, out=cumulative[:, 1:])
        start = self.day_start(day_index)
        lit = np.flatnonzero(minute_wh[0] > 0.0)
        day = _Day(
            start=start,
            cumulative=cumulative,
            lit_ends=np.asarray(start + 60.0 * (lit + 1.0), dtype=np.float64),
            soc_start_wh=self._soc_start[day_index - self.first_day],
        )
        self._days[day_index] = day
        while len(self._days) > _CACHED_DAYS:
            self._days.popitem(last=False)
        return day

    def _extend(self, end_day: int) -> tuple[int, NDArray[np.float64]] | None:
        """Make the prefix sums reach day `end_day` (exclusive); returns the last block computed, if any."""
        done = len(self._prefix) - 1
        wanted = end_day - self.first_day
        last = None
        while done < wanted:
            first = self.first_day + done
            energy = self._block(first)
            totals = energy.sum(axis=2).T  # days x rows; exact, see _block
            self._prefix = np.vstack([self._prefix, self._prefix[-1] + np.cumsum(totals, axis=0)])
            done += _BLOCK_DAYS
            last = (first, energy)
        return last

    def _block(self, first: int) -> NDArray[np.float64]:
        """Wh per minute (rows x days x minutes) of one aligned block of days."""
        rows, profile, seed = self.rows, self.profile, self.seed
        n = _BLOCK_DAYS
        starts = np.array([self.day_start(first + k) for k in range(n)])
        t = starts[:, None] + 60.0 * np.arange(MINUTES)[None, :] + 30.0
        sun = sun_position(t, profile.latitude, profile.longitude)
        unit = clear_sky_fraction(sun, profile.latitude) * cloud_factor(seed, t, profile.latitude)
        elevation = np.degrees(np.arcsin(np.clip(sun.up, -1.0, 1.0)))
        low_sun = np.clip(1.0 - elevation / 12.0, 0.0, 1.0)
        values = np.zeros((rows.count, n, MINUTES))
        # The basis curves are energies per watt of inverter, on a finer grid than the rest (see below);
        # each phase's output is made from them, so the inverters add up to the production CT.
        basis_wh = np.stack([unit, unit * sun.east, unit * low_sun]) * (_FINE_QUANTUM / 60.0)
        basis_wh = np.round(basis_wh) / _FINE_QUANTUM
        basis = basis_wh * 60.0
        phases = profile.phases
        pv = np.zeros((phases, n, MINUTES))
        for p in range(phases):
            c = self.phase_coef[p]
            pv[p] = c[0] * basis[0] + c[1] * basis[1] + c[2] * basis[2]
        night = unit <= 0.0
        standby = np.where(night, standby_watts(seed, t) / phases, 0.0)
        load = house_load(seed, t, self._utc_offsets(starts), phases)
        cons = load
        if self.capacity_wh:
            cons = load.copy()
            soc = self._soc_start[first - self.first_day]
            total_load = load.sum(axis=0)
            for k in range(n):
                charge, discharge, soc = self._battery_day(total_load[k] - pv[:, k].sum(axis=0), soc)
                values[rows.charge, k] = charge
                values[rows.discharge, k] = discharge
                # The batteries' power is shared over the phases like the load, so no phase's
                # consumption ever turns negative.
                cons[:, k] = load[:, k] * (1.0 - (discharge - charge) / total_load[k])
                if first + k + 1 - self.first_day == len(self._soc_start):
                    self._soc_start.append(soc)
        else:
            while len(self._soc_start) < first - self.first_day + n + 1:
                self._soc_start.append(0.0)
        net = cons + standby[None] - pv
        values[rows.phase_rows(rows.pv)] = pv
        values[rows.phase_rows(rows.standby)] = standby[None]
        values[rows.phase_rows(rows.cons)] = cons
        values[rows.phase_rows(rows.imp)] = np.maximum(net, 0.0)
        values[rows.phase_rows(rows.exp)] = np.maximum(-net, 0.0)
        # Whole multiples of 2**-20 Wh add up exactly in float64 (below 2**32 Wh), in any order: day
        # totals, running sums and prefix sums then agree to the last bit, so counters never step back.
        energy = np.round(values * (_QUANTUM / 60.0)) / _QUANTUM
        energy[rows.basis] = basis_wh
        return np.asarray(energy)

    def _battery_day(self, deficit: FloatArray, soc: float) -> tuple[FloatArray, FloatArray, float]:
        """Charge from the day's surplus, discharge to cover the house before and after it."""
        charge = np.zeros(MINUTES)
        discharge = np.zeros(MINUTES)
        surplus = np.flatnonzero(deficit < -_SURPLUS_W)
        first, last = (int(surplus[0]), int(surplus[-1]) + 1) if surplus.size else (MINUTES, MINUTES)
        discharge[:first], soc = self._drain(deficit[:first], soc)
        charge[first:last], soc = self._fill(-deficit[first:last], soc)
        discharge[last:], soc = self._drain(deficit[last:], soc)
        return charge, discharge, soc

    def _drain(self, wanted_w: FloatArray, soc: float) -> tuple[FloatArray, float]:
        if wanted_w.size == 0:
            return wanted_w, soc
        used = np.cumsum(np.clip(wanted_w, 0.0, self.rate_w) / 60.0 / _BATTERY_EFFICIENCY)
        stored = np.maximum(min(self.reserve_wh, soc), soc - used)
        before = np.concatenate([[soc], stored[:-1]])
        return (before - stored) * _BATTERY_EFFICIENCY * 60.0, float(stored[-1])

    def _fill(self, offered_w: FloatArray, soc: float) -> tuple[FloatArray, float]:
        if offered_w.size == 0:
            return offered_w, soc
        gained = np.cumsum(np.clip(offered_w, 0.0, self.rate_w) / 60.0 * _BATTERY_EFFICIENCY)
        stored = np.minimum(max(self.capacity_wh, soc), soc + gained)
        before = np.concatenate([[soc], stored[:-1]])
        return (stored - before) / _BATTERY_EFFICIENCY * 60.0, float(stored[-1])

    def _utc_offsets(self, starts: NDArray[np.float64]) -> NDArray[np.float64]:
        """The local zone's UTC offset (s) at every minute of these days; DST changes found by bisection."""
        minutes = 60.0 * np.arange(MINUTES) + 30.0
        out = np.empty((len(starts), MINUTES))
        for k, start in enumerate(starts):
            first, last = int(start), int(start) + DAY_S - 1
            before, after = self._offset(first), self._offset(last)
            if before == after:
                out[k] = before
                continue
            while last - first > 1:
                middle = (first + last) // 2
                if self._offset(middle) == before:
                    first = middle
                else:
                    last = middle
            out[k] = np.where(start + minutes >= last, after, before)
        return out

    def _offset(self, t: int) -> float:
        offset = datetime.fromtimestamp(t, self.tz).utcoffset()
        return offset.total_seconds() if offset is not None else 0.0


def _serial_base(seed: int, channel: int, installed: datetime, count: int) -> tuple[str, int]:
    """A serial prefix like the real ones (12, year, week) and a seeded start for the running number."""
    made = installed - timedelta(weeks=10)
    year, week, _ = made.isocalendar()
    room = max(1, 999_999 - 40 * count)
    return f"12{year % 100:02d}{week:02d}", int(float(hash_unit(seed, channel, 0)) * room)


def _make_inverters(profile: Profile, seed: int) -> list[_Inverter]:
    prefix, number = _serial_base(seed, 100, profile.installed_at, profile.inverter_count)
    installed = int(profile.installed_at.timestamp())
    inverters = []
    for i in range(profile.inverter_count):
        u = [float(hash_unit(seed, 101 + j, i)) for j in range(8)]
        number += 1 + int(u[0] * 39)
        peak = profile.peak_watts_per_inverter * (0.84 + 0.10 * u[1])
        east = -0.15 + 0.30 * u[2]  # panels turned a little east (positive) or west
        shade = 0.5 * u[3] if u[4] < 0.25 else 0.0  # a quarter of them lose low sun to a tree or roof
        inverters.append(
            _Inverter(
                serial=f"{prefix}{number:06d}",
                eid=553648384 + 256 * i,
                phase=i % profile.phases,
                coef=(peak, peak * east, -peak * shade),
                offset_s=int(u[5] * profile.report_interval_s),
                max_watts=math.ceil(peak * (1.0 + abs(east))),
                prior_joules=int((1.5e6 + 0.7e6 * u[6]) * 3600),
                created_at=installed + int(u[7] * 3600),
            )
        )
    return inverters


def _plant(profile: Profile, seed: int) -> _Plant:
    """The plant of this site: models that differ only in firmware, serial or CTs share its integrals."""
    site = dataclasses.replace(
        profile,
        name="",
        firmware="",
        part_number="",
        serial="",
        metered=False,
        production_ct=False,
        consumption_ct=False,
        device_data=False,
        https=False,
        disabled_cts=False,
        api_v1_production="live",
        total_is_net=False,
        phantom_channels=False,
        scrambled_readings=False,
        boot_zero_s=0,
        html_pages=frozenset(),
        html_only=False,
    )
    return _site_plant(site, seed)


@functools.lru_cache(maxsize=16)
def _site_plant(site: Profile, seed: int) -> _Plant:
    return _Plant(site, seed)


@dataclass(frozen=True)
class ReportHistory:
    """Inverter reports over a stretch of time: grouped by inverter, in time order within each."""

    inverter: NDArray[np.int64]  # index into GatewayModel.inverter_serials()
    reported_at: NDArray[np.float64]  # epoch s (whole seconds)
    interval_wh: NDArray[np.float64]
    lifetime_wh: NDArray[np.float64]  # since installation, as of the report


@dataclass(frozen=True)
class _Report:
    inverter: _Inverter
    reported_at: float | None  # None: not reported since installation
    interval_wh: float
    lifetime_wh: float  # since installation, as of the report


class _Moment:
    """One render at time `t`: the lifetimes and local midnights it needs, each worked out once."""

    def __init__(self, plant: _Plant, t: float) -> None:
        self.plant = plant
        self.t = t
        self._lifetimes: dict[float, NDArray[np.float64]] = {}
        self._midnights: dict[int, float] = {}

    def lifetime(self, when: float) -> NDArray[np.float64]:
        """Wh of every row from installation to `when`."""
        found = self._lifetimes.get(when)
        if found is None:
            found = self._lifetimes[when] = self.plant.lifetime(when)
        return found

    def midnight(self, days_back: int) -> float:
        """Epoch second of local midnight `days_back` days before the day of `t`."""
        found = self._midnights.get(days_back)
        if found is None:
            tz = self.plant.tz
            day = datetime.fromtimestamp(self.t, tz).date() - timedelta(days=days_back)
            found = self._midnights[days_back] = datetime(day.year, day.month, day.day, tzinfo=tz).timestamp()
        return found


class GatewayModel:
    """What a gateway with `profile` serves at any simulated time; deterministic for a given seed."""

    def __init__(self, profile: Profile, seed: int = 1) -> None:
        self.profile = profile
        self.seed = seed
        self._plant = _plant(profile, seed)
        self._rows = self._plant.rows
        self._offsets = np.array([inv.offset_s for inv in self._plant.inverters], dtype=np.float64)

    # --- ground truth ----------------------------------------------------------------------------------

    def _delta(self, start: datetime, end: datetime) -> NDArray[np.float64]:
        return self._plant.lifetime(end.timestamp()) - self._plant.lifetime(start.timestamp())

    def production_wh(self, start: datetime, end: datetime) -> float:
        """Energy the inverters produced between `start` and `end` (what the production CT counts)."""
        return float(self._delta(start, end)[self._rows.phase_rows(self._rows.pv)].sum())

    def consumption_wh(self, start: datetime, end: datetime) -> float:
        """Total consumption as the gateway reports it: house load plus battery charging minus discharging."""
        return float(self._delta(start, end)[self._rows.phase_rows(self._rows.cons)].sum())

    def import_wh(self, start: datetime, end: datetime) -> float:
        """Energy drawn from the grid (summed phase by phase, as the net CT counts it)."""
        return float(self._delta(start, end)[self._rows.phase_rows(self._rows.imp)].sum())

    def export_wh(self, start: datetime, end: datetime) -> float:
        """Energy fed into the grid (summed phase by phase, as the net CT counts it)."""
        return float(self._delta(start, end)[self._rows.phase_rows(self._rows.exp)].sum())

    def inverter_wh(self, serial: str, start: datetime, end: datetime) -> float:
        """Energy one inverter produced between `start` and `end`."""
        for inv in self._plant.inverters:
            if inv.serial == serial:
                return float(np.dot(inv.coef, self._delta(start, end)[self._rows.basis]))
        raise KeyError(f"no inverter with serial {serial!r}")

    def inverter_serials(self) -> list[str]:
        """The inverters' serial numbers, in the gateway's order."""
        return [inv.serial for inv in self._plant.inverters]

    # --- rendering -------------------------------------------------------------------------------------

    def render(self, path: str, query: Mapping[str, str], now: datetime, quirks: Quirks) -> Body | None:
        """The body the gateway serves for GET `path` at `now` (aware); None if it has no such endpoint."""
        path = path.rstrip("/") or "/"
        m = _Moment(self._plant, now.timestamp())
        profile = self.profile
        if path in ("/info", "/info.xml"):
            firmware = quirks.firmware or profile.firmware
            xml = pl.info_xml(
                profile.serial, profile.part_number, firmware, profile.metered, int(m.t), _build(firmware)
            )
            return Body("text/xml", xml.encode())
        if profile.html_only or path in profile.html_pages:
            # Old firmware answers with a page of its web interface, with status 200 even for unknown paths.
            return Body(pl.HTML, pl.html_page(path.strip("/") or "home").encode())
        modern = profile.needs_token  # firmware before 7 has none of the /ivp endpoints
        payload: object
        if path == "/production.json":
            payload = self._production_json(m, quirks, query.get("details") == "1")
        elif path == "/api/v1/production":
            payload = self._api_v1_production(m, quirks)
        elif path == "/api/v1/production/inverters":
            payload = pl.api_v1_inverters(
                [self._public_report(r, m, quirks, False) for r in self._reports(m)]
            )
            acb = self._acb(m.t)
            if acb is not None:
                payload += pl.api_v1_ac_batteries(acb, self._acb_serials())
        elif path == "/home.json":
            payload = self._home(m.t)
        elif not modern or not path.startswith("/ivp/"):
            return None
        elif path == "/ivp/meters":
            payload = pl.meters(self._listed_cts(m, quirks), profile.phases, enabled=not profile.disabled_cts)
        elif path == "/ivp/meters/readings":
            payload = self._meter_readings(m, quirks)
        elif path == "/ivp/pdm/device_data":
            if not profile.device_data:
                return None
            payload = self._device_data(m, quirks)
        elif path == "/ivp/ensemble/inventory":
            payload = pl.ensemble_inventory(self._batteries(m.t), self._enpower_serial(), int(m.t))
        elif path == "/ivp/ensemble/power":
            payload = pl.ensemble_power(self._batteries(m.t))
        elif path == "/ivp/ensemble/secctrl":
            if not profile.metered:
                return None
            payload = pl.secctrl(self._batteries(m.t), _RESERVE_PERCENT, self._acb(m.t))
        else:
            return None
        return Body("application/json", json.dumps(payload).encode())

    # --- inverters -------------------------------------------------------------------------------------

    def _reports(self, m: _Moment) -> list[_Report]:
        """Each inverter's latest report at `m.t`: staggered intervals, and silence after dark."""
        plant, interval, offsets = self._plant, float(self.profile.report_interval_s), self._offsets
        ends = np.floor((m.t - offsets) / interval) * interval + offsets
        sunlit = plant.lifetimes(ends)[:, 0] - plant.lifetimes(ends - interval)[:, 0] > 0.0
        reported = ends.copy()
        known = np.ones(len(ends), dtype=bool)
        for i in np.flatnonzero(~sunlit).tolist():
            # Dark: after its last sunlit minute the inverter sent one more report, of zero, then slept.
            lit_end = plant.last_lit_end(float(ends[i]) - interval)
            if lit_end is None:
                known[i] = False
            else:
                reported[i] = math.ceil((lit_end + interval - offsets[i]) / interval) * interval + offsets[i]
        known &= reported > plant.installed_s
        coef = plant.coef
        lifetime = np.einsum("ij,ij->i", coef, plant.lifetimes(reported)[:, self._rows.basis])
        before = np.einsum("ij,ij->i", coef, plant.lifetimes(reported - interval)[:, self._rows.basis])
        return [
            _Report(inv, float(reported[i]), float(lifetime[i] - before[i]), float(lifetime[i]))
            if known[i]
            else _Report(inv, None, 0.0, 0.0)
            for i, inv in enumerate(plant.inverters)
        ]

    def report_history(self, start: float, end: float) -> ReportHistory:
        """Every report the inverters made with its end in (start, end], as `_reports` sees them one by one.

        An inverter reports every interval that saw sun, and once more (a report of zero) after the last
        such interval; otherwise it is silent, so its latest report stays the one of zero.
        """
        plant, interval, offsets = self._plant, float(self.profile.report_interval_s), self._offsets
        count = max(math.ceil((end - start) / interval), 0) + 1
        latest = np.floor((start - offsets) / interval) * interval + offsets  # last end at or before start
        # Two ends before `latest` as well: whether a report was sent depends on the interval before it.
        ends = latest[:, None] + interval * np.arange(-2, count + 1)[None, :]
        n, width = ends.shape
        life = plant.lifetimes(ends.ravel()).reshape(n, width, self._rows.count)
        lit = life[:, 1:, 0] - life[:, :-1, 0] > 0.0  # the interval ending at ends[:, 1:] saw sun
        sent = lit[:, 1:] | lit[:, :-1]
        at = ends[:, 2:]
        keep = sent & (at > start) & (at <= end) & (at > plant.installed_s)
        basis = self._rows.basis
        coef = np.repeat(plant.coef, width - 2, axis=0)
        lifetime = np.einsum("ij,ij->i", coef, life[:, 2:, basis].reshape(-1, 3))
        before = np.einsum("ij,ij->i", coef, life[:, 1:-1, basis].reshape(-1, 3))
        chosen = keep.ravel()
        inverter = np.repeat(np.arange(n, dtype=np.int64), width - 2)
        return ReportHistory(
            inverter=inverter[chosen],
            reported_at=at.ravel()[chosen],
            interval_wh=(lifetime - before)[chosen],
            lifetime_wh=lifetime[chosen],
        )

    def _wrapped(self, t: float, quirks: Quirks) -> _Inverter | None:
        if quirks.counter_wrap_at is None or t < quirks.counter_wrap_at.timestamp():
            return None
        inverters = self._plant.inverters
        return inverters[int(float(hash_unit(self.seed, 90, 0)) * len(inverters))] if inverters else None

    def _public_report(self, report: _Report, m: _Moment, quirks: Quirks, history: bool) -> pl.InverterReport:
        inv = report.inverter
        interval = self.profile.report_interval_s
        reported = report.reported_at if report.reported_at is not None else self._plant.installed_s
        watts = round(report.interval_wh * 3600.0 / interval)
        joules = inv.prior_joules + round(report.lifetime_wh * 3600.0)
        if self._wrapped(m.t, quirks) is inv:
            joules -= pl.WRAP_JOULES
        energy = [0.0, 0.0, 0.0]
        if history:
            for k, back in enumerate((0, 1, 6)):
                basis = m.lifetime(min(m.midnight(back), reported))[self._rows.basis]
                energy[k] = float(np.dot(inv.coef, basis))
        volts, freq, ambient = 0.0, 0.0, 0.0
        if history:  # only /ivp/pdm/device_data shows these
            volts, freq = self._grid(reported, inv.phase)
            ambient = float(
                ambient_celsius(self.seed, reported, self.profile.latitude, self.profile.longitude)
            )
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

    def _inverters_total(self, reports: list[_Report], m: _Moment, quirks: Quirks) -> pl.InvertersTotal:
        interval = self.profile.report_interval_s
        awake = [r.reported_at for r in reports if r.reported_at is not None and r.interval_wh > 0.0]
        lifetime = sum(r.lifetime_wh for r in reports)
        if self._wrapped(m.t, quirks) is not None:
            lifetime = max(0.0, lifetime - _WRAP_WH)
        return pl.InvertersTotal(
            active_count=len(reports),
            reading_time=int(max(awake)) if awake else 0,
            watts=sum(round(r.interval_wh * 3600.0 / interval) for r in reports),
            wh_lifetime=round(lifetime),
        )

    # --- meters ----------------------------------------------------------------------------------------

    def _today_start(self, m: _Moment, late: bool) -> tuple[float, float]:
        """When whToday last reset, and the value it reset to (Wh, spread over the phases)."""
        midnight = m.midnight(0)
        if not late:
            return midnight, 0.0
        # The quirk: the reset comes about a quarter of an hour late, and leaves a few Wh behind.
        day = math.floor(midnight / DAY_S)
        reset = midnight + 780.0 + 240.0 * float(hash_unit(self.seed, 70, day))
        if m.t < reset:
            midnight = m.midnight(1)
            day = math.floor(midnight / DAY_S)
            reset = midnight + 780.0 + 240.0 * float(hash_unit(self.seed, 70, day))
        return reset, 2.0 + 30.0 * float(hash_unit(self.seed, 71, day))

    def _grid(self, t: float, phase: int) -> tuple[float, float]:
        """Voltage of one phase and the grid frequency at `t`."""
        volts, hz = self.grid(np.array([t], dtype=np.float64), phase)
        return float(volts[0]), float(hz[0])

    def grid(self, times: NDArray[np.float64], phase: int) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """Voltage of one phase and the grid frequency at each of `times`."""
        americas = self.profile.longitude < -30.0
        nominal_v, nominal_hz = (120.0, 60.0) if americas else (230.0, 50.0)
        volts = nominal_v * (1.0 + 0.025 * (value_noise(self.seed, 60 + phase, times, 600.0) - 0.3))
        hz = nominal_hz + 0.08 * (value_noise(self.seed, 59, times, 120.0) - 0.5)
        return volts, hz

    def _cts(self, m: _Moment, quirks: Quirks) -> tuple[pl.Ct, pl.Ct, pl.Ct]:
        """The production CT, the net-consumption CT and the total the gateway derives, at `m.t`."""
        rows, plant, t = self._rows, self._plant, m.t
        life = m.lifetime(t)
        watts = plant.power(t)
        reset_at, left_over = self._today_start(m, quirks.late_whtoday_reset)
        at_reset = m.lifetime(reset_at)
        midnight = m.lifetime(m.midnight(0))
        yesterday = m.lifetime(m.midnight(1))
        week = m.lifetime(m.midnight(6))
        phases = self.profile.phases
        prod_max = plant.today_max(t, rows.pv, phases)
        cons_max = plant.today_max(t, rows.cons, phases)
        production, net, total = [], [], []
        for p in range(phases):
            volts, hz = self._grid(t, p)
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

    def _real_cts(self, m: _Moment, quirks: Quirks) -> list[pl.Ct]:
        """The CTs this profile has, as /ivp/meters lists them."""
        profile = self.profile
        if not (profile.production_ct or profile.consumption_ct):
            return []
        production, net, _ = self._cts(m, quirks)
        return [
            ct for ct, there in ((production, profile.production_ct), (net, profile.consumption_ct)) if there
        ]

    def _listed_cts(self, m: _Moment, quirks: Quirks) -> list[pl.Ct]:
        """What /ivp/meters lists: the real CTs, or on hardware without working CTs its two idle ports."""
        if self.profile.disabled_cts:
            production, net, _ = self._cts(m, quirks)
            return [_unmetered(production), _unmetered(net)]
        return self._real_cts(m, quirks)

    def _meter_readings(self, m: _Moment, quirks: Quirks) -> list[pl.JsonDict]:
        profile = self.profile
        # Some firmware gives every CT three channels, those of phases the site lacks reading all zero.
        channels = 3 if profile.phantom_channels else 0
        readings = pl.meters_readings(self._listed_cts(m, quirks), int(m.t), channels)
        if profile.scrambled_readings and readings:
            # Matched by eid only: another order than /ivp/meters, and a CT that /ivp/meters does not list.
            storage = pl.meters_readings([self._storage_ct(m, quirks)], int(m.t), channels)
            readings = storage + readings[::-1]
        return readings

    def _storage_ct(self, m: _Moment, quirks: Quirks) -> pl.Ct:
        """A CT on an AC-coupled battery that this gateway does not manage: it reads something else."""
        production, _, _ = self._cts(m, quirks)
        channels = tuple(
            dataclasses.replace(
                c, watts=-0.2 * c.watts, dlvd_wh=0.15 * c.dlvd_wh, rcvd_wh=0.2 * c.dlvd_wh, today_wh=0.0
            )
            for c in production.phases
        )
        return pl.Ct(pl.STORAGE, channels)

    def _production_json(self, m: _Moment, quirks: Quirks, details: bool) -> pl.JsonDict:
        inverters = self._inverters_total(self._reports(m), m, quirks)
        if self._booting(m, quirks):
            inverters = dataclasses.replace(inverters, reading_time=0, watts=0, wh_lifetime=0)
        profile = self.profile
        acb = self._acb(m.t)
        if profile.disabled_cts:
            production, net, total = (_unmetered(ct) for ct in self._cts(m, quirks))
            return pl.production_json(
                inverters, production, [total, net], int(m.t), details, cts_active=False, acb=acb
            )
        if not (profile.production_ct or profile.consumption_ct):
            return pl.production_json(inverters, None, [], int(m.t), details, acb=acb)
        production, net, total = self._cts(m, quirks)
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

    def _booting(self, m: _Moment, quirks: Quirks) -> bool:
        """Whether the gateway has only just booted (firmware 3.x then reads all-zero production)."""
        return quirks.booting_until is not None and m.t < quirks.booting_until.timestamp()

    def _api_v1_production(self, m: _Moment, quirks: Quirks) -> pl.JsonDict:
        mode = self.profile.api_v1_production
        if self._booting(m, quirks):
            return pl.api_v1_production(0, 0, 0, 0)
        if mode == "stalled":
            # Metered gateways without CTs from firmware 8.2.4264 on: the values stopped moving hours ago.
            m = _Moment(self._plant, m.midnight(0) - 12 * 3600.0)
        body = self._api_v1_live(m)
        if mode == "zeros":
            body |= {"wattHoursToday": 0, "wattHoursSevenDays": 0, "wattHoursLifetime": 0}
        return body

    def _api_v1_live(self, m: _Moment) -> pl.JsonDict:
        rows, t = self._rows, m.t
        if self.profile.production_ct:
            pv = rows.phase_rows(rows.pv)
            life = m.lifetime(t)[pv].sum()
            watts = self._plant.power(t)[pv].sum()
            today = life - m.lifetime(m.midnight(0))[pv].sum()
            week = life - m.lifetime(m.midnight(6))[pv].sum()
            return pl.api_v1_production(max(0, round(watts)), round(today), round(week), round(life))
        # Without a production CT the gateway sums what its inverters reported.
        reports = self._reports(m)
        interval = self.profile.report_interval_s
        lifetime = sum(r.lifetime_wh for r in reports)
        basis_today = m.lifetime(m.midnight(0))[rows.basis]
        basis_week = m.lifetime(m.midnight(6))[rows.basis]
        today = sum(max(0.0, r.lifetime_wh - float(np.dot(r.inverter.coef, basis_today))) for r in reports)
        week = sum(max(0.0, r.lifetime_wh - float(np.dot(r.inverter.coef, basis_week))) for r in reports)
        watts = sum(round(r.interval_wh * 3600.0 / interval) for r in reports)
        return pl.api_v1_production(watts, round(today), round(week), round(lifetime))

    def _device_data(self, m: _Moment, quirks: Quirks) -> pl.JsonDict:
        reports = [self._public_report(r, m, quirks, True) for r in self._reports(m)]
        eims: list[pl.EimDevice] = []
        if self.profile.production_ct and self.profile.consumption_ct:
            end = math.floor(m.t / 900.0) * 900.0  # CTs report in quarter hours
            production, net, total = self._cts(_Moment(self._plant, end), quirks)
            created = int(self._plant.installed_s)
            serial = self.profile.serial
            eims = [
                pl.EimDevice(
                    f"{serial}EIM1", 704643328, 1778385169, created, int(end), production, production
                ),
                pl.EimDevice(f"{serial}EIM2", 704643584, 1778385425, created, int(end), total, net),
            ]
        return pl.device_data(reports, eims)

    # --- batteries and the rest ------------------------------------------------------------------------

    def _batteries(self, t: float) -> list[pl.Battery]:
        count = self.profile.battery_count
        if not count:
            return []
        plant, rows = self._plant, self._rows
        stored = plant.battery_wh(t)
        watts = plant.power(t)
        share = _BATTERY_WH * count / plant.capacity_wh  # the rest is AC Batteries'
        each = float(watts[rows.discharge] - watts[rows.charge]) * share / count
        soc = 100.0 * stored / plant.capacity_wh
        prefix, number = _serial_base(self.seed, 200, self.profile.installed_at, count)
        installed = int(plant.installed_s)
        ambient = float(ambient_celsius(self.seed, t, self.profile.latitude, self.profile.longitude))
        return [
            pl.Battery(
                serial=f"{prefix}{number + 17 * i:06d}",
                soc_percent=soc,
                watts=each,
                capacity_wh=_BATTERY_WH,
                phase=f"ph-{'abc'[i % self.profile.phases]}",
                installed_at=installed,
                reported_at=int(t) - int(t) % 30,
                temp_c=round(max(ambient, 5.0) * 0.4 + 12.0 + 6.0 * abs(each) / _BATTERY_W),
            )
            for i in range(count)
        ]

    def _acb(self, t: float) -> pl.AcBattery | None:
        """The AC Batteries in aggregate, as production.json's storage[] entry shows them."""
        count = self.profile.acb_count
        if not count:
            return None
        plant, rows = self._plant, self._rows
        share = _ACB_WH * count / plant.capacity_wh
        watts = plant.power(t)
        stored = plant.battery_wh(t)
        return pl.AcBattery(
            count=count,
            reported_at=int(t) - int(t) % 60,
            watts=float(watts[rows.discharge] - watts[rows.charge]) * share,
            wh_now=stored * share,
            soc_percent=100.0 * stored / plant.capacity_wh,
        )

    def _acb_serials(self) -> list[str]:
        count = self.profile.acb_count
        prefix, number = _serial_base(self.seed, 230, self.profile.installed_at - timedelta(weeks=150), count)
        return [f"{prefix}{number + 31 * i:06d}" for i in range(count)]

    def _enpower_serial(self) -> str:
        prefix, number = _serial_base(self.seed, 210, self.profile.installed_at, 1)
        return f"{prefix}{number:06d}"

    def _home(self, t: float) -> pl.JsonDict:
        local = datetime.fromtimestamp(t, self._plant.tz)
        mac = [int(float(hash_unit(self.seed, 220, i)) * 256) for i in range(4)]
        profile = self.profile
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


def _unmetered(ct: pl.Ct) -> pl.Ct:
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


def _build(firmware: str) -> int:
    """A stable build time for a firmware version (epoch s)."""
    return 1_600_000_000 + zlib.crc32(firmware.encode()) % 130_000_000
