"""The simulated site's energy flows minute by minute, and their integrals: the physics under every answer.

Nothing here knows what the gateway serves or how; envoylog/simulator/site.py turns these flows into what
a site's inverters, batteries and grid do, and envoylog/simulator/endpoints.py into the gateway's answers.
"""

# Every value is a deterministic function of (profile, seed, simulated time): power is constant within
# each UTC minute, and each lifetime counter is the exact integral of its power since `installed_at`.
# Days are computed with numpy in blocks aligned to the installation day; per-day totals are kept as
# prefix sums, so a counter three years after installation costs a lookup, and a restarted simulator
# shows the very same counters.

from __future__ import annotations

import dataclasses
import functools
import math
import threading
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol
from zoneinfo import ZoneInfo

import numpy as np
from numpy.typing import NDArray

from envoylog.simulator.profiles import Profile
from envoylog.simulator.sky import (
    FloatArray,
    clear_sky_fraction,
    cloud_factor,
    hash_unit,
    house_load,
    standby_watts,
    sun_position,
)

DAY_S = 86_400
MINUTES = 1_440
_BLOCK_DAYS = 4  # days are always computed in blocks aligned to installation, so results never differ
_CACHED_DAYS = 6  # a look at one moment needs its own day and those of the local midnights up to a week back
_SURPLUS_W = 20.0  # a battery starts charging once the panels beat the house by this much
BATTERY_WH = 5_000  # one IQ Battery 5P
BATTERY_W = 3_840
ACB_WH = 1_200  # one AC Battery
ACB_W = 270
_BATTERY_EFFICIENCY = 0.95  # each way
RESERVE_PERCENT = 10  # the batteries never discharge below this share of their capacity
_QUANTUM = float(2**20)  # energy steps per Wh
_FINE_QUANTUM = float(2**30)  # steps per Wh-per-watt of the basis curves, which stay below 2**20


@dataclass(frozen=True)
class Inverter:
    """One micro-inverter: who it is, where its panels face, and when it reports."""

    serial: str
    eid: int
    phase: int
    coef: tuple[float, float, float]  # watts per unit of the three basis curves (plain, eastward, shaded)
    offset_s: int  # where in the report interval this inverter reports
    max_watts: int
    prior_joules: int  # its register predates this gateway (inverters outlive gateways)
    created_at: int


@dataclass(frozen=True)
class Fault:
    """An inverter fault as the physics applies it (see profiles.InverterFault)."""

    index: int  # the inverter, in the gateway's order
    factor: float  # the share of its healthy output it still delivers
    start_s: float  # epoch s from which it does: a whole minute, not before installation
    row: int  # the row of the energy it loses per minute

    @property
    def dead(self) -> bool:
        """Whether the inverter stops altogether (no output, no reports)."""
        return self.factor == 0.0


class Rows:
    """Where each quantity lives in a day's (rows x minutes) array of energy per minute."""

    def __init__(self, phases: int, faults: int = 0) -> None:
        self.phases = phases
        self.basis = slice(0, 3)  # sun on a unit panel: plain, times the sun's eastward component, shaded
        self.pv = 3  # per phase: inverter output
        self.standby = self.pv + phases  # per phase: the sleeping inverters' draw (production CT negative)
        self.cons = self.standby + phases  # per phase: house load, plus battery charging, minus discharging
        self.imp = self.cons + phases  # per phase: grid import
        self.exp = self.imp + phases  # per phase: grid export
        self.charge = self.exp + phases  # battery charging (AC side)
        self.discharge = self.charge + 1
        self.loss = self.discharge + 1  # per inverter fault: the energy its inverter does not deliver
        self.count = self.loss + faults

    def phase_rows(self, first: int) -> slice:
        """The per-phase rows starting at `first`."""
        return slice(first, first + self.phases)


