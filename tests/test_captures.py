"""The whole collector against real gateways: every folder of ../shared/envoy-captures, replayed over HTTP(S).

Each capture is served by the simulator (`CapturedModel`) behind the real token, session and Digest flow,
at its capture time, with the HTTP status each endpoint recorded. One collect run stores it in a fresh
database (SQLite and PostgreSQL), and the latest readings must be what the rules of SPEC section 4 give.

The expected values below were worked out by hand from the capture files and those rules, not copied from
the collector's output. Conventions of the current collector followed here: production from the eim
production entry first; net consumption from an enabled net-consumption CT in /ivp/meters/readings (watts
`activePower`, Wh lifetime `actEnergyDlvd - actEnergyRcvd`) before the production.json eim entry; total
consumption from the production.json total-consumption eim entry.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from conftest import CAPTURES, Site
from requests.auth import HTTPDigestAuth
from sqlalchemy import create_engine

from envoylog.errors import GatewayError
from envoylog.reports.status import latest_document
from envoylog.simulator import Quirks, Simulator
from envoylog.simulator.captured import CapturedModel

pytestmark = pytest.mark.skipif(
    not CAPTURES.is_dir(),
    reason="the real gateway captures (../shared/envoy-captures next to the project) are not there",
)

UNSUPPORTED = "3.7.0"  # serves HTML pages only: refused with a clear message
TIMEOUT = 10


@dataclass(frozen=True)
class Expected:
    """What one capture must leave as the latest readings, and why."""

    source: str  # where production comes from
    production: tuple[float, float]  # watts, Wh lifetime
    consumption: tuple[float, float] | None  # watts, Wh lifetime; None: not measured
    net: tuple[float, float] | None  # watts, Wh lifetime (imported minus exported); None: not measured
    inverters: int
    batteries: tuple[tuple[str, float], ...]  # (kind, state of charge %) of each battery
    why: str  # which rule chose the sources: the per-folder list of the closing note


def _encharge(*soc: float) -> tuple[tuple[str, float], ...]:
    return tuple(("encharge", s) for s in soc)


NO_CTS = "no CT: consumption and net not measured"

EXPECTED: dict[str, Expected] = {
    "3.8.10": Expected(
        "api_v1",
        (4324, 138475913),
        None,
        None,
        41,
        (),
        "firmware 3.18.10 (as /info says), not metered: /api/v1/production; " + NO_CTS,
    ),
    "3.9.36": Expected(
        "api_v1",
        (1271, 6012540),
        None,
        None,
        12,
        (),
        "not metered: /api/v1/production (production.json is an HTML page); " + NO_CTS,
    ),
    "3.9.36_bad_auth": Expected(
        "api_v1",
        (0, 14578520),
        None,
        None,
        0,
        (),
        "not metered: /api/v1/production (lifetime non-zero, so not all-zero); "
        "/api/v1/production/inverters answers 401 even with Digest auth: no inverters; " + NO_CTS,
    ),
    "4.10.35": Expected(
        "eim",
        (165.53, 26785327.351),
        (806.405, 26335790.411),
        (566.864, 16908208.78 - 17357690.272),
        19,
        (),
        "eim production activeCount 1; consumption: eim total-consumption; "
        "net: CT 704643584 enabled in /ivp/meters (which this firmware 4 serves)",
    ),
    "4.2.27": Expected(
        "api_v1",
        (5894, 10279087),
        None,
        None,
        0,
        (),
        "not metered, every eim entry activeCount 0: /api/v1/production; no inverters endpoint captured; "
        + NO_CTS,
    ),
    "5.0.49": Expected(
        "api_v1",
        (4859, 88742152),
        None,
        None,
        40,
        (),
        "not metered: /api/v1/production; " + NO_CTS,
    ),
    "7.3.130": Expected(
        "eim",
        (178.495, 3659506.105),
        (1393.191, 10154380.825),
        (1214.696, 7116675.502),
        12,
        (),
        "eim production activeCount 1; consumption and net: eim entries (activeCount 1; no /ivp/meters)",
    ),
    "7.3.130_no_consumption": Expected(
        "eim",
        (3780.646, 4545926.403),
        None,
        None,
        15,
        (),
        "eim production activeCount 1; consumption eim activeCount 0, net CT disabled and its eim "
        "activeCount 0: neither measured",
    ),
    "7.3.466_metered_disabled_cts": Expected(
        "inverters",
        (751, 702919),
        None,
        None,
        7,
        (),
        "eim production activeCount 0, both CTs disabled, /api/v1/production energy values all 0: "
        "the production.json inverters entry; " + NO_CTS,
    ),
    "7.3.517": Expected(
        "eim",
        (4556.139, 19230313.461),
        (3791.075, 27629799.104),
        (-765.064, 8436418.891),
        22,
        _encharge(100, 100, 100),
        "eim production activeCount 1; consumption and net: eim entries (no /ivp/meters)",
    ),
    "7.3.517_legacy_savings_mode": Expected(
        "eim",
        (4556.139, 19230313.461),
        (3791.075, 27629799.104),
        (-765.064, 8436418.891),
        22,
        _encharge(100, 100, 100),
        "eim production activeCount 1; consumption and net: eim entries (no /ivp/meters)",
    ),
    "7.3.517_system_2": Expected(
        "eim",
        (2663.075, 18442494.567),
        (2712.776, 15745050.638),
        (23.172, 4873881.221 - 7554062.483),
        13,
        _encharge(96, 96, 97),
        "eim production activeCount 1; consumption: eim total-consumption; net: CT 704643584 enabled",
    ),
    "7.6.114_without_cts": Expected(
        "api_v1",
        (586, 1544282),
        None,
        None,
        13,
        (),
        "not metered: /api/v1/production; " + NO_CTS,
    ),
    "7.6.175": Expected(
        "api_v1",
        (3391, 8717473),
        None,
        None,
        13,
        (),
        "metered hardware but no eim production entry and no /ivp/meters; firmware before 8.2.4264 and "
        "energy values non-zero: /api/v1/production; " + NO_CTS,
    ),
    "7.6.175_standard": Expected(
        "api_v1",
        (5740, 6139406),
        None,
        None,
        24,
        (),
        "not metered: /api/v1/production; " + NO_CTS,
    ),
    "7.6.175_total": Expected(
        "inverters",
        (1322, 1152866),
        None,
        None,
        14,
        (),
        "eim production activeCount 0, CTs disabled, /api/v1/production energy values all 0: "
        "the production.json inverters entry; " + NO_CTS,
    ),
    "7.6.175_with_cts_3phase": Expected(
        "eim",
        (-6.481, 4351113.2),
        (209.084, 4074795.368),
        (-36.162, 3738205.282 - 1776768.769),
        7,
        (),
        "eim production activeCount 1 (night: a few negative watts); consumption: eim total-consumption; "
        "net: CT 704643584 enabled",
    ),
    "8.1.41": Expected(
        "eim",
        (13028.54, 1510198.655),
        (5216.083, 1757943.133),
        (-7812.457, 247929.658),
        44,
        _encharge(85, 100),
        "eim production activeCount 1; consumption and net: eim entries (no /ivp/meters)",
    ),
    "8.2.127_with_3cts_and_battery_split": Expected(
        "eim",
        (1714.424, 3165834.272),
        (1843.831, 7909866.491),
        (129.407, 4998251.825 - 253960.783),
        5,
        _encharge(21, 21, 21, 21, 21),
        "eim production activeCount 1; consumption: eim total-consumption; net: CT 704643584 enabled "
        "(the storage CT feeds no site series)",
    ),
    "8.2.127_with_generator_running": Expected(
        "eim",
        (2429.661, 15097303.35),
        (2670.058, 22392008.448),
        (195.575, 13632727.119 - 6336017.38),
        26,
        _encharge(98),
        "eim production activeCount 1; consumption: eim total-consumption; net: CT 704643584 enabled",
    ),
    "8.2.4345_with_device_data": Expected(
        "eim",
        (734.83, 1243811.514),
        (1014.016, 1008080.311),
        (199.234, 648203.353 - 883899.646),
        15,
        (),
        "eim production activeCount 1 (production.json?details=1); consumption: eim total-consumption; "
        "net: CT 704643584 enabled; 15 pcu in device_data (17 devices, limit 50)",
    ),
    "8.2.4382_ACB": Expected(
        "eim",
        (311.12, 19213420.774),
        (330.26, 26700500.925),
        (22.54, 14153292.251 - 6665130.717),
        17,
        (("acb", 25), ("encharge", 10)),
        "eim production activeCount 1; consumption: eim total-consumption; net: CT 704643584 enabled; "
        "/api/v1/production/inverters lists 17 micro-inverters and 3 AC Batteries (devType 11), which are "
        "the acb battery, not inverters",
    ),
    "8.3.1598_collar": Expected(
        "eim",
        (0.0, 47077.959),
        (3774.309, 132912.625),
        (3760.828, 108563.587 - 22728.922),
        17,
        _encharge(86, 92),
        "eim production activeCount 1; consumption: eim total-consumption (firmware before 8.3.5433, and "
        "its lifetime differs from net's anyway); net: CT 704643584 enabled",
    ),
    "8.3.5169_ACB_inventory": Expected(
        "eim",
        (-3.867, 1692970.739),
        (1418.926, 20842598.409),
        (1415.634, 19284368.878 - 40194.373),
        3,
        (("acb", 1),),
        "eim production activeCount 1 (details=1); consumption: eim total-consumption (firmware before "
        "8.3.5433); net: CT 704643584 enabled; 3 pcu in device_data, the 2 acb devices are the battery",
    ),
    "8.3.5169_with_generator": Expected(
        "eim",
        (2885.154, 11567953.818),
        (3050.455, 27293408.638),
        (160.49, 18999526.477 - 3273182.77),
        20,
        (),
        "eim production activeCount 1 (details=1); consumption: eim total-consumption (firmware before "
        "8.3.5433); net: CT 704643584 enabled; 20 pcu in device_data",
    ),
}


def _cases() -> list[Any]:
    return [pytest.param(folder, expected, id=folder) for folder, expected in EXPECTED.items()]


@pytest.fixture
def replay(request: pytest.FixtureRequest, tmp_path: Path, db_url: str) -> Iterator[Site]:
    """The capture folder named by the test's `folder` parameter, served at its capture time."""
    model = CapturedModel(CAPTURES / request.node.callspec.params["folder"])
    with Simulator(model=model, start=model.captured_at, state_dir=tmp_path / "sim") as sim:
        yield Site(sim, db_url)


