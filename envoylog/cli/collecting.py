"""Commands that write: `collect` (once, or every N seconds), `auth login`, `set-token` and `logout`."""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from envoylog.cli.common import STDIN, GatewayOption, database_of, now
from envoylog.cli.shell import (
    Options,
    global_options,
    run_cli,
)
from envoylog.errors import ConfigError

if TYPE_CHECKING:
    from envoylog.collect.run import Notice

MAX_EVERY_S = 86_400.0  # a day: a longer pause is a typo, and a timer would serve better


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
    from envoylog.collect.every import collect_every
    from envoylog.collect.run import HandOffFailed, collect_all, raise_for_runs
    from envoylog.handoff.textfile import check_textfile

    def action(options: Options) -> None:
        settings = options.settings()
        # `not x > 0` also refuses NaN, which every comparison calls false.
        if not 0 < deadline < math.inf:
            raise ConfigError(f"--deadline must be a positive number of seconds, not {deadline}")
        if every is not None and not 1 <= every <= MAX_EVERY_S:
            raise ConfigError(f"--every must be from 1 to {MAX_EVERY_S:.0f} seconds, not {every}")
        if textfile is not None:
            check_textfile(textfile)  # before the run: a typo in a cron line shows on the first try
        if every is not None:
            collect_every(settings, every_s=every, deadline_s=deadline, say=say, textfile=textfile)
            return
        late: HandOffFailed | None = None
        try:
            runs = collect_all(settings, deadline_s=deadline, textfile=textfile)
        except HandOffFailed as failed:
            runs, late = failed.runs, failed
        for run in runs:
            for kind, line in run.notices():
                say(kind, line)
        if late is not None and any(run.error for run in runs):
            say("error", str(late))  # the gateways' error is the exit code; this line is said too
        raise_for_runs(runs)
        if late is not None:
            raise late  # the readings are stored; exit 2 says the textfile is not

    run_cli(ctx, action)


def say(kind: Notice, line: str) -> None:
    """A line of a collect: an error or a problem that has lasted (stderr), or one that cleared (stdout)."""
    if kind == "cleared":
        typer.echo(line)
    else:
        typer.echo(f"envoylog: {kind}: {line}", err=True)


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