@dataclass
class _Day:
    start: float  # epoch s of minute 0
    cumulative: NDArray[np.float64]  # rows x (minutes + 1), Wh since the start of the day
    lit_ends: NDArray[np.float64]  # epoch s at which each sunlit minute ends
    soc_start_wh: float


class Plant:
    """The physics of one site and the cached integrals of its energy flows; thread-safe."""

    def __init__(self, profile: Profile, seed: int) -> None:
        self.profile = profile
        self.seed = seed
        self.tz = ZoneInfo(profile.timezone)
        self.rows = Rows(profile.phases, len(profile.inverter_faults))
        # Days start near local solar midnight, so a day's battery cycle and sunlight stay in one block.
        self.shift_s = -round(profile.longitude * 240.0 / 60.0) * 60
        self.installed_s = profile.installed_at.timestamp()
        self.first_day = self.day_of(self.installed_s)
        self.inverters = _make_inverters(profile, seed)
        self.phase_coef = np.zeros((profile.phases, 3))
        for inv in self.inverters:
            self.phase_coef[inv.phase] += inv.coef
        self.coef = np.array([inv.coef for inv in self.inverters], dtype=np.float64).reshape(-1, 3)
        self.faults = tuple(
            Fault(
                index=fault.index,
                factor=fault.factor,
                start_s=_fault_start(fault.start, self.installed_s),
                row=self.rows.loss + k,
            )
            for k, fault in enumerate(profile.inverter_faults)
        )
        self._dead_wh: dict[int, float] = {}  # per dead inverter: its lifetime Wh when it died
        # Encharge units and AC Batteries charge and discharge together, each in proportion to its capacity.
        self.capacity_wh = float(BATTERY_WH * profile.battery_count + ACB_WH * profile.acb_count)
        self.rate_w = float(BATTERY_W * profile.battery_count + ACB_W * profile.acb_count)
        self.reserve_wh = self.capacity_wh * RESERVE_PERCENT / 100.0
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

    def inverter_lifetimes(
        self,
        inverters: NDArray[np.int64],
        times: NDArray[np.float64],
        life: NDArray[np.float64],
        scale: float = 1.0,
    ) -> NDArray[np.float64]:
        """Wh each of `inverters` delivered from installation to the matching one of `times`.

        `life` holds the plant's lifetimes at those times (one row each, as `lifetimes` gives them, times
        `scale` for a ScaledPlant): an inverter's output is its share of the basis curves, less what its
        fault loses.
        """
        out = np.einsum("ij,ij->i", self.coef[inverters], life[:, self.rows.basis])
        for fault in self.faults:
            mine = inverters == fault.index
            if not mine.any():
                continue
            out[mine] -= life[mine, fault.row]
            if fault.dead:
                # The loss rows are rounded down to whole energy steps, so that a derated inverter's counter
                # never steps back; a dead one would keep a crumb below one step a minute: it stays put.
                after = mine & (times >= fault.start_s)
                if after.any():
                    out[after] = self._dead_lifetime(fault) * scale
        return np.asarray(out)

    def _dead_lifetime(self, fault: Fault) -> float:
        with self._lock:
            found = self._dead_wh.get(fault.index)
            if found is None:
                # No loss before start: its healthy lifetime, worked out as for any other moment.
                life = self.lifetimes(np.array([fault.start_s]))[:, self.rows.basis]
                found = float(np.einsum("ij,ij->i", self.coef[[fault.index]], life)[0])
                self._dead_wh[fault.index] = found
            return found

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
        healthy_pv = pv
        losses = self._losses(t, basis)
        if losses:
            # The faults' losses are taken before the house, the batteries and the grid see the output.
            pv = pv.copy()
            for fault, lost_wh in losses:
                pv[self.inverters[fault.index].phase] -= lost_wh * 60.0
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
        values[rows.phase_rows(rows.pv)] = healthy_pv
        values[rows.phase_rows(rows.standby)] = standby[None]
        values[rows.phase_rows(rows.cons)] = cons
        values[rows.phase_rows(rows.imp)] = np.maximum(net, 0.0)
        values[rows.phase_rows(rows.exp)] = np.maximum(-net, 0.0)
        # Whole multiples of 2**-20 Wh add up exactly in float64 (below 2**32 Wh), in any order: day
        # totals, running sums and prefix sums then agree to the last bit, so counters never step back.
        energy = np.round(values * (_QUANTUM / 60.0)) / _QUANTUM
        energy[rows.basis] = basis_wh
        for fault, lost_wh in losses:
            # Whole steps taken from whole steps: the production CT misses exactly what the fault loses.
            # It never turns negative: the phase's output rounds to at least the floor of any share of it.
            pv_row = rows.pv + self.inverters[fault.index].phase
            energy[pv_row] = np.maximum(energy[pv_row] - lost_wh, 0.0)
            energy[fault.row] = lost_wh
        return np.asarray(energy)

    def _losses(self, t: NDArray[np.float64], basis: NDArray[np.float64]) -> list[tuple[Fault, FloatArray]]:
        """Wh per minute (days x minutes) each fault takes from its inverter, at minutes `t` (their middles).

        Rounded down to whole energy steps: the inverter keeps at least `factor` of every minute's output,
        so its counter (its basis share less this) never steps back.
        """
        out = []
        for fault in self.faults:
            c = self.coef[fault.index]
            watts = np.maximum(c[0] * basis[0] + c[1] * basis[1] + c[2] * basis[2], 0.0)
            lost = np.where(t - 30.0 >= fault.start_s, (1.0 - fault.factor) * watts, 0.0)
            out.append((fault, np.floor(lost * (_QUANTUM / 60.0)) / _QUANTUM))
        return out

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


