"""Reading one gateway's endpoints, one request at a time: the registry's paths in, parsed answers out."""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from datetime import datetime

from requests.auth import HTTPDigestAuth

from envoylog.gateway.auth import GatewayAuth
from envoylog.gateway.client import (
    MIN_REQUEST_TIME_S,
    READ_TIMEOUT_S,
    Answer,
    AnswerTooLarge,
    EndpointTimeout,
    GatewayClient,
    GatewayUnreachable,
)
from envoylog.readings.breakers import PROBE_READ_TIMEOUT_S, Breakers
from envoylog.readings.discovery import Discovery
from envoylog.readings.endpoints import (
    API_V1_PRODUCTION,
    DEVICE_DATA,
    ENDPOINTS,
    INVERTERS,
    PRODUCTION_JSON,
    discovery_paths,
    steady_paths,
)
from envoylog.readings.model import GatewayInfo
from envoylog.readings.parse import HtmlAnswer, ParseError, TimeCheck, decode_json
from envoylog.readings.sources import Answers, learn

log = logging.getLogger(__name__)


@dataclass
class Reading:
    """What one run read: the parsed answers, the discovery they update, and what went wrong."""

    answers: Answers
    discovery: Discovery
    errors: list[str] = field(default_factory=list)  # the run log's lines: what failed or was skipped
    failed: dict[str, str] = field(default_factory=dict)  # path -> why it gave no usable answer this run
    asked: set[str] = field(default_factory=set)  # paths requested this run, answered or not
    skipped: dict[str, datetime] = field(default_factory=dict)  # path -> until when its breaker skips it
    discovering: bool = False  # every endpoint was asked: the firmware is new to envoylog
    html_only: bool = False  # every failure was an HTML page: firmware that serves no data

    def fail(self, path: str, why: str) -> None:
        """The endpoint, asked this run, gave no usable answer."""
        self.failed[path] = why
        self.errors.append(f"{path}: {why}")

    def skip(self, path: str, breakers: Breakers) -> None:
        """The endpoint rests: its breaker is open."""
        until = breakers.until(path)
        assert until is not None
        self.skipped[path] = until
        self.errors.append(f"{path}: {breakers.describe(path)}")


# A 503 whose Retry-After leaves less than this much of the run after the wait is not waited for: the request
# asked again, and the endpoints after it, need the time.
RETRY_LEFT_S = 5.0


def read_gateway(
    client: GatewayClient,
    auth: GatewayAuth | None,
    info: GatewayInfo,
    known: Discovery,
    now: datetime,
    breakers: Breakers | None = None,
) -> Reading:
    """Request the endpoints this run needs (all of them when the gateway is being discovered).

    `breakers` (changed in place) skips the endpoints that timed out lately; an endpoint that times out while
    the gateway still answers opens its breaker, and one that answers closes it.
    """
    breakers = breakers if breakers is not None else Breakers()
    discovering = known.firmware != info.firmware
    discovery = Discovery() if discovering else Discovery(**vars(known))
    discovery.polled_at = dict(discovery.polled_at)
    result = Reading(Answers(), discovery, discovering=discovering)
    resting = breakers.resting(now)
    if discovering:
        paths = discovery_paths(info)
    else:
        paths = steady_paths(info, known, now, resting)
        # A resting slow endpoint gave its turn to another: still named, so that the run says it skipped it.
        for path in steady_paths(info, known, now):
            if path not in paths:
                result.skip(path, breakers)
    absent: set[str] = set(discovery.absent)
    refused: set[str] = set()
    times = TimeCheck(now)
    complete, answered, html_only = True, False, True
    patience = _Patience()
    suspects: list[str] = []  # timed out; whether the gateway itself stopped answering is not known yet
    for path in paths:
        endpoint = ENDPOINTS[path]
        if path in resting:
            result.skip(path, breakers)
            complete = html_only = False
            continue
        if client.remaining() < MIN_REQUEST_TIME_S:
            # Not asked, so neither failed nor answered.
            result.errors.append(f"{path}: deadline reached before GET {path}")
            complete = html_only = False
            if client.remaining() <= 0:
                break
            continue
        result.asked.add(path)
        read_timeout = PROBE_READ_TIMEOUT_S if breakers.probing(path, now) else READ_TIMEOUT_S
        try:
            answer, busy = _ask(client, auth, info, path, read_timeout, patience)
        except EndpointTimeout as exc:
            suspects.append(path)
            result.fail(path, str(exc))
            complete = html_only = False
            if client.remaining() < CHECK_READ_TIMEOUT_S + MIN_REQUEST_TIME_S:
                # The rest of the run is kept for the check that the gateway still answers: another
                # endpoint started now would end at the deadline and leave that unknown.
                break
            continue
        except GatewayUnreachable as exc:
            result.fail(path, str(exc))
            complete = html_only = False
            continue
        except AnswerTooLarge as exc:
            _answered(breakers, path, suspects, now, info.serial)  # too much, but an answer
            result.fail(path, str(exc))
            complete = html_only = False
            continue
        _answered(breakers, path, suspects, now, info.serial)
        if answer.status == 404:
            absent.add(path)
            if path == DEVICE_DATA and INVERTERS not in paths:
                paths.append(INVERTERS)  # older firmware: the inverters' own endpoint instead
            continue
        if answer.status != 200:
            if answer.status in (401, 403):
                refused.add(path)
            result.fail(path, busy or f"HTTP {answer.status}")
            complete = html_only = False
            continue
        try:
            setattr(result.answers, endpoint.answer, endpoint.parse(decode_json(answer.body, path), times))
        except ParseError as exc:
            result.fail(path, str(exc))
            complete = False
            html_only = html_only and isinstance(exc, HtmlAnswer)
            continue
        except Exception as exc:  # one answer that no parser foresaw must not end the run
            log.info("cannot read %s", path, exc_info=True)
            result.fail(path, f"answered something envoylog cannot read ({type(exc).__name__})")
            complete = html_only = False
            continue
        answered = True
        if endpoint.cadence == "slow":
            discovery.polled_at[path] = now
        api_v1 = result.answers.api_v1
        zero_api = path == API_V1_PRODUCTION and api_v1 is not None and api_v1.energy_all_zero
        if zero_api and PRODUCTION_JSON not in paths:
            paths.append(PRODUCTION_JSON)  # its inverters entry is the production source then
    if suspects:
        if _still_answers(client):
            for suspect in suspects:
                _opened(breakers, suspect, now, info.serial)
        else:
            log.info(
                "gateway %s stopped answering during this run: no endpoint breaker opened for %s",
                info.serial,
                ", ".join(suspects),
            )
    if times.replaced:
        where = ", ".join(f"{count} from {path}" for path, count in sorted(times.replaced.items()))
        log.info(
            "gateway %s: %d readings had no believable time of their own (zero, negative or more than an "
            "hour ahead of this clock): stored at the collection time (%s)",
            info.serial,
            sum(times.replaced.values()),
            where,
        )
    learn(discovery, result.answers)
    discovery.absent = tuple(sorted(absent))
    if answered and refused:
        # Some firmware refuses an endpoint even to a fresh session that others accept: stop asking it.
        discovery.refused = tuple(sorted(refused | set(discovery.refused)))
    if discovering:
        # Discovery counts as done only when every endpoint answered (or said it does not exist).
        discovery.firmware = info.firmware if complete else None
    result.html_only = html_only and bool(result.errors)
    return result


