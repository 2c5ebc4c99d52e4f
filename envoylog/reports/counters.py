"""Energy from lifetime counters, the SQL doing the work.

A report reads a handful of rows per series and day, whatever the polling rate: lifetime counters are read off
at each local midnight with two index lookups (the last row at or before it, the first at or after it) and
interpolated linearly between them. Only a day whose counters do not add up (a drop, a jump, a change of
source, a missing counter) is examined row by row, with a window over that day's rows alone; there a power
estimate replaces what the counter cannot tell. Peak power is a top-1 lookup per day over the (series, time)
key, and coverage a count of five-minute buckets holding a run, made exact for the days with an empty one.

Rows are stored only when a reading changes, so between two rows a reading held its value while the logger
was running; across a silence of the logger (no successful run) a power holds for 15 minutes at most.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import (
    Table,
    and_,
    func,
    select,
    text,
    true,
)
from sqlalchemy.engine import Connection
from sqlalchemy.sql.elements import TextClause

from envoylog.db.views import INVERTER_READINGS, METER_TOTALS
from envoylog.reports.common import Day
from envoylog.reports.coverage import UNCOVERED_SLOTS, Coverage
from envoylog.reports.sql import epoch_seconds, rows_param

# A 32-bit register of joules wraps after 2^32 J; the gateway's Wh counters are derived from such registers.
WRAP_WH = 2**32 / 3600


WRAP_TOLERANCE = 0.03  # a drop within 3 % of a wrap is a wrap


# A counter may step back by a little (rounding, CT noise) without having been reset.
JITTER_WH = 10.0


# More than any site an Envoy can run (600 micro-inverters), or any one micro-inverter: a counter that moves
# faster than this is a glitch, not energy.
MAX_SITE_WATTS = 500_000.0


MAX_INVERTER_WATTS = 2_000.0


# Power holds until the next stored row, but not across a gap longer than a few polls.
MAX_HOLD_S = 900


@dataclass(frozen=True)
class Readings:
    """A readings table as the counter code sees it."""

    table: Table
    time: str
    columns: tuple[str, ...]
    has_source: bool


METER_ROWS = Readings(
    METER_TOTALS,
    "read_at",
    ("watts", "wh_lifetime", "wh_imported_lifetime", "wh_exported_lifetime"),
    True,
)


INVERTER_ROWS = Readings(INVERTER_READINGS, "reported_at", ("watts", "joules_lifetime"), False)


@dataclass(frozen=True)
class Measure:
    """An energy taken from a counter column, or from the watts where the counter is missing or unusable."""

    name: str
    counter: str
    sign: float = 1.0  # which part of the watts counts: +1 the positive, -1 the negative (export)
    wh_per_unit: float = 1.0
    max_watts: float = MAX_SITE_WATTS
    # Inverter watts describe the report interval that ends at the row; meter watts hold after the row.
    backward: bool = False

    @property
    def wrap(self) -> float:
        """A 32-bit wrap in the counter's unit."""
        return WRAP_WH / self.wh_per_unit

    @property
    def jitter(self) -> float:
        """The step back a counter may take without being reset, in its unit."""
        return JITTER_WH / self.wh_per_unit

    def cap(self, seconds: float) -> float:
        """The most the counter can plausibly advance in `seconds`, in its unit."""
        return self.max_watts * seconds / 3600 / self.wh_per_unit + self.jitter


_PRODUCTION = Measure("production", "wh_lifetime")


_CONSUMPTION = Measure("consumption", "wh_lifetime")


_IMPORT = Measure("import", "wh_imported_lifetime")


_EXPORT = Measure("export", "wh_exported_lifetime", sign=-1.0)


INVERTER_MEASURE = Measure(
    "inverter", "joules_lifetime", wh_per_unit=1 / 3600, max_watts=MAX_INVERTER_WATTS, backward=True
)


SITE_MEASURES = {
    "production": (_PRODUCTION,),
    "consumption": (_CONSUMPTION,),
    "net_consumption": (_IMPORT, _EXPORT),
}


class Row(NamedTuple):
    """A stored row next to a day boundary."""

    t: float
    source: str | None
    values: Mapping[str, float | None]


@dataclass
class Energy:
    """A day's energy of one measure, and what it rests on."""

    wh: float = math.nan
    wraps: int = 0
    resets: int = 0
    jumps: int = 0
    from_power: int = 0  # intervals estimated from watts: no usable counter
    from_counter: int = 0
    rows_in_day: bool = False
    spans_gap: bool = False  # no row in the day, the counter interpolated across it


