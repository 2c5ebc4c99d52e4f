"""A simulated month of cron runs against the simulator, faults injected at random, checked against truth.

    python benchmarks/soak.py                       # 30 simulated days into SQLite (a collect run a minute)
    python benchmarks/soak.py --quick               # one simulated day with a dense fault schedule (CI)
    python benchmarks/soak.py --days 3 --seed 7 --json
    python benchmarks/soak.py --days 2 --postgres postgresql+psycopg://postgres@127.0.0.1:5432/test

The simulator's clock stands still and is set to each minute in turn; at every minute the faults of that
minute are switched on or off and `envoylog collect` runs as cron runs it: the CLI's own command, called
in-process (typer, with the settings from ENVOYLOG_* variables), on the simulated clock, its stdout and
stderr captured (cron mails any output) and its log records captured at every level. Faults are windows
with a start and an end, drawn at random from `--seed`; the kill fault starts a real `envoylog collect`
process and kills it with SIGKILL, either while it waits on the gateway or in the middle of its write
transaction.

Checked at the end, with a non-zero exit when one fails:
- every fault window is followed by a successful run at the minute it clears or the one after;
- every stored reading equals what the simulator's model says for that moment (the history `demo --days`
  computes from the same model, which a test holds equal to what the collector stores);
- the daily report is within 1 % of the model's exact energy on every day the logger fully covered;
- no password, token or session id in anything printed, logged or written to the run log.
Reported without a verdict: the runs by outcome, the faults, and the lines cron would have mailed.
"""

from __future__ import annotations

import argparse
import bisect
import contextlib
import io
import json
import logging
import math
import os
import random
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import typer.main
from scratch_db import scratch_database  # benchmarks/ is the script's folder, first on sys.path
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

import envoylog.cli.running as cli_running
import envoylog.collect.run as collect_run
import envoylog.simulator.cloud as sim_cloud
import envoylog.simulator.gateway as sim_gateway
from envoylog.cli import app
from envoylog.simulator import EndpointFault, NightlyOutage, Quirks, Simulator
from envoylog.simulator.endpoints import ENDPOINTS
from envoylog.simulator.payloads import WRAP_JOULES
from envoylog.simulator.profiles import get_profile
from envoylog.simulator.tokens import TokenIssuer

APP = "envoylog-soak"
SUCCESS = ("ok", "partial")
DEADLINE_S = 3.0  # a run's deadline: a hang costs seconds, not the 50 s of a real cron run
HANG_S = 10.0  # a hanging endpoint answers after this long, past the deadline
LEAD_IN = timedelta(minutes=20)  # runs before the first local midnight, so that day 1 starts covered
# A day is checked against the model's exact energy when the logger covered this share of it and read the
# gateway within MIDNIGHT_READ of both its midnights (where the report reads the lifetime counters off).
FULL_COVERAGE = 0.9
MIDNIGHT_READ = timedelta(minutes=10)
REPORT_TOLERANCE = 0.01
MAILS_PER_FAULT = 2  # the line that says a problem, and the one that says it cleared
ENERGY_FLOOR_WH = 100.0  # relative errors of smaller daily amounts are taken relative to this
CHECK_JWT = "/auth/check_jwt"
DATA_PATHS = sorted(path for path in ENDPOINTS if path != "/info")
ALL_PATHS = [*sorted(ENDPOINTS), CHECK_JWT]
FIRMWARES = ["8.2.4382", "8.3.5167"]  # updates from the metered profile's 8.2.4345
STEPS_MIN = [-420, -120, -30, -5, 5, 30, 120, 420]  # the collector's clock jumps by this many minutes


# --- the fault schedule ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Kind:
    """A kind of fault: how often a day, how long (minutes), and whether it is transient."""

    name: str
    per_day: float
    minutes: tuple[int, int]
    says: str  # what the fault does, for the summary


KINDS = [
    Kind("session-expired", 1.5, (1, 1), "the gateway forgets its sessions"),
    Kind("token-revoked", 0.3, (1, 1), "the gateway refuses the stored token (a new one from the cloud)"),
    Kind("cloud-down", 0.2, (10, 90), "the token is revoked and the cloud answers 503 for the window"),
    Kind("token-route", 0.2, (5, 30), "the token is revoked and every cloud token route but one refused"),
    Kind("hang", 0.5, (1, 4), f"an endpoint answers after {HANG_S:.0f} s (deadline {DEADLINE_S:.0f} s)"),
    Kind("503-storm", 0.3, (2, 40), "every data endpoint answers 503"),
    Kind("malformed", 0.4, (2, 30), "one endpoint answers a body cut in half"),
    Kind("db", 0.4, (1, 3), "SQLite: another connection holds the write lock; PostgreSQL: restarted"),
    Kind("clock-step", 0.3, (5, 120), "the collector's clock jumps minutes or hours off, then back"),
    Kind("kill", 0.3, (1, 1), "a collect process killed with SIGKILL mid-read or mid-write"),
    Kind("counter-wrap", 0.0, (1, 1), "one inverter's 32-bit joule counter wraps (for good)"),
    Kind("firmware", 0.0, (1, 1), "a firmware update (for good)"),
]
BY_NAME = {kind.name: kind for kind in KINDS}


