"""MQTT with Home Assistant discovery: the latest readings of each gateway, published to a broker.

Topics (`<prefix>` is `[mqtt] topic_prefix`, `<serial>` the gateway's):

- `<prefix>/<serial>/availability`: `online` while the gateway's newest successful read is within the quiet
  window (`[collect] quiet_minutes`), else `offline`; retained, set explicitly by every run (a cron process
  lives a few seconds: a last will would say `offline` after every run).
- `<prefix>/<serial>/state`: one JSON object of the site's values (`production_watts`, ...), and one per
  inverter (`<prefix>/<serial>/inverter/<inverter>/state`) and battery (`.../battery/<battery>/state`);
  retained, so that Home Assistant has values at once after a restart. One message per Home Assistant device
  rather than one per sensor: a device's values come together and are parsed once.
- `<discovery_prefix>/sensor/envoylog_<serial>/<sensor>/config`: Home Assistant's discovery, retained. The
  gateway is a device; each inverter and each IQ Battery is a device of its own behind it (`via_device`),
  as Home Assistant's own Enphase integration shows them.

Discovery is published when a gateway's sensors change (a new inverter, a new series, a firmware upgrade) and
at least once an hour, since a broker without persistence forgets retained messages when it restarts; what
was published last is remembered in a small file in the cache directory (losing it costs one republish).

paho-mqtt is imported here and only here, when `[mqtt]` is configured: a collect without it never loads it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import secrets
import ssl
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from envoylog import __version__
from envoylog.config import MqttSettings, default_cache_dir
from envoylog.handoff.state import GatewayState, Latest
from envoylog.times import iso_z

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 5.0  # a broker on the LAN answers in milliseconds; one that does not is not there
QOS = 1  # the broker acknowledges each message, so a run knows that what it published arrived
DISCOVERY_REFRESH = timedelta(hours=1)
CACHE_NAME = "mqtt-discovery.json"
ONLINE, OFFLINE = "online", "offline"
MANUFACTURER = "Enphase Energy"
INSTALL_HINT = "paho-mqtt is not installed: pip install 'envoylog[mqtt]'"


@dataclass(frozen=True)
class Message:
    """One MQTT message: a topic and its payload, retained unless said otherwise."""

    topic: str
    payload: str
    retain: bool = True


@dataclass(frozen=True)
class Sensor:
    """One Home Assistant sensor: its key in its device's state JSON and how Home Assistant shows it."""

    key: str
    name: str
    device_class: str | None
    state_class: str | None
    unit: str | None
    precision: int | None = None
    diagnostic: bool = False


@dataclass(frozen=True)
class Outcome:
    """How publishing went: the gateways published, and the failure (one line without secrets) if any."""

    gateways: tuple[str, ...]  # the config's names of the gateways whose messages were to be published
    error: str | None = None
    needs_user: bool = False  # refused credentials, a certificate not trusted, paho missing: not transient
    messages: int = 0
    discovery: int = 0  # of the messages, discovery configs


def _power(key: str, name: str) -> Sensor:
    return Sensor(key, name, "power", "measurement", "W", 0)


def _energy(key: str, name: str, state_class: str = "total_increasing") -> Sensor:
    return Sensor(key, name, "energy", state_class, "Wh", 0)


_SITE_NAMES = {"production": "Production", "consumption": "Consumption", "net_consumption": "Net consumption"}


def site_values(latest: Iterable[Latest]) -> dict[str, Any]:
    """The gateway device's state JSON: the site's meters, per phase, and the AC Battery aggregate."""
    values: dict[str, Any] = {}
    volts: float | None = None
    rows = list(latest)
    for row in sorted(rows, key=lambda r: (r.kind, r.phase)):
        if row.kind in _SITE_NAMES:
            if row.phase == 0:
                values[f"{row.kind}_watts"] = row.values["watts"]
                values[f"{row.kind}_wh_lifetime"] = row.values["wh_lifetime"]
                values[f"{row.kind}_read_at"] = iso_z(row.at)
                if row.kind == "net_consumption":
                    values["grid_import_wh_lifetime"] = row.values["wh_imported_lifetime"]
                    values["grid_export_wh_lifetime"] = row.values["wh_exported_lifetime"]
                # The CT's voltage, any channel: all of them measure the same mains.
                volts = volts if volts is not None else row.values.get("volts")
            else:
                values[f"{row.kind}_l{row.phase}_watts"] = row.values["watts"]
        elif row.kind == "battery" and row.device == "acb":
            values["acb_soc_percent"] = row.values["soc_percent"]
            values["acb_watts"] = row.values["watts"]
            values["acb_wh_available"] = row.values["wh_available"]
            values["acb_read_at"] = iso_z(row.at)
    values["volts"] = volts
    return {key: value for key, value in values.items() if value is not None}


