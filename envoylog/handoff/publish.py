"""After a collect: load what the run left in the database and hand it to each configured writer."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from envoylog.config import Settings
from envoylog.db.engine import describe_db_error
from envoylog.errors import DatabaseError, EnvoylogError
from envoylog.handoff.state import RunFacts, load_states

if TYPE_CHECKING:
    from envoylog.handoff.mqtt import Outcome


@dataclass(frozen=True)
class HandedOff:
    """How the hand-off went: the MQTT outcome (None without `[mqtt]`), and what failed (the textfile, or
    reading the state to hand on)."""

    mqtt: Outcome | None
    failed: EnvoylogError | None


MQTT_MIN_S = 3.0  # a run that used its whole deadline still gives the broker this long
MQTT_MAX_S = 10.0  # and never more: the next cron run is coming


def hand_off(
    engine: Engine,
    settings: Settings,
    facts: Sequence[RunFacts],
    *,
    textfile: Path | None,
    now: datetime,
    time_left: float = MQTT_MAX_S,
) -> HandedOff:
    """Write the Prometheus textfile and publish to MQTT, as configured; the readings are stored already.

    Each is tried whatever the other did: a textfile that cannot be written is returned as its error, and a
    broker that fails as the MQTT outcome (None without `[mqtt]`); neither fails the run's readings.
    """
    try:
        with engine.connect() as conn:
            states = load_states(conn, facts)
    except SQLAlchemyError as exc:
        # Nothing to hand on, and neither writer is tried; the readings are stored all the same.
        return HandedOff(None, DatabaseError(f"cannot read what to hand on: {describe_db_error(exc)}"))
    failed: EnvoylogError | None = None
    if textfile is not None:
        from envoylog.handoff.textfile import write_textfile

        try:
            write_textfile(textfile, states, now)
        except EnvoylogError as exc:
            failed = exc
    if settings.mqtt is None:
        return HandedOff(None, failed)
    from envoylog.handoff.mqtt import publish_states

    published = publish_states(
        settings.mqtt,
        states,
        now,
        # The quiet window is when a gateway's last reading stops standing for now.
        stale_after=timedelta(minutes=settings.collect.quiet_minutes),
        timeout_s=min(MQTT_MAX_S, max(MQTT_MIN_S, time_left)),
    )
    return HandedOff(published, failed)
