"""`envoylog demo --days N`: the simulator's history stored as a collector polling every minute stores it.

The readings are computed for a month of minutes at a time from the simulator's arrays (simulator/bulk.py),
not by rendering and parsing JSON per minute, and go into the collector's tables under its change-detection
rule (`samples.is_new`: a row only when it differs from its series' previous row) with multi-row inserts.
Every minute gets a successful run in the run log, as a cron collector's would.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
from numpy.typing import NDArray
from sqlalchemy import Engine
from sqlalchemy.engine import Connection
from sqlalchemy.exc import SQLAlchemyError

from envoylog.db import gateways, samples
from envoylog.db.bulk import save_rows_bulk
from envoylog.db.engine import SQLITE_BEGIN, describe_db_error
from envoylog.db.lock import collect_lock
from envoylog.db.meters import COUNTERS, METER_DATA, PHASES, RESIDUAL, UNKNOWN, VALUES, slot
from envoylog.db.migrate import open_database
from envoylog.db.models import RUNS
from envoylog.db.runs import load_run_minutes
from envoylog.db.stored import MILLI, SOURCES, encode_value
from envoylog.errors import ConfigError, DatabaseError
from envoylog.readings.endpoints import SLOW_EVERY
from envoylog.readings.model import GatewayInfo
from envoylog.simulator import bulk
from envoylog.simulator import payloads as pl
from envoylog.simulator.endpoints import GatewayModel
from envoylog.simulator.profiles import InverterFault, Profile, get_profile
from envoylog.simulator.site import ReportHistory
from envoylog.times import local_midnight

SUPPORTED_PROFILES = ("standard", "metered", "battery", "legacy")
DAY_S = 86_400
SLOW_EVERY_MIN = int(SLOW_EVERY.total_seconds()) // 60
# A steady-state collector reads one due slow endpoint per run, the longest-waiting first: device_data (or
# the inverters' own list) in one minute, then the battery inventory, then the battery power.
DEVICE_DATA_MINUTE, INVENTORY_MINUTE, POWER_MINUTE = 0, 1, 2
FLUSH_ROWS = 100_000  # rows handed to the database at once: memory stays bounded, round trips few

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]
Values = dict[str, FloatArray | str | None]  # per value column: an array, a constant, or NULL throughout
Latest = tuple[datetime, dict[str, Any]]


@dataclass(frozen=True)
class HistorySummary:
    """What `fill_history` stored."""

    profile: str
    serial: str
    first_day: date
    last_day: date
    rows_added: dict[str, int]  # per table: meter, inverter, battery
    runs_added: int
    seconds: float

    def describe(self) -> str:
        """One line for the user."""
        rows = ", ".join(f"{n:,} {table}" for table, n in self.rows_added.items())
        days = (self.last_day - self.first_day).days + 1
        return (
            f"stored {days} days ({self.first_day} to {self.last_day}) of the simulated {self.profile} "
            f"gateway {self.serial} in {self.seconds:.0f} s: readings {rows}; {self.runs_added:,} runs"
        )


@dataclass
class _Series:
    """One series' readings over a stretch of time, before change detection."""

    key: tuple[str, int, str]
    table: str  # "meter" | "inverter" | "battery"
    times: IntArray  # epoch s of each reading, increasing
    polled: IntArray  # epoch s of the run that read each (for the run log's rows_added)
    values: Values


@dataclass
class _State:
    """What fill_history carries from one month to the next."""

    gateway_id: int
    series_ids: dict[tuple[str, int, str], int]
    latest: dict[int, Latest] = field(default_factory=dict)  # per series id: its newest stored row
    rows_added: dict[str, int] = field(default_factory=lambda: {"meter": 0, "inverter": 0, "battery": 0})
    runs_added: int = 0


def history_days(days: int, timezone: str, now: datetime) -> tuple[date, date]:
    """The `days` local days that end yesterday in `timezone`."""
    if days < 1:
        raise ConfigError("--days must be at least 1")
    last = now.astimezone(ZoneInfo(timezone)).date() - timedelta(days=1)
    return last - timedelta(days=days - 1), last


