"""Daily yield, per-inverter energy and power curves as DataFrames (SPEC section 6). The SQL does the work.

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
import itertools
import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, NamedTuple, cast
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import pandas as pd
from sqlalchemy import (
    DateTime,
    Engine,
    Float,
    Integer,
    Table,
    and_,
    bindparam,
    column,
    func,
    literal_column,
    or_,
    select,
    text,
    true,
    type_coerce,
)
from sqlalchemy import cast as sql_cast
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.engine import Connection
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.sql.elements import ColumnElement, TextClause

from envoylog.db import gateways
from envoylog.db.engine import describe_db_error
from envoylog.db.migrate import open_database, require_database
from envoylog.db.models import InverterSample, MeterSample, Run, Series
from envoylog.db.sql import table_of
from envoylog.db.types import UtcDateTime
from envoylog.errors import ConfigError, DatabaseError

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
COVERED_AFTER_RUN_S = 600  # SPEC section 6: a successful run vouches for the 10 minutes after it
BUCKET_S = COVERED_AFTER_RUN_S // 2  # a run in every bucket of half that length leaves no hole
MAX_RUN_S = 3600  # runs end within a minute (the collector's deadline); this bounds the index range scanned
GAP_NOTE_S = 15 * 60  # shorter silences of the logger show in coverage only
GAP_NOTES = 3
IN_LIST = 500  # old SQLite allows 999 parameters in a statement
UNCOVERED_SLOTS = 4  # the silences of the logger a day's row-by-row query takes without a larger variant
SUCCESS = ("ok", "partial")

DAILY_COLUMNS = [
    "gateway",
    "day",
    "production_wh",
    "consumption_wh",
    "import_wh",
    "export_wh",
    "self_consumed_wh",
    "peak_watts",
    "peak_at",
    "coverage",
    "notes",
]
INVERTER_COLUMNS = ["gateway", "day", "serial", "wh", "basis"]
CURVE_COLUMNS = ["gateway", "at", "production_watts", "consumption_watts", "net_watts"]


# --- the API ---


def daily_report(
    db: Engine | str, start: date, end: date, *, timezone: str, gateway: str | None = None
) -> pd.DataFrame:
    """One row per gateway and local day from `start` to `end` (inclusive): energy, peak, coverage, notes."""
    days = _local_days(start, end, timezone)
    rows: list[dict[str, Any]] = []
    with _connection(db) as conn:
        for gateway_id, serial in _gateways(conn, gateway):
            rows += _gateway_days(conn, gateway_id, serial, days)
    frame = pd.DataFrame(rows, columns=DAILY_COLUMNS)
    for name in [*DAILY_COLUMNS[2:8], "coverage"]:
        frame[name] = frame[name].astype("float64")
    frame["peak_at"] = pd.to_datetime(frame["peak_at"], utc=True).astype("datetime64[us, UTC]")
    return frame


def inverter_report(
    db: Engine | str, start: date, end: date, *, timezone: str, gateway: str | None = None
) -> pd.DataFrame:
    """Energy per inverter and local day: from joules counters where reported, else from watts over time."""
    days = _local_days(start, end, timezone)
    rows: list[dict[str, Any]] = []
    with _connection(db) as conn:
        for gateway_id, serial in _gateways(conn, gateway):
            rows += _inverter_days(conn, gateway_id, serial, days)
    frame = pd.DataFrame(rows, columns=INVERTER_COLUMNS)
    frame["wh"] = frame["wh"].astype("float64")
    return frame


def power_curve(db: Engine | str, day: date, *, timezone: str, gateway: str | None = None) -> pd.DataFrame:
    """The stored power readings (all phases) of one local day, aligned on time; a value holds 15 minutes."""
    (the_day,) = _local_days(day, day, timezone)
    meters = table_of(MeterSample)
    frames = []
    with _connection(db) as conn:
        for gateway_id, serial in _gateways(conn, gateway):
            series = _site_series(conn, gateway_id)
            query = (
                select(meters.c.series_id, meters.c.read_at, meters.c.watts)
                .where(
                    meters.c.series_id.in_(list(series.values())),
                    meters.c.read_at >= the_day.start,
                    meters.c.read_at < the_day.end,
                )
                .order_by(meters.c.read_at)
            )
            readings = pd.DataFrame(conn.execute(query).all(), columns=["series_id", "at", "watts"])
            frames.append(_aligned_curve(serial, series, readings))
    if not frames:
        return pd.DataFrame(columns=CURVE_COLUMNS)
    return pd.concat(frames, ignore_index=True)


def gateway_names(db: Engine | str) -> dict[str, str]:
    """Each stored gateway's configured name, by serial (report headers and plot titles show both)."""
    with _connection(db) as conn:
        return {str(row.serial): str(row.name) for row in gateways.list_gateways(conn)}


