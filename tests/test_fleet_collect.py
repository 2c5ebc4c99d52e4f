"""Collecting many gateways: claims per gateway, a pool of workers, the whole deadline for each gateway."""

from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from envoylog.collect.run import GatewayRun, collect_all
from envoylog.config import CollectSettings, GatewaySettings, Settings, load_settings
from envoylog.db import claims
from envoylog.db.migrate import open_database
from envoylog.errors import ConfigError
from envoylog.simulator import Simulator
from envoylog.simulator.faults import EndpointFault
from envoylog.simulator.fleet import Fleet
from envoylog.simulator.profiles import get_profile
from tests.conftest import Site

OTHER = "other-host pid 7 0000"
ME = "this-host pid 8 1111"


@pytest.fixture
def engine(db_url: str) -> Engine:
    engine = open_database(db_url, create=True)
    yield engine  # type: ignore[misc]
    engine.dispose()


# --- claims -----------------------------------------------------------------------------------------


def test_a_claimed_gateway_is_refused_to_another_collector_until_released(engine: Engine) -> None:
    assert claims.claim(engine, "home", OTHER, lease_s=60) is None
    refusal = claims.claim(engine, "home", ME, lease_s=60)
    assert refusal is not None and refusal.reason == "held"
    assert claims.holder_for_people(refusal.holder) == "other-host pid 7"
    assert 55 < refusal.seconds_left <= 60
    # Other gateways are free all the while: collectors share the database, not the gateways.
    assert claims.claim(engine, "barn", ME, lease_s=60) is None
    # Its own holder may claim it again (the next cycle of `collect --every`).
    assert claims.claim(engine, "home", OTHER, lease_s=60) is None
    claims.release(engine, "home", OTHER)
    assert claims.claim(engine, "home", ME, lease_s=60) is None


def test_a_collector_that_dies_lets_go_when_its_claim_runs_out(engine: Engine) -> None:
    assert claims.claim(engine, "home", OTHER, lease_s=0.2) is None  # and then it is killed
    assert claims.claim(engine, "home", ME, lease_s=60) is not None
    time.sleep(0.3)
    assert claims.claim(engine, "home", ME, lease_s=60) is None


def test_collectors_sharing_a_config_poll_a_gateway_once_per_round(engine: Engine) -> None:
    with engine.connect() as conn:
        my_start = claims.now_ms(conn)
    time.sleep(0.01)
    # The other collector polled "home" after this one started its round: not again in this round.
    assert claims.claim(engine, "home", OTHER, lease_s=60) is None
    claims.release(engine, "home", OTHER)
    refusal = claims.claim(engine, "home", ME, lease_s=60, run_started_ms=my_start)
    assert refusal is not None and refusal.reason == "done"
    # The next round (started after that poll) takes it.
    time.sleep(0.01)
    with engine.connect() as conn:
        next_start = claims.now_ms(conn)
    assert claims.claim(engine, "home", ME, lease_s=60, run_started_ms=next_start) is None


# --- collect with several gateways ---------------------------------------------------------------------


def two_gateways(site: Site, second: Simulator, **collect: object) -> Settings:
    """The site's gateway and a second simulated one (its token issued by its own cloud)."""
    return replace(
        site.settings(),
        gateways=(
            *site.settings().gateways,
            GatewaySettings(name="barn", host=second.gateway_url, token=second.issue_token()),
        ),
        collect=CollectSettings(**collect),  # type: ignore[arg-type]
    )


@pytest.fixture
def second(tmp_path: Path) -> Simulator:
    profile = replace(get_profile("metered"), serial="122446009999")
    with Simulator(profile, state_dir=tmp_path / "second", seed=2) as simulator:
        yield simulator  # type: ignore[misc]


def test_each_gateway_has_the_whole_deadline_and_they_are_read_at_once(site: Site, second: Simulator) -> None:
    collect_all(two_gateways(site, second), cloud_verify=str(site.sim.ca_file))  # tokens, discovery
    # Both gateways take 2.5 s for their main endpoint. In turns, with the deadline shared out, the first
    # would get half of 4 s and fail; read at once, each with the whole deadline, both are stored.
    for sim in (site.sim, second):
        sim.clock.advance(timedelta(minutes=1))
        sim.set_endpoint_fault("/production.json", EndpointFault(hang_seconds=2.5))
    runs = collect_all(two_gateways(site, second), deadline_s=4.0, cloud_verify=str(site.sim.ca_file))
    assert [(run.name, run.outcome, run.error) for run in runs] == [
        ("home", "ok", None),
        ("barn", "ok", None),
    ]
    assert all(sum(run.rows_added.values()) > 0 for run in runs)
    stored = site.query("SELECT gateway_name, outcome FROM runs ORDER BY gateway_name, started_at")
    assert stored == [("barn", "ok"), ("barn", "ok"), ("home", "ok"), ("home", "ok")]


