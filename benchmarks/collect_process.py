"""A steady-state `envoylog collect` as cron runs it, against a bare import of its libraries, in paired runs.

    python benchmarks/collect_process.py [--rounds 7] [--other-tree PATH] [--postgres URL]

Starts the simulated gateway (`envoylog simulate`, the metered profile) as a process, collects once from each
tree into a database of its own (the first login and discovery), then each round runs, one after another: the
baseline `python -c "import sqlalchemy, requests"`, then `envoylog collect` from this tree (and from
`--other-tree`, a checkout of another revision, when given), each a new process. It prints the median CPU
time (user + system) and peak resident memory of each, and the CPU ratio to the baseline of the same rounds
(issue 14's target: at most 1.5x, 60 MB). On PostgreSQL a second baseline also imports the driver, psycopg,
which every collect there loads.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import resource
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from scratch_db import scratch_database
from sim_process import start_simulator

ROOT = Path(__file__).resolve().parent.parent
BASELINE = [sys.executable, "-c", "import sqlalchemy, requests"]
DRIVER_BASELINE = [sys.executable, "-c", "import sqlalchemy, requests, psycopg"]
COLLECT = [sys.executable, "-m", "envoylog", "collect"]


def measure(command: list[str], env: dict[str, str]) -> tuple[float, float]:
    """CPU seconds and peak resident MB of one process. RUSAGE_CHILDREN's maxrss is the largest child yet,
    so the child reports its own, from a small shim that runs the command and prints it last on stderr: its
    VmHWM, since on Linux a child's ru_maxrss starts from the peak of the parent it was forked from (this
    benchmark, which holds SQLAlchemy and a driver), a floor under every figure."""
    shim = (
        "import resource, runpy, sys; sys.argv = sys.argv[1:]; "
        "code = 0\n"
        "try:\n"
        "    if sys.argv[0] == '-c':\n"
        "        exec(sys.argv[1])\n"
        "    else:\n"
        "        runpy.run_module(sys.argv[0], run_name='__main__')\n"
        "except SystemExit as exc:\n"
        "    code = exc.code or 0\n"
        "try:\n"
        "    status = open('/proc/self/status').read().split('VmHWM:')[1]\n"
        "    peak = int(status.split()[0])\n"
        "except (OSError, IndexError):\n"
        "    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "print(peak, file=sys.stderr)\n"
        "sys.exit(code)\n"
    )
    args = command[2:] if command[1] == "-m" else ["-c", command[2]]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run(  # noqa: S603 - our own code
        # From the root folder: `python -c` puts the working folder first on the import path, where it would
        # shadow the tree PYTHONPATH names.
        [sys.executable, "-c", shim, *args],
        env=env,
        cwd="/",
        capture_output=True,
        text=True,
        check=False,
    )
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed: {done.stderr.strip()[-500:]}")
    rss_mb = int(done.stderr.strip().splitlines()[-1]) / 1024
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime), rss_mb


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--other-tree", type=Path, help="a checkout of another revision to compare")
    parser.add_argument("--postgres", help="a PostgreSQL URL (default: a SQLite file)")
    args = parser.parse_args()
    trees = {"this tree": ROOT}
    if args.other_tree:
        trees["other tree"] = args.other_tree.resolve()
    with tempfile.TemporaryDirectory() as folder, contextlib.ExitStack() as cleanups:
        # A database for each tree: an older revision refuses a schema that a newer one upgraded.
        databases = {}
        for number, name in enumerate(trees):
            url, cleanup = scratch_database(
                args.postgres, Path(folder), f"collect_process_{number}", "envoylog-bench"
            )
            cleanups.callback(cleanup)
            databases[name] = url
        sim, env = start_simulator(["--profile", "metered", "--speed", "1"], databases["this tree"])
        try:
            envs = {}
            for name, tree in trees.items():
                envs[name] = dict(env, PYTHONPATH=str(tree), ENVOYLOG_DB=databases[name])
            for name in trees:
                measure(COLLECT, envs[name])  # each tree's first run: login, discovery, the schema
            commands = {"baseline": BASELINE, **({"+ psycopg": DRIVER_BASELINE} if args.postgres else {})}
            commands.update({name: COLLECT for name in trees})
            cpu: dict[str, list[float]] = {name: [] for name in commands}
            rss: dict[str, list[float]] = {name: [] for name in commands}
            for _ in range(args.rounds):
                for name, command in commands.items():
                    seconds, mb = measure(command, envs.get(name, env))
                    cpu[name].append(seconds)
                    rss[name].append(mb)
        finally:
            sim.terminate()
            sim.wait()
    base = statistics.median(cpu["baseline"])
    driver = statistics.median(cpu["+ psycopg"]) if args.postgres else None
    print(f"{args.rounds} paired rounds on {'PostgreSQL' if args.postgres else 'SQLite'}; medians")
    for name in cpu:
        median = statistics.median(cpu[name])
        with_driver = f", {median / driver:.2f}x with psycopg" if driver else ""
        print(
            f"  {name:<11} CPU {median * 1000:7.1f} ms ({median / base:.2f}x{with_driver})   "
            f"peak RSS {statistics.median(rss[name]):5.1f} MB"
        )


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    main()
