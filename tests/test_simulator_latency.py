"""A real gateway's pace over real HTTP: one request at a time, service times, resets, its nightly pause."""

from __future__ import annotations

import dataclasses
import random
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
import requests

from envoylog.simulator import Fleet, Latency, NightlyOutage, Simulator
from envoylog.simulator.latency import OutageWindow

pytestmark = pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")

START = datetime(2026, 6, 21, 10, 0, tzinfo=UTC)  # a summer midday in Amsterdam
AMSTERDAM = ZoneInfo("Europe/Amsterdam")
TIMEOUT = 10.0


def exact(latency: Latency) -> Latency:
    """The same medians without jitter, resets or nights: service times a test can add up."""
    return dataclasses.replace(
        latency,
        endpoints={key: (median, 0.0) for key, (median, _) in latency.endpoints.items()},
        default=(latency.default[0], 0.0),
        cloud=(latency.cloud[0], 0.0),
        reset_rate=0.0,
        outage=None,
    )


def get(url: str, path: str, **kwargs: object) -> requests.Response:
    return requests.get(f"{url}{path}", verify=False, timeout=TIMEOUT, **kwargs)  # type: ignore[arg-type]


def timed(calls: int, work: object) -> float:
    """Seconds `calls` concurrent calls of `work(i)` take together."""
    started = time.monotonic()
    with ThreadPoolExecutor(calls) as pool:
        list(pool.map(work, range(calls)))  # type: ignore[arg-type]
    return time.monotonic() - started


# --- the model -----------------------------------------------------------------------------------


def test_realistic_is_slow_where_real_gateways_are_and_scaled_keeps_its_shape() -> None:
    realistic = Latency.realistic()
    details = realistic.pacing("/production.json", {"details": "1"})
    assert details[0] >= 1.0 > realistic.pacing("/info", {})[0]
    assert realistic.pacing("/home.json", {})[0] > details[0]
    assert realistic.pacing("/no/such/endpoint", {}) == realistic.default
    small = realistic.scaled(0.01)
    assert small.pacing("/production.json", {"details": "1"}) == pytest.approx((details[0] / 100, details[1]))
    assert small.cloud[0] == pytest.approx(realistic.cloud[0] / 100)
    assert (small.reset_rate, small.outage) == (realistic.reset_rate, realistic.outage)
    assert len({realistic, realistic.scaled(1.0), Latency.realistic()}) == 1
    assert not Latency.none().paced and realistic.paced and small.paced


def test_service_times_jitter_deterministically_and_never_beyond_the_cap() -> None:
    realistic = Latency.realistic()

    def draws(seed: int) -> list[float]:
        rng = random.Random(seed)
        return [realistic.service_s("/production.json", {"details": "1"}, 200, rng) for _ in range(2000)]

    first = draws(7)
    assert first == draws(7) and first != draws(8)
    median = realistic.pacing("/production.json", {"details": "1"})[0]
    assert sorted(first)[1000] == pytest.approx(median, rel=0.1)
    assert max(first) <= median * realistic.cap and min(first) > 0
    # A refusal is answered without the work.
    assert (
        realistic.service_s("/production.json", {"details": "1"}, 401, random.Random(1)) == realistic.quick_s
    )


def test_the_nightly_outage_falls_shortly_after_23_local_and_differs_by_day_and_seed() -> None:
    outage = NightlyOutage()
    windows = [outage.window(date(2026, 1, 1) + timedelta(days=k), AMSTERDAM, 1) for k in range(60)]
    for window in windows:
        local = window.start.astimezone(AMSTERDAM)
        assert (local.hour, local.minute) >= (23, 0) and local < local.replace(hour=23, minute=5)
        assert timedelta(minutes=1) <= window.answering - window.start <= timedelta(minutes=3)
        assert timedelta(minutes=1) <= window.ready - window.answering <= timedelta(minutes=2)
    assert len({w.start.astimezone(AMSTERDAM).time() for w in windows}) == len(windows)
    assert outage.window(date(2026, 1, 1), AMSTERDAM, 1) == windows[0]
    assert outage.window(date(2026, 1, 1), AMSTERDAM, 2) != windows[0]
    # Summer time: still 23:0x local, an hour earlier in UTC.
    summer = outage.window(date(2026, 7, 1), AMSTERDAM, 1).start
    assert summer.astimezone(AMSTERDAM).hour == 23 and summer.hour == 21