class Flows(Protocol):
    """What a site needs of the physics under it: a Plant, or a ScaledPlant sharing one."""

    @property
    def tz(self) -> ZoneInfo: ...
    @property
    def rows(self) -> Rows: ...
    @property
    def inverters(self) -> list[Inverter]: ...
    @property
    def installed_s(self) -> float: ...
    @property
    def coef(self) -> NDArray[np.float64]: ...
    @property
    def capacity_wh(self) -> float: ...
    @property
    def faults(self) -> tuple[Fault, ...]: ...

    def lifetimes(self, times: NDArray[np.float64]) -> NDArray[np.float64]: ...
    def lifetime(self, t: float) -> NDArray[np.float64]: ...
    def power(self, t: float) -> NDArray[np.float64]: ...
    def inverter_lifetimes(
        self, inverters: NDArray[np.int64], times: NDArray[np.float64], life: NDArray[np.float64]
    ) -> NDArray[np.float64]: ...
    def battery_wh(self, t: float) -> float: ...
    def battery_whs(self, times: NDArray[np.float64]) -> NDArray[np.float64]: ...
    def last_lit_end(self, t: float) -> float | None: ...
    def today_max(self, t: float, first_row: int, rows: int) -> NDArray[np.float64]: ...


class ScaledPlant:
    """Another site under the same sky as `plant`: every energy flow times `scale`, inverters of its own.

    A fleet of simulated gateways shares a few Plants (each costs megabytes and a second of CPU) and gives
    every gateway its own scale and inverter serials: readings differ from gateway to gateway, and every
    balance of the site (import and export, the inverters against the production CT) still holds. Battery
    capacities are not scaled: a smaller site's batteries hold and move less, their state of charge too.
    """

    def __init__(self, plant: Plant, scale: float, serials: list[str]) -> None:
        if scale <= 0:
            raise ValueError("a site's scale must be positive")
        self.plant = plant
        self.scale = scale
        self.tz = plant.tz
        self.rows = plant.rows
        self.installed_s = plant.installed_s
        self.coef = plant.coef
        self.capacity_wh = plant.capacity_wh
        self.faults = plant.faults
        self.inverters = [
            dataclasses.replace(inverter, serial=serial)
            for inverter, serial in zip(plant.inverters, serials, strict=True)
        ]

    def lifetimes(self, times: NDArray[np.float64]) -> NDArray[np.float64]:
        """Wh of every row from installation to each of `times`."""
        return self.plant.lifetimes(times) * self.scale

    def lifetime(self, t: float) -> NDArray[np.float64]:
        """Wh of every row from installation to `t`."""
        return self.plant.lifetime(t) * self.scale

    def power(self, t: float) -> NDArray[np.float64]:
        """Watts of every row during the minute holding `t`."""
        return self.plant.power(t) * self.scale

    def inverter_lifetimes(
        self, inverters: NDArray[np.int64], times: NDArray[np.float64], life: NDArray[np.float64]
    ) -> NDArray[np.float64]:
        """Wh each of `inverters` delivered from installation to the matching one of `times` (see Plant)."""
        return self.plant.inverter_lifetimes(inverters, times, life, self.scale)

    def battery_wh(self, t: float) -> float:
        """Energy stored in the batteries at `t`."""
        return self.plant.battery_wh(t) * self.scale

    def battery_whs(self, times: NDArray[np.float64]) -> NDArray[np.float64]:
        """Energy stored in the batteries at each of `times`."""
        return self.plant.battery_whs(times) * self.scale

    def last_lit_end(self, t: float) -> float | None:
        """The end of the last sunlit minute that ended at or before `t`."""
        return self.plant.last_lit_end(t)

    def today_max(self, t: float, first_row: int, rows: int) -> NDArray[np.float64]:
        """The highest minute power of each of `rows` rows so far in the day holding `t`."""
        return self.plant.today_max(t, first_row, rows) * self.scale