def inverter_values(row: Latest) -> dict[str, Any]:
    """An inverter device's state JSON."""
    joules = row.values.get("joules_lifetime")
    values = {
        "watts": row.values["watts"],
        "max_watts": row.values.get("max_watts"),
        "wh_lifetime": round(joules / 3600, 3) if joules is not None else None,
        "temperature_c": row.values.get("temperature_c"),
        "reported_at": iso_z(row.at),
    }
    return {key: value for key, value in values.items() if value is not None}


def battery_values(row: Latest) -> dict[str, Any]:
    """An IQ Battery device's state JSON."""
    values = {
        "soc_percent": row.values["soc_percent"],
        "watts": row.values["watts"],
        "wh_available": row.values.get("wh_available"),
        "read_at": iso_z(row.at),
    }
    return {key: value for key, value in values.items() if value is not None}


def site_sensors(values: dict[str, Any]) -> list[Sensor]:
    """The gateway device's sensors, for the values it has."""
    sensors = []
    for kind, name in _SITE_NAMES.items():
        sensors.append(_power(f"{kind}_watts", name))
        # Production and consumption only grow; net consumption is imports minus exports and falls while
        # the site exports: Home Assistant's `total` takes both ways.
        state_class = "total" if kind == "net_consumption" else "total_increasing"
        sensors.append(_energy(f"{kind}_wh_lifetime", f"Lifetime {name.lower()}", state_class))
        sensors += [_power(f"{kind}_l{phase}_watts", f"{name} L{phase}") for phase in (1, 2, 3)]
    sensors += [
        # The energy dashboard's grid wants imports and exports as two counters that only grow.
        _energy("grid_import_wh_lifetime", "Lifetime grid import"),
        _energy("grid_export_wh_lifetime", "Lifetime grid export"),
        Sensor("volts", "Voltage", "voltage", "measurement", "V", 1),
        Sensor("acb_soc_percent", "AC Battery charge", "battery", "measurement", "%", 0),
        _power("acb_watts", "AC Battery power"),
        Sensor("acb_wh_available", "AC Battery energy available", "energy_storage", "measurement", "Wh", 0),
        Sensor("last_read_at", "Last successful read", "timestamp", None, None, diagnostic=True),
    ]
    return [sensor for sensor in sensors if sensor.key in values]


# An inverter's and a battery's sensors are the values every reading has. Lifetime energy and temperature
# come only from /ivp/pdm/device_data, asked now and then and detailing at most 50 inverters: sensors that
# came and went with them would change discovery from run to run. They are in the state JSON when known.
INVERTER_SENSORS = (_power("watts", "Power"),)
BATTERY_SENSORS = (
    Sensor("soc_percent", "Charge", "battery", "measurement", "%", 0),
    _power("watts", "Power"),
)


@dataclass(frozen=True)
class Device:
    """One Home Assistant device: its state topic, its values, its sensors and its registry entry."""

    slug: str  # "" for the gateway; "inverter_<serial>" or "battery_<serial>"
    state_topic: str
    values: dict[str, Any]
    sensors: tuple[Sensor, ...]
    registry: dict[str, Any]