@dataclass
class Window:
    """One fault: from `start` (a run's minute) until `end` (the first minute without it)."""

    kind: str
    start: datetime
    end: datetime
    detail: str = ""
    data: dict[str, Any] = field(default_factory=dict)

    @property
    def minutes(self) -> int:
        return round((self.end - self.start).total_seconds() / 60)

    def active(self, t: datetime) -> bool:
        return self.start <= t < self.end


def nightly_outages(first: date, last: date, zone: ZoneInfo, seed: int) -> list[Window]:
    """The gateway's nightly pause: dark (connections dropped), then booting (503), as the latency model's."""
    out = []
    for n in range((last - first).days + 1):
        w = NightlyOutage().window(first + timedelta(days=n), zone, seed)
        start, answering, ready = _ceil(w.start), _ceil(w.answering), _ceil(w.ready)
        if ready > start:
            out.append(Window("nightly-outage", start, ready, data={"answering": answering}))
    return out


def _ceil(t: datetime) -> datetime:
    floor = t.replace(second=0, microsecond=0)
    return floor if floor == t else floor + timedelta(minutes=1)


def random_schedule(
    rng: random.Random, begin: datetime, end: datetime, zone: ZoneInfo, days: int, quick: bool
) -> list[Window]:
    """Fault windows that neither overlap nor touch the nightly outage (22:50-23:20 local), 5 min apart."""
    wanted: list[str] = []
    if quick:
        wanted = [k.name for k in KINDS] + ["session-expired", "hang", "kill", "malformed"]
    else:
        for kind in KINDS:
            count = kind.per_day * days
            wanted += [kind.name] * (int(count) + (rng.random() < count - int(count)))
        wanted += ["counter-wrap"] + ["firmware"] * max(1, min(len(FIRMWARES), days // 15))
    rng.shuffle(wanted)
    taken: list[tuple[datetime, datetime]] = []
    windows = []
    total = int((end - begin).total_seconds() // 60)
    for name in wanted:
        kind = BY_NAME[name]
        low, high = kind.minutes
        if quick and name in ("cloud-down", "503-storm"):
            low = high = 25  # past the quiet window: a real problem, said once
        elif quick:
            high = min(
                high, 2 if name in ("hang", "db") else 20
            )  # each hanging or locked minute costs seconds
        for _ in range(200):
            minutes = rng.randint(low, high)
            start = begin + timedelta(minutes=rng.randrange(0, max(1, total - minutes - 5)))
            stop = start + timedelta(minutes=minutes)
            if _near_outage(start, stop, zone):
                continue
            if any(start < b + timedelta(minutes=5) and a < stop + timedelta(minutes=5) for a, b in taken):
                continue
            taken.append((start, stop))
            windows.append(Window(name, start, stop))
            break
    windows.sort(key=lambda w: w.start)
    kills = 0
    firmwares = iter(FIRMWARES)
    for w in windows:
        if w.kind == "kill":
            w.detail = ("mid-read", "mid-write")[kills % 2]
            kills += 1
        elif w.kind == "firmware":
            w.detail = next(firmwares, FIRMWARES[-1])
        elif w.kind == "hang":
            w.detail = rng.choice(["/ivp/meters/readings", "/production.json"])
        elif w.kind == "malformed":
            w.detail = rng.choice(
                ["/ivp/meters/readings", "/production.json", "/ivp/pdm/device_data", "/info"]
            )
        elif w.kind == "clock-step":
            w.detail = f"{rng.choice(STEPS_MIN):+d} min"
            w.data["offset"] = timedelta(minutes=int(w.detail.split()[0]))
        elif w.kind == "token-route":
            w.detail = rng.choice(["/tokens refused", "/entrez_tokens refused"])
    return windows


def _near_outage(start: datetime, stop: datetime, zone: ZoneInfo) -> bool:
    t = start - timedelta(minutes=10)
    while t <= stop + timedelta(minutes=10):
        local = t.astimezone(zone)
        if (local.hour == 22 and local.minute >= 50) or (local.hour == 23 and local.minute < 20):
            return True
        t += timedelta(minutes=5)
    return False


# --- secrets the simulator hands out --------------------------------------------------------------


class Secrets:
    """Every token, session id and cookie the simulator issued, and the account's password."""

    def __init__(self, password: str) -> None:
        self.values: list[str] = [password]
        self.tokens = 0
        self.sessions = 0

    def add(self, value: str, token: bool = False) -> None:
        self.values.append(value)
        if token:
            self.tokens += 1
            self.values.append(value.rsplit(".", 1)[-1])  # the signature alone is as good as the token
        else:
            self.sessions += 1

    def found_in(self, texts: list[str]) -> list[str]:
        return [
            f"{secret[:6]}... in {text[:120]!r}" for text in texts for secret in self.values if secret in text
        ]


class _RecordingSecrets:
    """Stands in for the `secrets` module of the simulator's gateway and cloud: records what they draw."""

    def __init__(self, real: Any, seen: Secrets) -> None:
        self._real, self._seen = real, seen

    def __getattr__(self, name: str) -> Any:
        function = getattr(self._real, name)
        if not name.startswith("token_"):
            return function

        def recorded(*args: Any, **kwargs: Any) -> Any:
            value = function(*args, **kwargs)
            self._seen.add(str(value))
            return value

        return recorded


def record_secrets(seen: Secrets) -> None:
    for module in (sim_gateway, sim_cloud):
        module.secrets = _RecordingSecrets(module.secrets, seen)  # type: ignore[attr-defined]
    issue = TokenIssuer.issue

    def issued(self: TokenIssuer, *args: Any, **kwargs: Any) -> str:
        token = issue(self, *args, **kwargs)
        seen.add(token, token=True)
        return token

    TokenIssuer.issue = issued  # type: ignore[method-assign]


# --- running `envoylog collect` as cron does, in-process --------------------------------------------


class Capture(logging.Handler):
    """Every log record of the collector, at every level (the simulator's own threads left out)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.threadName.startswith("envoylog-simulator") or record.name.startswith("envoylog.simulator"):
            return
        try:
            line = record.getMessage()
        except Exception:
            line = str(record.msg)
        if record.exc_info:
            line += "\n" + logging.Formatter().formatException(record.exc_info)
        self.lines.append(line)


class _PrintedLevel(logging.Filter):
    """What the CLI's logging prints without -v: warnings and worse (it sets the root logger so)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.WARNING


@dataclass
class RunResult:
    at: datetime
    outcome: str
    exit: int
    printed: list[str]
    requests: int = 0
    cloud_requests: int = 0
    error: str | None = None


class Cron:
    """`envoylog collect` at the simulated minute: the CLI's own command, on the simulator's clock."""

    def __init__(self, sim: Simulator, db_url: str, fresh_engines: bool) -> None:
        self.sim = sim
        self.db_url = db_url
        self.offset = timedelta(0)  # the collector's clock minus the true time (a clock step)
        self.capture = Capture()
        self.last_runs: list[Any] = []
        # The click command cron's process builds once at its start: built once here, not every minute.
        self.command = typer.main.get_command(app)
        real_collect_all = collect_run.collect_all

        def collect_all(settings: Any, **options: Any) -> Any:
            options["clock"] = lambda: sim.clock.now() + self.offset
            options["cloud_verify"] = str(sim.ca_file)
            self.last_runs = real_collect_all(settings, **options)
            return self.last_runs

        collect_run.collect_all = collect_all  # the command imports it when it runs
        configure = cli_running.configure_logging

        def configure_logging(verbose: bool) -> None:
            configure(verbose)
            root = logging.getLogger()
            for handler in root.handlers:
                handler.addFilter(_PrintedLevel())
            root.setLevel(logging.DEBUG)
            root.addHandler(self.capture)
            logging.getLogger("sqlalchemy").setLevel(logging.WARNING)

        cli_running.configure_logging = configure_logging
        if not fresh_engines:
            # One engine for the whole soak: opening one checks the schema's revision (Alembic reads every
            # migration script) and a new engine compiles every statement again; cron pays both each run.
            real_open = collect_run.open_database
            engines: dict[str, Any] = {}

            def open_database(url: str, **options: Any) -> Any:
                if url not in engines:
                    engines[url] = real_open(url, **options)
                return engines[url]

            collect_run.open_database = open_database

    def run(self, at: datetime) -> RunResult:
        self.last_runs = []
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = self.command.main(["collect", "--deadline", str(DEADLINE_S)], standalone_mode=False)
        printed = [line for line in (out.getvalue() + err.getvalue()).splitlines() if line.strip()]
        if not self.last_runs:
            return RunResult(at, "failed", int(code or 0), printed, error=printed[0] if printed else None)
        (run,) = self.last_runs
        error = str(run.error) if run.error else "; ".join(run.endpoint_errors) or None
        return RunResult(at, run.outcome, int(code or 0), printed, run.requests, run.cloud_requests, error)

    def take_log(self) -> list[str]:
        lines, self.capture.lines = self.capture.lines, []
        return lines


_CHILD = """
import os, signal, sys
from datetime import datetime
import envoylog.collect.run as run
mode, at = sys.argv[1], datetime.fromisoformat(sys.argv[2])
real = run.collect_all
def collect_all(settings, **options):
    options["clock"] = lambda: at  # the simulated minute (the simulator's clock stands still)
    return real(settings, **options)
run.collect_all = collect_all
if mode == "mid-write":
    save = run.samples.save_snapshot
    def dying(conn, *args, **kwargs):
        result = save(conn, *args, **kwargs)
        os.kill(os.getpid(), signal.SIGKILL)  # the rows are written, the transaction is not committed
        return result
    run.samples.save_snapshot = dying
sys.argv = ["envoylog", "collect", "--deadline", sys.argv[3]]
from envoylog.cli import main
main()
"""


def killed_run(sim: Simulator, env: dict[str, str], at: datetime, mode: str) -> RunResult:
    """A real `envoylog collect` process, killed with SIGKILL mid-read (waiting on a hanging endpoint)
    or mid-write (inside its write transaction, rows written and not committed)."""
    if mode == "mid-read":
        sim.set_endpoint_fault("/ivp/meters/readings", EndpointFault(hang_seconds=HANG_S))
    sim.clear_request_log()
    process = subprocess.Popen(  # noqa: S603
        [sys.executable, "-c", _CHILD, mode, at.isoformat(), str(DEADLINE_S)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    if mode == "mid-read":
        limit = time.monotonic() + 30
        while time.monotonic() < limit and process.poll() is None:
            if any(e.path.startswith("/ivp/meters/readings") for e in sim.request_log()):
                break
            time.sleep(0.02)
        process.kill()
    out, err = process.communicate(timeout=60)
    if mode == "mid-read":
        sim.set_endpoint_fault("/ivp/meters/readings", None)
    lapse_claims(env["ENVOYLOG_DB"])
    printed = [line for line in (out + err).splitlines() if line.strip()]
    outcome = "killed" if process.returncode == -signal.SIGKILL else f"not killed (exit {process.returncode})"
    return RunResult(at, outcome, process.returncode, printed, error=f"SIGKILL {mode}")


def lapse_claims(db_url: str) -> None:
    """The killed process's claim on the gateway runs out, as it has by the next cron minute.

    A claim lasts the run's deadline plus a margin of real time; the soak's next run comes milliseconds
    later, not a minute, so the lease is ended here instead of waited out.
    """
    engine = create_engine(db_url)
    try:
        with engine.begin() as conn:
            conn.execute(text("UPDATE claims SET until_ms = 0"))
    finally:
        engine.dispose()


# --- faults switched on and off at each minute -----------------------------------------------------


class Faulter:
    """Applies the windows active at a minute to the simulator, the database and the collector's clock."""

    def __init__(self, sim: Simulator, cron: Cron, db_url: str, postgres: bool) -> None:
        self.sim, self.cron, self.db_url, self.postgres = sim, cron, db_url, postgres
        self.active: list[Window] = []
        self.quirks = Quirks()  # the lasting ones: a wrapped counter, the firmware
        self.locker: sqlite3.Connection | None = None
        self.killer: tuple[threading.Thread, threading.Event] | None = None

    def at(self, t: datetime, windows: list[Window]) -> None:
        active = [w for w in windows if w.active(t)]
        starting = [w for w in active if w.start == t]
        for w in starting:
            if w.kind == "counter-wrap":
                self.quirks.counter_wrap_at = t
            elif w.kind == "firmware":
                self.quirks.firmware = w.detail
        if active == self.active and not starting and not any(w.kind == "nightly-outage" for w in active):
            return
        self._heal_cloud()
        self.sim.clear_faults()
        self.sim.set_faults(quirks=self.quirks)
        self.cron.offset = timedelta(0)
        want_lock = False
        for w in active:
            want_lock |= self._apply(w, t, w in starting)
        self._database(want_lock)
        self.active = active

    def _apply(self, w: Window, t: datetime, starting: bool) -> bool:
        sim = self.sim
        if w.kind == "nightly-outage":
            if t < w.data["answering"]:
                sim.set_faults(endpoints={p: EndpointFault(drops=10**9) for p in ALL_PATHS})
            else:
                if not w.data.get("booted"):
                    sim.expire_sessions()  # the boot ends every session
                    w.data["booted"] = True
                sim.set_faults(endpoints={p: EndpointFault(status=503) for p in DATA_PATHS})
        elif w.kind == "session-expired" and starting:
            sim.expire_sessions()
        elif w.kind in ("token-revoked", "cloud-down", "token-route") and starting:
            sim.revoke_tokens()
        if w.kind == "cloud-down":
            sim.set_faults(cloud_down=True)
        elif w.kind == "token-route":
            if w.detail.startswith("/tokens"):
                sim.faults.set_cloud("/tokens", EndpointFault(status=403))
            else:
                sim.faults.set_cloud("/entrez_tokens", EndpointFault(body="<html>no token</html>"))
        elif w.kind == "hang":
            sim.set_endpoint_fault(w.detail, EndpointFault(hang_seconds=HANG_S))
        elif w.kind == "503-storm":
            sim.set_faults(endpoints={p: EndpointFault(status=503) for p in DATA_PATHS})
        elif w.kind == "malformed":
            sim.set_endpoint_fault(w.detail, EndpointFault(malformed=True))
        elif w.kind == "clock-step":
            self.cron.offset = w.data["offset"]
        return w.kind == "db"

    def _heal_cloud(self) -> None:
        for path in ("/tokens", "/entrez_tokens"):
            self.sim.faults.set_cloud(path, None)

    def _database(self, on: bool) -> None:
        if self.postgres:
            if on and self.killer is None:
                stop = threading.Event()
                thread = threading.Thread(target=_terminate_backends, args=(self.db_url, stop), daemon=True)
                thread.start()
                self.killer = (thread, stop)
            elif not on and self.killer is not None:
                self.killer[1].set()
                self.killer[0].join()
                self.killer = None
            return
        if on and self.locker is None:
            path = make_url(self.db_url).database or ""
            self.locker = sqlite3.connect(path, timeout=10, isolation_level=None)
            self.locker.execute("BEGIN EXCLUSIVE")
        elif not on and self.locker is not None:
            self.locker.execute("ROLLBACK")
            self.locker.close()
            self.locker = None

    def close(self) -> None:
        self._database(False)


def _terminate_backends(db_url: str, stop: threading.Event) -> None:
    """PostgreSQL restarting: every connection of the collector is ended, again and again, until `stop`."""
    engine = create_engine(db_url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            while not stop.is_set():
                conn.execute(
                    text(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                        "WHERE application_name = :app AND pid <> pg_backend_pid()"
                    ),
                    {"app": APP},
                )
                stop.wait(0.02)
    finally:
        engine.dispose()


# --- checks -----------------------------------------------------------------------------------------

TABLES = {"meter_readings": "read_at", "inverter_readings": "reported_at", "battery_readings": "read_at"}
TOLERANCE = {"power_factor": 0.0101}  # the gateway prints power factors with two decimals, the rest three
DEFAULT_TOLERANCE = 0.0011


def _rows(db_url: str, table: str) -> dict[tuple[str, int, str], tuple[list[int], list[dict[str, Any]]]]:
    column = TABLES[table]
    engine = create_engine(db_url)
    out: dict[tuple[str, int, str], list[tuple[int, dict[str, Any]]]] = defaultdict(list)
    sql = f"SELECT s.kind, s.phase, s.device, r.* FROM {table} r JOIN series s ON s.id = r.series_id"  # noqa: S608
    try:
        with engine.connect() as conn:
            for row in conn.execute(text(sql)).mappings():
                at = row[column]
                epoch = int(at.timestamp()) if isinstance(at, datetime) else int(at)
                values = {
                    k: v for k, v in row.items() if k not in ("kind", "phase", "device", "series_id", column)
                }
                out[(row["kind"], row["phase"], row["device"])].append((epoch, values))
    finally:
        engine.dispose()
    result = {}
    for key, rows in out.items():
        rows.sort(key=lambda item: item[0])
        result[key] = ([at for at, _ in rows], [values for _, values in rows])
    return result


def _differs(name: str, stored: Any, truth: Any) -> bool:
    if isinstance(stored, float) and isinstance(truth, float):
        return not math.isclose(stored, truth, rel_tol=1e-12, abs_tol=TOLERANCE.get(name, DEFAULT_TOLERANCE))
    return stored != truth


def garbage(db_url: str, truth_url: str, wrap_at: datetime | None) -> tuple[int, int, int, int, list[str]]:
    """Stored rows against the model's: compared, disagreeing, as served after a wrap, from a fallback
    endpoint (same values), and examples of those that disagree."""
    compared = bad = wrapped = other = 0
    examples: list[str] = []
    kinds: dict[tuple[str, Any, tuple[str, ...]], list[int]] = defaultdict(list)
    first_seen: dict[tuple[str, Any, tuple[str, ...]], str] = {}
    for table in TABLES:
        stored, truth = _rows(db_url, table), _rows(truth_url, table)
        for key, (times, rows) in stored.items():
            if key not in truth:
                bad += len(rows)
                examples.append(f"{table} {key}: a series the model does not have ({len(rows)} rows)")
                continue
            truth_times, truth_rows = truth[key]
            for at, values in zip(times, rows, strict=True):
                compared += 1
                i = bisect.bisect_right(truth_times, at) - 1
                if i < 0:
                    bad += 1
                    examples.append(f"{table} {key} at {_iso(at)}: before the model's first row")
                    continue
                expected = truth_rows[i]
                names = (
                    ["soc_percent"] if table == "battery_readings" else list(values)
                )  # watts: discovery only
                wrong = [n for n in names if _differs(n, values[n], expected.get(n))]
                if wrong and _another_source(values, expected, wrong):
                    other += 1  # the fallback endpoint's reading: the same values, fewer columns
                elif (
                    wrong == ["joules_lifetime"]
                    and wrap_at is not None
                    and at >= wrap_at.timestamp() - 3600
                    and abs(expected["joules_lifetime"] - values["joules_lifetime"] - WRAP_JOULES) < 1
                ):
                    wrapped += 1  # stored as served: the report step adds the wrap back
                elif wrong:
                    bad += 1
                    kinds[(table, key, tuple(wrong))].append(at)
                    if len(kinds[(table, key, tuple(wrong))]) == 1:
                        detail = ", ".join(f"{n} {values[n]!r} (model {expected.get(n)!r})" for n in wrong)
                        first_seen[(table, key, tuple(wrong))] = detail
    for (table, key, _), times_bad in sorted(kinds.items(), key=lambda item: item[1][0]):
        detail = first_seen[(table, key, _)]
        examples.append(
            f"{len(times_bad)} rows of {table} {key} from {_iso(times_bad[0])} to {_iso(times_bad[-1])}; "
            f"first: {detail}"
        )
    return compared, bad, wrapped, other, examples


def _another_source(stored: dict[str, Any], model: dict[str, Any], wrong: list[str]) -> bool:
    """A reading taken from another endpoint than the model's history assumes: where the other endpoint
    has no such column one side is null, and every column both have agrees."""
    if "source" not in wrong or stored["source"] == model.get("source"):
        return False
    return all(n == "source" or stored[n] is None or model.get(n) is None for n in wrong)


def _iso(epoch: int) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%MZ")


def report_errors(
    db_url: str, profile: str, first: date, last: date, zone: ZoneInfo, read_near: Callable[[datetime], bool]
) -> list[dict[str, Any]]:
    """Each day's report against the model's exact energy (relative errors)."""
    from envoylog.reports import daily_report
    from envoylog.simulator.endpoints import GatewayModel

    model = GatewayModel(get_profile(profile), seed=1)
    frame = daily_report(db_url, first, last, timezone=str(zone))
    out = []
    for row in frame.itertuples():
        day = date.fromisoformat(str(row.day)[:10])
        start = datetime.combine(day, datetime.min.time(), zone)
        end = datetime.combine(day + timedelta(days=1), datetime.min.time(), zone)
        errors = {}
        for name, exact in (
            ("production_wh", model.production_wh(start, end)),
            ("consumption_wh", model.consumption_wh(start, end)),
            ("import_wh", model.import_wh(start, end)),
            ("export_wh", model.export_wh(start, end)),
        ):
            got = getattr(row, name)
            errors[name] = math.inf if got != got else abs(got - exact) / max(abs(exact), ENERGY_FLOOR_WH)
        worst = max(errors, key=lambda n: errors[n])
        out.append(
            {
                "day": day.isoformat(),
                "coverage": float(row.coverage),
                "checked": float(row.coverage) >= FULL_COVERAGE and read_near(start) and read_near(end),
                "max_error": errors[worst],
                "worst": worst,
            }
        )
    return out


def recoveries(windows: list[Window], results: dict[datetime, RunResult]) -> tuple[int, list[str]]:
    """Windows followed by a successful run at the minute they clear or the next; the misses."""
    met, misses = 0, []
    for w in windows:
        clears = w.end
        if w.kind == "cloud-down":
            clears = _cloud_retry(w.start, w.end)
        after = [results.get(clears), results.get(clears + timedelta(minutes=1))]
        if any(r is not None and r.outcome in SUCCESS for r in after):
            met += 1
        elif all(r is None for r in after):
            met += 1  # the soak ended first
        else:
            seen = "; ".join(f"{r.at:%H:%M} {r.outcome}: {(r.error or '')[:100]}" for r in after if r)
            misses.append(
                f"{w.kind} {w.detail} {w.start:%Y-%m-%d %H:%M}-{w.end:%H:%M}Z: {seen}".replace("  ", " ")
            )
    return met, misses


def _cloud_retry(failed: datetime, back: datetime) -> datetime:
    """When the collector asks the cloud again after it failed at `failed` (SPEC: after a failed cloud
    login or token request the next attempt waits at least an hour, doubling up to twelve): the first
    attempt once the cloud is back at `back`. A cloud fault clears then, not when the cloud returns."""
    at, wait = failed, timedelta(hours=1)
    while at < back:
        at += wait
        wait = min(wait * 2, timedelta(hours=12))
    return at


def _problem(line: str) -> str:
    """A printed line with its numbers taken out: lines that differ only by durations group together."""
    return re.sub(r"\d+(\.\d+)?", "#", line)


def mail_groups(results: list[RunResult], windows: list[Window]) -> list[dict[str, Any]]:
    """The runs that printed anything, grouped by what they printed and the fault behind them."""
    groups: dict[tuple[str, str], list[RunResult]] = defaultdict(list)
    for r in results:
        if not r.printed:
            continue
        cause = "no fault"
        for w in windows:
            if w.start <= r.at < w.end + timedelta(hours=2):
                cause = f"{w.kind} {w.start:%m-%d %H:%M}Z"
        groups[(cause, _problem(r.printed[0]))].append(r)
    return [
        {
            "fault": cause,
            "runs": len(runs),
            "first": f"{runs[0].at:%Y-%m-%d %H:%M}Z",
            "line": runs[0].printed[0][:160],
        }
        for (cause, _), runs in sorted(groups.items(), key=lambda item: item[1][0].at)
    ]


# --- the soak ---------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--days", type=int, default=30, help="simulated days (a collect run a minute)")
    parser.add_argument("--seed", type=int, default=1, help="seed of the fault schedule")
    parser.add_argument(
        "--first-day", default="2026-03-16", help="the first local day (a month holds a DST change)"
    )
    parser.add_argument("--profile", default="metered", help="simulator profile (metered, battery, standard)")
    parser.add_argument("--postgres", help="a PostgreSQL URL (a fresh schema is made in it); else SQLite")
    parser.add_argument(
        "--quick", action="store_true", help="one simulated day with every fault at least once"
    )
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    parser.add_argument(
        "--no-faults", action="store_true", help="the baseline: no faults but the nightly outage"
    )
    parser.add_argument(
        "--work", type=Path, help="keep the databases in this new directory (for a look after)"
    )
    parser.add_argument(
        "--fresh-engines", action="store_true", help="a new database engine per run, exactly as cron (slower)"
    )
    args = parser.parse_args()
    summary = soak(args)
    print(json.dumps(summary, indent=2, default=str) if args.json else describe(summary))
    return 0 if summary["passed"] else 1


def soak(args: argparse.Namespace) -> dict[str, Any]:
    days = 1 if args.quick else args.days
    profile = get_profile(args.profile)
    zone = ZoneInfo(profile.timezone)
    first = date.fromisoformat(args.first_day)
    last = first + timedelta(days=days - 1)
    begin = datetime.combine(first, datetime.min.time(), zone).astimezone(UTC)
    end = datetime.combine(last + timedelta(days=1), datetime.min.time(), zone).astimezone(UTC)
    rng = random.Random(args.seed)
    windows = [] if args.no_faults else random_schedule(rng, begin, end, zone, days, args.quick)
    windows += nightly_outages(first - timedelta(days=1), last, zone, seed=1)
    windows = sorted((w for w in windows if begin - LEAD_IN <= w.start < end), key=lambda w: w.start)
    wrap_at = next((w.start for w in windows if w.kind == "counter-wrap"), None)

    with contextlib.ExitStack() as stack:
        if args.work:
            args.work.mkdir(parents=True)
            work = args.work.resolve()
        else:
            work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="envoylog-soak-")))
        db_url, cleanup = fresh_database(args.postgres, work)
        try:
            with (
                isolated_environment(work),
                Simulator(profile, start=begin - LEAD_IN, speed=0, state_dir=work / "sim") as sim,
            ):
                secrets = Secrets(sim.password)
                record_secrets(secrets)
                os.environ.update(sim.environment(), ENVOYLOG_DB=db_url, ENVOYLOG_TIMEZONE=str(zone))
                cron = Cron(sim, db_url, args.fresh_engines)
                faulter = Faulter(sim, cron, db_url, bool(args.postgres))
                results, leaks, timing = run_minutes(
                    sim, cron, faulter, windows, begin - LEAD_IN, end, secrets
                )
                leaks += secrets.found_in(run_log_errors(db_url))
                faulter.close()
            truth_url = f"sqlite:///{work / 'truth.db'}"
            from envoylog.demo.filler import fill_history

            fill_history(
                truth_url, first - timedelta(days=1), last, profile=args.profile, serial=profile.serial
            )
            rows = garbage(db_url, truth_url, wrap_at)
            read = sorted(r.at for r in results if r.outcome in SUCCESS)

            def read_near(t: datetime) -> bool:
                i = bisect.bisect_left(read, t - MIDNIGHT_READ)
                return i < len(read) and read[i] <= t + MIDNIGHT_READ

            reports = report_errors(db_url, args.profile, first, last, zone, read_near)
        finally:
            cleanup()
    return summarize(args, days, windows, results, timing, leaks, secrets, rows, reports)


def run_minutes(
    sim: Simulator,
    cron: Cron,
    faulter: Faulter,
    windows: list[Window],
    begin: datetime,
    end: datetime,
    secrets: Secrets,
) -> tuple[list[RunResult], list[str], dict[str, float]]:
    results: list[RunResult] = []
    leaks: list[str] = []
    env = dict(os.environ)
    kills = {w.start: w.detail for w in windows if w.kind == "kill"}
    started = time.monotonic()
    t = begin
    day_started, per_day = time.monotonic(), []
    while t < end:
        sim.clock.set(t)
        faulter.at(t, windows)
        if t in kills:
            result = killed_run(sim, env, t, kills[t])
            logged: list[str] = []
        else:
            result = cron.run(t)
            logged = cron.take_log()
        leaks += secrets.found_in(result.printed + logged)
        results.append(result)
        t += timedelta(minutes=1)
        if len(results) % 1440 == 0:
            per_day.append(time.monotonic() - day_started)
            day_started = time.monotonic()
            print(
                f"soak: {t:%Y-%m-%d %H:%MZ}, {len(results)} runs, {per_day[-1]:.0f} s for the last day",
                file=sys.stderr,
            )
        if len(results) % 500 == 0:
            sim.clear_request_log()
    return results, leaks, {"wall_s": time.monotonic() - started, "runs": len(results)}


def run_log_errors(db_url: str) -> list[str]:
    engine = create_engine(db_url)
    try:
        with engine.connect() as conn:
            return [row[0] for row in conn.execute(text("SELECT error FROM runs WHERE error IS NOT NULL"))]
    finally:
        engine.dispose()


def summarize(
    args: argparse.Namespace,
    days: int,
    windows: list[Window],
    results: list[RunResult],
    timing: dict[str, float],
    leaks: list[str],
    secrets: Secrets,
    rows: tuple[int, int, int, int, list[str]],
    reports: list[dict[str, Any]],
) -> dict[str, Any]:
    by_minute = {r.at: r for r in results}
    met, misses = recoveries(windows, by_minute)
    faults: dict[str, dict[str, int]] = defaultdict(lambda: {"windows": 0, "minutes": 0})
    for w in windows:
        faults[w.kind]["windows"] += 1
        faults[w.kind]["minutes"] += w.minutes
    checked = [d for d in reports if d["checked"]]
    worst = max(checked, key=lambda d: d["max_error"], default=None)
    mails = mail_groups(results, windows)
    # One mail when a problem becomes real and one when it clears: at most two runs per fault window, and
    # none without a fault.
    per_fault = Counter(g["fault"] for g in mails for _ in range(g["runs"]))
    too_many = {fault: n for fault, n in per_fault.items() if n > MAILS_PER_FAULT or fault == "no fault"}
    compared, bad, wrapped, other, examples = rows
    checks = {
        "garbage": bad == 0,
        "recoveries": not misses,
        "reports": worst is not None and worst["max_error"] <= REPORT_TOLERANCE,
        "secrets": not leaks,
        "mails": not too_many,
    }
    return {
        "passed": all(checks.values()),
        "checks": checks,
        "days": days,
        "seed": args.seed,
        "database": "PostgreSQL" if args.postgres else "SQLite",
        "engines": "a new engine per run" if args.fresh_engines else "one engine for the soak",
        "wall_s": round(timing["wall_s"], 1),
        "wall_s_per_day": round(timing["wall_s"] * 1440 / max(1, timing["runs"]), 1),
        "runs": dict(Counter(r.outcome for r in results), total=len(results)),
        "faults": dict(faults),
        "kill": "real `envoylog collect` processes, SIGKILL (mid-read: waiting on a hanging endpoint; "
        "mid-write: inside the write transaction)",
        "recoveries": {"met": met, "total": len(windows), "misses": misses},
        "rows": {
            "compared": compared,
            "disagreeing": bad,
            "wrapped_as_served": wrapped,
            "other_source": other,
            "examples": examples,
        },
        "reports": {
            "days_checked": len(checked),
            "days": len(reports),
            "rule": f"days covered >= {FULL_COVERAGE:.0%} and read within "
            f"{MIDNIGHT_READ.seconds // 60} min of both midnights",
            "max_error": worst["max_error"] if worst else None,
            "worst": worst,
            "max_error_all_days": max((d["max_error"] for d in reports), default=None),
        },
        "mails": {
            "runs": sum(g["runs"] for g in mails),
            "problems": len(per_fault),
            "too_many": too_many,
            "groups": mails,
        },
        "secrets": {
            "password": 1,
            "tokens": secrets.tokens,
            "sessions": secrets.sessions,
            "seen": leaks[:10],
        },
    }


def describe(s: dict[str, Any]) -> str:
    runs = s["runs"]
    lines = [
        f"soak: {s['days']} simulated days, seed {s['seed']}, {s['database']} ({s['engines']}), "
        f"{s['wall_s']:.0f} s wall, {s['wall_s_per_day']:.0f} s per simulated day",
        "runs: " + ", ".join(f"{k} {v}" for k, v in runs.items()),
        "faults: "
        + ", ".join(f"{k} {v['windows']} ({v['minutes']} min)" for k, v in sorted(s["faults"].items())),
    ]
    lines.append(f"kill fault: {s['kill']}")
    rec = s["recoveries"]
    lines.append(
        f"recoveries: {rec['met']}/{rec['total']} windows followed by a successful run within one run of "
        "clearing (a cloud fault clears at the next cloud attempt: SPEC's wait of an hour, doubling)"
    )
    lines += [f"  missed: {m}" for m in rec["misses"]]
    rows = s["rows"]
    lines.append(
        f"rows that disagree with the model: {rows['disagreeing']} of {rows['compared']} "
        f"({rows['wrapped_as_served']} stored as served after the counter wrap, "
        f"{rows['other_source']} read from a fallback endpoint: the same values, fewer columns)"
    )
    lines += [f"  {e}" for e in rows["examples"]]
    rep = s["reports"]
    error = "-" if rep["max_error"] is None else f"{rep['max_error']:.3%}"
    lines.append(
        f"daily reports: max error {error} on {rep['days_checked']} of {rep['days']} days ({rep['rule']}); "
        f"on every day {rep['max_error_all_days'] or 0:.3%}"
    )
    mails = s["mails"]
    lines.append(
        f"mails (runs that printed anything): {mails['runs']} for {mails['problems']} problems "
        f"(at most {MAILS_PER_FAULT} per fault: when it became real, when it cleared)"
    )
    lines += [f"  too many for {fault}: {n}" for fault, n in mails["too_many"].items()]
    lines += [f"  {g['runs']:>4}  {g['first']}  [{g['fault']}]  {g['line']}" for g in mails["groups"]]
    sec = s["secrets"]
    lines.append(
        f"secrets seen in output, logs and the run log: {len(sec['seen'])} "
        f"(looked for the password, {sec['tokens']} tokens, {sec['sessions']} session ids)"
    )
    lines += [f"  {x}" for x in sec["seen"]]
    lines.append("checks: " + ", ".join(f"{k} {'ok' if v else 'FAILED'}" for k, v in s["checks"].items()))
    return "\n".join(lines)


def fresh_database(postgres: str | None, work: Path) -> tuple[str, Callable[[], None]]:
    return scratch_database(postgres, work, "soak", APP)


@contextlib.contextmanager
def isolated_environment(work: Path) -> Iterator[None]:
    """No ENVOYLOG_* settings of the shell and no user config file: the soak's own, restored after."""
    saved = dict(os.environ)
    for name in list(os.environ):
        if name.startswith("ENVOYLOG_"):
            del os.environ[name]
    os.environ.update(
        HOME=str(work / "home"),
        XDG_CONFIG_HOME=str(work / "home" / ".config"),
        XDG_DATA_HOME=str(work / "home" / ".local" / "share"),
    )
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)
        shutil.rmtree(work / "home", ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
