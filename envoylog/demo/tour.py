"""`envoylog demo`: the no-hardware tour — a simulated day collected by the real collector, then its report.

The demo keeps to a database of its own (`demo.db` beside the default database, unless `--db` names one) and
to a gateway serial of its own, so it never mixes with a real gateway's history. Its simulated day is one
that has already ended in the simulated site's zone: nothing it stores lies in the future of the machine's
clock.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import platformdirs
from sqlalchemy.engine import make_url

from envoylog.collect.run import collect_all, raise_for_runs
from envoylog.config import APP_NAME, GatewaySettings, Settings
from envoylog.demo.filler import HistorySummary, fill_history, history_days
from envoylog.errors import ConfigError
from envoylog.simulator.profiles import Profile, get_profile
from envoylog.simulator.server import Simulator
from envoylog.times import local_day_bounds, parse_day, today_in, zone_of

DEMO_GATEWAY = "demo"
DEMO_DB_FILE = "demo.db"
# A run every 5 simulated minutes: inverters report that often, and each run vouches for the 10 minutes after
# it, so the day is fully covered with half the runs a cron collector would make.
DEMO_STEP = timedelta(minutes=5)
PROGRESS_EVERY = timedelta(hours=6)
NEXT_STEPS = (
    "next: point envoylog at your gateway: ENVOYLOG_HOST=envoy.local ENVOYLOG_USERNAME=you@example.com "
    "ENVOYLOG_PASSWORD=... envoylog -v collect",
    '      then log it every minute from cron: * * * * * envoylog collect   (README: "Real setup")',
)


def default_demo_db_url() -> str:
    """The demo's own SQLite file, beside (never in) the database `collect` uses."""
    return f"sqlite:///{Path(platformdirs.user_data_dir(APP_NAME)) / DEMO_DB_FILE}"


def demo_profile(name: str) -> Profile:
    """The simulated hardware `name`, under a serial of the demo's own (never a simulator's or a real one)."""
    try:
        profile = get_profile(name)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    return replace(profile, serial=profile.serial[:-4] + "0001")


@dataclass
class DemoDay:
    """What the tour collected: the simulated day, the runs and what they cost and stored."""

    day: date
    timezone: str
    serial: str
    runs: int = 0
    gateway_requests: int = 0
    cloud_requests: int = 0
    rows_added: int = 0

    def add(self, stretch: _Stretch) -> None:
        """Count a stretch of runs."""
        self.runs += stretch.runs
        self.gateway_requests += stretch.gateway_requests
        self.cloud_requests += stretch.cloud_requests
        self.rows_added += stretch.rows_added


def demo_day(profile: Profile, now: datetime, day: date | None = None) -> date:
    """The simulated day to collect: `day`, or yesterday in the site's zone; it must have ended."""
    today = today_in(zone_of(profile.timezone), now)
    chosen = day or today - timedelta(days=1)
    if chosen >= today:
        raise ConfigError(
            f"--day {chosen} has not ended yet in {profile.timezone}: the demo collects a day that is over "
            f"(today is {today} there)"
        )
    installed = profile.installed_at.astimezone(zone_of(profile.timezone)).date()
    if chosen < installed:
        raise ConfigError(f"the simulated gateway was installed on {installed}: pick a later --day")
    return chosen


def run_demo(
    db_url: str,
    *,
    profile: str,
    day: str | None,
    now: datetime,
    echo: Callable[[str], None],
    own_database: bool,
) -> DemoDay:
    """The tour: collect a simulated day through the real collector, print its report and the next steps."""
    from envoylog.render.report import format_table
    from envoylog.reports import daily_report

    site = demo_profile(profile)
    today = today_in(zone_of(site.timezone), now)
    chosen = demo_day(site, now, parse_day(day, "--day", today) if day is not None else None)
    location = where(db_url)
    hint = f"; delete it with: rm {location}" if own_database else ""
    echo(f"database: {location} (the demo's own{hint})" if own_database else f"database: {location}")
    summary = collect_demo_day(db_url, site, chosen, echo=echo)
    report = daily_report(db_url, chosen, chosen, timezone=site.timezone, gateway=site.serial)
    echo("")
    echo(f"the report of {chosen} (again with: envoylog report --day {chosen} --db {db_url}):")
    echo(format_table(report, None, site.timezone, {site.serial: DEMO_GATEWAY}))
    echo("")
    for line in NEXT_STEPS:
        echo(line)
    return summary


