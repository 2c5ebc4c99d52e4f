"""The newest stored row of each series: what every `collect` asks before it stores what changed.

    python benchmarks/latest_rows.py --rows 20000
    python benchmarks/latest_rows.py --rows 20000 --postgres postgresql+psycopg://postgres@127.0.0.1:5432/test

A database with 40 meter series of `--rows` readings each (the reference system's site series hold 1,440 a
day), then `db/samples.py: load_latest_meters` for all 40, as a run asks it. Its cost must not grow with the
history: before issue 12 it did (a subquery per stored row); printed: the median of 7 calls, in ms.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from scratch_db import scratch_database  # benchmarks/ is the script's folder, first on sys.path
from sqlalchemy import Engine, text

from envoylog.db import samples
from envoylog.db.meters import METER_DATA
from envoylog.db.migrate import open_database

SERIES = 40
READING = {"source": 0, "watts": 1000}  # as stored: eim, 1 W in milliwatts


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=20_000, help="readings per series")
    parser.add_argument("--postgres", help="a PostgreSQL server URL (default: a SQLite file)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="envoylog-latest-") as tmp:
        url, cleanup = scratch_database(args.postgres, Path(tmp), "latest", "envoylog-bench")
        try:
            engine = open_database(url, create=True)
            fill(engine, args.rows)
            wanted = {sid: (sid, 0) for sid in range(1, SERIES + 1)}  # each its own channel's total
            timings = []
            for _ in range(7):
                with engine.connect() as conn:
                    started = time.perf_counter()
                    found = samples.load_latest_meters(conn, wanted)
                    timings.append((time.perf_counter() - started) * 1000)
                assert len(found) == SERIES
            kind = "PostgreSQL" if args.postgres else "SQLite"
            print(
                f"{kind}: {SERIES} series x {args.rows} rows: newest row of each in "
                f"{statistics.median(timings):.1f} ms (median of 7)"
            )
            engine.dispose()
        finally:
            cleanup()


def fill(engine: Engine, rows: int) -> None:
    """One gateway, SERIES meter series, `rows` readings each, a minute apart."""
    start = datetime(2026, 1, 1, tzinfo=UTC)
    table = METER_DATA
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO gateways (id, serial, name, first_seen_at, last_seen_at) "
                "VALUES (1, '1', 'x', :t, :t)"
            ),
            {"t": start},
        )
        for series in range(1, SERIES + 1):
            conn.execute(
                text(
                    "INSERT INTO series (id, gateway_id, kind, phase, device) "
                    "VALUES (:i, 1, 'production', 0, :d)"
                ),
                {"i": series, "d": str(series)},
            )
            conn.execute(
                table.insert(),
                [
                    {"series_id": series, "read_at": start + timedelta(minutes=m), **READING}
                    for m in range(rows)
                ],
            )
        if engine.dialect.name == "postgresql":
            conn.execute(text("ANALYZE"))


if __name__ == "__main__":
    main()
