"""Settings: the only place that reads environment variables and the config file.

Precedence is command-line option > environment variable > config file > default. The environment
variables describe one gateway named ``default``; ``ENVOYLOG_USERNAME``/``ENVOYLOG_PASSWORD`` also serve,
like the file's top-level credentials, every gateway that has none of its own.
"""

from __future__ import annotations

import ipaddress
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import platformdirs
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from envoylog.errors import ConfigError

APP_NAME = "envoylog"
DEFAULT_HOST = "envoy.local"
DEFAULT_ENLIGHTEN_URL = "https://enlighten.enphaseenergy.com"
DEFAULT_ENTREZ_URL = "https://entrez.enphaseenergy.com"
DEFAULT_GATEWAY_NAME = "default"

# Every environment variable envoylog reads, for `--help` and the README (a test keeps both in step).
ENVIRONMENT = {
    "ENVOYLOG_DB": "SQLAlchemy URL of the database",
    "ENVOYLOG_CONFIG": "the TOML config file",
    "ENVOYLOG_HOST": "gateway address: host, host:port or a URL",
    "ENVOYLOG_USERNAME": "Enphase account (Enlighten) e-mail",
    "ENVOYLOG_PASSWORD": "Enphase account password",
    "ENVOYLOG_TOKEN": "a token pasted by the user (accounts with MFA)",
    "ENVOYLOG_SERIAL": "expected gateway serial; a mismatch is an error",
    "ENVOYLOG_FINGERPRINT": "SHA-256 of the gateway's certificate, to pin it",
    "ENVOYLOG_TIMEZONE": "IANA zone that defines a day in reports",
    "ENVOYLOG_ENLIGHTEN_URL": "base URL of the Enlighten login service",
    "ENVOYLOG_ENTREZ_URL": "base URL of the Entrez token service",
    "ENVOYLOG_MQTT_PASSWORD": "password for the [mqtt] broker",
}

_GATEWAY_KEYS = {"host", "username", "password", "token", "serial", "fingerprint"}
# A file for one gateway may keep its host, token, serial and fingerprint at the top level.
_SINGLE_GATEWAY_KEYS = {"host", "token", "serial", "fingerprint"}
_TOP_LEVEL_KEYS = {
    "db",
    "timezone",
    "enlighten_url",
    "entrez_url",
    "username",
    "password",
    "gateways",
    "collect",
    "check",
    "mqtt",
}
_COLLECT_KEYS = {
    "workers",
    "db_connections",
    "shared",
    "quiet_minutes",
    "endpoint_quiet_minutes",
    "token_quiet_hours",
    "discovery_quiet_hours",
}
MAX_WORKERS = 1000
_MQTT_KEYS = {"url", "username", "password", "topic_prefix", "discovery_prefix", "ca_file", "insecure"}
_MQTT_PORTS = {"mqtt": 1883, "mqtts": 8883}
_TOP_LEVEL_KEYS |= _SINGLE_GATEWAY_KEYS
_HOSTNAME = re.compile(
    r"^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9-]{1,63})*\.?$"
)
_FINGERPRINT = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class GatewaySettings:
    """How to reach and authenticate with one gateway."""

    name: str
    host: str  # as the user wrote it: "host", "host:port" or a URL with a scheme
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    token: str | None = field(default=None, repr=False)
    serial: str | None = None
    fingerprint: str | None = None  # SHA-256 of the gateway's certificate, hex, to pin it

    @property
    def base_urls(self) -> tuple[str, ...]:
        """The URLs to try, in order: a bare host over HTTPS first, then HTTP; a URL as given."""
        if "://" in self.host:
            return (self.host.rstrip("/"),)
        return (f"https://{self.host}", f"http://{self.host}")


@dataclass(frozen=True)
class CollectSettings:
    """How `collect` works through many gateways: the `[collect]` table of the config file."""

    # Gateways read at once. Each is still asked one request at a time; a real gateway takes seconds per
    # request, so a fleet needs many under way to be read within the minute.
    workers: int = 200
    # Database connections one collect process opens at most (PostgreSQL allows 100 in all by default).
    db_connections: int = 8
    # Several collectors run the same config (on several machines): each gateway is polled by whichever
    # claims it first in a round; the others skip it silently instead of reporting it as held (exit 6).
    shared: bool = False
    # A gateway read successfully within this many minutes fails quietly (the run log keeps it, nothing is
    # printed): its nightly outage or a reboot is not worth a mail. Past it, the failure is said once.
    quiet_minutes: int = 15
    # Problems of a gateway that is read are said once they last this long: one endpoint failing while the
    # others answer, the token not renewed although due (the old one still works), discovery incomplete.
    endpoint_quiet_minutes: int = 60
    token_quiet_hours: int = 24
    discovery_quiet_hours: int = 24


