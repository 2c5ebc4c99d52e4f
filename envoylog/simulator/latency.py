"""A real gateway's pace: slow answers, one request at a time, the odd reset, and its pause every night.

`Latency` is the model (frozen, pure): how long each endpoint takes, how often a connection is reset, when the
nightly outage falls. `Pace` applies it to one gateway while serving, and `CloudPace` to the Enphase cloud.
The numbers of `Latency.realistic()` and where they come from are in docs/simulator-latency.md.

Service times are real seconds (a client's timeouts and a run's deadline are real); the nightly outage is
in simulated time, local to the site, so a simulator whose clock runs fast meets it every simulated night.
"""

from __future__ import annotations

import dataclasses
import math
import random
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from email.utils import formatdate
from types import MappingProxyType
from typing import Literal
from zoneinfo import ZoneInfo

from envoylog.simulator.clock import SimClock
from envoylog.simulator.web import App, Request, Response

LatencyName = Literal["none", "realistic"]
LATENCY_NAMES: tuple[LatencyName, ...] = ("none", "realistic")
Phase = Literal["up", "dark", "booting"]

# While booting the gateway's web server is up (its /info is a static page and it checks tokens), but the
# services behind the data endpoints are not yet.
BOOT_OPEN_PATHS = frozenset({"/info", "/auth/check_jwt"})
_QUICK_STATUSES = frozenset({401, 403, 404, 405})  # refused or unknown: answered without doing the work
_BUSY_PAGE = (
    "<html><head><title>503 Service Unavailable</title></head><body>"
    "<center><h1>503 Service Unavailable</h1></center>"
    "<center>Resource busy: the gateway is starting, retry later</center>"
    "<hr><center>openresty</center></body></html>\n"
)

Pacing = tuple[float, float]  # the median service time (real seconds) and the spread (sigma of its logarithm)


@dataclass(frozen=True)
class OutageWindow:
    """One night's outage of one gateway, as UTC times."""

    start: datetime  # the gateway stops answering: connections are reset
    answering: datetime  # it answers again, booting: data endpoints say 503 with Retry-After
    ready: datetime  # booted: every endpoint answers, slowly at first
    normal: datetime  # back at its usual pace
    slowdown: float  # how many times slower than usual it answers at `ready`

    def phase(self, now: datetime) -> Phase:
        """Whether the gateway is dark, booting or up at `now`."""
        if self.start <= now < self.answering:
            return "dark"
        if self.answering <= now < self.ready:
            return "booting"
        return "up"

    def slowdown_at(self, now: datetime) -> float:
        """The factor on service times at `now`: `slowdown` when just booted, easing to 1 by `normal`."""
        if not self.ready <= now < self.normal:
            return 1.0
        left = (self.normal - now) / (self.normal - self.ready)
        return 1.0 + (self.slowdown - 1.0) * left


@dataclass(frozen=True)
class NightlyOutage:
    """The pause a gateway takes every night shortly after 23:00 local time, and the boot that follows it."""

    at: time = time(23, 0)
    start_within_s: tuple[float, float] = (30.0, 240.0)  # it starts this long after `at` (uniform)
    dark_s: tuple[float, float] = (60.0, 180.0)  # it answers nothing for this long
    booting_s: tuple[float, float] = (60.0, 120.0)  # then data endpoints answer 503 for this long
    slow_s: float = 600.0  # then it answers `slowdown` times slower, easing back over this long
    slowdown: float = 8.0
    retry_after_s: int = 30  # what its 503 answers ask a client to wait

    def window(self, day: date, timezone: ZoneInfo, seed: int) -> OutageWindow:
        """The outage of the night of local `day`: the same for the same day and seed."""
        rng = random.Random(seed * 1_000_003 + day.toordinal())
        start = datetime.combine(day, self.at, timezone).astimezone(UTC)
        start += timedelta(seconds=rng.uniform(*self.start_within_s))
        answering = start + timedelta(seconds=rng.uniform(*self.dark_s))
        ready = answering + timedelta(seconds=rng.uniform(*self.booting_s))
        return OutageWindow(start, answering, ready, ready + timedelta(seconds=self.slow_s), self.slowdown)


def _medians(pacings: Mapping[str, Pacing]) -> Mapping[str, Pacing]:
    return MappingProxyType(dict(pacings))