def fill_history(
    db_url: str,
    first_day: date,
    last_day: date,
    *,
    profile: str = "metered",
    serial: str | None = None,
    gateway: str = "demo",
    seed: int = 1,
    echo: Callable[[str], None] | None = None,
    inverter_faults: Sequence[InverterFault] = (),
) -> HistorySummary:
    """Store what a collector polling the simulated `profile` every minute would store on these days.

    `serial` stores the simulated gateway under another serial than the profile's (the demo has its own).
    `inverter_faults` break or derate inverters of the site: its whole history (CTs, inverters, grid,
    batteries) shows them.
    """
    began = time.monotonic()
    site = _profile(profile)
    if serial is not None:
        site = replace(site, serial=serial)
    if inverter_faults:
        try:
            site = replace(site, inverter_faults=tuple(inverter_faults))
        except ValueError as exc:
            raise ConfigError(f"bad inverter fault: {exc}") from None
    model = GatewayModel(site, seed=seed)
    zone = ZoneInfo(site.timezone)
    installed = site.installed_at.astimezone(zone).date()
    if last_day < installed:
        raise ConfigError(f"the simulated {profile} gateway was installed on {installed}: pick later days")
    first_day = max(first_day, installed)
    engine = open_database(db_url, create=True)
    try:
        with collect_lock(engine), ThreadPoolExecutor(max_workers=1) as pool:
            state = _prepare(engine, model, gateway, _midnight(first_day, zone), _midnight(last_day, zone, 1))
            months = list(_months(first_day, last_day, zone))
            # The next month's arrays are computed (numpy, mostly outside the GIL) while the database
            # takes this month's rows.
            coming = pool.submit(_compute, model, months[0][2], months[0][3])
            for index, (month, days, _, _) in enumerate(months):
                polls, series = coming.result()
                if index + 1 < len(months):
                    coming = pool.submit(_compute, model, months[index + 1][2], months[index + 1][3])
                before = sum(state.rows_added.values())
                _store(engine, model, gateway, state, polls, series)
                if echo is not None:
                    added = sum(state.rows_added.values()) - before
                    echo(f"{month}: {days} days, {added:,} readings")
    except SQLAlchemyError as exc:
        raise DatabaseError(f"cannot store the history: {describe_db_error(exc)}") from None
    finally:
        engine.dispose()
    return HistorySummary(
        profile=profile,
        serial=site.serial,
        first_day=first_day,
        last_day=last_day,
        rows_added=state.rows_added,
        runs_added=state.runs_added,
        seconds=time.monotonic() - began,
    )


def _profile(name: str) -> Profile:
    if name not in SUPPORTED_PROFILES:
        raise ConfigError(
            f"--days can fill the profiles {', '.join(SUPPORTED_PROFILES)}; {name!r} is not one of them"
        )
    return get_profile(name)


def _midnight(day: date, zone: ZoneInfo, days_after: int = 0) -> int:
    """Epoch second of the local midnight starting `day` (or `days_after` days later)."""
    return int(local_midnight(day + timedelta(days=days_after), zone).timestamp())


def _months(first: date, last: date, zone: ZoneInfo) -> Iterator[tuple[str, int, int, int]]:
    """(YYYY-MM, days, start, end) of each calendar month's part of [first, last]; times in epoch seconds."""
    day = first
    while day <= last:
        following = date(day.year + day.month // 12, day.month % 12 + 1, 1)
        end = min(following - timedelta(days=1), last)
        yield f"{day:%Y-%m}", (end - day).days + 1, _midnight(day, zone), _midnight(end, zone, 1)
        day = following


def _at(epoch: int) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)


def _prepare(engine: Engine, model: GatewayModel, gateway: str, start: int, end: int) -> _State:
    """The gateway and its series, and each series' newest stored row before `start`."""
    profile = model.profile
    info = GatewayInfo(profile.serial, profile.firmware, profile.part_number, profile.metered, None)
    with _transaction(engine) as conn:
        known = gateways.configured_gateway(conn, name=None, serial=profile.serial)
        gateway_id = gateways.save_gateway(conn, info, gateway, _at(start)).id if known is None else known.id
        gateways.save_seen(conn, gateway_id, _at(start), _at(end - 60))
        keys = _series_keys(model)
        series_ids = samples.find_series_ids(conn, gateway_id, [key for key, _ in keys])
        state = _State(gateway_id, series_ids)
        # Each series continues from its newest row before the period, so days before readings already
        # stored (a live demo, say) can still be filled; existing rows are skipped on insert.
        for name, table in samples.READING_TABLES.items():
            ids = [series_ids[key] for key, kind in keys if kind == name]
            state.latest.update(samples.load_latest_readings(conn, table, ids, before=_at(start)))
        meters = {series_ids[key]: _channel(series_ids, key) for key, kind in keys if kind == "meter"}
        state.latest.update(samples.load_latest_meters(conn, meters, before=_at(start)))
    return state


