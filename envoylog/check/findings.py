"""The rules of `envoylog check`: plain data in, findings out (no queries, no clock of their own)."""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Literal

from envoylog.config import CheckSettings
from envoylog.times import duration_text

Kind = Literal[
    "stale", "inverter_silent", "inverter_lagging", "production_drop", "token", "storm", "firmware", "clock"
]
# Findings that are news once (a firmware change) or that belong to a day gone by (a drop): they end
# silently; every other finding says so when it clears.
SILENT_END: frozenset[str] = frozenset({"firmware", "production_drop"})
# Days whose median production is below this tell nothing about a drop or a lagging inverter (snow, dusk).
MIN_DAY_WH = 100.0


@dataclass(frozen=True)
class Finding:
    """A problem `check` found with one gateway."""

    kind: Kind
    subject: str  # what it is about within the gateway: an inverter's serial, a day, or ""
    since: datetime
    text: str  # the line, without the gateway's name


@dataclass(frozen=True)
class Reporting:
    """One inverter's reports: its newest, and the stretches of its reporting in the last days."""

    serial: str
    newest: datetime
    # Each stretch of reports without a night's gap: when it began, and its last report with power.
    streaks: tuple[tuple[datetime, datetime], ...]


@dataclass(frozen=True)
class DayEnergy:
    """A window of one local day (the whole day, or today so far) and the energy made in it."""

    day: date
    site_wh: float | None  # None where the day is not covered well enough to tell
    inverters_wh: Mapping[str, float]  # the inverters that reported in it


def stale(
    last_success: datetime | None,
    last_run: datetime | None,
    now: datetime,
    settings: CheckSettings,
    last_error: str | None,
) -> Finding | None:
    """No successful read for longer than `stale_minutes`: the logger stopped, or the gateway is gone."""
    limit = timedelta(minutes=settings.stale_minutes)
    if last_success is not None and now - last_success <= limit:
        return None
    since = last_success or last_run or now
    cron = "(is cron running `envoylog collect`?)"
    if last_run is None:
        return Finding("stale", "", since, f"never collected: no collect has run {cron}")
    if now - last_run > limit:
        read = f"nothing collected for {duration_text(now - since)}" if last_success else "never read"
        return Finding("stale", "", since, f"{read}: no collect has run since {_utc(last_run)} {cron}")
    why = f": {last_error}" if last_error else ""
    if last_success is None:
        return Finding("stale", "", since, f"never read successfully; collect runs, the last failed{why}")
    return Finding(
        "stale",
        "",
        since,
        f"no successful read since {_utc(last_success)} ({duration_text(now - since)}); "
        f"collect runs, the last failed{why}",
    )


def silent_inverters(reporting: Sequence[Reporting], settings: CheckSettings, zone: str) -> list[Finding]:
    """Inverters that have not reported while most of the others produced for `inverter_silent_minutes`.

    An other inverter counts when, in one stretch of its reporting, it produced that long after both the
    silent one's last report and the stretch's start: at dawn the first inverters awake have not produced long
    yet, and a night does not end the silence of an inverter that died the day before.
    """
    limit = timedelta(minutes=settings.inverter_silent_minutes)
    found = []
    producing = [r for r in reporting if r.streaks]
    for inverter in reporting:
        others = [r for r in producing if r is not inverter]
        until = []
        for other in others:
            ends = [end for start, end in other.streaks if end - max(start, inverter.newest) > limit]
            if ends:
                until.append(max(ends))
        if not until or len(until) * 2 <= len(others):
            continue  # night, dawn, or most of the array quiet as well: nothing tells this one apart
        count = len(until)
        found.append(
            Finding(
                "inverter_silent",
                inverter.serial,
                inverter.newest,
                f"inverter {inverter.serial} has not reported since {_local(inverter.newest, zone)} "
                f"while {count} other{'s' if count != 1 else ''} produced until {_local(max(until), zone)}",
            )
        )
    return found


def lagging_inverters(days: Sequence[DayEnergy], settings: CheckSettings, since: datetime) -> list[Finding]:
    """Inverters below `lagging_share` of the array's median energy on each of the days given."""
    if len(days) < settings.lagging_days:
        return []
    shares: dict[str, list[float]] = {}
    medians = []
    for day in days:
        made = [wh for wh in day.inverters_wh.values()]
        if len(made) < 3:
            return []  # too few inverters for a median to mean anything
        median = statistics.median(made)
        if median < MIN_DAY_WH / 10:
            return []  # a dark day: a few Wh apart is noise
        medians.append(median)
        for serial, wh in day.inverters_wh.items():
            shares.setdefault(serial, []).append(wh / median)
    found = []
    for serial, values in sorted(shares.items()):
        if len(values) == len(days) and max(values) < settings.lagging_share:
            last = days[-1]
            found.append(
                Finding(
                    "inverter_lagging",
                    serial,
                    since,
                    f"inverter {serial} made {_percent(max(values))} or less of the array's median on "
                    f"each of the last {len(days)} days ({days[0].day} to {last.day}); on {last.day} "
                    f"{_kwh(last.inverters_wh[serial])} against a median of {_kwh(medians[-1])}",
                )
            )
    return found


