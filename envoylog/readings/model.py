"""What a gateway's answers say, as frozen dataclasses: the vocabulary every layer above speaks."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

# The site's channels; with the inverters and batteries, the kinds of stored series.
MeterKind = Literal["production", "consumption", "net_consumption"]
SeriesKind = Literal["production", "consumption", "net_consumption", "inverter", "battery"]
# Where a site reading came from: production.json's CT entries, /ivp/meters/readings, /api/v1/production, or
# production.json's sum of the inverters' reports.
MeterSource = Literal["eim", "meters", "api_v1", "inverters"]
BatteryKind = Literal["encharge", "acb"]  # an IQ Battery by serial, or the AC Battery installation as a whole


@dataclass(frozen=True)
class GatewayInfo:
    """What /info says about the gateway."""

    serial: str
    firmware: str  # without the leading letter, e.g. "8.2.4345"
    part_number: str | None
    metered: bool
    web_tokens: bool | None

    @property
    def firmware_version(self) -> tuple[int, ...]:
        """The firmware as numbers, for comparisons such as >= (7,)."""
        return firmware_tuple(self.firmware)

    @property
    def needs_token(self) -> bool:
        """Firmware 7 and later want a JWT."""
        return self.firmware_version >= (7,) or bool(self.web_tokens)


@dataclass(frozen=True)
class MeterReading:
    """A site-level channel (production, consumption or net consumption), in total or for one phase."""

    kind: MeterKind
    phase: int  # 0: all phases; 1..3: L1..L3
    source: MeterSource
    read_at: datetime
    watts: float
    wh_lifetime: float | None  # net consumption: imported minus exported, can be negative
    wh_imported_lifetime: float | None = None  # a CT's delivered energy (from the grid, for a net CT)
    wh_exported_lifetime: float | None = None  # a CT's received energy (to the grid, for a net CT)
    volts: float | None = None
    amps: float | None = None
    hz: float | None = None
    power_factor: float | None = None


@dataclass(frozen=True)
class InverterReading:
    """One micro-inverter's latest report."""

    serial: str
    reported_at: datetime
    watts: float
    max_watts: float | None
    joules_lifetime: float | None = None  # /ivp/pdm/device_data only
    ac_volts: float | None = None
    ac_amps: float | None = None
    dc_volts: float | None = None
    dc_amps: float | None = None
    hz: float | None = None
    temperature_c: float | None = None


@dataclass(frozen=True)
class BatteryReading:
    """A battery's state: an Encharge / IQ Battery by serial, or the AC Battery installation in aggregate."""

    serial: str | None  # None for the acb aggregate
    kind: BatteryKind
    read_at: datetime
    soc_percent: float | None
    watts: float | None  # positive: discharging into the house
    wh_available: float | None = None


@dataclass(frozen=True)
class EimEntry:
    """An `eim` entry of /production.json: what one CT measures, if `active_count` says a CT is there."""

    measurement_type: str
    active_count: int
    read_at: datetime
    watts: float
    wh_lifetime: float | None
    wh_today: float | None
    volts: float | None  # the sum over phases, as the gateway reports it
    amps: float | None
    power_factor: float | None
    lines: tuple[EimEntry, ...] = ()


@dataclass(frozen=True)
class InvertersEntry:
    """The `inverters` entry of /production.json: the sum of the inverters' reports."""

    active_count: int
    read_at: datetime
    watts: float
    wh_lifetime: float | None


@dataclass(frozen=True)
class ProductionJson:
    """/production.json, its entries by type."""

    inverters: InvertersEntry | None
    production_eim: EimEntry | None
    consumption_eims: tuple[EimEntry, ...]
    acb: BatteryReading | None


@dataclass(frozen=True)
class ApiV1Production:
    """/api/v1/production."""

    watts: float
    wh_today: float | None
    wh_seven_days: float | None
    wh_lifetime: float | None

    @property
    def energy_all_zero(self) -> bool:
        """Some gateways answer every energy value 0: then the numbers mean nothing."""
        return not any((self.wh_today, self.wh_seven_days, self.wh_lifetime))


@dataclass(frozen=True)
class MeterConfig:
    """One CT from /ivp/meters."""

    eid: int
    enabled: bool
    measurement_type: str
    phase_count: int


@dataclass(frozen=True)
class CtReading:
    """One CT's reading from /ivp/meters/readings, with its phases in `channels`."""

    eid: int | None
    read_at: datetime
    watts: float
    wh_delivered_lifetime: float | None
    wh_received_lifetime: float | None
    volts: float | None
    amps: float | None
    hz: float | None
    power_factor: float | None
    channels: tuple[CtReading, ...] = ()


@dataclass(frozen=True)
class DeviceData:
    """/ivp/pdm/device_data: per-inverter detail for at most `limit` devices."""

    inverters: tuple[InverterReading, ...]
    device_count: int | None
    limit: int | None


@dataclass(frozen=True)
class EnsembleInventory:
    """ENCHARGE devices of /ivp/ensemble/inventory."""

    batteries: tuple[BatteryReading, ...] = field(default=())


def firmware_tuple(firmware: str) -> tuple[int, ...]:
    """ "8.2.4345" -> (8, 2, 4345); trailing text after a number is ignored."""
    numbers = []
    for part in firmware.split("."):
        digits = ""
        for char in part:
            if not char.isdigit():
                break
            digits += char
        if not digits:
            break
        numbers.append(int(digits))
    return tuple(numbers)


@dataclass(frozen=True)
class Snapshot:
    """Everything one run read from a gateway, ready to store."""

    meters: Sequence[MeterReading] = ()
    inverters: Sequence[InverterReading] = ()
    batteries: Sequence[BatteryReading] = ()