def devices(settings: MqttSettings, state: GatewayState) -> list[Device]:
    """The gateway and its inverters and batteries as Home Assistant devices, with their values."""
    assert state.serial is not None
    serial = state.serial
    base = f"{settings.topic_prefix}/{serial}"
    name = f"Envoy {serial}" if state.run.name == "default" else f"Envoy {state.run.name}"
    gateway_registry: dict[str, Any] = {
        "identifiers": [f"envoylog_{serial}"],
        "name": name,
        "manufacturer": MANUFACTURER,
        "model": "IQ Gateway",
        "serial_number": serial,
    }
    if state.firmware:
        gateway_registry["sw_version"] = state.firmware
    site = site_values(state.latest)
    if state.last_success_at is not None:
        site["last_read_at"] = iso_z(state.last_success_at)
    found = [Device("", f"{base}/state", site, tuple(site_sensors(site)), gateway_registry)]
    members: list[tuple[str, Latest, dict[str, Any], tuple[Sensor, ...], str]] = []
    for row in sorted(state.latest, key=lambda r: (r.kind, r.device)):
        if row.kind == "inverter":
            members.append(("inverter", row, inverter_values(row), INVERTER_SENSORS, "Micro-inverter"))
        elif row.kind == "battery" and row.device != "acb":
            members.append(("battery", row, battery_values(row), BATTERY_SENSORS, "IQ Battery"))
    for kind, row, values, sensors, model in members:
        registry = {
            "identifiers": [f"envoylog_{row.device}"],
            "name": f"{'Inverter' if kind == 'inverter' else 'Battery'} {row.device}",
            "manufacturer": MANUFACTURER,
            "model": model,
            "serial_number": row.device,
            "via_device": f"envoylog_{serial}",
        }
        found.append(
            Device(
                f"{kind}_{row.device}",
                f"{base}/{kind}/{row.device}/state",
                values,
                sensors,
                registry,
            )
        )
    return found


def availability(state: GatewayState, now: datetime, stale_after: timedelta) -> str:
    """`online` while the newest successful read is recent enough to stand for now."""
    fresh = state.last_success_at is not None and now - state.last_success_at <= stale_after
    return ONLINE if fresh else OFFLINE


def discovery_messages(
    settings: MqttSettings, serial: str, found: Sequence[Device], stale_after: timedelta
) -> list[Message]:
    """Home Assistant's discovery config of every sensor of the gateway's devices."""
    availability_topic = f"{settings.topic_prefix}/{serial}/availability"
    messages = []
    for device in found:
        for sensor in device.sensors:
            object_id = f"{device.slug}_{sensor.key}" if device.slug else sensor.key
            config: dict[str, Any] = {
                "name": sensor.name,
                "unique_id": f"envoylog_{serial}_{object_id}",
                "state_topic": device.state_topic,
                "value_template": f"{{{{ value_json.{sensor.key} }}}}",
                "availability_topic": availability_topic,
                "device": device.registry,
                "origin": {"name": "envoylog", "sw_version": __version__},
            }
            if sensor.device_class:
                config["device_class"] = sensor.device_class
            if sensor.state_class:
                config["state_class"] = sensor.state_class
            if sensor.unit:
                config["unit_of_measurement"] = sensor.unit
            if sensor.precision is not None:
                config["suggested_display_precision"] = sensor.precision
            if sensor.diagnostic:
                config["entity_category"] = "diagnostic"
            else:
                # A collector that stops (the machine is off, cron is gone) leaves `online` retained: the
                # values still go unavailable once they are older than the quiet window.
                config["expire_after"] = int(stale_after.total_seconds())
            topic = f"{settings.discovery_prefix}/sensor/envoylog_{serial}/{object_id}/config"
            messages.append(Message(topic, json.dumps(config, sort_keys=True)))
    return messages


def gateway_messages(
    settings: MqttSettings, state: GatewayState, now: datetime, stale_after: timedelta
) -> tuple[list[Message], list[Message]]:
    """A gateway's discovery messages and its state messages (availability last)."""
    assert state.serial is not None
    found = devices(settings, state)
    discovery = discovery_messages(settings, state.serial, found, stale_after)
    online = availability(state, now, stale_after)
    states = []
    if online == ONLINE:
        # Offline, the values are old: no state refreshes their `expire_after`.
        states = [Message(device.state_topic, json.dumps(device.values, sort_keys=True)) for device in found]
    states.append(Message(f"{settings.topic_prefix}/{state.serial}/availability", online))
    return discovery, states


