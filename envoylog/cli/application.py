"""The `envoylog` application: its command groups, the options every command takes, and the commands in the
order --help lists them.
"""

from __future__ import annotations

from typing import Annotated

import typer

from envoylog import __version__
from envoylog.cli import collecting, database, reading, trying
from envoylog.cli.shell import (
    EnvoylogGroup,
    environment_help,
    exit_codes_help,
    global_options,
)

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


# The commands, in the order --help lists them.
app.command()(collecting.collect)
app.command()(reading.latest)
app.command()(reading.status)
app.command()(reading.report)
app.command()(reading.check)
auth_app.command("status")(reading.auth_status)
auth_app.command("login")(collecting.auth_login)
auth_app.command("set-token")(collecting.auth_set_token)
auth_app.command("logout")(collecting.auth_logout)
app.command()(trying.demo)
app.command()(reading.export)
db_app.command("upgrade")(database.db_upgrade)
db_app.command("current")(database.db_current)
app.command()(trying.simulate)
