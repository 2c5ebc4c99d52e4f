"""Build a year of the reference system's history and time the reports over one day and over the year.

    python benchmarks/report_year.py [--db URL] [--days 365] [--reuse] [--no-net-counters]

The reference system (SPEC section 9): 30 inverters reporting every 5 minutes while the sun is up (their
32-bit joule counters wrapping now and then), three phases with production, consumption and net-consumption
CTs read every minute (12 meter series), and a collect run every minute. The history has what a real year
has: on the 15th of each month a two-hour outage of the logger (no rows, no runs), and on one day a reset of
the production counter. The rows are synthetic (a sun curve, a house load) and bulk-inserted, which takes a
minute or two; `--reuse` keeps a database the same command built before. `--no-net-counters` leaves the net
CT's import and export counters empty, as an eim-only gateway does: the report then integrates net power
over every row of every day, its worst case.

Prints the row counts, the database size, and for `daily_report` and `inverter_report` over one day and over
the whole period the best wall time, the peak memory Python allocated during one run (tracemalloc), and the
process's peak resident memory at the end.
"""

from __future__ import annotations

import argparse
import gc
import io
import math
import resource
import tempfile
import time
import tracemalloc
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
from sqlalchemy import Engine, text

from envoylog.db import samples
from envoylog.db.migrate import open_database
from envoylog.db.stored import INVERTER, SOURCE_CODES, StoredReadings
from envoylog.demo.filler import _METER_COLUMNS, _channel_rows, _Series
from envoylog.reports import daily_report, inverter_report

