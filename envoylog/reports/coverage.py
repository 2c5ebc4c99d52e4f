"""Coverage: the share of a day the logger vouches for.

A successful run vouches for the 10 minutes after it. Coverage is a count of five-minute buckets holding a
run, made exact (a sweep over the runs) only for the days with an empty bucket.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    Integer,
    bindparam,
    func,
    literal_column,
    or_,
    select,
    type_coerce,
)
from sqlalchemy.engine import Connection
from sqlalchemy.sql.elements import ColumnElement

from envoylog.db.models import RUNS
from envoylog.db.runs import SUCCESS
from envoylog.db.types import UtcDateTime
from envoylog.reports.common import Day
from envoylog.reports.sql import epoch_seconds, rows_param

COVERED_AFTER_RUN_S = 600  # a successful run vouches for the 10 minutes after it


BUCKET_S = COVERED_AFTER_RUN_S // 2  # a run in every bucket of half that length leaves no hole


MAX_RUN_S = 3600  # runs end within a minute (the collector's deadline); this bounds the index range scanned


UNCOVERED_SLOTS = 4  # the silences of the logger a day's row-by-row query takes without a larger variant


GAP_NOTE_S = 15 * 60  # shorter silences of the logger show in coverage only
GAP_NOTES = 3


@dataclass
class Coverage:
    """How much of a day lies within 10 minutes after a successful run, and the logger's silences in it."""

    day: Day
    share: float = 0.0
    covered: list[tuple[float, float]] = field(default_factory=list)  # epoch seconds, within the day
    silences: list[tuple[float, float]] = field(default_factory=list)  # between two runs, within the day

    def uncovered(self) -> list[tuple[float, float]]:
        """The stretches of the day no run vouches for."""
        stretches, start = [], self.day.start_s
        for a, b in self.covered:
            if a > start:
                stretches.append((start, a))
            start = max(start, b)
        if start < self.day.end_s:
            stretches.append((start, self.day.end_s))
        return stretches

    def covered_between(self, start: float, end: float) -> float:
        """Seconds of [start, end] that runs vouch for."""
        return sum(max(0.0, min(b, end) - max(a, start)) for a, b in self.covered)

    def gap_notes(self) -> list[str]:
        """Notes on the longest silences of the logger."""
        long = [(a, b) for a, b in self.silences if b - a > GAP_NOTE_S]
        notes = [f"gap of {round((b - a) / 60)} min" for a, b in sorted(long, key=lambda g: g[0] - g[1])]
        if len(notes) > GAP_NOTES:
            notes = [*notes[:GAP_NOTES], f"{len(notes) - GAP_NOTES} more gaps"]
        return notes


def day_coverage(conn: Connection, gateway_id: int, days: list[Day]) -> list[Coverage]:
    """Coverage per day: a count of 5-minute buckets holding a run, and the exact sum where one is empty."""
    runs = RUNS
    bucket_s = timedelta(seconds=BUCKET_S)
    bounds = rows_param(
        conn,
        "d",
        {"i": [d.index for d in days]},
        {
            "origin": [d.start - bucket_s for d in days],
            "until": [d.start - bucket_s + bucket_s * _buckets(d) for d in days],
            "started_from": [d.start - bucket_s - timedelta(seconds=MAX_RUN_S) for d in days],
        },
    )
    # Buckets aligned on the epoch, which day boundaries are too (UTC offsets are whole quarter hours); a
    # bucket that depended on the day would be recomputed for every run.
    if conn.dialect.name == "sqlite":
        bucket: ColumnElement[Any] = type_coerce(runs.c.finished_at, Integer) // BUCKET_S
    else:
        bucket = func.date_bin(
            literal_column(f"interval '{BUCKET_S} seconds'"),
            runs.c.finished_at,
            literal_column("timestamptz '2000-01-01 00:00:00+00'"),
        )
    filled = (
        select(func.count(bucket.distinct()))
        .where(
            runs.c.gateway_id == gateway_id,
            runs.c.started_at >= bounds.c.started_from,
            runs.c.started_at < bounds.c.until,
            runs.c.finished_at >= bounds.c.origin,
            runs.c.finished_at < bounds.c.until,
            runs.c.outcome.in_(SUCCESS),
        )
        .scalar_subquery()
    )
    result = [Coverage(d) for d in days]
    holes = []
    for i, count in conn.execute(select(bounds.c.i, filled)):
        if count == _buckets(days[i]) and days[i].start_s % BUCKET_S == 0:
            result[i].share = 1.0
            result[i].covered = [(days[i].start_s, days[i].end_s)]
        else:
            holes.append(days[i])
    if holes:
        _exact_coverage(conn, gateway_id, holes, result)
    return result


