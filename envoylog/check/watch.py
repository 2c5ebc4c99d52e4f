"""One `envoylog check`: the rules over each gateway's history, and the memory of what was said."""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Engine
from sqlalchemy.engine import Connection
from sqlalchemy.exc import SQLAlchemyError

from envoylog.check import findings as rules
from envoylog.check.findings import SILENT_END, DayEnergy, Finding
from envoylog.check.history import (
    Checked,
    day_windows,
    gateways_to_check,
    inverter_series,
    production_series,
    reporting,
)
from envoylog.config import CheckSettings, Settings
from envoylog.db import credentials, findings, runs
from envoylog.db.engine import describe_db_error
from envoylog.db.gateways import load_firmware_change
from envoylog.errors import DatabaseError
from envoylog.reports.common import Day, local_days
from envoylog.times import local_midnight, zone_of

FIRMWARE_NEWS = timedelta(days=7)  # a firmware change is news for a week (said once)
NEWS = frozenset({"firmware"})  # findings that are told once rather than open problems
# A collector takes a token a year (an owner's) or one every 12 hours (an installer's): more is a storm.
TOKENS_PER_DAY = 3
TODAY_FROM_SHARE = 0.5  # today so far is judged once the hours so far usually give half a day's energy
CLEAR_AFTER = timedelta(minutes=30)  # a problem is cleared once it has not been seen for this long
TOLD_KEPT = timedelta(days=2)  # what was told once (a drop, a firmware update) is remembered this long
# The kinds that need readings: not judged while the gateway is not being read (the stale line says why).
DATA_KINDS = frozenset({"inverter_silent", "inverter_lagging", "production_drop", "storm"})


@dataclass(frozen=True)
class Problem:
    """A finding of one gateway, and whether this check says it (new, or due again)."""

    gateway: str  # the config's name
    serial: str | None
    finding: Finding
    said: bool

    @property
    def line(self) -> str:
        """The line for the user."""
        return f"{self.gateway} ({self.serial or 'never read'}): {self.finding.text}"


@dataclass(frozen=True)
class CheckResult:
    """What a check found: the open problems, news (a firmware update), and the problems that cleared."""

    problems: list[Problem]
    news: list[Problem]
    cleared: list[str]

    @property
    def said(self) -> list[str]:
        """The lines a cron check prints: problems and news new or due again, then those that cleared."""
        told = [p.line for p in self.problems + self.news if p.said]
        return told + [f"cleared: {line}" for line in self.cleared]


def check_all(engine: Engine, settings: Settings, now: datetime, *, remember: bool = True) -> CheckResult:
    """Check every gateway; with `remember`, say each problem once per `repeat_hours` and once when it clears.

    Without `remember` nothing is written, and every open problem (and piece of news) is returned as said.
    """
    try:
        with engine.connect() as conn:
            checked = gateways_to_check(conn, settings)
            found = {gateway.name: _gateway_findings(conn, gateway, settings, now) for gateway in checked}
        if not remember:
            everything = [Problem(g.name, g.serial, f, said=True) for g in checked for f in found[g.name][0]]
            return CheckResult(
                [p for p in everything if p.finding.kind not in NEWS],
                [p for p in everything if p.finding.kind in NEWS],
                [],
            )
        with engine.begin() as conn:
            return _remember(conn, checked, found, settings, now)
    except SQLAlchemyError as exc:
        raise DatabaseError(f"cannot read the database: {describe_db_error(exc)}") from None


def _remember(
    conn: Connection,
    checked: list[Checked],
    found: dict[str, tuple[list[Finding], frozenset[str]]],
    settings: Settings,
    now: datetime,
) -> CheckResult:
    """Compare with what was said before: say what is new or due again, and what has cleared."""
    said_before = findings.load_findings(conn, [g.name for g in checked])
    repeat = timedelta(hours=settings.check.repeat_hours)
    result = CheckResult([], [], [])
    for gateway in checked:
        current, judged = found[gateway.name]
        keys: set[findings.Key] = set()
        for finding in current:
            key: findings.Key = (gateway.name, finding.kind, finding.subject)
            keys.add(key)
            before = said_before.get(key)
            line = Problem(gateway.name, gateway.serial, finding, False).line
            if before is None:
                findings.open_finding(conn, key, finding.since, now, line, said=True)
                said = True
            else:
                # News and a day's drop are told once; a lasting problem again once a day (repeat_hours).
                said = finding.kind not in SILENT_END and (
                    before.said_at is None or now - before.said_at >= repeat
                )
                findings.update_finding(conn, key, now, line, said=said)
            told = Problem(gateway.name, gateway.serial, finding, said)
            if finding.kind in NEWS:
                if said:
                    result.news.append(told)
            else:
                result.problems.append(told)
        for gone, before in said_before.items():
            if gone[0] != gateway.name or gone in keys or before.kind not in judged:
                continue
            if before.kind in SILENT_END:
                # Kept while it could come back (a day's drop that dips again), so that it is not told twice.
                if now - before.since > TOLD_KEPT:
                    findings.close_finding(conn, gone)
            elif now - before.seen_at >= CLEAR_AFTER:
                # Gone for two checks or half an hour: a problem that flickers is not cleared and said again.
                findings.close_finding(conn, gone)
                result.cleared.append(_headline(before.line))
    return result


