"""`collect` publishes to MQTT for Home Assistant: checked by subscribing to a real Mosquitto broker.

The shared broker is `ENVOYLOG_TEST_MQTT_URL` (CI starts Mosquitto and sets it), else 127.0.0.1:1883 when
something listens there; without either the tests skip with the reason, and with the variable set a broker
that does not answer fails them. Each test uses topic prefixes of its own and clears its retained messages
afterwards. Brokers that refuse a password or speak TLS are private Mosquitto processes a test starts.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from conftest import Site, point_at, user_environment
from paho.mqtt.client import Client, MQTTMessage
from paho.mqtt.enums import CallbackAPIVersion
from typer.testing import CliRunner, Result

from envoylog.cli import app
from envoylog.collect.run import raise_for_runs
from envoylog.config import MqttSettings, load_settings
from envoylog.errors import ConfigError
from envoylog.simulator import Simulator
from envoylog.simulator.tls import ensure_certificates

BROKER_VARIABLE = "ENVOYLOG_TEST_MQTT_URL"
DEFAULT_BROKER = "mqtt://127.0.0.1:1883"
WAIT_S = 10.0  # the longest a subscriber waits for what the broker holds
runner = CliRunner()


def _listening(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=2):
            return True
    except OSError:
        return False


@pytest.fixture(scope="session")
def broker() -> tuple[str, int]:
    """The shared test broker's host and port."""
    url = os.environ.get(BROKER_VARIABLE) or DEFAULT_BROKER
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 1883
    if not _listening(host, port):
        if os.environ.get(BROKER_VARIABLE):
            pytest.fail(f"{BROKER_VARIABLE}={url} is set but no MQTT broker answers there")
        pytest.skip(f"no MQTT broker at {host}:{port}: start Mosquitto or set {BROKER_VARIABLE}")
    return host, port


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass(frozen=True)
class Seen:
    """A message a subscriber received."""

    topic: str
    payload: str
    retain: bool

    def json(self) -> Any:
        """The payload as JSON."""
        return json.loads(self.payload)


class Subscriber:
    """A real paho client subscribed to topic filters; `sync()` waits until everything sent so far came."""

    def __init__(self, host: str, port: int, *filters: str, **connect: Any) -> None:
        self.messages: list[Seen] = []
        self._lock = threading.Lock()
        self._marker = f"envoylog-test-sync/{uuid.uuid4().hex}"
        self._synced = threading.Event()
        self._ready = threading.Event()
        self.client = Client(CallbackAPIVersion.VERSION2, client_id=f"test-{uuid.uuid4().hex[:8]}")
        if connect.get("username"):
            self.client.username_pw_set(connect["username"], connect.get("password"))
        if connect.get("ca_file"):
            self.client.tls_set(ca_certs=connect["ca_file"])
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *_args: self._ready.set()
        self.client.connect(host, port)
        self.client.loop_start()
        self.client.subscribe([(f, 1) for f in (*filters, self._marker)])
        assert self._ready.wait(WAIT_S), "the broker did not acknowledge the subscription"
        self.sync()

    def _on_message(self, _client: Any, _data: Any, message: MQTTMessage) -> None:
        if message.topic == self._marker:
            self._synced.set()
            return
        with self._lock:
            self.messages.append(Seen(message.topic, message.payload.decode(), bool(message.retain)))

    def sync(self) -> None:
        """Wait until the broker has sent everything it had for us before this call (one client's order)."""
        self._synced.clear()
        self.client.publish(self._marker, b"", qos=1)
        assert self._synced.wait(WAIT_S), "the broker did not echo the sync marker"

    def take(self) -> list[Seen]:
        """The messages received since the last take."""
        self.sync()
        with self._lock:
            taken, self.messages = self.messages, []
        return taken

    def close(self) -> None:
        """Disconnect."""
        self.client.disconnect()
        self.client.loop_stop()