def _latest(site: Site) -> dict[str, Any]:
    engine = create_engine(site.db_url)
    try:
        gateways = latest_document(engine)["gateways"]
    finally:
        engine.dispose()
    return dict(gateways[0]) if gateways else {}


def _site(value: dict[str, Any] | None) -> tuple[float, float | None] | None:
    return None if value is None else (value["watts"], value["wh_lifetime"])


def _approx(value: tuple[float, float] | None) -> Any:
    return None if value is None else pytest.approx(value, rel=1e-9, abs=1e-6)


def test_every_capture_folder_has_expected_values() -> None:
    folders = {path.name for path in CAPTURES.iterdir() if path.is_dir()}
    assert folders == {*EXPECTED, UNSUPPORTED}


@pytest.mark.parametrize(("folder", "expected"), _cases())
def test_capture_is_collected_as_the_rules_say(replay: Site, folder: str, expected: Expected) -> None:
    run = replay.collect()
    assert run.error is None, f"{folder}: {run.error}"
    gateway = _latest(replay)
    assert (gateway["serial"], gateway["firmware"]) == (replay.sim.serial, replay.sim.profile.firmware)
    production = gateway["production"]
    assert production is not None, f"{folder}: no production stored"
    assert production["source"] == expected.source
    assert _site(production) == _approx(expected.production)
    assert _site(gateway["consumption"]) == _approx(expected.consumption)
    assert _site(gateway["net_consumption"]) == _approx(expected.net)
    assert len(gateway["inverters"]) == expected.inverters
    batteries = sorted((battery["kind"], battery["soc_percent"]) for battery in gateway["batteries"])
    assert batteries == sorted(expected.batteries)


