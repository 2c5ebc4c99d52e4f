"""What `collect --textfile` adds to a run: the hand-off alone, and paired collects with and without it.

    python benchmarks/textfile.py
    python benchmarks/textfile.py --postgres postgresql+psycopg://postgres@127.0.0.1:5432/test

The `metered` simulator profile (12 site series, 30 inverters), logged in and discovered by a first collect.
Then `--rounds` pairs of steady-state collects a simulated minute apart, one without a textfile and one with,
in alternating order (so a drift of the machine falls on both), and the hand-off itself (`handoff/publish.py:
hand_off`: load the state, format it, write the file atomically with fsync) timed alone. Prints medians in ms.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from scratch_db import scratch_database  # benchmarks/ is the script's folder, first on sys.path

from envoylog.collect.run import _facts, collect_all
from envoylog.config import GatewaySettings, Settings
from envoylog.db.migrate import open_database
from envoylog.handoff.publish import hand_off
from envoylog.handoff.state import load_states
from envoylog.handoff.textfile import format_textfile, write_textfile
from envoylog.simulator import Simulator


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=21, help="pairs of collects")
    parser.add_argument("--postgres", help="a PostgreSQL server URL (default: a SQLite file)")
    args = parser.parse_args()
    start = datetime(2026, 6, 21, 10, tzinfo=UTC)
    with tempfile.TemporaryDirectory(prefix="envoylog-textfile-") as tmp:
        work = Path(tmp)
        url, cleanup = scratch_database(args.postgres, work, "textfile", "envoylog-bench")
        try:
            with Simulator("metered", start=start, speed=1e-6, state_dir=work / "sim") as sim:
                settings = Settings(
                    db_url=url,
                    timezone="Europe/Amsterdam",
                    enlighten_url=sim.enlighten_url,
                    entrez_url=sim.entrez_url,
                    gateways=(GatewaySettings("bench", sim.gateway_url, sim.username, sim.password),),
                )
                path = work / "envoylog.prom"
                minute = 0

                def collect(textfile: Path | None) -> float:
                    nonlocal minute
                    minute += 1
                    sim.clock.set(start + timedelta(minutes=minute), speed=1e-6)
                    began = time.perf_counter()
                    (run,) = collect_all(
                        settings, clock=sim.clock.now, cloud_verify=str(sim.ca_file), textfile=textfile
                    )
                    if run.error is not None:
                        raise SystemExit(f"run {minute} failed: {run.error}")
                    return (time.perf_counter() - began) * 1000

                collect(None)  # login and discovery
                plain, written = [], []
                for round_ in range(args.rounds):
                    order = (None, path) if round_ % 2 == 0 else (path, None)
                    for textfile in order:
                        (plain if textfile is None else written).append(collect(textfile))
                (run,) = collect_all(settings, clock=sim.clock.now, cloud_verify=str(sim.ca_file))
                engine = open_database(url, create=False)
                alone = []
                for _ in range(args.rounds):
                    began = time.perf_counter()
                    hand_off(engine, settings, [_facts(run)], textfile=path, now=sim.clock.now())
                    alone.append((time.perf_counter() - began) * 1000)
                with engine.connect() as conn:
                    states = load_states(conn, [_facts(run)])
                parts: dict[str, list[float]] = {"load": [], "format": [], "write": []}
                for _ in range(args.rounds):
                    began = time.perf_counter()
                    with engine.connect() as conn:
                        load_states(conn, [_facts(run)])
                    formatted = time.perf_counter()
                    format_textfile(states, sim.clock.now())
                    writing = time.perf_counter()
                    write_textfile(path, states, sim.clock.now())
                    done = time.perf_counter()
                    parts["load"].append((formatted - began) * 1000)
                    parts["format"].append((writing - formatted) * 1000)
                    parts["write"].append((done - writing) * 1000)
                engine.dispose()
                lines = len(path.read_text().splitlines())
                size = path.stat().st_size
        finally:
            cleanup()
    kind = "PostgreSQL" if args.postgres else "SQLite"
    differences = [b - a for a, b in zip(plain, written, strict=True)]
    print(f"{kind}, metered profile (30 inverters), {args.rounds} pairs; file: {lines} lines, {size:,} bytes")
    print(f"  collect without --textfile: median {statistics.median(plain):.1f} ms")
    print(f"  collect with --textfile:    median {statistics.median(written):.1f} ms")
    print(f"  paired difference:          median {statistics.median(differences):+.1f} ms")
    print(f"  the hand-off alone:         median {statistics.median(alone):.1f} ms")
    print(
        "    of which: "
        + ", ".join(f"{name} {statistics.median(times):.1f} ms" for name, times in parts.items())
        + " (the write formats too)"
    )


if __name__ == "__main__":
    main()
