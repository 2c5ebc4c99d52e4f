"""A database a benchmark fills and throws away: a SQLite file in its work folder, or a PostgreSQL schema."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url


def scratch_database(postgres: str | None, work: Path, name: str, app: str) -> tuple[str, Callable[[], None]]:
    """The URL of an empty database, and what drops it afterwards.

    On PostgreSQL a schema of its own (`name` and this process id) on the server `postgres` names, whose
    connections carry `app` as their application_name, so the benchmark can find (or terminate) them.
    """
    if not postgres:
        return f"sqlite:///{work / f'{name}.db'}", lambda: None
    schema = f"{name}_{os.getpid()}"
    admin = create_engine(postgres, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f"CREATE SCHEMA {schema}"))
    url = make_url(postgres).update_query_dict(
        {"options": f"-csearch_path={schema}", "application_name": app}
    )

    def cleanup() -> None:
        with admin.connect() as conn:
            conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()

    return url.render_as_string(hide_password=False), cleanup
