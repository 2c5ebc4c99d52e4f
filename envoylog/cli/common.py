"""What the commands share: the output format and gateway options, the database they open, and the clock."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime
from enum import StrEnum
from typing import Annotated, Any

import typer
from sqlalchemy import Engine

from envoylog.cli.running import Options
from envoylog.cli.shell import run_cli

STDIN = "-"


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


def show(
    ctx: typer.Context,
    format: Format,
    build: Callable[[Engine], dict[str, Any]],
    render: Callable[[dict[str, Any]], str],
) -> None:
    """Build a document from the database and print it as JSON or as a table."""

    def action(options: Options) -> None:
        with database_of(options) as engine:
            document = build(engine)
        typer.echo(json.dumps(document, indent=2) if format is Format.json else render(document))

    run_cli(ctx, action)


@contextmanager
def database_of(options: Options, *, create: bool = False) -> Iterator[Engine]:
    """The database, at the newest schema; only the commands that write may `create` it."""
    from envoylog.db.migrate import open_database

    engine = open_database(options.settings().db_url, create=create)
    try:
        yield engine
    finally:
        engine.dispose()


def now() -> datetime:
    return datetime.now(UTC)


def today_of(timezone: str) -> date:
    from envoylog.times import today_in, zone_of

    return today_in(zone_of(timezone))
