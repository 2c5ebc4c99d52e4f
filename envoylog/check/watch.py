"""One `envoylog check`: the rules over each gateway's history, and the memory of what was said."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Engine
from sqlalchemy.engine import Connection
from sqlalchemy.exc import SQLAlchemyError

from envoylog.check import findings as rules
from envoylog.check.findings import SILENT_END, Finding
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
# The kinds that need readings: not judged while the gateway is not being read (the stale line says why).
DATA_KINDS = frozenset({"inverter_silent", "inverter_lagging", "production_drop", "storm"})


@dataclass(frozen=True)
class Problem:
    """A finding of one gateway, and whether this check says it (new, or due again)."""

    gateway: str  # the config's name
    serial: str
    finding: Finding
    said: bool

    @property
    def line(self) -> str:
        """The line for the user."""
        return f"{self.gateway} ({self.serial}): {self.finding.text}"


@dataclass(frozen=True)
class CheckResult:
    """What a check found: every open problem, and the lines of those that cleared since the last."""

    problems: list[Problem]
    cleared: list[str]

    @property
    def said(self) -> list[str]:
        """The lines a cron check prints: problems new or due again, then those that cleared."""
        return [p.line for p in self.problems if p.said] + [f"cleared: {line}" for line in self.cleared]


def check_all(engine: Engine, settings: Settings, now: datetime, *, remember: bool = True) -> CheckResult:
    """Check every gateway; with `remember`, say each problem once per `repeat_hours` and once when it clears.

    Without `remember` nothing is written: every open problem is returned as said.
    """
    try:
        with engine.connect() as conn:
            checked = gateways_to_check(conn, settings)
            found = {gateway.id: _gateway_findings(conn, gateway, settings, now) for gateway in checked}
        if not remember:
            problems = [Problem(g.name, g.serial, f, said=True) for g in checked for f in found[g.id][0]]
            return CheckResult(problems, [])
        with engine.begin() as conn:
            return _remember(conn, checked, found, settings, now)
    except SQLAlchemyError as exc:
        raise DatabaseError(f"cannot read the database: {describe_db_error(exc)}") from None


def _remember(
    conn: Connection,
    checked: list[Checked],
    found: dict[int, tuple[list[Finding], frozenset[str]]],
    settings: Settings,
    now: datetime,
) -> CheckResult:
    """Compare with what was said before: say what is new or due again, and what has cleared."""
    said_before = findings.load_findings(conn, [g.id for g in checked])
    repeat = timedelta(hours=settings.check.repeat_hours)
    problems: list[Problem] = []
    cleared: list[str] = []
    for gateway in checked:
        current, judged = found[gateway.id]
        keys: set[tuple[int, str, str]] = set()
        for finding in current:
            key: tuple[int, str, str] = (gateway.id, finding.kind, finding.subject)
            keys.add(key)
            before = said_before.get(key)
            line = Problem(gateway.name, gateway.serial, finding, False).line
            if before is None:
                findings.open_finding(conn, key, finding.since, now, line, said=True)
                said = True
            else:
                # News told once stays told; a lasting problem is said again once a day (repeat_hours).
                said = finding.kind not in SILENT_END and (
                    before.said_at is None or now - before.said_at >= repeat
                )
                findings.update_finding(conn, key, now, line, said=said)
                if finding.kind in NEWS:
                    continue  # told once, and not a problem that stays open
            problems.append(Problem(gateway.name, gateway.serial, finding, said))
        for key, before in said_before.items():
            if key[0] != gateway.id or key in keys or before.kind not in judged:
                continue
            findings.close_finding(conn, key)
            if before.kind not in SILENT_END:
                cleared.append(_headline(before.line))
    return CheckResult(problems, cleared)


def _gateway_findings(
    conn: Connection, gateway: Checked, settings: Settings, now: datetime
) -> tuple[list[Finding], frozenset[str]]:
    """The findings of one gateway, and the kinds that were judged (the others keep what was said)."""
    options, zone = settings.check, settings.timezone
    newest = runs.last_runs(conn, gateway.id)
    last, success, error = newest["last"], newest["success"], newest["error"]
    out: list[Finding] = []
    stale = rules.stale(
        success.finished_at if success is not None and success.finished_at else None,
        last.started_at if last is not None else None,
        now,
        options,
        error.error
        if error is not None and (success is None or error.started_at > success.started_at)
        else None,
    )
    judged = {"stale", "token", "firmware", "clock"}
    if stale is not None:
        out.append(stale)
    else:
        judged |= DATA_KINDS
        out += _data_findings(conn, gateway, settings, now)
        out += _storms(conn, gateway, options, now)
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


def _data_findings(conn: Connection, gateway: Checked, settings: Settings, now: datetime) -> list[Finding]:
    """Silent and lagging inverters, and a production drop, from the readings of the last days."""
    options, zone = settings.check, settings.timezone
    inverters = inverter_series(conn, gateway.id)
    production = production_series(conn, gateway.id)
    out = rules.silent_inverters(reporting(conn, inverters, now), options, zone)
    silent = {f.subject for f in out}
    today = now.astimezone(zone_of(zone)).date()
    yesterday = today - timedelta(days=1)
    span = max(options.drop_days + 1, options.lagging_days)
    days = local_days(yesterday - timedelta(days=span - 1), yesterday, zone)
    full = day_windows(conn, gateway.id, production, inverters, days, contiguous=True)
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
    so_far = day_windows(conn, gateway.id, production, inverters, windows, contiguous=False)
    today_drop = rules.production_drop(
        so_far[0], so_far[1:], options, midnight, f"today until {now.astimezone(zone_of(zone)):%H:%M}"
    )
    if today_drop is not None and drop is None:
        out.append(today_drop)
    return out


def _storms(conn: Connection, gateway: Checked, options: CheckSettings, now: datetime) -> list[Finding]:
    """Sessions opened in the last hour, tokens taken in the last day: more than a healthy collector takes."""
    out = []
    for kind, most, window in (
        ("session", options.sessions_per_hour, timedelta(hours=1)),
        ("token", TOKENS_PER_DAY, timedelta(days=1)),
    ):
        count = findings.count_auth(conn, gateway.id, kind, now - window)
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
