"""The command line: version, help with the exit codes, and `envoylog simulate` as a user runs it."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import warnings
from pathlib import Path

import requests
from typer.testing import CliRunner
from urllib3.exceptions import InsecureRequestWarning

from envoylog import __version__
from envoylog.cli import app

runner = CliRunner()


def test_version() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.stdout.strip() == f"envoylog {__version__}"


def test_help_documents_the_exit_codes() -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    lines = [line.strip() for line in result.stdout.splitlines()]
    for code in (
        "0  success",
        "2  usage or configuration error",
        "3  authentication",
        "4  gateway",
        "5  database",
        "6  another collect",
    ):
        assert any(line.startswith(code) for line in lines), code


def test_bad_database_url_is_exit_2_with_one_line(isolated_env: Path) -> None:
    result = runner.invoke(app, ["--db", "nonsense", "db", "current"])
    assert result.exit_code == 2
    assert (
        result.stderr
        == "envoylog: error: bad database URL: expected sqlite:///PATH or postgresql+psycopg://USER@HOST/DB\n"
    )


def test_malformed_config_file_is_exit_2(tmp_path: Path, isolated_env: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text("db = = 1\n")
    result = runner.invoke(app, ["--config", str(config), "db", "current"])
    assert result.exit_code == 2
    assert result.stderr.startswith(f"envoylog: error: config file {config} is not valid TOML")
    assert "Traceback" not in result.output


def test_simulate_refuses_bad_options(isolated_env: Path) -> None:
    cases = [
        (["--profile", "nope"], "Invalid value for '--profile': 'nope' is not one of 'standard'"),
        (["--fault", "bogus"], "unknown fault 'bogus'"),
        (["--fault", "/production.json=teapot"], "bad fault"),
        (["--start", "yesterday"], "bad --start"),
        (["--start", "2026-06-21T12:00:00"], "give a zone"),
        (["--speed", "0"], "--speed must be positive"),
        (["--capture", str(isolated_env)], "is not a gateway capture"),
        (["--latency", "slow"], "Invalid value for '--latency': 'slow' is not one of 'none', 'realistic'"),
        (["--gateways", "0"], "--gateways must be at least 1"),
        (["--gateways", "2", "--accounts", "3"], "--accounts must be between 1 and the number of gateways"),
        (["--gateways", "2", "--capture", str(isolated_env)], "cannot be combined with --gateways"),
    ]
    for options, message in cases:
        result = runner.invoke(app, ["simulate", "--port", "0", *options])
        assert result.exit_code == 2, options
        assert message in result.stderr, options


def test_simulate_on_a_port_in_use_is_exit_2(isolated_env: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = runner.invoke(app, ["simulate", "--port", str(port), "--cloud-port", "0"])
    assert result.exit_code == 2
    assert "is in use" in result.stderr


def test_envoylog_simulate_serves_a_gateway_a_client_can_log_into(tmp_path: Path) -> None:
    env = {**os.environ, "HOME": str(tmp_path), "XDG_DATA_HOME": str(tmp_path / "data")}
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "envoylog",
            "simulate",
            "--profile",
            "metered",
            "--port",
            "0",
            "--speed",
            "60",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    try:
        assert process.stdout is not None
        exports: dict[str, str] = {}
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            line = process.stdout.readline()
            if line.startswith("  export "):
                name, _, value = line.removeprefix("  export ").strip().partition("=")
                exports[name] = value
            if line.startswith("Stop it with Ctrl-C") or not line:
                break
        assert set(exports) >= {
            "ENVOYLOG_HOST",
            "ENVOYLOG_ENTREZ_URL",
            "REQUESTS_CA_BUNDLE",
            "ENVOYLOG_SERIAL",
        }
        ca = exports["REQUESTS_CA_BUNDLE"]
        assert Path(ca).is_relative_to(tmp_path / "data" / "envoylog" / "simulator" / "metered")

        login = requests.post(
            f"{exports['ENVOYLOG_ENLIGHTEN_URL']}/login/login.json",
            data={
                "user[email]": exports["ENVOYLOG_USERNAME"],
                "user[password]": exports["ENVOYLOG_PASSWORD"],
            },
            verify=ca,
            timeout=10,
        )
        token = requests.post(
            f"{exports['ENVOYLOG_ENTREZ_URL']}/tokens",
            json={
                "session_id": login.json()["session_id"],
                "serial_num": exports["ENVOYLOG_SERIAL"],
                "username": exports["ENVOYLOG_USERNAME"],
            },
            verify=ca,
            timeout=10,
        ).text
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", InsecureRequestWarning)
            check = requests.get(
                f"{exports['ENVOYLOG_HOST']}/auth/check_jwt",
                headers={"Authorization": f"Bearer {token}"},
                verify=False,
                timeout=10,
            )
            session_id = check.cookies["sessionId"]
            production = requests.get(
                f"{exports['ENVOYLOG_HOST']}/production.json?details=1",
                cookies={"sessionId": session_id},
                verify=False,
                timeout=10,
            )
        assert check.status_code == 200
        assert production.status_code == 200
        body = production.json()
        assert [entry["type"] for entry in body["production"]] == ["inverters", "eim"]
        assert len(body["production"][1]["lines"]) == 3
    finally:
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=15)
    assert process.returncode == 0, err
    assert "simulator stopped" in out
    assert "Traceback" not in err
