"""Reading one gateway's endpoints, one request at a time: the registry's paths in, parsed answers out."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime

from requests.auth import HTTPDigestAuth

from envoylog.gateway.auth import GatewayAuth
from envoylog.gateway.client import Answer, AnswerTooLarge, GatewayClient, GatewayUnreachable
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
    errors: list[str] = field(default_factory=list)  # one line per endpoint that failed
    asked: list[str] = field(default_factory=list)  # the paths requested, answered or not
    failed: dict[str, str] = field(default_factory=dict)  # path -> why it failed (the same lines as errors)
    discovering: bool = False  # every endpoint was asked: the firmware is new to envoylog
    html_only: bool = False  # every failure was an HTML page: firmware that serves no data

    def fail(self, path: str, why: str) -> None:
        """Note that `path` failed, and why."""
        self.failed[path] = why
        self.errors.append(f"{path}: {why}")


def read_gateway(
    client: GatewayClient, auth: GatewayAuth | None, info: GatewayInfo, known: Discovery, now: datetime
) -> Reading:
    """Request the endpoints this run needs (all of them when the gateway is being discovered)."""
    discovering = known.firmware != info.firmware
    discovery = Discovery() if discovering else Discovery(**vars(known))
    discovery.polled_at = dict(discovery.polled_at)
    paths = discovery_paths(info) if discovering else steady_paths(info, known, now)
    absent: set[str] = set(discovery.absent)
    refused: set[str] = set()
    result = Reading(Answers(), discovery, discovering=discovering)
    times = TimeCheck(now)
    complete, answered, html_only = True, False, True
    for path in paths:
        endpoint = ENDPOINTS[path]
        result.asked.append(path)
        try:
            answer = _get(client, auth, info, path)
        except (GatewayUnreachable, AnswerTooLarge) as exc:
            result.fail(path, str(exc))
            complete = html_only = False
            if client.remaining() <= 0:
                break
            continue
        if answer.status == 404:
            absent.add(path)
            if path == DEVICE_DATA and INVERTERS not in paths:
                paths.append(INVERTERS)  # older firmware: the inverters' own endpoint instead
            continue
        if answer.status != 200:
            if answer.status in (401, 403):
                refused.add(path)
            result.fail(path, f"HTTP {answer.status}")
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


def _get(client: GatewayClient, auth: GatewayAuth | None, info: GatewayInfo, path: str) -> Answer:
    if auth is not None:
        return auth.get(path)
    if ENDPOINTS[path].digest_before_7:
        # Firmware before 7 guards the inverters behind Digest auth: user envoy, the serial's last six digits.
        return client.get(path, auth=HTTPDigestAuth("envoy", info.serial[-6:]))
    return client.get(path)
