"""One collector per database: a lock file beside a SQLite database, an advisory lock on PostgreSQL."""

from __future__ import annotations

import fcntl
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Engine, text
from sqlalchemy.exc import SQLAlchemyError

from envoylog.db.engine import describe_db_error
from envoylog.errors import DatabaseError, LockedError

# Advisory locks are per database, not per schema: the key names the schema so that envoylog installations
# sharing a PostgreSQL database in different schemas do not block each other.
PG_LOCK_KEY = "hashtext(current_schema() || :purpose)"

log = logging.getLogger(__name__)

LOCKED_MESSAGE = "another envoylog collect is running on this database; this run stored nothing"


@contextmanager
def collect_lock(engine: Engine) -> Iterator[None]:
    """Hold the database's collect lock for the block; LockedError at once if another process holds it."""
    if engine.dialect.name == "sqlite":
        database = Path(engine.url.database or "")
        with _file_lock(database.with_name(database.name + ".lock")):
            yield
        return
    try:
        conn = engine.connect()
        locked = conn.execute(
            text(f"SELECT pg_try_advisory_lock({PG_LOCK_KEY})"), {"purpose": ":collect"}
        ).scalar()
        conn.commit()
    except SQLAlchemyError as exc:
        raise DatabaseError(f"cannot lock the database: {describe_db_error(exc)}") from None
    try:
        if not locked:
            raise LockedError(LOCKED_MESSAGE)
        yield
    finally:
        try:
            if locked:
                conn.execute(text(f"SELECT pg_advisory_unlock({PG_LOCK_KEY})"), {"purpose": ":collect"})
                conn.commit()
            conn.close()
        except SQLAlchemyError as exc:
            # The server dropped the connection (a restart): its session's locks went with it.
            log.info(
                "the collect lock's connection was lost (%s): the lock went with it", describe_db_error(exc)
            )
            conn.invalidate()


@contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    try:
        fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o600)
    except OSError as exc:
        raise DatabaseError(f"cannot create the lock file {path}: {exc.strerror}") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise LockedError(LOCKED_MESSAGE) from None
        yield
    finally:
        os.close(fd)  # closing releases the lock, also when the process dies