def retained(host: str, port: int, *filters: str, **connect: Any) -> dict[str, Seen]:
    """What the broker keeps under `filters`, by topic, as a new subscriber gets it."""
    subscriber = Subscriber(host, port, *filters, **connect)
    try:
        return {message.topic: message for message in subscriber.take()}
    finally:
        subscriber.close()


@dataclass(frozen=True)
class Topics:
    """The prefixes of one test: nothing else publishes under them."""

    host: str
    port: int
    prefix: str
    discovery: str

    def settings(self, **changes: Any) -> MqttSettings:
        """[mqtt] settings publishing under this test's prefixes to the shared broker."""
        fields: dict[str, Any] = {
            "url": f"mqtt://{self.host}:{self.port}",
            "host": self.host,
            "port": self.port,
            "topic_prefix": self.prefix,
            "discovery_prefix": self.discovery,
        }
        fields.update(changes)
        return MqttSettings(**fields)

    def toml(self, **extra: str) -> str:
        """The [mqtt] table of a config file for this test's prefixes."""
        lines = [
            "[mqtt]",
            f'url = "mqtt://{self.host}:{self.port}"',
            f'topic_prefix = "{self.prefix}"',
            f'discovery_prefix = "{self.discovery}"',
            *(f'{key} = "{value}"' for key, value in extra.items()),
        ]
        return "\n".join(lines) + "\n"

    def held(self) -> dict[str, Seen]:
        """Everything the broker retains under this test's prefixes."""
        return retained(self.host, self.port, f"{self.prefix}/#", f"{self.discovery}/#")


@pytest.fixture
def topics(broker: tuple[str, int], isolated_env: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Topics]:
    """Prefixes of this test's own; their retained messages are cleared afterwards."""
    # The discovery cache lives in the user's cache directory: this test's own.
    monkeypatch.setenv("XDG_CACHE_HOME", str(isolated_env / ".cache"))
    tag = uuid.uuid4().hex[:12]
    found = Topics(*broker, f"envoylog-test-{tag}", f"ha-test-{tag}")
    yield found
    leftovers = found.held()
    if leftovers:
        cleaner = Client(CallbackAPIVersion.VERSION2)
        cleaner.connect(*broker)
        cleaner.loop_start()
        infos = [cleaner.publish(topic, b"", qos=1, retain=True) for topic in leftovers]
        for info in infos:
            info.wait_for_publish(WAIT_S)
        cleaner.disconnect()
        cleaner.loop_stop()


def envoylog(*args: str) -> Result:
    """The command line, in this process."""
    return runner.invoke(app, list(args))


def discovery_of(held: dict[str, Seen], discovery: str) -> dict[str, dict[str, Any]]:
    """The retained discovery configs, by unique_id."""
    configs = {}
    for topic, message in held.items():
        if topic.startswith(f"{discovery}/sensor/") and topic.endswith("/config"):
            assert message.retain, topic
            config = message.json()
            configs[config["unique_id"]] = config
    return configs


def state_value(held: dict[str, Seen], config: dict[str, Any]) -> Any:
    """What Home Assistant shows for a sensor: its value_template applied to its retained state topic."""
    state = held[config["state_topic"]]
    assert state.retain
    template = config["value_template"]
    assert template.startswith("{{ value_json.") and template.endswith(" }}"), template
    return state.json()[template.removeprefix("{{ value_json.").removesuffix(" }}")]


