"""Hardware profiles of the simulated gateway: what a site has, not how it behaves over a day."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Literal

ApiV1Mode = Literal["live", "stalled", "zeros"]


@dataclass(frozen=True)
class InverterFault:
    """One inverter delivering `factor` of its healthy output from `start` on (None: since installation).

    `index` counts the inverters in the gateway's order from 0. A factor of 0.0 is a dead inverter: it
    produces nothing and sends no report from `start` on, so its latest report stays the last one before.
    Any other factor is a derated inverter that goes on reporting, with that share of the energy. A `start`
    within a minute takes effect at the next whole minute (the physics' power is constant per minute).
    """

    index: int
    factor: float
    start: datetime | None = None

    def __post_init__(self) -> None:
        if isinstance(self.index, bool) or not isinstance(self.index, int) or self.index < 0:
            raise ValueError(f"an inverter fault needs an inverter number from 0, not {self.index!r}")
        if not 0.0 <= self.factor <= 1.0:  # also refuses NaN
            raise ValueError(f"an inverter fault's factor must be between 0 and 1, not {self.factor!r}")
        if self.start is not None and self.start.utcoffset() is None:
            raise ValueError("an inverter fault's start must be an aware datetime")

    @property
    def dead(self) -> bool:
        """Whether the inverter stops altogether (no output, no reports)."""
        return self.factor == 0.0


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
    # Ways particular hardware and firmware report wrongly or oddly; the defaults are a well-behaved gateway.
    disabled_cts: bool = False  # metered hardware without working CTs: listed as disabled, readings are noise
    api_v1_production: ApiV1Mode = "live"  # "stalled": frozen hours ago; "zeros": every energy value 0
    total_is_net: bool = False  # firmware 8.3.5433+: the total-consumption entry repeats net-consumption
    phantom_channels: bool = False  # CT readings carry three channels, those beyond `phases` all zero
    scrambled_readings: bool = False  # CT readings in another order than /ivp/meters, plus an unlisted CT
    acb_count: int = 0  # AC Batteries, which the gateway shows only in aggregate (production.json storage[])
    boot_zero_s: int = 0  # firmware 3.x: for this long after a boot (a simulator start) production reads 0
    html_pages: frozenset[str] = frozenset()  # endpoints answered with an HTML page instead of JSON
    html_only: bool = False  # firmware before 3.9: every page but /info is HTML
    # Inverters that broke or lost output (at most one fault per inverter); the physics honours them all.
    inverter_faults: tuple[InverterFault, ...] = ()

    def __post_init__(self) -> None:
        if self.api_v1_production not in ("live", "stalled", "zeros"):
            mode = self.api_v1_production
            raise ValueError(f"api_v1_production must be live, stalled or zeros, not {mode!r}")
        # A tuple whatever was given: profiles are hashed (plant_of caches the physics by profile).
        object.__setattr__(self, "inverter_faults", tuple(self.inverter_faults))
        indexes = [fault.index for fault in self.inverter_faults]
        for index in indexes:
            if index >= self.inverter_count:
                count = self.inverter_count
                raise ValueError(f"no inverter {index}: the {self.name} site has {count} (numbered from 0)")
        if len(set(indexes)) < len(indexes):
            raise ValueError("at most one fault per inverter")

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

_LEGACY = replace(
    _STANDARD,
    name="legacy",
    firmware="5.0.62",
    part_number="800-00551-r02",
    serial="121621012167",
    report_interval_s=900,
    https=False,
    peak_watts_per_inverter=215.0,
)
# Metered hardware on the standard site whose CT ports are empty or switched off: the gateway lists the CTs
# as disabled and still reports numbers for them, which mean nothing.
_NO_CTS = replace(
    _STANDARD,
    name="metered-no-cts",
    firmware="7.3.466",
    part_number="800-00654-r08",
    serial="122137064415",
    metered=True,
    disabled_cts=True,
)
# The standard site with a production and a net-consumption CT on its one phase.
_SINGLE_PHASE_CTS = replace(
    _STANDARD,
    part_number="800-00654-r08",
    metered=True,
    production_ct=True,
    consumption_ct=True,
    device_data=True,
)

PROFILES: dict[str, Profile] = {
    "standard": _STANDARD,
    "metered": _METERED,
    "battery": replace(_METERED, name="battery", serial="122446001637", battery_count=2),
    "legacy": _LEGACY,
    # One named site for each quirk real gateways show, so that tests and users can meet every one of them.
    "metered-no-cts": _NO_CTS,  # eim entries with activeCount 0 and disabled CTs: meaningless numbers
    "stalled-api": replace(  # firmware 8.2.4264+ without CTs: /api/v1/production stops moving
        _NO_CTS,
        name="stalled-api",
        firmware="8.2.4345",
        serial="122310027731",
        device_data=True,
        api_v1_production="stalled",
    ),
    "zero-api": replace(  # /api/v1/production answers every energy value 0 (wattsNow is live)
        _STANDARD, name="zero-api", serial="122219051208", api_v1_production="zeros"
    ),
    "total-is-net": replace(  # firmware 8.3.5433: total consumption reported equal to net consumption
        _METERED, name="total-is-net", firmware="8.3.5433", serial="122408011964", total_is_net=True
    ),
    "phantom-channels": replace(  # single-phase CTs read as three channels; readings out of order
        _SINGLE_PHASE_CTS,
        name="phantom-channels",
        serial="122226047350",
        phantom_channels=True,
        scrambled_readings=True,
    ),
    "many-inverters": replace(  # more inverters than /ivp/pdm/device_data lists (deviceDataLimit 50)
        _METERED, name="many-inverters", serial="122311030086", inverter_count=60
    ),
    "acb": replace(  # AC Batteries in production.json's storage[] entry
        _SINGLE_PHASE_CTS,
        name="acb",
        firmware="8.2.4382",
        serial="121850036412",
        device_data=False,
        acb_count=3,
        phantom_channels=True,
    ),
    "booting": replace(  # firmware 3.9: all-zero production for minutes after a boot; production.json HTML
        _LEGACY,
        name="booting",
        firmware="3.9.36",
        part_number="800-00069-r05",
        serial="121431020718",
        boot_zero_s=300,
        html_pages=frozenset({"/production.json"}),
    ),
    "html-only": replace(  # firmware 3.7: /info, and HTML pages for everything else
        _LEGACY,
        name="html-only",
        firmware="3.7.0",
        part_number="800-00069-r05",
        serial="121212009351",
        html_only=True,
    ),
}


def get_profile(name: str) -> Profile:
    """The profile called `name`; a ValueError names the known ones."""
    try:
        return PROFILES[name]
    except KeyError:
        known = ", ".join(sorted(PROFILES))
        raise ValueError(f"unknown simulator profile {name!r} (known: {known})") from None
