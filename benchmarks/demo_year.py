"""Time `envoylog demo --days 365` and measure the database it leaves, on SQLite and on PostgreSQL.

    python benchmarks/demo_year.py [--days 365] [--profile metered] [--postgres URL]

Runs the installed command as a user does (a new process per database) into a new SQLite file and, when
`--postgres` or ENVOYLOG_TEST_POSTGRES_URL names a server, into a new schema there (dropped afterwards).
Prints the wall time, the peak memory of the process, the rows stored and the database bytes per day.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

TABLES = ("meter_readings", "inverter_readings", "battery_readings", "runs", "series", "gateways")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--profile", default="metered")
    parser.add_argument("--postgres", default=os.environ.get("ENVOYLOG_TEST_POSTGRES_URL"))
    args = parser.parse_args()
    envoylog = shutil.which("envoylog", path=str(Path(sys.executable).parent)) or "envoylog"

    workdir = Path(tempfile.mkdtemp(prefix="envoylog-bench-"))
    try:
        sqlite_file = workdir / "envoylog.db"
        measure("SQLite", f"sqlite:///{sqlite_file}", envoylog, args, lambda _url: sqlite_file.stat().st_size)
        if args.postgres:
            schema = f"bench_{uuid.uuid4().hex[:12]}"
            admin = create_engine(args.postgres)
            with admin.begin() as conn:
                conn.execute(text(f'CREATE SCHEMA "{schema}"'))
            url = make_url(args.postgres).update_query_dict({"options": f"-csearch_path={schema}"})
            try:
                measure("PostgreSQL", url.render_as_string(hide_password=False), envoylog, args, pg_bytes)
            finally:
                with admin.begin() as conn:
                    conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
                admin.dispose()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def measure(
    name: str, db_url: str, envoylog: str, args: argparse.Namespace, size: Callable[[str], int]
) -> None:
    command = [envoylog, "--db", db_url, "demo", "--days", str(args.days), "--profile", args.profile]
    with tempfile.TemporaryFile("w+") as log:
        began = time.perf_counter()
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)  # noqa: S603
        _, status, usage = os.wait4(process.pid, 0)  # the child's own peak memory, not the benchmark's
        seconds = time.perf_counter() - began
        log.seek(0)
        output = log.read()
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{name}: envoylog failed: {output.strip()}")
    engine = create_engine(db_url)
    with engine.connect() as conn:
        counts = {
            table: int(conn.execute(text(f"SELECT COUNT(*) FROM {table}")).scalar_one())  # noqa: S608
            for table in TABLES[:4]
        }
    engine.dispose()
    total = size(db_url)
    parts = table_bytes(db_url)
    print(f"  wall time {seconds:.1f} s, peak memory {usage.ru_maxrss / 1024:.0f} MB")
    print("  rows: " + ", ".join(f"{table} {count:,}" for table, count in counts.items()))
    print(f"  database {total / 1e6:.0f} MB, {total / args.days / 1e6:.2f} MB per day")
    print("  per day: " + ", ".join(f"{table} {n / args.days / 1e3:,.0f} kB" for table, n in parts.items()))


def table_bytes(db_url: str) -> dict[str, int]:
    """The biggest tables, each with its indexes (SQLite: from its dbstat table, when it has one)."""
    engine = create_engine(db_url)
    if engine.dialect.name == "postgresql":
        query = (
            "SELECT c.relname, pg_total_relation_size(c.oid) FROM pg_class AS c"
            " JOIN pg_namespace AS n ON n.oid = c.relnamespace"
            " WHERE n.nspname = current_schema() AND c.relkind = 'r'"
        )
    else:
        query = (
            "SELECT m.tbl_name, SUM(d.pgsize) FROM dbstat AS d JOIN sqlite_schema AS m ON m.name = d.name"
            " GROUP BY m.tbl_name"
        )
    try:
        with engine.connect() as conn:
            sizes = {str(name): int(n) for name, n in conn.execute(text(query))}
    except Exception:  # a SQLite built without dbstat: the total only
        sizes = {}
    engine.dispose()
    return dict(sorted(sizes.items(), key=lambda item: -item[1])[:5])


def pg_bytes(db_url: str) -> int:
    """Heap, indexes and TOAST of every table in the schema the URL points at (views take no space)."""
    engine = create_engine(db_url)
    with engine.connect() as conn:
        total = int(
            conn.execute(
                text(
                    "SELECT COALESCE(SUM(pg_total_relation_size(c.oid)), 0) FROM pg_class AS c"
                    " JOIN pg_namespace AS n ON n.oid = c.relnamespace"
                    " WHERE n.nspname = current_schema() AND c.relkind = 'r'"
                )
            ).scalar_one()
        )
    engine.dispose()
    return total


if __name__ == "__main__":
    main()
