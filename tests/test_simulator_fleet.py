"""A fleet of simulated gateways in one process, over real HTTP: serials, accounts, faults, a config file."""

from __future__ import annotations

import os
import signal
import sqlite3
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import pytest
import requests

from envoylog.config import load_settings
from envoylog.simulator import EndpointFault, Fleet
from envoylog.simulator.tokens import decode_unverified

pytestmark = pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")

START = datetime(2026, 6, 21, 10, 0, tzinfo=UTC)  # a summer midday in Amsterdam: the sun is up
TIMEOUT = 10.0
ENVOYLOG = [sys.executable, "-m", "envoylog"]


@pytest.fixture(scope="module")
def fleet() -> Iterator[Fleet]:
    """Twenty gateways of three accounts, at once-answering speed."""
    with Fleet(20, accounts=3, start=START, speed=0, sites=2) as running:
        yield running


def get(url: str, path: str, **kwargs: object) -> requests.Response:
    return requests.get(f"{url}{path}", verify=False, timeout=TIMEOUT, **kwargs)  # type: ignore[arg-type]


def login(fleet: Fleet, account: int, password: str | None = None) -> requests.Response:
    owner = fleet.accounts[account]
    form = {"user[email]": owner.username, "user[password]": password or owner.password}
    return requests.post(
        f"{fleet.enlighten_url}/login/login.json", data=form, verify=fleet.ca_file, timeout=TIMEOUT
    )


def request_token(fleet: Fleet, session_id: str, serial: str, username: str) -> requests.Response:
    body = {"session_id": session_id, "serial_num": serial, "username": username}
    return requests.post(f"{fleet.entrez_url}/tokens", json=body, verify=fleet.ca_file, timeout=TIMEOUT)


def session_of(url: str, token: str) -> str:
    answer = get(url, "/auth/check_jwt", headers={"Authorization": f"Bearer {token}"})
    assert answer.status_code == 200
    return answer.cookies["sessionId"]


def test_a_fleet_answers_info_with_a_serial_and_a_port_per_gateway(fleet: Fleet) -> None:
    fleet.clear_request_log()
    urls = fleet.gateway_urls
    with ThreadPoolExecutor(10) as pool:
        answers = list(pool.map(lambda url: get(url, "/info"), urls))
    serials = [answer.text.split("<sn>")[1].split("</sn>")[0] for answer in answers]
    assert all(answer.status_code == 200 for answer in answers)
    assert serials == fleet.serials and len(set(serials)) == 20
    assert len(set(urls)) == 20 and all(url.startswith("https://127.0.0.1:") for url in urls)
    assert fleet.requests_by_gateway() == {unit.name: 1 for unit in fleet.gateways}
    assert [entry.path for entry in fleet.gateway("gw0007").request_log()] == ["/info"]


def test_the_cloud_gives_each_account_tokens_for_its_own_gateways_only(fleet: Fleet) -> None:
    fleet.clear_request_log()
    assert [unit.account.username for unit in fleet.gateways[:4]] == [
        fleet.accounts[0].username,
        fleet.accounts[1].username,
        fleet.accounts[2].username,
        fleet.accounts[0].username,
    ]
    owner = fleet.accounts[1]
    assert login(fleet, 1, password=fleet.accounts[0].password).status_code == 401
    session_id = login(fleet, 1).json()["session_id"]
    login(fleet, 2)
    own, foreign = fleet.gateway(4), fleet.gateway(3)  # accounts 1 and 0
    token = request_token(fleet, session_id, own.serial, owner.username)
    assert token.status_code == 200
    _, claims = decode_unverified(token.text)
    assert (claims["aud"], claims["username"]) == (own.serial, owner.username)
    assert request_token(fleet, session_id, foreign.serial, owner.username).status_code == 403
    # A gateway takes only tokens for its own serial, though one issuer signs them all.
    cookie = session_of(own.url, token.text)
    assert get(own.url, "/ivp/meters", cookies={"sessionId": cookie}).status_code == 200
    refused = get(foreign.url, "/auth/check_jwt", headers={"Authorization": f"Bearer {token.text}"})
    assert refused.status_code == 401
    assert fleet.logins_by_account() == {
        fleet.accounts[0].username: 0,
        fleet.accounts[1].username: 2,
        fleet.accounts[2].username: 1,
    }


