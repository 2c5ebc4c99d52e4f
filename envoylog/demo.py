"""`envoylog demo`: the no-hardware tour — a simulated gateway, a few collect cycles, the latest readings."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

from envoylog.collect import collect_all, raise_for_runs
from envoylog.config import GatewaySettings, Settings
from envoylog.db.migrate import open_database
from envoylog.overview import format_latest, latest_document
from envoylog.simulator.cli_support import default_state_dir
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


def _where(db_url: str) -> str:
    return db_url.removeprefix("sqlite:///") if db_url.startswith("sqlite:///") else db_url.split("@")[-1]
