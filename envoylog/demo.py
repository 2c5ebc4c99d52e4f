"""`envoylog demo`: the no-hardware tour — a simulated gateway, a few collect cycles, the latest readings."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

from envoylog.collect import collect_all, raise_for_runs
from envoylog.config import GatewaySettings, Settings
from envoylog.db.migrate import open_database
from envoylog.history import HistorySummary, fill_history, history_days
from envoylog.overview import format_latest, latest_document
from envoylog.simulator.cli_support import default_state_dir
from envoylog.simulator.profiles import get_profile
from envoylog.simulator.server import Simulator

DEMO_GATEWAY = "demo"


def run_demo(settings: Settings, *, cycles: int, profile: str, echo: Callable[[str], None]) -> None:
    """Start the simulator, collect `cycles` times a simulated minute apart, and print what is stored."""
    with Simulator(profile, state_dir=default_state_dir(profile)) as sim:
        demo = Settings(
            db_url=settings.db_url,
            timezone=settings.timezone,
            enlighten_url=sim.enlighten_url,
            entrez_url=sim.entrez_url,
            gateways=(
                GatewaySettings(
                    name=DEMO_GATEWAY, host=sim.gateway_url, username=sim.username, password=sim.password
                ),
            ),
        )
        echo(
            f"simulated {profile} gateway {sim.serial} at {sim.gateway_url}; "
            f"database {_where(settings.db_url)}"
        )
        for cycle in range(1, cycles + 1):
            sim.clear_request_log()
            runs = collect_all(demo, clock=sim.clock.now, cloud_verify=str(sim.ca_file))
            raise_for_runs(runs)
            run = runs[0]
            echo(
                f"collect {cycle}/{cycles} at {sim.clock.now():%H:%M} UTC: {run.requests} gateway requests, "
                f"{run.cloud_requests} cloud requests, {sum(run.rows_added.values())} rows added"
            )
            sim.clock.advance(timedelta(minutes=1))
    engine = open_database(settings.db_url)
    try:
        echo("")
        echo(format_latest(latest_document(engine)))
    finally:
        engine.dispose()


def run_history(
    settings: Settings, *, days: int, profile: str, now: datetime, echo: Callable[[str], None]
) -> HistorySummary:
    """Fill the database with the simulated gateway's last `days` days (ending yesterday, in its zone)."""
    first, last = history_days(days, get_profile(profile).timezone, now)
    echo(f"filling {_where(settings.db_url)} with the simulated {profile} gateway's days {first} to {last}")
    summary = fill_history(settings.db_url, first, last, profile=profile, gateway=DEMO_GATEWAY, echo=echo)
    echo(summary.describe())
    return summary


def _where(db_url: str) -> str:
    return db_url.removeprefix("sqlite:///") if db_url.startswith("sqlite:///") else db_url.split("@")[-1]