def day_energies(
    conn: Connection,
    readings: Readings,
    measures: Mapping[int, Sequence[Measure]],
    days: Sequence[Day],
    coverage: Sequence[Coverage],
) -> dict[tuple[int, str, int], Energy]:
    """Energy per (series, measure, day); where the logger ran, no new row means an unchanged reading."""
    edges = _bracketing_rows(conn, readings, list(measures), [d.start for d in days] + [days[-1].end])
    result: dict[tuple[int, str, int], Energy] = {}
    detail: list[tuple[int, Day, float | None, float | None, Coverage, bool]] = []
    tails: list[tuple[int, Measure, Day, Row]] = []
    for sid, series_measures in measures.items():
        for day in days:
            prev_start, next_start = edges.get((sid, day.index), (None, None))
            prev_end, next_end = edges.get((sid, day.index + 1), (None, None))
            rows_in_day = next_start is not None and next_start.t < day.end_s
            watched = coverage[day.index].share > 0
            needs_detail = False
            for measure in series_measures:
                energy = Energy(rows_in_day=rows_in_day)
                result[(sid, measure.name, day.index)] = energy
                if prev_end is None or (
                    not rows_in_day and (prev_start is None or (next_end is None and not watched))
                ):
                    continue  # before the series began, or after its last row with nobody watching: unknown
                if next_end is None and prev_end.values[measure.counter] is None:
                    tails.append((sid, measure, day, prev_end))  # the last reading's power holds on
                if not rows_in_day and next_end is None:
                    energy.wh = 0.0  # nothing changed while the logger watched; a held power is added below
                    continue
                begin = _value_at(day.start_s, prev_start, next_start, measure)
                finish = _value_at(day.end_s, prev_end, next_end, measure)
                sources = {r.source for r in (prev_start, next_start, prev_end, next_end) if r is not None}
                delta = finish - begin if begin is not None and finish is not None else None
                if (
                    delta is None
                    or len(sources) > 1
                    or not -measure.jitter <= delta <= measure.cap(day.seconds)
                ):
                    needs_detail = True
                    continue
                energy.wh = max(delta, 0.0) * measure.wh_per_unit
                energy.from_counter = 1
                energy.spans_gap = not rows_in_day and next_end is not None
            if needs_detail:
                lo = prev_start.t if prev_start is not None else None
                hi = next_end.t if next_end is not None else None
                edge_rows = [r for r in (prev_start, next_start, prev_end, next_end) if r is not None]
                counters = any(r.values[m.counter] is not None for r in edge_rows for m in series_measures)
                detail.append((sid, day, lo, hi, coverage[day.index], counters))
    for (sid, day_index), found in _detail(conn, readings, measures, detail).items():
        for name, energy in found.items():
            energy.rows_in_day = result[(sid, name, day_index)].rows_in_day
            result[(sid, name, day_index)] = energy
    for sid, measure, day, last in tails:
        energy = result[(sid, measure.name, day.index)]
        watts = max(measure.sign * (last.values["watts"] or 0.0), 0.0)
        held = coverage[day.index].covered_between(max(last.t, day.start_s), day.end_s)
        energy.wh = (0.0 if math.isnan(energy.wh) else energy.wh) + watts * held / 3600
        energy.from_power += 1
    return result


def _value_at(at: float, before: Row | None, after: Row | None, measure: Measure) -> float | None:
    """The counter interpolated at `at`; None where it cannot be read off the rows around it."""
    if before is not None and after is not None:
        first, second = before.values[measure.counter], after.values[measure.counter]
        if before.t == after.t or first is None or second is None:
            return first if before.t == after.t else None
        if before.source != after.source or second < first - measure.jitter:
            return None
        return first + (second - first) * (at - before.t) / (after.t - before.t)
    # The series begins or ends within the day: counting starts (or stops) at its first (or last) row.
    row = before or after
    return None if row is None else row.values[measure.counter]


