"""What every report query shares: local days as UTC bounds, one connection (one snapshot), the gateways."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from sqlalchemy import (
    Engine,
    select,
)
from sqlalchemy.engine import Connection
from sqlalchemy.exc import SQLAlchemyError

from envoylog.db import gateways
from envoylog.db.engine import describe_db_error
from envoylog.db.migrate import open_database, require_database
from envoylog.db.models import SERIES
from envoylog.errors import ConfigError, DatabaseError
from envoylog.times import local_midnight, zone_of


def gateway_names(db: Engine | str) -> dict[str, str]:
    """Each stored gateway's configured name, by serial (report headers and plot titles show both)."""
    with connection(db) as conn:
        return {str(row.serial): str(row.name) for row in gateways.list_gateways(conn)}


@dataclass(frozen=True)
class Day:
    """A local day: its date and where it starts and ends in UTC (23, 24 or 25 hours apart)."""

    index: int
    day: date
    start: datetime
    end: datetime

    @property
    def start_s(self) -> float:
        """The start in epoch seconds."""
        return self.start.timestamp()

    @property
    def end_s(self) -> float:
        """The end in epoch seconds."""
        return self.end.timestamp()

    @property
    def seconds(self) -> float:
        """The day's length."""
        return self.end_s - self.start_s


def local_days(start: date, end: date, timezone: str) -> list[Day]:
    """The local days from `start` to `end` (inclusive) in the zone called `timezone`."""
    zone = zone_of(timezone)
    if end < start:
        raise ConfigError(f"the report ends ({end}) before it starts ({start})")
    count = (end - start).days + 1
    edges = [local_midnight(start + timedelta(days=n), zone) for n in range(count + 1)]
    return [Day(n, start + timedelta(days=n), edges[n], edges[n + 1]) for n in range(count)]


@contextmanager
def connection(db: Engine | str) -> Iterator[Connection]:
    engine = open_database(db, create=False) if isinstance(db, str) else db
    if not isinstance(db, str):
        require_database(engine)
    try:
        with engine.connect() as conn:
            if conn.dialect.name == "postgresql":
                # One snapshot for all the queries of a report, and no JIT: compiling costs more than
                # these index-range queries take to run.
                conn.exec_driver_sql("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
                conn.exec_driver_sql("SET LOCAL jit = off")
            yield conn
    except SQLAlchemyError as exc:
        raise DatabaseError(f"cannot read the database: {describe_db_error(exc)}") from None
    finally:
        if isinstance(db, str):
            engine.dispose()


def gateway_ids(conn: Connection, gateway: str | None) -> list[tuple[int, str]]:
    return [(row.id, row.serial) for row in gateways.lookup_gateways(conn, gateway)]


def site_series(conn: Connection, gateway_id: int) -> dict[str, int]:
    """The gateway's all-phase production, consumption and net-consumption series, by kind."""
    query = select(SERIES.c.kind, SERIES.c.id).where(
        SERIES.c.gateway_id == gateway_id,
        SERIES.c.phase == 0,
        SERIES.c.device == "",
        SERIES.c.kind.in_(("production", "consumption", "net_consumption")),
    )
    return {kind: sid for kind, sid in conn.execute(query)}