def publish_states(
    settings: MqttSettings,
    states: Sequence[GatewayState],
    now: datetime,
    *,
    stale_after: timedelta,
    timeout_s: float,
    cache_dir: Path | None = None,
) -> Outcome:
    """Publish discovery (when due), the latest readings and the availability of `states`.

    Gateways never read and runs that another collector made (skipped) publish nothing. Never raises for
    the broker: a broker that is down, refuses the credentials or fails TLS is the returned Outcome's error.
    """
    chosen = [state for state in states if state.serial is not None and state.run.outcome != "skipped"]
    names = tuple(state.run.name for state in chosen)
    if not chosen:
        return Outcome(names)
    memory = DiscoveryMemory((cache_dir or default_cache_dir()) / CACHE_NAME, settings)
    messages: list[Message] = []
    due: dict[str, str] = {}
    for state in chosen:
        assert state.serial is not None
        discovery, values = gateway_messages(settings, state, now, stale_after)
        digest = _digest(discovery)
        if memory.due(state.serial, digest, now):
            messages += discovery
            due[state.serial] = digest
        messages += values
    discovery_count = sum(1 for message in messages if message.topic.endswith("/config"))
    try:
        _send(settings, messages, timeout_s)
    except PublishError as exc:
        log.info("MQTT: %s", exc)
        return Outcome(names, str(exc), exc.needs_user)
    except Exception as exc:
        # The readings are stored: whatever goes wrong in publishing them is the hand-off's problem, said
        # as such, and never the run's.
        log.info("MQTT: unexpected failure", exc_info=True)
        return Outcome(names, f"publishing to {_where(settings)} failed: {type(exc).__name__}: {exc}")
    memory.remember(due, now)
    log.info("MQTT: %d messages (%d discovery) to %s", len(messages), discovery_count, _where(settings))
    return Outcome(names, messages=len(messages), discovery=discovery_count)


class PublishError(Exception):
    """Publishing failed: one line without secrets; `needs_user` when only the user can fix it."""

    def __init__(self, message: str, needs_user: bool = False) -> None:
        super().__init__(message)
        self.needs_user = needs_user


def _where(settings: MqttSettings) -> str:
    return f"the MQTT broker at {settings.host}:{settings.port}"


def _send(settings: MqttSettings, messages: Sequence[Message], timeout_s: float) -> None:
    """Connect, publish every message with QoS 1, wait for the broker's acknowledgements, disconnect."""
    try:
        from paho.mqtt.client import Client, MQTTv311
        from paho.mqtt.enums import CallbackAPIVersion
    except ImportError:
        raise PublishError(INSTALL_HINT, needs_user=True) from None

    where = _where(settings)
    until = time.monotonic() + timeout_s
    client = Client(
        CallbackAPIVersion.VERSION2,
        client_id=f"envoylog-{os.getpid()}-{secrets.token_hex(3)}",
        protocol=MQTTv311,
    )
    client.connect_timeout = min(CONNECT_TIMEOUT_S, timeout_s)
    # Every message in flight at once: the acknowledgements come back in one round trip, not one each.
    client.max_inflight_messages_set(max(20, len(messages)))
    if settings.username:
        client.username_pw_set(settings.username, settings.password)
    context = _TrackedContext(ssl.PROTOCOL_TLS_CLIENT)
    if settings.tls:
        try:
            _configure_tls(context, settings)
        except (OSError, ssl.SSLError) as exc:
            raise PublishError(f"cannot use the CA file {settings.ca_file}: {_reason(exc)}", True) from None
        client.tls_set_context(context)
        client.tls_insecure_set(settings.insecure)
    answered = threading.Event()
    refusal: list[str] = []

    def on_connect(_client: Any, _data: Any, _flags: Any, reason: Any, _properties: Any) -> None:
        if reason.is_failure:
            refusal.append(str(reason))
        answered.set()

    client.on_connect = on_connect
    try:
        client.connect(settings.host, settings.port, keepalive=max(5, int(timeout_s) + 5))
    except ssl.SSLCertVerificationError as exc:
        context.close_opened()
        why = exc.verify_message or "not trusted"
        raise PublishError(f"{where} has a certificate envoylog does not trust: {why}", True) from None
    except (OSError, ssl.SSLError) as exc:
        context.close_opened()
        raise PublishError(f"cannot connect to {where}: {_reason(exc)}") from None
    client.loop_start()
    try:
        if not answered.wait(max(0.0, until - time.monotonic())):
            raise PublishError(f"{where} did not answer within {timeout_s:.0f} s")
        if refusal:
            # "Not authorized", "Bad user name or password": the user's to fix, and said at once.
            raise PublishError(f"{where} refused the connection: {refusal[0]}", needs_user=True)
        infos = [client.publish(m.topic, m.payload, qos=QOS, retain=m.retain) for m in messages]
        for info in infos:
            with contextlib.suppress(RuntimeError, ValueError):  # not connected any more: told below
                info.wait_for_publish(max(0.0, until - time.monotonic()))
            if not info.is_published():
                raise PublishError(f"{where} did not take the messages within {timeout_s:.0f} s")
    finally:
        client.disconnect()
        client.loop_stop()
        context.close_opened()


