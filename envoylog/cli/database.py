"""`envoylog db upgrade` and `envoylog db current`: the schema's Alembic revision."""

from __future__ import annotations

import typer

from envoylog.cli.running import Options
from envoylog.cli.shell import global_options, run_cli


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
