"""After a collect: load what the run left in the database and hand it to each configured writer."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

from sqlalchemy import Engine

from envoylog.config import Settings
from envoylog.handoff.state import RunFacts, load_states


def hand_off(
    engine: Engine, settings: Settings, facts: Sequence[RunFacts], *, textfile: Path | None, now: datetime
) -> None:
    """Write the Prometheus textfile and publish to MQTT, as configured; the readings are stored already."""
    with engine.connect() as conn:
        states = load_states(conn, facts)
    if textfile is not None:
        from envoylog.handoff.textfile import write_textfile

        write_textfile(textfile, states, now)
    if settings.mqtt is not None:
        from envoylog.handoff.mqtt import publish_states

        publish_states(settings.mqtt, states, now)
