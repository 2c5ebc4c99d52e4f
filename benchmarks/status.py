"""`envoylog status` on a fleet: 1,000 gateways and a day of their run log, timed as a process and as queries.

    python benchmarks/status.py [--gateways 1000] [--hours 24] [--reading-hours 6] [--outage-days 0]
                                [--rounds 7] [--postgres URL] [--other-tree PATH] [--before-rounds 3]

Fills a new SQLite file (and, with --postgres or ENVOYLOG_TEST_POSTGRES_URL, a new schema on that server)
with a fleet that ends now: per gateway a collect run every minute for `--hours` (a realistic run log: a
nightly two-minute outage, an endpoint failing now and then), a token, its events, and four site series read
every minute for the last `--reading-hours`. Most gateways are fine; the others are in every state `status`
knows: failing (some for all but the first hour), stale, partial, never collected (a host that never
answered, a gateway whose every run failed), a token that runs out unrenewed; and a tenth of them have this
minute's run under way. `--outage-days 365` adds a year of nightly outages before that (two failed runs a
night per gateway, before /info answered: runs without a gateway), which a long-lived fleet's run log holds.

With `--other-tree` (a checkout of another revision, made by `git worktree add --detach OLD-TREE main`),
the database is made at that revision's schema and timed with its code first, then upgraded by this tree (the
upgrade is timed too) and timed again. Timed: `envoylog status` and `envoylog status --format json` as
processes (wall time, median of `--rounds` after a warm-up), and the query part alone (`status_document`,
median of as many calls in one process). The rows are bulk-inserted through `envoylog.db.bulk`.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, bindparam, create_engine, text
from sqlalchemy.engine import make_url

from envoylog.db.bulk import save_rows_bulk
from envoylog.db.meters import METER_DATA
from envoylog.db.models import AUTH, EVENTS, GATEWAYS, RUNS, SERIES

ROOT = Path(__file__).resolve().parent.parent
POSTGRES_VARIABLE = "ENVOYLOG_TEST_POSTGRES_URL"
CHUNK = 50  # gateways whose rows are made and inserted at a time
TOKEN = "eyJhbGciOiJFUzI1NiJ9.eyJlbnBoYXNlVXNlciI6Im93bmVyIn0.c2lnbmF0dXJl"  # noqa: S105 - not a real one
SITE_SERIES = (("production", 0), ("consumption", 0), ("net_consumption", 0), ("production", 1))
CHANNELS = ("production", "consumption", "net_consumption")  # the rows' keys; production's L1 in its slot

# The query part, run inside the tree under test: `status_document` as that tree's `status` calls it.
TIME_QUERIES = """
import json, statistics, sys, time
from datetime import UTC, datetime
from envoylog.db.migrate import open_database
from envoylog.reports.status import status_document
url, rounds, options = sys.argv[1], int(sys.argv[2]), json.loads(sys.argv[3])
engine = open_database(url, create=False)
document = status_document(engine, datetime.now(UTC), **options)
seconds = []
for _ in range(rounds):
    began = time.perf_counter()
    status_document(engine, datetime.now(UTC), **options)
    seconds.append(time.perf_counter() - began)