@contextmanager
def _transaction(engine: Engine) -> Iterator[Connection]:
    with engine.connect() as conn:
        # IMMEDIATE: a SQLite writer takes the write lock at once rather than failing to upgrade it later.
        conn = conn.execution_options(**{SQLITE_BEGIN: "IMMEDIATE"})
        with conn.begin():
            yield conn


def _series_keys(model: GatewayModel) -> list[tuple[tuple[str, int, str], str]]:
    """Every series the collector keeps for this profile, with its table."""
    profile = model.profile
    phases = [0, *range(1, profile.phases + 1)] if profile.phases > 1 else [0]
    keys: list[tuple[tuple[str, int, str], str]] = []
    if profile.production_ct:
        keys += [(("production", p, ""), "meter") for p in phases]
        if profile.consumption_ct:
            keys += [(("net_consumption", p, ""), "meter") for p in phases]
            keys += [(("consumption", p, ""), "meter") for p in phases]
    else:
        keys.append((("production", 0, ""), "meter"))
    keys += [(("inverter", 0, serial), "inverter") for serial in model.inverter_serials()]
    keys += [(("battery", 0, serial), "battery") for serial in _battery_serials(model)]
    return keys


def _battery_serials(model: GatewayModel) -> list[str]:
    return bulk.batteries(model, np.array([model.profile.installed_at.timestamp()])).serials


# --- one month ---


def _compute(model: GatewayModel, start: int, end: int) -> tuple[IntArray, list[_Series]]:
    """The runs (one a minute) of [start, end) and every series' readings as they would read them."""
    polls = np.arange(start, end, 60, dtype=np.int64)
    return polls, [*_meters(model, polls), *_inverters(model, polls), *_batteries(model, polls)]


