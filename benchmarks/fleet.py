"""A fleet: N simulated gateways at a real gateway's pace, collected by `envoylog collect` processes.

    python benchmarks/fleet.py --gateways 1000 --postgres postgresql+psycopg://postgres@127.0.0.1:5432/test
    python benchmarks/fleet.py --gateways 100 --collectors 2          # two processes share one database

The simulated fleet runs in a process of its own (`envoylog simulate --gateways N --latency realistic`), its
clock at the machine's time (so not during the gateways' nightly outage, 22:40-23:30 in Amsterdam). Each
`collect` starts at the top of a minute, as cron starts it: the first run (tokens, discovery), then
steady-state runs. Measured per run: wall time, CPU and peak memory of each collect process (wait4), the
database connections it held (PostgreSQL's pg_stat_activity, sampled), and from the run log: gateways read,
with new readings, polled twice, requests per gateway.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from scratch_db import scratch_database  # benchmarks/ is the script's folder, first on sys.path
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

APP = "envoylog-bench"  # application_name of the collectors' PostgreSQL connections


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--gateways", type=int, default=100)
    parser.add_argument("--accounts", type=int, default=10, help="Enlighten accounts the gateways belong to")
    parser.add_argument("--steady", type=int, default=3, help="steady-state runs after the first")
    parser.add_argument("--collectors", type=int, default=1, help="collect processes per run, one config")
    parser.add_argument("--postgres", help="a PostgreSQL URL (a fresh schema is made in it); else SQLite")
    parser.add_argument("--latency", default="realistic")
    parser.add_argument("--workers", type=int, default=None, help="[collect] workers (default: envoylog's)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="envoylog-fleet-") as tmp:
        work = Path(tmp)
        db_url, cleanup = fresh_database(args.postgres, work)
        try:
            config = work / "fleet.toml"
            fleet = start_fleet(args.gateways, args.accounts, args.latency, config, work)
            try:
                add_collect_table(config, db_url, args.collectors > 1, args.workers)
                results = [timed_round(config, db_url, args.collectors, "first") for _ in range(1)]
                for _ in range(args.steady):
                    results.append(timed_round(config, db_url, args.collectors, "steady"))
            finally:
                fleet.send_signal(signal.SIGINT)
                fleet.wait(timeout=60)
        finally:
            cleanup()
    report(args, results)


# --- the database --------------------------------------------------------------------------------------


def fresh_database(postgres: str | None, work: Path) -> tuple[str, Callable[[], None]]:
    return scratch_database(postgres, work, "fleet", APP)


def add_collect_table(config: Path, db_url: str, shared: bool, workers: int | None) -> None:
    """Point the fleet's config at the database and set the [collect] table."""
    lines = config.read_text().splitlines()
    lines = [line for line in lines if not line.startswith("db =")]
    table = ["[collect]", f"shared = {'true' if shared else 'false'}"]
    if workers:
        table.append(f"workers = {workers}")
    config.write_text("\n".join([f"db = {json.dumps(db_url)}", *lines, "", *table, ""]))


# --- the fleet -----------------------------------------------------------------------------------------


def start_fleet(
    gateways: int, accounts: int, latency: str, config: Path, work: Path
) -> subprocess.Popen[str]:
    """`envoylog simulate --gateways N` in its own process, its clock at real time; its config.

    The simulated clock is the machine's: the collector then times its runs by its own clock, as on a site
    whose Raspberry Pi keeps good time (a gateway clock that disagrees is a case of its own, tested apart).
    """
    local = datetime.now(ZoneInfo("Europe/Amsterdam"))  # the profile's zone
    if (local.hour, local.minute) >= (22, 40) and (local.hour, local.minute) < (23, 30):
        raise SystemExit("the simulated gateways have their nightly outage now: run this after 23:30 CET")
    command = [
        sys.executable,
        "-m",
        "envoylog",
        "simulate",
        "--gateways",
        str(gateways),
        "--accounts",
        str(accounts),
        "--latency",
        latency,
        "--port",
        "0",
        "--state-dir",
        str(work / "sim"),
        "--write-config",
        str(config),
    ]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)  # noqa: S603
    started = time.monotonic()
    while not config.exists():
        if process.poll() is not None:
            raise SystemExit(f"the fleet did not start: {process.stdout.read() if process.stdout else ''}")
        if time.monotonic() - started > 300:
            raise SystemExit("the fleet did not start within 5 minutes")
        time.sleep(0.2)
    time.sleep(0.5)  # the config is written once the servers listen
    print(f"fleet of {gateways} up in {time.monotonic() - started:.1f} s", file=sys.stderr)
    return process


