"""The node_exporter textfile: the latest readings and the run's figures for Prometheus.

Names follow Prometheus' conventions: an `envoylog_` prefix, base units in the name (watts, seconds, joules,
ratios), `_total` on counters and only on counters. Energy is in joules, Prometheus' base unit
(node_exporter's own energy counters are joules too, and the inverters report theirs in joules already);
`/ 3.6e6` gives kWh.
A lifetime that may fall (net consumption: imported minus exported) is a gauge, never a counter.

Every family keeps one set of label names for all its samples (node_exporter refuses a family whose samples
differ), and the text format carries no timestamps (the textfile collector refuses them): the time of a
reading is a gauge of its own. A series that was never read is absent; a gateway that never answered still
has its run's figures.
"""

from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from envoylog.errors import ConfigError
from envoylog.handoff.state import GatewayState, Latest

JOULES_PER_WH = 3600.0
SUFFIX = ".prom"  # the textfile collector reads only the files named *.prom
OUTCOMES = ("ok", "partial", "failed", "skipped")
SITE_KINDS = ("production", "consumption", "net_consumption")
_SITE = ("gateway", "serial", "kind", "phase")
_INVERTER = ("gateway", "serial", "inverter")
_BATTERY = ("gateway", "serial", "battery")
_GRID = ("gateway", "serial", "phase")  # the net-consumption CT's channels only
_GATEWAY = ("gateway",)

# add(family, label values, value): a sample, left out when the value is None
_Add = Callable[[str, tuple[str, ...], Any], None]


@dataclass
class _Family:
    name: str
    kind: str  # "gauge" | "counter"
    help: str
    labels: tuple[str, ...]
    samples: list[tuple[tuple[str, ...], float]] = field(default_factory=list)


# name -> (type, help, label names), in the order the file lists them
_FAMILIES: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "envoylog_power_watts": ("gauge", "Site power of a meter channel, per phase or all phases.", _SITE),
    "envoylog_energy_joules_total": (
        "counter",
        "Lifetime energy of production or consumption, per phase or all phases.",
        _SITE,
    ),
    "envoylog_net_energy_joules": (
        "gauge",
        "Lifetime net consumption: energy imported minus exported; negative after exporting more.",
        _GRID,
    ),
    "envoylog_grid_import_energy_joules_total": (
        "counter",
        "Lifetime energy imported from the grid, as the net-consumption CT measured it.",
        _GRID,
    ),
    "envoylog_grid_export_energy_joules_total": (
        "counter",
        "Lifetime energy exported to the grid, as the net-consumption CT measured it.",
        _GRID,
    ),
    "envoylog_reading_timestamp_seconds": (
        "gauge",
        "When the gateway read the newest stored reading of a meter channel (unix seconds).",
        _SITE,
    ),
    "envoylog_inverter_power_watts": (
        "gauge",
        "Power of one micro-inverter in its latest report.",
        _INVERTER,
    ),
    "envoylog_inverter_max_power_watts": (
        "gauge",
        "Highest power the micro-inverter has reported.",
        _INVERTER,
    ),
    "envoylog_inverter_energy_joules_total": (
        "counter",
        "Lifetime energy of one micro-inverter, where the gateway reports it.",
        _INVERTER,
    ),
    "envoylog_inverter_report_timestamp_seconds": (
        "gauge",
        "When the micro-inverter made its latest stored report (unix seconds).",
        _INVERTER,
    ),
    "envoylog_battery_charge_ratio": ("gauge", "Battery state of charge, 0 to 1.", _BATTERY),
    "envoylog_battery_power_watts": (
        "gauge",
        "Battery power; positive while discharging into the house.",
        _BATTERY,
    ),
    "envoylog_battery_available_energy_joules": (
        "gauge",
        "Energy the battery holds and can deliver.",
        _BATTERY,
    ),
    "envoylog_battery_reading_timestamp_seconds": (
        "gauge",
        "When the newest stored battery reading was read (unix seconds).",
        _BATTERY,
    ),
    "envoylog_gateway_info": (
        "gauge",
        "The gateway's serial and firmware; always 1.",
        ("gateway", "serial", "firmware"),
    ),
    "envoylog_newest_reading_timestamp_seconds": (
        "gauge",
        "Time of the newest reading stored for the gateway (unix seconds).",
        _GATEWAY,
    ),
    "envoylog_run_timestamp_seconds": (
        "gauge",
        "When this collect wrote its figures (unix seconds).",
        _GATEWAY,
    ),
    "envoylog_run_success": (
        "gauge",
        "1 when the gateway's last run stored its readings (ok or partial), else 0.",
        _GATEWAY,
    ),
    "envoylog_run_outcome": (
        "gauge",
        "The gateway's last run: 1 for its outcome (ok, partial, failed, skipped), 0 for the others.",
        ("gateway", "outcome"),
    ),
    "envoylog_run_duration_seconds": ("gauge", "Wall time of the gateway's last run.", _GATEWAY),
    "envoylog_run_requests": ("gauge", "Requests the gateway's last run made to the gateway.", _GATEWAY),
    "envoylog_run_cloud_requests": (
        "gauge",
        "Requests the gateway's last run made to the Enphase cloud.",
        _GATEWAY,
    ),
    "envoylog_run_rows_added": ("gauge", "Reading rows the gateway's last run stored.", _GATEWAY),
    "envoylog_last_success_timestamp_seconds": (
        "gauge",
        "End of the gateway's newest run that stored readings (unix seconds).",
        _GATEWAY,
    ),
    "envoylog_token_expiry_timestamp_seconds": (
        "gauge",
        "Firmware 7+: when the stored token of the gateway expires (unix seconds).",
        _GATEWAY,
    ),
}