def _store(
    engine: Engine, model: GatewayModel, gateway: str, state: _State, polls: IntArray, series: list[_Series]
) -> None:
    """Filter the readings by the change-detection rule and store them, and the runs, in one transaction."""
    start = int(polls[0])
    rows: dict[str, list[tuple[Any, ...]]] = {name: [] for name in samples.READING_TABLES}
    added_per_minute = np.zeros(polls.size, dtype=np.int64)
    latest = dict(state.latest)  # kept apart until the month is committed

    def flush(conn: Connection, name: str) -> None:
        table = samples.READING_TABLES[name]
        columns = ["series_id", table.time_column, *table.value_columns]
        state.rows_added[name] += save_rows_bulk(conn, table.stored.data, columns, rows[name])
        rows[name] = []

    channels: dict[int, dict[int, tuple[_Series, NDArray[np.bool_]]]] = {}
    with _transaction(engine) as conn:
        for one in series:
            sid = state.series_ids[one.key]
            keep, newest = _changed(one, latest.get(sid))
            if newest is not None:
                latest[sid] = newest
            added_per_minute += np.bincount((one.polled[keep] - start) // 60, minlength=polls.size)
            if one.table == "meter":
                channel, phase = _channel(state.series_ids, one.key)
                channels.setdefault(channel, {})[phase] = (one, keep)
                continue
            rows[one.table] += _rows(sid, one, keep)
            if len(rows[one.table]) >= FLUSH_ROWS:
                flush(conn, one.table)
        for name in rows:
            flush(conn, name)
        for channel, phases in channels.items():
            meter_rows, readings = _channel_rows(channel, phases)
            added = save_rows_bulk(conn, METER_DATA, _METER_COLUMNS, meter_rows)
            # Rows already there (a live demo's) are skipped: then count rows, each a reading at least.
            state.rows_added["meter"] += readings if added == len(meter_rows) else added
        state.runs_added += _save_runs(conn, model, gateway, state.gateway_id, polls, added_per_minute)
    state.latest = latest


def _changed(series: _Series, latest: Latest | None) -> tuple[NDArray[np.bool_], Latest | None]:
    """Which readings the change-detection rule stores, and the newest row afterwards.

    Comparing each reading with the one before it is the same rule as comparing it with the newest stored
    row: a reading that was not stored equals that row.
    """
    times = series.times
    keep = np.zeros(times.size, dtype=bool)
    first = 0
    if latest is not None:
        first = int(np.searchsorted(times, latest[0].timestamp(), side="right"))  # only later ones count
    if first >= times.size:
        return keep, latest
    arrays = [v[first:] for v in series.values.values() if isinstance(v, np.ndarray)]
    changed = np.zeros(times.size - first, dtype=bool)
    for values in arrays:
        changed[1:] |= values[1:] != values[:-1]
    heartbeat = samples.INVERTER_HEARTBEAT if series.table == "inverter" else None
    changed[0] = samples.is_new(latest, _at(int(times[first])), _values_at(series.values, first), heartbeat)
    if heartbeat is not None:
        _beat(times[first:], changed, latest[0].timestamp() if latest is not None else None, heartbeat)
    keep[first:] = changed
    stored = np.flatnonzero(keep)
    if stored.size == 0:
        return keep, latest
    last = int(stored[-1])
    return keep, (_at(int(times[last])), _values_at(series.values, last))


def _beat(times: IntArray, keep: NDArray[np.bool_], last: float | None, heartbeat: timedelta) -> None:
    """Also keep a reading whenever the newest kept one is `heartbeat` old (the rule of `samples.is_new`)."""
    every = heartbeat.total_seconds()
    kept_at = -np.inf if last is None else last
    # Each kept reading restarts the wait, so the walk is in order (a year of inverters: about a second).
    for index in range(times.size):
        if keep[index]:
            kept_at = float(times[index])
        elif times[index] - kept_at >= every:
            keep[index] = True
            kept_at = float(times[index])


def _channel(series_ids: dict[tuple[str, int, str], int], key: tuple[str, int, str]) -> tuple[int, int]:
    """A meter series' channel (its total's series, which keys the rows) and phase."""
    return series_ids[(key[0], 0, "")], key[1]


_METER_COLUMNS = ["series_id", "read_at", *(slot(p, name) for p in PHASES for name in VALUES), "source"]


def _channel_rows(
    channel: int, phases: dict[int, tuple[_Series, NDArray[np.bool_]]]
) -> tuple[list[tuple[Any, ...]], int]:
    """A channel's kept readings as stored rows, and how many readings they hold.

    `meters.encode_row` in arrays: the phases kept at one time share a row, a phase not kept leaves its slot
    empty, and the same encodings apply (a test keeps the two equal).
    """
    first, _ = next(iter(phases.values()))
    kept_any = np.zeros(first.times.size, dtype=bool)
    for _, keep in phases.values():
        kept_any |= keep
    at = np.flatnonzero(kept_any)
    nothing = (np.zeros(at.size, dtype=np.int64), np.zeros(at.size, dtype=bool))
    plain: dict[str, tuple[IntArray, NDArray[np.bool_]]] = {}  # per column: integers, and which are known
    present: dict[int, NDArray[np.bool_]] = {}
    for phase, (one, keep) in phases.items():
        here = keep[at]
        present[phase] = here
        for name in VALUES:
            value = one.values.get(name)
            if isinstance(value, np.ndarray):
                chosen = value[at]
                known = here & np.isfinite(chosen)
                plain[slot(phase, name)] = (
                    np.rint(np.where(known, chosen, 0) * MILLI).astype(np.int64),
                    known,
                )

    def get(phase: int, name: str) -> tuple[IntArray, NDArray[np.bool_]]:
        return plain.get(slot(phase, name), nothing)

    def here_of(phase: int) -> NDArray[np.bool_]:
        return present.get(phase, nothing[1])

    def phases_sum(name: str) -> IntArray:
        total = np.zeros(at.size, dtype=np.int64)
        for phase in phases:
            if phase:
                value, known = get(phase, name)
                total += np.where(known, value, 0)
        return total

    def derived(phase: int) -> NDArray[np.bool_]:
        (counter, k1), (imported, k2), (exported, k3) = (get(phase, name) for name in COUNTERS)
        return np.asarray(k1 & k2 & k3 & (counter == imported - exported), dtype=bool)

    columns: list[list[Any]] = [[channel] * at.size, first.times[at].tolist()]
    for phase in PHASES:
        for name in VALUES:
            numbers, known = get(phase, name)
            if name == "wh_lifetime":
                known = known & ~derived(phase)
            if phase == 0 and name in RESIDUAL:
                numbers = numbers - phases_sum(name)
            elif phase and name == "hz":
                total, total_known = get(0, "hz")
                numbers, known = _derived(numbers, known, total, total_known & here_of(phase))
            elif phase == 0 and name == "volts":
                (v1, k1), (v2, k2), (v3, k3) = (get(p, "volts") for p in (1, 2, 3))
                mean = (v1 + v2 + v3 + 1) // 3
                numbers, known = _derived(numbers, known, mean, k1 & k2 & k3 & here_of(0))
            columns.append(_with_nulls(numbers, known))
    source = first.values["source"]
    columns.append([SOURCES.index(str(source))] * at.size)
    readings = sum(int(keep.sum()) for _, keep in phases.values())
    return list(zip(*columns, strict=True)), readings


def _derived(
    numbers: IntArray, known: NDArray[np.bool_], derived: IntArray, derivable: NDArray[np.bool_]
) -> tuple[IntArray, NDArray[np.bool_]]:
    """A value where it follows from the row (`derivable`): NULL if it is what follows, UNKNOWN if unknown."""
    numbers = np.where(derivable & ~known, UNKNOWN, numbers)
    return numbers, (known | derivable) & ~(derivable & known & (numbers == derived))


def _with_nulls(value: IntArray, known: NDArray[np.bool_]) -> list[Any]:
    if known.all():
        return value.tolist()  # type: ignore[no-any-return]
    out: list[Any] = [None] * value.size
    if known.any():
        listed = value.tolist()
        for index in np.flatnonzero(known).tolist():
            out[index] = listed[index]
    return out


def _values_at(values: Values, index: int) -> dict[str, Any]:
    return {name: v[index].item() if isinstance(v, np.ndarray) else v for name, v in values.items()}


def _rows(series_id: int, series: _Series, keep: NDArray[np.bool_]) -> list[tuple[Any, ...]]:
    """The kept readings as stored rows: integers in the stored units (`db/stored.py`)."""
    count = int(keep.sum())
    stored = samples.READING_TABLES[series.table].stored
    columns: list[list[Any]] = [[series_id] * count, series.times[keep].tolist()]
    for name, value in series.values.items():
        scale = stored.scales.get(name)
        if isinstance(value, np.ndarray) and scale is not None:
            columns.append(np.rint(value[keep] * scale).astype(np.int64).tolist())
        else:
            columns.append([encode_value(name, value, stored.scales)] * count)
    return list(zip(*columns, strict=True))


def _save_runs(
    conn: Connection, model: GatewayModel, gateway: str, gateway_id: int, polls: IntArray, added: IntArray
) -> int:
    """A successful steady-state run per minute, except in minutes that already have one."""
    start, end = _at(int(polls[0])), _at(int(polls[-1]) + 60)
    existing = load_run_minutes(conn, gateway_id, start, end)
    requests = _requests(model, polls)
    runs = [
        (gateway_id, gateway, at, at, "ok", n, 0, rows, None)
        for at, n, rows in zip(polls.tolist(), requests.tolist(), added.tolist(), strict=True)
        if at // 60 not in existing
    ]
    columns = [
        "gateway_id",
        "gateway_name",
        "started_at",
        "finished_at",
        "outcome",
        "requests",
        "cloud_requests",
        "rows_added",
        "error",
    ]
    return save_rows_bulk(conn, RUNS, columns, runs)


def _requests(model: GatewayModel, polls: IntArray) -> IntArray:
    """Gateway requests of each steady-state run: /info, the fast endpoints, and the one due slow endpoint."""
    profile = model.profile
    fast = 2 if profile.production_ct or profile.consumption_ct else 1
    slow_minutes = [DEVICE_DATA_MINUTE]
    if profile.battery_count:
        slow_minutes += [INVENTORY_MINUTE, POWER_MINUTE]
    slow = np.isin((polls // 60) % SLOW_EVERY_MIN, slow_minutes)
    return np.asarray(1 + fast + slow, dtype=np.int64)


def _slow_polls(polls: IntArray, minute: int) -> IntArray:
    """The runs that read a slow endpoint: every fifth minute, at `minute` of the cycle."""
    return np.asarray(polls[(polls // 60) % SLOW_EVERY_MIN == minute], dtype=np.int64)


# --- the series, as sources.build_snapshot makes them ---


def _meters(model: GatewayModel, polls: IntArray) -> list[_Series]:
    profile = model.profile
    times = polls.astype(np.float64)
    if not profile.production_ct:
        # No production CT: /api/v1/production, the inverters' sums, read at the collector's clock.
        reports = model.report_history(float(polls[0]) - DAY_S, float(polls[-1]))
        watts, lifetime = bulk.api_v1_production(model, reports, times)
        values: Values = _meter_values("api_v1", watts=watts, wh_lifetime=lifetime)
        return [_Series(("production", 0, ""), "meter", polls, polls, values)]
    cts = bulk.ct_phases(model, times)
    out = []
    for kind, measurement, from_ct in (
        ("production", pl.PRODUCTION, False),  # production.json's eim entry
        ("net_consumption", pl.NET_CONSUMPTION, True),  # the net CT in /ivp/meters/readings
        ("consumption", pl.TOTAL_CONSUMPTION, False),  # production.json's total-consumption entry
    ):
        if kind != "production" and not profile.consumption_ct:
            continue
        phases = cts[measurement]
        groups = [(0, phases)] + ([(p + 1, [c]) for p, c in enumerate(phases)] if len(phases) > 1 else [])
        for phase, group in groups:
            if from_ct:
                ct = bulk.ct_reading(measurement, group)
                values = _meter_values(
                    "meters",
                    watts=ct.watts,
                    wh_lifetime=ct.wh_delivered - ct.wh_received,
                    wh_imported_lifetime=ct.wh_delivered,
                    wh_exported_lifetime=ct.wh_received,
                    volts=ct.volts,
                    amps=ct.amps,
                    hz=ct.hz,
                    power_factor=ct.power_factor,
                )
            else:
                eim = bulk.eim_entry(measurement, group)
                values = _meter_values(
                    "eim",
                    watts=eim.watts,
                    wh_lifetime=eim.wh_lifetime,
                    volts=eim.volts,
                    amps=eim.amps,
                    power_factor=eim.power_factor,
                )
            out.append(_Series((kind, phase, ""), "meter", polls, polls, values))
        if len(groups) > 1:
            # The total's volts: the mean of its phases, as sources.mean_volts makes it.
            phase_volts = [np.asarray(series.values["volts"]) for series in out[-len(phases) :]]
            mean = phase_volts[0]
            for volts in phase_volts[1:]:
                mean = mean + volts
            mean = mean / len(phase_volts)
            # Python's round, value by value: numpy's rounds a few halves the other way.
            out[-len(phases) - 1].values["volts"] = np.array([round(float(v), 3) for v in mean])
    return out


def _meter_values(source: str, **arrays: FloatArray) -> Values:
    return {name: source if name == "source" else arrays.get(name) for name in samples.METER_VALUES}


def _inverters(model: GatewayModel, polls: IntArray) -> list[_Series]:
    """Each inverter's reports as the collector sees them: the latest one at every slow-endpoint run."""
    profile = model.profile
    reads = _slow_polls(polls, DEVICE_DATA_MINUTE)
    if reads.size == 0:
        return []
    # A day back: at night the latest report is the evening's.
    reports = model.report_history(float(reads[0]) - DAY_S, float(reads[-1]))
    names = samples.READING_TABLES["inverter"].value_columns
    columns: dict[str, FloatArray | None]
    if profile.device_data:
        data = bulk.device_data(model, reports)
        columns = {name: getattr(data, name) for name in names}
    else:  # /api/v1/production/inverters: power and its maximum only
        columns = dict.fromkeys(names)
        columns["watts"] = bulk.reports_watts(model, reports)
        columns["max_watts"] = bulk.max_watts(model, reports)
    out = []
    for index, serial in enumerate(model.inverter_serials()):
        seen, first_read = _seen(reports, index, reads)
        values: Values = {name: None if v is None else v[seen] for name, v in columns.items()}
        times = reports.reported_at[seen].astype(np.int64)
        out.append(_Series(("inverter", 0, serial), "inverter", times, reads[first_read], values))
    return out


def _seen(reports: ReportHistory, inverter: int, reads: IntArray) -> tuple[IntArray, IntArray]:
    """The reports of one inverter that the runs `reads` see, and which run saw each first."""
    latest = bulk.latest_report(reports, inverter, reads.astype(np.float64))
    seen, first_read = np.unique(latest, return_index=True)
    known = seen >= 0
    return seen[known], first_read[known]


def _batteries(model: GatewayModel, polls: IntArray) -> list[_Series]:
    """The batteries' state of charge, from the inventory run of each cycle.

    The collector reads the inventory and the batteries' power in different runs and stores the power only
    when both come in one run (at discovery), so its steady state has no battery watts: neither has this.
    """
    if not model.profile.battery_count:
        return []
    reads = _slow_polls(polls, INVENTORY_MINUTE)
    if reads.size == 0:
        return []
    state = bulk.batteries(model, reads.astype(np.float64))
    times = state.reported_at.astype(np.int64)
    values: Values = {"soc_percent": state.soc_percent, "watts": None, "wh_available": None}
    return [_Series(("battery", 0, serial), "battery", times, reads, values) for serial in state.serials]
