"""The `envoylog` command: parse options, call one library function, print the result, map errors."""

from __future__ import annotations

import json
import logging
import os
import sys
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, NoReturn, TypeVar

import typer
from sqlalchemy import Engine

from envoylog import __version__
from envoylog.config import Settings, load_settings
from envoylog.errors import EXIT_CODES, ConfigError, EnvoylogError

T = TypeVar("T")

_EXIT_CODES_HELP = "\n\n".join(f"{code}: {meaning}" for code, meaning in EXIT_CODES.items())

app = typer.Typer(
    name="envoylog",
    help=(
        "Log an Enphase Envoy / IQ Gateway into SQLite or PostgreSQL, and report daily yield.\n\n"
        f"Exit codes:\n\n{_EXIT_CODES_HELP}"
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
db_app = typer.Typer(help="Database schema: upgrade it, or show its revision.", no_args_is_help=True)
app.add_typer(db_app, name="db")
auth_app = typer.Typer(help="Enphase tokens and gateway sessions.", no_args_is_help=True)
app.add_typer(auth_app, name="auth")


STDIN = "-"


class Format(StrEnum):
    """Output formats of the inspecting commands."""

    table = "table"
    json = "json"


FormatOption = Annotated[Format, typer.Option("--format", help="table for people, json for programs.")]
GatewayOption = Annotated[
    str | None,
    typer.Option("--gateway", help="The configured gateway's name (default: all, or the only one)."),
]


@dataclass
class Options:
    """The options every command takes."""

    db: str | None = None
    config: Path | None = None
    verbose: bool = False

    def settings(self) -> Settings:
        """The validated settings for this invocation."""
        return load_settings(db=self.db, config=self.config)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"envoylog {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    ctx: typer.Context,
    db: Annotated[
        str | None, typer.Option("--db", help="SQLAlchemy URL of the database [env: ENVOYLOG_DB].")
    ] = None,
    config: Annotated[
        Path | None, typer.Option("--config", help="TOML config file [env: ENVOYLOG_CONFIG].")
    ] = None,
    verbose: Annotated[
        bool, typer.Option("-v", "--verbose", help="Tell what happens; tracebacks on errors.")
    ] = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """Options shared by every command."""
    ctx.obj = Options(db=db, config=config, verbose=verbose)
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="envoylog: %(message)s",
        stream=sys.stderr,
        force=True,
    )
    logging.getLogger("alembic").setLevel(logging.WARNING)


def run_cli(ctx: typer.Context, action: Callable[[Options], T]) -> T:
    """Run `action`, turning the project's errors into one line on stderr and their exit code."""
    options: Options = ctx.find_object(Options) or Options()
    try:
        return action(options)
    except EnvoylogError as exc:
        _fail(str(exc), exc.status, options.verbose)
    except KeyboardInterrupt:
        _fail("interrupted", 130, options.verbose)
    except Exception as exc:
        _fail(f"internal error: {type(exc).__name__}: {exc}", 1, options.verbose)


def _fail(message: str, code: int, verbose: bool) -> NoReturn:
    if verbose:
        traceback.print_exc(file=sys.stderr)
    typer.echo(f"envoylog: error: {message}", err=True)
    raise typer.Exit(code)


@app.command()
def collect(
    ctx: typer.Context,
    every: Annotated[
        float | None,
        typer.Option(help="Keep polling every N seconds (daemon mode); stops on SIGTERM/SIGINT."),
    ] = None,
    deadline: Annotated[float, typer.Option(help="Seconds one run may take in all.")] = 50.0,
) -> None:
    """Read every configured gateway once and store what changed. Silent on success."""
    from envoylog.collect import collect_all, raise_for_runs
    from envoylog.daemon import collect_every

    def action(options: Options) -> None:
        settings = options.settings()
        if deadline <= 0:
            raise ConfigError("--deadline must be positive")
        if every is not None:
            if every <= 0:
                raise ConfigError("--every must be positive")
            collect_every(
                settings, every_s=every, deadline_s=deadline, warn=lambda line: typer.echo(line, err=True)
            )
            return
        raise_for_runs(collect_all(settings, deadline_s=deadline))

    run_cli(ctx, action)


@app.command()
def latest(ctx: typer.Context, format: FormatOption = Format.table) -> None:
    """The latest stored readings of every gateway."""
    from envoylog.overview import format_latest, latest_document

    _show(ctx, format, latest_document, format_latest)


@app.command()
def status(ctx: typer.Context, format: FormatOption = Format.table) -> None:
    """Per gateway: firmware, last success, last error, token expiry, rows stored; database size."""
    from envoylog.overview import format_status, status_document

    _show(ctx, format, lambda engine: status_document(engine, _now()), format_status)


class ReportFormat(StrEnum):
    """Output formats of `report`."""

    table = "table"
    csv = "csv"
    json = "json"


@app.command()
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
                "(needs pip install 'envoylog\\[plots]')."
            ),
        ),
    ] = None,
) -> None:
    """Daily yield per local day: production, consumption, grid import and export, peak, coverage."""

    def action(options: Options) -> None:
        from envoylog import plots, report_output, reports

        zone = options.settings().timezone
        first, last = report_output.report_period(
            day=day, start=start, end=end, month=month, today=_today(zone)
        )
        if plot is not None:
            plots.require_matplotlib(plot)
        with _database(options) as engine:
            days = reports.daily_report(engine, first, last, timezone=zone, gateway=gateway)
            per_inverter = (
                reports.inverter_report(engine, first, last, timezone=zone, gateway=gateway)
                if inverters
                else None
            )
            if plot is not None:
                plots.plot_report(engine, days, first, last, timezone=zone, gateway=gateway, path=plot)
        typer.echo(report_output.render(days, per_inverter, zone, format.value))

    run_cli(ctx, action)