def collect_demo_day(db_url: str, profile: Profile, day: date, *, echo: Callable[[str], None]) -> DemoDay:
    """Collect the local `day` of the simulated `profile` through the real collector, a run each 5 minutes."""
    zone = zone_of(profile.timezone)
    start, end = local_day_bounds(day, day, zone)
    summary = DemoDay(day, profile.timezone, profile.serial)
    # A private state directory: the simulator's saved clock must not carry the demo into the future. A
    # stopped clock: each run sees the instant it was set to, so the demo stores the same rows every time.
    with Simulator(profile, start=start, speed=0) as sim:
        settings = Settings(
            db_url=db_url,
            timezone=profile.timezone,
            enlighten_url=sim.enlighten_url,
            entrez_url=sim.entrez_url,
            gateways=(
                GatewaySettings(
                    name=DEMO_GATEWAY, host=sim.gateway_url, username=sim.username, password=sim.password
                ),
            ),
        )
        echo(
            f"collecting {day} ({profile.timezone}) from the simulated {profile.name} gateway "
            f"{profile.serial} through the real collector, a run every {DEMO_STEP.seconds // 60} "
            "simulated minutes:"
        )
        stretch = _Stretch(start)
        at = start
        while at <= end:
            sim.clock.set(at)
            runs = collect_all(settings, clock=sim.clock.now, cloud_verify=str(sim.ca_file))
            raise_for_runs(runs)
            stretch.add(runs[0].requests, runs[0].cloud_requests, sum(runs[0].rows_added.values()))
            at += DEMO_STEP
            # Progress every few hours; the run at the next midnight closes the last stretch.
            if at > end or (at - stretch.start >= PROGRESS_EVERY and at < end):
                echo(stretch.describe(min(at, end), zone))
                summary.add(stretch)
                stretch = _Stretch(at)
    return summary


@dataclass
class _Stretch:
    """A few hours of the demo's runs, for one progress line."""

    start: datetime
    runs: int = 0
    gateway_requests: int = 0
    cloud_requests: int = 0
    rows_added: int = 0

    def add(self, gateway_requests: int, cloud_requests: int, rows_added: int) -> None:
        """Count one run."""
        self.runs += 1
        self.gateway_requests += gateway_requests
        self.cloud_requests += cloud_requests
        self.rows_added += rows_added

    def describe(self, until: datetime, zone: ZoneInfo) -> str:
        """One line: the local hours, the runs, what they asked and stored."""
        first, last = self.start.astimezone(zone), until.astimezone(zone)
        ends = "24:00" if last.date() > first.date() else f"{last:%H:%M}"
        return (
            f"  {first:%H:%M}-{ends}  {self.runs} runs: {self.gateway_requests:,} gateway requests, "
            f"{self.cloud_requests} cloud requests, {self.rows_added:,} rows added"
        )


def run_history(
    db_url: str, *, days: int, profile: str, now: datetime, echo: Callable[[str], None]
) -> HistorySummary:
    """Fill the database with the simulated gateway's last `days` days (ending yesterday, in its zone)."""
    site = demo_profile(profile)
    first, last = history_days(days, site.timezone, now)
    echo(f"filling {where(db_url)} with the simulated {profile} gateway's days {first} to {last}")
    summary = fill_history(
        db_url, first, last, profile=profile, serial=site.serial, gateway=DEMO_GATEWAY, echo=echo
    )
    echo(summary.describe())
    return summary


def where(db_url: str) -> str:
    """Where a database is, for the user: a SQLite file's path, or PostgreSQL's host and database."""
    url = make_url(db_url)
    if url.get_backend_name() == "sqlite":
        return str(Path(url.database or "").resolve())
    return f"PostgreSQL database {url.database} on {url.host or 'localhost'}"
