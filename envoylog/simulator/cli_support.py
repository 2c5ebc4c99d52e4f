"""`envoylog simulate`: start the simulator from command-line values and tell the user how to use it."""

from __future__ import annotations

import errno
import shlex
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import platformdirs

from envoylog.errors import ConfigError
from envoylog.simulator.captured import CapturedModel
from envoylog.simulator.endpoints import GatewayModel
from envoylog.simulator.faults import Faults, apply_fault_spec
from envoylog.simulator.gateway import SiteModel
from envoylog.simulator.profiles import get_profile
from envoylog.simulator.server import Simulator, run_until_stopped


def default_state_dir(profile: str) -> Path:
    """Where `envoylog simulate` keeps a profile's keys, certificates and clock between runs."""
    return Path(platformdirs.user_data_dir("envoylog")) / "simulator" / profile


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
) -> None:
    """Run a simulator in the foreground until SIGINT or SIGTERM; `capture` replays a recorded gateway."""
    model: SiteModel
    try:
        if capture is not None:
            captured = CapturedModel(capture)
            # Served at its capture time by default, so that the recorded timestamps read as "now".
            start = start or captured.captured_at
            model, state_name = captured, f"capture-{captured.profile.name}"
        else:
            model, state_name = GatewayModel(get_profile(profile), seed=seed), profile
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    if speed <= 0:
        raise ConfigError("--speed must be positive")
    if not 0 <= port <= 65535:
        raise ConfigError("--port must be between 0 and 65535")
    initial = Faults()
    for spec in faults:
        try:
            apply_fault_spec(initial, spec, start or datetime.now(UTC))
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
    )
    try:
        sim.start()
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise ConfigError(
                f"port {port} or {cloud_port} is in use: choose others with --port/--cloud-port"
            ) from None
        raise
    for line in describe(sim):
        echo(line)
    if sim.rewound_from is not None:
        echo(
            "note: --start is before where this simulator's clock stopped "
            f"({sim.rewound_from:%Y-%m-%d %H:%M} UTC): its lifetime counters start lower, which a database "
            "that logged it sees as a reset"
        )
    run_until_stopped(sim)
    echo("simulator stopped")


def describe(sim: Simulator) -> list[str]:
    """What a user needs to point envoylog (or curl) at a running simulator."""
    profile = sim.model.profile
    lines = [
        f"envoylog simulator: profile {profile.name}, serial {sim.serial}, firmware {profile.firmware}",
        f"  clock:     {sim.clock.now().isoformat(timespec='seconds')} running at {sim.clock.speed:g}x",
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
    lines.append("Stop it with Ctrl-C.")
    return lines