def test_a_gateway_held_by_another_collector_is_skipped_and_the_rest_collected(
    site: Site, second: Simulator
) -> None:
    engine = open_database(site.db_url, create=True)
    try:
        assert claims.claim(engine, "barn", OTHER, lease_s=60) is None
    finally:
        engine.dispose()
    second.clear_request_log()
    home, barn = collect_all(two_gateways(site, second), cloud_verify=str(site.sim.ca_file))
    assert home.outcome == "ok" and home.rows_added
    assert barn.skipped is not None and "other-host pid 7" in barn.skipped
    assert barn.error is not None and barn.error.status == 6  # two configs naming one gateway: said
    assert second.request_log() == []  # never polled by two collectors at once
    # With a shared config, racing for gateways is the design: skipped without an error.
    home, barn = collect_all(two_gateways(site, second, shared=True), cloud_verify=str(site.sim.ca_file))
    assert barn.skipped is not None and barn.error is None
    assert second.request_log() == []


def test_one_collect_opens_no_more_database_connections_than_configured(
    site: Site, second: Simulator
) -> None:
    settings = two_gateways(site, second, workers=2, db_connections=1)
    runs = collect_all(settings, cloud_verify=str(site.sim.ca_file))
    # Two workers share one connection, waiting their turn: both are stored all the same.
    assert [run.outcome for run in runs] == ["ok", "ok"]


# --- configuration -------------------------------------------------------------------------------------


def test_collect_table_in_the_config_file(tmp_path: Path, isolated_env: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text("[collect]\nworkers = 250\ndb_connections = 4\nshared = true\n")
    assert load_settings(config=config, environ={}).collect == CollectSettings(250, 4, True)
    config.write_text("")
    assert load_settings(config=config, environ={}).collect == CollectSettings()
    config.write_text(
        "[collect]\nendpoint_quiet_minutes = 30\ntoken_quiet_hours = 6\ndiscovery_quiet_hours = 48\n"
    )
    assert load_settings(config=config, environ={}).collect == CollectSettings(
        endpoint_quiet_minutes=30, token_quiet_hours=6, discovery_quiet_hours=48
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("workers = 0", "[collect] workers must be a whole number from 1 to 1000, not 0"),
        ("workers = true", "[collect] workers must be a whole number from 1 to 1000, not True"),
        ("db_connections = 500", "[collect] db_connections must be a whole number from 1 to 100, not 500"),
        ('shared = "yes"', "[collect] shared must be true or false, not 'yes'"),
        ("token_quiet_hours = 0", "[collect] token_quiet_hours must be a whole number from 1 to 720, not 0"),
        ("threads = 4", "unknown key 'threads' in [collect]"),
    ],
)
def test_bad_collect_settings_are_one_line_errors(
    tmp_path: Path, isolated_env: Path, text: str, message: str
) -> None:
    config = tmp_path / "c.toml"
    config.write_text(f"[collect]\n{text}\n")
    with pytest.raises(ConfigError) as info:
        load_settings(config=config, environ={})
    assert message in str(info.value)


def test_gateways_left_out_by_the_deadline_come_first_the_next_run(site: Site, second: Simulator) -> None:
    settings = two_gateways(site, second, workers=1)
    collect_all(settings, cloud_verify=str(site.sim.ca_file))  # tokens, discovery
    site.sim.set_endpoint_fault("/production.json", EndpointFault(hang_seconds=3.5))
    # One worker, 4 s: the slow "home" takes them all and "barn" is not reached.
    home, barn = collect_all(settings, deadline_s=4.0, cloud_verify=str(site.sim.ca_file))
    assert home.error is None
    assert barn.error is not None and barn.error.status == 4
    assert str(barn.error).startswith("not reached before the run's deadline: 1 workers could not read 2")
    assert barn.error.quiet  # read a moment ago: the run log keeps it, no mail
    # The next run starts with the gateway left out.
    second.clear_request_log()
    home, barn = collect_all(settings, deadline_s=4.0, cloud_verify=str(site.sim.ca_file))
    assert barn.error is None and second.request_log() != []
    assert home.outcome == "partial"  # then the slow one, in the time left


# --- a fleet ---------------------------------------------------------------------------------------------


@pytest.fixture
def fleet(tmp_path: Path) -> Fleet:
    with Fleet(12, accounts=3, state_dir=tmp_path / "fleet") as simulated:
        yield simulated  # type: ignore[misc]