@pytest.mark.parametrize("folder", [UNSUPPORTED])
def test_html_only_firmware_is_refused_with_one_clear_line(replay: Site, folder: str) -> None:
    run = replay.collect()
    assert isinstance(run.error, GatewayError)
    assert run.outcome == "failed"
    message = str(run.error)
    assert "\n" not in message
    assert "3.7.0" in message and "HTML" in message
    assert _latest(replay) == {}  # nothing stored, not even the gateway


# --- the recorded gateway itself ------------------------------------------------------------------


def _render(folder: str, path: str, **query: str) -> tuple[int, bytes] | None:
    model = CapturedModel(CAPTURES / folder)
    assert model.captured_at is not None
    body = model.render(path, query, model.captured_at, Quirks())
    return None if body is None else (body.status, body.data)


def _file(folder: str, name: str) -> bytes:
    return (CAPTURES / folder / name).read_bytes()


def test_a_capture_answers_with_its_files_and_recorded_status_codes() -> None:
    folder = "8.2.4345_with_device_data"
    assert _render(folder, "/ivp/meters/readings") == (200, _file(folder, "ivp_meters_readings"))
    details = _render(folder, "/production.json", details="1")
    assert details == (200, _file(folder, "production.json_details_1"))
    assert _render(folder, "/production.json") == (200, _file(folder, "production.json"))
    # A stray copy stands in only for a missing file of its stem.
    assert _render(folder, "/ivp/ss/gen_schedule") == (200, _file(folder, "ivp_ss_gen_schedule.json"))
    assert _render(folder, "/ivp/nothing/here") is None
    assert _render(folder, "/ivp/meters/readings_log.json") is None
    assert _render("7.3.130_no_consumption", "/ivp/ensemble/power")[0] == 401  # type: ignore[index]
    assert _render("3.8.10", "/ivp/meters/readings")[0] == 404  # type: ignore[index]


