"""A circuit breaker per gateway endpoint: one that timed out is skipped for a while, then probed again.

A gateway answers one request at a time, and an endpoint that hangs holds it (and the run) until the read
timeout: without a breaker every cron run spends most of its minute waiting on it. After a timeout the
endpoint rests for a pause that doubles with each timeout in a row (2, 4, 8, 16 min, then 30 at most), the
rest of the gateway is read in seconds, and when the pause is over one run asks it again: a probe, with a
shorter read timeout. Any answer, even an HTTP error, closes the breaker.

The cap is a trade: while an endpoint rests its readings are not taken (a production source's lifetime
counters keep the energy, but not the power curve of those minutes), and each probe of a still-hanging
endpoint costs a probe timeout. At 30 minutes a recovered endpoint is back within half an hour, and a dead
one costs one probe timeout (15 s) per half hour, under 1 % of the gateway's time.

Pure state: the collector loads it from the database, `read_gateway` uses and changes it, the collector saves
what changed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

FIRST_PAUSE = timedelta(minutes=2)
MAX_PAUSE = timedelta(minutes=30)
# A probe gets this long to answer, not the full read timeout: the slowest healthy answer of a real gateway
# takes about 6 s (production.json?details=1), so a working endpoint still answers a probe, and one that
# still hangs costs a third of a timeout.
PROBE_READ_TIMEOUT_S = 15.0
# cron starts a run within a second or two of the minute: a run that starts this close to the end of a pause
# probes, rather than skipping for one more minute.
START_SLACK = timedelta(seconds=10)


def pause_after(timeouts: int) -> timedelta:
    """How long an endpoint rests after `timeouts` timeouts in a row."""
    if timeouts < 1:
        return timedelta(0)
    doublings = min(timeouts - 1, 16)  # far past the cap already; no huge number to multiply
    return min(FIRST_PAUSE * (1 << doublings), MAX_PAUSE)


@dataclass(frozen=True)
class Breaker:
    """One endpoint's timeouts in a row and until when it is not asked."""

    timeouts: int
    open_until: datetime | None


@dataclass
class Breakers:
    """The breakers of one gateway's endpoints (by path), and which of them this run changed."""

    state: dict[str, Breaker] = field(default_factory=dict)
    changed: set[str] = field(default_factory=set)

    def skip(self, path: str, now: datetime) -> bool:
        """Whether the endpoint rests at `now`: this run does not ask it."""
        until = self.until(path)
        # A pause ending further off than any pause can (set by a clock that was ahead, since stepped back)
        # is over: the endpoint is probed rather than skipped for hours.
        return until is not None and now + START_SLACK < until <= now + MAX_PAUSE

    def until(self, path: str) -> datetime | None:
        """Until when the endpoint rests (None without a breaker)."""
        breaker = self.state.get(path)
        return breaker.open_until if breaker is not None else None

    def probing(self, path: str, now: datetime) -> bool:
        """Whether asking the endpoint now is a probe: it timed out before and its pause is over."""
        return path in self.state and not self.skip(path, now)

    def timed_out(self, path: str, now: datetime) -> datetime:
        """The endpoint timed out (while the gateway answered): it rests, longer than the last time."""
        before = self.state.get(path)
        timeouts = (before.timeouts if before is not None else 0) + 1
        until = now + pause_after(timeouts)
        self.state[path] = Breaker(timeouts, until)
        self.changed.add(path)
        return until

    def answered(self, path: str) -> None:
        """The endpoint answered (whatever it said): its breaker closes."""
        if self.state.pop(path, None) is not None:
            self.changed.add(path)

    def resting(self, now: datetime) -> set[str]:
        """The endpoints this run does not ask."""
        return {path for path in self.state if self.skip(path, now)}

    def describe(self, path: str) -> str:
        """Why the endpoint is skipped: `skipped until 10:42 UTC after 3 timeouts in a row`."""
        breaker = self.state[path]
        count = f"{breaker.timeouts} timeout" + ("s" if breaker.timeouts != 1 else "")
        at = breaker.open_until
        until = f" until {at.astimezone(UTC):%H:%M} UTC" if at is not None else ""
        return f"skipped{until} after {count} in a row"
