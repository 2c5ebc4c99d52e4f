"""Collect a simulated day minute by minute, as cron would, and report what a steady state costs and stores.

    python benchmarks/collect_day.py [--profile metered] [--hours 24] [--db URL]

Prints gateway and cloud requests per run, collect time per run, and reading rows per day per series.
"""

from __future__ import annotations

import argparse
import collections
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import create_engine, text

from envoylog.collect.run import collect_all
from envoylog.config import GatewaySettings, Settings
from envoylog.simulator import Simulator


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="metered")
    parser.add_argument("--hours", type=float, default=24.0)
    parser.add_argument("--db", help="database URL (default: a new SQLite file)")
    parser.add_argument("--day", default="2026-06-21", help="the simulated local day (Europe/Amsterdam)")
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="envoylog-bench-"))
    db_url = args.db or f"sqlite:///{workdir / 'envoylog.db'}"
    start = datetime.fromisoformat(f"{args.day}T00:00:00+02:00").astimezone(UTC)
    with Simulator(args.profile, start=start, speed=1e-6, state_dir=workdir / "sim") as sim:
        settings = Settings(
            db_url=db_url,
            timezone="Europe/Amsterdam",
            enlighten_url=sim.enlighten_url,
            entrez_url=sim.entrez_url,
            gateways=(GatewaySettings("bench", sim.gateway_url, sim.username, sim.password),),
        )
        minutes = int(args.hours * 60)
        gateway_requests, cloud_requests, seconds = [], [], []
        for minute in range(minutes):
            sim.clock.set(start + timedelta(minutes=minute), speed=1e-6)
            sim.clear_request_log()
            began = time.perf_counter()
            (run,) = collect_all(settings, clock=sim.clock.now, cloud_verify=str(sim.ca_file))
            seconds.append(time.perf_counter() - began)
            if run.error is not None:
                raise SystemExit(f"run {minute} failed: {run.error}")
            log = sim.request_log()
            gateway_requests.append(sum(1 for e in log if e.service == "gateway"))
            cloud_requests.append(sum(1 for e in log if e.service != "gateway"))

    steady = gateway_requests[1:]
    print(
        f"profile {args.profile}, {minutes} runs a minute apart on {args.day}, "
        f"database {db_url.split(':')[0]}"
    )
    print(f"first run: {gateway_requests[0]} gateway requests, {cloud_requests[0]} cloud requests")
    print(
        f"steady state: gateway requests per run max {max(steady)}, mean {statistics.mean(steady):.2f}, "
        f"distribution {dict(sorted(collections.Counter(steady).items()))}; "
        f"cloud requests {sum(cloud_requests[1:])}"
    )
    print(
        f"collect time per run: median {statistics.median(seconds) * 1000:.0f} ms, "
        f"max {max(seconds) * 1000:.0f} ms"
    )
    engine = create_engine(db_url)
    scale = 24 * 60 / minutes
    with engine.connect() as conn:
        for table in ("meter_readings", "inverter_readings", "battery_readings"):
            rows = conn.execute(
                text(
                    f"SELECT s.kind, s.phase, COUNT(*) FROM {table} r JOIN series s ON s.id = r.series_id "  # noqa: S608
                    "GROUP BY s.kind, s.phase ORDER BY s.kind, s.phase"
                )
            ).all()
            for kind, phase, count in rows:
                series = conn.execute(
                    text("SELECT COUNT(*) FROM series WHERE kind = :k AND phase = :p"),
                    {"k": kind, "p": phase},
                ).scalar_one()
                where = "total" if phase == 0 else f"L{phase}"
                print(
                    f"  {kind:<16} {where:<5} {count / series * scale:7.0f} rows per day per series "
                    f"({series} series)"
                )
    engine.dispose()
    if db_url.startswith("sqlite:///"):
        size = Path(db_url.removeprefix("sqlite:///")).stat().st_size
        print(f"SQLite file: {size / 1e6 * scale:.2f} MB per day")


if __name__ == "__main__":
    main()