def fleet_environment(work_config: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("ENVOYLOG_DB", None)
    ca = work_config.parent / "sim" / "ca.pem"
    env["REQUESTS_CA_BUNDLE"] = str(ca)
    return env


# --- one round of collecting ----------------------------------------------------------------------------


def timed_round(config: Path, db_url: str, collectors: int, kind: str) -> dict[str, Any]:
    """Start `collectors` collect processes at the top of the next minute; measure them and the run log."""
    wait_for_minute()
    # Runs are told apart by their ids: a gateway's clock can time a run differently from this machine's.
    first_id = max_run_id(db_url)
    began = datetime.now(UTC)
    peak_connections = [0]
    stop = threading.Event()
    sampler = threading.Thread(target=sample_connections, args=(db_url, peak_connections, stop), daemon=True)
    sampler.start()
    command = [sys.executable, "-m", "envoylog", "--config", str(config), "collect"]
    env = fleet_environment(config)
    processes = [
        subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # noqa: S603
        for _ in range(collectors)
    ]
    measured = []
    for process in processes:
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
        wall = (datetime.now(UTC) - began).total_seconds()
        err = process.stderr.read() if process.stderr else ""
        measured.append(
            {
                "exit": process.returncode,
                "wall_s": wall,
                "rss_mb": usage.ru_maxrss / 1024,
                "cpu_s": usage.ru_utime + usage.ru_stime,
                "stderr": err.strip()[:300],
            }
        )
    stop.set()
    sampler.join()
    result = {"kind": kind, "processes": measured, "connections": peak_connections[0]}
    result.update(run_log(db_url, first_id))
    return result


def wait_for_minute() -> None:
    now = time.time()
    time.sleep(60 - now % 60 + 0.05)


def sample_connections(db_url: str, peak: list[int], stop: threading.Event) -> None:
    if not db_url.startswith("postgresql"):
        return
    base = make_url(db_url).set(query={})
    engine = create_engine(base)
    with engine.connect() as conn:
        while not stop.wait(0.2):
            held = conn.execute(
                text("SELECT count(*) FROM pg_stat_activity WHERE application_name = :app"), {"app": APP}
            ).scalar_one()
            peak[0] = max(peak[0], int(held))
            conn.rollback()
    engine.dispose()


def max_run_id(db_url: str) -> int:
    engine = create_engine(db_url)
    try:
        with engine.connect() as conn:
            if not conn.dialect.has_table(conn, "runs"):
                return 0
            return int(conn.execute(text("SELECT coalesce(max(id), 0) FROM runs")).scalar_one())
    finally:
        engine.dispose()


def run_log(db_url: str, after_id: int) -> dict[str, Any]:
    """What the runs of this round say: gateways read, with new readings, requests, polled twice."""
    engine = create_engine(db_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                text("SELECT gateway_name, outcome, requests, rows_added FROM runs WHERE id > :after"),
                {"after": after_id},
            ).all()
            configured = conn.execute(text("SELECT count(*) FROM claims")).scalar_one()
    finally:
        engine.dispose()
    # A run that asked nothing (its gateway not reached before the deadline) polled nobody.
    names = [row.gateway_name for row in rows if row.requests > 0]
    requests = [row.requests for row in rows]
    return {
        "runs": len(rows),
        "gateways_claimed": int(configured),
        "polled_twice": len(names) - len(set(names)),
        "ok": sum(1 for row in rows if row.outcome in ("ok", "partial")),
        "new_readings": sum(1 for row in rows if row.rows_added > 0),
        "requests_mean": statistics.fmean(requests) if requests else 0.0,
        "requests_max": max(requests, default=0),
    }


def report(args: argparse.Namespace, results: list[dict[str, Any]]) -> None:
    database = "PostgreSQL" if args.postgres else "SQLite"
    print(
        f"{args.gateways} gateways, {args.accounts} accounts, latency {args.latency}, {database}, "
        f"{args.collectors} collector process(es)"
    )
    print(
        "| run | wall s | CPU s | peak RSS MB | DB connections | runs | ok | new readings | polled twice "
        "| requests/gateway mean (max) | exit |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for result in results:
        processes = result["processes"]
        print(
            f"| {result['kind']} | {max(p['wall_s'] for p in processes):.1f} "
            f"| {sum(p['cpu_s'] for p in processes):.1f} | {max(p['rss_mb'] for p in processes):.0f} "
            f"| {result['connections'] or 'n/a'} | {result['runs']} | {result['ok']} "
            f"| {result['new_readings']} "
            f"| {result['polled_twice']} | {result['requests_mean']:.2f} ({result['requests_max']}) "
            f"| {','.join(str(p['exit']) for p in processes)} |"
        )
        for process in processes:
            if process["stderr"]:
                print(f"    stderr: {process['stderr']}")


if __name__ == "__main__":
    main()
