"""The simulated site as its hardware sees it: what the inverters report, the batteries hold, the grid does.

Built on the energy flows of envoylog/simulator/plant.py, and like them it knows no URL or JSON layout:
envoylog/simulator/endpoints.py renders the gateway's answers from it. The truth methods
(`production_wh` and the like) are what tests and the demo compare a collector's readings with.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
from numpy.typing import NDArray

from envoylog.simulator.plant import ACB_WH, BATTERY_W, BATTERY_WH, Flows, Inverter, plant_of, serial_base
from envoylog.simulator.profiles import Profile
from envoylog.simulator.sky import ambient_celsius, value_noise


@dataclass(frozen=True)
class ReportHistory:
    """Inverter reports over a stretch of time: grouped by inverter, in time order within each."""

    inverter: NDArray[np.int64]  # index into Site.inverter_serials()
    reported_at: NDArray[np.float64]  # epoch s (whole seconds)
    interval_wh: NDArray[np.float64]
    lifetime_wh: NDArray[np.float64]  # since installation, as of the report


@dataclass(frozen=True)
class Report:
    """One inverter's latest report at some moment."""

    inverter: Inverter
    reported_at: float | None  # None: not reported since installation
    interval_wh: float
    lifetime_wh: float  # since installation, as of the report


@dataclass(frozen=True)
class BatteryState:
    """The batteries of one kind at one moment; all units charge and discharge together."""

    count: int
    watts: float  # all units together, AC side, positive discharging
    stored_wh: float
    soc_percent: float

    @property
    def unit_watts(self) -> float:
        """The power of each unit."""
        return self.watts / self.count


class Moment:
    """One look at the site at time `t`: the lifetimes and local midnights it needs, each worked out once."""

    def __init__(self, site: Site, t: float) -> None:
        self.site = site
        self.t = t
        self._lifetimes: dict[float, NDArray[np.float64]] = {}
        self._midnights: dict[int, float] = {}

    def lifetime(self, when: float) -> NDArray[np.float64]:
        """Wh of every row from installation to `when`."""
        found = self._lifetimes.get(when)
        if found is None:
            found = self._lifetimes[when] = self.site.plant.lifetime(when)
        return found

    def inverter_lifetime_wh(self, inverter: Inverter, when: float) -> float:
        """Wh one inverter produced from installation to `when`."""
        site = self.site
        if not site.plant.faults:
            return float(np.dot(inverter.coef, self.lifetime(when)[site.rows.basis]))
        return site.inverter_lifetime_wh(site.inverter_number(inverter.serial), when, self.lifetime(when))

    def midnight(self, days_back: int) -> float:
        """Epoch second of local midnight `days_back` days before the day of `t`."""
        found = self._midnights.get(days_back)
        if found is None:
            tz = self.site.plant.tz
            day = datetime.fromtimestamp(self.t, tz).date() - timedelta(days=days_back)
            found = self._midnights[days_back] = datetime(day.year, day.month, day.day, tzinfo=tz).timestamp()
        return found