def production_drop(
    target: DayEnergy, comparable: Sequence[DayEnergy], settings: CheckSettings, since: datetime, what: str
) -> Finding | None:
    """The site made far less than comparable days, after allowing for the weather its inverters saw.

    The weather is what the inverters that reported made against their own median on the comparable days: a
    cloudy day lowers them all, a string that went down lowers the site but not the others' share.
    """
    if target.site_wh is None:
        return None
    usable = [d for d in comparable if d.site_wh is not None]
    if len(usable) < max(3, len(comparable) // 2):
        return None
    typical = statistics.median(d.site_wh for d in usable if d.site_wh is not None)
    if typical < MIN_DAY_WH:
        return None
    ratios = []
    for serial, wh in target.inverters_wh.items():
        own = [d.inverters_wh[serial] for d in usable if serial in d.inverters_wh]
        if len(own) >= len(usable) // 2 and statistics.median(own) > 0:
            ratios.append(wh / statistics.median(own))
    if not ratios:
        return None  # no inverter to tell the weather by (and a silent one is said on its own)
    weather = min(statistics.median(ratios), 1.5)
    expected = typical * weather
    if expected < MIN_DAY_WH or target.site_wh >= settings.drop_share * expected:
        return None
    return Finding(
        "production_drop",
        target.day.isoformat(),
        since,
        f"production {what} was {_kwh(target.site_wh)}, {_percent(target.site_wh / expected)} of what "
        f"comparable days give: the {len(usable)} days before made {_kwh(typical)} on a median day, and "
        f"its inverters saw {_percent(weather)} of their usual sun, so {_kwh(expected)} was due",
    )


def token(
    expires_at: datetime | None, renewable: str | None, now: datetime, settings: CheckSettings
) -> Finding | None:
    """A token that expires within `token_days` and could not be renewed (`renewable` says why)."""
    if expires_at is None or renewable is None or expires_at - now > timedelta(days=settings.token_days):
        return None
    left = expires_at - now
    when = (
        f"expires in {_days(left)} ({expires_at:%Y-%m-%d})"
        if left.total_seconds() > 0
        else (f"expired {_days(-left)} ago ({expires_at:%Y-%m-%d})")
    )
    return Finding("token", "", now, f"its token {when} and {renewable}")


def storm(kind: str, count: int, most: int, window: str, now: datetime) -> Finding | None:
    """More sessions (or tokens) taken in the window than a healthy collector takes."""
    if count <= most:
        return None
    what = {"session": "gateway sessions opened", "token": "tokens taken from the Enphase cloud"}[kind]
    return Finding(
        "storm",
        kind,
        now,
        f"{count} {what} in the last {window} (more than {most}): each costs the gateway a token check; "
        "is another program using the same token, or the gateway dropping sessions?",
    )


def firmware(at: datetime, previous: str, current: str, zone: str) -> Finding:
    """A firmware update the gateway made."""
    return Finding(
        "firmware",
        current,
        at,
        f"firmware changed from {previous} to {current} at {_local(at, zone)}; envoylog discovered its "
        "endpoints again (`envoylog status` shows what it found)",
    )


def clock(offset_s: float | None, settings: CheckSettings, now: datetime) -> Finding | None:
    """The gateway's clock and this machine's disagree by more than `clock_minutes`."""
    if offset_s is None or abs(offset_s) <= settings.clock_minutes * 60:
        return None
    side = "ahead of" if offset_s > 0 else "behind"
    return Finding(
        "clock",
        "",
        now,
        f"its clock is {duration_text(timedelta(seconds=abs(offset_s)))} {side} this machine's; readings are "
        "timed by the gateway's clock: check the time (NTP) on both",
    )


def _utc(at: datetime | None) -> str:
    return f"{at:%Y-%m-%d %H:%M} UTC" if at else "never"


def _local(at: datetime, zone: str) -> str:
    from zoneinfo import ZoneInfo

    return f"{at.astimezone(ZoneInfo(zone)):%Y-%m-%d %H:%M}"


def _kwh(wh: float) -> str:
    return f"{wh / 1000:.2f} kWh"


def _percent(share: float) -> str:
    return f"{share * 100:.0f}%"


def _days(delta: timedelta) -> str:
    days = delta.total_seconds() / 86_400
    return f"{days:.1f} days" if days < 10 else f"{days:.0f} days"