@auth_app.command("status")
def auth_status(ctx: typer.Context, format: FormatOption = Format.table) -> None:
    """Token and session of every gateway (never the secrets themselves)."""
    from envoylog.overview import auth_document, format_auth

    _show(ctx, format, lambda engine: auth_document(engine, _now()), format_auth)


@auth_app.command("login")
def auth_login(ctx: typer.Context, gateway: GatewayOption = None) -> None:
    """Get a new token from the Enphase cloud now and store it (ignores the wait after failed logins)."""
    from envoylog.auth_admin import choose_one, describe_token, login

    def action(options: Options) -> None:
        settings = options.settings()
        chosen = choose_one(settings, gateway)
        with _database(options) as engine:
            serial, token = login(engine, settings, chosen, _now())
        typer.echo(describe_token(serial, token, _now()))

    run_cli(ctx, action)


@auth_app.command("set-token")
def auth_set_token(
    ctx: typer.Context,
    token: Annotated[str, typer.Argument(help="The token, or - to read it from standard input.")],
    gateway: GatewayOption = None,
) -> None:
    """Store a token you pasted (for accounts with multi-factor authentication); it is checked first."""
    from envoylog.auth_admin import choose_one, describe_token, set_token

    def action(options: Options) -> None:
        raw = sys.stdin.read() if token == STDIN else token
        settings = options.settings()
        chosen = choose_one(settings, gateway)
        with _database(options) as engine:
            serial, info = set_token(engine, chosen, raw, _now())
        typer.echo(describe_token(serial, info, _now()))

    run_cli(ctx, action)


@auth_app.command("logout")
def auth_logout(ctx: typer.Context, gateway: GatewayOption = None) -> None:
    """Delete the stored tokens and sessions (of one gateway with --gateway, else of every gateway)."""
    from envoylog.auth_admin import choose_gateways, logout

    def action(options: Options) -> None:
        settings = options.settings()
        chosen = choose_gateways(settings, gateway)
        with _database(options) as engine:
            deleted = logout(engine, chosen, everything=gateway is None)
        typer.echo(f"deleted {deleted} stored token(s) and session(s)")

    run_cli(ctx, action)


@app.command()
def demo(
    ctx: typer.Context,
    cycles: Annotated[int, typer.Option(help="Collect cycles, a simulated minute apart.")] = 5,
    profile: Annotated[
        str, typer.Option(help="Simulated hardware: standard, metered, battery, legacy.")
    ] = "metered",
    days: Annotated[
        int | None,
        typer.Option(
            help="Instead, fill the database with the simulator's last N days (ending yesterday), "
            "as a collector polling every minute would have stored them."
        ),
    ] = None,
) -> None:
    """The no-hardware tour: a simulated gateway, a few collect cycles, the latest readings."""
    from envoylog.demo import run_demo, run_history
    from envoylog.simulator.profiles import get_profile

    def action(options: Options) -> None:
        try:
            get_profile(profile)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        if days is not None:
            run_history(options.settings(), days=days, profile=profile, now=_now(), echo=typer.echo)
            return
        if cycles < 1:
            raise ConfigError("--cycles must be at least 1")
        run_demo(options.settings(), cycles=cycles, profile=profile, echo=typer.echo)

    run_cli(ctx, action)


