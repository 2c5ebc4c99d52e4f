"""The quick soak: a simulated day of cron runs with every kind of fault, checked against the model's truth.

`benchmarks/soak.py --quick` runs `envoylog collect` once a simulated minute for a day (in-process, as the
CLI's own command; the kill faults as real processes killed with SIGKILL) and checks what it stored, reported,
printed (what cron would mail) and logged. It runs as a process of its own: it patches the collector's entry
points and the simulator's secret generators to watch them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_a_quick_soak_stores_no_garbage_recovers_from_every_fault_and_leaks_no_secret(tmp_path: Path) -> None:
    env = {name: value for name, value in os.environ.items() if not name.startswith("ENVOYLOG_")}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "soak.py"),
            "--quick",
            "--json",
            "--work",
            str(tmp_path / "w"),
        ],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.stdout, done.stderr[-3000:]
    summary = json.loads(done.stdout)
    # A cron user is mailed once when a problem becomes real and once when it clears; transient faults (an
    # expired session, a short hang, the nightly outage, a locked database for a minute) mail nothing.
    assert summary["mails"]["too_many"] == {}, summary["mails"]
    assert summary["mails"]["runs"] <= 2 * summary["mails"]["problems"]
    assert summary["rows"]["compared"] > 10_000
    assert summary["rows"]["disagreeing"] == 0, summary["rows"]["examples"]
    assert summary["recoveries"]["misses"] == [], summary["recoveries"]
    assert summary["secrets"]["seen"] == [] and summary["secrets"]["tokens"] >= 2
    assert summary["reports"]["days_checked"] == 1 and summary["reports"]["max_error"] < 0.01
    assert summary["runs"].get("killed") == 2  # both kills were real SIGKILLs of a collect process
    assert {"session-expired", "hang", "503-storm", "db", "clock-step", "firmware"} <= summary[
        "faults"
    ].keys()
    assert summary["passed"] and done.returncode == 0
