"""After a collect: load what the run left in the database and hand it to each configured writer."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Engine

from envoylog.config import Settings
from envoylog.handoff.state import RunFacts, load_states

if TYPE_CHECKING:
    from envoylog.handoff.mqtt import Outcome

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
) -> Outcome | None:
    """Write the Prometheus textfile and publish to MQTT, as configured; the readings are stored already.

    Returns how publishing to MQTT went (None without `[mqtt]`): a broker that fails never fails the run.
    """
    with engine.connect() as conn:
        states = load_states(conn, facts)
    if textfile is not None:
        from envoylog.handoff.textfile import write_textfile

        write_textfile(textfile, states, now)
    if settings.mqtt is None:
        return None
    from envoylog.handoff.mqtt import publish_states

    return publish_states(
        settings.mqtt,
        states,
        now,
        # The quiet window is when a gateway's last reading stops standing for now.
        stale_after=timedelta(minutes=settings.collect.quiet_minutes),
        timeout_s=min(MQTT_MAX_S, max(MQTT_MIN_S, time_left)),
    )