ZONE = "Europe/Amsterdam"
SERIAL = "122238082763"
FIRST_DAY = date(2025, 1, 1)
INVERTERS = 30
INVERTER_PEAK_W = 300.0
REPORT_EVERY_S = 300
CHUNK_DAYS = 10  # rows are generated and inserted this many days at a time, to bound memory
OUTAGE_DAY_OF_MONTH, OUTAGE_HOURS = 15, (9.0, 11.0)  # local time of the logger's monthly outage
RESET_DAY = 200  # the production counter starts again from zero at noon of this day of the period
INVERTER_COLUMNS = (
    "series_id, reported_at, watts, max_watts, joules_lifetime, ac_volts, ac_amps, dc_volts, dc_amps, hz, "
    "temperature_c"
)
RUN_COLUMNS = (
    "gateway_id, gateway_name, started_at, finished_at, outcome, requests, cloud_requests, rows_added, error"
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", help="database URL (default: a SQLite file in the temporary directory)")
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--reuse", action="store_true", help="keep the history a previous run built")
    parser.add_argument("--no-net-counters", action="store_true", help="no import/export counters")
    parser.add_argument("--repeat", type=int, default=5, help="timed runs of each report (the best is shown)")
    args = parser.parse_args()

    suffix = "-no-net-counters" if args.no_net_counters else ""
    default = Path(tempfile.gettempdir()) / f"envoylog-report-year-{args.days}{suffix}.db"
    db_url = args.db or f"sqlite:///{default}"
    engine = open_database(db_url, create=True)
    if not (args.reuse and _has_history(engine)):
        began = time.perf_counter()
        build_history(engine, args.days, net_counters=not args.no_net_counters)
        print(f"built {args.days} days in {time.perf_counter() - began:.0f} s")
    _describe(engine, db_url)

    last_day = FIRST_DAY + timedelta(days=args.days - 1)
    middle = FIRST_DAY + timedelta(days=args.days // 2)
    cases: list[tuple[str, Callable[[], pd.DataFrame]]] = [
        ("daily_report, one day", lambda: daily_report(engine, middle, middle, timezone=ZONE)),
        ("daily_report, the period", lambda: daily_report(engine, FIRST_DAY, last_day, timezone=ZONE)),
        ("inverter_report, one day", lambda: inverter_report(engine, middle, middle, timezone=ZONE)),
        ("inverter_report, the period", lambda: inverter_report(engine, FIRST_DAY, last_day, timezone=ZONE)),
    ]
    for label, run in cases:
        seconds, peak, frame = _measure(run, args.repeat)
        print(
            f"{label:<28} {seconds * 1000:7.1f} ms (best of {args.repeat}), {len(frame):6d} rows, "
            f"Python peak {peak / 1e6:5.1f} MB"
        )
    period = daily_report(engine, FIRST_DAY, last_day, timezone=ZONE)
    noted = period[period.notes.map(bool)]
    print(
        f"period: production {period.production_wh.sum() / 1000:,.0f} kWh, "
        f"coverage min {period.coverage.min():.4f}; notes on {len(noted)} days, e.g. "
        + "; ".join(f"{row.day}: {', '.join(row.notes)}" for row in noted.head(2).itertuples())
    )
    print(f"process peak resident memory: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")
    engine.dispose()


def _measure(run: Callable[[], pd.DataFrame], repeat: int) -> tuple[float, int, pd.DataFrame]:
    """The best wall time of `repeat` runs (after a warm-up) and the peak traced memory of one more."""
    frame = run()
    best = math.inf
    for _ in range(repeat):
        began = time.perf_counter()
        frame = run()
        best = min(best, time.perf_counter() - began)
    gc.collect()
    tracemalloc.start()
    run()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return best, peak, frame


def _has_history(engine: Engine) -> bool:
    with engine.connect() as conn:
        return bool(conn.execute(text("SELECT COUNT(*) FROM gateways")).scalar_one())


def _describe(engine: Engine, db_url: str) -> None:
    with engine.connect() as conn:
        counts = {
            table: conn.execute(text(f"SELECT COUNT(*) FROM {table}")).scalar_one()  # noqa: S608
            for table in ("meter_readings", "inverter_readings", "runs")
        }
    print(", ".join(f"{table} {count:,}" for table, count in counts.items()), f"({engine.dialect.name})")
    if db_url.startswith("sqlite:///"):
        print(f"SQLite file: {Path(db_url.removeprefix('sqlite:///')).stat().st_size / 1e6:.0f} MB")


# --- the synthetic history ---


def build_history(engine: Engine, days: int, *, net_counters: bool = True) -> None:
    """Replace the database's contents by `days` days of the reference system, starting on FIRST_DAY."""
    now = datetime.now(UTC)
    with engine.begin() as conn:
        for table in ("runs", "meter_data", "inverter_data", "series", "gateways"):
            conn.execute(text(f"DELETE FROM {table}"))  # noqa: S608
        conn.execute(
            text(
                "INSERT INTO gateways (serial, name, firmware, part_number, metered, first_seen_at, "
                "last_seen_at) VALUES (:serial, 'bench', '8.2.4345', '800-00654-r08', :metered, :now, :now)"
            ).bindparams(now=int(now.timestamp()) if engine.dialect.name == "sqlite" else now),
            {"serial": SERIAL, "metered": True},
        )
        gateway_id = conn.execute(text("SELECT id FROM gateways")).scalar_one()
        kinds = ("production", "consumption", "net_consumption")
        series = [{"g": gateway_id, "k": kind, "p": phase, "d": ""} for kind in kinds for phase in range(4)]
        series += [{"g": gateway_id, "k": "inverter", "p": 0, "d": _inverter(i)} for i in range(INVERTERS)]
        conn.execute(
            text("INSERT INTO series (gateway_id, kind, phase, device) VALUES (:g, :k, :p, :d)"), series
        )
        ids = {
            (kind, phase, device): sid
            for sid, kind, phase, device in conn.execute(text("SELECT id, kind, phase, device FROM series"))
        }
    zone = ZoneInfo(ZONE)
    state = _State(ids, gateway_id, net_counters)
    for first in range(0, days, CHUNK_DAYS):
        chunk_days = [FIRST_DAY + timedelta(days=n) for n in range(first, min(first + CHUNK_DAYS, days))]
        start = int(datetime.combine(chunk_days[0], datetime.min.time(), zone).timestamp())
        end = int(datetime.combine(chunk_days[-1] + timedelta(days=1), datetime.min.time(), zone).timestamp())
        outages = [
            tuple(
                int(datetime.combine(d, datetime.min.time(), zone).timestamp() + h * 3600)
                for h in OUTAGE_HOURS
            )
            for d in chunk_days
            if d.day == OUTAGE_DAY_OF_MONTH
        ]
        reset = FIRST_DAY + timedelta(days=RESET_DAY)
        reset_at = int(datetime.combine(reset, datetime.min.time(), zone).timestamp()) + 12 * 3600
        meters, inverters, runs = state.chunk(start, end, outages, reset_at if reset in chunk_days else None)
        _insert_meters(engine, meters, ids)
        _bulk_insert(
            engine, "inverter_data", INVERTER_COLUMNS, _stored(inverters, INVERTER), ("reported_at",)
        )
        _bulk_insert(engine, "runs", RUN_COLUMNS, runs, ("started_at", "finished_at"))
    if engine.dialect.name == "postgresql":
        # What autovacuum does to a table that grew for a year: statistics, and the visibility map that
        # lets index-only scans skip the heap.
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("VACUUM ANALYZE"))


def _inverter(i: int) -> str:
    return f"4820520{i:05d}"


class _State:
    """The counters carried from one chunk of days to the next."""

    def __init__(self, ids: dict[tuple[str, int, str], int], gateway_id: int, net_counters: bool) -> None:
        self.ids = ids
        self.gateway_id = gateway_id
        self.net_counters = net_counters
        self.rng = np.random.default_rng(7)
        # Lifetime counters of a system that has run for a few years (Wh), per phase 1..3.
        self.production = np.array([1.45e6, 1.45e6, 1.45e6])
        self.consumption = np.array([2.1e6, 2.0e6, 1.9e6])
        self.imported = np.array([1.2e6, 1.1e6, 1.0e6])
        self.exported = np.array([0.6e6, 0.6e6, 0.55e6])
        self.production_offset = 0.0  # subtracted from the total counter after its reset
        self.joules = 3.6e9 * self.rng.uniform(0.2, 0.9, INVERTERS)
        self.offsets = self.rng.integers(0, REPORT_EVERY_S, INVERTERS)
        self.shares = self.rng.uniform(0.85, 1.0, INVERTERS)

    def chunk(
        self, start: int, end: int, outages: list[tuple[int, ...]], reset_at: int | None
    ) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
        """Meter rows, inverter reports and runs from `start` to `end` (epoch seconds)."""
        t = np.arange(start, end, 60, dtype=np.int64)
        sun = _sun(t)
        clouds = np.clip(1.0 - 0.35 * np.abs(np.sin(t / 5400.0)) * self.rng.uniform(0.5, 1.0, t.size), 0, 1)
        nothing = np.full(t.size, np.nan)
        per_phase: dict[str, list[np.ndarray]] = {"production": [], "consumption": [], "net_consumption": []}
        for phase in range(3):
            pv = INVERTERS / 3 * INVERTER_PEAK_W * 0.92 * sun * clouds
            # A production CT reads a few negative watts at night.
            pv = np.where(pv > 0, pv, -self.rng.uniform(1.0, 4.0, t.size))
            load = 180.0 + 120.0 * self.rng.random(t.size) + 1500.0 * (self.rng.random(t.size) > 0.97)
            net = load - np.maximum(pv, 0.0)
            produced = self.production[phase] + np.cumsum(np.maximum(pv, 0.0)) / 60.0
            used = self.consumption[phase] + np.cumsum(load) / 60.0
            imported = self.imported[phase] + np.cumsum(np.maximum(net, 0.0)) / 60.0
            exported = self.exported[phase] + np.cumsum(np.maximum(-net, 0.0)) / 60.0
            self.production[phase], self.consumption[phase] = produced[-1], used[-1]
            self.imported[phase], self.exported[phase] = imported[-1], exported[-1]
            per_phase["production"].append(np.stack([pv, produced, nothing, nothing]))
            per_phase["consumption"].append(np.stack([load, used, nothing, nothing]))
            if self.net_counters:
                per_phase["net_consumption"].append(np.stack([net, imported - exported, imported, exported]))
            else:
                per_phase["net_consumption"].append(np.stack([net, imported - exported, nothing, nothing]))
        frames = []
        for kind, phases in per_phase.items():
            for phase, values in enumerate([sum(phases), *phases]):
                if kind == "production" and phase == 0:
                    if reset_at is not None:
                        # The counter starts again from zero: a new gateway, or a firmware that lost it.
                        self.production_offset = float(np.interp(reset_at, t, values[1]))
                        values[1] = np.where(t >= reset_at, values[1] - self.production_offset, values[1])
                    else:
                        values[1] -= self.production_offset
                frames.append(self._meter_frame(kind, phase, t, values))
        meters = pd.concat(frames, ignore_index=True)
        inverters = self._inverters(start, end)
        runs = self._runs(t)
        for a, b in outages:
            meters = meters[(meters.read_at < a) | (meters.read_at >= b)]
            inverters = inverters[(inverters.reported_at < a) | (inverters.reported_at >= b)]
            runs = runs[(runs.started_at < a) | (runs.started_at >= b)]
        return meters, inverters, runs

    def _meter_frame(self, kind: str, phase: int, t: np.ndarray, values: np.ndarray) -> pd.DataFrame:
        volts = 230.0 + self.rng.normal(0, 1.5, t.size)
        if phase == 0:
            volts *= 3  # the gateway sums the phases' voltages in its totals
        return pd.DataFrame(
            {
                "series_id": self.ids[(kind, phase, "")],
                "read_at": t,
                "source": "meters",
                "watts": values[0].round(1),
                "wh_lifetime": values[1].round(1),
                "wh_imported_lifetime": values[2].round(1),
                "wh_exported_lifetime": values[3].round(1),
                "volts": volts.round(2),
                "amps": (np.abs(values[0]) / 230.0).round(2),
                "hz": 50.0 + self.rng.normal(0, 0.01, t.size).round(2),
                "power_factor": 0.95,
            }
        )

    def _inverters(self, start: int, end: int) -> pd.DataFrame:
        frames = []
        for i in range(INVERTERS):
            t = np.arange(start + int(self.offsets[i]), end, REPORT_EVERY_S, dtype=np.int64)
            watts = np.round(INVERTER_PEAK_W * self.shares[i] * _sun(t) * 0.95)
            # Silent after dark, but for the one zero report that ends the day.
            lit = (watts > 0) | (np.roll(watts, 1) > 0)
            joules = self.joules[i] + np.cumsum(watts * REPORT_EVERY_S)
            self.joules[i] = joules[-1]
            t, watts, joules = t[lit], watts[lit], joules[lit]
            frames.append(
                pd.DataFrame(
                    {
                        "series_id": self.ids[("inverter", 0, _inverter(i))],
                        "reported_at": t,
                        "watts": watts,
                        "max_watts": 295.0,
                        "joules_lifetime": np.mod(joules, 2.0**32).round(),  # a 32-bit register
                        "ac_volts": 230.0,
                        "ac_amps": (watts / 230.0).round(2),
                        "dc_volts": 36.0,
                        "dc_amps": (watts / 36.0).round(2),
                        "hz": 50.0,
                        "temperature_c": 20.0,
                    }
                )
            )
        return pd.concat(frames, ignore_index=True)

    def _runs(self, t: np.ndarray) -> pd.DataFrame:
        failed = self.rng.random(t.size) < 0.002
        return pd.DataFrame(
            {
                "gateway_id": self.gateway_id,
                "gateway_name": "bench",
                "started_at": t + 1,
                "finished_at": t + 3,
                "outcome": np.where(failed, "failed", "ok"),
                "requests": 3,
                "cloud_requests": 0,
                "rows_added": 12,
                "error": None,
            }
        )


def _sun(t: np.ndarray) -> np.ndarray:
    """A clear-sky sun curve for Amsterdam, 0 at night and about 1 at a summer noon (t: epoch seconds)."""
    day_of_year = (t // 86400) % 365.25
    hours = (t % 86400) / 3600.0
    length = 12.0 + 4.5 * np.sin(2 * math.pi * (day_of_year - 80) / 365.25)
    rise = 11.65 - length / 2  # solar noon at about 11:40 UTC
    height = 0.45 + 0.55 * (length - 7.5) / 9.0
    up = (hours > rise) & (hours < rise + length)
    return np.where(up, height * np.sin(math.pi * (hours - rise) / length), 0.0)


def _stored(frame: pd.DataFrame, stored: StoredReadings) -> pd.DataFrame:
    """Readings as their table stores them: integers in thousandths, the source as its code."""
    frame = frame.copy()
    for name, scale in stored.scales.items():
        if name in frame:
            frame[name] = (frame[name].astype("float64") * scale).round().astype("Int64")
    if "source" in frame:
        frame["source"] = frame["source"].map(SOURCE_CODES)
    return frame


def _insert_meters(engine: Engine, meters: pd.DataFrame, ids: dict[tuple[str, int, str], int]) -> None:
    """The readings in the collector's layout: a row per channel and time, the phases side by side."""
    channel_of = {sid: (ids[(kind, 0, device)], phase) for (kind, phase, device), sid in ids.items()}
    channels: dict[int, dict[int, tuple[_Series, np.ndarray]]] = {}
    for sid, frame in meters.groupby("series_id"):
        channel, phase = channel_of[int(sid)]
        frame = frame.sort_values("read_at")
        times = frame["read_at"].to_numpy(dtype=np.int64)
        values = {
            name: "meters" if name == "source" else _array(frame[name]) for name in samples.METER_VALUES
        }
        one = _Series((str(sid), phase, ""), "meter", times, times, values)
        channels.setdefault(channel, {})[phase] = (one, np.ones(times.size, dtype=bool))
    rows = [row for channel, phases in channels.items() for row in _channel_rows(channel, phases)[0]]
    raw = engine.raw_connection()
    try:
        cursor = raw.cursor()
        if engine.dialect.name == "postgresql":
            with cursor.copy(f"COPY meter_data ({', '.join(_METER_COLUMNS)}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row((row[0], datetime.fromtimestamp(row[1], UTC), *row[2:]))
        else:
            marks = ", ".join("?" for _ in _METER_COLUMNS)
            cursor.executemany(f"INSERT INTO meter_data ({', '.join(_METER_COLUMNS)}) VALUES ({marks})", rows)  # noqa: S608
        raw.commit()
    finally:
        raw.close()


def _array(column: pd.Series) -> np.ndarray | None:
    """A column as the filler takes it: floats, or None where it is empty throughout."""
    values = column.to_numpy(dtype="float64", na_value=np.nan)
    return None if np.isnan(values).all() else values


def _bulk_insert(
    engine: Engine, table: str, columns: str, frame: pd.DataFrame, times: tuple[str, ...]
) -> None:
    raw = engine.raw_connection()
    try:
        if engine.dialect.name == "postgresql":
            frame = frame.copy()
            for name in times:
                frame[name] = pd.to_datetime(frame[name], unit="s", utc=True)
            buffer = io.StringIO()
            frame.to_csv(buffer, index=False, header=False)
            with (
                raw.cursor() as cursor,
                cursor.copy(f"COPY {table} ({columns}) FROM STDIN (FORMAT csv)") as copy,
            ):
                copy.write(buffer.getvalue())
            raw.commit()
            return
        cursor = raw.cursor()
        marks = ", ".join("?" for _ in columns.split(","))
        cursor.execute("BEGIN")
        cursor.executemany(f"INSERT INTO {table} ({columns}) VALUES ({marks})", _rows(frame))  # noqa: S608
        cursor.execute("COMMIT")
    finally:
        raw.close()


def _rows(frame: pd.DataFrame) -> Iterator[tuple[Any, ...]]:
    for row in frame.itertuples(index=False, name=None):
        yield tuple(_value(v) for v in row)


def _value(v: Any) -> Any:
    if v is pd.NA or (isinstance(v, float) and math.isnan(v)):
        return None
    # numpy's integers as Python's: sqlite3 would store them as blobs.
    return v.item() if isinstance(v, np.integer) else v


if __name__ == "__main__":
    main()
