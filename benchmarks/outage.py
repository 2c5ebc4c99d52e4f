"""One gateway at a real gateway's pace through its nightly outage, collected every minute as cron does.

    python benchmarks/outage.py --minutes 12

The simulator (`envoylog simulate --latency realistic`) starts at 22:59 local time with its clock at real
speed; a `collect` process starts at the top of every minute, as cron starts it. Measured per run: wall time,
exit code, what it printed (cron mails it), and from the run log its outcome and requests. The targets: a
steady-state run within 15 s, none past the deadline, and no line printed for an outage shorter than the quiet
window.
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from sim_process import start_simulator  # benchmarks/ is the script's folder, first on sys.path
from sqlalchemy import create_engine, text


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--minutes", type=int, default=12, help="cron minutes to run")
    parser.add_argument("--day", default="2026-06-21")
    args = parser.parse_args()
    zone = ZoneInfo("Europe/Amsterdam")  # the metered profile's
    start = datetime.fromisoformat(f"{args.day}T22:59:00").replace(tzinfo=zone)
    with tempfile.TemporaryDirectory(prefix="envoylog-outage-") as tmp:
        work = Path(tmp)
        db_url = f"sqlite:///{work / 'outage.db'}"
        arguments = ["--latency", "realistic", "--port", "0", "--start", start.isoformat()]
        sim, env = start_simulator([*arguments, "--state-dir", str(work / "sim")], db_url)
        t0 = time.monotonic()  # the simulator's clock runs at real speed from `start`
        try:
            print("| minute (local) | wall s | exit | printed | outcome | requests | error |")
            print("|---|---|---|---|---|---|---|")
            for _ in range(args.minutes):
                time.sleep(60 - time.time() % 60 + 0.05)
                began = time.monotonic()
                clock = (start + timedelta(seconds=began - t0)).strftime("%H:%M:%S")
                done = subprocess.run(
                    [sys.executable, "-m", "envoylog", "collect"], env=env, capture_output=True, text=True
                )
                wall = time.monotonic() - began
                outcome, requests, error = last_run(db_url)
                printed = (done.stdout + done.stderr).strip().replace("\n", " / ") or "-"
                print(
                    f"| {clock} | {wall:.1f} | {done.returncode} | {printed[:80]} | {outcome} | {requests} "
                    f"| {(error or '-')[:70]} |",
                    flush=True,
                )
        finally:
            sim.send_signal(signal.SIGINT)
            sim.wait(timeout=30)


def last_run(db_url: str) -> tuple[str, int, str | None]:
    engine = create_engine(db_url)
    try:
        with engine.connect() as conn:
            row = conn.execute(
                text("SELECT outcome, requests, error FROM runs ORDER BY id DESC LIMIT 1")
            ).one()
    finally:
        engine.dispose()
    return row.outcome, row.requests, row.error


if __name__ == "__main__":
    main()
