"""The gateway's data endpoints, in one table: path, parser, cadence and the series each can feed.

What the collector knows of an endpoint is here: its path, parser, cadence, the series it feeds, and when
discovery asks it; which endpoints a steady-state run needs is `steady_paths`. The parser itself lives in
`parse.py`, and the rule that makes its answer a series' source in `sources.build_snapshot`.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from envoylog.readings.discovery import Discovery
from envoylog.readings.model import GatewayInfo, SeriesKind
from envoylog.readings.parse import (
    TimeCheck,
    parse_api_v1_production,
    parse_device_data,
    parse_ensemble_inventory,
    parse_ensemble_power,
    parse_inverters,
    parse_meter_readings,
    parse_meters,
    parse_production_json,
)
from envoylog.readings.sources import api_v1_stalls

# Inverters report every 5 (or 15) minutes: asking more often only loads the gateway. Batteries change slowly.
SLOW_EVERY = timedelta(minutes=5)

# "fast": read by every run that needs it; "slow": each every SLOW_EVERY, at most one due slow endpoint a run;
# "discovery": read only when the gateway is discovered (new, or its firmware changed).
Cadence = Literal["fast", "slow", "discovery"]


def _always(info: GatewayInfo) -> bool:
    return True


def _metered(info: GatewayInfo) -> bool:
    return info.metered


def _firmware_7(info: GatewayInfo) -> bool:
    return info.firmware_version >= (7,)


@dataclass(frozen=True)
class Endpoint:
    """One data endpoint of the gateway."""

    path: str
    # The decoded JSON (and the run's time check) -> the parsed answer, kept in `Answers.<answer>`.
    parse: Callable[[Any, TimeCheck], Any]
    answer: str
    cadence: Cadence
    # The series it can be the source of (none: it tells about the hardware only).
    feeds: tuple[SeriesKind, ...]
    # Whether discovery asks it of this gateway.
    discover: Callable[[GatewayInfo], bool] = _always
    # Firmware before 7 guards it with Digest auth (user envoy, the serial's last six digits).
    digest_before_7: bool = False


PRODUCTION_JSON = "/production.json?details=1"
API_V1_PRODUCTION = "/api/v1/production"
INVERTERS = "/api/v1/production/inverters"
METERS = "/ivp/meters"
METER_READINGS = "/ivp/meters/readings"
DEVICE_DATA = "/ivp/pdm/device_data"
ENSEMBLE_INVENTORY = "/ivp/ensemble/inventory"
ENSEMBLE_POWER = "/ivp/ensemble/power"

_SITE: tuple[SeriesKind, ...] = ("production", "consumption", "net_consumption")

# In the order discovery asks them.
ENDPOINTS: dict[str, Endpoint] = {
    endpoint.path: endpoint
    for endpoint in (
        Endpoint(
            METERS, lambda data, _: parse_meters(data), "meters", "discovery", feeds=(), discover=_metered
        ),
        Endpoint(
            PRODUCTION_JSON, parse_production_json, "production_json", "fast", feeds=(*_SITE, "battery")
        ),
        Endpoint(
            API_V1_PRODUCTION,
            lambda data, _: parse_api_v1_production(data),
            "api_v1",
            "fast",
            feeds=("production",),
        ),
        Endpoint(
            METER_READINGS, parse_meter_readings, "meter_readings", "fast", feeds=_SITE, discover=_metered
        ),
        Endpoint(
            DEVICE_DATA, parse_device_data, "device_data", "slow", feeds=("inverter",), discover=_firmware_7
        ),
        Endpoint(INVERTERS, parse_inverters, "inverters", "slow", feeds=("inverter",), digest_before_7=True),
        Endpoint(
            ENSEMBLE_INVENTORY,
            parse_ensemble_inventory,
            "inventory",
            "slow",
            feeds=("battery",),
            discover=_firmware_7,
        ),
        Endpoint(
            ENSEMBLE_POWER,
            lambda data, _: parse_ensemble_power(data),
            "battery_watts",
            "slow",
            feeds=("battery",),
            discover=_firmware_7,
        ),
    )
}


def discovery_paths(info: GatewayInfo) -> list[str]:
    """Everything worth looking at on a gateway seen for the first time (or after a firmware change)."""
    return [path for path, endpoint in ENDPOINTS.items() if endpoint.discover(info)]


def steady_paths(
    info: GatewayInfo, discovery: Discovery, now: datetime, resting: Collection[str] = ()
) -> list[str]:
    """The endpoints that feed stored series: the fast ones every run, at most one due slow one.

    A `resting` slow endpoint (its breaker is open) does not take the run's slow turn from the others.
    """
    skip = set(discovery.absent) | set(discovery.refused)
    any_ct = any(ct.enabled for ct in discovery.meters)
    production_from_ct = discovery.has_ct("production") or discovery.eim_production
    inverters_entry = api_v1_stalls(info, discovery.meters) or discovery.api_v1_zero
    fast = []
    if any_ct or discovery.eim_production or discovery.eim_consumption or discovery.acb:
        fast.append(PRODUCTION_JSON)
    if any_ct:
        fast.append(METER_READINGS)
    if not production_from_ct:
        if inverters_entry:
            if PRODUCTION_JSON not in fast:
                fast.append(PRODUCTION_JSON)
        else:
            fast.append(API_V1_PRODUCTION)
    slow = [DEVICE_DATA] if DEVICE_DATA not in skip else []
    if DEVICE_DATA in skip or discovery.inverters_beyond_device_data:
        slow.append(INVERTERS)
    if discovery.batteries:
        slow += [ENSEMBLE_INVENTORY, ENSEMBLE_POWER]
    fast = [p for p in fast if p not in skip]
    slow = [p for p in slow if p not in skip]
    polled = discovery.polled_at
    due = [p for p in slow if p not in resting and (p not in polled or now - polled[p] >= SLOW_EVERY)]
    due.sort(
        key=lambda p: (p in polled, polled.get(p, now))
    )  # the longest-waiting first, never polled before all
    return fast + due[:1]
