"""Shared fixtures: a fresh database per test on SQLite and, when configured, on PostgreSQL."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import uuid
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Connection, make_url
from urllib3.exceptions import InsecureRequestWarning

from envoylog.collect.run import GatewayRun, collect_all
from envoylog.config import GatewaySettings, Settings
from envoylog.simulator import Simulator

POSTGRES_URL_VARIABLE = "ENVOYLOG_TEST_POSTGRES_URL"
CAPTURES = Path(__file__).resolve().parents[2] / "shared" / "envoy-captures"


def postgres_base_url() -> str | None:
    """The PostgreSQL server the tests may use, if any."""
    return os.environ.get(POSTGRES_URL_VARIABLE) or None


DATABASES = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]


@pytest.fixture(params=DATABASES)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A URL of an empty database: a new SQLite file, or a new schema on the test PostgreSQL server."""
    with empty_database(request.param, tmp_path) as url:
        yield url


@contextmanager
def empty_database(kind: str, directory: Path) -> Iterator[str]:
    """A new SQLite file in `directory`, or a new schema on the test PostgreSQL server, dropped afterwards."""
    if kind == "sqlite":
        yield f"sqlite:///{directory / 'envoylog.db'}"
        return
    base = postgres_base_url()
    if base is None:
        pytest.skip(f"PostgreSQL tests need {POSTGRES_URL_VARIABLE} (CI sets it)")
    schema = f"test_{uuid.uuid4().hex[:16]}"
    admin = create_engine(base)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    url = make_url(base).update_query_dict({"options": f"-csearch_path={schema}"})
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """The CLI configures the root logger for its run; later tests get the logging they had before."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def point_at(
    monkeypatch: pytest.MonkeyPatch, sim: Simulator, db_url: str, config: Path | None = None
) -> None:
    """The environment a user sets to log the simulated gateway into the test database (with a config)."""
    for name, value in sim.environment().items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("ENVOYLOG_DB", db_url)
    if config is not None:
        monkeypatch.setenv("ENVOYLOG_CONFIG", str(config))


@pytest.fixture
def isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No ENVOYLOG_* variables from the developer's shell, and the user directories inside tmp_path."""
    for name in list(os.environ):
        if name.startswith("ENVOYLOG_") and name != POSTGRES_URL_VARIABLE:
            monkeypatch.delenv(name)
    home = tmp_path / "home"
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))
    monkeypatch.setenv("XDG_DATA_HOME", str(home / ".local" / "share"))
    return home


class Site:
    """A simulated gateway and a database, and the collector run against them as cron would."""

    def __init__(self, sim: Simulator, db_url: str) -> None:
        self.sim = sim
        self.db_url = db_url

    def settings(self, **gateway: Any) -> Settings:
        """Settings pointing at the simulator; `gateway` overrides the gateway's own values."""
        fields = {
            "name": "home",
            "host": self.sim.gateway_url,
            "username": self.sim.username,
            "password": self.sim.password,
        }
        fields.update(gateway)
        return Settings(
            db_url=self.db_url,
            timezone="Europe/Amsterdam",
            enlighten_url=self.sim.enlighten_url,
            entrez_url=self.sim.entrez_url,
            gateways=(GatewaySettings(**fields),),
        )

    def collect(self, settings: Settings | None = None, **options: Any) -> GatewayRun:
        """One collect run of the one gateway, on the simulator's clock, trusting its CA for the cloud."""
        self.sim.clear_request_log()
        options.setdefault("clock", self.sim.clock.now)
        (run,) = collect_all(settings or self.settings(), cloud_verify=str(self.sim.ca_file), **options)
        return run

    def requests(self, service: str = "gateway", path: str | None = None) -> list[str]:
        """Paths requested since the last collect started."""
        return [
            entry.path
            for entry in self.sim.request_log()
            if entry.service == service and (path is None or entry.path.split("?")[0] == path)
        ]

    def cloud_requests(self) -> int:
        """Requests to Enlighten and Entrez since the last collect started."""
        return sum(1 for entry in self.sim.request_log() if entry.service in ("enlighten", "entrez"))

    def rows(self) -> dict[str, int]:
        """Reading rows stored, per table."""
        engine = create_engine(self.db_url)
        try:
            with engine.connect() as conn:
                return {
                    table: int(conn.execute(text(f"SELECT COUNT(*) FROM {table}")).scalar_one())  # noqa: S608
                    for table in ("meter_readings", "inverter_readings", "battery_readings")
                }
        finally:
            engine.dispose()

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """A connection to the database in a transaction that commits at the end."""
        engine = create_engine(self.db_url)
        try:
            with engine.begin() as conn:
                yield conn
        finally:
            engine.dispose()

    def query(self, sql: str, **params: Any) -> list[Any]:
        """Rows of an SQL query on the database."""
        engine = create_engine(self.db_url)
        try:
            with engine.connect() as conn:
                return list(conn.execute(text(sql), params))
        finally:
            engine.dispose()


@pytest.fixture
def sim(tmp_path: Path) -> Iterator[Simulator]:
    """The metered profile on loopback, its clock at real time."""
    with Simulator("metered", state_dir=tmp_path / "sim") as simulator:
        yield simulator


@pytest.fixture
def site(sim: Simulator, db_url: str) -> Site:
    """The simulator and an empty database on SQLite and PostgreSQL."""
    return Site(sim, db_url)


@pytest.fixture
def start_site(
    db_url: str, isolated_env: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Iterator[Callable[[str], Site]]:
    """Start a simulator of another profile and point the environment at it; stopped after the test."""
    started: list[Simulator] = []

    def start(profile: str) -> Site:
        simulator = Simulator(profile, state_dir=tmp_path / f"sim-{profile}").start()
        started.append(simulator)
        point_at(monkeypatch, simulator, db_url)
        return Site(simulator, db_url)

    yield start
    for simulator in started:
        simulator.stop()


@pytest.fixture
def quiet_tls() -> Iterator[None]:
    """Requests to the self-signed simulated gateway made by the test itself, without the warning."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", InsecureRequestWarning)
        yield


def envoylog_command() -> list[str]:
    """The installed `envoylog` script beside this interpreter, else `python -m envoylog`."""
    script = Path(sys.executable).with_name("envoylog")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "envoylog"]


def user_environment(home: Path, **extra: str) -> dict[str, str]:
    """A user's environment with `home` as HOME, no ENVOYLOG_* settings, and `extra` on top."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("ENVOYLOG_")}
    env.pop("REQUESTS_CA_BUNDLE", None)
    env.update(
        HOME=str(home),
        XDG_CONFIG_HOME=str(home / ".config"),
        XDG_DATA_HOME=str(home / ".local" / "share"),
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
    )
    env.update(extra)
    return env


@dataclass(frozen=True)
class DemoRun:
    """`envoylog demo` as a new user runs it: a home of its own, the installed command, its output."""

    home: Path
    returncode: int
    stdout: str
    stderr: str
    started_at: datetime
    finished_at: datetime

    @property
    def database(self) -> Path:
        """Where the demo says it keeps its database."""
        return self.home / ".local" / "share" / "envoylog" / "demo.db"


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> DemoRun:
    """The README's first command, run once for the session (it collects a whole simulated day)."""
    home = tmp_path_factory.mktemp("demo-home")
    started = datetime.now(UTC)
    done = subprocess.run(
        [*envoylog_command(), "demo"],
        env=user_environment(home),
        cwd=home,
        capture_output=True,
        text=True,
        timeout=300,
    )
    return DemoRun(home, done.returncode, done.stdout, done.stderr, started, datetime.now(UTC))
