"""`collect --every N`: poll until SIGTERM or SIGINT, finishing the cycle under way.

One process, one `Collector`: the database's connections and each gateway's HTTPS connection last from one
cycle to the next, and so does its session cookie (in the database), so a cycle logs in to nothing.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType

from sqlalchemy.exc import SQLAlchemyError

from envoylog.collect.run import Collector, HandOffFailed, Notice, raise_for_runs
from envoylog.config import Settings
from envoylog.db.engine import describe_db_error
from envoylog.errors import ConfigError, EnvoylogError

log = logging.getLogger(__name__)


def collect_every(
    settings: Settings,
    *,
    every_s: float,
    deadline_s: float,
    say: Callable[[Notice, str], None],
    textfile: Path | None = None,
) -> None:
    """Collect every `every_s` seconds; errors are reported and polling goes on; a signal stops it cleanly.

    `say(kind, line)` prints a line: an error, a problem that has lasted (a warning), one that cleared.
    """
    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("signal %s: stopping after the current cycle", signum)
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    collector = Collector(settings, deadline_s=deadline_s)
    try:
        while not stop.is_set():
            started = time.monotonic()
            try:
                # A cycle may take longer than `every_s` (a first login, a slow gateway): the next one then
                # starts late, never beside it, so a cycle keeps the run's whole deadline.
                try:
                    runs = collector.cycle(textfile=textfile)
                except HandOffFailed as failed:
                    # The readings are stored: say it and go on, the next cycle may write the file again.
                    runs = failed.runs
                    say("error", str(failed))
                for run in runs:
                    for kind, line in run.notices():
                        say(kind, line)
                raise_for_runs(runs)
            except ConfigError:
                raise  # nothing will change by trying again
            except EnvoylogError as exc:
                if not exc.quiet:
                    say("error", str(exc))
            except SQLAlchemyError as exc:
                # A database restarting under a long-running collector: the next cycle reconnects.
                say("error", f"database error: {describe_db_error(exc)}")
            stop.wait(max(0.0, every_s - (time.monotonic() - started)))
    finally:
        collector.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
