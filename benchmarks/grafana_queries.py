"""The Grafana dashboards' panel queries on a year of history, and their query plans.

    python benchmarks/grafana_queries.py                     # SQLite, in a temporary folder
    python benchmarks/grafana_queries.py --postgres postgresql+psycopg://postgres@127.0.0.1:5432/test

Fills `--days` of the `metered` profile (what `envoylog demo --days N` stores; `--profile standard` for a site
without CTs whose inverters report watts but no joules), then runs each panel of the committed dashboard for
its data source with the macros replaced as Grafana does, for the last day, week, month and the whole
history: the median of 5 runs after a warm-up, in ms. Local days in UTC (the process's
TZ on SQLite, the session's TimeZone on PostgreSQL). `--plans` prints each panel's plan for the week.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType

from scratch_db import scratch_database  # benchmarks/ is the script's folder, first on sys.path
from sqlalchemy import create_engine, text

from envoylog.demo.filler import fill_history, history_days

ROOT = Path(__file__).resolve().parents[1]


def load(name: str, path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--profile", default="metered", help="the simulated site: metered, standard, ...")
    parser.add_argument("--postgres", help="a PostgreSQL server URL (default: a SQLite file)")
    parser.add_argument("--plans", action="store_true", help="print the query plans of the week")
    parser.add_argument("--db", help="time this database, already filled, instead of filling a new one")
    args = parser.parse_args()
    os.environ["TZ"] = "UTC"
    time.tzset()
    dashboards = load("grafana_dashboards", ROOT / "grafana" / "dashboards.py")
    flavour = dashboards.POSTGRESQL if args.postgres else dashboards.SQLITE
    kind = "PostgreSQL" if args.postgres else "SQLite"
    with tempfile.TemporaryDirectory(prefix="envoylog-grafana-") as tmp:
        url, cleanup = (
            (args.db, lambda: None)
            if args.db
            else scratch_database(args.postgres, Path(tmp), "grafana", "envoylog-bench")
        )
        try:
            if args.db:
                engine = create_engine(url)
                with engine.connect() as conn:
                    serial = conn.execute(text("SELECT MIN(gateway) FROM envoylog_gateways")).scalar_one()
                    newest = conn.execute(text("SELECT MAX(time) FROM envoylog_meter")).scalar_one()
                newest = newest if isinstance(newest, datetime) else datetime.fromtimestamp(newest, UTC)
                last = newest.astimezone(UTC).date()
            else:
                first, last = history_days(args.days, "UTC", datetime.now(UTC))
                began = time.perf_counter()
                summary = fill_history(url, first, last, profile=args.profile)
                print(f"{kind}: {summary.describe()} ({time.perf_counter() - began:.0f} s with the upgrade)")
                serial = summary.serial
                engine = create_engine(url)
            if args.postgres and not args.db:
                with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                    conn.exec_driver_sql("VACUUM ANALYZE")
            end = datetime.combine(last + timedelta(days=1), datetime.min.time(), UTC)
            ranges = {"day": 1, "week": 7, "month": 30, f"{args.days} days": args.days}
            print("| panel | " + " | ".join(ranges) + " |")
            print("|---|" + "---|" * len(ranges))
            plans = []
            with engine.connect() as conn:
                if args.postgres:
                    # As the README's role for Grafana has them.
                    for setting in ("TimeZone = 'UTC'", "jit = off", "random_page_cost = 1.1"):
                        conn.exec_driver_sql(f"SET {setting}")
                for panel in dashboards.PANELS:
                    cells = []
                    for label, days in ranges.items():
                        start = end - timedelta(days=days)
                        sql = dashboards.grafana_sql(dashboards.panel_sql(panel, flavour), start, end, serial)
                        timings = []
                        for _ in range(6):
                            started = time.perf_counter()
                            rows = conn.execute(text(sql)).fetchall()
                            timings.append((time.perf_counter() - started) * 1000)
                        cells.append(f"{statistics.median(timings[1:]):,.0f} ms ({len(rows):,} rows)")
                        if label == "week":
                            explain = "EXPLAIN " if args.postgres else "EXPLAIN QUERY PLAN "
                            plan = conn.execute(text(explain + sql)).fetchall()
                            plans.append((panel.title, [" | ".join(str(c) for c in row) for row in plan]))
                    print(f"| {panel.title} | " + " | ".join(cells) + " |")
            engine.dispose()
            if args.plans:
                for title, lines in plans:
                    print(f"\n{title}:")
                    print("\n".join(f"  {line}" for line in lines))
        finally:
            cleanup()


if __name__ == "__main__":
    main()
