"""The simulated site's surroundings: where the sun is, what the panels get, and the house's load."""

# Every function here is a pure function of (seed, time): the same instant always gives the same sky and
# the same load, whatever was asked before, so counters rebuilt after a restart are identical.
# Times are epoch seconds (float arrays of any shape); powers are watts.

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

FloatArray = NDArray[np.float64]

_J2000_EPOCH_S = 946_728_000.0  # 2000-01-01 12:00 UTC, the reference of the low-precision solar formulas
_DAY_S = 86_400.0
_YEAR_DAYS = 365.2422

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)
_MASK64 = (1 << 64) - 1


def hash_unit(seed: int, channel: int, key: ArrayLike) -> FloatArray:
    """A uniform number in [0, 1) fixed by (seed, channel, integer key): the simulator's random source."""
    keys = np.asarray(key)
    shape = keys.shape
    # A 1-d array keeps numpy's wrap-around integer arithmetic silent (scalars would warn on overflow).
    x = np.atleast_1d(keys.astype(np.int64)).ravel().astype(np.uint64)
    salt = np.uint64(
        ((seed & 0xFFFFFFFF) * 0x2545F4914F6CDD1D + (channel & 0xFFFF) * 0x632BE59BD9B4E019) & _MASK64
    )
    x = x * _GOLDEN + salt
    x = (x ^ (x >> np.uint64(30))) * _MIX1
    x = (x ^ (x >> np.uint64(27))) * _MIX2
    x = x ^ (x >> np.uint64(31))
    return ((x >> np.uint64(11)).astype(np.float64) * 2.0**-53).reshape(shape)


def value_noise(seed: int, channel: int, t: ArrayLike, period_s: float) -> FloatArray:
    """Smooth noise in [0, 1): seeded values every `period_s`, eased in between."""
    x = np.asarray(t, dtype=np.float64) / period_s
    k = np.floor(x)
    f = x - k
    ease = f * f * (3.0 - 2.0 * f)
    if k.size == 0:
        return np.zeros(k.shape)
    # Hash each knot once: a day of minutes touches only a few hundred of them.
    low = float(k.min())
    knots = hash_unit(seed, channel, np.arange(low, float(k.max()) + 2.0))
    index = (k - low).astype(np.int64)
    v0 = knots[index]
    v1 = knots[index + 1]
    return np.asarray(v0 + (v1 - v0) * ease, dtype=np.float64)


@dataclass(frozen=True)
class SunPosition:
    """The unit vector to the sun in local east / north / up coordinates."""

    east: FloatArray
    north: FloatArray
    up: FloatArray  # the sine of the solar elevation


