"""The `envoylog` command: parse options, call one library function, print the result, map errors."""

from __future__ import annotations

import json
import math
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from sqlalchemy import Engine

from envoylog import __version__
from envoylog.cli.shell import (
    EnvoylogGroup,
    Options,
    environment_help,
    exit_codes_help,
    global_options,
    run_cli,
)
from envoylog.errors import ConfigError

app = typer.Typer(
    name="envoylog",
    cls=EnvoylogGroup,
    help=(
        "Log an Enphase Envoy / IQ Gateway into SQLite or PostgreSQL, and report daily yield.\n\n"
        "Try it without hardware: envoylog demo. Every command takes --db, --config and -v, "
        "before or after the command's name."
    ),
    epilog=f"{environment_help()}\n\n{exit_codes_help()}",
    no_args_is_help=True,
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
db_app = typer.Typer(
    cls=EnvoylogGroup,
    help="Database schema: upgrade it, or show its revision.",
    no_args_is_help=True,
    rich_markup_mode=None,
)
app.add_typer(db_app, name="db")
auth_app = typer.Typer(
    cls=EnvoylogGroup,
    help="Enphase tokens and gateway sessions.",
    no_args_is_help=True,
    rich_markup_mode=None,
)
app.add_typer(auth_app, name="auth")


STDIN = "-"
MAX_EVERY_S = 86_400.0  # a day: a longer pause is a typo, and a timer would serve better


class Format(StrEnum):
    """Output formats of the inspecting commands."""

    table = "table"
    json = "json"


FormatOption = Annotated[Format, typer.Option("--format", help="table for people, json for programs.")]
GatewayOption = Annotated[
    str | None,
    typer.Option(
        "--gateway", metavar="NAME", help="The configured gateway's name (default: all, or the only one)."
    ),
]


def _version(value: bool) -> None:
    if value:
        typer.echo(f"envoylog {__version__}")
        raise typer.Exit()


@app.callback()
@global_options
def main_options(
    ctx: typer.Context,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """Log an Enphase Envoy / IQ Gateway into SQLite or PostgreSQL, and report daily yield."""


@db_app.callback()
@global_options
def db_options(ctx: typer.Context) -> None:
    """Database schema: upgrade it, or show its revision."""


@auth_app.callback()
@global_options
def auth_options(ctx: typer.Context) -> None:
    """Enphase tokens and gateway sessions."""


@app.command()
@global_options
def collect(
    ctx: typer.Context,
    every: Annotated[
        float | None,
        typer.Option(
            metavar="SECONDS", help="Keep polling every N seconds (daemon mode); stops on SIGTERM/SIGINT."
        ),
    ] = None,
    deadline: Annotated[
        float, typer.Option(metavar="SECONDS", help="Seconds one run may take in all.")
    ] = 50.0,
) -> None:
    """Read every configured gateway once and store what changed. Silent on success."""
    from envoylog.collect.every import collect_every
    from envoylog.collect.run import collect_all, raise_for_runs

    def action(options: Options) -> None:
        settings = options.settings()
        # `not x > 0` also refuses NaN, which every comparison calls false.
        if not 0 < deadline < math.inf:
            raise ConfigError(f"--deadline must be a positive number of seconds, not {deadline}")
        if every is not None:
            if not 1 <= every <= MAX_EVERY_S:
                raise ConfigError(f"--every must be from 1 to {MAX_EVERY_S:.0f} seconds, not {every}")
            collect_every(
                settings, every_s=every, deadline_s=deadline, warn=lambda line: typer.echo(line, err=True)
            )
            return
        raise_for_runs(collect_all(settings, deadline_s=deadline))

    run_cli(ctx, action)


@app.command()
@global_options
def latest(ctx: typer.Context, format: FormatOption = Format.table) -> None:
    """The latest stored readings of every gateway."""
    from envoylog.render.status import format_latest
    from envoylog.reports.status import latest_document

    _show(ctx, format, latest_document, format_latest)


@app.command()
@global_options
def status(ctx: typer.Context, format: FormatOption = Format.table) -> None:
    """Per gateway: firmware, last success, last error, token expiry, rows stored; database size."""
    from envoylog.render.status import format_status
    from envoylog.reports.status import status_document

    _show(ctx, format, lambda engine: status_document(engine, _now()), format_status)


class DemoProfile(StrEnum):
    """The simulated hardware the demo can collect and fill."""

    standard = "standard"
    metered = "metered"
    battery = "battery"
    legacy = "legacy"


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


class ExportTable(StrEnum):
    """What `export` writes."""

    meters = "meters"
    inverters = "inverters"
    batteries = "batteries"


class ExportFormat(StrEnum):
    """How `export` writes it."""

    csv = "csv"
    parquet = "parquet"


class ReportFormat(StrEnum):
    """Output formats of `report`."""

    table = "table"
    csv = "csv"
    json = "json"


@app.command()
@global_options
def report(
    ctx: typer.Context,
    day: Annotated[
        str | None,
        typer.Option(metavar="DATE", help="One local day: YYYY-MM-DD, today or yesterday (the default)."),
    ] = None,
    start: Annotated[
        str | None, typer.Option("--from", metavar="DATE", help="First day of a range (with --to).")
    ] = None,
    end: Annotated[
        str | None, typer.Option("--to", metavar="DATE", help="Last day of a range, included.")
    ] = None,
    month: Annotated[str | None, typer.Option(metavar="YYYY-MM", help="A calendar month.")] = None,
    format: Annotated[
        ReportFormat,
        typer.Option("--format", help="table for people, csv for spreadsheets, json for programs."),
    ] = ReportFormat.table,
    inverters: Annotated[bool, typer.Option("--inverters", help="Add each inverter's energy.")] = False,
    gateway: Annotated[
        str | None,
        typer.Option(
            "--gateway", metavar="NAME|SERIAL", help="Only this gateway: its configured name or its serial."
        ),
    ] = None,
    plot: Annotated[
        Path | None,
        typer.Option(
            "--plot",
            metavar="FILE.png",
            help=(
                "Also draw it: a day's power curves, or a range's daily energy "
                "(needs pip install 'envoylog[plots]')."
            ),
        ),
    ] = None,
) -> None:
    """Daily yield per local day: production, consumption, grid import and export, peak, coverage."""

    def action(options: Options) -> None:
        from envoylog import reports
        from envoylog.render import plots
        from envoylog.render import report as report_output
        from envoylog.times import parse_period

        zone = options.settings().timezone
        first, last = parse_period(day=day, start=start, end=end, month=month, today=_today(zone))
        if plot is not None:
            plots.require_matplotlib(plot)
        with _database(options) as engine:
            days = reports.daily_report(engine, first, last, timezone=zone, gateway=gateway)
            per_inverter = (
                reports.inverter_report(engine, first, last, timezone=zone, gateway=gateway)
                if inverters
                else None
            )
            names = reports.gateway_names(engine)
            curve = (
                reports.power_curve(engine, first, timezone=zone, gateway=gateway)
                if plot is not None and first == last
                else None
            )
        if plot is not None:
            plots.plot_report(days, curve, first, last, timezone=zone, names=names, path=plot)
        typer.echo(report_output.render(days, per_inverter, zone, format.value, names))

    run_cli(ctx, action)


@auth_app.command("status")
@global_options
def auth_status(ctx: typer.Context, format: FormatOption = Format.table) -> None:
    """Token and session of every gateway (never the secrets themselves)."""
    from envoylog.render.status import format_auth
    from envoylog.reports.status import auth_document

    _show(ctx, format, lambda engine: auth_document(engine, _now()), format_auth)


@auth_app.command("login")
@global_options
def auth_login(ctx: typer.Context, gateway: GatewayOption = None) -> None:
    """Get a new token from the Enphase cloud now and store it (ignores the wait after failed logins)."""
    from envoylog.collect.auth_commands import choose_one, describe_token, login

    def action(options: Options) -> None:
        settings = options.settings()
        chosen = choose_one(settings, gateway)
        with _database(options, create=True) as engine:
            serial, token = login(engine, settings, chosen, _now())
        typer.echo(describe_token(serial, token, _now()))

    run_cli(ctx, action)


@auth_app.command("set-token")
@global_options
def auth_set_token(
    ctx: typer.Context,
    token: Annotated[
        str, typer.Argument(metavar="TOKEN", help="The token, or - to read it from standard input.")
    ],
    gateway: GatewayOption = None,
) -> None:
    """Store a token you pasted (for accounts with multi-factor authentication); it is checked first."""
    from envoylog.collect.auth_commands import choose_one, describe_token, set_token

    def action(options: Options) -> None:
        raw = sys.stdin.read() if token == STDIN else token
        settings = options.settings()
        chosen = choose_one(settings, gateway)
        with _database(options, create=True) as engine:
            serial, info = set_token(engine, chosen, raw, _now())
        typer.echo(describe_token(serial, info, _now()))

    run_cli(ctx, action)


@auth_app.command("logout")
@global_options
def auth_logout(ctx: typer.Context, gateway: GatewayOption = None) -> None:
    """Delete the stored tokens and sessions (of one gateway with --gateway, else of every gateway)."""
    from envoylog.collect.auth_commands import choose_gateways, logout

    def action(options: Options) -> None:
        settings = options.settings()
        chosen = choose_gateways(settings, gateway)
        with _database(options) as engine:
            deleted = logout(engine, chosen, everything=gateway is None)
        typer.echo(f"deleted {deleted} stored token(s) and session(s)")

    run_cli(ctx, action)


@app.command()
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
            run_history(db_url, days=days, profile=profile.value, now=_now(), echo=typer.echo)
            return
        run_demo(
            db_url, profile=profile.value, day=day, now=_now(), echo=typer.echo, own_database=not options.db
        )

    run_cli(ctx, action)


@app.command()
@global_options
def export(
    ctx: typer.Context,
    start: Annotated[
        str, typer.Option("--from", metavar="DATE", help="First local day: YYYY-MM-DD, today or yesterday.")
    ],
    end: Annotated[
        str | None,
        typer.Option("--to", metavar="DATE", help="Last local day, included (default: --from)."),
    ] = None,
    table: Annotated[
        ExportTable, typer.Option(help="meters (site channels and phases), inverters or batteries.")
    ] = ExportTable.meters,
    format: Annotated[
        ExportFormat, typer.Option("--format", help="csv, or parquet (needs pyarrow and --output).")
    ] = ExportFormat.csv,
    output: Annotated[
        Path | None,
        typer.Option(
            "--output", "-o", metavar="FILE", help="Write to this file (CSV: default standard output)."
        ),
    ] = None,
    gateway: Annotated[
        str | None,
        typer.Option(
            "--gateway", metavar="NAME|SERIAL", help="Only this gateway: its configured name or its serial."
        ),
    ] = None,
) -> None:
    """The stored readings of a period (local days in the configured zone) as CSV or Parquet, streamed."""
    from envoylog.render import export as exporting
    from envoylog.times import parse_period

    def action(options: Options) -> None:
        settings = options.settings()
        first, last = parse_period(start=start, end=end or start, today=_today(settings.timezone))
        exporting.check_export(table.value, format.value, output)
        with _database(options) as engine:
            try:
                rows = exporting.export_readings(
                    engine,
                    first,
                    last,
                    timezone=settings.timezone,
                    table=table.value,
                    format=format.value,
                    output=output,
                    stdout=sys.stdout,
                    gateway=gateway,
                )
            except BrokenPipeError:
                # The reader (head, a pager) stopped early: not an error. Point stdout at nothing so that
                # Python's flush at exit does not complain again.
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
                return
        if output is not None:
            typer.echo(f"exported {rows:,} {table.value} readings of {first} to {last} to {output}")

    run_cli(ctx, action)


def _show(
    ctx: typer.Context,
    format: Format,
    build: Callable[[Engine], dict[str, Any]],
    render: Callable[[dict[str, Any]], str],
) -> None:
    """Build a document from the database and print it as JSON or as a table."""

    def action(options: Options) -> None:
        with _database(options) as engine:
            document = build(engine)
        typer.echo(json.dumps(document, indent=2) if format is Format.json else render(document))

    run_cli(ctx, action)


@contextmanager
def _database(options: Options, *, create: bool = False) -> Iterator[Engine]:
    """The database, at the newest schema; only the commands that write may `create` it."""
    from envoylog.db.migrate import open_database

    engine = open_database(options.settings().db_url, create=create)
    try:
        yield engine
    finally:
        engine.dispose()


def _now() -> datetime:
    return datetime.now(UTC)


def _today(timezone: str) -> date:
    from envoylog.times import today_in, zone_of

    return today_in(zone_of(timezone))


@db_app.command("upgrade")
@global_options
def db_upgrade(ctx: typer.Context) -> None:
    """Upgrade the database schema to the newest revision (also done automatically on first use)."""
    from envoylog.db.engine import create_db_engine
    from envoylog.db.migrate import current_revision, upgrade

    def action(options: Options) -> None:
        engine = create_db_engine(options.settings().db_url, create=True)
        try:
            applied = upgrade(engine)
            if options.verbose:
                state = "upgraded to" if applied else "already at"
                typer.echo(f"database {state} revision {current_revision(engine)}", err=True)
        finally:
            engine.dispose()

    run_cli(ctx, action)


@db_app.command("current")
@global_options
def db_current(ctx: typer.Context) -> None:
    """Print the database's schema revision and the newest one this envoylog knows."""
    from envoylog.db.engine import create_db_engine
    from envoylog.db.migrate import current_revision, head_revision

    def action(options: Options) -> None:
        engine = create_db_engine(options.settings().db_url)
        try:
            current = current_revision(engine) or "none (empty database)"
        finally:
            engine.dispose()
        typer.echo(f"current: {current}\nhead:    {head_revision()}")

    run_cli(ctx, action)


@app.command()
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
        int, typer.Option(metavar="PORT", help="Gateway port on 127.0.0.1 (0: any free port).")
    ] = 8443,
    cloud_port: Annotated[
        int | None,
        typer.Option(
            metavar="PORT", help="Port of the simulated Enphase cloud (default: the gateway port + 1)."
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
                "or PATH=STATUS|malformed|hang:SECONDS. Repeatable."
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
) -> None:
    """Run the simulated gateway and Enphase cloud on 127.0.0.1 until Ctrl-C."""
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


def main() -> None:
    """Console-script entry point."""
    app()
