"""Time, the one place for it: local day bounds across DST, ISO 8601 "...Z", and the words for a day."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from envoylog.errors import ConfigError

DAY_WORDS = {"today": 0, "yesterday": 1}


def iso_z(moment: datetime | None) -> str | None:
    """An aware time as ISO 8601 UTC to the second with a Z, as every JSON document and CSV file has it."""
    if moment is None:
        return None
    return moment.astimezone(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


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
