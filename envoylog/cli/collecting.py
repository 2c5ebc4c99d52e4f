"""Commands that write: `collect` (once, or every N seconds), `auth login`, `set-token` and `logout`."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from envoylog.cli import cron
from envoylog.cli.common import STDIN, GatewayOption, database_of, now
from envoylog.cli.running import Options
from envoylog.cli.shell import global_options, run_cli


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
    ] = cron.DEFAULT_DEADLINE_S,
    textfile: Annotated[
        Path | None,
        typer.Option(
            metavar="PATH",
            help=(
                "After each run, write the readings for Prometheus' node_exporter textfile collector to "
                "this *.prom file (atomically, mode 0644). A missing or unwritable directory is refused "
                "before the run; if writing fails after the run, the readings are stored and the exit code "
                "is 2."
            ),
        ),
    ] = None,
) -> None:
    """Read every configured gateway once and store what changed. Silent on success."""
    # The same as a plain command line that cli/cron.py reads without Typer.
    run_cli(ctx, lambda options: cron.collect(options, every, deadline, textfile))


@global_options
def auth_login(ctx: typer.Context, gateway: GatewayOption = None) -> None:
    """Get a new token from the Enphase cloud now and store it (ignores the wait after failed logins)."""
    from envoylog.collect.auth_commands import choose_one, describe_token, login

    def action(options: Options) -> None:
        settings = options.settings()
        chosen = choose_one(settings, gateway)
        with database_of(options, create=True) as engine:
            serial, token = login(engine, settings, chosen, now())
        typer.echo(describe_token(serial, token, now()))

    run_cli(ctx, action)


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
        with database_of(options, create=True) as engine:
            serial, info = set_token(engine, chosen, raw, now())
        typer.echo(describe_token(serial, info, now()))

    run_cli(ctx, action)


@global_options
def auth_logout(ctx: typer.Context, gateway: GatewayOption = None) -> None:
    """Delete the stored tokens and sessions (of one gateway with --gateway, else of every gateway)."""
    from envoylog.collect.auth_commands import choose_gateways, logout

    def action(options: Options) -> None:
        settings = options.settings()
        chosen = choose_gateways(settings, gateway)
        with database_of(options) as engine:
            deleted = logout(engine, chosen, everything=gateway is None)
        typer.echo(f"deleted {deleted} stored token(s) and session(s)")

    run_cli(ctx, action)