def test_gateways_sharing_a_site_read_differently_and_list_inverters_of_their_own(fleet: Fleet) -> None:
    first, second = fleet.gateway(0), fleet.gateway(2)  # two sites: both on the first
    readings = []
    for unit in (first, second):
        cookie = session_of(unit.url, fleet.issue_token(unit.index))
        production = get(unit.url, "/production.json?details=1", cookies={"sessionId": cookie}).json()
        inverters = get(unit.url, "/api/v1/production/inverters", cookies={"sessionId": cookie}).json()
        readings.append((production["production"][1], {inverter["serialNumber"] for inverter in inverters}))
    (eim_a, serials_a), (eim_b, serials_b) = readings
    assert eim_a["wNow"] > 0 and eim_b["wNow"] > 0 and eim_a["wNow"] != eim_b["wNow"]
    assert eim_a["whLifetime"] != eim_b["whLifetime"]
    assert len(serials_a) == len(serials_b) == 30 and not serials_a & serials_b


def test_a_fault_on_one_gateway_leaves_the_others_alone(fleet: Fleet) -> None:
    sick, healthy = fleet.gateway(5), fleet.gateway(6)
    sick.set_endpoint_fault("/info", EndpointFault(status=503))
    try:
        assert get(sick.url, "/info").status_code == 503
        assert get(healthy.url, "/info").status_code == 200
    finally:
        sick.set_endpoint_fault("/info", None)
    assert get(sick.url, "/info").status_code == 200


def test_the_config_file_names_every_gateway_with_its_accounts_credentials(
    fleet: Fleet, tmp_path: Path, isolated_env: Path
) -> None:
    path = fleet.write_config(tmp_path / "fleet.toml", db_url=f"sqlite:///{tmp_path / 'fleet.db'}")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    settings = load_settings(config=path, environ={})
    assert settings.enlighten_url == fleet.enlighten_url and settings.timezone == "Europe/Amsterdam"
    assert [gateway.name for gateway in settings.gateways] == [unit.name for unit in fleet.gateways]
    for gateway, unit in zip(settings.gateways, fleet.gateways, strict=True):
        assert (gateway.host, gateway.serial) == (unit.url, unit.serial)
        assert (gateway.username, gateway.password) == (unit.account.username, unit.account.password)
    assert fleet.environment() == {"REQUESTS_CA_BUNDLE": str(fleet.ca_file)}


def test_stopping_a_fleet_frees_its_ports() -> None:
    fleet = Fleet(3, start=START).start()
    urls = fleet.gateway_urls
    fleet.stop()
    assert not fleet.running
    for url in urls:
        with pytest.raises(requests.ConnectionError):
            get(url, "/info")


# --- the command line ----------------------------------------------------------------------------------


def test_envoylog_simulate_a_fleet_writes_a_config_that_collect_uses(tmp_path: Path) -> None:
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith("ENVOYLOG_") and name != "REQUESTS_CA_BUNDLE"
    }
    env.update(HOME=str(tmp_path), XDG_DATA_HOME=str(tmp_path / "data"), XDG_CONFIG_HOME=str(tmp_path / "c"))
    config = tmp_path / "fleet.toml"
    process = subprocess.Popen(
        [
            *ENVOYLOG,
            "simulate",
            "--gateways",
            "3",
            "--accounts",
            "2",
            "--port",
            "0",
            "--write-config",
            str(config),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    try:
        assert process.stdout is not None
        lines = []
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            line = process.stdout.readline()
            lines.append(line)
            if line.startswith("Stop it with Ctrl-C") or not line:
                break
        text = "".join(lines)
        assert "a fleet of 3 gateways" in text and config.is_file()
        exports = dict(
            line.removeprefix("  export ").strip().split("=", 1)
            for line in lines
            if line.startswith("  export ")
        )
        assert set(exports) == {"REQUESTS_CA_BUNDLE"}
        assert f"envoylog --config {config} collect" in text
        database = tmp_path / "fleet.db"
        collect = subprocess.run(
            [*ENVOYLOG, "--config", str(config), "--db", f"sqlite:///{database}", "collect"],
            env={**env, **exports},
            capture_output=True,
            text=True,
            timeout=120,
            cwd=tmp_path,
        )
        assert collect.returncode == 0, collect.stderr
        assert collect.stdout == collect.stderr == ""
        with sqlite3.connect(database) as conn:
            serials = {row[0] for row in conn.execute("SELECT serial FROM gateways")}
            with_readings = conn.execute(
                "SELECT COUNT(DISTINCT gateway_id) FROM meter_readings JOIN series ON series.id = series_id"
            ).fetchone()[0]
        assert len(serials) == 3 and with_readings == 3
    finally:
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=15)
    assert process.returncode == 0, err
    assert "simulator stopped" in out and "Traceback" not in err