# --- one gateway -----------------------------------------------------------------------------------


@pytest.fixture
def paced() -> Iterator[Simulator]:
    """The metered gateway answering at the realistic model's (unjittered) pace, three times as fast."""
    with Simulator("metered", start=START, latency=exact(Latency.realistic().scaled(0.3))) as simulator:
        yield simulator


def test_concurrent_requests_to_one_gateway_are_served_one_after_another(paced: Simulator) -> None:
    info = paced.latency.pacing("/info", {})[0]
    elapsed = timed(4, lambda _: get(paced.gateway_url, "/info").raise_for_status())
    assert elapsed >= 4 * info
    # Each request takes its own service time, and the slow endpoint its seconds.
    session = requests.get(
        f"{paced.gateway_url}/auth/check_jwt",
        headers={"Authorization": f"Bearer {paced.issue_token()}"},
        verify=False,
        timeout=TIMEOUT,
    ).cookies["sessionId"]
    started = time.monotonic()
    answer = get(paced.gateway_url, "/production.json?details=1", cookies={"sessionId": session})
    assert answer.status_code == 200 and "production" in answer.json()
    assert time.monotonic() - started >= paced.latency.pacing("/production.json", {"details": "1"})[0]


def test_the_cloud_takes_its_time_and_answers_many_at_once() -> None:
    latency = exact(Latency.realistic().scaled(0.8))
    with Simulator("metered", start=START, latency=latency) as sim:
        form = {"user[email]": sim.username, "user[password]": sim.password}

        def login(_: int) -> None:
            answer = requests.post(
                f"{sim.enlighten_url}/login/login.json", data=form, verify=sim.ca_file, timeout=TIMEOUT
            )
            assert answer.status_code == 200

        elapsed = timed(8, login)
    assert latency.cloud[0] <= elapsed < 4 * latency.cloud[0]  # one after another: 8 times


def test_a_reset_connection_is_a_connection_error_and_logged_without_a_status() -> None:
    latency = dataclasses.replace(exact(Latency.realistic().scaled(0.01)), reset_rate=1.0)
    with Simulator("metered", start=START, latency=latency) as sim:
        with pytest.raises(requests.ConnectionError):
            get(sim.gateway_url, "/info")
        assert [(entry.path, entry.status) for entry in sim.request_log()] == [("/info", 0)]
        # The admin endpoints are not the gateway's: they answer at once, whatever its pace.
        assert get(sim.gateway_url, "/_sim/clock").status_code == 200


def test_stopping_ends_a_slow_answer_and_the_requests_waiting_for_it() -> None:
    slow = Latency(endpoints={"/info": (30.0, 0.0)})
    sim = Simulator("metered", start=START, latency=slow).start()
    errors: list[BaseException] = []

    def ask() -> None:
        try:
            get(sim.gateway_url, "/info")
        except requests.RequestException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=ask) for _ in range(3)]
    for thread in threads:
        thread.start()
    time.sleep(0.5)
    started = time.monotonic()
    sim.stop()
    for thread in threads:
        thread.join(timeout=10)
    assert time.monotonic() - started < 5
    assert len(errors) == 3 and not any(thread.is_alive() for thread in threads)


# --- the night ---------------------------------------------------------------------------------------


def window_of(sim: Simulator, day: date) -> OutageWindow:
    window = sim.outage_window(day)
    assert window is not None
    return window


