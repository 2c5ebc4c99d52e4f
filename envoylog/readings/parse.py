"""Pure parsers: the gateway's JSON and XML in, frozen dataclasses out. No I/O, no database.

The gateway's camelCase keys appear only here. Every parser raises `ParseError` (and nothing else) on input
it cannot use, and never yields a NaN, an infinity or a negative lifetime counter.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from xml.parsers import expat

from envoylog.errors import GatewayError
from envoylog.readings.model import (
    ApiV1Production,
    BatteryReading,
    CtReading,
    DeviceData,
    EimEntry,
    EnsembleInventory,
    GatewayInfo,
    InverterReading,
    InvertersEntry,
    MeterConfig,
    ProductionJson,
)

# A gateway timestamp further ahead of the collector's clock than this is not believed.
MAX_CLOCK_LEAD = timedelta(hours=1)
WH_PER_JOULE = 1 / 3600
# Longer texts than these are no gateway's (and would not fit the database's columns).
MAX_SERIAL_CHARS = 64
MAX_FIRMWARE_CHARS = 40


class ParseError(GatewayError):
    """The gateway answered something that is not the document expected."""


class HtmlAnswer(ParseError):
    """The gateway answered an HTML page where JSON was expected (firmware that serves only HTML)."""


@dataclass
class TimeCheck:
    """The collection time, and the gateway times a run could not believe.

    A gateway time is believed when it is non-zero and not more than an hour ahead of `now`; a reading with
    any other time is stored at `now` instead, never dropped, and `replaced` counts them per endpoint so the
    collector can say so once per run.
    """

    now: datetime
    replaced: dict[str, int] = field(default_factory=dict)

    def at(self, value: Any, where: str) -> datetime:
        """The gateway time `value` (epoch seconds) if it can be believed, else the collection time."""
        when = _timestamp(value, self.now)
        if when is None:
            self.replaced[where] = self.replaced.get(where, 0) + 1
            return self.now
        return when


# --- decoding ---


def decode_json(body: bytes | str, what: str) -> Any:
    """JSON from a response body; a ParseError names the endpoint."""
    try:
        return json.loads(body)
    except RecursionError:
        raise ParseError(f"{what} answered JSON nested too deeply to be a gateway's") from None
    except (ValueError, UnicodeDecodeError):
        text = body[:200].decode("utf-8", "replace") if isinstance(body, bytes) else body[:200]
        if text.lstrip().lower().startswith(("<!doctype html", "<html")):
            raise HtmlAnswer(f"{what} answered an HTML page, not JSON") from None
        raise ParseError(f"{what} answered something that is not JSON") from None


def parse_info(body: bytes | str) -> GatewayInfo:
    """Parse /info; HTML (firmware before 3.9) and broken XML are refused."""
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    if "<envoy_info" not in text:
        raise ParseError(
            "/info is not the gateway's XML document: firmware that serves only HTML is unsupported"
        )
    texts = _xml_texts(text, {("device",), ("device", "sn"), ("device", "software"), ("device", "pn")})
    if ("device",) not in texts:
        raise ParseError("/info has no <device> element")
    serial = texts.get(("device", "sn"), "").strip()
    software = texts.get(("device", "software"), "").strip()
    if not serial or not software:
        raise ParseError("/info lacks the serial number or the firmware version")
    firmware = software[1:] if software[0].isalpha() else software
    if not firmware or not firmware[0].isdigit() or len(firmware) > MAX_FIRMWARE_CHARS:
        raise ParseError(f"/info has an unreadable firmware version {software[:20]!r}")
    if len(serial) > MAX_SERIAL_CHARS:
        raise ParseError(f"/info has a serial of {len(serial)} characters, not a gateway's")
    part_number = texts.get(("device", "pn"), "").strip()
    tokens_text = texts.get(("web-tokens",), "").strip().lower()
    return GatewayInfo(
        serial=serial,
        firmware=firmware,
        part_number=part_number if 0 < len(part_number) <= MAX_FIRMWARE_CHARS else None,
        metered=texts.get(("device", "imeter"), "").strip().lower() == "true",
        web_tokens={"true": True, "false": False}.get(tokens_text),
    )


def _xml_texts(text: str, wanted: set[tuple[str, ...]]) -> dict[tuple[str, ...], str]:
    """The text of the first element at each wanted path below the root (tag names), read with expat.

    /info is read on every run: ElementTree would build a tree for five values, and cost a cron collect
    0.4 MB of memory to import.
    """
    wanted = wanted | {("device", "imeter"), ("web-tokens",)}
    path: list[str] = []
    texts: dict[tuple[str, ...], str] = {}
    pieces: list[str] = []

    def start(name: str, _attributes: dict[str, str]) -> None:
        path.append(name)
        pieces.clear()

    def end(_name: str) -> None:
        key = tuple(path[1:])
        if key in wanted and key not in texts:  # the first such element, as ElementTree's find
            texts[key] = "".join(pieces)  # a leaf's text (an element with children: present, no text)
        path.pop()
        pieces.clear()

    parser = expat.ParserCreate()
    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.CharacterDataHandler = pieces.append
    try:
        parser.Parse(text, True)
    except expat.ExpatError:
        raise ParseError("/info is malformed XML") from None
    return texts


def parse_production_json(data: Any, times: TimeCheck) -> ProductionJson:
    """Parse /production.json (with or without details=1)."""
    root = _mapping(data, "/production.json")
    inverters = None
    production_eim = None
    for entry in _entries(root, "production"):
        kind = entry.get("type")
        if kind == "inverters":
            inverters = InvertersEntry(
                active_count=_int(entry.get("activeCount"), 0),
                # readingTime is 0 at night, when no inverter reports: the collection time then.
                read_at=times.at(entry.get("readingTime"), "/production.json"),
                watts=_float(entry.get("wNow")) or 0.0,
                wh_lifetime=_counter(entry.get("whLifetime")),
            )
        elif kind == "eim" and entry.get("measurementType", "production") == "production":
            production_eim = _eim(entry, times)
    consumption = tuple(_eim(e, times) for e in _entries(root, "consumption") if e.get("type") == "eim")
    acb = None
    for entry in _entries(root, "storage"):
        if entry.get("type") == "acb" and _int(entry.get("activeCount"), 0) > 0:
            acb = BatteryReading(
                serial=None,
                kind="acb",
                read_at=times.at(entry.get("readingTime"), "/production.json"),
                soc_percent=_percent(entry.get("percentFull")),
                watts=_float(entry.get("wNow")),
                wh_available=_counter(entry.get("whNow")),
            )
    return ProductionJson(inverters, production_eim, consumption, acb)


def _eim(entry: Mapping[str, Any], times: TimeCheck) -> EimEntry:
    lines = entry.get("lines")
    return EimEntry(
        measurement_type=str(entry.get("measurementType", "production")),
        active_count=_int(entry.get("activeCount"), 0),
        read_at=times.at(entry.get("readingTime"), "/production.json"),
        watts=_float(entry.get("wNow")) or 0.0,
        wh_lifetime=_float(entry.get("whLifetime")),
        wh_today=_counter(entry.get("whToday")),
        volts=_float(entry.get("rmsVoltage")),
        amps=_float(entry.get("rmsCurrent")),
        power_factor=_float(entry.get("pwrFactor")),
        lines=tuple(
            _eim({**line, "measurementType": entry.get("measurementType"), "activeCount": 1}, times)
            for line in (lines if isinstance(lines, list) else [])
            if isinstance(line, dict)
        ),
    )


def parse_api_v1_production(data: Any) -> ApiV1Production:
    """Parse /api/v1/production."""
    root = _mapping(data, "/api/v1/production")
    watts = _float(root.get("wattsNow"))
    if watts is None:
        raise ParseError("/api/v1/production has no wattsNow")
    return ApiV1Production(
        watts=watts,
        wh_today=_counter(root.get("wattHoursToday")),
        wh_seven_days=_counter(root.get("wattHoursSevenDays")),
        wh_lifetime=_counter(root.get("wattHoursLifetime")),
    )


def parse_inverters(data: Any, times: TimeCheck) -> tuple[InverterReading, ...]:
    """Parse /api/v1/production/inverters (an inverter without a report time gets the collection time)."""
    if not isinstance(data, list):
        raise ParseError("/api/v1/production/inverters is not a list")
    readings = []
    for item in data:
        if not isinstance(item, dict) or not item.get("serialNumber"):
            continue
        if item.get("devType", 1) != 1:
            continue  # other device types listed here (devType 11: AC Batteries) are not inverters
        watts = _float(item.get("lastReportWatts"))
        if watts is None:
            continue
        reported_at = times.at(item.get("lastReportDate"), "/api/v1/production/inverters")
        readings.append(
            InverterReading(
                serial=str(item["serialNumber"]),
                reported_at=reported_at,
                watts=watts,
                max_watts=_float(item.get("maxReportWatts")),
            )
        )
    return tuple(readings)


def parse_meters(data: Any) -> tuple[MeterConfig, ...]:
    """Parse /ivp/meters: the CTs and whether each is enabled."""
    if not isinstance(data, list):
        raise ParseError("/ivp/meters is not a list")
    meters = []
    for item in data:
        if not isinstance(item, dict):
            continue
        eid = _int(item.get("eid"), None)
        if eid is None:
            continue
        meters.append(
            MeterConfig(
                eid=eid,
                enabled=item.get("state") == "enabled",
                measurement_type=str(item.get("measurementType", "")),
                phase_count=_int(item.get("phaseCount"), 1) or 1,
            )
        )
    return tuple(meters)


def parse_meter_readings(data: Any, times: TimeCheck) -> tuple[CtReading, ...]:
    """Parse /ivp/meters/readings: one reading per CT, matched to /ivp/meters by `eid` later."""
    if not isinstance(data, list):
        raise ParseError("/ivp/meters/readings is not a list")
    return tuple(_ct(item, times) for item in data if isinstance(item, dict))


def _ct(item: Mapping[str, Any], times: TimeCheck) -> CtReading:
    channels = item.get("channels")
    return CtReading(
        eid=_int(item.get("eid"), None),
        read_at=times.at(item.get("timestamp"), "/ivp/meters/readings"),
        watts=_float(item.get("activePower")) or 0.0,
        wh_delivered_lifetime=_counter(item.get("actEnergyDlvd")),
        wh_received_lifetime=_counter(item.get("actEnergyRcvd")),
        volts=_float(item.get("voltage")),
        amps=_float(item.get("current")),
        hz=_float(item.get("freq")),
        power_factor=_float(item.get("pwrFactor")),
        channels=tuple(
            _ct(c, times) for c in (channels if isinstance(channels, list) else []) if isinstance(c, dict)
        ),
    )


def parse_device_data(data: Any, times: TimeCheck) -> DeviceData:
    """Parse /ivp/pdm/device_data: per-inverter detail and lifetime joules."""
    root = _mapping(data, "/ivp/pdm/device_data")
    inverters = []
    for value in root.values():
        if not isinstance(value, dict) or value.get("devName") != "pcu" or not value.get("sn"):
            continue
        channels = value.get("channels")
        channel = _child(channels[0] if isinstance(channels, list) and channels else None)
        last = _child(channel.get("lastReading"))
        lifetime = _child(channel.get("lifetime"))
        watts_block = _child(channel.get("watts"))
        watts = _float(watts_block.get("now"))
        if watts is None:
            continue
        reported_at = times.at(last.get("endDate"), "/ivp/pdm/device_data")
        inverters.append(
            InverterReading(
                serial=str(value["sn"]),
                reported_at=reported_at,
                watts=watts,
                max_watts=_float(watts_block.get("max")),
                joules_lifetime=_counter(lifetime.get("joulesProduced")),
                ac_volts=_milli(last.get("acVoltageINmV")),
                ac_amps=_milli(last.get("acCurrentInmA")),
                dc_volts=_milli(last.get("dcVoltageINmV")),
                dc_amps=_milli(last.get("dcCurrentINmA")),
                hz=_milli(last.get("acFrequencyINmHz")),
                temperature_c=_float(last.get("channelTemp")),
            )
        )
    return DeviceData(
        inverters=tuple(inverters),
        device_count=_int(root.get("deviceCount"), None),
        limit=_int(root.get("deviceDataLimit"), None),
    )


def parse_ensemble_inventory(data: Any, times: TimeCheck) -> EnsembleInventory:
    """Parse /ivp/ensemble/inventory: the Encharge / IQ Batteries and their state of charge."""
    if not isinstance(data, list):
        raise ParseError("/ivp/ensemble/inventory is not a list")
    batteries = []
    for group in data:
        if not isinstance(group, dict) or group.get("type") != "ENCHARGE":
            continue
        devices = group.get("devices")
        for device in devices if isinstance(devices, list) else []:
            if not isinstance(device, dict) or not device.get("serial_num"):
                continue
            batteries.append(
                BatteryReading(
                    serial=str(device["serial_num"]),
                    kind="encharge",
                    read_at=times.at(device.get("last_rpt_date"), "/ivp/ensemble/inventory"),
                    soc_percent=_percent(device.get("percentFull")),
                    watts=None,
                )
            )
    return EnsembleInventory(tuple(batteries))


def parse_ensemble_power(data: Any) -> dict[str, float]:
    """Parse /ivp/ensemble/power: watts per battery serial (the gateway gives mW, positive discharging)."""
    root = _mapping(data, "/ivp/ensemble/power")
    # The key really is "devices:", colon included; accept the plain spelling should firmware fix it.
    devices = root.get("devices:", root.get("devices"))
    if not isinstance(devices, list):
        raise ParseError("/ivp/ensemble/power has no device list")
    power = {}
    for device in devices:
        if isinstance(device, dict) and device.get("serial_num"):
            milliwatts = _float(device.get("real_power_mw"))
            if milliwatts is not None:
                power[str(device["serial_num"])] = milliwatts / 1000
    return power


# --- value checks ---


def _mapping(data: Any, what: str) -> Mapping[str, Any]:
    if not isinstance(data, dict):
        raise ParseError(f"{what} is not a JSON object")
    return data


def _child(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, dict) else {}


def _entries(root: Mapping[str, Any], key: str) -> list[Mapping[str, Any]]:
    value = root.get(key)
    return [e for e in value if isinstance(e, dict)] if isinstance(value, list) else []


def _float(value: Any) -> float | None:
    """A number as a float; None where there is none (a string, a boolean, null).

    A number no float can hold (an integer of hundreds of digits), NaN and infinities (which JSON itself does
    not have) are a broken answer: ParseError.
    """
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        number = float(value)
    except OverflowError:
        raise ParseError("a number too large to be a reading") from None
    if not math.isfinite(number):
        raise ParseError(f"a number that is not finite ({number})")
    return number


def _counter(value: Any) -> float | None:
    """A lifetime or daily counter: finite and not negative."""
    number = _float(value)
    return number if number is not None and number >= 0 else None


def _percent(value: Any) -> float | None:
    number = _float(value)
    return number if number is not None and 0 <= number <= 100 else None


def _milli(value: Any) -> float | None:
    number = _float(value)
    return None if number is None else number / 1000


def _int(value: Any, default: int | None) -> Any:
    number = _float(value)
    return default if number is None else int(number)


def _timestamp(value: Any, now: datetime) -> datetime | None:
    """A gateway epoch time, when valid: non-zero and not more than an hour ahead of `now`."""
    seconds = _float(value)
    if seconds is None or seconds <= 0:
        return None
    try:
        when = datetime.fromtimestamp(seconds, UTC)
    except (OverflowError, OSError, ValueError):
        return None
    return when if when <= now + MAX_CLOCK_LEAD else None