def test_collect_publishes_what_home_assistant_needs_and_latest_shows(
    site: Site, topics: Topics, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    config = tmp_path / "config.toml"
    config.write_text(topics.toml(), encoding="utf-8")
    point_at(monkeypatch, site.sim, site.db_url, config)

    result = envoylog("collect")
    assert (result.exit_code, result.stdout, result.stderr) == (0, "", ""), result.stderr
    latest = json.loads(envoylog("latest", "--format", "json").stdout)["gateways"][0]
    serial = latest["serial"]
    held = topics.held()
    configs = discovery_of(held, topics.discovery)

    assert held[f"{topics.prefix}/{serial}/availability"].payload == "online"
    assert held[f"{topics.prefix}/{serial}/availability"].retain

    def sensor(key: str) -> dict[str, Any]:
        return configs[f"envoylog_{serial}_{key}"]

    def kinds(key: str) -> tuple[str | None, str | None, str | None]:
        found = sensor(key)
        return found.get("device_class"), found.get("state_class"), found.get("unit_of_measurement")

    power = ("power", "measurement", "W")
    assert kinds("production_watts") == kinds("consumption_watts") == kinds("net_consumption_watts") == power
    # The energy dashboard: production and consumption only grow; the grid as import and export counters.
    growing = ("energy", "total_increasing", "Wh")
    assert kinds("production_wh_lifetime") == kinds("consumption_wh_lifetime") == growing
    assert kinds("grid_import_wh_lifetime") == kinds("grid_export_wh_lifetime") == growing
    assert kinds("net_consumption_wh_lifetime") == ("energy", "total", "Wh")  # falls while exporting
    for phase in (1, 2, 3):
        assert kinds(f"production_l{phase}_watts") == kinds(f"net_consumption_l{phase}_watts") == power

    # Every sensor belongs to a device, says where its availability is, and reads its value from JSON.
    for config_ in configs.values():
        assert config_["availability_topic"] == f"{topics.prefix}/{serial}/availability"
        assert config_["device"]["identifiers"]
        assert config_["state_topic"] in held
    gateway_device = sensor("production_watts")["device"]
    assert gateway_device["identifiers"] == [f"envoylog_{serial}"]
    assert gateway_device["sw_version"] == latest["firmware"]

    # What Home Assistant shows is what `envoylog latest` shows.
    for kind in ("production", "consumption", "net_consumption"):
        assert state_value(held, sensor(f"{kind}_watts")) == latest[kind]["watts"]
        assert state_value(held, sensor(f"{kind}_wh_lifetime")) == latest[kind]["wh_lifetime"]
        for phase in latest[kind]["phases"]:
            key = f"{kind}_{phase['phase'].lower()}_watts"
            assert state_value(held, sensor(key)) == phase["watts"]
    net = latest["net_consumption"]
    assert state_value(held, sensor("grid_import_wh_lifetime")) == net["wh_imported_lifetime"]
    assert state_value(held, sensor("grid_export_wh_lifetime")) == net["wh_exported_lifetime"]

    # Each inverter is a device of its own behind the gateway, with its power.
    assert latest["inverters"]
    for inverter in latest["inverters"]:
        watts = configs[f"envoylog_{serial}_inverter_{inverter['serial']}_watts"]
        assert watts["device"]["via_device"] == f"envoylog_{serial}"
        assert watts["device"]["identifiers"] == [f"envoylog_{inverter['serial']}"]
        assert (watts["device_class"], watts["unit_of_measurement"]) == ("power", "W")
        assert state_value(held, watts) == inverter["watts"]


def test_batteries_appear_with_their_charge(
    db_url: str, topics: Topics, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with Simulator("battery", state_dir=tmp_path / "sim") as sim:
        config = tmp_path / "config.toml"
        config.write_text(topics.toml(), encoding="utf-8")
        point_at(monkeypatch, sim, db_url, config)
        assert envoylog("collect").exit_code == 0
        latest = json.loads(envoylog("latest", "--format", "json").stdout)["gateways"][0]
    held = topics.held()
    configs = discovery_of(held, topics.discovery)
    assert len(latest["batteries"]) == 2
    for battery in latest["batteries"]:
        charge = configs[f"envoylog_{latest['serial']}_battery_{battery['serial']}_soc_percent"]
        assert (charge["device_class"], charge["state_class"], charge["unit_of_measurement"]) == (
            "battery",
            "measurement",
            "%",
        )
        assert charge["device"]["via_device"] == f"envoylog_{latest['serial']}"
        assert state_value(held, charge) == battery["soc_percent"]
        power = configs[f"envoylog_{latest['serial']}_battery_{battery['serial']}_watts"]
        assert state_value(held, power) == battery["watts"]


def test_discovery_is_published_again_only_when_due(site: Site, topics: Topics, isolated_env: Path) -> None:
    settings = replace(site.settings(), mqtt=topics.settings())
    watcher = Subscriber(topics.host, topics.port, f"{topics.prefix}/#", f"{topics.discovery}/#")
    try:
        site.collect(settings)
        first = watcher.take()
        assert any(m.topic.endswith("/config") for m in first)

        # The next run publishes the readings but not the unchanged discovery.
        site.collect(settings)
        second = watcher.take()
        assert not [m for m in second if m.topic.endswith("/config")]
        assert [m for m in second if m.topic.endswith("/state")]
        assert [m.payload for m in second if m.topic.endswith("/availability")] == ["online"]

        # An hour later, discovery is published again: a broker restarted without persistence forgot it.
        site.sim.clock.advance(timedelta(minutes=61))
        site.collect(settings)
        assert {m.topic for m in watcher.take() if m.topic.endswith("/config")} == {
            m.topic for m in first if m.topic.endswith("/config")
        }

        # Without the cache (a new machine, a cleaned home), it is published again too.
        shutil.rmtree(isolated_env / ".cache")
        site.collect(settings)
        assert [m for m in watcher.take() if m.topic.endswith("/config")]
    finally:
        watcher.close()


def test_a_gateway_not_read_for_the_quiet_window_goes_offline(site: Site, topics: Topics) -> None:
    settings = replace(site.settings(), mqtt=topics.settings())
    site.collect(settings)
    serial = site.sim.serial
    availability = f"{topics.prefix}/{serial}/availability"
    assert topics.held()[availability].payload == "online"

    # Unreachable but read minutes ago (the nightly outage): its sensors stay available.
    unreachable = replace(settings, gateways=(replace(settings.gateways[0], host="127.0.0.1:9"),))
    site.sim.clock.advance(timedelta(minutes=5))
    assert site.collect(unreachable).outcome == "failed"
    assert topics.held()[availability].payload == "online"

    site.sim.clock.advance(timedelta(minutes=16))
    assert site.collect(unreachable).outcome == "failed"
    held = topics.held()
    assert held[availability].payload == "offline"
    assert held[availability].retain

    site.collect(settings)
    assert topics.held()[availability].payload == "online"


def test_a_broker_that_is_down_never_fails_a_collect_and_is_said_once(site: Site, topics: Topics) -> None:
    # The discard port: nothing listens there, so connecting is refused at once.
    down = replace(site.settings(), mqtt=topics.settings(url="mqtt://127.0.0.1:9", port=9))
    lines: list[str] = []

    def collect(settings: Any) -> None:
        run = site.collect(settings)
        assert run.outcome == "ok" and run.error is None
        raise_for_runs([run])  # exit 0
        lines.extend(f"{kind}: {line}" for kind, line in run.notices())

    collect(down)
    assert lines == []  # a broker restarting for a minute is not worth a mail
    assert site.rows()["meter_readings"] > 0  # the readings are stored all the same

    site.sim.clock.advance(timedelta(minutes=16))
    collect(down)
    (said,) = lines
    assert said.startswith(
        "warning: gateway home: MQTT publishing has failed for 16 min (the readings are stored)"
    )
    assert "cannot connect to the MQTT broker at 127.0.0.1:9: connection refused" in said

    site.sim.clock.advance(timedelta(minutes=1))
    collect(down)
    assert lines == [said]  # said once

    collect(replace(down, mqtt=topics.settings()))
    assert lines[1:] == ["cleared: gateway home: MQTT publishing works again after 17 min of failures"]
    assert topics.held()[f"{topics.prefix}/{site.sim.serial}/availability"].payload == "online"


def test_the_command_exits_zero_and_silent_when_the_broker_is_down(
    site: Site, topics: Topics, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    config = tmp_path / "config.toml"
    nowhere = replace(topics, port=_free_port())
    config.write_text(nowhere.toml(), encoding="utf-8")
    point_at(monkeypatch, site.sim, site.db_url, config)
    result = envoylog("collect")
    assert (result.exit_code, result.stdout, result.stderr) == (0, "", "")
    assert site.rows()["meter_readings"] > 0


@dataclass(frozen=True)
class PrivateBroker:
    """A Mosquitto process of the test's own: with a password, or TLS."""

    host: str
    port: int
    ca_file: Path | None = None


def _need_mosquitto(*tools: str) -> None:
    missing = [tool for tool in ("mosquitto", *tools) if shutil.which(tool) is None]
    if missing:
        if os.environ.get(BROKER_VARIABLE):
            pytest.fail(f"{', '.join(missing)} not installed, and {BROKER_VARIABLE} says Mosquitto is here")
        pytest.skip(f"{', '.join(missing)} not installed")


@pytest.fixture
def start_broker(tmp_path: Path) -> Iterator[Callable[..., PrivateBroker]]:
    """Start Mosquitto with a listener of the test's own; stopped after the test."""
    processes: list[subprocess.Popen[bytes]] = []

    def start(*, password: str | None = None, tls: bool = False) -> PrivateBroker:
        _need_mosquitto(*(["mosquitto_passwd"] if password else []))
        directory = tmp_path / f"broker-{len(processes)}"
        directory.mkdir()
        port = _free_port()
        lines = [f"listener {port} 127.0.0.1", "persistence false"]
        if os.geteuid() == 0:
            lines.append("user root")  # it would drop to the mosquitto user, who cannot read tmp_path
        if password is not None:
            subprocess.run(
                ["mosquitto_passwd", "-b", "-c", str(directory / "passwords"), "envoy", password],
                check=True,
                capture_output=True,
            )
            lines += ["allow_anonymous false", f"password_file {directory / 'passwords'}"]
        else:
            lines.append("allow_anonymous true")
        ca_file = None
        if tls:
            certs = ensure_certificates(directory / "certs")  # a CA, and a certificate for 127.0.0.1
            ca_file = certs.ca_cert
            lines += [f"certfile {certs.cloud_cert}", f"keyfile {certs.cloud_key}"]
        (directory / "mosquitto.conf").write_text("\n".join(lines) + "\n", encoding="utf-8")
        process = subprocess.Popen(
            ["mosquitto", "-c", str(directory / "mosquitto.conf")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        processes.append(process)
        deadline = time.monotonic() + WAIT_S
        while not _listening("127.0.0.1", port):
            assert process.poll() is None, "mosquitto exited at its start"
            assert time.monotonic() < deadline, "mosquitto did not start listening"
            time.sleep(0.05)
        return PrivateBroker("127.0.0.1", port, ca_file)

    yield start
    for process in processes:
        process.terminate()
        process.wait(timeout=WAIT_S)


def test_refused_credentials_are_said_at_once_and_once_without_the_password(
    site: Site,
    topics: Topics,
    start_broker: Callable[..., PrivateBroker],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    private = start_broker(password="right-horse-battery")
    config = tmp_path / "config.toml"
    mine = replace(topics, host=private.host, port=private.port)
    config.write_text(mine.toml(username="envoy"), encoding="utf-8")
    point_at(monkeypatch, site.sim, site.db_url, config)
    monkeypatch.setenv("ENVOYLOG_MQTT_PASSWORD", "wrong-staple-9")

    first = envoylog("collect")
    assert first.exit_code == 0 and first.stdout == ""
    assert first.stderr == (
        "envoylog: warning: gateway default: MQTT publishing fails (the readings are stored): "
        f"the MQTT broker at 127.0.0.1:{private.port} refused the connection: Not authorized\n"
    )
    assert site.rows()["meter_readings"] > 0
    again = envoylog("collect", "-v")
    assert again.exit_code == 0 and "envoylog: warning" not in again.stderr  # said once
    assert "refused the connection" in again.stderr  # -v tells each run
    assert "wrong-staple-9" not in first.output + again.output

    monkeypatch.setenv("ENVOYLOG_MQTT_PASSWORD", "right-horse-battery")
    fixed = envoylog("collect")
    assert (fixed.exit_code, fixed.stderr) == (0, "")
    assert fixed.stdout.startswith("gateway default: MQTT publishing works again after")
    held = retained(
        private.host, private.port, f"{mine.prefix}/#", username="envoy", password="right-horse-battery"
    )
    assert held[f"{mine.prefix}/{site.sim.serial}/availability"].payload == "online"


def test_tls_with_the_brokers_ca_and_a_certificate_not_trusted(
    site: Site, topics: Topics, start_broker: Callable[..., PrivateBroker]
) -> None:
    private = start_broker(tls=True)
    assert private.ca_file is not None
    url = f"mqtts://{private.host}:{private.port}"
    trusting = topics.settings(url=url, host=private.host, port=private.port, ca_file=str(private.ca_file))
    run = site.collect(replace(site.settings(), mqtt=trusting))
    assert run.warnings == []
    held = retained(private.host, private.port, f"{topics.prefix}/#", ca_file=str(private.ca_file))
    assert held[f"{topics.prefix}/{site.sim.serial}/availability"].payload == "online"

    # `insecure` takes any certificate.
    anything = topics.settings(url=url, host=private.host, port=private.port, insecure=True)
    site.sim.clock.advance(timedelta(minutes=1))
    assert site.collect(replace(site.settings(), mqtt=anything)).warnings == []

    # The system's CAs do not know the broker's: refused at once, said at once, the readings stored.
    distrusting = topics.settings(url=url, host=private.host, port=private.port)
    before = site.rows()["meter_readings"]
    site.sim.clock.advance(timedelta(minutes=1))
    run = site.collect(replace(site.settings(), mqtt=distrusting))
    assert run.outcome == "ok"
    (said,) = run.warnings
    assert "has a certificate envoylog does not trust" in said
    assert site.rows()["meter_readings"] >= before


def test_a_missing_paho_is_one_line_telling_what_to_install(
    site: Site, topics: Topics, monkeypatch: pytest.MonkeyPatch
) -> None:
    # As if the extra were not installed: importing paho's client fails.
    monkeypatch.setitem(sys.modules, "paho.mqtt.client", None)
    run = site.collect(replace(site.settings(), mqtt=topics.settings()))
    assert run.outcome == "ok"
    assert run.warnings == [
        "gateway home: MQTT publishing fails (the readings are stored): "
        "paho-mqtt is not installed: pip install 'envoylog[mqtt]'"
    ]


def test_a_collect_without_mqtt_never_imports_paho(sim: Simulator, tmp_path: Path) -> None:
    home = tmp_path / "home"
    env = user_environment(home, ENVOYLOG_DB=f"sqlite:///{tmp_path / 'x.db'}", **sim.environment())
    code = (
        "import sys\n"
        "from envoylog.cli import main\n"
        "sys.argv = ['envoylog', 'collect']\n"
        "try:\n    main()\nexcept SystemExit as exc:\n    assert not exc.code, exc.code\n"
        "print(sorted(name for name in sys.modules if name.startswith('paho')))\n"
    )
    shown = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert shown.stdout == "[]\n", shown.stderr


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ("[mqtt]\n", '[mqtt] needs url = "mqtt://HOST[:PORT]" (or mqtts:// for TLS)'),
        ('[mqtt]\nurl = "http://broker"\n', "bad [mqtt] url 'http://broker': expected mqtt://HOST[:PORT] or"),
        ('[mqtt]\nurl = "mqtt://u:pw@broker"\n', "[mqtt] url must not hold credentials: use username and"),
        ('[mqtt]\nurl = "http://u:pw@broker"\n', "[mqtt] url must not hold credentials: use username and"),
        ('[mqtt]\nurl = "mqtt://broker"\nport = 1\n', "unknown key 'port' in [mqtt] (allowed: ca_file,"),
        ('[mqtt]\nurl = "mqtt://broker"\nca_file = "x"\n', "[mqtt] ca_file and insecure are for TLS: use"),
        ('[mqtt]\nurl = "mqtts://broker"\nca_file = "/nonexistent/ca.pem"\n', "[mqtt] ca_file /nonexistent"),
        ('[mqtt]\nurl = "mqtt://broker"\npassword = "pw"\n', "[mqtt] has a password but no username"),
        ('[mqtt]\nurl = "mqtt://broker"\ntopic_prefix = "a/#"\n', "bad [mqtt] topic_prefix 'a/#': expected"),
        ('[mqtt]\nurl = "mqtt://broker"\ninsecure = "yes"\n', "[mqtt] insecure must be true or false"),
        ('mqtt = "mqtt://broker"\n', "'mqtt' in the config file must be an [mqtt] table"),
    ],
)
def test_a_bad_mqtt_table_is_one_line(table: str, message: str, tmp_path: Path, isolated_env: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text(table, encoding="utf-8")
    with pytest.raises(ConfigError) as raised:
        load_settings(config=config)
    assert str(raised.value).startswith(message)
    assert raised.value.status == 2
    result = envoylog("--config", str(config), "collect")
    assert result.exit_code == 2 and result.stderr.startswith(f"envoylog: error: {message}")
    assert "pw" not in result.stderr.replace("password", "")


def test_mqtt_settings_from_the_file_and_the_environment(tmp_path: Path, isolated_env: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text(
        '[mqtt]\nurl = "mqtts://broker.lan"\nusername = "envoy"\npassword = "file-pw"\ninsecure = true\n',
        encoding="utf-8",
    )
    settings = load_settings(config=config, environ={"ENVOYLOG_MQTT_PASSWORD": "env-pw"}).mqtt
    assert settings is not None
    assert (settings.host, settings.port, settings.tls, settings.insecure) == ("broker.lan", 8883, True, True)
    assert (settings.username, settings.password) == ("envoy", "env-pw")
    assert (settings.topic_prefix, settings.discovery_prefix) == ("envoylog", "homeassistant")
    assert "env-pw" not in repr(settings)
    from_file = load_settings(config=config, environ={}).mqtt
    assert from_file is not None and from_file.password == "file-pw"
    assert load_settings(environ={}).mqtt is None


def test_inverters_detailed_only_now_and_then_keep_one_set_of_sensors(
    db_url: str, topics: Topics, tmp_path: Path
) -> None:
    # More inverters than /ivp/pdm/device_data details: some reports come with lifetime energy and
    # temperature, some without. The sensors must not change with them, or discovery goes out every run.
    with Simulator("many-inverters", state_dir=tmp_path / "sim") as sim:
        site = Site(sim, db_url)
        settings = replace(site.settings(), mqtt=topics.settings())
        watcher = Subscriber(topics.host, topics.port, f"{topics.discovery}/#", f"{topics.prefix}/#")
        try:
            site.collect(settings)
            announced = {m.topic for m in watcher.take() if m.topic.endswith("/config")}
            for _ in range(4):
                sim.clock.advance(timedelta(minutes=5))
                site.collect(settings)
                taken = watcher.take()
                assert not [m.topic for m in taken if m.topic.endswith("/config")]
                assert len([m for m in taken if "/inverter/" in m.topic]) == 60
        finally:
            watcher.close()
    assert len([topic for topic in announced if "/inverter_" in topic]) == 60
