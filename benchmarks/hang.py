"""One endpoint that hangs: what a `collect` process costs before and after its breaker opens.

    python benchmarks/hang.py --pairs 5

Two simulated gateways (`envoylog simulate`, real speed, no latency model), each with a database of its own:
one healthy, one whose `/ivp/meters/readings` answers after 120 s. After a first run of each (discovery, and
the hanging endpoint's first timeout), `collect` processes run in pairs, healthy then hanging, back to back.
Measured per run: wall time and exit code; printed: the first hanging run, and the medians of each side.
"""

from __future__ import annotations

import argparse
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from sim_process import start_simulator  # benchmarks/ is the script's folder, first on sys.path

HANGING = "/ivp/meters/readings"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--pairs", type=int, default=5, help="healthy/hanging runs after the first ones")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="envoylog-hang-") as tmp:
        work = Path(tmp)
        healthy, healthy_env = start(work / "healthy", [])
        hanging, hanging_env = start(work / "hanging", ["--fault", f"{HANGING}=hang:120"])
        try:
            collect(healthy_env)  # discovery and the first token of each
            first_wall, first_code = collect(hanging_env)
            print(f"first run with {HANGING} hanging: {first_wall:.1f} s, exit {first_code} (the timeout)")
            walls: dict[str, list[float]] = {"healthy": [], "hanging": []}
            for _ in range(args.pairs):
                for side, env in (("healthy", healthy_env), ("hanging", hanging_env)):
                    wall, code = collect(env)
                    walls[side].append(wall)
                    print(f"{side}: {wall:.2f} s, exit {code}", flush=True)
            for side, values in walls.items():
                print(f"{side}: median {statistics.median(values):.2f} s of {len(values)} runs")
            ratio = statistics.median(walls["hanging"]) / statistics.median(walls["healthy"])
            print(f"hanging / healthy: {ratio:.2f}")
        finally:
            for sim in (healthy, hanging):
                sim.send_signal(signal.SIGINT)
                sim.wait(timeout=30)


def start(work: Path, extra: list[str]) -> tuple[subprocess.Popen[str], dict[str, str]]:
    """A simulator process, and the environment that points `envoylog` at it and at its own database."""
    work.mkdir()
    arguments = ["--port", "0", "--state-dir", str(work / "sim"), *extra]
    return start_simulator(arguments, f"sqlite:///{work / 'envoylog.db'}")


def collect(env: dict[str, str]) -> tuple[float, int]:
    """One `envoylog collect` process: its wall time and exit code."""
    began = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "envoylog", "collect"], env=env, capture_output=True)
    return time.monotonic() - began, done.returncode


if __name__ == "__main__":
    main()