print(json.dumps({"seconds": statistics.median(seconds), "gateways": len(document["gateways"])}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--gateways", type=int, default=1000)
    parser.add_argument("--hours", type=float, default=24.0, help="run log per gateway: a run a minute")
    parser.add_argument("--reading-hours", type=float, default=6.0, help="readings per gateway: 4 series")
    parser.add_argument(
        "--outage-days",
        type=int,
        default=0,
        help="days of nightly outages before the run log (2 runs a night)",
    )
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--before-rounds", type=int, default=3, help="rounds of the other tree (it is slow)")
    parser.add_argument("--postgres", default=os.environ.get(POSTGRES_VARIABLE), help="a PostgreSQL URL")
    parser.add_argument("--no-sqlite", action="store_true", help="only PostgreSQL")
    parser.add_argument("--other-tree", type=Path, help="a checkout of the revision to compare with")
    parser.add_argument("--keep", action="store_true", help="keep the databases (their URLs are printed)")
    args = parser.parse_args()

    kinds = ([] if args.no_sqlite else ["sqlite"]) + (["postgresql"] if args.postgres else [])
    with tempfile.TemporaryDirectory(prefix="envoylog-status-") as tmp:
        for kind in kinds:
            with fresh_database(kind, args.postgres, Path(tmp), keep=args.keep) as url:
                print(f"--- {kind}: {args.gateways:,} gateways, {args.hours:g} h of runs each")
                measure(url, args)


def measure(url: str, args: argparse.Namespace) -> None:
    """Fill the database, time the other tree (if any), upgrade, time this tree."""
    other = args.other_tree.resolve() if args.other_tree else None
    envoylog(other or ROOT, url, "db", "upgrade")
    engine = create_engine(url)
    try:
        began = time.perf_counter()
        counts = fill(engine, args.gateways, args.hours, args.reading_hours, args.outage_days)
        print(
            f"filled in {time.perf_counter() - began:.0f} s: "
            + ", ".join(f"{n:,} {t}" for t, n in counts.items())
        )
        print(f"database: {database_bytes(engine) / 1e6:,.0f} MB")
        if other is not None:
            timings("before", other, url, args.before_rounds, {"table": {}})
            began = time.perf_counter()
            envoylog(ROOT, url, "db", "upgrade")
            print(f"upgrade to this tree's schema: {time.perf_counter() - began:.1f} s (a process)")
        timings(
            "after", ROOT, url, args.rounds, {"table": {"count_rows": None}, "json": {"count_rows": True}}
        )
    finally:
        engine.dispose()


def timings(label: str, tree: Path, url: str, rounds: int, queries: dict[str, dict[str, Any]]) -> None:
    """Median wall times of `status`, `status --format json` and the query part, with `tree`'s code."""
    for name, extra in (("status", ()), ("status --format json", ("--format", "json"))):
        envoylog(tree, url, "status", *extra)  # warm-up: caches, the bytecode
        seconds = []
        for _ in range(rounds):
            began = time.perf_counter()
            output = envoylog(tree, url, "status", *extra)
            seconds.append(time.perf_counter() - began)
        median, lines = statistics.median(seconds), len(output.splitlines())
        print(f"{label:<6} {name:<22} {median:6.2f} s  (median of {rounds}; {lines:,} lines)")
    for name, options in queries.items():
        done = subprocess.run(  # noqa: S603 - our own code
            [sys.executable, "-c", TIME_QUERIES, url, str(rounds), json.dumps(options)],
            env={**os.environ, "PYTHONPATH": str(tree)},
            cwd=tree,
            capture_output=True,
            text=True,
            check=True,
        )
        result = json.loads(done.stdout)
        print(
            f"{label:<6} {'queries (' + name + ')':<22} {result['seconds']:6.3f} s  "
            f"(status_document, median of {rounds}; {result['gateways']:,} gateways)"
        )


def envoylog(tree: Path, url: str, *args: str) -> str:
    """Run `envoylog --db URL ARGS` with `tree`'s code, as a user's shell would; its standard output."""
    done = subprocess.run(  # noqa: S603 - our own code
        [sys.executable, "-m", "envoylog", "--db", url, *args],
        env={**os.environ, "PYTHONPATH": str(tree)},
        cwd=tree,  # `python -m` puts the working directory first on the path
        capture_output=True,
        text=True,
    )
    if done.returncode:
        raise SystemExit(f"envoylog {' '.join(args)} failed ({done.returncode}): {done.stderr.strip()}")
    return done.stdout


def database_bytes(engine: Engine) -> int:
    """The SQLite file, or the PostgreSQL schema's tables and indexes."""
    if engine.dialect.name == "sqlite":
        return Path(engine.url.database or "").stat().st_size
    with engine.connect() as conn:
        query = (
            "SELECT SUM(pg_total_relation_size(c.oid)) FROM pg_class c JOIN pg_namespace n "
            "ON n.oid = c.relnamespace WHERE c.relkind = 'r' AND n.nspname = current_schema()"
        )
        return int(conn.execute(text(query)).scalar_one())


@contextmanager
def fresh_database(kind: str, postgres: str | None, directory: Path, *, keep: bool) -> Iterator[str]:
    """A new SQLite file, or a new schema on the PostgreSQL server; dropped afterwards unless `keep`."""
    if kind == "sqlite":
        path = (Path(tempfile.gettempdir()) if keep else directory) / f"status-{uuid.uuid4().hex[:8]}.db"
        yield f"sqlite:///{path}"
        if keep:
            print(f"kept: sqlite:///{path}")
        return
    assert postgres is not None
    schema = f"status_{uuid.uuid4().hex[:12]}"
    admin = create_engine(postgres)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    url = make_url(postgres).update_query_dict({"options": f"-csearch_path={schema}"})
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        if keep:
            print(f"kept: schema {schema}")
        else:
            with admin.begin() as conn:
                conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


# --- the fleet ---


def role(index: int, gateways: int) -> str:
    """What gateway `index` of the fleet has been through (most are fine)."""
    share = index / gateways
    for bound, name in (
        (0.005, "unreached"),  # a host that never answered: runs without a gateway
        (0.010, "refused"),  # reached, every run failed
        (0.012, "failing_long"),  # failing for all but the first hour
        (0.022, "failing"),  # for the last half hour
        (0.032, "stale"),  # no run for two hours
        (0.052, "partial"),  # an endpoint failing now
        (0.057, "token"),  # a pasted token that runs out in ten days
    ):
        if share < bound:
            return name
    return "ok"


def fill(
    engine: Engine, gateways: int, hours: float, reading_hours: float, outage_days: int
) -> dict[str, int]:
    """The fleet's rows, ending at the current minute; how many of each were inserted."""
    now = int(time.time()) // 60 * 60
    counts = {"gateways": 0, "runs": 0, "meter readings": 0}
    for first in range(0, gateways, CHUNK):
        fleet = {f"site-{i:04d}": role(i, gateways) for i in range(first, min(first + CHUNK, gateways))}
        with engine.begin() as conn:
            stored = [name for name, what in fleet.items() if what != "unreached"]
            counts["gateways"] += save_rows_bulk(
                conn,
                GATEWAYS,
                ("serial", "name", "firmware", "part_number", "metered", "first_seen_at", "last_seen_at"),
                [
                    (f"1222{name[5:]}0000", name, "8.2.4345", "800-00654-r08", True, now - 90 * DAY, now)
                    for name in stored
                ],
            )
            ids = dict(
                conn.execute(
                    text("SELECT name, id FROM gateways WHERE name BETWEEN :first AND :last"),
                    {"first": min(fleet), "last": max(fleet)},
                ).all()
            )
            save_rows_bulk(conn, AUTH, AUTH_COLUMNS, [_token(ids[n], fleet[n], now) for n in stored])
            events = [(ids[name], now - 90 * DAY, "discovered", DISCOVERED) for name in stored]
            events += [
                (ids[n], now - 3 * DAY, "firmware_changed", "8.2.4264 -> 8.2.4345") for n in stored[::97]
            ]
            save_rows_bulk(conn, EVENTS, ("gateway_id", "at", "kind", "detail"), events)
            runs = [
                run for name, what in fleet.items() for run in _runs(name, what, ids.get(name), now, hours)
            ]
            runs += [run for name in fleet for run in _outages(name, now - int(hours * 3600), outage_days)]
            counts["runs"] += save_rows_bulk(conn, RUNS, RUN_COLUMNS, runs)
            series = [(ids[name], kind, phase, "") for name in stored for kind, phase in SITE_SERIES]
            save_rows_bulk(conn, SERIES, ("gateway_id", "kind", "phase", "device"), series)
            channels = conn.execute(
                text("SELECT id, kind FROM series WHERE phase = 0 AND gateway_id IN :ids").bindparams(
                    bindparam("ids", expanding=True)
                ),
                {"ids": list(ids.values())},
            ).all()
            # As stored: milliwatts and milliwatt-hours; a total less its phases (production's L1 here).
            readings = [
                (sid, now - 60 * m, 0, watts, wh, *((watts, wh) if kind == "production" else (None, None)))
                for sid, kind in channels
                for m in range(int(reading_hours * 60))
                for watts, wh in [(1_000_000 + (m % 7) * 1000, 1_000_000_000 - m * 1000)]
            ]
            rows = save_rows_bulk(
                conn,
                METER_DATA,
                ("series_id", "read_at", "source", "watts", "wh_lifetime", "l1_watts", "l1_wh_lifetime"),
                readings,
            )
            counts["meter readings"] += rows + sum(1 for row in readings if row[5] is not None)
    if engine.dialect.name == "postgresql":
        # What autovacuum does to tables that grew: statistics, and the visibility map.
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("VACUUM ANALYZE"))
    return counts


DAY = 86400
DISCOVERED = "firmware 8.2.4345; CTs: production (enabled), net-consumption (enabled)"
AUTH_COLUMNS = (
    "gateway_id",
    "kind",
    "secret",
    "source",
    "enphase_user",
    "issued_at",
    "expires_at",
    "updated_at",
    "cloud_failures",
)
RUN_COLUMNS = (
    "gateway_id",
    "gateway_name",
    "started_at",
    "finished_at",
    "outcome",
    "requests",
    "cloud_requests",
    "rows_added",
    "error",
)
OUTAGE = "cannot reach https://envoy.local: connection timed out after 10 s"  # before /info: no gateway
ERRORS_ONLY = "gateway answered errors only: /production.json: HTTP 500"
REFUSED = "the gateway refuses the token: set ENVOYLOG_USERNAME and ENVOYLOG_PASSWORD"
BUSY = "/ivp/meters/readings: HTTP 503"


def _token(gateway_id: int, what: str, now: int) -> tuple[Any, ...]:
    days_left, source = (10, "manual") if what == "token" else (300, "cloud")
    expires = now + days_left * DAY
    return (gateway_id, "token", TOKEN, source, "owner", expires - 365 * DAY, expires, now - DAY, 0)


def _outages(name: str, before: int, days: int) -> list[tuple[Any, ...]]:
    """The failed runs of `days` nightly outages before `before`, which never learned their gateway."""
    rows = []
    for day in range(1, days + 1):
        for minute in range(2):
            started = before - day * DAY + minute * 60
            rows.append((None, name, started, started + 10, "failed", 1, 0, 0, OUTAGE))
    return rows


def _runs(name: str, what: str, gateway_id: int | None, now: int, hours: float) -> list[tuple[Any, ...]]:
    """A run a minute for `hours` up to now, as the collector logs them for a gateway with this story."""
    offset = int(name[5:]) % 40  # the collector's workers reach the gateways at different seconds
    minutes = int(hours * 60)
    rows = []
    for ago in range(minutes, 0, -1):
        started = now - 60 * ago + offset
        outcome, error, known = "ok", None, gateway_id
        if (
            what == "unreached"
            or (what == "failing" and ago <= 30)
            or 22 * 60 <= started // 60 % 1440 < 22 * 60 + 2
        ):
            outcome, error, known = (
                "failed",
                OUTAGE,
                None,
            )  # the nightly outage, or a host that does not answer
        elif what == "refused":
            outcome, error = "failed", REFUSED
        elif what == "failing_long" and ago < minutes - 60:
            outcome, error = "failed", ERRORS_ONLY
        elif what == "stale" and ago <= 120:
            continue
        elif (what == "partial" and ago == 1) or ago % 150 == int(name[5:]) % 150:
            outcome, error = "partial", BUSY
        rows.append(
            (known, name, started, started + 3, outcome, 3 if known else 1, 0, 4 if known else 0, error)
        )
    if what == "ok" and int(name[5:]) % 10 == 5:
        rows.append(
            (None, name, now + offset, None, "running", 0, 0, 0, None)
        )  # this minute's run, under way
    return rows


if __name__ == "__main__":
    main()