def report_document(days: pd.DataFrame, inverters: pd.DataFrame | None, timezone: str) -> dict[str, Any]:
    """The JSON of `envoylog report --format json` (SPEC section 3): NaN becomes null, times end in Z."""
    per_day: dict[tuple[str, date], list[dict[str, Any]]] = {}
    if inverters is not None:
        for row in inverters.itertuples(index=False):
            key = (str(row.gateway), cast(date, row.day))
            per_day.setdefault(key, []).append({"serial": str(row.serial), "wh": _number(row.wh, 1)})
    documents = []
    for row in days.itertuples(index=False):
        document: dict[str, Any] = {
            "gateway": str(row.gateway),
            "day": cast(date, row.day).isoformat(),
            "production_wh": _number(row.production_wh, 1),
            "consumption_wh": _number(row.consumption_wh, 1),
            "import_wh": _number(row.import_wh, 1),
            "export_wh": _number(row.export_wh, 1),
            "self_consumed_wh": _number(row.self_consumed_wh, 1),
            "peak_watts": _number(row.peak_watts, 1),
            "peak_at": _iso_utc(row.peak_at),
            "coverage": _number(row.coverage, 4),
        }
        if inverters is not None:
            document["inverters"] = per_day.get((str(row.gateway), cast(date, row.day)), [])
        document["notes"] = list(cast(Iterable[str], row.notes))
        documents.append(document)
    return {"timezone": timezone, "days": documents}


# --- days, gateways, the connection ---


@dataclass(frozen=True)
class _Day:
    """A local day: its date and where it starts and ends in UTC (23, 24 or 25 hours apart)."""

    index: int
    day: date
    start: datetime
    end: datetime

    @property
    def start_s(self) -> float:
        """The start in epoch seconds."""
        return self.start.timestamp()

    @property
    def end_s(self) -> float:
        """The end in epoch seconds."""
        return self.end.timestamp()

    @property
    def seconds(self) -> float:
        """The day's length."""
        return self.end_s - self.start_s


def _local_days(start: date, end: date, timezone: str) -> list[_Day]:
    try:
        zone = ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(
            f"unknown time zone {timezone!r}: give an IANA name such as Europe/Amsterdam"
        ) from None
    if end < start:
        raise ConfigError(f"the report ends ({end}) before it starts ({start})")
    count = (end - start).days + 1
    # Midnight may not exist where a zone springs forward at 00:00; zoneinfo then gives the first instant.
    edges = [
        datetime.combine(start + timedelta(days=n), time(), tzinfo=zone).astimezone(UTC)
        for n in range(count + 1)
    ]
    return [_Day(n, start + timedelta(days=n), edges[n], edges[n + 1]) for n in range(count)]