@dataclass(frozen=True)
class CheckSettings:
    """What `envoylog check` calls a problem: the `[check]` table of the config file."""

    # The newest successful read of a gateway is older than this: the logger stopped, or the gateway is gone.
    stale_minutes: int = 60
    # An inverter's newest report is this much older than the newest producing report of the others.
    inverter_silent_minutes: int = 60
    # An inverter made less than this share of the array's median energy on each of the last `lagging_days`.
    lagging_share: float = 0.85
    lagging_days: int = 3
    # A day's production is below this share of what comparable days give, the weather as the inverters saw
    # it taken into account; comparable days: the `drop_days` days before it.
    drop_share: float = 0.8
    drop_days: int = 14
    # A token that expires within this many days and could not be renewed.
    token_days: int = 30
    # More gateway sessions opened in the last hour than this is a refresh storm (normally: a few a day).
    sessions_per_hour: int = 6
    # The gateway's clock and this machine's disagree by more than this.
    clock_minutes: int = 5
    # Under cron, a problem still there is said again after this many hours.
    repeat_hours: int = 24


@dataclass(frozen=True)
class MqttSettings:
    """Where `collect` publishes the readings for Home Assistant: the `[mqtt]` table of the config file."""

    url: str  # mqtt://host[:port] or mqtts://host[:port]
    host: str = ""
    port: int = 1883
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    topic_prefix: str = "envoylog"
    discovery_prefix: str = "homeassistant"
    ca_file: str | None = None  # mqtts: the CA that signed the broker's certificate (default: the system's)
    insecure: bool = False  # mqtts: do not verify the broker's certificate

    @property
    def tls(self) -> bool:
        """Whether the broker is spoken to over TLS (an mqtts:// URL)."""
        return self.url.startswith("mqtts://")


@dataclass(frozen=True)
class Settings:
    """Everything a command needs to know, already validated."""

    db_url: str = field(repr=False)  # may hold a database password
    timezone: str
    enlighten_url: str
    entrez_url: str
    gateways: tuple[GatewaySettings, ...]
    config_path: Path | None = None
    collect: CollectSettings = CollectSettings()
    mqtt: MqttSettings | None = None  # publish to an MQTT broker after each collect
    check: CheckSettings = CheckSettings()


def default_config_path() -> Path:
    """`config.toml` in the user's config directory."""
    return Path(platformdirs.user_config_dir(APP_NAME)) / "config.toml"


def default_cache_dir() -> Path:
    """envoylog's cache directory: what it can lose without harm (which MQTT discovery it published)."""
    return Path(platformdirs.user_cache_dir(APP_NAME))


def default_db_url() -> str:
    """A SQLite file in the user's data directory."""
    return f"sqlite:///{Path(platformdirs.user_data_dir(APP_NAME)) / 'envoylog.db'}"


def system_timezone() -> str:
    """The IANA name of this machine's zone, or UTC when it cannot be told."""
    tz = os.environ.get("TZ", "").lstrip(":")
    if tz and _is_zone(tz):
        return tz
    try:
        target = os.path.realpath("/etc/localtime")
        marker = "zoneinfo/"
        if marker in target:
            name = target.split(marker, 1)[1]
            if _is_zone(name):
                return name
    except OSError:
        pass
    try:
        name = Path("/etc/timezone").read_text(encoding="utf-8").strip()
        if _is_zone(name):
            return name
    except OSError:
        pass
    return "UTC"