def _answered(breakers: Breakers, path: str, suspects: list[str], now: datetime, serial: str) -> None:
    """An answer, an error too, says the gateway is there: the endpoints that timed out before it did so on
    their own (their breakers open), and this one's breaker closes."""
    for suspect in suspects:
        _opened(breakers, suspect, now, serial)
    suspects.clear()
    breakers.answered(path)


def _opened(breakers: Breakers, path: str, now: datetime, serial: str) -> None:
    breakers.timed_out(path, now)
    log.info("gateway %s: %s timed out; %s", serial, path, breakers.describe(path))


# The check that the gateway still answers after an endpoint timed out: /info is a static page (0.1 s).
CHECK_READ_TIMEOUT_S = 5.0


def _still_answers(client: GatewayClient) -> bool:
    """Whether the gateway answers /info now: an endpoint that timed out did so on its own, not the gateway.

    Without the time to ask, yes: /info answered at the start of this run, and the endpoint held the run until
    its deadline, as a hanging endpoint does.
    """
    if client.remaining() < MIN_REQUEST_TIME_S:
        return True
    try:
        client.get("/info", read_timeout=min(CHECK_READ_TIMEOUT_S, client.remaining()))
    except GatewayUnreachable:
        return False
    except AnswerTooLarge:
        return True
    return True


@dataclass
class _Patience:
    """A gateway that says it is busy (503 with Retry-After) is waited for once per run, not per endpoint."""

    spent: bool = False


def _ask(
    client: GatewayClient,
    auth: GatewayAuth | None,
    info: GatewayInfo,
    path: str,
    read_timeout: float,
    patience: _Patience,
) -> tuple[Answer, str | None]:
    """GET the endpoint; a 503 with Retry-After is waited for and asked once more, when the run has the time.

    Returns the answer and, for a busy answer not waited for (or busy again), why, in a few words.
    """
    answer = _get(client, auth, info, path, read_timeout)
    if answer.status != 503 or answer.retry_after_s is None:
        return answer, None
    wait = answer.retry_after_s
    busy = f"busy (503), asked to come back in {math.ceil(wait)} s"
    if patience.spent:
        return answer, f"{busy}; this run waited once already"
    if client.remaining() - wait < RETRY_LEFT_S:
        return answer, f"{busy}, more than this run has left"
    patience.spent = True
    log.info("gateway %s: %s: %s; waiting", info.serial, path, busy)
    time.sleep(wait)
    again = _get(client, auth, info, path, read_timeout)
    if again.status == 503:
        return again, f"busy (503) again after waiting {math.ceil(wait)} s as asked"
    return again, None


def _get(
    client: GatewayClient, auth: GatewayAuth | None, info: GatewayInfo, path: str, read_timeout: float
) -> Answer:
    if auth is not None:
        return auth.get(path, read_timeout=read_timeout)
    if ENDPOINTS[path].digest_before_7:
        # Firmware before 7 guards the inverters behind Digest auth: user envoy, the serial's last six digits.
        return client.get(path, read_timeout=read_timeout, auth=HTTPDigestAuth("envoy", info.serial[-6:]))
    return client.get(path, read_timeout=read_timeout)
