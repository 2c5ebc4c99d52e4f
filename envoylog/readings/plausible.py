"""What a reading can physically be: values outside these bounds are a broken or hostile answer, not data.

The bounds are generous (a large commercial site, not a house) so that no real reading is ever refused, and
tight enough that a stored value can be summed and plotted: 1e308 W, 9e18 Wh or a production of -5000 W
never reach the database. A reading whose main value (its power) is impossible is not stored at all; an
impossible secondary value (a voltage, a temperature) is stored as unknown. Either way the run says so.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from envoylog.readings.model import MeterReading, Snapshot
from envoylog.readings.parse import MAX_SERIAL_CHARS

MAX_SITE_WATTS = 500_000.0  # a large commercial site; a house peaks at tens of kW
MAX_SITE_WH = 1e10  # 10 GWh: 500 kW for more than twenty years
MAX_INVERTER_WATTS = 2_000.0  # the largest micro-inverters make under 1.5 kW
NIGHT_WATTS = -1_000.0  # a CT reads a few negative watts at night, never kilowatts


@dataclass(frozen=True)
class Bound:
    """The possible values of one quantity."""

    low: float
    high: float
    unit: str

    def holds(self, value: float | None) -> bool:
        """True for None (unknown) and for a value within the bound."""
        return value is None or self.low <= value <= self.high


_METER = {
    "watts": Bound(-MAX_SITE_WATTS, MAX_SITE_WATTS, "W"),
    "wh_lifetime": Bound(-MAX_SITE_WH, MAX_SITE_WH, "Wh"),  # net consumption is balanced: it can be negative
    "wh_imported_lifetime": Bound(0, MAX_SITE_WH, "Wh"),
    "wh_exported_lifetime": Bound(0, MAX_SITE_WH, "Wh"),
    "volts": Bound(0, 1_000, "V"),
    "amps": Bound(-5_000, 5_000, "A"),
    "hz": Bound(0, 100, "Hz"),
    "power_factor": Bound(-1, 1, ""),
}
# Production and the house's consumption flow one way: only the noise of a CT goes below zero.
_ONE_WAY = {"watts": Bound(NIGHT_WATTS, MAX_SITE_WATTS, "W"), "wh_lifetime": Bound(0, MAX_SITE_WH, "Wh")}
_INVERTER = {
    "watts": Bound(-100, MAX_INVERTER_WATTS, "W"),
    "max_watts": Bound(0, MAX_INVERTER_WATTS, "W"),
    "joules_lifetime": Bound(0, 1e15, "J"),  # 280 MWh: a century of a large micro-inverter
    "ac_volts": Bound(0, 1_000, "V"),
    # A micro-inverter's currents: below 2 A AC and 20 A DC by data sheet (stored in two bytes: db/stored.py).
    "ac_amps": Bound(-32, 32, "A"),
    "dc_volts": Bound(0, 1_000, "V"),
    "dc_amps": Bound(-32, 32, "A"),
    "hz": Bound(0, 100, "Hz"),
    "temperature_c": Bound(-60, 150, "°C"),
}
_BATTERY = {
    "soc_percent": Bound(0, 100, "%"),
    "watts": Bound(-MAX_SITE_WATTS, MAX_SITE_WATTS, "W"),
    "wh_available": Bound(0, 1e7, "Wh"),
}


def plausible_snapshot(snapshot: Snapshot) -> tuple[Snapshot, list[str]]:
    """The snapshot without impossible values, and one line for each value left out."""
    problems: list[str] = []
    meters = [
        checked
        for reading in snapshot.meters
        if (checked := _check(reading, _meter_bounds(reading), "watts", _meter_name(reading), problems))
    ]
    inverters = [
        checked
        for reading in snapshot.inverters
        if _serial_fits(reading.serial, "inverter", problems)
        and (checked := _check(reading, _INVERTER, "watts", f"inverter {reading.serial}", problems))
    ]
    batteries = [
        checked
        for reading in snapshot.batteries
        if _serial_fits(reading.serial, "battery", problems)
        and (checked := _check(reading, _BATTERY, None, f"battery {reading.serial or 'acb'}", problems))
    ]
    return Snapshot(meters=meters, inverters=inverters, batteries=batteries), problems


def _serial_fits(serial: str | None, device: str, problems: list[str]) -> bool:
    if serial is None or len(serial) <= MAX_SERIAL_CHARS:
        return True
    problems.append(f"a {device} with a serial of {len(serial)} characters (no device's): not stored")
    return False


def _meter_bounds(reading: MeterReading) -> dict[str, Bound]:
    return _METER | _ONE_WAY if reading.kind in ("production", "consumption") else _METER


def _meter_name(reading: MeterReading) -> str:
    return reading.kind if reading.phase == 0 else f"{reading.kind} L{reading.phase}"


def _check(reading: Any, bounds: dict[str, Bound], main: str | None, name: str, problems: list[str]) -> Any:
    """The reading with impossible secondary values unknown; None if its main value is impossible."""
    changes: dict[str, None] = {}
    for field_name, bound in bounds.items():
        value = getattr(reading, field_name)
        if bound.holds(value):
            continue
        if field_name == main:
            problems.append(f"{name}: {value:g} {bound.unit} is not a possible {field_name}: not stored")
            return None
        problems.append(f"{name}: {value:g} {bound.unit} is not a possible {field_name}: stored as unknown")
        changes[field_name] = None
    return replace(reading, **changes) if changes else reading