def serial_base(seed: int, channel: int, installed: datetime, count: int) -> tuple[str, int]:
    """A serial prefix like the real ones (12, year, week) and a seeded start for the running number."""
    made = installed - timedelta(weeks=10)
    year, week, _ = made.isocalendar()
    room = max(1, 999_999 - 40 * count)
    return f"12{year % 100:02d}{week:02d}", int(float(hash_unit(seed, channel, 0)) * room)


def inverter_serials(profile: Profile, seed: int) -> list[str]:
    """The serial numbers of the site's inverters (seeded), in the gateway's order."""
    prefix, number = serial_base(seed, 100, profile.installed_at, profile.inverter_count)
    serials = []
    for i in range(profile.inverter_count):
        number += 1 + int(float(hash_unit(seed, 101, i)) * 39)
        serials.append(f"{prefix}{number:06d}")
    return serials


def _make_inverters(profile: Profile, seed: int) -> list[Inverter]:
    """The site's inverters, each with its own panels' size, orientation and shade (seeded)."""
    installed = int(profile.installed_at.timestamp())
    inverters = []
    for i, serial in enumerate(inverter_serials(profile, seed)):
        u = [float(hash_unit(seed, 101 + j, i)) for j in range(8)]
        peak = profile.peak_watts_per_inverter * (0.84 + 0.10 * u[1])
        east = -0.15 + 0.30 * u[2]  # panels turned a little east (positive) or west
        shade = 0.5 * u[3] if u[4] < 0.25 else 0.0  # a quarter of them lose low sun to a tree or roof
        inverters.append(
            Inverter(
                serial=serial,
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


def _fault_start(start: datetime | None, installed_s: float) -> float:
    """When a fault takes effect: the next whole minute, never before installation."""
    if start is None:
        return installed_s
    return max(math.ceil(start.timestamp() / 60.0) * 60.0, installed_s)


def plant_of(profile: Profile, seed: int) -> Plant:
    """The plant of this site: sites that differ only in firmware, serial or CTs share its integrals.

    The inverter faults stay in the key: they change the physics, so sites with other faults get their own.
    """
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
def _site_plant(site: Profile, seed: int) -> Plant:
    return Plant(site, seed)