def fleet_settings(fleet: Fleet, db_url: str, tmp_path: Path, **collect: object) -> Settings:
    config = fleet.write_config(tmp_path / "fleet.toml", db_url=db_url)
    return replace(load_settings(config=config, environ={}), collect=CollectSettings(**collect))  # type: ignore[arg-type]


def test_a_fleet_is_read_at_once_with_one_enlighten_login_per_account(
    fleet: Fleet, db_url: str, tmp_path: Path
) -> None:
    settings = fleet_settings(fleet, db_url, tmp_path, workers=6, db_connections=2)
    runs = collect_all(settings, clock=fleet.clock.now, cloud_verify=str(fleet.ca_file))
    assert [run.outcome for run in runs] == ["ok"] * 12
    # Twelve gateways needed tokens; their three accounts logged in once each (Entrez's web login not needed).
    assert fleet.logins_by_account() == {account.username: 1 for account in fleet.accounts}
    assert fleet.logins_by_account("/login") == {account.username: 0 for account in fleet.accounts}
    assert sum(run.cloud_requests for run in runs) == 3 + 12  # three logins, a token request each
    engine = open_database(db_url, create=False)
    try:
        with engine.connect() as conn:
            stored = conn.execute(text("SELECT count(*) FROM gateways")).scalar_one()
            duplicates = conn.execute(
                text(
                    "SELECT count(*) FROM (SELECT series_id, read_at FROM meter_readings "
                    "GROUP BY series_id, read_at HAVING count(*) > 1) AS d"
                )
            ).scalar_one()
    finally:
        engine.dispose()
    assert (stored, duplicates) == (12, 0)


def test_a_refused_login_is_not_repeated_by_the_accounts_other_gateways(
    fleet: Fleet, db_url: str, tmp_path: Path
) -> None:
    fleet.cloud_faults.wrong_password = True
    settings = fleet_settings(fleet, db_url, tmp_path, workers=6)
    runs = collect_all(settings, clock=fleet.clock.now, cloud_verify=str(fleet.ca_file))
    assert all(run.error is not None and run.error.status == 3 for run in runs)
    assert all("refused the username or password" in str(run.error) for run in runs)
    assert fleet.logins_by_account() == {account.username: 1 for account in fleet.accounts}
    assert fleet.logins_by_account("/login") == {account.username: 1 for account in fleet.accounts}


def test_two_collectors_sharing_a_config_poll_each_gateway_once(
    fleet: Fleet, db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = fleet_settings(fleet, db_url, tmp_path, workers=4, shared=True)
    collect_all(settings, clock=fleet.clock.now, cloud_verify=str(fleet.ca_file))  # tokens, discovery
    fleet.clock.advance(timedelta(minutes=1))
    fleet.clear_request_log()
    # Both collectors begin the same cron round: cron starts them within moments, a busy test machine may
    # start one thread seconds after the other has polled some gateways, so the round's start is fixed here.
    round_started = int(time.time() * 1000)
    monkeypatch.setattr(claims, "now_ms", lambda conn: round_started)
    results: dict[str, list[GatewayRun]] = {}

    def collector(name: str) -> None:
        results[name] = collect_all(
            settings, clock=fleet.clock.now, cloud_verify=str(fleet.ca_file), holder=f"{name} pid 1 {name}"
        )

    threads = [threading.Thread(target=collector, args=(name,)) for name in ("a", "b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # Every gateway was asked for its /info exactly once, by one collector or the other.
    info = Counter(
        unit.name for unit in fleet.gateways for entry in unit.request_log() if entry.path == "/info"
    )
    assert info == {unit.name: 1 for unit in fleet.gateways}
    polled = {name: sum(1 for run in runs if not run.skipped) for name, runs in results.items()}
    assert sum(polled.values()) == 12
    assert all(run.error is None for runs in results.values() for run in runs)


def test_a_connection_the_gateway_drops_is_tried_once_more(site: Site) -> None:
    site.collect()
    site.sim.clock.advance(timedelta(minutes=1))
    site.sim.set_endpoint_fault("/production.json", EndpointFault(drops=1))
    run = site.collect()
    assert (run.outcome, run.error) == ("ok", None)
    assert site.requests(path="/production.json") == ["/production.json?details=1"] * 2
    # Dropped twice in a row: the endpoint failed this run, the rest of the gateway was read.
    site.sim.clock.advance(timedelta(minutes=1))
    site.sim.set_endpoint_fault("/production.json", EndpointFault(drops=2))
    run = site.collect()
    assert run.outcome == "partial"
    assert "Remote end closed connection without response" in run.endpoint_errors[0]