@dataclass(frozen=True)
class Latency:
    """How fast a gateway and the cloud answer; `Latency()` (or `none()`) answers at once, as before."""

    # By endpoint: a path ("/ivp/meters") or a path with its query ("/production.json?details=1").
    endpoints: Mapping[str, Pacing] = field(default_factory=lambda: _medians({}))
    default: Pacing = (0.0, 0.0)  # any other gateway endpoint
    quick_s: float = 0.0  # a refusal (401, 403, 404, 405) or a booting gateway's 503
    cloud: Pacing = (0.0, 0.0)  # each Enlighten or Entrez request
    cap: float = 4.0  # no service time beyond this many times its median
    reset_rate: float = 0.0  # the share of gateway requests whose connection is reset instead of answered
    outage: NightlyOutage | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "endpoints", _medians(self.endpoints))
        if not 0.0 <= self.reset_rate <= 1.0:
            raise ValueError("reset_rate is a share of requests, between 0 and 1")
        if self.cap < 1.0:
            raise ValueError("cap must be at least 1 (a multiple of the median)")

    def __hash__(self) -> int:
        # The endpoints are a read-only mapping, which does not hash by itself.
        fields = (self.default, self.quick_s, self.cloud, self.cap, self.reset_rate, self.outage)
        return hash((tuple(sorted(self.endpoints.items())), fields))

    @classmethod
    def none(cls) -> Latency:
        """Answers at once, in parallel, never reset, never dark: the simulator as tests knew it."""
        return cls()

    @classmethod
    def realistic(cls) -> Latency:
        """A real gateway's pace, from public reports (docs/simulator-latency.md)."""
        return cls(
            endpoints={
                "/info": (0.15, 0.35),
                "/auth/check_jwt": (0.9, 0.35),
                "/production.json?details=1": (1.5, 0.5),
                "/production.json": (1.0, 0.4),
                "/api/v1/production": (0.4, 0.35),
                "/api/v1/production/inverters": (0.3, 0.35),
                "/ivp/meters": (0.2, 0.35),
                "/ivp/meters/readings": (0.15, 0.5),
                "/ivp/pdm/device_data": (0.8, 0.4),
                "/ivp/ensemble/inventory": (0.3, 0.35),
                "/ivp/ensemble/power": (0.3, 0.35),
                "/ivp/ensemble/secctrl": (0.3, 0.35),
                "/home.json": (3.0, 0.35),
            },
            default=(0.5, 0.35),
            quick_s=0.2,
            cloud=(0.5, 0.35),
            reset_rate=0.002,
            outage=NightlyOutage(),
        )

    @classmethod
    def named(cls, name: str) -> Latency:
        """The model called `name`: none or realistic."""
        if name == "none":
            return cls.none()
        if name == "realistic":
            return cls.realistic()
        raise ValueError(f"unknown latency {name!r} (known: {', '.join(LATENCY_NAMES)})")

    def scaled(self, factor: float) -> Latency:
        """The same shape with every service time multiplied by `factor` (resets and nights unchanged)."""
        if factor < 0:
            raise ValueError("the factor must not be negative")
        return dataclasses.replace(
            self,
            endpoints={key: (median * factor, sigma) for key, (median, sigma) in self.endpoints.items()},
            default=(self.default[0] * factor, self.default[1]),
            quick_s=self.quick_s * factor,
            cloud=(self.cloud[0] * factor, self.cloud[1]),
        )

    @property
    def paced(self) -> bool:
        """Whether this model changes anything: otherwise the simulator serves as if it were not there."""
        medians = [median for median, _ in self.endpoints.values()]
        return (
            any(medians)
            or bool(self.default[0] or self.quick_s)
            or self.reset_rate > 0
            or self.outage is not None
        )

    def pacing(self, path: str, query: Mapping[str, str]) -> Pacing:
        """The median and spread of one gateway request."""
        if query:
            target = path + "?" + "&".join(f"{key}={value}" for key, value in sorted(query.items()))
            found = self.endpoints.get(target)
            if found is not None:
                return found
        return self.endpoints.get(path, self.default)

    def service_s(
        self, path: str, query: Mapping[str, str], status: int, rng: random.Random, slowdown: float = 1.0
    ) -> float:
        """How long the gateway takes over one request that it answers with `status`."""
        if status in _QUICK_STATUSES:
            return self.quick_s * slowdown
        return self._draw(self.pacing(path, query), rng) * slowdown

    def cloud_s(self, rng: random.Random) -> float:
        """How long the cloud takes over one request."""
        return self._draw(self.cloud, rng)

    def _draw(self, pacing: Pacing, rng: random.Random) -> float:
        median, sigma = pacing
        if median <= 0:
            return 0.0
        # Lognormal: most answers near the median, a tail of slow ones, none beyond `cap` times it.
        return min(median * math.exp(sigma * rng.gauss(0.0, 1.0)), median * self.cap)