def _solar_coordinates(n: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Declination and right ascension (radians) at `n` days after J2000."""
    mean_longitude = np.radians((280.460 + 0.9856474 * n) % 360.0)
    anomaly = np.radians((357.528 + 0.9856003 * n) % 360.0)
    ecliptic = mean_longitude + np.radians(1.915 * np.sin(anomaly) + 0.020 * np.sin(2 * anomaly))
    obliquity = np.radians(23.439 - 0.0000004 * n)
    right_ascension = np.arctan2(np.cos(obliquity) * np.sin(ecliptic), np.cos(ecliptic))
    declination = np.arcsin(np.sin(obliquity) * np.sin(ecliptic))
    return declination, right_ascension


def sun_position(t: ArrayLike, latitude: float, longitude: float) -> SunPosition:
    """Where the sun is at epoch seconds `t`, seen from (latitude, longitude) in degrees."""
    n = (np.asarray(t, dtype=np.float64) - _J2000_EPOCH_S) / _DAY_S
    if n.size > 48:
        # Declination and right ascension drift slowly: work them out hourly and interpolate.
        grid = np.arange(float(n.min()), float(n.max()) + 1.0 / 24.0, 1.0 / 24.0)
        dec_grid, ra_grid = _solar_coordinates(grid)
        declination = np.interp(n, grid, dec_grid)
        right_ascension = np.interp(n, grid, np.unwrap(ra_grid))
    else:
        declination, right_ascension = _solar_coordinates(n)
    sidereal = np.radians((280.46061837 + 360.98564736629 * n) % 360.0)
    hour_angle = sidereal + math.radians(longitude) - right_ascension
    lat = math.radians(latitude)
    cos_dec = np.cos(declination)
    sin_dec = np.sin(declination)
    cos_hour = np.cos(hour_angle)
    return SunPosition(
        east=-cos_dec * np.sin(hour_angle),
        north=math.cos(lat) * sin_dec - math.sin(lat) * cos_dec * cos_hour,
        up=math.sin(lat) * sin_dec + math.cos(lat) * cos_dec * cos_hour,
    )


def clear_sky_fraction(sun: SunPosition, latitude: float, tilt_deg: float = 35.0) -> FloatArray:
    """Output of a panel facing the equator under a clear sky, as a fraction (0..1) of its rating."""
    up = sun.up
    elevation_deg = np.degrees(np.arcsin(np.clip(up, -1.0, 1.0)))
    lit = up > 0.02
    safe_up = np.where(lit, up, 1.0)
    safe_elev = np.where(lit, elevation_deg, 90.0)
    air_mass = 1.0 / (safe_up + 0.50572 * (safe_elev + 6.07995) ** -1.6364)
    direct = 1.353 * 0.7 ** (air_mass**0.678)  # kW/m² reaching the ground (Meinel's clear-sky model)
    tilt = math.radians(tilt_deg)
    toward_equator = -1.0 if latitude >= 0 else 1.0
    cos_incidence = up * math.cos(tilt) + toward_equator * sun.north * math.sin(tilt)
    diffuse = 0.1 * direct * (1.0 + math.cos(tilt)) / 2.0
    fraction = np.clip(0.97 * (direct * np.clip(cos_incidence, 0.0, None) + diffuse), 0.0, 1.0)
    # Micro-inverters wake up only once the panel gives them a few watts.
    return np.asarray(np.where(lit & (fraction > 0.004), fraction, 0.0), dtype=np.float64)


def _season(t: FloatArray) -> FloatArray:
    """+1 in mid-January, -1 in mid-July (northern winter and summer)."""
    days = t / _DAY_S
    if days.size <= 48:
        return np.asarray(np.cos(2 * np.pi * (days % _YEAR_DAYS - 15.0) / _YEAR_DAYS), dtype=np.float64)
    # It changes slowly: an hourly grid and interpolation cost far less than a cosine per minute.
    grid = np.arange(math.floor(float(days.min())), float(days.max()) + 1.0 / 12.0, 1.0 / 24.0)
    on_grid = np.cos(2 * np.pi * (grid % _YEAR_DAYS - 15.0) / _YEAR_DAYS)
    return np.asarray(np.interp(days, grid, on_grid), dtype=np.float64)


def cloud_factor(seed: int, t: ArrayLike, latitude: float) -> FloatArray:
    """The share of clear-sky power that passing clouds let through (0.1..1)."""
    times = np.asarray(t, dtype=np.float64)
    season = _season(times) * (1.0 if latitude >= 0 else -1.0)
    cover = np.clip(0.9 * value_noise(seed, 1, times, 1.3 * _DAY_S) + 0.25 * season + 0.2, 0.0, 1.0)
    drift = 0.6 * value_noise(seed, 2, times, 1500.0) + 0.4 * value_noise(seed, 3, times, 420.0)
    edge = np.clip((drift - (1.0 - cover)) / 0.15, 0.0, 1.0)
    opacity = edge * edge * (3.0 - 2.0 * edge)
    return np.asarray(1.0 - opacity * (0.5 + 0.4 * cover), dtype=np.float64)


def standby_watts(seed: int, t: ArrayLike) -> FloatArray:
    """What the sleeping inverters draw at night, as the production CT sees it (1..5 W)."""
    return 1.0 + 4.0 * value_noise(seed, 4, t, 1800.0)


_PHASE_SHARES = {1: (1.0,), 2: (0.58, 0.42), 3: (0.46, 0.32, 0.22)}
_EVENT_SLOT_S = 600.0
_EVENT_HOURS = [0.0, 6.0, 7.0, 9.0, 12.0, 17.0, 19.0, 22.0, 24.0]
_EVENT_CHANCE = [0.005, 0.005, 0.06, 0.05, 0.03, 0.07, 0.08, 0.02, 0.005]


def house_load(seed: int, t: ArrayLike, utc_offset_s: ArrayLike, phases: int) -> FloatArray:
    """The house's consumption per phase (shape: phases x shape of `t`), in watts."""
    times = np.asarray(t, dtype=np.float64)
    offsets = np.broadcast_to(np.asarray(utc_offset_s, dtype=np.float64), times.shape)
    local = times + offsets
    hour = (local % _DAY_S) / 3600.0
    weekend = ((np.floor(local / _DAY_S) + 3.0) % 7.0) >= 5.0  # 1970-01-01 was a Thursday
    winter = _season(times)

    base = (170.0 + 70.0 * float(hash_unit(seed, 20, 0))) * (1.0 + 0.2 * winter)
    fridge = 65.0 * (value_noise(seed, 21, times, 900.0) > 0.55)
    wake = 7.2 + 1.5 * weekend
    morning = 450.0 * np.exp(-(((hour - wake) / 0.55) ** 2))
    midday = 250.0 * weekend * np.exp(-(((hour - 13.0) / 2.5) ** 2))
    evening = (700.0 + 300.0 * winter) * np.exp(-(((hour - 18.8) / 1.5) ** 2))
    wobble = 0.92 + 0.16 * value_noise(seed, 22, times, 300.0)
    steady = (base + fridge + morning + midday + evening) * wobble

    shares = _PHASE_SHARES.get(phases) or tuple(1.0 / phases for _ in range(phases))
    load = np.stack([steady * share for share in shares])

    load += _appliances(seed, times, offsets, phases)
    return np.asarray(load, dtype=np.float64)


def ambient_celsius(seed: int, t: ArrayLike, latitude: float, longitude: float) -> FloatArray:
    """Outdoor temperature: cold winters, warm afternoons, a little day-to-day drift."""
    times = np.asarray(t, dtype=np.float64)
    season = _season(times) * (1.0 if latitude >= 0 else -1.0)
    solar_day = ((times + longitude * 240.0) / _DAY_S) % 1.0
    daily = np.cos(2 * np.pi * (solar_day - 0.62))  # warmest around 15:00 solar time
    return np.asarray(11.0 - 8.0 * season + 4.0 * daily + 4.0 * (value_noise(seed, 5, times, _DAY_S) - 0.5))


def _appliances(seed: int, times: FloatArray, offsets: FloatArray, phases: int) -> FloatArray:
    """Kettles, ovens and washing machines: at most one starts per ten-minute slot, for 2 to 25 minutes."""
    out = np.zeros((phases, *times.shape))
    if times.size == 0:
        return out
    flat = times.ravel()
    order = np.argsort(flat, kind="stable")
    ordered = flat[order]
    slots = np.arange(
        math.floor(ordered[0] / _EVENT_SLOT_S) - 3.0, math.floor(ordered[-1] / _EVENT_SLOT_S) + 1.0
    )
    slot_offsets = np.interp(slots * _EVENT_SLOT_S, ordered, offsets.ravel()[order])
    slot_hour = ((slots * _EVENT_SLOT_S + slot_offsets) % _DAY_S) / 3600.0
    happens = hash_unit(seed, 30, slots) < np.interp(slot_hour, _EVENT_HOURS, _EVENT_CHANCE)
    start = slots * _EVENT_SLOT_S + hash_unit(seed, 31, slots) * _EVENT_SLOT_S
    end = start + 120.0 + 1380.0 * hash_unit(seed, 32, slots)
    watts = 800.0 + 2200.0 * hash_unit(seed, 33, slots)
    phase = np.minimum(np.floor(hash_unit(seed, 34, slots) * phases), phases - 1).astype(np.int64)
    # Each event covers a run of consecutive (sorted) instants: mark its edges, then sum them up.
    edges = np.zeros((phases, flat.size + 1))
    np.add.at(edges, (phase[happens], np.searchsorted(ordered, start[happens])), watts[happens])
    np.add.at(edges, (phase[happens], np.searchsorted(ordered, end[happens])), -watts[happens])
    running = np.clip(np.cumsum(edges[:, :-1], axis=1), 0.0, None)
    flat_out = out.reshape(phases, -1)
    flat_out[:, order] = running
    return out
