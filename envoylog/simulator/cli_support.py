"""`envoylog simulate`: start the simulator (or a fleet) from command-line values and say how to use it."""

from __future__ import annotations

import errno
import shlex
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import platformdirs

from envoylog.errors import ConfigError
from envoylog.simulator.captured import CapturedModel
from envoylog.simulator.endpoints import GatewayModel
from envoylog.simulator.faults import INVERTER_FAULT, Faults, apply_fault_spec, parse_inverter_fault
from envoylog.simulator.fleet import ConfigGateway, Fleet, config_toml, write_private_text
from envoylog.simulator.gateway import SiteModel
from envoylog.simulator.latency import Latency
from envoylog.simulator.profiles import Profile, get_profile
from envoylog.simulator.server import Simulator, run_until_stopped


def default_state_dir(profile: str) -> Path:
    """Where `envoylog simulate` keeps a profile's keys, certificates and clock between runs."""
    return Path(platformdirs.user_data_dir("envoylog")) / "simulator" / profile


def profile_with_faults(name: str, specs: list[str]) -> Profile:
    """The profile `name` with the inverter faults of `specs` (inverter:N=...); ValueError if one is bad."""
    profile = get_profile(name)
    if not specs:
        return profile
    faults = tuple(parse_inverter_fault(spec, profile.timezone) for spec in specs)
    return replace(profile, inverter_faults=faults)


def serve_simulator(
    *,
    profile: str,
    port: int,
    cloud_port: int | None,
    speed: float,
    start: datetime | None,
    seed: int,
    faults: list[str],
    state_dir: Path | None,
    echo: Callable[[str], None],
    capture: Path | None = None,
    latency: str = "none",
    gateways: int = 1,
    accounts: int = 1,
    write_config: Path | None = None,
) -> None:
    """Run a simulator (or a fleet of `gateways`) in the foreground until SIGINT or SIGTERM.

    `capture` replays a recorded gateway; `write_config` writes an envoylog config file naming the gateways.
    """
    if speed <= 0:
        raise ConfigError("--speed must be positive")
    if not 0 <= port <= 65535:
        raise ConfigError("--port must be between 0 and 65535")
    if gateways < 1:
        raise ConfigError("--gateways must be at least 1")
    if not 1 <= accounts <= gateways:
        raise ConfigError("--accounts must be between 1 and the number of gateways")
    try:
        pace = Latency.named(latency)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    initial = Faults()
    inverter_specs = [spec for spec in faults if spec.startswith(INVERTER_FAULT)]
    for spec in faults:
        if spec in inverter_specs:
            continue  # faults of the site's physics go into its profile below
        try:
            apply_fault_spec(initial, spec, start or datetime.now(UTC))
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
    if inverter_specs and (capture is not None or gateways > 1 or accounts > 1):
        raise ConfigError("inverter faults need one simulated site: not with --capture or --gateways")
    if gateways > 1 or accounts > 1:
        if capture is not None:
            raise ConfigError("--capture replays one gateway: it cannot be combined with --gateways")
        _serve_fleet(
            profile=profile,
            count=gateways,
            accounts=accounts,
            port=port,
            cloud_port=cloud_port,
            speed=speed,
            start=start,
            seed=seed,
            faults=initial,
            latency=pace,
            state_dir=state_dir,
            write_config=write_config,
            echo=echo,
        )
        return
    model: SiteModel
    try:
        if capture is not None:
            captured = CapturedModel(capture)
            # Served at its capture time by default, so that the recorded timestamps read as "now".
            start = start or captured.captured_at
            model, state_name = captured, f"capture-{captured.profile.name}"
        else:
            model, state_name = GatewayModel(profile_with_faults(profile, inverter_specs), seed=seed), profile
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    if cloud_port is None:
        cloud_port = port + 1 if port else 0
    sim = Simulator(
        speed=speed,
        start=start,
        seed=seed,
        gateway_port=port,
        cloud_port=cloud_port,
        state_dir=state_dir or default_state_dir(state_name),
        faults=initial,
        model=model,
        latency=pace,
    )
    _start(sim, f"port {port} or {cloud_port} is in use: choose others with --port/--cloud-port")
    if write_config is not None:
        config = config_toml(
            [ConfigGateway("default", sim.gateway_url, sim.username, sim.password, sim.serial)],
            enlighten_url=sim.enlighten_url,
            entrez_url=sim.entrez_url,
            timezone=getattr(sim.profile, "timezone", "UTC"),
        )
        _write_config(sim, write_config, config)
    for line in describe(sim, write_config):
        echo(line)
    if sim.rewound_from is not None:
        echo(
            "note: --start is before where this simulator's clock stopped "
            f"({sim.rewound_from:%Y-%m-%d %H:%M} UTC): its lifetime counters start lower, which a database "
            "that logged it sees as a reset"
        )
    run_until_stopped(sim)
    echo("simulator stopped")