def as_latency(latency: Latency | str) -> Latency:
    """A Latency given as itself or by name."""
    return latency if isinstance(latency, Latency) else Latency.named(latency)


class Pace:
    """One gateway at the pace of its Latency: one request at a time, service times, resets, the night.

    The gateway has one worker: a request waits for the one being served (its service time included). A
    stopping simulator ends every wait at once; the requests cut short are reset.
    """

    def __init__(
        self,
        latency: Latency,
        *,
        clock: SimClock,
        timezone: str,
        seed: int,
        stopping: threading.Event,
        reboot: Callable[[], object] | None = None,
    ) -> None:
        self.latency = latency
        self.clock = clock
        self.timezone = ZoneInfo(timezone)
        self.seed = seed
        self.stopping = stopping
        self._reboot = reboot  # what a reboot does to the gateway (its sessions end)
        self._worker = threading.Lock()
        self._rng = random.Random(seed)  # drawn from only while holding the worker: deterministic
        self._state = threading.Lock()
        self._windows: dict[date, OutageWindow] = {}
        self._rebooted_at: datetime | None = None

    def window(self, now: datetime) -> OutageWindow | None:
        """The nightly outage that `now` falls in or follows (today's or last night's); None without one."""
        outage = self.latency.outage
        if outage is None:
            return None
        today = now.astimezone(self.timezone).date()
        found = None
        for day in (today - timedelta(days=1), today):
            with self._state:
                window = self._windows.get(day)
                if window is None:
                    window = self._windows[day] = outage.window(day, self.timezone, self.seed)
                    for old in [key for key in self._windows if key < today - timedelta(days=1)]:
                        del self._windows[old]
            if window.start <= now:
                found = window
        return found

    def serve(self, request: Request, handle: App) -> Response:
        """The gateway's answer to `request` from `handle`, at the gateway's pace."""
        if self._phase(self.clock.now())[1] == "dark":
            return Response.reset()  # the gateway is not there: nothing answers, nothing waits
        if not self._take_worker():
            return Response.reset()
        try:
            # What the gateway is doing when it gets to this request, which may have waited for others.
            now = self.clock.now()
            window, phase = self._phase(now)
            if phase == "dark":
                return Response.reset()
            if window is not None:
                self._note_reboot(window.start)
            slowdown = window.slowdown_at(now) if window is not None else 1.0
            if phase == "booting" and request.path not in BOOT_OPEN_PATHS:
                response = self._busy()
                seconds = self.latency.quick_s
            else:
                response = handle(request)
                seconds = self.latency.service_s(
                    request.path, request.query, response.status, self._rng, slowdown
                )
            # A hanging endpoint holds the gateway's one worker too.
            seconds += response.delay_seconds
            response.delay_seconds = 0.0
            reset = self.latency.reset_rate > 0 and self._rng.random() < self.latency.reset_rate
            if seconds > 0 and self.stopping.wait(seconds):
                return Response.reset()
            return Response.reset() if reset else response
        finally:
            self._worker.release()

    def _phase(self, now: datetime) -> tuple[OutageWindow | None, Phase]:
        window = self.window(now)
        return window, window.phase(now) if window is not None else "up"

    def _take_worker(self) -> bool:
        while not self._worker.acquire(timeout=0.2):
            if self.stopping.is_set():
                return False
        if self.stopping.is_set():
            self._worker.release()
            return False
        return True

    def _note_reboot(self, at: datetime) -> None:
        with self._state:
            if self._rebooted_at == at:
                return
            self._rebooted_at = at
        if self._reboot is not None:
            self._reboot()

    def _busy(self) -> Response:
        assert self.latency.outage is not None
        response = Response.text(503, _BUSY_PAGE, "text/html; charset=utf-8")
        response.headers.append(("Retry-After", str(self.latency.outage.retry_after_s)))
        response.headers.append(("Date", formatdate(self.clock.now().timestamp(), usegmt=True)))
        return response


class CloudPace:
    """The Enphase cloud at the pace of a Latency: each request takes its time, many at once."""

    def __init__(self, latency: Latency, *, seed: int, stopping: threading.Event) -> None:
        self.latency = latency
        self.stopping = stopping
        self._rng = random.Random(seed)
        self._lock = threading.Lock()

    def serve(self, request: Request, handle: App) -> Response:
        """The cloud's answer to `request` from `handle`, after the cloud's service time."""
        response = handle(request)
        with self._lock:
            seconds = self.latency.cloud_s(self._rng)
        if seconds > 0 and self.stopping.wait(seconds):
            return Response.reset()
        return response
