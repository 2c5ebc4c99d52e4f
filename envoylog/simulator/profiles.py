"""Hardware profiles of the simulated gateway: what a site has, not how it behaves over a day."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime


@dataclass(frozen=True)
class Profile:
    """One kind of installation the simulator can pretend to be."""

    name: str
    firmware: str  # without the leading letter of /info's <software>, e.g. "8.2.4345"
    part_number: str
    serial: str
    metered: bool  # /info <imeter>: the hardware can take CTs
    inverter_count: int
    phases: int  # 1 or 3
    production_ct: bool
    consumption_ct: bool  # a net-consumption CT (total consumption is derived by the gateway)
    battery_count: int  # Encharge / IQ Battery units
    report_interval_s: int  # how often each inverter reports (300 or 900)
    device_data: bool  # /ivp/pdm/device_data exists (newer firmware)
    https: bool  # firmware 7+ serves HTTPS with tokens; legacy firmware serves plain HTTP
    peak_watts_per_inverter: float
    latitude: float
    longitude: float
    timezone: str
    installed_at: datetime  # lifetime counters start here

    @property
    def needs_token(self) -> bool:
        """Firmware 7 and later want a JWT; older firmware does not."""
        return int(self.firmware.split(".")[0]) >= 7

    def with_firmware(self, firmware: str) -> Profile:
        """The same site after a firmware update."""
        return replace(self, firmware=firmware)


_INSTALLED = datetime(2023, 4, 1, tzinfo=UTC)
_SITE = {"latitude": 52.37, "longitude": 4.90, "timezone": "Europe/Amsterdam", "installed_at": _INSTALLED}

_STANDARD = Profile(
    name="standard",
    firmware="8.2.4345",
    part_number="800-00656-r06",
    serial="122302045041",
    metered=False,
    inverter_count=12,
    phases=1,
    production_ct=False,
    consumption_ct=False,
    battery_count=0,
    report_interval_s=300,
    device_data=False,
    https=True,
    peak_watts_per_inverter=290.0,
    **_SITE,  # type: ignore[arg-type]
)
_METERED = replace(
    _STANDARD,
    name="metered",
    part_number="800-00654-r08",
    serial="122238082763",
    metered=True,
    inverter_count=30,
    phases=3,
    production_ct=True,
    consumption_ct=True,
    device_data=True,
    peak_watts_per_inverter=300.0,
)

PROFILES: dict[str, Profile] = {
    "standard": _STANDARD,
    "metered": _METERED,
    "battery": replace(_METERED, name="battery", serial="122446001637", battery_count=2),
    "legacy": replace(
        _STANDARD,
        name="legacy",
        firmware="5.0.62",
        part_number="800-00551-r02",
        serial="121621012167",
        report_interval_s=900,
        https=False,
        peak_watts_per_inverter=215.0,
    ),
}


def get_profile(name: str) -> Profile:
    """The profile called `name`; a ValueError names the known ones."""
    try:
        return PROFILES[name]
    except KeyError:
        known = ", ".join(sorted(PROFILES))
        raise ValueError(f"unknown simulator profile {name!r} (known: {known})") from None
