"""The simulated gateway and cloud over real HTTP(S) on 127.0.0.1: auth, sessions, faults, admin, state."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import ssl
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
from cryptography.hazmat.primitives.asymmetric import ec
from requests.auth import HTTPDigestAuth

from envoylog.simulator import EndpointFault, Faults, Quirks, Simulator
from envoylog.simulator.tokens import TokenError, TokenIssuer, decode_unverified

# The gateway's certificate is self-signed, as a real gateway's is: the tests do not verify it.
pytestmark = pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")

START = datetime(2026, 6, 21, 10, 0, tzinfo=UTC)  # a summer midday in Amsterdam: the sun is up
TIMEOUT = 5.0


@pytest.fixture
def sim() -> Iterator[Simulator]:
    with Simulator("metered", start=START) as simulator:
        yield simulator


def login(sim: Simulator, password: str | None = None) -> requests.Response:
    form = {"user[email]": sim.username, "user[password]": password or sim.password}
    return requests.post(
        f"{sim.enlighten_url}/login/login.json", data=form, verify=sim.ca_file, timeout=TIMEOUT
    )


def request_token(sim: Simulator, session_id: str, serial: str | None = None) -> requests.Response:
    body = {"session_id": session_id, "serial_num": serial or sim.serial, "username": sim.username}
    return requests.post(f"{sim.entrez_url}/tokens", json=body, verify=sim.ca_file, timeout=TIMEOUT)


def gateway_get(sim: Simulator, path: str, timeout: float = TIMEOUT, **kwargs: Any) -> requests.Response:
    return requests.get(f"{sim.gateway_url}{path}", verify=False, timeout=timeout, **kwargs)


def check_jwt(sim: Simulator, token: str) -> requests.Response:
    return gateway_get(sim, "/auth/check_jwt", headers={"Authorization": f"Bearer {token}"})


def open_session(sim: Simulator, token: str | None = None) -> str:
    response = check_jwt(sim, token or sim.issue_token())
    assert response.status_code == 200
    return response.cookies["sessionId"]


def read_production(sim: Simulator, session_id: str, **kwargs: Any) -> requests.Response:
    return gateway_get(sim, "/production.json?details=1", cookies={"sessionId": session_id}, **kwargs)


def admin(sim: Simulator, method: str, path: str, body: Any = None) -> requests.Response:
    url = f"{sim.gateway_url}/_sim/{path}"
    return requests.request(method, url, json=body, verify=False, timeout=TIMEOUT)


# --- the token flow -------------------------------------------------------------------------------


def test_the_whole_token_flow_reads_production_with_the_session_cookie(sim: Simulator) -> None:
    answer = login(sim)
    assert answer.status_code == 200
    session_id = answer.json()["session_id"]
    token_answer = request_token(sim, session_id)
    assert token_answer.status_code == 200
    token = token_answer.text
    _, claims = decode_unverified(token)
    assert claims["aud"] == sim.serial
    assert claims["username"] == sim.username

    checked = check_jwt(sim, token)
    assert checked.status_code == 200
    assert "Valid token" in checked.text
    cookie = checked.headers["Set-Cookie"]
    assert cookie.startswith("sessionId=") and "Secure" in cookie and "HttpOnly" in cookie

    production = read_production(sim, checked.cookies["sessionId"])
    assert production.status_code == 200
    assert production.headers["Content-Type"].startswith("application/json")
    assert "production" in production.json()


def test_data_endpoints_refuse_requests_without_auth_but_info_is_open(sim: Simulator) -> None:
    assert gateway_get(sim, "/production.json?details=1").status_code == 401
    assert gateway_get(sim, "/ivp/meters/readings").status_code == 401
    assert read_production(sim, "not-a-session").status_code == 401
    info = gateway_get(sim, "/info")
    assert info.status_code == 200
    assert f"<sn>{sim.serial}</sn>" in info.text


def test_a_bearer_token_is_accepted_on_a_data_request(sim: Simulator) -> None:
    headers = {"Authorization": f"Bearer {sim.issue_token()}"}
    assert gateway_get(sim, "/production.json", headers=headers).status_code == 200


def test_an_unknown_path_is_404_with_auth(sim: Simulator) -> None:
    session_id = open_session(sim)
    assert gateway_get(sim, "/no/such/endpoint", cookies={"sessionId": session_id}).status_code == 404


@pytest.mark.parametrize("kind", ["other serial", "expired", "revoked", "other key", "garbage"])
def test_check_jwt_refuses_a_token_the_gateway_must_not_accept(sim: Simulator, kind: str) -> None:
    if kind == "other serial":
        token = sim.issue_token(serial="000000000000")
    elif kind == "expired":
        token = sim.issue_token(lifetime=timedelta(hours=1))
        sim.clock.advance(timedelta(hours=1, seconds=1))
    elif kind == "revoked":
        token = sim.issue_token()
        sim.revoke_tokens()
    elif kind == "other key":
        stranger = TokenIssuer(ec.generate_private_key(ec.SECP256R1()))
        token = stranger.issue(serial=sim.serial, username=sim.username, now=sim.clock.now())
    else:
        token = "eyJhbGciOiJub25lIn0.e30.c2ln"
    assert check_jwt(sim, token).status_code == 401
    bearer = {"Authorization": f"Bearer {token}"}
    assert gateway_get(sim, "/production.json", headers=bearer).status_code == 401


def test_token_claims_and_lifetimes(sim: Simulator) -> None:
    header, owner = decode_unverified(sim.issue_token())
    assert header["alg"] == "ES256" and header["typ"] == "JWT" and header["kid"]
    assert owner["iss"] == "Entrez" and owner["enphaseUser"] == "owner" and owner["jti"]
    assert abs(owner["iat"] - sim.clock.now().timestamp()) < 5  # simulated time, not real time
    assert owner["exp"] - owner["iat"] == 365 * 86400
    _, installer = decode_unverified(sim.issue_token("installer"))
    assert installer["enphaseUser"] == "installer"
    assert installer["exp"] - installer["iat"] == 12 * 3600
    with pytest.raises(TokenError):
        decode_unverified("not.a-token")


def test_the_cloud_can_issue_installer_tokens() -> None:
    with Simulator("metered", start=START, cloud_token_user="installer") as simulator:
        token = request_token(simulator, login(simulator).json()["session_id"]).text
        _, claims = decode_unverified(token)
        assert claims["enphaseUser"] == "installer"
        assert claims["exp"] - claims["iat"] == 12 * 3600
        assert check_jwt(simulator, token).status_code == 200


# --- sessions -------------------------------------------------------------------------------------


def test_a_session_lives_while_used_every_nine_minutes_and_lapses_after_ten_idle(sim: Simulator) -> None:
    session_id = open_session(sim)
    for _ in range(3):  # 27 minutes in all: only the use in between keeps it alive
        sim.clock.advance(timedelta(minutes=9))
        assert read_production(sim, session_id).status_code == 200
    sim.clock.advance(timedelta(minutes=10, seconds=1))
    assert read_production(sim, session_id).status_code == 401
    # Gone for good, even when the clock is set back.
    sim.clock.advance(timedelta(minutes=-11))
    assert read_production(sim, session_id).status_code == 401


def test_expire_sessions_ends_every_session_but_the_token_opens_a_new_one(sim: Simulator) -> None:
    token = sim.issue_token()
    first, second = open_session(sim, token), open_session(sim, token)
    assert sim.expire_sessions() == 2
    assert read_production(sim, first).status_code == 401
    assert read_production(sim, second).status_code == 401
    third = open_session(sim, token)
    assert read_production(sim, third).status_code == 200
    assert admin(sim, "POST", "expire-sessions").json() == {"expired": 1}
    assert read_production(sim, third).status_code == 401


def test_revoking_tokens_ends_their_sessions_and_new_tokens_work(sim: Simulator) -> None:
    session_id = open_session(sim)
    assert admin(sim, "POST", "revoke-tokens").status_code == 200
    assert read_production(sim, session_id).status_code == 401
    assert read_production(sim, open_session(sim, sim.issue_token())).status_code == 200


def test_a_session_ends_when_its_token_expires(sim: Simulator) -> None:
    session_id = open_session(sim, sim.issue_token(lifetime=timedelta(minutes=15)))
    sim.clock.advance(timedelta(minutes=9))
    assert read_production(sim, session_id).status_code == 200
    sim.clock.advance(timedelta(minutes=9))
    assert read_production(sim, session_id).status_code == 401


# --- the cloud and its faults ---------------------------------------------------------------------


def test_a_wrong_password_is_refused(sim: Simulator) -> None:
    answer = login(sim, password="not-the-password")
    assert answer.status_code == 401
    assert "session_id" not in answer.json() and answer.json()["message"]


def test_the_wrong_password_fault_refuses_the_right_password(sim: Simulator) -> None:
    sim.set_faults(wrong_password=True)
    assert login(sim).status_code == 401
    sim.clear_faults()
    assert login(sim).status_code == 200


def test_an_mfa_account_logs_in_without_a_session_id(sim: Simulator) -> None:
    sim.faults.mfa = True  # the live object: a change takes effect at once
    answer = login(sim)
    assert answer.status_code == 200
    assert "session_id" not in answer.json()
    assert answer.json()["requireMfa"] is True


def test_assigning_faults_replaces_the_live_ones(sim: Simulator) -> None:
    live = sim.faults
    sim.faults = Faults(cloud_down=True, endpoints={"/info": EndpointFault(status=503)})
    assert sim.faults is live and live.cloud_down
    assert login(sim).status_code == 503
    assert gateway_get(sim, "/info").status_code == 503
    sim.faults = Faults()
    assert login(sim).status_code == 200
    assert gateway_get(sim, "/info").status_code == 200


def test_the_cloud_down_answers_503_on_login_and_tokens(sim: Simulator) -> None:
    session_id = login(sim).json()["session_id"]
    sim.set_faults(cloud_down=True)
    assert login(sim).status_code == 503
    assert request_token(sim, session_id).status_code == 503
    sim.set_faults(cloud_down=False)
    assert request_token(sim, session_id).status_code == 200


def test_tokens_need_a_known_session_and_a_serial_of_the_account(sim: Simulator) -> None:
    assert request_token(sim, "no-such-session").status_code == 401
    session_id = login(sim).json()["session_id"]
    assert request_token(sim, session_id, serial="999999999999").status_code == 403
    bad = requests.post(f"{sim.entrez_url}/tokens", data="{", verify=sim.ca_file, timeout=TIMEOUT)
    assert bad.status_code == 400


def test_the_cloud_certificate_verifies_with_the_ca_file_only(
    sim: Simulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(requests.exceptions.SSLError):
        requests.post(f"{sim.enlighten_url}/login/login.json", timeout=TIMEOUT)
    assert login(sim).status_code == 200  # verify=ca_file
    # The certificate also names localhost, for users who prefer that name.
    localhost = sim.enlighten_url.replace("127.0.0.1", "localhost")
    form = {"user[email]": sim.username, "user[password]": sim.password}
    answer = requests.post(f"{localhost}/login/login.json", data=form, verify=sim.ca_file, timeout=TIMEOUT)
    assert answer.status_code == 200


def test_the_gateway_certificate_fingerprint_and_private_key_files(sim: Simulator) -> None:
    port = int(sim.gateway_url.rsplit(":", 1)[1])
    pem = ssl.get_server_certificate(("127.0.0.1", port))
    assert hashlib.sha256(ssl.PEM_cert_to_DER_cert(pem)).hexdigest() == sim.gateway_cert_sha256
    keys = list(sim.state_dir.glob("*key*.pem"))
    assert len(keys) == 4  # CA, cloud, gateway, token signing
    assert all(stat.S_IMODE(path.stat().st_mode) == 0o600 for path in keys)


# --- endpoint faults and quirks -------------------------------------------------------------------


@pytest.mark.parametrize("status", [401, 503])
def test_an_endpoint_fault_answers_its_status_even_with_a_valid_session(sim: Simulator, status: int) -> None:
    session_id = open_session(sim)
    sim.set_endpoint_fault("/production.json", EndpointFault(status=status))
    assert read_production(sim, session_id).status_code == status
    cookies = {"sessionId": session_id}
    assert gateway_get(sim, "/api/v1/production", cookies=cookies).status_code == 200
    sim.set_endpoint_fault("/production.json", None)
    assert read_production(sim, session_id).status_code == 200


def test_a_malformed_endpoint_answers_200_with_broken_json(sim: Simulator) -> None:
    session_id = open_session(sim)
    sim.set_endpoint_fault("/production.json", EndpointFault(malformed=True))
    answer = read_production(sim, session_id)
    assert answer.status_code == 200
    with pytest.raises(requests.exceptions.JSONDecodeError):
        answer.json()


def test_a_hanging_endpoint_times_out_while_others_answer(sim: Simulator) -> None:
    session_id = open_session(sim)
    sim.set_endpoint_fault("/production.json", EndpointFault(hang_seconds=20))
    with pytest.raises(requests.exceptions.ReadTimeout):
        read_production(sim, session_id, timeout=0.3)
    assert gateway_get(sim, "/info").status_code == 200
    logged = [entry for entry in sim.request_log() if entry.path.startswith("/production.json")]
    assert [entry.status for entry in logged] == [200]  # logged when it arrived, though never answered


def test_stop_is_prompt_while_a_request_hangs() -> None:
    simulator = Simulator("metered", start=START).start()
    simulator.set_endpoint_fault("/info", EndpointFault(hang_seconds=60))
    outcome: list[BaseException] = []

    def ask() -> None:
        try:
            gateway_get(simulator, "/info", timeout=30)
        except requests.RequestException as exc:
            outcome.append(exc)

    client = threading.Thread(target=ask)
    client.start()
    deadline = time.monotonic() + 5
    while not simulator.request_log() and time.monotonic() < deadline:
        time.sleep(0.01)
    started = time.monotonic()
    simulator.stop()
    client.join(timeout=5)
    assert time.monotonic() - started < 2
    assert not client.is_alive()
    assert len(outcome) == 1 and isinstance(outcome[0], requests.ConnectionError)


def test_a_keep_alive_connection_does_not_outlive_the_server() -> None:
    simulator = Simulator("legacy", start=START).start()
    url = f"{simulator.gateway_url}/info"
    with requests.Session() as client:
        assert client.get(url, timeout=TIMEOUT).status_code == 200
        simulator.stop()
        with pytest.raises(requests.ConnectionError):
            client.get(url, timeout=TIMEOUT)


def test_a_firmware_update_shows_in_info(sim: Simulator) -> None:
    assert "<software>D8.2.4345</software>" in gateway_get(sim, "/info").text
    admin(sim, "POST", "faults", {"quirks": {"firmware": "8.3.5433"}})
    assert "<software>D8.3.5433</software>" in gateway_get(sim, "/info").text
    sim.set_faults(quirks=Quirks())
    assert "<software>D8.2.4345</software>" in gateway_get(sim, "/info").text


def inverters_wh_lifetime(sim: Simulator, session_id: str) -> float:
    production = read_production(sim, session_id).json()["production"]
    return float(next(entry for entry in production if entry["type"] == "inverters")["whLifetime"])


def test_a_counter_wrap_shows_through_http(sim: Simulator) -> None:
    session_id = open_session(sim)
    before = inverters_wh_lifetime(sim, session_id)
    admin(sim, "POST", "faults", {"quirks": {"counter_wrap_at": "now"}})
    after = inverters_wh_lifetime(sim, session_id)
    assert before - after == pytest.approx(2**32 / 3600, abs=1000)


def eim_wh_today(sim: Simulator, session_id: str) -> float:
    production = read_production(sim, session_id).json()["production"]
    return float(next(entry for entry in production if entry["type"] == "eim")["whToday"])


def test_the_late_whtoday_reset_is_switched_by_the_admin_endpoint(sim: Simulator) -> None:
    sim.clock.set(datetime(2026, 6, 21, 22, 5, tzinfo=UTC))  # 00:05 in Amsterdam (UTC+2)
    session_id = open_session(sim)
    assert eim_wh_today(sim, session_id) < 100  # reset at midnight, and the sun is down
    assert admin(sim, "POST", "faults", {"quirks": {"late_whtoday_reset": True}}).status_code == 200
    assert eim_wh_today(sim, session_id) > 1000  # yesterday's total, still there at 00:05


def test_starting_the_booting_profile_boots_it_and_admin_shows_and_ends_the_boot() -> None:
    with Simulator("booting", start=START) as sim:
        assert sim.gateway_url.startswith("http://")  # firmware 3.9: plain HTTP, no token
        assert gateway_get(sim, "/production.json").headers["Content-Type"].startswith("text/html")
        zeros = {"wattHoursToday": 0, "wattHoursSevenDays": 0, "wattHoursLifetime": 0, "wattsNow": 0}
        assert gateway_get(sim, "/api/v1/production").json() == zeros
        until = datetime.fromisoformat(admin(sim, "GET", "faults").json()["quirks"]["booting_until"])
        assert timedelta(minutes=5) <= until - START < timedelta(minutes=5, seconds=10)
        shown = admin(sim, "POST", "faults", {"quirks": {"booting_until": None}}).json()
        assert shown["quirks"]["booting_until"] is None
        assert gateway_get(sim, "/api/v1/production").json()["wattHoursLifetime"] > 0
        admin(sim, "POST", "faults", {"quirks": {"booting_until": "2026-06-21T12:10:00+02:00"}})
        assert gateway_get(sim, "/api/v1/production").json() == zeros


# --- the admin endpoints and the request log ------------------------------------------------------


def test_admin_faults_merge_show_and_clear(sim: Simulator) -> None:
    change = {
        "mfa": True,
        "endpoints": {"/ivp/meters/readings": {"status": 503}, "/production.json": {"hang_seconds": 1.5}},
        "quirks": {"counter_wrap_at": "2026-06-21T12:00:00+02:00", "late_whtoday_reset": True},
    }
    shown = admin(sim, "POST", "faults", change).json()
    assert shown["mfa"] is True and shown["cloud_down"] is False
    readings_fault = {
        "status": 503,
        "retry_after": None,
        "times": None,
        "malformed": False,
        "hang_seconds": 0.0,
        "body": None,
        "drops": 0,
    }
    assert shown["endpoints"]["/ivp/meters/readings"] == readings_fault
    assert shown["quirks"]["counter_wrap_at"] == "2026-06-21T10:00:00Z"
    assert sim.faults.endpoints["/production.json"].hang_seconds == 1.5
    assert sim.faults.quirks.counter_wrap_at == datetime(2026, 6, 21, 10, tzinfo=UTC)

    shown = admin(sim, "POST", "faults", {"endpoints": {"/production.json": None}, "mfa": False}).json()
    assert list(shown["endpoints"]) == ["/ivp/meters/readings"] and shown["mfa"] is False
    assert admin(sim, "GET", "faults").json() == shown

    cleared = admin(sim, "POST", "faults/clear").json()
    assert cleared["endpoints"] == {} and cleared["quirks"]["late_whtoday_reset"] is False
    assert sim.faults.quirks.counter_wrap_at is None


@pytest.mark.parametrize(
    "change",
    [
        {"nonsense": True},
        {"mfa": "yes"},
        {"endpoints": {"/x": {"status": 42}}},
        {"endpoints": {"x": {"status": 503}}},
        {"endpoints": {"/x": {"hang_seconds": -1}}},
        {"quirks": {"counter_wrap_at": "2026-06-21T12:00:00"}},
        {"quirks": {"unknown": 1}},
        [1, 2],
    ],
)
def test_admin_faults_refuse_bad_changes_without_changing_anything(sim: Simulator, change: Any) -> None:
    answer = admin(sim, "POST", "faults", change)
    assert answer.status_code == 400 and answer.json()["error"]
    assert admin(sim, "GET", "faults").json()["endpoints"] == {}


def test_admin_clock(sim: Simulator) -> None:
    assert admin(sim, "GET", "clock").json()["speed"] == 1.0
    shown = admin(sim, "POST", "clock", {"now": "2026-07-01T00:00:00Z", "speed": 60}).json()
    assert shown["speed"] == 60
    assert datetime.fromisoformat(shown["now"]) >= datetime(2026, 7, 1, tzinfo=UTC)
    assert sim.clock.speed == 60
    assert admin(sim, "POST", "clock", {"speed": 0}).status_code == 400
    assert admin(sim, "GET", "nothing-here").status_code == 404


def test_admin_token_is_accepted_by_the_gateway(sim: Simulator) -> None:
    answer = admin(sim, "POST", "token", {"enphase_user": "installer"})
    assert answer.status_code == 200
    assert decode_unverified(answer.text)[1]["enphaseUser"] == "installer"
    assert check_jwt(sim, answer.text).status_code == 200


def test_the_request_log_counts_every_service_but_not_admin(sim: Simulator) -> None:
    session_id = login(sim).json()["session_id"]
    token = request_token(sim, session_id).text
    cookie = check_jwt(sim, token).cookies["sessionId"]
    read_production(sim, cookie)
    gateway_get(sim, "/ivp/meters")
    admin(sim, "GET", "faults")
    log = sim.request_log()
    assert [(entry.service, entry.method, entry.path, entry.status) for entry in log] == [
        ("enlighten", "POST", "/login/login.json", 200),
        ("entrez", "POST", "/tokens", 200),
        ("gateway", "GET", "/auth/check_jwt", 200),
        ("gateway", "GET", "/production.json?details=1", 200),
        ("gateway", "GET", "/ivp/meters", 401),
    ]
    assert all(entry.at.tzinfo is not None for entry in log)
    assert [entry["path"] for entry in admin(sim, "GET", "requests").json()][-1] == "/ivp/meters"
    sim.clear_request_log()
    assert sim.request_log() == []


def test_environment_points_at_the_simulator(sim: Simulator) -> None:
    env = sim.environment()
    assert env["ENVOYLOG_HOST"] == sim.gateway_url and sim.gateway_url.startswith("https://127.0.0.1:")
    assert env["ENVOYLOG_ENLIGHTEN_URL"] == sim.enlighten_url
    assert env["ENVOYLOG_ENTREZ_URL"] == sim.entrez_url
    assert env["REQUESTS_CA_BUNDLE"] == str(sim.ca_file) and sim.ca_file.read_text().startswith("-----BEGIN")
    assert env["ENVOYLOG_SERIAL"] == sim.serial
    assert (env["ENVOYLOG_USERNAME"], env["ENVOYLOG_PASSWORD"]) == (sim.username, sim.password)


# --- legacy firmware --------------------------------------------------------------------------------


def test_legacy_firmware_serves_http_with_digest_on_inverters() -> None:
    with Simulator("legacy", start=START) as simulator:
        assert simulator.gateway_url.startswith("http://")
        url = f"{simulator.gateway_url}/api/v1/production/inverters"
        assert requests.get(f"{simulator.gateway_url}/info", timeout=TIMEOUT).status_code == 200
        assert requests.get(f"{simulator.gateway_url}/api/v1/production", timeout=TIMEOUT).status_code == 200
        refused = requests.get(url, timeout=TIMEOUT)
        assert refused.status_code == 401
        assert refused.headers["WWW-Authenticate"].startswith('Digest realm="enphaseenergy.com"')
        wrong = HTTPDigestAuth("envoy", "000000")
        assert requests.get(url, auth=wrong, timeout=TIMEOUT).status_code == 401
        with requests.Session() as client:
            client.auth = HTTPDigestAuth("envoy", simulator.serial[-6:])
            for _ in range(2):  # the second request reuses the nonce with a higher count
                answer = client.get(url, timeout=TIMEOUT)
                assert answer.status_code == 200
                assert isinstance(answer.json(), list)
        assert requests.get(f"{simulator.gateway_url}/auth/check_jwt", timeout=TIMEOUT).status_code == 404


# --- state across restarts --------------------------------------------------------------------------


def test_a_restart_keeps_tokens_certificates_and_the_clock(tmp_path: Path) -> None:
    state = tmp_path / "state"
    with Simulator("metered", start=START, state_dir=state) as first:
        token = first.issue_token()
        ca = first.ca_file.read_bytes()
        fingerprint = first.gateway_cert_sha256
        first.clock.advance(timedelta(days=2))
        stopped_at = first.clock.now()
    assert state.exists()
    with Simulator("metered", state_dir=state) as second:
        assert second.clock.now() >= stopped_at  # never backwards unless a start is asked for
        assert second.ca_file.read_bytes() == ca
        assert second.gateway_cert_sha256 == fingerprint
        assert check_jwt(second, token).status_code == 200
        second.revoke_tokens()  # reaches tokens issued before the restart too
        assert check_jwt(second, token).status_code == 401
        assert check_jwt(second, second.issue_token()).status_code == 200
    later = START + timedelta(days=30)
    with Simulator("metered", start=later, state_dir=state) as third:
        assert third.clock.now() >= later


def test_a_private_state_directory_is_removed_at_stop() -> None:
    simulator = Simulator("metered", start=START).start()
    state = simulator.state_dir
    assert (state / "ca.pem").exists()
    simulator.stop()
    assert not state.exists()
    with pytest.raises(RuntimeError):
        _ = simulator.gateway_url


def test_run_until_stopped_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    script = (
        "import sys\n"
        "from pathlib import Path\n"
        "from envoylog.simulator import Simulator, run_until_stopped\n"
        "sim = Simulator('metered', state_dir=Path(sys.argv[1])).start()\n"
        "print(sim.gateway_url, flush=True)\n"
        "run_until_stopped(sim)\n"
        "print('stopped', flush=True)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    with subprocess.Popen(
        [sys.executable, "-c", script, str(tmp_path)], stdout=subprocess.PIPE, text=True, env=env
    ) as process:
        try:
            assert process.stdout is not None
            url = process.stdout.readline().strip()
            assert requests.get(f"{url}/info", verify=False, timeout=TIMEOUT).status_code == 200
            process.send_signal(signal.SIGTERM)
            rest, _ = process.communicate(timeout=10)
        finally:
            if process.poll() is None:
                process.kill()
    assert process.returncode == 0
    assert rest.strip() == "stopped"
    assert "high_water" in json.loads((tmp_path / "clock.json").read_text())