def _bracketing_rows(
    conn: Connection, readings: Readings, series_ids: list[int], boundaries: list[datetime]
) -> dict[tuple[int, int], tuple[Row | None, Row | None]]:
    """For each series and boundary: the last row at or before it and the first at or after it."""
    if not series_ids:
        return {}
    table, at = readings.table, readings.table.c[readings.time]
    bounds = rows_param(conn, "b", {"i": list(range(len(boundaries)))}, {"at": boundaries})
    series = rows_param(conn, "s", {"sid": series_ids}, {})
    names = [*readings.columns, *(["source"] if readings.has_source else [])]
    pairs = bounds.join(series, true())
    # Each side is one descent of the (series_id, time) key. PostgreSQL gets it from LATERAL ... LIMIT 1
    # (its planner would hash-join a whole table instead); SQLite, which has no LATERAL, from max()/min().
    side_columns: list[Any] = []
    if conn.dialect.name == "postgresql":
        source: Any = pairs
        for side, before in (("p", True), ("n", False)):
            nearest = (
                select(epoch_seconds(conn, at).label("t"), *[table.c[c] for c in names])
                .where(table.c.series_id == series.c.sid, at <= bounds.c.at if before else at >= bounds.c.at)
                .order_by(at.desc() if before else at)
                .limit(1)
                .lateral(side)
            )
            source = source.outerjoin(nearest, true())
            side_columns += [
                nearest.c.t.label(f"{side}_t"),
                *[nearest.c[c].label(f"{side}_{c}") for c in names],
            ]
        key_columns: list[Any] = [bounds.c.i, series.c.sid]
    else:
        inner = table.alias("x")
        inner_at = inner.c[readings.time]
        keys = (
            select(
                bounds.c.i,
                series.c.sid,
                select(func.max(inner_at))
                .where(inner.c.series_id == series.c.sid, inner_at <= bounds.c.at)
                .scalar_subquery()
                .label("before_at"),
                select(func.min(inner_at))
                .where(inner.c.series_id == series.c.sid, inner_at >= bounds.c.at)
                .scalar_subquery()
                .label("after_at"),
            )
            .select_from(pairs)
            .subquery("k")
        )
        source = keys
        for side, key in (("p", keys.c.before_at), ("n", keys.c.after_at)):
            rows = table.alias(side)
            source = source.outerjoin(
                rows, and_(rows.c.series_id == keys.c.sid, rows.c[readings.time] == key)
            )
            side_columns += [
                epoch_seconds(conn, rows.c[readings.time]).label(f"{side}_t"),
                *[rows.c[c].label(f"{side}_{c}") for c in names],
            ]
        key_columns = [keys.c.i, keys.c.sid]
    query = select(*key_columns, *side_columns).select_from(source)
    width, count = 1 + len(names), len(readings.columns)
    has_source, columns = readings.has_source, readings.columns

    def read_side(row: Sequence[Any], offset: int) -> Row | None:
        if row[offset] is None:
            return None
        found_values = dict(zip(columns, row[offset + 1 : offset + 1 + count], strict=True))
        return Row(float(row[offset]), row[offset + width - 1] if has_source else None, found_values)

    return {(row[1], row[0]): (read_side(row, 2), read_side(row, 2 + width)) for row in conn.execute(query)}


def _detail(
    conn: Connection,
    readings: Readings,
    measures: Mapping[int, Sequence[Measure]],
    wanted: list[tuple[int, Day, float | None, float | None, Coverage, bool]],
) -> dict[tuple[int, int], dict[str, Energy]]:
    """Row-by-row energy of the (series, day) pairs whose counters do not add up at midnight."""
    result: dict[tuple[int, int], dict[str, Energy]] = {}
    for sid, day, lo, hi, coverage, counters in wanted:
        uncovered = coverage.uncovered()
        slots = max(UNCOVERED_SLOTS, 1 << (len(uncovered) - 1).bit_length())
        query = _detail_query(conn.dialect.name, readings, tuple(measures[sid]), slots, counters)
        params: dict[str, Any] = {
            "sid": sid,
            "s": day.start_s,
            "e": day.end_s,
            "lo": int(lo if lo is not None else day.start_s),
            "hi": int(hi if hi is not None else day.end_s),
        }
        # Unused slots hold an empty stretch at the epoch, which no interval overlaps.
        padded = uncovered + [(0.0, 0.0)] * (slots - len(uncovered))
        params.update({f"a{n}": a for n, (a, _) in enumerate(padded)})
        params.update({f"b{n}": b for n, (_, b) in enumerate(padded)})
        row = conn.execute(query, params).one()
        result[(sid, day.index)] = {
            measure.name: Energy(
                wh=max(float(row[6 * k] or 0.0), 0.0),
                wraps=int(row[6 * k + 1] or 0),
                resets=int(row[6 * k + 2] or 0),
                jumps=int(row[6 * k + 3] or 0),
                from_power=int(row[6 * k + 4] or 0),
                from_counter=int(row[6 * k + 5] or 0),
            )
            for k, measure in enumerate(measures[sid])
        }
    return result