def _buckets(day: Day) -> int:
    return math.ceil(day.seconds / BUCKET_S)


def _exact_coverage(conn: Connection, gateway_id: int, days: list[Day], result: list[Coverage]) -> None:
    """The covered share of days with an empty bucket, from the chains of runs less than 10 minutes apart."""
    runs = RUNS
    spans: list[tuple[datetime, datetime]] = []
    for day in days:
        if spans and spans[-1][1] == day.start:
            spans[-1] = (spans[-1][0], day.end)
        else:
            spans.append((day.start, day.end))
    f = epoch_seconds(conn, runs.c.finished_at)
    order = (runs.c.finished_at, runs.c.id)
    x = (
        select(
            f.label("f"),
            func.lag(f).over(order_by=order).label("prev"),
            func.lead(f).over(order_by=order).label("next"),
        )
        .where(
            runs.c.gateway_id == gateway_id,
            runs.c.started_at >= bindparam("started_from", type_=UtcDateTime),
            runs.c.started_at < bindparam("until", type_=UtcDateTime),
            runs.c.finished_at >= bindparam("finished_from", type_=UtcDateTime),
            runs.c.finished_at < bindparam("until", type_=UtcDateTime),
            runs.c.outcome.in_(SUCCESS),
        )
        .subquery("x")
    )
    edges = (
        select(x.c.f, x.c.prev, x.c.next)
        .where(
            or_(
                x.c.prev.is_(None),
                x.c.f - x.c.prev > COVERED_AFTER_RUN_S,
                x.c.next.is_(None),
                x.c.next - x.c.f > COVERED_AFTER_RUN_S,
            )
        )
        .order_by(x.c.f)
    )
    # Each chain of runs covers from its first run to 10 minutes after its last. One query per stretch of
    # days, each an index range: ORed together, they would be a scan of the whole run log.
    chains: list[tuple[float, float]] = []
    after = timedelta(seconds=COVERED_AFTER_RUN_S)
    for start, end in spans:
        params = {
            "started_from": start - after - timedelta(seconds=MAX_RUN_S),
            "finished_from": start - after,
            "until": end,
        }
        begin: float | None = None
        for f_at, prev, nxt in conn.execute(edges, params):
            if prev is None or f_at - prev > COVERED_AFTER_RUN_S or begin is None:
                begin = float(f_at)
            if nxt is None or nxt - f_at > COVERED_AFTER_RUN_S:
                chains.append((begin, float(f_at)))
                begin = None
    reach = [(a, b + COVERED_AFTER_RUN_S) for a, b in chains]
    for day in days:
        s, e = day.start_s, day.end_s
        coverage = result[day.index]
        coverage.covered = [(max(a, s), min(b, e)) for a, b in reach if a < e and b > s]
        coverage.share = min(sum(b - a for a, b in coverage.covered) / day.seconds, 1.0)
        # The logger's silences between two runs, clipped to the day. Before the first run and after the last
        # one known nothing is said: logging had not begun, has stopped, or the day is not over yet.
        for (_, last), (first, _) in itertools.pairwise(chains):
            if first > s and last < e and first - last > COVERED_AFTER_RUN_S:
                coverage.silences.append((max(last, s), min(first, e)))