def _gateway_findings(
    conn: Connection, gateway: Checked, settings: Settings, now: datetime
) -> tuple[list[Finding], frozenset[str]]:
    """The findings of one gateway, and the kinds that were judged (the others keep what was said)."""
    options, zone = settings.check, settings.timezone
    if gateway.id is None:
        return _never_read(conn, gateway.name, options, now), frozenset({"stale"})
    newest = runs.last_runs(conn, gateway.id)
    last, success, error = newest["last"], newest["success"], newest["error"]
    out: list[Finding] = []
    failing = error is not None and (success is None or error.started_at > success.started_at)
    stale = rules.stale(
        success.finished_at if success is not None and success.finished_at else None,
        last.started_at if last is not None else None,
        now,
        options,
        error.error if error is not None and failing else None,
    )
    judged = {"stale", "token", "firmware", "clock"}
    if stale is not None:
        out.append(stale)
    else:
        judged |= DATA_KINDS
        out += _data_findings(conn, gateway.id, settings, now)
        out += _storms(conn, gateway.id, options, now)
    stored = credentials.load_token(conn, gateway.id)
    if stored is not None and stored.secret is not None:
        why = _not_renewable(stored, gateway)
        token = rules.token(stored.expires_at, why, now, options)
        if token is not None:
            out.append(token)
    change = load_firmware_change(conn, gateway.id)
    if change is not None and now - change.at <= FIRMWARE_NEWS:
        out.append(rules.firmware(change.at, change.previous, change.current, zone))
    drift = rules.clock(gateway.clock_offset_s, options, now)
    if drift is not None:
        out.append(drift)
    return out, frozenset(judged)


def _never_read(conn: Connection, name: str, options: CheckSettings, now: datetime) -> list[Finding]:
    """A configured gateway envoylog has never read: its runs (if any) know it by its name only."""
    unread = runs.newest_unattributed_runs(conn, [name]).get(name)
    last = unread.last if unread is not None else None
    error = unread.error.error if unread is not None and unread.error is not None else None
    stale = rules.stale(None, last.started_at if last is not None else None, now, options, error)
    return [stale] if stale is not None else []


def _data_findings(conn: Connection, gateway_id: int, settings: Settings, now: datetime) -> list[Finding]:
    """Silent and lagging inverters, and a production drop, from the readings of the last days."""
    options, zone = settings.check, settings.timezone
    inverters = inverter_series(conn, gateway_id)
    production = production_series(conn, gateway_id)
    out = rules.silent_inverters(reporting(conn, inverters, now), options, zone)
    silent = {f.subject for f in out}
    today = now.astimezone(zone_of(zone)).date()
    yesterday = today - timedelta(days=1)
    span = max(options.drop_days + 1, options.lagging_days)
    days = local_days(yesterday - timedelta(days=span - 1), yesterday, zone)
    full = day_windows(conn, gateway_id, production, inverters, days, contiguous=True)
    lagging_days = full[-options.lagging_days :]
    since = days[-options.lagging_days].start
    out += [f for f in rules.lagging_inverters(lagging_days, options, since) if f.subject not in silent]
    drop = rules.production_drop(
        full[-1], full[-1 - options.drop_days : -1], options, days[-1].start, f"on {yesterday}"
    )
    if drop is not None:
        out.append(drop)
    # Today so far, against the same hours of the days before: a string that went down this morning.
    midnight = local_midnight(today, zone_of(zone))
    elapsed = now - midnight
    windows = [
        Day(0, today - timedelta(days=k), start, start + elapsed)
        for k in range(options.drop_days + 1)
        for start in [local_midnight(today - timedelta(days=k), zone_of(zone))]
    ]
    so_far = day_windows(conn, gateway_id, production, inverters, windows, contiguous=False)
    if _most_of_a_day(so_far[1:], full[-options.drop_days :]):
        today_drop = rules.production_drop(
            so_far[0], so_far[1:], options, midnight, f"today until {now.astimezone(zone_of(zone)):%H:%M}"
        )
        if today_drop is not None and drop is None:
            out.append(today_drop)
    return out


def _most_of_a_day(so_far: list[DayEnergy], whole: list[DayEnergy]) -> bool:
    """Whether the hours so far usually make half a day's energy: before that, the morning's few Wh (and the
    gateway's counters, which step now and then) make a share too noisy to judge."""
    made = [d.site_wh for d in so_far if d.site_wh is not None]
    days = [d.site_wh for d in whole if d.site_wh is not None]
    return bool(made and days) and statistics.median(made) >= TODAY_FROM_SHARE * statistics.median(days)


def _storms(conn: Connection, gateway_id: int, options: CheckSettings, now: datetime) -> list[Finding]:
    """Sessions opened in the last hour, tokens taken in the last day: more than a healthy collector takes."""
    out = []
    for kind, most, window in (
        ("session", options.sessions_per_hour, timedelta(hours=1)),
        ("token", TOKENS_PER_DAY, timedelta(days=1)),
    ):
        count = findings.count_auth(conn, gateway_id, kind, now - window)
        storm = rules.storm(kind, count, most, "hour" if window.days == 0 else "day", now)
        if storm is not None:
            out.append(storm)
    return out


def _headline(line: str) -> str:
    """What a cleared line repeats of the problem: the line up to its explanation."""
    prefix, _, text = line.partition("): ")
    for mark in (": ", "; "):
        text = text.split(mark, 1)[0]
    return f"{prefix}): {text}"


def _not_renewable(stored: credentials.StoredToken, gateway: Checked) -> str | None:
    """Why the token will not be renewed by itself, or None when collect renews it when due."""
    if stored.cloud_failing_since is not None:
        return f"could not be renewed: {stored.cloud_error or 'the Enphase cloud failed'}"
    login = gateway.settings is not None and gateway.settings.username and gateway.settings.password
    if not login:
        return (
            "cannot be renewed: no Enphase login is configured; store a new one with "
            "`envoylog auth set-token -` (or configure username and password)"
        )
    return None