@functools.lru_cache(maxsize=64)
def _detail_query(
    dialect: str, readings: Readings, measures: tuple[Measure, ...], slots: int, counters: bool
) -> TextClause:
    """Per measure, a day's energy from the intervals between stored rows, and how each interval counted."""
    # The columns, six per measure: the energy (Wh) clipped to the day, and how many intervals were a wrap,
    # a reset, a jump, from power (no usable counter), from the counter. Without `counters` the query is
    # the lean one for a series that has none. SQL text, because a statement built from expressions for
    # every day costs SQLAlchemy milliseconds to construct and key for its cache, more than the database
    # takes to run it.
    least, greatest = ("min", "max") if dialect == "sqlite" else ("LEAST", "GREATEST")
    time_name, table = readings.time, readings.table.name
    if dialect == "sqlite":
        epoch, lo, hi = f"CAST({time_name} AS REAL)", ":lo", ":hi"
        fence = "LIMIT -1"  # a subquery with a LIMIT is not merged into an aggregate over it
    else:
        # date_part gives a double; EXTRACT a numeric, several times slower to compute with.
        epoch, lo, hi = f"date_part('epoch', {time_name})", "to_timestamp(:lo)", "to_timestamp(:hi)"
        fence = "OFFSET 0"

    def within_day(a: str, b: str) -> str:
        return f"{greatest}(0.0, {least}({b}, :e) - {greatest}({a}, :s))"

    # x: each stored row with the one before it.
    rows = [f"{epoch} AS t", f"LAG({epoch}) OVER w AS t0", "watts AS w", "LAG(watts) OVER w AS w0"]
    if readings.has_source:
        rows += ["source AS src", "LAG(source) OVER w AS src0"]
    if counters:
        for k, measure in enumerate(measures):
            rows += [f"{measure.counter} AS c{k}", f"LAG({measure.counter}) OVER w AS p{k}"]
    # y: the interval between them, and the seconds of it each kind of estimate counts within the day,
    # computed once for all the measures (the fence keeps the database from inlining them into each).
    short = f"{least}(t - t0, {float(MAX_HOLD_S)})"
    # Between two rows the reading did not change, as long as the logger was running: then the power holds
    # until the next row; across a silence of the logger only for a few polls.
    watched = " AND ".join(["1 = 1"] + [f"(t0 >= :b{n} OR t <= :a{n})" for n in range(slots)])
    intervals = ["x.*", "t - t0 AS dt", f"{within_day('t0', 't')} AS overlap"]
    if any(m.backward for m in measures):
        intervals += [
            f"{within_day(f't - {short}', 't')} AS report",
            f"CASE WHEN {watched} THEN {within_day('t0', f't - {short}')} ELSE 0.0 END AS repeated",
        ]
    if not all(m.backward for m in measures):
        intervals.append(
            f"{within_day('t0', f't0 + CASE WHEN {watched} THEN t - t0 ELSE {short} END')} AS held"
        )
    outputs = []
    for k, measure in enumerate(measures):
        sign = float(measure.sign)
        before = f"{greatest}(w0 * {sign}, 0.0)"
        if measure.backward:
            # A report's watts are its interval's; reports not stored before it repeated the previous one.
            power = f"({greatest}(w * {sign}, 0.0) * report + {before} * repeated) / 3600.0"
        else:
            power = f"{before} * held / 3600.0"
        if not counters:
            outputs += [f"SUM({power})", "0", "0", "0", "SUM(CASE WHEN overlap > 0 THEN 1 ELSE 0 END)", "0"]
            continue
        step = f"(c{k} - p{k})"
        same_source = "src = src0" if readings.has_source else "1 = 1"
        usable = f"(p{k} IS NOT NULL AND c{k} IS NOT NULL AND {same_source})"
        cap = f"(dt * {measure.max_watts / 3600 / measure.wh_per_unit!r} + {measure.jitter!r})"
        jitter, wrap_units = measure.jitter, measure.wrap
        normal = f"({usable} AND {step} >= {-jitter!r} AND {step} <= {cap})"
        wrapped = f"({step} + {wrap_units!r})"
        wrap = (
            f"({usable} AND {step} < {-jitter!r} AND abs({wrapped}) <= {WRAP_TOLERANCE * wrap_units!r}"
            f" AND {wrapped} <= {cap})"
        )
        per_unit = measure.wh_per_unit
        energy = (
            f"CASE WHEN {normal} THEN {step} * {per_unit!r} * overlap / dt"
            f" WHEN {wrap} THEN {greatest}({wrapped}, 0.0) * {per_unit!r} * overlap / dt"
            f" ELSE {power} END"
        )

        def count(condition: str) -> str:
            return f"SUM(CASE WHEN {condition} AND overlap > 0 THEN 1 ELSE 0 END)"

        outputs += [
            f"SUM({energy})",
            count(wrap),
            count(f"{usable} AND {step} < {-jitter!r} AND NOT {wrap}"),
            count(f"{usable} AND {step} > {cap}"),
            count(f"NOT {usable}"),
            count(f"({normal} OR {wrap})"),
        ]
    # Only names and numbers of this module are written into the SQL; the values are bound.
    sql = (
        f"SELECT {', '.join(outputs)} FROM ("  # noqa: S608
        f"SELECT {', '.join(intervals)} FROM ("
        f"SELECT {', '.join(rows)} FROM {table}"
        f" WHERE series_id = :sid AND {time_name} >= {lo} AND {time_name} <= {hi}"
        f" WINDOW w AS (ORDER BY {time_name})"
        f") AS x WHERE t0 IS NOT NULL {fence}) AS y"
    )
    return text(sql)
