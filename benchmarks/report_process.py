"""`envoylog report` over a day and over a year as processes, against a bare import of its libraries, paired.

    python benchmarks/report_process.py [--rounds 7] [--other-tree PATH] [--postgres URL] [--db URL]

Fills a database with a year of the reference system (`envoylog demo --days 365`, the metered profile: a new
SQLite file, or a new schema on the PostgreSQL server `--postgres` names, dropped afterwards), unless `--db`
names one that such a command filled before. Then each round runs, one after another: the baseline `python
-c "import pandas, sqlalchemy"`, then from this tree (and from `--other-tree`, a checkout of another
revision, when given) `envoylog report --day D` (the middle day of the stored year, or `--day`) and
`envoylog report --from A --to B` (the whole year), each a new process, in the simulated site's zone. It
prints the medians of wall time (issue 14's target: at most 1.3x the baseline for a day, 1.8x for the year;
on PostgreSQL also against a second baseline that imports the driver too, which every report there loads)
and of CPU time (user + system), and their ratios to the baseline of the same rounds. The trees' reports
must print the same text.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from scratch_db import scratch_database
from sqlalchemy import create_engine, text

ROOT = Path(__file__).resolve().parent.parent
BASELINE = [sys.executable, "-c", "import pandas, sqlalchemy"]
# On PostgreSQL a report also imports its driver: "close to the cost of importing what they need".
DRIVER_BASELINE = [sys.executable, "-c", "import pandas, sqlalchemy, psycopg"]
ENVOYLOG = [sys.executable, "-m", "envoylog"]
SITE_ZONE = "Europe/Amsterdam"  # the simulated site's: the demo fills its local days


def run(command: list[str], env: dict[str, str]) -> tuple[float, float, str]:
    """Wall seconds, CPU seconds (user + system) and standard output of one process.

    It runs in the root folder: `python -m` puts the current folder first on the path, where a checkout's
    `envoylog` would win over the PYTHONPATH that names the tree to measure.
    """
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    began = time.perf_counter()
    done = subprocess.run(command, env=env, cwd="/", capture_output=True, text=True, check=False)  # noqa: S603
    wall = time.perf_counter() - began
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed: {done.stderr.strip()[-500:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, done.stdout


def stored_days(db_url: str, timezone: str) -> tuple[date, date]:
    """The first and last local day the database's collect runs span."""
    engine = create_engine(db_url)
    with engine.connect() as conn:
        first, last = conn.execute(text("SELECT MIN(started_at), MAX(started_at) FROM runs")).one()
    engine.dispose()
    if first is None:
        raise SystemExit("the database holds no collect runs: fill it with `envoylog demo --days 365`")
    zone = ZoneInfo(timezone)

    def local(value: int | datetime) -> date:
        # SQLite stores epoch seconds, PostgreSQL a timestamptz.
        moment = datetime.fromtimestamp(value, UTC) if isinstance(value, int) else value
        return moment.astimezone(zone).date()

    return local(first), local(last)


def fill(db_url: str, days: int, env: dict[str, str]) -> None:
    began = time.perf_counter()
    run([*ENVOYLOG, "--db", db_url, "demo", "--days", str(days), "--profile", "metered"], env)
    print(f"filled with `envoylog demo --days {days}` in {time.perf_counter() - began:.0f} s")
    if db_url.startswith("postgresql"):
        # What autovacuum does to tables that grew for a year: statistics, and the visibility map that lets
        # index-only scans skip the heap.
        engine = create_engine(db_url, isolation_level="AUTOCOMMIT")
        with engine.connect() as conn:
            tables = conn.execute(text("SELECT tablename FROM pg_tables WHERE schemaname = current_schema()"))
            for table in tables.scalars().all():
                conn.execute(text(f'VACUUM ANALYZE "{table}"'))
        engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--other-tree", type=Path, action="append", default=[], help="another checkout")
    parser.add_argument("--postgres", help="a PostgreSQL URL (default: a SQLite file)")
    parser.add_argument("--db", help="a database `envoylog demo --days 365` filled before (kept)")
    parser.add_argument("--days", type=int, default=365, help="days to fill (without --db)")
    parser.add_argument("--day", type=date.fromisoformat, help="the day of `report --day`")
    parser.add_argument("--timezone", default=SITE_ZONE, help=f"the reports' days (default: {SITE_ZONE})")
    args = parser.parse_args()
    env = dict(os.environ, ENVOYLOG_TIMEZONE=args.timezone)
    env.pop("ENVOYLOG_DB", None)
    env.pop("ENVOYLOG_CONFIG", None)
    trees = {"this tree": ROOT}
    for number, tree in enumerate(args.other_tree, 1):
        trees[f"other tree {number}" if len(args.other_tree) > 1 else "other tree"] = tree.resolve()
    envs = {name: dict(env, PYTHONPATH=str(tree)) for name, tree in trees.items()}
    with tempfile.TemporaryDirectory() as folder:
        if args.db:
            db_url, cleanup = args.db, lambda: None
        else:
            work = Path(folder)
            db_url, cleanup = scratch_database(args.postgres, work, "report_process", "envoylog-bench")
        try:
            if not args.db:
                fill(db_url, args.days, envs["this tree"])
            first, last = stored_days(db_url, args.timezone)
            day = args.day or first + timedelta(days=(last - first).days // 2)
            commands = {
                "day": [*ENVOYLOG, "--db", db_url, "report", "--day", day.isoformat()],
                "year": [*ENVOYLOG, "--db", db_url, "report", "--from", first.isoformat(), "--to", str(last)],
            }
            postgres = db_url.startswith("postgresql")
            cases = (
                [("baseline", "", BASELINE)]
                + ([("+ psycopg", "", DRIVER_BASELINE)] if postgres else [])
                + [(f"{kind}, {tree}", tree, command) for tree in trees for kind, command in commands.items()]
            )
            outputs: dict[str, set[str]] = {kind: set() for kind in commands}
            for _, tree, command in cases:  # a warm-up: the database's pages in the cache
                run(command, envs.get(tree, env))
            wall: dict[str, list[float]] = {name: [] for name, _, _ in cases}
            cpu: dict[str, list[float]] = {name: [] for name, _, _ in cases}
            for _ in range(args.rounds):
                for name, tree, command in cases:
                    seconds, used, output = run(command, envs.get(tree, env))
                    wall[name].append(seconds)
                    cpu[name].append(used)
                    if tree:
                        outputs[name.split(",")[0]].add(output)
        finally:
            cleanup()
    base_wall, base_cpu = statistics.median(wall["baseline"]), statistics.median(cpu["baseline"])
    where = "PostgreSQL" if db_url.startswith("postgresql") else "SQLite"
    print(
        f"{args.rounds} paired rounds on {where}, days in {args.timezone}: --day {day}, "
        f"--from {first} --to {last}; medians"
    )
    driver = statistics.median(wall["+ psycopg"]) if "+ psycopg" in wall else None
    for name in wall:
        w, c = statistics.median(wall[name]), statistics.median(cpu[name])
        with_driver = f", {w / driver:.2f}x with psycopg" if driver else ""
        print(
            f"  {name:<19} wall {w * 1000:7.1f} ms ({w / base_wall:.2f}x{with_driver})   "
            f"CPU {c * 1000:7.1f} ms ({c / base_cpu:.2f}x)"
        )
    for kind, texts in outputs.items():
        if len(texts) > 1:
            print(f"  the report --{kind} printed {len(texts)} different texts")


if __name__ == "__main__":
    main()