def check_textfile(path: Path) -> None:
    """Refuse, before a run, a textfile path node_exporter would ignore or this user cannot write."""
    if path.suffix != SUFFIX:
        raise ConfigError(f"--textfile must end in {SUFFIX}, the only files node_exporter reads: {path}")
    if path.is_dir():
        raise ConfigError(f"--textfile names a directory, not a file: {path}")
    directory = path.parent
    if not directory.is_dir():
        raise ConfigError(f"--textfile: the directory {directory} does not exist")
    if not os.access(directory, os.W_OK | os.X_OK):
        raise ConfigError(f"--textfile: the directory {directory} is not writable by this user")


def write_textfile(path: Path, states: Sequence[GatewayState], now: datetime) -> None:
    """Write the metrics of `states` to `path` atomically: node_exporter sees the old file or the new one.

    A failure is a ConfigError that says the readings are stored: only the hand-off was lost.
    """
    text = format_textfile(states, now)
    try:
        _replace(path, text.encode("utf-8"))
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise ConfigError(
            f"cannot write the Prometheus textfile {path}: {reason} (the readings are stored)"
        ) from None


def _replace(path: Path, data: bytes) -> None:
    # The temporary file sits beside the target (os.replace is atomic only within a file system), and its
    # name does not end in .prom, so node_exporter never reads it half-written.
    fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.chmod(temporary, 0o644)  # mkstemp makes it 0600; node_exporter often runs as another user
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    # The folder is not synced: a file rewritten every minute needs no durable rename (it would double the
    # cost of the write), while the file's own fsync keeps a crash from leaving an empty one under its name.


def format_textfile(states: Sequence[GatewayState], now: datetime) -> str:
    """The text exposition format of `states`: HELP and TYPE lines, then the samples of each family."""
    families = {name: _Family(name, kind, help, labels) for name, (kind, help, labels) in _FAMILIES.items()}

    def add(name: str, labels: tuple[str, ...], value: Any) -> None:
        if value is None:
            return
        families[name].samples.append((labels, float(value)))

    for state in states:
        gateway = state.run.name
        _add_run(add, state, now)
        if state.serial is None:
            continue
        serial = state.serial
        if state.firmware is not None:
            add("envoylog_gateway_info", (gateway, serial, state.firmware), 1)
        if state.latest:
            add(
                "envoylog_newest_reading_timestamp_seconds",
                (gateway,),
                max(r.at for r in state.latest).timestamp(),
            )
        for reading in sorted(state.latest, key=_order):
            if reading.kind in SITE_KINDS:
                _add_site(add, gateway, serial, reading)
            elif reading.kind == "inverter":
                labels = (gateway, serial, reading.device)
                values = reading.values
                add("envoylog_inverter_power_watts", labels, values.get("watts"))
                add("envoylog_inverter_max_power_watts", labels, values.get("max_watts"))
                add("envoylog_inverter_energy_joules_total", labels, values.get("joules_lifetime"))
                add("envoylog_inverter_report_timestamp_seconds", labels, reading.at.timestamp())
            elif reading.kind == "battery":
                labels = (gateway, serial, reading.device)
                values = reading.values
                soc = values.get("soc_percent")
                add("envoylog_battery_charge_ratio", labels, None if soc is None else soc / 100)
                add("envoylog_battery_power_watts", labels, values.get("watts"))
                add("envoylog_battery_available_energy_joules", labels, _joules(values.get("wh_available")))
                add("envoylog_battery_reading_timestamp_seconds", labels, reading.at.timestamp())
    return "".join(_render(family) for family in families.values() if family.samples)