@contextmanager
def _connection(db: Engine | str) -> Iterator[Connection]:
    engine = open_database(db, create=False) if isinstance(db, str) else db
    if not isinstance(db, str):
        require_database(engine)
    try:
        with engine.connect() as conn:
            if conn.dialect.name == "postgresql":
                # One snapshot for all the queries of a report, and no JIT: compiling costs more than
                # these index-range queries take to run.
                conn.exec_driver_sql("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
                conn.exec_driver_sql("SET LOCAL jit = off")
            yield conn
    except SQLAlchemyError as exc:
        raise DatabaseError(f"cannot read the database: {describe_db_error(exc)}") from None
    finally:
        if isinstance(db, str):
            engine.dispose()


def _gateways(conn: Connection, gateway: str | None) -> list[tuple[int, str]]:
    return [(row.id, row.serial) for row in gateways.lookup_gateways(conn, gateway)]


def _site_series(conn: Connection, gateway_id: int) -> dict[str, int]:
    """The gateway's all-phase production, consumption and net-consumption series, by kind."""
    query = select(Series.kind, Series.id).where(
        Series.gateway_id == gateway_id,
        Series.phase == 0,
        Series.device == "",
        Series.kind.in_(("production", "consumption", "net_consumption")),
    )
    return {kind: sid for kind, sid in conn.execute(query)}


# --- SQL that differs between SQLite and PostgreSQL ---


def _epoch(conn: Connection, value: ColumnElement[Any]) -> ColumnElement[float]:
    """A UtcDateTime column as epoch seconds, for arithmetic: SQLite stores exactly that."""
    if conn.dialect.name == "sqlite":
        # As REAL: SQLite divides integers by integers as integers.
        return sql_cast(type_coerce(value, Integer), Float)
    # date_part gives a double; EXTRACT a numeric, several times slower to compute with.
    return func.date_part("epoch", value, type_=Float)


def _rows_param(
    conn: Connection, name: str, numbers: Mapping[str, list[int]], times: Mapping[str, list[datetime]]
) -> Any:
    """A table of rows (integer and time columns) made in Python, to join with."""
    # Not SQLAlchemy's values(): it compiles the list anew at every call, row by row (20 ms for a year of
    # days). PostgreSQL unnests one array parameter per column. SQLite gets a VALUES list of integers written
    # into the SQL (its times are epoch seconds): bound through JSON instead, the values would be extracted
    # again for every row the query compares them with.
    names = [*numbers, *times]
    if conn.dialect.name == "postgresql":
        stamps = ARRAY(cast(Any, DateTime(timezone=True)))
        arrays = [bindparam(f"{name}_{n}", list(v), type_=ARRAY(Integer)) for n, v in numbers.items()]
        arrays += [bindparam(f"{name}_{n}", list(v), type_=stamps) for n, v in times.items()]
        typed = [column(n, Integer) for n in numbers] + [column(n, UtcDateTime) for n in times]
        return func.unnest(*arrays).table_valued(*typed).render_derived(name=name)
    epochs = [[int(t.timestamp()) for t in v] for v in times.values()]
    rows = ", ".join(
        "(" + ", ".join(str(int(v)) for v in row) + ")"
        for row in zip(*numbers.values(), *epochs, strict=True)
    )
    labels = ", ".join(f"column{k + 1} AS {n}" for k, n in enumerate(names))
    # Only integers made here are written into the SQL.
    query = text(f"SELECT {labels} FROM (VALUES {rows})")  # noqa: S608
    return query.columns(*[column(n, Integer) for n in names]).cte(name)


# --- counters: read off at midnight, or row by row where they do not add up ---


@dataclass(frozen=True)
class _Readings:
    """A readings table as the counter code sees it."""

    table: Table
    time: str
    columns: tuple[str, ...]
    has_source: bool


_METER_ROWS = _Readings(
    table_of(MeterSample),
    "read_at",
    ("watts", "wh_lifetime", "wh_imported_lifetime", "wh_exported_lifetime"),
    True,
)
_INVERTER_ROWS = _Readings(table_of(InverterSample), "reported_at", ("watts", "joules_lifetime"), False)


@dataclass(frozen=True)
class _Measure:
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


_PRODUCTION = _Measure("production", "wh_lifetime")
_CONSUMPTION = _Measure("consumption", "wh_lifetime")
_IMPORT = _Measure("import", "wh_imported_lifetime")
_EXPORT = _Measure("export", "wh_exported_lifetime", sign=-1.0)
_INVERTER = _Measure(
    "inverter", "joules_lifetime", wh_per_unit=1 / 3600, max_watts=MAX_INVERTER_WATTS, backward=True
)
_SITE_MEASURES = {
    "production": (_PRODUCTION,),
    "consumption": (_CONSUMPTION,),
    "net_consumption": (_IMPORT, _EXPORT),
}


class _Row(NamedTuple):
    """A stored row next to a day boundary."""

    t: float
    source: str | None
    values: Mapping[str, float | None]


@dataclass
class _Energy:
    """A day's energy of one measure, and what it rests on."""

    wh: float = math.nan
    wraps: int = 0
    resets: int = 0
    jumps: int = 0
    from_power: int = 0  # intervals estimated from watts: no usable counter
    from_counter: int = 0
    rows_in_day: bool = False
    spans_gap: bool = False  # no row in the day, the counter interpolated across it


def _energies(
    conn: Connection,
    readings: _Readings,
    measures: Mapping[int, Sequence[_Measure]],
    days: Sequence[_Day],
    coverage: Sequence[_Coverage],
) -> dict[tuple[int, str, int], _Energy]:
    """Energy per (series, measure, day); where the logger ran, no new row means an unchanged reading."""
    edges = _bracketing_rows(conn, readings, list(measures), [d.start for d in days] + [days[-1].end])
    result: dict[tuple[int, str, int], _Energy] = {}
    detail: list[tuple[int, _Day, float | None, float | None, _Coverage, bool]] = []
    tails: list[tuple[int, _Measure, _Day, _Row]] = []
    for sid, series_measures in measures.items():
        for day in days:
            prev_start, next_start = edges.get((sid, day.index), (None, None))
            prev_end, next_end = edges.get((sid, day.index + 1), (None, None))
            rows_in_day = next_start is not None and next_start.t < day.end_s
            watched = coverage[day.index].share > 0
            needs_detail = False
            for measure in series_measures:
                energy = _Energy(rows_in_day=rows_in_day)
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


def _value_at(at: float, before: _Row | None, after: _Row | None, measure: _Measure) -> float | None:
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
    conn: Connection, readings: _Readings, series_ids: list[int], boundaries: list[datetime]
) -> dict[tuple[int, int], tuple[_Row | None, _Row | None]]:
    """For each series and boundary: the last row at or before it and the first at or after it."""
    if not series_ids:
        return {}
    table, at = readings.table, readings.table.c[readings.time]
    bounds = _rows_param(conn, "b", {"i": list(range(len(boundaries)))}, {"at": boundaries})
    series = _rows_param(conn, "s", {"sid": series_ids}, {})
    names = [*readings.columns, *(["source"] if readings.has_source else [])]
    pairs = bounds.join(series, true())
    # Each side is one descent of the (series_id, time) key. PostgreSQL gets it from LATERAL ... LIMIT 1
    # (its planner would hash-join a whole table instead); SQLite, which has no LATERAL, from max()/min().
    side_columns: list[Any] = []
    if conn.dialect.name == "postgresql":
        source: Any = pairs
        for side, before in (("p", True), ("n", False)):
            nearest = (
                select(_epoch(conn, at).label("t"), *[table.c[c] for c in names])
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
                _epoch(conn, rows.c[readings.time]).label(f"{side}_t"),
                *[rows.c[c].label(f"{side}_{c}") for c in names],
            ]
        key_columns = [keys.c.i, keys.c.sid]
    query = select(*key_columns, *side_columns).select_from(source)
    width, count = 1 + len(names), len(readings.columns)
    has_source, columns = readings.has_source, readings.columns

    def read_side(row: Sequence[Any], offset: int) -> _Row | None:
        if row[offset] is None:
            return None
        found_values = dict(zip(columns, row[offset + 1 : offset + 1 + count], strict=True))
        return _Row(float(row[offset]), row[offset + width - 1] if has_source else None, found_values)

    return {(row[1], row[0]): (read_side(row, 2), read_side(row, 2 + width)) for row in conn.execute(query)}


