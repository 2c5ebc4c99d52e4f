"""The simulator's clock: settable, and able to run many times faster than real time."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta


class SimClock:
    """Simulated time that starts at `start` and advances `speed` simulated seconds per real second.

    Speed 0 stops the clock: it moves only when set, so that a run sees one instant (as the demo wants).
    """

    def __init__(self, start: datetime | None = None, speed: float = 1.0) -> None:
        if speed < 0:
            raise ValueError("clock speed must not be negative")
        self._lock = threading.Lock()
        self._anchor_sim = (start or datetime.now(UTC)).astimezone(UTC)
        self._anchor_real = time.monotonic()
        self._speed = float(speed)

    @property
    def speed(self) -> float:
        """Simulated seconds per real second."""
        return self._speed

    def now(self) -> datetime:
        """The current simulated time (aware, UTC)."""
        with self._lock:
            elapsed = time.monotonic() - self._anchor_real
            return self._anchor_sim + timedelta(seconds=elapsed * self._speed)

    def set(self, when: datetime, speed: float | None = None) -> None:
        """Jump to `when` (aware) and optionally change the speed."""
        if when.tzinfo is None:
            raise ValueError("the simulated time must be timezone-aware")
        if speed is not None and speed < 0:
            raise ValueError("clock speed must not be negative")
        with self._lock:
            self._anchor_sim = when.astimezone(UTC)
            self._anchor_real = time.monotonic()
            if speed is not None:
                self._speed = float(speed)

    def advance(self, delta: timedelta) -> datetime:
        """Move the clock forward by `delta` and return the new time."""
        new = self.now() + delta
        self.set(new)
        return new