def test_firmware_that_ignores_the_query_serves_the_plain_document() -> None:
    assert _render("7.6.175", "/production.json", details="1") == (200, _file("7.6.175", "production.json"))


def test_a_capture_describes_its_gateway_from_info() -> None:
    profile = CapturedModel(CAPTURES / "3.8.10").profile
    assert (profile.serial, profile.firmware, profile.metered, profile.https) == (
        "121430030548",
        "3.18.10",
        False,
        False,
    )
    modern = CapturedModel(CAPTURES / "8.1.41")
    assert (modern.profile.serial, modern.profile.metered, modern.profile.https) == (
        "xxxxxxxxxxxx",
        True,
        True,
    )
    assert modern.captured_at is not None and int(modern.captured_at.timestamp()) == 1692386081


@pytest.mark.usefixtures("quiet_tls")
def test_modern_firmware_is_served_over_https_behind_tokens_and_sessions(tmp_path: Path) -> None:
    model = CapturedModel(CAPTURES / "7.3.130_no_consumption")
    with Simulator(model=model, start=model.captured_at, state_dir=tmp_path / "sim") as sim:
        assert sim.gateway_url.startswith("https://")
        url = sim.gateway_url
        assert requests.get(f"{url}/info", verify=False, timeout=TIMEOUT).status_code == 200
        assert requests.get(f"{url}/production.json", verify=False, timeout=TIMEOUT).status_code == 401
        bearer = {"Authorization": f"Bearer {sim.issue_token()}"}
        checked = requests.get(f"{url}/auth/check_jwt", headers=bearer, verify=False, timeout=TIMEOUT)
        assert checked.status_code == 200
        session = {"sessionId": checked.cookies["sessionId"]}
        answer = requests.get(
            f"{url}/production.json?details=1", cookies=session, verify=False, timeout=TIMEOUT
        )
        assert (answer.status_code, answer.content) == (200, _file(model.folder.name, "production.json"))
        # Recorded as refused even with valid auth: refused again.
        power = requests.get(f"{url}/ivp/ensemble/power", cookies=session, verify=False, timeout=TIMEOUT)
        assert power.status_code == 401


def test_old_firmware_is_served_over_http_with_digest_on_the_inverters(tmp_path: Path) -> None:
    for folder, with_digest in (("3.9.36", 200), ("3.9.36_bad_auth", 401)):
        model = CapturedModel(CAPTURES / folder)
        with Simulator(model=model, start=model.captured_at, state_dir=tmp_path / folder) as sim:
            assert sim.gateway_url.startswith("http://")
            url = f"{sim.gateway_url}/api/v1/production/inverters"
            refused = requests.get(url, timeout=TIMEOUT)
            assert refused.status_code == 401 and "Digest" in refused.headers["WWW-Authenticate"]
            digest = HTTPDigestAuth("envoy", sim.serial[-6:])
            assert requests.get(url, auth=digest, timeout=TIMEOUT).status_code == with_digest
            assert requests.get(f"{sim.gateway_url}/api/v1/production", timeout=TIMEOUT).status_code == 200
