"""Commands that need no gateway: `demo` (a tour, or `--days N` of history) and `simulate` (a gateway)."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from envoylog.cli.common import now
from envoylog.cli.running import Options
from envoylog.cli.shell import global_options, run_cli
from envoylog.errors import ConfigError


class DemoProfile(StrEnum):
    """The simulated hardware the demo can collect and fill."""

    standard = "standard"
    metered = "metered"
    battery = "battery"
    legacy = "legacy"


class LatencyChoice(StrEnum):
    """How fast the simulated gateway answers."""

    none = "none"
    realistic = "realistic"


class SimulatorProfile(StrEnum):
    """Every hardware profile of the simulator (a test keeps this list equal to the simulator's)."""

    standard = "standard"
    metered = "metered"
    battery = "battery"
    legacy = "legacy"
    metered_no_cts = "metered-no-cts"
    stalled_api = "stalled-api"
    zero_api = "zero-api"
    total_is_net = "total-is-net"
    phantom_channels = "phantom-channels"
    many_inverters = "many-inverters"
    acb = "acb"
    booting = "booting"
    html_only = "html-only"


@global_options
def demo(
    ctx: typer.Context,
    profile: Annotated[DemoProfile, typer.Option(help="The simulated hardware.")] = DemoProfile.metered,
    day: Annotated[
        str | None,
        typer.Option(
            metavar="DATE", help="The simulated day to collect: YYYY-MM-DD or yesterday (the default)."
        ),
    ] = None,
    days: Annotated[
        int | None,
        typer.Option(
            metavar="N",
            help="Instead, fill the database with the simulator's last N days (ending yesterday), "
            "as a collector polling every minute would have stored them.",
        ),
    ] = None,
) -> None:
    """The no-hardware tour: a simulated day collected by the real collector, and its daily report.

    The demo uses a database of its own (demo.db in the user data directory) unless --db names one.
    """
    from envoylog.config import validate_db_url
    from envoylog.demo.tour import default_demo_db_url, run_demo, run_history

    def action(options: Options) -> None:
        db_url = validate_db_url(options.db) if options.db else default_demo_db_url()
        if days is not None:
            run_history(db_url, days=days, profile=profile.value, now=now(), echo=typer.echo)
            return
        run_demo(
            db_url, profile=profile.value, day=day, now=now(), echo=typer.echo, own_database=not options.db
        )

    run_cli(ctx, action)


@global_options
def simulate(
    ctx: typer.Context,
    profile: Annotated[
        SimulatorProfile,
        typer.Option(
            metavar="PROFILE",
            help="Hardware: standard, metered, battery, legacy, or one with a quirk (README): "
            + ", ".join(list(SimulatorProfile)[4:])
            + ".",
        ),
    ] = SimulatorProfile.metered,
    port: Annotated[
        int,
        typer.Option(
            metavar="PORT",
            help="Gateway port on 127.0.0.1 (0: any free ports); a fleet takes it and the next ones.",
        ),
    ] = 8443,
    cloud_port: Annotated[
        int | None,
        typer.Option(
            metavar="PORT",
            help="Port of the simulated Enphase cloud (default: the one after the last gateway's).",
        ),
    ] = None,
    speed: Annotated[float, typer.Option(metavar="FACTOR", help="Simulated seconds per real second.")] = 1.0,
    start: Annotated[
        str | None,
        typer.Option(
            metavar="TIME",
            help="Simulated start time, ISO 8601 with a zone (default: now, or where it stopped).",
        ),
    ] = None,
    seed: Annotated[int, typer.Option(metavar="N", help="Seed of the weather and the house load.")] = 1,
    fault: Annotated[
        list[str] | None,
        typer.Option(
            metavar="FAULT",
            help=(
                "Start with a fault: mfa, wrong-password, cloud-down, late-reset, counter-wrap, booting, "
                "PATH=STATUS|malformed|hang:SECONDS, or cloud:PATH=STATUS|html|malformed|hang:SECONDS for a "
                "cloud path (/login/login.json, /tokens, /login, /entrez_tokens), or "
                "inverter:N=FACTOR|dead[@TIME] for inverter N (from 0) of the site. Repeatable."
            ),
        ),
    ] = None,
    state_dir: Annotated[
        Path | None,
        typer.Option(
            metavar="DIR",
            help="Where the simulator keeps its keys, certificates and clock (default: user data dir).",
        ),
    ] = None,
    capture: Annotated[
        Path | None,
        typer.Option(
            metavar="DIR",
            help="Replay a real gateway instead: a folder of captured responses (as in envoy-captures), "
            "served with their recorded status codes, at their capture time unless --start is given.",
        ),
    ] = None,
    latency: Annotated[
        LatencyChoice,
        typer.Option(
            metavar="LATENCY",
            help="none: answer at once. realistic: a real gateway's pace (docs/simulator-latency.md): "
            "seconds per request, one request at a time, a rare reset, and a pause shortly after 23:00 "
            "local time followed by a minute or two of 503 with Retry-After.",
        ),
    ] = LatencyChoice.none,
    gateways: Annotated[
        int,
        typer.Option(
            metavar="N",
            help="Simulate a fleet of N gateways, each on a port of its own (from --port on, or any free "
            "ports with --port 0), with serials of their own, sharing one clock and one cloud.",
        ),
    ] = 1,
    accounts: Annotated[
        int,
        typer.Option(
            metavar="N",
            help="Enlighten accounts the fleet's gateways belong to: gateway i to account i mod N.",
        ),
    ] = 1,
    write_config: Annotated[
        Path | None,
        typer.Option(
            metavar="PATH",
            help="Write an envoylog config file naming every simulated gateway with its account, for "
            "`envoylog --config PATH collect` (with REQUESTS_CA_BUNDLE set as printed).",
        ),
    ] = None,
) -> None:
    """Run the simulated gateway (or a fleet of them) and Enphase cloud on 127.0.0.1 until Ctrl-C."""
    from envoylog.simulator.cli_support import serve_simulator

    def action(_options: Options) -> None:
        start_at = _parse_start(start)
        serve_simulator(
            profile=profile.value,
            port=port,
            cloud_port=cloud_port,
            speed=speed,
            start=start_at,
            seed=seed,
            faults=fault or [],
            state_dir=state_dir,
            echo=typer.echo,
            capture=capture,
            latency=latency.value,
            gateways=gateways,
            accounts=accounts,
            write_config=write_config,
        )

    run_cli(ctx, action)


def _parse_start(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        raise ConfigError(
            f"bad --start {value!r}: expected ISO 8601, e.g. 2026-06-21T04:00:00+02:00"
        ) from None
    if when.tzinfo is None:
        raise ConfigError(f"bad --start {value!r}: give a zone or offset, e.g. 2026-06-21T04:00:00Z")
    return when