def _add_run(add: _Add, state: GatewayState, now: datetime) -> None:
    run, gateway = state.run, (state.run.name,)
    add("envoylog_run_timestamp_seconds", gateway, round(now.timestamp(), 3))
    add("envoylog_run_success", gateway, 1 if run.outcome in ("ok", "partial") else 0)
    for outcome in OUTCOMES:
        add("envoylog_run_outcome", (run.name, outcome), 1 if run.outcome == outcome else 0)
    add("envoylog_run_duration_seconds", gateway, round(run.seconds, 3))
    add("envoylog_run_requests", gateway, run.requests)
    add("envoylog_run_cloud_requests", gateway, run.cloud_requests)
    add("envoylog_run_rows_added", gateway, run.rows_added)
    if state.last_success_at is not None:
        add("envoylog_last_success_timestamp_seconds", gateway, state.last_success_at.timestamp())
    if state.token_expires_at is not None:
        add("envoylog_token_expiry_timestamp_seconds", gateway, state.token_expires_at.timestamp())


def _add_site(add: _Add, gateway: str, serial: str, reading: Latest) -> None:
    phase = "all" if reading.phase == 0 else f"l{reading.phase}"
    labels = (gateway, serial, reading.kind, phase)
    values = reading.values
    add("envoylog_power_watts", labels, values.get("watts"))
    lifetime = _joules(values.get("wh_lifetime"))
    if reading.kind == "net_consumption":
        grid = (gateway, serial, phase)
        add("envoylog_net_energy_joules", grid, lifetime)
        add("envoylog_grid_import_energy_joules_total", grid, _joules(values.get("wh_imported_lifetime")))
        add("envoylog_grid_export_energy_joules_total", grid, _joules(values.get("wh_exported_lifetime")))
    else:
        add("envoylog_energy_joules_total", labels, lifetime)
    add("envoylog_reading_timestamp_seconds", labels, reading.at.timestamp())


def _order(reading: Latest) -> tuple[int, int, str]:
    """Site channels in SITE_KINDS order and by phase, then devices by serial: a stable, readable file."""
    rank = SITE_KINDS.index(reading.kind) if reading.kind in SITE_KINDS else len(SITE_KINDS)
    return rank, reading.phase, reading.device


def _joules(wh: Any) -> float | None:
    # Rounded to a millijoule: Wh times 3600 in binary floats leaves digits that mean nothing.
    return None if wh is None else round(float(wh) * JOULES_PER_WH, 3)


def _render(family: _Family) -> str:
    lines = [f"# HELP {family.name} {_escape_help(family.help)}", f"# TYPE {family.name} {family.kind}"]
    for values, value in family.samples:
        labels = ",".join(
            f'{name}="{_escape_label(v)}"' for name, v in zip(family.labels, values, strict=True)
        )
        lines.append(f"{family.name}{{{labels}}} {_number(value)}")
    return "\n".join(lines) + "\n"


def _escape_label(value: str) -> str:
    """A label value in the text format: backslash, double quote and line feed escaped."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _number(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(value)


def metric_names() -> Iterable[str]:
    """Every metric family the textfile may hold (for the README's table and its test)."""
    return iter(_FAMILIES)