class _TrackedContext(ssl.SSLContext):
    """A client TLS context that remembers its sockets: paho leaves one open when the handshake fails."""

    opened: list[ssl.SSLSocket]

    def wrap_socket(self, *args: Any, **kwargs: Any) -> ssl.SSLSocket:
        """Wrap as usual, and remember the socket."""
        wrapped = super().wrap_socket(*args, **kwargs)
        self.opened = [*getattr(self, "opened", []), wrapped]
        return wrapped

    def close_opened(self) -> None:
        """Close every socket this context wrapped (closing one twice is harmless)."""
        for sock in getattr(self, "opened", []):
            sock.close()


def _configure_tls(context: ssl.SSLContext, settings: MqttSettings) -> None:
    if settings.insecure:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    elif settings.ca_file:
        context.load_verify_locations(cafile=settings.ca_file)
    else:
        context.load_default_certs()


def _reason(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower()
    return str(exc) or type(exc).__name__


def _digest(messages: Sequence[Message]) -> str:
    text = "\n".join(f"{m.topic} {m.payload}" for m in messages)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


class DiscoveryMemory:
    """What discovery this machine published last, per broker, prefixes and gateway: a small JSON file.

    Several collectors may write it at once: each replaces it whole, and the worst a lost update does is one
    more republish.
    """

    def __init__(self, path: Path, settings: MqttSettings) -> None:
        self.path = path
        self.scope = f"{settings.host}:{settings.port} {settings.discovery_prefix} {settings.topic_prefix}"
        try:
            loaded = json.loads(path.read_text(encoding="utf-8"))
            self.entries: dict[str, Any] = loaded if isinstance(loaded, dict) else {}
        except (OSError, ValueError):
            self.entries = {}

    def due(self, serial: str, digest: str, now: datetime) -> bool:
        """Whether the gateway's discovery changed since it was published, or was published long ago."""
        entry = self.entries.get(f"{self.scope} {serial}")
        if not isinstance(entry, dict) or entry.get("digest") != digest:
            return True
        try:
            published = datetime.fromisoformat(str(entry.get("at")))
        except ValueError:
            return True
        return not timedelta(0) <= now - published < DISCOVERY_REFRESH

    def remember(self, published: dict[str, str], now: datetime) -> None:
        """Note what was just published; a cache that cannot be written costs republishing, nothing more."""
        if not published:
            return
        for serial, digest in published.items():
            self.entries[f"{self.scope} {serial}"] = {"digest": digest, "at": now.isoformat()}
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            temporary = self.path.with_name(f".{self.path.name}.{os.getpid()}")
            temporary.write_text(json.dumps(self.entries, indent=1, sort_keys=True), encoding="utf-8")
            temporary.replace(self.path)
        except OSError as exc:
            log.info("cannot remember the MQTT discovery in %s: %s", self.path, _reason(exc))