class Site:
    """The site of `profile` at any simulated time; deterministic for a given seed."""

    def __init__(self, profile: Profile, seed: int = 1, plant: Flows | None = None) -> None:
        self.profile = profile
        self.seed = seed
        # A given plant (a ScaledPlant of a fleet) takes the place of the one of this profile and seed.
        self.plant: Flows = plant if plant is not None else plant_of(profile, seed)
        self.rows = self.plant.rows
        self.inverters = self.plant.inverters
        self._offsets = np.array([inv.offset_s for inv in self.inverters], dtype=np.float64)
        self._numbers = {inv.serial: i for i, inv in enumerate(self.inverters)}
        # A dead inverter reports as if time stopped just before its fault (reports fall on whole seconds).
        self._report_until = np.full(len(self.inverters), np.inf)
        for fault in self.plant.faults:
            if fault.dead:
                self._report_until[fault.index] = fault.start_s - 0.5

    def moment(self, t: float) -> Moment:
        """A look at the site at epoch second `t`."""
        return Moment(self, t)

    # --- ground truth ----------------------------------------------------------------------------------

    def _delta(self, start: datetime, end: datetime) -> NDArray[np.float64]:
        return self.plant.lifetime(end.timestamp()) - self.plant.lifetime(start.timestamp())

    def production_wh(self, start: datetime, end: datetime) -> float:
        """Energy the inverters produced between `start` and `end` (what the production CT counts)."""
        return float(self._delta(start, end)[self.rows.phase_rows(self.rows.pv)].sum())

    def consumption_wh(self, start: datetime, end: datetime) -> float:
        """Total consumption as the gateway reports it: house load plus battery charging minus discharging."""
        return float(self._delta(start, end)[self.rows.phase_rows(self.rows.cons)].sum())

    def import_wh(self, start: datetime, end: datetime) -> float:
        """Energy drawn from the grid (summed phase by phase, as the net CT counts it)."""
        return float(self._delta(start, end)[self.rows.phase_rows(self.rows.imp)].sum())

    def export_wh(self, start: datetime, end: datetime) -> float:
        """Energy fed into the grid (summed phase by phase, as the net CT counts it)."""
        return float(self._delta(start, end)[self.rows.phase_rows(self.rows.exp)].sum())

    def inverter_wh(self, serial: str, start: datetime, end: datetime) -> float:
        """Energy one inverter produced between `start` and `end` (less what a fault took)."""
        number = self.inverter_number(serial)
        if not self.plant.faults:
            inv = self.inverters[number]
            return float(np.dot(inv.coef, self._delta(start, end)[self.rows.basis]))
        after = self.inverter_lifetime_wh(number, end.timestamp())
        return after - self.inverter_lifetime_wh(number, start.timestamp())

    def inverter_loss_wh(self, serial: str, start: datetime, end: datetime) -> float:
        """Energy one inverter's fault kept it from producing between `start` and `end` (0 without one).

        What the production CT misses against the healthy site, to the last energy step.
        """
        number = self.inverter_number(serial)
        for fault in self.plant.faults:
            if fault.index == number:
                return float(self._delta(start, end)[fault.row])
        return 0.0

    def inverter_serials(self) -> list[str]:
        """The inverters' serial numbers, in the gateway's order."""
        return [inv.serial for inv in self.inverters]

    def inverter_number(self, serial: str) -> int:
        """The inverter's place in the gateway's order (what InverterFault.index counts); KeyError if none."""
        try:
            return self._numbers[serial]
        except KeyError:
            raise KeyError(f"no inverter with serial {serial!r}") from None

    def inverter_lifetime_wh(
        self, number: int, when: float, life: NDArray[np.float64] | None = None
    ) -> float:
        """Wh inverter `number` produced from installation to `when` (`life`: the plant's lifetimes then)."""
        if life is None:
            life = self.plant.lifetime(when)
        one = np.array([number], dtype=np.int64)
        return float(self.plant.inverter_lifetimes(one, np.array([when]), life[None, :])[0])

    # --- inverters -------------------------------------------------------------------------------------

    def reports(self, m: Moment) -> list[Report]:
        """Each inverter's latest report at `m.t`: staggered intervals, and silence after dark."""
        plant, interval, offsets = self.plant, float(self.profile.report_interval_s), self._offsets
        ends = np.floor((np.minimum(m.t, self._report_until) - offsets) / interval) * interval + offsets
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
        every = np.arange(len(self.inverters), dtype=np.int64)
        lifetime = plant.inverter_lifetimes(every, reported, plant.lifetimes(reported))
        before = plant.inverter_lifetimes(every, reported - interval, plant.lifetimes(reported - interval))
        return [
            Report(inv, float(reported[i]), float(lifetime[i] - before[i]), float(lifetime[i]))
            if known[i]
            else Report(inv, None, 0.0, 0.0)
            for i, inv in enumerate(self.inverters)
        ]

    def report_history(self, start: float, end: float) -> ReportHistory:
        """Every report the inverters made with its end in (start, end], as `reports` sees them one by one.

        An inverter reports every interval that saw sun, and once more (a report of zero) after the last
        such interval; otherwise it is silent, so its latest report stays the one of zero.
        """
        plant, interval, offsets = self.plant, float(self.profile.report_interval_s), self._offsets
        count = max(math.ceil((end - start) / interval), 0) + 1
        latest = np.floor((start - offsets) / interval) * interval + offsets  # last end at or before start
        # Two ends before `latest` as well: whether a report was sent depends on the interval before it.
        ends = latest[:, None] + interval * np.arange(-2, count + 1)[None, :]
        n, width = ends.shape
        life = plant.lifetimes(ends.ravel()).reshape(n, width, self.rows.count)
        lit = life[:, 1:, 0] - life[:, :-1, 0] > 0.0  # the interval ending at ends[:, 1:] saw sun
        sent = lit[:, 1:] | lit[:, :-1]
        at = ends[:, 2:]
        keep = sent & (at > start) & (at <= end) & (at > plant.installed_s)
        keep &= at < self._report_until[:, None]  # a dead inverter is silent
        rows = self.rows.count
        inverter = np.repeat(np.arange(n, dtype=np.int64), width - 2)
        lifetime = plant.inverter_lifetimes(inverter, at.ravel(), life[:, 2:].reshape(-1, rows))
        before = plant.inverter_lifetimes(inverter, ends[:, 1:-1].ravel(), life[:, 1:-1].reshape(-1, rows))
        chosen = keep.ravel()
        return ReportHistory(
            inverter=inverter[chosen],
            reported_at=at.ravel()[chosen],
            interval_wh=(lifetime - before)[chosen],
            lifetime_wh=lifetime[chosen],
        )

    # --- weather and grid ------------------------------------------------------------------------------

    def grid(self, times: NDArray[np.float64], phase: int) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """Voltage of one phase and the grid frequency at each of `times`."""
        americas = self.profile.longitude < -30.0
        nominal_v, nominal_hz = (120.0, 60.0) if americas else (230.0, 50.0)
        volts = nominal_v * (1.0 + 0.025 * (value_noise(self.seed, 60 + phase, times, 600.0) - 0.3))
        hz = nominal_hz + 0.08 * (value_noise(self.seed, 59, times, 120.0) - 0.5)
        return volts, hz

    def grid_at(self, t: float, phase: int) -> tuple[float, float]:
        """Voltage of one phase and the grid frequency at `t`."""
        volts, hz = self.grid(np.array([t], dtype=np.float64), phase)
        return float(volts[0]), float(hz[0])

    def ambient_c(self, t: float) -> float:
        """The outside temperature at `t`."""
        return float(ambient_celsius(self.seed, t, self.profile.latitude, self.profile.longitude))

    # --- batteries -------------------------------------------------------------------------------------

    def _battery_state(self, t: float, count: int, unit_wh: int) -> BatteryState:
        """`count` units of `unit_wh` each; they hold that share of what is stored and of the power."""
        plant, rows = self.plant, self.rows
        stored = plant.battery_wh(t)
        watts = plant.power(t)
        share = unit_wh * count / plant.capacity_wh
        return BatteryState(
            count=count,
            watts=float(watts[rows.discharge] - watts[rows.charge]) * share,
            stored_wh=stored * share,
            soc_percent=100.0 * stored / plant.capacity_wh,
        )

    def encharge(self, t: float) -> BatteryState | None:
        """The Encharge / IQ Batteries at `t` (None if the site has none)."""
        count = self.profile.battery_count
        return self._battery_state(t, count, BATTERY_WH) if count else None

    def ac_batteries(self, t: float) -> BatteryState | None:
        """The AC Batteries at `t` (None if the site has none)."""
        count = self.profile.acb_count
        return self._battery_state(t, count, ACB_WH) if count else None

    def encharge_temp_c(self, t: float, unit_watts: float) -> float:
        """One Encharge unit's temperature: it follows the outside air (from 5 °C up), warming as it works."""
        return max(self.ambient_c(t), 5.0) * 0.4 + 12.0 + 6.0 * abs(unit_watts) / BATTERY_W

    def battery_serials(self) -> list[str]:
        """The Encharge / IQ Batteries' serial numbers."""
        count = self.profile.battery_count
        prefix, number = serial_base(self.seed, 200, self.profile.installed_at, count)
        return [f"{prefix}{number + 17 * i:06d}" for i in range(count)]

    def acb_serials(self) -> list[str]:
        """The AC Batteries' serial numbers (older hardware than the gateway's)."""
        count = self.profile.acb_count
        prefix, number = serial_base(self.seed, 230, self.profile.installed_at - timedelta(weeks=150), count)
        return [f"{prefix}{number + 31 * i:06d}" for i in range(count)]

    def enpower_serial(self) -> str:
        """The serial number of the site's Enpower (the system controller next to the batteries)."""
        prefix, number = serial_base(self.seed, 210, self.profile.installed_at, 1)
        return f"{prefix}{number:06d}"
