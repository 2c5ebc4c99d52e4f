"""What `envoylog check` costs on a year of history: its queries, and the command as cron runs it.

    python benchmarks/check.py [--postgres URL] [--days 365] [--repeat 7]

Fills `--days` days of the simulated reference system (the `metered` profile: 30 inverters, three phases of
CTs) with the demo filler into a scratch database (a SQLite file, or a schema on `--postgres`), then times
`check_all` (every rule of every gateway, nothing remembered) and, as processes, `envoylog check --all`
against `python -c "import sqlalchemy"` in pairs (A B A B ...), reporting medians and their ratio.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

from scratch_db import scratch_database

from envoylog.check.watch import check_all
from envoylog.config import load_settings
from envoylog.db.migrate import open_database
from envoylog.demo.filler import fill_history
from envoylog.simulator.profiles import get_profile
from envoylog.times import local_midnight, today_in, zone_of


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--postgres", help="a PostgreSQL URL (default: SQLite)")
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        url, cleanup = scratch_database(args.postgres, Path(folder), "check_bench", "envoylog-bench")
        try:
            run(url, args.days, args.repeat)
        finally:
            cleanup()


def run(url: str, days: int, repeat: int) -> None:
    profile = get_profile("metered")
    zone = zone_of(profile.timezone)
    last = today_in(zone) - timedelta(days=1)
    summary = fill_history(url, last - timedelta(days=days - 1), last, profile="metered")
    print(summary.describe())
    settings = dataclasses.replace(load_settings(db=url, environ={}), timezone=profile.timezone)
    now = local_midnight(last + timedelta(days=1), zone) + timedelta(minutes=30)
    engine = open_database(url, create=False)
    times = []
    for _ in range(repeat):
        began = time.perf_counter()
        result = check_all(engine, settings, now, remember=False)
        times.append(time.perf_counter() - began)
    engine.dispose()
    print(
        f"check_all: median {statistics.median(times) * 1000:.0f} ms, best {min(times) * 1000:.0f} ms "
        f"of {repeat}; {len(result.problems)} problems on the healthy history"
    )
    env = {"ENVOYLOG_TIMEZONE": profile.timezone, "PATH": "/usr/bin:/bin", "HOME": tempfile.gettempdir()}
    command = [sys.executable, "-m", "envoylog", "--db", url, "check", "--all"]
    baseline = [sys.executable, "-c", "import sqlalchemy"]
    a, b = [], []
    for _ in range(repeat):
        a.append(_wall(baseline, env))
        b.append(_wall(command, env))
    ratio = statistics.median(b) / statistics.median(a)
    print(
        f"process: `envoylog check --all` median {statistics.median(b) * 1000:.0f} ms, "
        f"`python -c 'import sqlalchemy'` {statistics.median(a) * 1000:.0f} ms: {ratio:.2f}x "
        f"(paired, {repeat} each)"
    )


def _wall(command: list[str], env: dict[str, str]) -> float:
    began = time.perf_counter()
    subprocess.run(command, env=env, check=False, capture_output=True)  # noqa: S603
    return time.perf_counter() - began


if __name__ == "__main__":
    main()
