"""Commands that read: `latest`, `status`, `auth status`, `report`, `export`; each queries, then renders."""

from __future__ import annotations

import json
import os
import sys
from datetime import timedelta
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from envoylog.cli.common import Format, FormatOption, database_of, now, show, today_of
from envoylog.cli.running import Options
from envoylog.cli.shell import global_options, run_cli


@global_options
def latest(ctx: typer.Context, format: FormatOption = Format.table) -> None:
    """The latest stored readings of every gateway."""
    from envoylog.render.status import format_latest
    from envoylog.reports.status import latest_document

    show(ctx, format, latest_document, format_latest)


@global_options
def status(
    ctx: typer.Context,
    format: FormatOption = Format.table,
    gateway: Annotated[
        str | None,
        typer.Option(
            "--gateway",
            metavar="NAME|SERIAL",
            help="Only this gateway, in detail: its configured name or its serial.",
        ),
    ] = None,
) -> None:
    """How collecting goes: each gateway's state and problem.

    One gateway (or those --gateway names) in detail: firmware, last success, last run, last error, token
    expiry, rows stored. Several: a line each (name, serial, state, age of the last successful read, problem),
    problem ones first, then a summary line. --format json gives every field of every gateway, in the same
    order, and the summary's counts.
    """
    from envoylog.render.status import format_status
    from envoylog.reports.status import status_document

    def action(options: Options) -> None:
        settings = options.settings()
        at = now()
        with database_of(options) as engine:
            document = status_document(
                engine,
                at,
                gateway=gateway,
                stale_after=timedelta(minutes=settings.collect.quiet_minutes),
                # A fleet's table has no room for the rows stored, and counting them reads every one.
                count_rows=True if format is Format.json or gateway is not None else None,
            )
        if format is Format.json:
            typer.echo(json.dumps(document, indent=2))
        else:
            typer.echo(format_status(document, now=at, detail=gateway is not None))

    run_cli(ctx, action)


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


@global_options
def check(
    ctx: typer.Context,
    format: FormatOption = Format.table,
    every_problem: Annotated[
        bool,
        typer.Option(
            "--all", help="Show every open problem, said before or not, and remember nothing (for a look)."
        ),
    ] = False,
) -> None:
    """Check the installation's health, for cron: silent when all is well, a line per problem otherwise.

    Looks at the stored history: a gateway not collected lately, an inverter silent in daylight or lagging the
    array's median, a day's production far below comparable days, a token that cannot be renewed, a session
    storm, a firmware change, the gateway's clock drifting. Under cron each problem is said once a day at most
    and once when it clears ([check] in the config file sets the thresholds). Exits 7 while a problem is
    open. --format json gives every open problem as a document and, like --all, remembers nothing.
    """
    from envoylog.check.watch import check_all
    from envoylog.errors import ProblemsFound
    from envoylog.render.check import check_document

    def action(options: Options) -> None:
        settings = options.settings()
        at = now()
        look = every_problem or format is Format.json
        with database_of(options) as engine:
            result = check_all(engine, settings, at, remember=not look)
        if format is Format.json:
            typer.echo(json.dumps(check_document(result, at), indent=2))
        else:
            for line in result.said:
                typer.echo(line)
        if result.problems:  # news (a firmware update) is told, and is not a problem
            raise ProblemsFound(f"{len(result.problems)} problem(s) open")

    run_cli(ctx, action)


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
        # Imported here, pandas and the rendering only once the queries run, the plotting only for --plot:
        # a report process loads what it uses, and loads it while the database works.
        from envoylog.cli.process import in_background
        from envoylog.reports.common import gateway_names
        from envoylog.reports.days import daily_rows
        from envoylog.reports.inverters import inverter_rows
        from envoylog.times import parse_period

        zone = options.settings().timezone
        first, last = parse_period(day=day, start=start, end=end, month=month, today=today_of(zone))
        if plot is not None:
            from envoylog.render import plots

            plots.require_matplotlib(plot)
        with database_of(options) as engine:
            queried = in_background(
                lambda: (
                    daily_rows(engine, first, last, timezone=zone, gateway=gateway),
                    inverter_rows(engine, first, last, timezone=zone, gateway=gateway) if inverters else None,
                    gateway_names(engine),
                )
            )
            from envoylog.render import report as report_output
            from envoylog.reports.days import daily_frame
            from envoylog.reports.inverters import inverter_frame

            day_rows, inverter_days, names = queried.result()
            days = daily_frame(day_rows)
            per_inverter = inverter_frame(inverter_days) if inverter_days is not None else None
            curve = None
            if plot is not None and first == last:
                from envoylog.reports.curve import power_curve

                curve = power_curve(engine, first, timezone=zone, gateway=gateway)
        if plot is not None:
            from envoylog.render import plots

            plots.plot_report(days, curve, first, last, timezone=zone, names=names, path=plot)
        typer.echo(report_output.render(days, per_inverter, zone, format.value, names))

    from envoylog.cli.process import without_collections

    with without_collections():
        run_cli(ctx, action)


@global_options
def auth_status(ctx: typer.Context, format: FormatOption = Format.table) -> None:
    """Token and session of every gateway (never the secrets themselves)."""
    from envoylog.render.status import format_auth
    from envoylog.reports.status import auth_document

    show(ctx, format, lambda engine: auth_document(engine, now()), format_auth)


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
        first, last = parse_period(start=start, end=end or start, today=today_of(settings.timezone))
        exporting.check_export(table.value, format.value, output)
        with database_of(options) as engine:
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