def _serve_fleet(
    *,
    profile: str,
    count: int,
    accounts: int,
    port: int,
    cloud_port: int | None,
    speed: float,
    start: datetime | None,
    seed: int,
    faults: Faults,
    latency: Latency,
    state_dir: Path | None,
    write_config: Path | None,
    echo: Callable[[str], None],
) -> None:
    if port and port + count > 65536:
        raise ConfigError(f"--port {port} leaves no room for {count} gateways below port 65536")
    if cloud_port is None:
        cloud_port = port + count if port else 0
    try:
        fleet = Fleet(
            count,
            profile,
            latency=latency,
            accounts=accounts,
            start=start,
            speed=speed,
            seed=seed,
            port=port,
            cloud_port=cloud_port,
            state_dir=state_dir or default_state_dir(f"fleet-{profile}"),
            faults=faults,
        )
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    last = port + count - 1
    _start(fleet, f"a port from {port} to {last}, or {cloud_port}, is in use: choose others with --port")
    if write_config is not None:
        _write_config(fleet, write_config, fleet.config_text())
    for line in describe_fleet(fleet, write_config):
        echo(line)
    run_until_stopped(fleet)
    echo("simulator stopped")


def _start(server: Simulator | Fleet, in_use: str) -> None:
    try:
        server.start()
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise ConfigError(in_use) from None
        if exc.errno == errno.EMFILE:
            raise ConfigError(
                "too many open files for this many gateways (a socket each): raise the limit "
                "with `ulimit -n`, or simulate fewer gateways"
            ) from None
        raise


def _write_config(server: Simulator | Fleet, path: Path, text: str) -> None:
    try:
        write_private_text(path, text)
    except OSError as exc:
        server.stop()
        raise ConfigError(f"cannot write the config file {path}: {exc.strerror or exc}") from None


def _collect_hint(server: Simulator | Fleet, config: Path | None) -> list[str]:
    if config is None:
        return []
    return [
        "Collect from it with:",
        f"  export REQUESTS_CA_BUNDLE={shlex.quote(str(server.ca_file))}",
        f"  envoylog --config {shlex.quote(str(config))} collect",
    ]


def describe(sim: Simulator, config: Path | None = None) -> list[str]:
    """What a user needs to point envoylog (or curl) at a running simulator."""
    profile = sim.model.profile
    lines = [
        f"envoylog simulator: profile {profile.name}, serial {sim.serial}, firmware {profile.firmware}",
        f"  clock:     {sim.clock.now().isoformat(timespec='seconds')} running at {sim.clock.speed:g}x",
        f"  latency:   {_latency_words(sim.latency)}",
        f"  gateway:   {sim.gateway_url}"
        + ("  (self-signed certificate)" if profile.https else "  (plain HTTP)"),
        *(
            [f"  gateway certificate SHA-256 (for `fingerprint`): {sim.gateway_cert_sha256}"]
            if profile.https
            else []
        ),
        f"  enlighten: {sim.enlighten_url}",
        f"  entrez:    {sim.entrez_url}",
        f"  CA file:   {sim.ca_file}",
        f"  faults:    POST {sim.gateway_url}/_sim/faults   request log: GET {sim.gateway_url}/_sim/requests",
        "Point envoylog at it with:",
    ]
    lines += [f"  export {name}={shlex.quote(value)}" for name, value in sim.environment().items()]
    if config is not None:
        lines += [f"  or with the config file it wrote: envoylog --config {shlex.quote(str(config))} collect"]
    lines.append("Stop it with Ctrl-C.")
    return lines


def describe_fleet(fleet: Fleet, config: Path | None = None) -> list[str]:
    """What a user needs to point envoylog at a running fleet."""
    profile, first, last = fleet.profile, fleet.gateways[0], fleet.gateways[-1]
    accounts = fleet.accounts
    lines = [
        f"envoylog simulator: a fleet of {len(fleet.gateways)} gateways, profile {profile.name}, "
        f"firmware {profile.firmware}",
        f"  clock:     {fleet.clock.now().isoformat(timespec='seconds')} running at {fleet.clock.speed:g}x",
        f"  latency:   {_latency_words(fleet.latency)}",
        f"  gateways:  {first.name} {first.url} (serial {first.serial}) to {last.name} {last.url} "
        f"(serial {last.serial})",
        f"  accounts:  {len(accounts)}: {accounts[0].username} (password {accounts[0].password})"
        + (f" to {accounts[-1].username} (password {accounts[-1].password})" if len(accounts) > 1 else "")
        + f"; gateway i belongs to account i mod {len(accounts)}",
        f"  enlighten: {fleet.enlighten_url}",
        f"  entrez:    {fleet.entrez_url}",
        f"  CA file:   {fleet.ca_file}",
    ]
    if config is None:
        lines.append("  --write-config PATH writes an envoylog config file that names every gateway.")
    else:
        lines.append(f"  config:    {config}")
    lines += _collect_hint(fleet, config)
    lines.append("Stop it with Ctrl-C.")
    return lines


def _latency_words(latency: Latency) -> str:
    if not latency.paced:
        return "none (answers at once)"
    if latency == Latency.realistic():
        return "realistic (a real gateway's pace: seconds per request, one at a time, a pause after 23:00)"
    return "custom"
