"""Time, the one place for it: local day bounds across DST, ISO 8601 "...Z", and the words for a day."""

from __future__ import annotations

import calendar
import re
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from envoylog.errors import ConfigError

DAY_WORDS = {"today": 0, "yesterday": 1}
_MONTH = re.compile(r"^(\d{4})-(\d{2})$")


def iso_z(moment: datetime | None) -> str | None:
    """An aware time as ISO 8601 UTC to the second with a Z, as every JSON document and CSV file has it."""
    if moment is None:
        return None
    return moment.astimezone(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def duration_text(delta: timedelta) -> str:
    """A span of time as people say it: 45 s, 12 min, 3.5 h, 12.0 days."""
    seconds = delta.total_seconds()
    if seconds < 120:
        return f"{max(seconds, 0):.0f} s"
    if seconds < 120 * 60:
        return f"{seconds / 60:.0f} min"
    if seconds < 48 * 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


def zone_of(name: str) -> ZoneInfo:
    """The zone called `name`; a ConfigError says how to name one."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"unknown time zone {name!r}: use an IANA name such as Europe/Amsterdam") from None


def local_midnight(day: date, zone: ZoneInfo) -> datetime:
    """Where the local `day` starts, in UTC.

    Where a zone springs forward at midnight, midnight does not exist; zoneinfo then gives the first instant
    of the day.
    """
    return datetime.combine(day, time(), tzinfo=zone).astimezone(UTC)


def local_day_bounds(first: date, last: date, zone: ZoneInfo) -> tuple[datetime, datetime]:
    """The UTC start of local day `first` and the end of local day `last` (23, 24 or 25 hours a day)."""
    return local_midnight(first, zone), local_midnight(last + timedelta(days=1), zone)


def today_in(zone: ZoneInfo, now: datetime | None = None) -> date:
    """The local date in `zone` at `now` (default: the machine's clock)."""
    return (now or datetime.now(UTC)).astimezone(zone).date()


def parse_day(value: str, option: str, today: date) -> date:
    """A local day given as YYYY-MM-DD, `today` or `yesterday`; a ConfigError names the option."""
    word = value.strip().lower()
    if word in DAY_WORDS:
        return today - timedelta(days=DAY_WORDS[word])
    try:
        return date.fromisoformat(word)
    except ValueError:
        raise ConfigError(
            f"bad {option} {value!r}: expected a date like 2026-06-21, today or yesterday"
        ) from None


def parse_period(
    *,
    today: date,
    day: str | None = None,
    start: str | None = None,
    end: str | None = None,
    month: str | None = None,
) -> tuple[date, date]:
    """The first and last local day asked for with --day, --from/--to or --month; yesterday by default."""
    given = [
        name for name, value in (("--day", day), ("--from/--to", start or end), ("--month", month)) if value
    ]
    if len(given) > 1:
        raise ConfigError(f"give one of --day, --from/--to or --month, not {' and '.join(given)}")
    if day:
        single = parse_day(day, "--day", today)
        return single, single
    if start or end:
        if not (start and end):
            raise ConfigError(
                "--from and --to go together: give both, e.g. --from 2026-06-01 --to 2026-06-30"
            )
        first, last = parse_day(start, "--from", today), parse_day(end, "--to", today)
        if last < first:
            raise ConfigError(f"--to {last} is before --from {first}")
        return first, last
    if month:
        return _month(month, today)
    yesterday = today - timedelta(days=1)
    return yesterday, yesterday


def _month(value: str, today: date) -> tuple[date, date]:
    match = _MONTH.match(value.strip())
    if not match or not 1 <= int(match.group(2)) <= 12:
        raise ConfigError(f"bad --month {value!r}: expected YYYY-MM, e.g. 2026-06")
    year, number = int(match.group(1)), int(match.group(2))
    first = date(year, number, 1)
    last = date(year, number, calendar.monthrange(year, number)[1])
    # The month under way ends today: the days still to come have nothing to report yet.
    return first, min(last, today) if first <= today else last
