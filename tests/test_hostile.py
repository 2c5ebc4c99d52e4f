"""Hostile peers and broken surroundings: each defect of the adversarial run, kept fixed by a test.

The numbers in the test names are those of the issue's list. The peer is the simulator where it can play the
part, and `hostile.HostilePeer` where only a deliberately evil server can.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import signal
import socket
import sqlite3
import subprocess
import threading
import time
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest
from conftest import Site, envoylog_command, user_environment
from hostile import INFO_FW8, HostilePeer, Route, endless, trickle, without_root_powers
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError
from typer.testing import CliRunner

from envoylog.cli import app
from envoylog.collect.run import collect_all
from envoylog.config import GatewaySettings, Settings, load_settings
from envoylog.errors import ConfigError, GatewayError
from envoylog.simulator import EndpointFault, Simulator


def settings_for(db_url: str, host: str, **gateway: object) -> Settings:
    return Settings(
        db_url=db_url,
        timezone="Europe/Amsterdam",
        enlighten_url="https://127.0.0.1:9",
        entrez_url="https://127.0.0.1:9",
        gateways=(GatewaySettings(name="home", host=host, **gateway),),  # type: ignore[arg-type]
    )


def impostor_routes() -> dict[str, Route]:
    """A peer that answers as a firmware 8 gateway and hands out sessions to whoever asks."""
    return {
        "/info": Route(body=INFO_FW8, content_type="text/xml"),
        "/auth/check_jwt": Route(
            body=b"<html>ok</html>", headers=[("Set-Cookie", "sessionId=stolen; Path=/")]
        ),
        "/production.json": Route(body=b"{}"),
    }


def credentials_seen(peer: HostilePeer) -> list[str]:
    """Every credential the peer was sent, over TLS or not."""
    return [
        f"{'https' if seen.tls else 'http'} {seen.path}: {name}"
        for seen in peer.seen
        for name in ("authorization", "cookie")
        if name in seen.headers
    ]


# --- 1. fingerprint bypass -------------------------------------------------------------------------------


def test_1_a_pinned_gateway_is_never_spoken_to_over_http(site: Site, tmp_path: Path) -> None:
    pinned = site.settings(fingerprint=site.sim.gateway_cert_sha256)
    assert site.collect(pinned).outcome == "ok"  # the real gateway, pinned: fine
    with HostilePeer(impostor_routes(), state_dir=tmp_path / "impostor") as impostor:
        # The impostor has the gateway's address; its certificate is not the pinned one.
        run = site.collect(
            site.settings(host=f"127.0.0.1:{impostor.port}", fingerprint=site.sim.gateway_cert_sha256)
        )
    assert run.outcome == "failed" and run.error is not None and run.error.status == 4
    assert "is not the configured fingerprint" in str(run.error)
    assert credentials_seen(impostor) == []
    assert not [seen for seen in impostor.seen if not seen.tls]  # no fallback to plain HTTP at all


def test_1_a_gateway_known_to_need_a_token_is_never_spoken_to_over_http(site: Site, tmp_path: Path) -> None:
    assert site.collect().outcome == "ok"  # now the database knows it runs firmware 8
    # In its place, a peer whose HTTPS fails and whose plain HTTP says it is that gateway.
    with HostilePeer(impostor_routes(), state_dir=tmp_path / "impostor", tls=False) as impostor:
        run = site.collect(site.settings(host=f"127.0.0.1:{impostor.port}"))
    assert run.outcome == "failed"
    assert credentials_seen(impostor) == []
    assert not [seen for seen in impostor.seen if not seen.tls]


def test_1_a_new_gateway_that_needs_a_token_over_plain_http_gets_no_token(
    db_url: str, tmp_path: Path
) -> None:
    with HostilePeer(impostor_routes(), state_dir=tmp_path / "impostor", tls=False) as impostor:
        settings = settings_for(db_url, f"127.0.0.1:{impostor.port}", token="eyJhbGciOiJFUzI1NiJ9.e30.c2ln")
        (run,) = collect_all(settings)
    assert run.outcome == "failed" and "sends tokens over HTTPS only" in str(run.error)
    assert credentials_seen(impostor) == []


def test_1_the_fingerprint_has_a_variable(isolated_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENVOYLOG_FINGERPRINT", "AB:" * 31 + "AB ")
    (gateway,) = load_settings().gateways
    assert gateway.fingerprint == "ab" * 32
    assert gateway.base_urls[0].startswith("https://")


# --- 5. no response size limit -----------------------------------------------------------------------


@pytest.mark.parametrize("body", ["endless", "declared"])
def test_5_an_endless_or_huge_answer_is_refused_in_bounded_time(tmp_path: Path, body: str) -> None:
    huge = Route(body=endless()) if body == "endless" else Route(body=b"[" * (8 * 1024 * 1024))
    with HostilePeer({"/production.json": huge, "/info": Route(body=INFO_FW8, content_type="text/xml")},
                     state_dir=tmp_path / "peer") as peer:  # fmt: skip
        from envoylog.gateway.client import AnswerTooLarge, GatewayClient

        client = GatewayClient(f"https://127.0.0.1:{peer.port}", deadline=time.monotonic() + 30)
        started = time.monotonic()
        with pytest.raises(AnswerTooLarge, match="answered more than 4 MB"):
            client.get("/production.json")
        assert time.monotonic() - started < 10
        client.close()


# --- 8. the deadline holds while bytes trickle -------------------------------------------------------


@pytest.mark.parametrize("where", ["body", "headers"])
def test_8_a_trickling_gateway_cannot_hold_a_run_past_its_deadline(
    db_url: str, tmp_path: Path, where: str
) -> None:
    route = (
        Route(body=trickle(INFO_FW8, 0.5), content_type="text/xml")
        if where == "body"
        else Route(body=INFO_FW8, content_type="text/xml", header_delay_s=0.5, headers=[("X-Pad", "x")] * 20)
    )
    with HostilePeer({"/info": route}, state_dir=tmp_path / "peer", plain=False) as peer:
        started = time.monotonic()
        (run,) = collect_all(settings_for(db_url, f"https://127.0.0.1:{peer.port}"), deadline_s=3)
        took = time.monotonic() - started
    assert run.outcome == "failed" and isinstance(run.error, GatewayError)
    assert "did not answer within" in str(run.error)
    assert took < 5, took


# --- 12. cloud URLs are https ---------------------------------------------------------------------------


@pytest.mark.parametrize("variable", ["ENVOYLOG_ENLIGHTEN_URL", "ENVOYLOG_ENTREZ_URL"])
def test_12_a_plain_http_cloud_url_is_refused(
    isolated_env: Path, monkeypatch: pytest.MonkeyPatch, variable: str
) -> None:
    monkeypatch.setenv(variable, "http://enlighten.example")
    with pytest.raises(ConfigError, match="expected an https:// URL"):
        load_settings()


# --- 4. one malformed answer ends only that endpoint ---------------------------------------------------


def production_json(watts: str, wh: str = "1000") -> str:
    """A /production.json with a production CT whose power and lifetime energy are given as JSON text."""
    return (
        '{"production": [{"type": "eim", "activeCount": 1, "measurementType": "production", '
        f'"readingTime": {int(time.time())}, "wNow": {watts}, "whLifetime": {wh}}}], "consumption": []}}'
    )


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/production.json", production_json("1" + "0" * 400)),  # a 401-digit integer: OverflowError
        ("/ivp/meters/readings", "[" * 100_000 + "]" * 100_000),  # RecursionError in the JSON parser
    ],
    ids=["401-digit integer", "100000 nested arrays"],
)
def test_4_a_malformed_answer_is_an_endpoint_error_and_everything_else_is_stored(
    site: Site, tmp_path: Path, path: str, body: str
) -> None:
    assert site.collect().outcome == "ok"
    site.sim.clock.advance(timedelta(minutes=1))
    site.sim.set_endpoint_fault(path, EndpointFault(body=body))
    with Simulator("legacy", state_dir=tmp_path / "second") as second:  # needs no token from the cloud
        settings = site.settings()
        other = Site(second, site.db_url).settings(name="barn")
        both = replace(settings, gateways=(*settings.gateways, *other.gateways))
        first, after = collect_all(both, clock=site.sim.clock.now, cloud_verify=str(site.sim.ca_file))
    assert (first.outcome, first.error) == ("partial", None)
    assert [error.split(":")[0].split("?")[0] for error in first.endpoint_errors] == [path]
    assert sum(first.rows_added.values()) > 0  # the other endpoints' readings
    assert after.name == "barn" and after.error is None  # and the next gateway too
    assert site.query("SELECT COUNT(*) FROM runs WHERE outcome = 'running'") == [(0,)]


# --- 11. impossible values are not stored -------------------------------------------------------------


@pytest.mark.parametrize(
    ("watts", "wh", "said"),
    [
        ("1e308", "1000", "1e+308 W is not a possible watts: not stored"),
        ("-5000", "1000", "-5000 W is not a possible watts: not stored"),
        ("100", "9e18", "9e+18 Wh is not a possible wh_lifetime: stored as unknown"),
        ("100", "-1", "-1 Wh is not a possible wh_lifetime: stored as unknown"),
    ],
)
def test_11_impossible_values_are_never_stored(site: Site, watts: str, wh: str, said: str) -> None:
    assert site.collect().outcome == "ok"
    site.sim.clock.advance(timedelta(minutes=1))
    site.sim.set_endpoint_fault("/production.json", EndpointFault(body=production_json(watts, wh)))
    run = site.collect()
    assert run.outcome == "partial"
    assert any(said in error for error in run.endpoint_errors), run.endpoint_errors
    rows = site.query(
        "SELECT m.watts, m.wh_lifetime FROM meter_readings m JOIN series s ON s.id = m.series_id "
        "WHERE s.kind = 'production' AND s.phase = 0"
    )
    assert all(-1000 <= w <= 500_000 and (wh_ is None or 0 <= wh_ <= 1e10) for w, wh_ in rows), rows
    report = CliRunner().invoke(app, ["--db", site.db_url, "report", "--day", "today", "--format", "json"])
    assert report.exit_code == 0 and report.stderr == ""  # no overflow warning, no inf
    assert "Infinity" not in report.stdout and "inf" not in report.stdout.lower().replace("info", "")


# --- 17. texts too long for the database ---------------------------------------------------------------


def test_17_an_overlong_serial_costs_that_device_only(site: Site) -> None:
    now = int(time.time())
    device_data = (
        '{"1": {"sn": "' + "4" * 80 + '", "devName": "pcu", "channels": [{"lastReading": {"endDate": '
        f"{now}" + '}, "watts": {"now": 100, "max": 290}, "lifetime": {"joulesProduced": 5}}]}, '
        '"deviceCount": 1, "deviceDataLimit": 50}'
    )
    site.sim.set_endpoint_fault("/ivp/pdm/device_data", EndpointFault(body=device_data))
    run = site.collect()
    assert run.outcome == "partial" and run.error is None
    assert any("serial of 80 characters" in error for error in run.endpoint_errors)
    assert run.rows_added["production"] > 0  # everything else is stored, on PostgreSQL too


def test_17_an_overlong_gateway_serial_is_an_unreadable_info(site: Site) -> None:
    info = INFO_FW8.decode().replace("122238082763", "1" * 100)
    site.sim.set_endpoint_fault("/info", EndpointFault(body=info))
    run = site.collect()
    assert run.outcome == "failed" and run.error is not None and run.error.status == 4
    assert "a serial of 100 characters" in str(run.error)


# --- 3. PostgreSQL restarting under a run, or under collect --every -------------------------------------


def terminate(db_url: str, application: str) -> int:
    """End every server connection of `application`, as a server restart does; how many there were."""
    admin = create_engine(db_url)
    try:
        with admin.begin() as conn:
            return len(
                conn.execute(
                    text(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = :a"
                    ),
                    {"a": application},
                ).all()
            )
    finally:
        admin.dispose()


@pytest.mark.postgres
def test_3_a_database_restart_during_a_run_loses_nothing_and_ends_well(site: Site) -> None:
    if not site.db_url.startswith("postgresql"):
        pytest.skip("a server that drops its connections is a PostgreSQL matter")
    url = make_url(site.db_url).update_query_dict({"application_name": "envoylog-restart"})
    restarting = Site(site.sim, url.render_as_string(hide_password=False))
    assert restarting.collect().outcome == "ok"
    site.sim.clock.advance(timedelta(minutes=1))
    site.sim.set_endpoint_fault("/ivp/meters/readings", EndpointFault(hang_seconds=1.5))
    before = site.rows()["meter_readings"]
    ended = threading.Timer(0.5, terminate, (site.db_url, "envoylog-restart"))
    ended.start()
    run = restarting.collect()  # the lock's connection and the pool's die while the gateway is read
    ended.join()
    assert (run.outcome, run.error) == ("ok", None), run.summary()
    assert site.rows()["meter_readings"] > before
    assert site.query("SELECT outcome FROM runs ORDER BY id DESC LIMIT 1") == [("ok",)]


@pytest.mark.postgres
def test_3_collect_every_keeps_polling_through_a_database_restart(site: Site, tmp_path: Path) -> None:
    if not site.db_url.startswith("postgresql"):
        pytest.skip("a server that drops its connections is a PostgreSQL matter")
    url = make_url(site.db_url).update_query_dict({"application_name": "envoylog-every"})
    env = user_environment(
        tmp_path, **site.sim.environment(), ENVOYLOG_DB=url.render_as_string(hide_password=False)
    )
    process = subprocess.Popen(
        [*envoylog_command(), "collect", "--every", "1"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:

        def runs() -> int:
            try:
                return int(site.query("SELECT COUNT(*) FROM runs WHERE outcome = 'ok'")[0][0])
            except SQLAlchemyError:
                return 0  # no tables yet

        deadline = time.monotonic() + 30
        while runs() < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        # Connections live while a cycle runs (a slow endpoint makes it last): end them, as a restart would.
        site.sim.set_endpoint_fault("/ivp/meters/readings", EndpointFault(hang_seconds=0.5))
        ended = 0
        while not ended and time.monotonic() < deadline:
            ended = terminate(site.db_url, "envoylog-every")
            time.sleep(0.05)
        assert ended >= 1
        site.sim.set_endpoint_fault("/ivp/meters/readings", None)
        after = runs()
        while runs() < after + 2 and time.monotonic() < deadline + 30:
            time.sleep(0.2)
        assert runs() >= after + 2 and process.poll() is None  # still polling, and storing
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=60)
    assert process.returncode == 0, stderr
    assert b"Traceback" not in stderr


# --- 6. no token on stderr when storing it fails ---------------------------------------------------------


def failing_auth_writes(db_url: str) -> None:
    """Make every write of the auth table fail inside the database, as a full or broken disk would."""
    engine = create_engine(db_url)
    with engine.begin() as conn:
        if db_url.startswith("sqlite"):
            conn.execute(
                text(
                    "CREATE TRIGGER no_auth BEFORE INSERT ON auth "
                    "BEGIN SELECT RAISE(ABORT, 'disk on fire'); END"
                )
            )
        else:
            conn.execute(text(
                "CREATE FUNCTION no_auth() RETURNS trigger LANGUAGE plpgsql AS "
                "$$ BEGIN RAISE EXCEPTION 'disk on fire'; END $$"
            ))  # fmt: skip
            conn.execute(
                text("CREATE TRIGGER no_auth BEFORE INSERT ON auth FOR EACH ROW EXECUTE FUNCTION no_auth()")
            )
    engine.dispose()


@pytest.mark.parametrize("verbose", [[], ["-v"]], ids=["quiet", "verbose"])
def test_6_a_failing_token_write_prints_no_token(site: Site, isolated_env: Path, verbose: list[str]) -> None:
    token = site.sim.issue_token()
    assert CliRunner().invoke(app, ["--db", site.db_url, "db", "upgrade"]).exit_code == 0
    failing_auth_writes(site.db_url)
    result = CliRunner().invoke(app, ["auth", "set-token", token, "--db", site.db_url, *verbose])
    assert result.exit_code == 5
    assert result.stderr.splitlines()[-1].startswith("envoylog: error: database error: ")
    assert "disk on fire" in result.stderr
    _, payload, signature = token.split(".")
    for part in (signature, payload, payload[:40], signature[:20]):
        assert part not in result.output, "a piece of the token reached the output"


# --- 9. database trouble outside collect: one line, exit 5 ---------------------------------------------


def test_9_a_database_locked_by_another_writer_is_exit_5(tmp_path: Path, isolated_env: Path) -> None:
    database = tmp_path / "envoylog.db"
    url = f"sqlite:///{database}"
    assert CliRunner().invoke(app, ["--db", url, "db", "upgrade"]).exit_code == 0
    with sqlite3.connect(database) as conn:  # a session to forget: logging out has something to write
        conn.execute(
            "INSERT INTO gateways (serial, name, first_seen_at, last_seen_at) VALUES ('1', 'x', 0, 0)"
        )
        conn.execute("INSERT INTO auth (gateway_id, kind, secret, updated_at) VALUES (1, 'session', 's', 0)")
    holder = sqlite3.connect(database, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        started = time.monotonic()
        result = CliRunner().invoke(app, ["auth", "logout", "--db", url])
        took = time.monotonic() - started
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert result.exit_code == 5 and result.stderr == "envoylog: error: database error: database is locked\n"
    assert took < 15


def test_9_a_database_of_a_newer_envoylog_is_exit_5_and_says_to_upgrade(
    db_url: str, isolated_env: Path
) -> None:
    assert CliRunner().invoke(app, ["--db", db_url, "db", "upgrade"]).exit_code == 0
    engine = create_engine(db_url)
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '0099'"))
    engine.dispose()
    for command in (["status"], ["db", "upgrade"], ["collect"]):
        result = CliRunner().invoke(app, ["--db", db_url, *command])
        assert result.exit_code == 5, command
        assert re.fullmatch(
            r"envoylog: error: the database is at revision 0099, newer than this envoylog's \d{4}: "
            r"upgrade envoylog\n",
            result.stderr,
        ), result.stderr


@pytest.mark.parametrize("damage", ["text that is not UTF-8", "a column gone"])
def test_9_a_damaged_database_is_exit_5_in_one_line(tmp_path: Path, isolated_env: Path, damage: str) -> None:
    database = tmp_path / "envoylog.db"
    url = f"sqlite:///{database}"
    assert CliRunner().invoke(app, ["--db", url, "db", "upgrade"]).exit_code == 0
    with sqlite3.connect(database) as conn:
        conn.execute(
            "INSERT INTO gateways (serial, name, first_seen_at, last_seen_at) VALUES ('1', 'x', 0, 0)"
        )
        if damage == "a column gone":
            conn.execute("ALTER TABLE events DROP COLUMN detail")
        else:
            conn.execute("UPDATE gateways SET name = CAST(X'FFFE41' AS TEXT)")
    commands = [["status"]] if damage == "a column gone" else [["status"], ["latest"], ["auth", "status"]]
    for command in commands:
        result = CliRunner().invoke(app, ["--db", url, *command])
        assert result.exit_code == 5, (command, result.output)
        assert result.stderr.count("\n") == 1 and result.stderr.startswith(
            "envoylog: error: database error: "
        )


def test_9_a_full_disk_while_storing_a_token_is_exit_5(tmp_path: Path, isolated_env: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("a small filesystem of its own needs root to mount")
    disk = tmp_path / "disk"
    disk.mkdir()
    if subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=300k", "tmpfs", str(disk)], check=False
    ).returncode:
        pytest.skip("this machine does not let a test mount a small filesystem")
    try:
        url = f"sqlite:///{disk / 'envoylog.db'}"
        assert CliRunner().invoke(app, ["--db", url, "db", "upgrade"]).exit_code == 0
        filler = os.open(disk / "filler", os.O_CREAT | os.O_WRONLY)
        with contextlib.suppress(OSError):
            while True:
                os.write(filler, b"\0" * 4096)
        os.close(filler)
        with Simulator("standard", state_dir=tmp_path / "sim") as sim:
            token = sim.issue_token()
        result = CliRunner().invoke(app, ["--db", url, "auth", "set-token", token])
        assert result.exit_code == 5, result.output
        assert result.stderr.count("\n") == 1 and "full" in result.stderr
        assert token.split(".")[2] not in result.output
    finally:
        subprocess.run(["umount", str(disk)], check=False)


# --- 13. --every with no sense in it -------------------------------------------------------------------


@pytest.mark.parametrize("every", ["nan", "inf", "-1", "0.5"])
def test_13_collect_every_needs_a_sensible_number_of_seconds(every: str, isolated_env: Path) -> None:
    result = CliRunner().invoke(app, ["collect", "--every", every])
    assert result.exit_code == 2
    assert result.stderr.startswith("envoylog: error: --every must be from 1 to 86400 seconds, not ")


# --- 15. config files in odd places and shapes -----------------------------------------------------------


def run_as_user(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*without_root_powers(), *envoylog_command(), *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize("where", ["in a folder you cannot enter", "not readable"])
def test_15_a_config_file_out_of_reach_is_one_line_and_exit_2(tmp_path: Path, where: str) -> None:
    folder = tmp_path / "private"
    folder.mkdir()
    config = folder / "config.toml"
    config.write_text('timezone = "UTC"\n')
    locked = folder if where == "in a folder you cannot enter" else config
    locked.chmod(0)
    try:
        for args in (["--config", str(config), "status"], ["status"]):
            env = (
                user_environment(tmp_path, ENVOYLOG_CONFIG=str(config))
                if args[0] == "status"
                else user_environment(tmp_path)
            )
            done = run_as_user(args, env, tmp_path)
            assert done.returncode == 2, done.stderr
            assert done.stderr == f"envoylog: error: cannot read config file {config}: Permission denied\n"
    finally:
        locked.chmod(0o700)


def test_15_a_config_nested_too_deep_or_with_a_byte_order_mark(tmp_path: Path, isolated_env: Path) -> None:
    deep = tmp_path / "deep.toml"
    deep.write_text("a = " + "[" * 50_000 + "]" * 50_000 + "\n")
    with pytest.raises(ConfigError, match="nested too deeply"):
        load_settings(config=deep, environ={})
    bom = tmp_path / "bom.toml"
    bom.write_bytes("\ufefftimezone = 'Europe/Amsterdam'\n".encode())
    assert load_settings(config=bom, environ={}).timezone == "Europe/Amsterdam"


# --- 19. the small things ----------------------------------------------------------------------------------


def test_19_environment_values_are_trimmed(tmp_path: Path, isolated_env: Path) -> None:
    settings = load_settings(
        environ={
            "ENVOYLOG_DB": f"sqlite:///{tmp_path / 'envoylog.db'} ",
            "ENVOYLOG_SERIAL": " 122238082763\n",
        }
    )
    assert settings.db_url == f"sqlite:///{tmp_path / 'envoylog.db'}"
    assert settings.gateways[0].serial == "122238082763"


def test_19_a_read_only_folder_is_said_to_be_one(tmp_path: Path) -> None:
    folder = tmp_path / "data"
    folder.mkdir()
    url = f"sqlite:///{folder / 'envoylog.db'}"
    assert CliRunner().invoke(app, ["--db", url, "db", "upgrade"]).exit_code == 0
    for journal in folder.glob("envoylog.db-*"):
        journal.unlink()
    folder.chmod(0o555)
    try:
        done = run_as_user(["--db", url, "status"], user_environment(tmp_path), tmp_path)
    finally:
        folder.chmod(0o755)
    assert done.returncode == 5
    assert done.stderr == (
        f"envoylog: error: cannot open the database {folder / 'envoylog.db'}: "
        f"the folder {folder} is read-only: SQLite keeps the database's journal (-wal, -shm) beside it, "
        "so envoylog needs to write there\n"
    )


# --- 8. the run ends by its deadline, whatever the database does ----------------------------------------


def test_8_a_database_locked_mid_run_ends_the_run_by_its_deadline(site: Site) -> None:
    if not site.db_url.startswith("sqlite"):
        pytest.skip("a SQLite file held by another writer")
    assert site.collect().outcome == "ok"
    holder = sqlite3.connect(site.db_url.removeprefix("sqlite:///"), isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        started = time.monotonic()
        run = site.collect(deadline_s=4)
        took = time.monotonic() - started
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert run.outcome == "failed" and run.error is not None and run.error.status == 5
    assert "database is locked" in str(run.error)
    assert took < 7, took
    site.sim.clock.advance(timedelta(minutes=1))
    assert site.collect().outcome == "ok"  # the next run recovers by itself


def test_8_a_database_server_that_never_answers_ends_the_run_by_its_deadline(
    tmp_path: Path, isolated_env: Path
) -> None:
    silent = socket.create_server(("127.0.0.1", 0))  # accepts connections, never says a word
    port = silent.getsockname()[1]
    try:
        started = time.monotonic()
        result = CliRunner().invoke(
            app,
            ["collect", "--deadline", "3", "--db", f"postgresql+psycopg://envoylog@127.0.0.1:{port}/solar"],
            env={"ENVOYLOG_HOST": "127.0.0.1:9"},
        )
        took = time.monotonic() - started
    finally:
        silent.close()
    assert result.exit_code == 5 and result.stderr.startswith("envoylog: error: cannot open the PostgreSQL")
    assert took < 6, took


def test_8_a_trickling_cloud_cannot_hold_a_run_past_its_deadline(tmp_path: Path) -> None:
    from envoylog.gateway.cloud import CloudClient, CloudTimeUp
    from envoylog.gateway.routes import fetch_token

    login = Route(body=trickle(b'{"session_id": "abc"}', 0.5))
    with HostilePeer(
        {"/login/login.json": login}, state_dir=tmp_path / "cloud", plain=False, cloud=True
    ) as peer:
        url = f"https://127.0.0.1:{peer.port}"
        cloud = CloudClient(url, url, verify=str(peer.ca_file), deadline=time.monotonic() + 3)
        started = time.monotonic()
        with pytest.raises(CloudTimeUp, match="did not answer before this run's deadline"):
            fetch_token(cloud, username="owner@example.com", password="secret", serial="1222")
    assert time.monotonic() - started < 5


# --- 10. a renewal that cannot be tried is not a warning on every run -------------------------------------


def test_10_a_refused_early_renewal_warns_once_per_attempt(
    site: Site, caplog: pytest.LogCaptureFixture
) -> None:
    token = site.sim.issue_token(lifetime=timedelta(days=10))  # an owner token due for renewal
    settings = site.settings(token=token)
    site.sim.set_faults(wrong_password=True)  # the user's to fix: said when an attempt fails
    warnings_said = []
    for minutes in (1, 60, 0):  # then past the back-off's hour: the third run makes the next attempt
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="envoylog"):
            run = site.collect(settings)
        assert run.outcome == "ok"  # the token still works
        warnings_said.append([r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING])
        site.sim.clock.advance(timedelta(minutes=minutes))
    assert len(warnings_said[0]) == 1 and "could not renew the token early" in warnings_said[0][0]
    assert "refused the username or password" in warnings_said[0][0]
    assert warnings_said[1] == []  # waiting out the back-off: no attempt, nothing to say
    assert len(warnings_said[2]) == 1  # the next attempt failed too


def test_10_an_early_renewal_with_the_cloud_down_is_not_a_warning(
    site: Site, caplog: pytest.LogCaptureFixture
) -> None:
    token = site.sim.issue_token(lifetime=timedelta(days=10))
    site.sim.set_faults(cloud_down=True)  # not the user's to fix: said only if it lasts a day
    with caplog.at_level(logging.WARNING, logger="envoylog"):
        run = site.collect(site.settings(token=token))
    assert run.outcome == "ok" and run.warnings == []
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []
    assert site.query("SELECT cloud_failures FROM auth WHERE kind = 'token'") == [(1,)]  # tried, recorded


# --- 14. REQUESTS_CA_BUNDLE naming a file that is not there -----------------------------------------------


def test_14_a_missing_ca_bundle_is_one_line_and_the_run_is_closed(
    site: Site, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(tmp_path / "gone" / "ca.pem"))
    (run,) = collect_all(site.settings(), clock=site.sim.clock.now)  # trusting what the variable names
    assert run.outcome == "failed" and isinstance(run.error, ConfigError)
    assert str(run.error).startswith("cannot check the TLS certificate of the Enphase cloud")
    assert "REQUESTS_CA_BUNDLE=" in str(run.error)
    assert site.query("SELECT outcome FROM runs") == [("failed",)]  # not left running


# --- 19. an expired token in the configuration says so ---------------------------------------------------


def test_19_an_expired_configured_token_is_named(site: Site) -> None:
    token = site.sim.issue_token(lifetime=timedelta(hours=1))
    site.sim.clock.advance(timedelta(hours=2))
    run = site.collect(site.settings(token=token, username=None, password=None))
    assert run.outcome == "failed" and run.error is not None and run.error.status == 3
    assert str(run.error).startswith("the configured token (ENVOYLOG_TOKEN or `token`) expired at ")