def load_settings(
    *,
    db: str | None = None,
    config: Path | None = None,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """Combine command-line values, the environment and the config file into validated Settings."""
    env = _environment(os.environ if environ is None else environ)
    path, explicit = _config_location(config, env)
    data = _read_config_file(path, explicit)
    _check_keys(data, _TOP_LEVEL_KEYS, "the config file")

    db_url = db or env.get("ENVOYLOG_DB") or _opt_str(data, "db", "db") or default_db_url()
    timezone = env.get("ENVOYLOG_TIMEZONE") or _opt_str(data, "timezone", "timezone") or system_timezone()
    enlighten = env.get("ENVOYLOG_ENLIGHTEN_URL") or _opt_str(data, "enlighten_url", "enlighten_url")
    entrez = env.get("ENVOYLOG_ENTREZ_URL") or _opt_str(data, "entrez_url", "entrez_url")

    return Settings(
        db_url=validate_db_url(db_url),
        timezone=_validate_timezone(timezone),
        enlighten_url=_validate_cloud_url(enlighten or DEFAULT_ENLIGHTEN_URL, "enlighten_url"),
        entrez_url=_validate_cloud_url(entrez or DEFAULT_ENTREZ_URL, "entrez_url"),
        gateways=_gateways(data, env),
        config_path=path if path.is_file() else None,
        collect=_collect(data),
        check=_check(data),
        mqtt=_mqtt(data, env),
    )


def _collect(data: Mapping[str, Any]) -> CollectSettings:
    table = data.get("collect", {})
    if not isinstance(table, dict):
        raise ConfigError("'collect' in the config file must be a [collect] table")
    _check_keys(table, _COLLECT_KEYS, "[collect]")
    defaults = CollectSettings()
    shared = table.get("shared", defaults.shared)
    if not isinstance(shared, bool):
        raise ConfigError(f"[collect] shared must be true or false, not {shared!r}")
    return CollectSettings(
        workers=_count(table, "workers", defaults.workers, MAX_WORKERS),
        db_connections=_count(table, "db_connections", defaults.db_connections, 100),
        shared=shared,
        quiet_minutes=_count(table, "quiet_minutes", defaults.quiet_minutes, 1440),
        endpoint_quiet_minutes=_count(
            table, "endpoint_quiet_minutes", defaults.endpoint_quiet_minutes, 10080
        ),
        token_quiet_hours=_count(table, "token_quiet_hours", defaults.token_quiet_hours, 720),
        discovery_quiet_hours=_count(table, "discovery_quiet_hours", defaults.discovery_quiet_hours, 720),
    )


def _check(data: Mapping[str, Any]) -> CheckSettings:
    table = data.get("check", {})
    if not isinstance(table, dict):
        raise ConfigError("'check' in the config file must be a [check] table")
    defaults = CheckSettings()
    _check_keys(table, set(CheckSettings.__dataclass_fields__), "[check]")
    values: dict[str, Any] = {}
    for name in CheckSettings.__dataclass_fields__:
        default = getattr(defaults, name)
        if isinstance(default, float):
            values[name] = _share(table, name, default)
        else:
            values[name] = _count(table, name, default, 10080, where="[check]")
    return CheckSettings(**values)


def _share(table: Mapping[str, Any], key: str, default: float) -> float:
    value = table.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < 1:
        raise ConfigError(f"[check] {key} must be a share between 0 and 1 (such as 0.8), not {value!r}")
    return float(value)


def _mqtt(data: Mapping[str, Any], env: Mapping[str, str]) -> MqttSettings | None:
    """The `[mqtt]` table; the password may come from ENVOYLOG_MQTT_PASSWORD instead (it wins)."""
    if "mqtt" not in data:
        return None
    table = data["mqtt"]
    if not isinstance(table, dict):
        raise ConfigError("'mqtt' in the config file must be an [mqtt] table")
    _check_keys(table, _MQTT_KEYS, "[mqtt]")
    url = _opt_str(table, "url", "[mqtt] url")
    if url is None:
        raise ConfigError('[mqtt] needs url = "mqtt://HOST[:PORT]" (or mqtts:// for TLS)')
    host, port = _broker_address(url.strip())
    username = _opt_str(table, "username", "[mqtt] username")
    password = env.get("ENVOYLOG_MQTT_PASSWORD") or _opt_str(table, "password", "[mqtt] password")
    if password is not None and not username:
        raise ConfigError("[mqtt] has a password but no username")
    defaults = MqttSettings(url="")
    topic_prefix = _topic_prefix(table, "topic_prefix", defaults.topic_prefix)
    discovery_prefix = _topic_prefix(table, "discovery_prefix", defaults.discovery_prefix)
    ca_file = _opt_str(table, "ca_file", "[mqtt] ca_file")
    insecure = table.get("insecure", False)
    if not isinstance(insecure, bool):
        raise ConfigError(f"[mqtt] insecure must be true or false, not {insecure!r}")
    tls = url.strip().startswith("mqtts://")
    if (ca_file is not None or insecure) and not tls:
        raise ConfigError("[mqtt] ca_file and insecure are for TLS: use an mqtts:// url")
    if ca_file is not None:
        ca_file = str(Path(ca_file).expanduser())
        if not Path(ca_file).is_file():
            raise ConfigError(f"[mqtt] ca_file {ca_file} is not a file")
    return MqttSettings(
        url=url.strip().rstrip("/"),
        host=host,
        port=port,
        username=username or None,
        password=password,
        topic_prefix=topic_prefix,
        discovery_prefix=discovery_prefix,
        ca_file=ca_file,
        insecure=insecure,
    )


def _broker_address(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    if "@" in parts.netloc:
        # A password in a URL ends up in logs and process lists: it has keys of its own. Checked first, so
        # that no message below repeats it.
        raise ConfigError(
            "[mqtt] url must not hold credentials: use username and password (or ENVOYLOG_MQTT_PASSWORD)"
        )
    bad = f"bad [mqtt] url {url!r}: expected mqtt://HOST[:PORT] or mqtts://HOST[:PORT]"
    if parts.scheme not in _MQTT_PORTS or not parts.hostname:
        raise ConfigError(bad)
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ConfigError(bad)
    _check_port(parts, bad)
    _check_hostname(parts.hostname, bad)
    return parts.hostname, parts.port or _MQTT_PORTS[parts.scheme]


def _topic_prefix(table: Mapping[str, Any], key: str, default: str) -> str:
    value = _opt_str(table, key, f"[mqtt] {key}")
    if value is None:
        return default
    # Wildcards and empty levels would make topics no subscriber can tell apart.
    if not value or value != value.strip("/") or "//" in value or any(c in value for c in "+#\0"):
        raise ConfigError(
            f"bad [mqtt] {key} {value!r}: expected topic levels such as 'envoylog' or 'home/solar'"
        )
    return value


def _count(table: Mapping[str, Any], key: str, default: int, most: int, where: str = "[collect]") -> int:
    value = table.get(key, default)
    # bool is an int to Python; `workers = true` is a mistake all the same.
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= most:
        raise ConfigError(f"{where} {key} must be a whole number from 1 to {most}, not {value!r}")
    return value


def _environment(environ: Mapping[str, str]) -> dict[str, str]:
    """envoylog's variables, trimmed: a stray space must not name another file or serial; empty is unset."""
    trimmed = {name: value.strip() for name, value in environ.items() if name.startswith("ENVOYLOG_")}
    return {name: value for name, value in trimmed.items() if value}


def _config_location(config: Path | None, env: Mapping[str, str]) -> tuple[Path, bool]:
    if config is not None:
        return config, True
    if env.get("ENVOYLOG_CONFIG"):
        return Path(env["ENVOYLOG_CONFIG"]), True
    return default_config_path(), False


def _read_config_file(path: Path, explicit: bool) -> dict[str, Any]:
    try:
        # utf-8-sig: editors on Windows start a file with a byte-order mark, which TOML does not allow.
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        if explicit:
            raise ConfigError(f"config file {path} does not exist") from None
        return {}
    except IsADirectoryError:
        raise ConfigError(f"cannot read config file {path}: it is a directory") from None
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else "not readable as UTF-8 text"
        raise ConfigError(f"cannot read config file {path}: {reason}") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    except RecursionError:
        raise ConfigError(f"config file {path} is nested too deeply to be a config file") from None


def _gateways(data: Mapping[str, Any], env: Mapping[str, str]) -> tuple[GatewaySettings, ...]:
    shared_user = env.get("ENVOYLOG_USERNAME") or _opt_str(data, "username", "username")
    shared_password = env.get("ENVOYLOG_PASSWORD") or _opt_str(data, "password", "password")

    tables = data.get("gateways", {})
    if not isinstance(tables, dict):
        raise ConfigError("'gateways' in the config file must be a table of [gateways.<name>] tables")
    raw: dict[str, dict[str, Any]] = {}
    for name, table in tables.items():
        if not isinstance(table, dict):
            raise ConfigError(f"[gateways.{name}] in the config file must be a table")
        _check_keys(table, _GATEWAY_KEYS, f"[gateways.{name}]")
        raw[name] = dict(table)
    single = {key: data[key] for key in _SINGLE_GATEWAY_KEYS if key in data}
    if single and raw:
        key = sorted(single)[0]
        raise ConfigError(
            f"'{key}' at the top of the config file and [gateways.*] tables: move it into a table"
        )
    if single:
        raw[DEFAULT_GATEWAY_NAME] = single

    from_env = {
        key: env[var]
        for key, var in (
            ("host", "ENVOYLOG_HOST"),
            ("token", "ENVOYLOG_TOKEN"),
            ("serial", "ENVOYLOG_SERIAL"),
            ("fingerprint", "ENVOYLOG_FINGERPRINT"),
        )
        if env.get(var)
    }
    if from_env or not raw:
        raw.setdefault(DEFAULT_GATEWAY_NAME, {}).update(from_env)

    gateways = []
    for name, table in raw.items():
        where = f"[gateways.{name}]" if name in tables else "the gateway's"
        own_user = _opt_str(table, "username", f"{where} username")
        own_password = _opt_str(table, "password", f"{where} password")
        if name == DEFAULT_GATEWAY_NAME and name not in tables:
            # The environment's gateway: its credentials are the environment's or the file's top level.
            own_user = own_password = None
        host = _opt_str(table, "host", f"{where} host") or DEFAULT_HOST
        gateways.append(
            GatewaySettings(
                name=name,
                host=validate_host(host),
                username=own_user or shared_user,
                password=own_password or shared_password,
                token=_opt_str(table, "token", f"{where} token"),
                serial=_opt_str(table, "serial", f"{where} serial"),
                fingerprint=_validate_fingerprint(_opt_str(table, "fingerprint", f"{where} fingerprint")),
            )
        )
    return tuple(gateways)


def validate_host(host: str) -> str:
    """Check a gateway address (`host`, `host:port` or an http(s) URL); return it stripped."""
    value = host.strip()
    bad = f"bad gateway host {host!r}: expected host, host:port or http(s)://host[:port]"
    if not value:
        raise ConfigError(bad)
    if "://" in value:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(bad)
        if parts.path not in ("", "/") or parts.query or parts.fragment or parts.username:
            raise ConfigError(bad)
        _check_port(parts, bad)
        _check_hostname(parts.hostname, bad)
        return value.rstrip("/")
    parts = urlsplit(f"//{value}")
    if not parts.hostname or parts.path or parts.query or parts.fragment or parts.username:
        raise ConfigError(bad)
    _check_port(parts, bad)
    _check_hostname(parts.hostname, bad)
    return value


def _check_port(parts: Any, message: str) -> None:
    try:
        port = parts.port
    except ValueError:
        raise ConfigError(message) from None
    if port == 0:
        raise ConfigError(message)


def _check_hostname(hostname: str, message: str) -> None:
    try:
        ipaddress.ip_address(hostname)
        return
    except ValueError:
        pass
    if not _HOSTNAME.match(hostname):
        raise ConfigError(message)


def validate_db_url(url: str) -> str:
    """Check that `url` is a SQLAlchemy URL of a supported database (SQLite or PostgreSQL)."""
    try:
        parsed: URL = make_url(url)
    except ArgumentError:
        raise ConfigError(
            "bad database URL: expected sqlite:///PATH or postgresql+psycopg://USER@HOST/DB"
        ) from None
    backend = parsed.get_backend_name()
    if backend not in ("sqlite", "postgresql"):
        raise ConfigError(f"unsupported database {backend!r}: envoylog stores into SQLite or PostgreSQL")
    if backend == "sqlite" and parsed.database in (None, "", ":memory:"):
        raise ConfigError("a SQLite database needs a file: sqlite:///PATH")
    if backend == "postgresql":
        if parsed.drivername == "postgresql":
            # A plain postgresql:// URL means psycopg 3 here, the driver envoylog installs.
            return parsed.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)
        if parsed.get_driver_name() != "psycopg":
            raise ConfigError("use the psycopg driver for PostgreSQL: postgresql+psycopg://USER@HOST/DB")
    return url


def _validate_timezone(name: str) -> str:
    if not _is_zone(name):
        raise ConfigError(f"unknown time zone {name!r}: use an IANA name such as Europe/Amsterdam")
    return name


def _is_zone(name: str) -> bool:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True


def _validate_cloud_url(url: str, key: str) -> str:
    parts = urlsplit(url)
    if parts.scheme != "https" or not parts.hostname:
        # The Enphase password and the tokens travel to these services: never in clear text.
        raise ConfigError(f"bad {key} {url!r}: expected an https:// URL (the Enphase password goes there)")
    return url.rstrip("/")


def _validate_fingerprint(value: str | None) -> str | None:
    if value is None:
        return None
    normal = value.replace(":", "").strip().lower()
    if not _FINGERPRINT.match(normal):
        raise ConfigError("bad fingerprint: expected the SHA-256 of the gateway certificate, 64 hex digits")
    return normal


def _opt_str(table: Mapping[str, Any], key: str, where: str) -> str | None:
    value = table.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise ConfigError(f"{where} in the config file must be a string")
    return value


def _check_keys(table: Mapping[str, Any], allowed: set[str], where: str) -> None:
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise ConfigError(f"unknown key {unknown[0]!r} in {where} (allowed: {', '.join(sorted(allowed))})")