def _detail(
    conn: Connection,
    readings: _Readings,
    measures: Mapping[int, Sequence[_Measure]],
    wanted: list[tuple[int, _Day, float | None, float | None, _Coverage, bool]],
) -> dict[tuple[int, int], dict[str, _Energy]]:
    """Row-by-row energy of the (series, day) pairs whose counters do not add up at midnight."""
    result: dict[tuple[int, int], dict[str, _Energy]] = {}
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
            measure.name: _Energy(
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
    dialect: str, readings: _Readings, measures: tuple[_Measure, ...], slots: int, counters: bool
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


# --- the daily report ---


def _gateway_days(conn: Connection, gateway_id: int, serial: str, days: list[_Day]) -> list[dict[str, Any]]:
    series = _site_series(conn, gateway_id)
    coverage = _coverage(conn, gateway_id, days)
    measures = {series[kind]: _SITE_MEASURES[kind] for kind in _SITE_MEASURES if kind in series}
    energies = _energies(conn, _METER_ROWS, measures, days, coverage) if measures else {}
    peaks = _peaks(conn, series["production"], days) if "production" in series else {}
    rows = []
    for day in days:
        found: dict[str, _Energy] = {}
        for kind, kind_measures in _SITE_MEASURES.items():
            for measure in kind_measures:
                if kind in series:
                    found[measure.name] = energies[(series[kind], measure.name, day.index)]
        wh = {
            name: found[name].wh if name in found else math.nan
            for name in ("production", "consumption", "import", "export")
        }
        peak_watts, peak_at = peaks.get(day.index, (math.nan, None))
        rows.append(
            {
                "gateway": serial,
                "day": day.day,
                "production_wh": wh["production"],
                "consumption_wh": wh["consumption"],
                "import_wh": wh["import"],
                "export_wh": wh["export"],
                "self_consumed_wh": _not_below_zero(wh["production"] - wh["export"]),
                "peak_watts": peak_watts,
                "peak_at": peak_at,
                "coverage": coverage[day.index].share,
                "notes": _notes(found, coverage[day.index]),
            }
        )
    return rows


def _notes(found: Mapping[str, _Energy], coverage: _Coverage) -> list[str]:
    """What a day's numbers rest on, in words."""
    any_rows = any(e.rows_in_day for e in found.values())
    notes = []
    if not any_rows and coverage.share == 0:
        notes.append("no data")
    elif coverage.share == 0:
        notes.append("no collect run logged")
    elif coverage.share < 1:
        notes += coverage.gap_notes()
    if any(e.wraps for e in found.values()):
        notes.append("counter wrap")
    if any(e.resets for e in found.values()):
        notes.append("counter reset")
    if any(e.jumps for e in found.values()):
        notes.append("counter jump")
    power = {name: e for name, e in found.items() if e.from_power}
    labels = {"import": "import", "export": "export"}
    if "import" in power and "export" in power:
        power.pop("export")
        labels["import"] = "import and export"
    for name, energy in power.items():
        label = labels.get(name, name)
        notes.append(
            f"{label} from power, no counter" if not energy.from_counter else f"{label} partly from power"
        )
    if any(e.spans_gap for e in found.values()) and coverage.share < 1:
        notes.append("energy spread over a gap in the data")
    return notes


def _peaks(conn: Connection, series_id: int, days: list[_Day]) -> dict[int, tuple[float, datetime]]:
    """Per day, the highest production watts stored and when (the first time, on a tie)."""
    meters = table_of(MeterSample)
    bounds = _rows_param(
        conn, "d", {"i": [d.index for d in days]}, {"s": [d.start for d in days], "e": [d.end for d in days]}
    )
    top = (
        select(meters.c.read_at)
        .where(meters.c.series_id == series_id, meters.c.read_at >= bounds.c.s, meters.c.read_at < bounds.c.e)
        .order_by(meters.c.watts.desc(), meters.c.read_at)
        .limit(1)
        .scalar_subquery()
    )
    # Two steps: joined in one query, the top-1 subquery would be pulled up and run more than once a day.
    times = {i: at for i, at in conn.execute(select(bounds.c.i, top)) if at is not None}
    watts: dict[datetime, float] = {}
    found = sorted(set(times.values()))
    for first in range(0, len(found), IN_LIST):
        query = select(meters.c.read_at, meters.c.watts).where(
            meters.c.series_id == series_id, meters.c.read_at.in_(found[first : first + IN_LIST])
        )
        watts.update((at, float(w)) for at, w in conn.execute(query))
    return {i: (watts[at], at) for i, at in times.items()}


# --- coverage ---


@dataclass
class _Coverage:
    """How much of a day lies within 10 minutes after a successful run, and the logger's silences in it."""

    day: _Day
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


def _coverage(conn: Connection, gateway_id: int, days: list[_Day]) -> list[_Coverage]:
    """Coverage per day: a count of 5-minute buckets holding a run, and the exact sum where one is empty."""
    runs = table_of(Run)
    bucket_s = timedelta(seconds=BUCKET_S)
    bounds = _rows_param(
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
    result = [_Coverage(d) for d in days]
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


def _buckets(day: _Day) -> int:
    return math.ceil(day.seconds / BUCKET_S)


def _exact_coverage(conn: Connection, gateway_id: int, days: list[_Day], result: list[_Coverage]) -> None:
    """The covered share of days with an empty bucket, from the chains of runs less than 10 minutes apart."""
    runs = table_of(Run)
    spans: list[tuple[datetime, datetime]] = []
    for day in days:
        if spans and spans[-1][1] == day.start:
            spans[-1] = (spans[-1][0], day.end)
        else:
            spans.append((day.start, day.end))
    f = _epoch(conn, runs.c.finished_at)
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


# --- per inverter ---


def _inverter_days(conn: Connection, gateway_id: int, serial: str, days: list[_Day]) -> list[dict[str, Any]]:
    query = (
        select(Series.id, Series.device)
        .where(Series.gateway_id == gateway_id, Series.kind == "inverter")
        .order_by(Series.device)
    )
    inverters = [(sid, device) for sid, device in conn.execute(query)]
    if not inverters:
        return []
    measures = {sid: (_INVERTER,) for sid, _ in inverters}
    energies = _energies(conn, _INVERTER_ROWS, measures, days, _coverage(conn, gateway_id, days))
    rows = []
    for day in days:
        for sid, device in inverters:
            energy = energies[(sid, _INVERTER.name, day.index)]
            basis = "watts" if energy.from_power and not energy.from_counter else "joules"
            rows.append(
                {"gateway": serial, "day": day.day, "serial": device, "wh": energy.wh, "basis": basis}
            )
    return rows


# --- the power curve ---


def _aligned_curve(serial: str, series: Mapping[str, int], readings: pd.DataFrame) -> pd.DataFrame:
    """One row per stored time, each channel's last value within MAX_HOLD_S (NaN after a longer gap)."""
    readings["at"] = pd.to_datetime(readings["at"], utc=True)
    times = pd.DataFrame({"at": readings["at"].drop_duplicates().sort_values(ignore_index=True)})
    curve = times
    for kind, name in (
        ("production", "production_watts"),
        ("consumption", "consumption_watts"),
        ("net_consumption", "net_watts"),
    ):
        channel = readings.loc[readings["series_id"] == series.get(kind, -1), ["at", "watts"]].rename(
            columns={"watts": name}
        )
        curve = pd.merge_asof(
            curve, channel, on="at", direction="backward", tolerance=pd.Timedelta(seconds=MAX_HOLD_S)
        )
    curve.insert(0, "gateway", serial)
    return curve[CURVE_COLUMNS]


# --- JSON ---


def _not_below_zero(value: float) -> float:
    return value if math.isnan(value) else max(value, 0.0)


def _number(value: Any, digits: int) -> float | None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return round(float(value), digits)


def _iso_utc(value: Any) -> str | None:
    if value is None or pd.isna(value):
        return None
    return pd.Timestamp(value).tz_convert(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