def test_the_nightly_outage_resets_connections_then_boots_with_503_and_retry_after() -> None:
    latency = Latency.realistic().scaled(0.01)
    night = date(2026, 6, 21)
    with Simulator(
        "metered", start=START, speed=0, latency=dataclasses.replace(latency, reset_rate=0)
    ) as sim:
        window = window_of(sim, night)
        before = window.start - timedelta(seconds=5)
        sim.clock.set(before)
        assert before.astimezone(AMSTERDAM).strftime("%H:%M") >= "23:00"
        session = requests.get(
            f"{sim.gateway_url}/auth/check_jwt",
            headers={"Authorization": f"Bearer {sim.issue_token()}"},
            verify=False,
            timeout=TIMEOUT,
        ).cookies["sessionId"]
        assert get(sim.gateway_url, "/ivp/meters", cookies={"sessionId": session}).status_code == 200

        sim.clock.set(window.start + timedelta(seconds=1))
        for path in ("/info", "/ivp/meters"):
            with pytest.raises(requests.ConnectionError):
                get(sim.gateway_url, path, cookies={"sessionId": session})

        sim.clock.set(window.answering + timedelta(seconds=1))
        assert get(sim.gateway_url, "/info").status_code == 200
        busy = get(sim.gateway_url, "/production.json?details=1", cookies={"sessionId": session})
        assert busy.status_code == 503 and busy.headers["Retry-After"] == "30"
        assert "Resource busy" in busy.text
        # The reboot ended the session: a new one from the token, and data once booted.
        assert get(sim.gateway_url, "/ivp/meters", cookies={"sessionId": session}).status_code == 503
        sim.clock.set(window.ready + timedelta(seconds=1))
        assert get(sim.gateway_url, "/ivp/meters", cookies={"sessionId": session}).status_code == 401
        fresh = requests.get(
            f"{sim.gateway_url}/auth/check_jwt",
            headers={"Authorization": f"Bearer {sim.issue_token()}"},
            verify=False,
            timeout=TIMEOUT,
        ).cookies["sessionId"]
        assert get(sim.gateway_url, "/ivp/meters", cookies={"sessionId": fresh}).status_code == 200
        statuses = [entry.status for entry in sim.request_log()]
        assert statuses.count(0) == 2 and 503 in statuses


def test_right_after_the_boot_the_gateway_answers_several_times_slower() -> None:
    latency = exact(Latency.realistic().scaled(0.5))
    outage = NightlyOutage()
    latency = dataclasses.replace(latency, outage=outage)
    with Simulator("metered", start=START, speed=0, latency=latency) as sim:
        window = window_of(sim, date(2026, 6, 21))
        info = latency.pacing("/info", {})[0]

        def ask_info() -> float:
            started = time.monotonic()
            get(sim.gateway_url, "/info").raise_for_status()
            return time.monotonic() - started

        sim.clock.set(window.ready + timedelta(seconds=1))
        just_booted = ask_info()
        sim.clock.set(window.normal + timedelta(seconds=1))
        normal = ask_info()
    assert just_booted >= 0.9 * outage.slowdown * info
    assert normal < just_booted / 2


# --- a fleet ------------------------------------------------------------------------------------------


def test_different_gateways_of_a_fleet_answer_in_parallel() -> None:
    latency = exact(Latency.realistic().scaled(4.0))
    info = latency.pacing("/info", {})[0]
    with Fleet(8, start=START, latency=latency, sites=1) as fleet:
        urls = fleet.gateway_urls
        elapsed = timed(8, lambda i: get(urls[i], "/info").raise_for_status())
        one_by_one = timed(2, lambda _: get(urls[0], "/info").raise_for_status())
    assert info <= elapsed < 4 * info  # one after another would take 8 service times
    assert one_by_one >= 2 * info


def test_each_gateway_of_a_fleet_has_its_own_night() -> None:
    night = date(2026, 6, 21)
    with Fleet(3, start=START, speed=0, latency=Latency.realistic().scaled(0.01), sites=1) as fleet:
        windows = {unit.name: unit.outage_window(night) for unit in fleet.gateways}
        starts = {name: window.start for name, window in windows.items() if window is not None}
        assert len(set(starts.values())) == 3
        first, last = min(starts, key=starts.__getitem__), max(starts, key=starts.__getitem__)
        assert starts[last] - starts[first] > timedelta(seconds=1)
        fleet.clock.set(starts[first] + timedelta(seconds=1))
        with pytest.raises(requests.ConnectionError):
            get(fleet.gateway(first).url, "/info")
        assert get(fleet.gateway(last).url, "/info").status_code == 200
