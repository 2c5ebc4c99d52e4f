"""`envoylog check`, the owner's watchdog: each problem on a simulated history, and silence when all is well.

Two kinds of history: the simulated gateway collected over real HTTPS as cron does (a stopped logger, a token
that cannot be renewed, a session storm, a firmware update, a drifting clock), and weeks of the simulator's
history stored by the demo filler with faults in the site's physics (an inverter silenced at noon, one derated
by 20 %, a string of five dropped). Every test runs on SQLite and, when configured, PostgreSQL.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Iterator
from datetime import date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from conftest import Site, point_at
from sqlalchemy import create_engine, delete
from typer.testing import CliRunner

from envoylog.check.watch import CheckResult, check_all
from envoylog.cli import app
from envoylog.collect.run import collect_all
from envoylog.config import CheckSettings, GatewaySettings, Settings, load_settings
from envoylog.db.meters import METER_DATA
from envoylog.db.migrate import open_database
from envoylog.db.models import RUNS
from envoylog.db.stored import BATTERY, INVERTER
from envoylog.demo.filler import fill_history
from envoylog.errors import EXIT_CODES, ConfigError
from envoylog.simulator import EndpointFault, Quirks
from envoylog.simulator.plant import inverter_serials
from envoylog.simulator.profiles import InverterFault, get_profile
from envoylog.times import local_midnight

runner = CliRunner()
DEAD_HOST = "127.0.0.1:9"  # the discard port: nothing listens, connecting is refused at once
YEAR_TOKEN_TEN_DAYS_LEFT = timedelta(days=355)  # the simulated cloud's owner tokens last a year
DERATED = 7  # an inverter whose panels make about the array's median


def check(settings: Settings, now: datetime, *, remember: bool = True) -> CheckResult:
    engine = open_database(settings.db_url, create=False)
    try:
        return check_all(engine, settings, now, remember=remember)
    finally:
        engine.dispose()


def kinds(result: CheckResult) -> list[str]:
    return sorted(p.finding.kind for p in result.problems)


def collect_and_check(site: Site, settings: Settings, after: timedelta) -> CheckResult:
    """Cron `after` later: a collect, then a check."""
    site.sim.clock.advance(after)
    assert site.collect().error is None
    return check(settings, site.sim.clock.now())


def test_a_configured_gateway_never_read_is_said(site: Site) -> None:
    assert site.collect().error is None
    garage = GatewaySettings(name="garage", host=DEAD_HOST)
    settings = dataclasses.replace(site.settings(), gateways=(*site.settings().gateways, garage))
    for _ in range(3):
        site.sim.clock.advance(timedelta(minutes=30))
        (home, failed) = collect_all(settings, cloud_verify=str(site.sim.ca_file), clock=site.sim.clock.now)
        assert home.error is None and failed.error is not None
    (line,) = check(settings, site.sim.clock.now()).said
    assert line.startswith("garage (never read): never read successfully; collect runs, the last failed: ")
    assert "cannot reach https://127.0.0.1:9: connection refused" in line


# --- the simulated gateway, collected as cron does ---


def test_a_healthy_gateway_just_collected_gives_no_problem(site: Site) -> None:
    assert site.collect().error is None
    result = check(site.settings(), site.sim.clock.now())
    assert result.problems == [] and result.said == []


def test_a_logger_that_stopped_is_said_once_then_cleared_when_it_collects_again(site: Site) -> None:
    settings = site.settings()
    assert site.collect().error is None
    last = site.sim.clock.now()
    later = last + timedelta(hours=2)
    first = check(settings, later)
    (line,) = first.said
    assert line.startswith(f"home ({site.sim.serial}): nothing collected for 2.0 h: no collect has run since")
    assert "is cron running `envoylog collect`?" in line
    assert check(settings, later + timedelta(minutes=5)).said == []  # said today already
    assert kinds(check(settings, later + timedelta(minutes=5))) == ["stale"]  # but still open
    assert check(settings, later + timedelta(hours=25)).said[0].startswith("home (")  # a day later, again
    site.sim.clock.set(later + timedelta(hours=25))
    assert site.collect().error is None
    back = check(settings, site.sim.clock.now())
    assert back.problems == [] and back.said == []  # gone, but not for long enough to be called cleared
    cleared = collect_and_check(site, settings, timedelta(minutes=30))
    assert cleared.problems == []
    # The cleared line names the problem without its explanation.
    assert cleared.said == [f"cleared: home ({site.sim.serial}): nothing collected for 27.0 h"]


def test_a_problem_that_flickers_is_not_cleared_and_said_again(site: Site) -> None:
    settings = site.settings()
    assert site.collect().error is None
    (line,) = check(settings, site.sim.clock.now() + timedelta(hours=2)).said
    assert "nothing collected for 2.0 h" in line
    site.sim.clock.advance(timedelta(hours=2))
    assert site.collect().error is None
    assert check(settings, site.sim.clock.now()).said == []  # read again: not yet cleared
    # Stale again within the half hour: the same problem, said already, so nothing to say either way.
    assert check(settings, site.sim.clock.now() + timedelta(minutes=70)).said == []


def test_a_gateway_that_fails_every_run_is_stale_with_the_last_error(site: Site) -> None:
    settings = site.settings()
    assert site.collect().error is None
    site.sim.clock.advance(timedelta(minutes=30))
    site.sim.set_faults(endpoints={"/info": EndpointFault(status=500)})
    for _ in range(3):
        site.sim.clock.advance(timedelta(minutes=15))
        site.collect()
    (line,) = check(settings, site.sim.clock.now()).said
    assert "no successful read since" in line and "collect runs, the last failed: " in line
    assert "HTTP 500" in line


def test_a_token_with_ten_days_left_and_the_cloud_down_is_said_and_clears_once_renewed(site: Site) -> None:
    settings = site.settings()
    assert site.collect().error is None
    site.sim.clock.advance(YEAR_TOKEN_TEN_DAYS_LEFT)
    site.sim.set_faults(cloud_down=True)
    run = site.collect()
    assert run.outcome == "ok"  # the old token still reads the gateway
    result = check(settings, site.sim.clock.now())
    (line,) = result.said
    assert line.startswith(f"home ({site.sim.serial}): its token expires in 10.0 days (")
    assert "and could not be renewed: no token from the Enphase cloud: enlighten route: " in line
    assert site.sim.password not in line
    site.sim.clear_faults()
    site.sim.clock.advance(timedelta(hours=2))  # past the back-off's hour: the next run renews
    assert site.collect().error is None
    headline = line.split(" and could not be renewed")[0] + " and could not be renewed"
    # Last seen by the check two hours ago: gone for long enough to be cleared at once.
    assert check(settings, site.sim.clock.now()).said == [f"cleared: {headline}"]


def test_a_pasted_token_near_its_end_without_a_login_is_said(site: Site) -> None:
    assert site.collect().error is None
    site.sim.clock.advance(YEAR_TOKEN_TEN_DAYS_LEFT)
    no_login = site.settings(username=None, password=None)
    result = check(no_login, site.sim.clock.now(), remember=False)
    (line,) = [p.line for p in result.problems if p.finding.kind == "token"]
    assert "its token expires in 10.0 days" in line and "no Enphase login is configured" in line


def test_a_session_storm_is_said(site: Site) -> None:
    settings = site.settings()
    for _ in range(8):  # the gateway forgets every session: each run opens a new one
        site.sim.expire_sessions()
        site.sim.clock.advance(timedelta(minutes=1))
        assert site.collect().error is None
    (line,) = check(settings, site.sim.clock.now()).said
    assert "8 gateway sessions opened in the last hour (more than 6)" in line
    # The logger stops: no session in the last hour, but that is no news of the storm.
    site.sim.clock.advance(timedelta(minutes=65))
    (stale,) = check(settings, site.sim.clock.now()).said
    assert "nothing collected for 65 min" in stale
    assert site.collect().error is None  # the stored session works: no new one
    storm = line.split(" (more than 6)")[0] + " (more than 6)"
    assert check(settings, site.sim.clock.now()).said == [f"cleared: {storm}"]  # gone for 65 min
    stale_cleared = collect_and_check(site, settings, timedelta(minutes=30)).said
    assert stale_cleared == [f"cleared: {stale.split(': no collect')[0]}"]


def test_a_firmware_update_is_said_once(site: Site) -> None:
    settings = site.settings()
    assert site.collect().error is None
    site.sim.set_faults(quirks=Quirks(firmware="8.3.5000"))
    site.sim.clock.advance(timedelta(minutes=1))
    assert site.collect().error is None
    (line,) = check(settings, site.sim.clock.now()).said
    assert f"firmware changed from {site.sim.profile.firmware} to 8.3.5000 at " in line
    site.sim.clock.advance(timedelta(days=2))
    assert site.collect().error is None
    later = check(settings, site.sim.clock.now())
    assert later.said == [] and later.problems == []  # news, told once: not a problem that stays open


def test_a_gateway_clock_ten_minutes_ahead_is_said(site: Site) -> None:
    behind = site.sim.clock.now() - timedelta(minutes=10)
    assert site.collect(clock=lambda: behind).error is None  # this machine's clock is 10 min behind
    (line,) = check(site.settings(), site.sim.clock.now()).said
    assert "its clock is 10 min ahead of this machine's" in line


def test_the_command_is_silent_when_well_and_exits_7_with_a_line_per_problem(
    site: Site, isolated_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    point_at(monkeypatch, site.sim, site.db_url)
    assert runner.invoke(app, ["collect"]).exit_code == 0
    healthy = runner.invoke(app, ["check"])
    assert (healthy.exit_code, healthy.output) == (0, "")
    # The gateway's clock jumps 10 minutes: the collect trusts it, and check says so.
    site.sim.clock.advance(timedelta(minutes=10))
    assert runner.invoke(app, ["collect"]).exit_code == 0
    said = runner.invoke(app, ["check"])
    assert said.exit_code == 7 and said.output.count("\n") == 1 and "its clock is 10 min ahead" in said.output
    again = runner.invoke(app, ["check"])
    assert (again.exit_code, again.output) == (7, "")  # open, said already today
    everything = runner.invoke(app, ["check", "--all"])
    assert everything.exit_code == 7 and everything.output == said.output
    document = json.loads(runner.invoke(app, ["check", "--format", "json"]).output)
    (problem,) = document["problems"]
    assert (problem["kind"], problem["serial"], problem["gateway"]) == ("clock", site.sim.serial, "default")
    assert "7" in runner.invoke(app, ["--help"]).output and 7 in EXIT_CODES


def test_check_thresholds_come_from_the_config_file(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text("[check]\nstale_minutes = 30\nlagging_share = 0.7\n", encoding="utf-8")
    settings = load_settings(config=config, environ={})
    assert settings.check == dataclasses.replace(CheckSettings(), stale_minutes=30, lagging_share=0.7)
    config.write_text("[check]\nlagging_share = 70\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"\[check\] lagging_share must be a share between 0 and 1"):
        load_settings(config=config, environ={})
    config.write_text("[check]\nstale_mins = 30\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="stale_mins"):
        load_settings(config=config, environ={})


# --- weeks of the simulator's history, with faults in the site's physics ---

LAST_DAY = date(2026, 6, 20)  # a summer history: long days, the sun high
PROFILE = get_profile("standard")  # twelve micro-inverters, production from their reports
HOME = "demo"  # the filler's gateway name


TIMES = [
    (RUNS, RUNS.c.started_at),
    (INVERTER.data, INVERTER.data.c.reported_at),
    (METER_DATA, METER_DATA.c.read_at),
    (BATTERY.data, BATTERY.data.c.read_at),
]


def site_settings(db_url: str) -> Settings:
    return Settings(
        db_url=db_url,
        timezone=PROFILE.timezone,
        enlighten_url="https://enlighten.invalid",
        entrez_url="https://entrez.invalid",
        gateways=(),
    )


@pytest.fixture
def history(db_url: str) -> Iterator[Callable[..., tuple[Settings, datetime]]]:
    """Fill three weeks ending LAST_DAY with the given inverter faults; the check runs half past midnight."""

    def fill(*faults: InverterFault) -> tuple[Settings, datetime]:
        fill_history(
            db_url, LAST_DAY - timedelta(days=20), LAST_DAY, profile="standard", inverter_faults=faults
        )
        settings = site_settings(db_url)
        midnight = local_midnight(LAST_DAY + timedelta(days=1), ZoneInfo(PROFILE.timezone))
        return settings, midnight + timedelta(minutes=30)

    yield fill


def local(day: date, hour: int) -> datetime:
    return datetime.combine(day, time(hour), tzinfo=ZoneInfo(PROFILE.timezone))


def local_at(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%d %H:%M").replace(tzinfo=ZoneInfo(PROFILE.timezone))


def serial_of(index: int) -> str:
    return inverter_serials(PROFILE, 1)[index]


def truncate_after(db_url: str, at: datetime) -> None:
    """The history as it stood at `at`: the filler stores whole days, a check looks at a moment."""
    engine = create_engine(db_url)
    try:
        with engine.begin() as conn:
            for table, column in TIMES:
                conn.execute(delete(table).where(column > at))
    finally:
        engine.dispose()


@pytest.mark.parametrize("last_day", [date(2025, 12, 20), LAST_DAY], ids=["winter", "summer"])
def test_a_healthy_history_gives_no_output_at_any_hour(db_url: str, last_day: date) -> None:
    """Every 30 minutes of a day and its night, the history cut there: dawn, dusk, a winter trickle."""
    fill_history(db_url, last_day - timedelta(days=20), last_day, profile="standard")
    settings = dataclasses.replace(site_settings(db_url), gateways=())
    at = local(last_day + timedelta(days=1), 0) + timedelta(minutes=30)  # the history ends at midnight
    while at > local(last_day, 0):
        truncate_after(db_url, at)
        result = check(settings, at, remember=False)
        assert result.problems == [], f"at {at}: {[p.line for p in result.problems]}"
        at -= timedelta(minutes=30)


def test_an_inverter_that_died_at_noon_stays_said_through_the_night_and_the_dawn(db_url: str) -> None:
    day = date(2025, 12, 20)
    fill_history(
        db_url,
        day - timedelta(days=20),
        day,
        profile="standard",
        inverter_faults=(InverterFault(3, 0.0, start=local(day - timedelta(days=1), 12)),),
    )
    settings = dataclasses.replace(site_settings(db_url), gateways=())
    at = local(day, 14)
    while at > local(day - timedelta(days=1), 13) + timedelta(minutes=15):
        truncate_after(db_url, at)
        result = check(settings, at, remember=False)
        assert [p.finding.subject for p in result.problems] == [serial_of(3)], f"at {at}: {result.said}"
        at -= timedelta(hours=1)


def test_an_inverter_silenced_at_noon_is_said_with_since_when(
    history: Callable[..., tuple[Settings, datetime]],
) -> None:
    settings, now = history(InverterFault(3, 0.0, start=local(LAST_DAY, 12)))
    result = check(settings, now)
    (line,) = result.said
    # Its last report is the last of its five-minute reports before noon.
    since = line.split(" has not reported since ")[1].split(" while ")[0]
    assert local(LAST_DAY, 11) + timedelta(minutes=55) <= local_at(since) < local(LAST_DAY, 12)
    assert line == (
        f"{HOME} ({PROFILE.serial}): inverter {serial_of(3)} has not reported since {since} "
        f"while 11 others produced until {LAST_DAY} {line.rsplit(' ', 1)[1]}"
    )
    until = line.split(" produced until ")[1]
    assert local_at(until) > local(LAST_DAY, 20)  # the others reported until the summer's dusk
    assert kinds(result) == ["inverter_silent"]
    assert check(settings, now + timedelta(minutes=15)).said == []  # said today already


def test_an_inverter_derated_by_a_fifth_is_said_with_how_much(
    history: Callable[..., tuple[Settings, datetime]],
) -> None:
    settings, now = history(InverterFault(DERATED, 0.8))
    result = check(settings, now)
    (line,) = result.said
    assert f"inverter {serial_of(DERATED)} made " in line
    share = int(line.split(" made ")[1].split("%")[0])
    assert 70 <= share < 85  # a fifth below its healthy share of the median
    days = f"({LAST_DAY - timedelta(days=2)} to {LAST_DAY})"
    assert f"of the array's median on each of the last 3 days {days}" in line


def test_a_string_of_five_dropped_is_said_for_each_inverter_and_as_a_production_drop(
    history: Callable[..., tuple[Settings, datetime]],
) -> None:
    settings, now = history(*(InverterFault(i, 0.0, start=local(LAST_DAY, 10)) for i in range(5)))
    result = check(settings, now)
    assert kinds(result) == ["inverter_silent"] * 5 + ["production_drop"]
    assert all("while 7 others produced until" in line for line in result.said if "has not reported" in line)
    (drop,) = [line for line in result.said if "production" in line]
    assert f"production on {LAST_DAY} was " in drop
    assert "of what comparable days give: the 14 days before" in drop
    share = int(drop.split(" kWh, ")[1].split("%")[0])
    assert 50 <= share < 80
    # The same afternoon, before the day is over: today so far against the same hours of the days before.
    afternoon = local(LAST_DAY, 16)
    truncate_after(settings.db_url, afternoon)
    today = check(settings, afternoon, remember=False)
    assert kinds(today) == ["inverter_silent"] * 5 + ["production_drop"]
    (so_far,) = [p.line for p in today.problems if p.finding.kind == "production_drop"]
    assert "production today until 16:00 was " in so_far
    assert 40 <= int(so_far.split(" kWh, ")[1].split("%")[0]) < 80