@app.command()
def export(
    ctx: typer.Context,
    start: Annotated[str, typer.Option("--from", help="First local day, YYYY-MM-DD.")],
    end: Annotated[
        str | None, typer.Option("--to", help="Last local day, included (default: --from).")
    ] = None,
    table: Annotated[
        str, typer.Option(help="meters (site channels and phases), inverters or batteries.")
    ] = "meters",
    format: Annotated[
        str, typer.Option("--format", help="csv, or parquet (needs pyarrow and --output).")
    ] = "csv",
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write to this file (CSV: default standard output).")
    ] = None,
    gateway: Annotated[
        str | None, typer.Option("--gateway", help="Only this gateway: its configured name or its serial.")
    ] = None,
) -> None:
    """The stored readings of a period (local days in the configured zone) as CSV or Parquet, streamed."""
    from envoylog import export as exporting

    def action(options: Options) -> None:
        settings = options.settings()
        first, last = exporting.parse_period(start, end, _today(settings.timezone))
        exporting.check_export(table, format, output)
        with _database(options) as engine:
            try:
                rows = exporting.export_readings(
                    engine,
                    first,
                    last,
                    timezone=settings.timezone,
                    table=table,
                    format=format,
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
            typer.echo(f"exported {rows:,} {table} readings of {first} to {last} to {output}")

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
def _database(options: Options) -> Iterator[Engine]:
    from envoylog.db.migrate import open_database

    engine = open_database(options.settings().db_url)
    try:
        yield engine
    finally:
        engine.dispose()


def _now() -> datetime:
    return datetime.now(UTC)


def _today(timezone: str) -> date:
    from envoylog.timeutil import today_in, zone_of

    return today_in(zone_of(timezone))


@db_app.command("upgrade")
def db_upgrade(ctx: typer.Context) -> None:
    """Upgrade the database schema to the newest revision (also done automatically on first use)."""
    from envoylog.db.engine import create_db_engine
    from envoylog.db.migrate import current_revision, upgrade

    def action(options: Options) -> None:
        engine = create_db_engine(options.settings().db_url)
        try:
            applied = upgrade(engine)
            if options.verbose:
                state = "upgraded to" if applied else "already at"
                typer.echo(f"database {state} revision {current_revision(engine)}", err=True)
        finally:
            engine.dispose()

    run_cli(ctx, action)


@db_app.command("current")
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
def simulate(
    ctx: typer.Context,
    profile: Annotated[
        str,
        typer.Option(
            help="Hardware profile: standard, metered, battery, legacy, or one with a quirk (see the README)."
        ),
    ] = "metered",
    port: Annotated[int, typer.Option(help="Gateway port on 127.0.0.1 (0: any free port).")] = 8443,
    cloud_port: Annotated[
        int | None, typer.Option(help="Port of the simulated Enphase cloud (default: the gateway port + 1).")
    ] = None,
    speed: Annotated[float, typer.Option(help="Simulated seconds per real second.")] = 1.0,
    start: Annotated[
        str | None, typer.Option(help="Simulated start time, ISO 8601 (default: now, or where it stopped).")
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of the weather and the house load.")] = 1,
    fault: Annotated[
        list[str] | None,
        typer.Option(
            help=(
                "Start with a fault: mfa, wrong-password, cloud-down, late-reset, counter-wrap, booting, "
                "or PATH=STATUS|malformed|hang:SECONDS. Repeatable."
            )
        ),
    ] = None,
    state_dir: Annotated[
        Path | None,
        typer.Option(
            help="Where the simulator keeps its keys, certificates and clock (default: user data dir)."
        ),
    ] = None,
    capture: Annotated[
        Path | None,
        typer.Option(
            help="Replay a real gateway instead: a folder of captured responses (as in envoy-captures), "
            "served with their recorded status codes, at their capture time unless --start is given."
        ),
    ] = None,
) -> None:
    """Run the simulated gateway and Enphase cloud on 127.0.0.1 until Ctrl-C."""
    from envoylog.simulator.cli_support import serve_simulator

    def action(_options: Options) -> None:
        start_at = _parse_start(start)
        serve_simulator(
            profile=profile,
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
