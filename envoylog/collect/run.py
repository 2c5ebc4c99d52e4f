"""The use case cron runs: settings -> gateway -> readings -> repository -> run log, for every gateway."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from requests.auth import HTTPDigestAuth
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from envoylog.readings import parse as readings
from envoylog.config import GatewaySettings, Settings
from envoylog.db import repository
from envoylog.db.engine import describe_db_error, waiting_until
from envoylog.db.lock import collect_lock
from envoylog.db.migrate import open_database
from envoylog.errors import ConfigError, DatabaseError, EnvoylogError, GatewayError
from envoylog.gateway.auth import GatewayAuth
from envoylog.gateway.client import (
    Answer,
    AnswerTooLarge,
    CertificateMismatch,
    GatewayClient,
    GatewayUnreachable,
)
from envoylog.gateway.cloud import CloudClient
from envoylog.readings.plausible import plausible_snapshot
from envoylog.readings.sources import (
    API_V1_PRODUCTION,
    DEVICE_DATA,
    ENSEMBLE_INVENTORY,
    ENSEMBLE_POWER,
    INVERTERS,
    METER_READINGS,
    METERS,
    PRODUCTION_JSON,
    SLOW_ENDPOINTS,
    Answers,
    build_snapshot,
    ct_configs,
    discovery_paths,
    learn,
    steady_paths,
)

log = logging.getLogger(__name__)

DEFAULT_DEADLINE_S = 50.0  # ends a cron run before the next minute's starts
MIN_FIRMWARE = (3, 9)  # older firmware serves HTML pages only


class UnsupportedGateway(GatewayError):
    """The gateway's firmware has no machine-readable data."""


def utc_now() -> datetime:
    """The collector's clock."""
    return datetime.now(UTC)


@dataclass
class GatewayRun:
    """How collecting one gateway went."""

    name: str
    serial: str | None = None
    outcome: str = "running"  # "ok" | "partial" | "failed"
    requests: int = 0
    cloud_requests: int = 0
    rows_added: dict[str, int] = field(default_factory=dict)
    endpoint_errors: list[str] = field(default_factory=list)
    error: EnvoylogError | None = None
    clock_offset: timedelta | None = None  # the gateway's clock minus this machine's, where they disagree

    def summary(self) -> str:
        """One line for -v: requests made and rows added per series kind."""
        rows = ", ".join(f"{kind} {n}" for kind, n in sorted(self.rows_added.items())) or "none"
        text = (
            f"{self.name} ({self.serial or 'unknown serial'}): {self.outcome}; "
            f"{self.requests} gateway requests, {self.cloud_requests} cloud requests; rows added: {rows}"
        )
        if self.endpoint_errors:
            text += "; endpoint errors: " + "; ".join(self.endpoint_errors)
        return text


def collect_all(
    settings: Settings,
    *,
    deadline_s: float = DEFAULT_DEADLINE_S,
    clock: Callable[[], datetime] = utc_now,
    cloud_verify: str | bool = True,
) -> list[GatewayRun]:
    """One poll cycle of every configured gateway, one after another, under the database's collect lock."""
    started = time.monotonic()
    with waiting_until(started + deadline_s):
        engine = open_database(settings.db_url, create=True)
    try:
        with waiting_until(started + deadline_s), collect_lock(engine):
            runs = []
            for index, gateway in enumerate(settings.gateways):
                # Each gateway gets a fair share of what is left, so one that hangs cannot starve the rest.
                remaining = started + deadline_s - time.monotonic()
                deadline = time.monotonic() + remaining / (len(settings.gateways) - index)
                with waiting_until(deadline):
                    run = collect_gateway(
                        engine, settings, gateway, deadline=deadline, clock=clock, cloud_verify=cloud_verify
                    )
                log.info("%s", run.summary())
                runs.append(run)
            return runs
    finally:
        engine.dispose()


def collect_gateway(
    engine: Engine,
    settings: Settings,
    gateway: GatewaySettings,
    *,
    deadline: float,
    clock: Callable[[], datetime] = utc_now,
    cloud_verify: str | bool = True,
) -> GatewayRun:
    """Read one gateway and store what changed; every outcome is written to the run log."""
    run = GatewayRun(gateway.name)
    cloud = CloudClient(settings.enlighten_url, settings.entrez_url, verify=cloud_verify, deadline=deadline)
    client: GatewayClient | None = None
    gateway_id: int | None = None
    started = clock()
    try:
        with engine.begin() as conn:
            run_id = repository.start_run(conn, gateway.name, started)
            # Known from earlier runs: a run that cannot reach the gateway is still logged against it.
            known = repository.find_gateway(conn, name=gateway.name, serial=gateway.serial)
            gateway_id = known.id if known is not None else None
            # A gateway known to need a token, or pinned by a fingerprint, is reached over HTTPS only.
            https_only = bool(gateway.fingerprint) or (
                known is not None and readings.firmware_tuple(known.firmware or "0") >= (7,)
            )
    except SQLAlchemyError as exc:
        run.outcome, run.error = (
            "failed",
            DatabaseError(f"cannot write the run log: {describe_db_error(exc)}"),
        )
        return run
    try:
        client, info = connect(gateway, deadline, https_only=https_only)
        run.serial = info.serial
        clock = _trusted_clock(clock, client.gateway_now(), info.serial, run)
        now = clock()
        with engine.begin() as conn:
            record = repository.save_gateway(conn, info, gateway.name, now)
        gateway_id = record.id
        if record.previous_firmware:
            # A firmware update can add, drop or change endpoints: discovery runs again (see _read).
            log.info("gateway %s: firmware %s -> %s", info.serial, record.previous_firmware, info.firmware)
            with engine.begin() as conn:
                repository.record_firmware_change(
                    conn, record.id, record.previous_firmware, info.firmware, now
                )
        auth = None
        if info.needs_token:
            auth = GatewayAuth(
                engine=engine,
                gateway_id=record.id,
                serial=info.serial,
                settings=gateway,
                client=client,
                cloud=cloud,
                clock=clock,
            )
            auth.prepare()
        answers, discovery, html_only = _read(client, auth, info, record.discovery, run, now)
        snapshot, impossible = plausible_snapshot(build_snapshot(info, ct_configs(discovery), answers, now))
        run.endpoint_errors += impossible
        if not (snapshot.meters or snapshot.inverters or snapshot.batteries) and run.endpoint_errors:
            if html_only:
                raise UnsupportedGateway(
                    f"gateway {info.serial} (firmware {info.firmware}) serves only HTML pages, "
                    "no data: unsupported"
                )
            raise GatewayError(f"gateway {info.serial} answered errors only: {run.endpoint_errors[0]}")
        with engine.begin() as conn:
            saved = repository.save_snapshot(conn, record.id, snapshot, now)
            run.rows_added = saved.added
            run.endpoint_errors += saved.notes()
            repository.save_discovery(conn, record.id, discovery)
            if discovery.get("firmware") and discovery.get("firmware") != record.discovery.get("firmware"):
                repository.record_event(conn, record.id, "discovered", describe_discovery(discovery), now)
            if auth is not None and auth.session_used:
                repository.touch_session(conn, record.id, clock())
        run.outcome = "partial" if run.endpoint_errors else "ok"
    except EnvoylogError as exc:
        run.outcome, run.error = "failed", exc
    except SQLAlchemyError as exc:
        run.outcome, run.error = (
            "failed",
            DatabaseError(f"cannot store the readings: {describe_db_error(exc)}"),
        )
    except Exception as exc:  # a defect met with one gateway: logged, and the others still run
        log.info("internal error collecting %s", gateway.name, exc_info=True)
        run.outcome, run.error = "failed", EnvoylogError(f"internal error: {type(exc).__name__}: {exc}")
    finally:
        if client is not None:
            client.close()
    run.requests = client.requests_made if client is not None else run.requests
    run.cloud_requests = cloud.requests_made
    _finish(engine, run_id, gateway_id, run, clock(), started)
    return run


def _trusted_clock(
    clock: Callable[[], datetime], gateway_now: datetime | None, serial: str, run: GatewayRun
) -> Callable[[], datetime]:
    """The clock that times this run's readings: the collector's, or the gateway's where the two disagree.

    A Raspberry Pi has no clock of its own while off: after a boot it runs on a saved time until NTP answers,
    minutes or hours away from the truth. The gateway keeps its clock by the Enphase cloud, and every answer
    carries it (the Date header). When they disagree by more than FUTURE_TOLERANCE, the gateway's is used
    and the run log says so.
    """
    if gateway_now is None:
        return clock
    offset = gateway_now - clock()
    if abs(offset) <= repository.FUTURE_TOLERANCE:
        return clock
    side = "behind" if offset > timedelta(0) else "ahead of"
    note = (
        f"this machine's clock is {_duration(abs(offset))} {side} the gateway's: "
        "readings are timed by the gateway's clock"
    )
    log.info("gateway %s: %s", serial, note)
    run.endpoint_errors.append(note)
    run.clock_offset = offset
    return lambda: clock() + offset


def _duration(delta: timedelta) -> str:
    minutes = round(delta.total_seconds() / 60)
    return f"{minutes} min" if minutes < 120 else f"{minutes / 60:.1f} h"


def _finish(
    engine: Engine, run_id: int, gateway_id: int | None, run: GatewayRun, now: datetime, started: datetime
) -> None:
    try:
        with engine.begin() as conn:
            repository.finish_run(
                conn,
                run_id,
                gateway_id=gateway_id,
                # Timed by the trusted clock, so that coverage counts the minutes the run really covers.
                started_at=started + run.clock_offset if run.clock_offset else None,
                now=now,
                outcome=run.outcome,
                requests=run.requests,
                cloud_requests=run.cloud_requests,
                rows_added=sum(run.rows_added.values()),
                error=str(run.error) if run.error else "; ".join(run.endpoint_errors) or None,
            )
    except SQLAlchemyError as exc:
        if run.error is None:
            run.outcome, run.error = (
                "failed",
                DatabaseError(f"cannot write the run log: {describe_db_error(exc)}"),
            )


def connect(
    gateway: GatewaySettings, deadline: float, *, https_only: bool = False
) -> tuple[GatewayClient, readings.GatewayInfo]:
    """Find the gateway (HTTPS, then HTTP for a bare host) and read /info; check the serial if one is set.

    A gateway that needs a token (known from earlier runs, or saying so now) is never talked to over plain
    HTTP: an impostor answering there would be handed the session cookie and the owner's token.
    """
    failures: list[str] = []
    requests_before = 0
    urls = [url for url in gateway.base_urls if url.startswith("https://") or not https_only]
    if not urls:
        raise ConfigError(
            f"gateway {gateway.name} needs a token, which envoylog sends over HTTPS only: "
            f"give its host as https://... instead of {gateway.host}"
        )
    for base_url in urls:
        client = GatewayClient(base_url, deadline=deadline, fingerprint=gateway.fingerprint)
        client.requests_made = requests_before
        try:
            answer = client.get("/info")
        except CertificateMismatch:
            client.close()
            raise
        except (GatewayUnreachable, AnswerTooLarge) as exc:
            failures.append(str(exc))
            requests_before = client.requests_made
            client.close()
            continue
        if answer.status != 200:
            client.close()
            failures.append(f"{base_url}/info answered HTTP {answer.status}")
            requests_before = client.requests_made
            continue
        info = readings.parse_info(answer.body)
        if info.needs_token and base_url.startswith("http://"):
            client.close()
            raise GatewayError(
                f"{base_url} says it is gateway {info.serial} with firmware {info.firmware}, which needs a "
                "token, but answers over plain HTTP: envoylog sends tokens over HTTPS only"
            )
        if info.firmware_version < MIN_FIRMWARE:
            client.close()
            raise UnsupportedGateway(
                f"gateway {info.serial} runs firmware {info.firmware}, which serves only HTML pages: "
                "envoylog needs firmware 3.9 or later"
            )
        if gateway.serial and gateway.serial != info.serial:
            client.close()
            raise ConfigError(
                f"gateway {gateway.name} at {base_url} has serial {info.serial}, "
                f"not the configured {gateway.serial}"
            )
        return client, info
    raise GatewayUnreachable("; ".join(failures))


def _read(
    client: GatewayClient,
    auth: GatewayAuth | None,
    info: readings.GatewayInfo,
    known: dict[str, Any],
    run: GatewayRun,
    now: datetime,
) -> tuple[Answers, dict[str, Any], bool]:
    """Request the endpoints one at a time; return the parsed answers, what discovery learned, and whether
    every failure was an HTML page (firmware that serves no data)."""
    discovering = known.get("firmware") != info.firmware
    discovery: dict[str, Any] = {} if discovering else dict(known)
    discovery["polled_at"] = dict(discovery.get("polled_at", {}))
    paths = discovery_paths(info) if discovering else steady_paths(info, known, now)
    absent: set[str] = set(discovery.get("absent", []))
    refused: set[str] = set()
    answers = Answers()
    times = readings.TimeCheck(now)
    complete, answered, html_only = True, False, True
    for path in paths:
        try:
            answer = _get(client, auth, info, path)
        except (GatewayUnreachable, AnswerTooLarge) as exc:
            run.endpoint_errors.append(f"{path}: {exc}")
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
            run.endpoint_errors.append(f"{path}: HTTP {answer.status}")
            complete = html_only = False
            continue
        try:
            _parse_into(answers, path, answer, times)
        except readings.ParseError as exc:
            run.endpoint_errors.append(f"{path}: {exc}")
            complete = False
            html_only = html_only and isinstance(exc, readings.HtmlAnswer)
            continue
        except Exception as exc:  # one answer that no parser foresaw must not end the run
            log.info("cannot read %s", path, exc_info=True)
            run.endpoint_errors.append(
                f"{path}: answered something envoylog cannot read ({type(exc).__name__})"
            )
            complete = html_only = False
            continue
        answered = True
        if path in SLOW_ENDPOINTS:
            discovery["polled_at"][path] = now.isoformat()
        zero_api = path == API_V1_PRODUCTION and answers.api_v1 is not None and answers.api_v1.energy_all_zero
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
    learn(discovery, answers)
    discovery["absent"] = sorted(absent)
    if answered and refused:
        # Some firmware refuses an endpoint even to a fresh session that others accept: stop asking it.
        discovery["refused"] = sorted(refused | set(discovery.get("refused", [])))
    if discovering:
        # Discovery counts as done only when every endpoint answered (or said it does not exist).
        discovery["firmware"] = info.firmware if complete else None
    return answers, discovery, html_only and bool(run.endpoint_errors)


def describe_discovery(discovery: dict[str, Any]) -> str:
    """One line about what discovery found, for the event log."""
    cts = [
        f"{m['measurement_type']} ({'enabled' if m['enabled'] else 'disabled'})"
        for m in discovery.get("meters", [])
    ]
    parts = [f"firmware {discovery.get('firmware')}", "CTs: " + (", ".join(cts) or "none")]
    for key in ("batteries", "acb", "api_v1_zero", "inverters_beyond_device_data"):
        if discovery.get(key):
            parts.append(key.replace("_", " "))
    if discovery.get("absent"):
        parts.append("absent: " + ", ".join(discovery["absent"]))
    if discovery.get("refused"):
        parts.append("refused: " + ", ".join(discovery["refused"]))
    return "; ".join(parts)


def _get(client: GatewayClient, auth: GatewayAuth | None, info: readings.GatewayInfo, path: str) -> Answer:
    if auth is not None:
        return auth.get(path)
    if path == INVERTERS:
        # Firmware before 7 guards the inverters behind Digest auth: user envoy, the serial's last six digits.
        return client.get(path, auth=HTTPDigestAuth("envoy", info.serial[-6:]))
    return client.get(path)


def _parse_into(answers: Answers, path: str, answer: Answer, times: readings.TimeCheck) -> None:
    data = readings.decode_json(answer.body, path)
    if path == PRODUCTION_JSON:
        answers.production_json = readings.parse_production_json(data, times)
    elif path == API_V1_PRODUCTION:
        answers.api_v1 = readings.parse_api_v1_production(data)
    elif path == METERS:
        answers.meters = readings.parse_meters(data)
    elif path == METER_READINGS:
        answers.meter_readings = readings.parse_meter_readings(data, times)
    elif path == INVERTERS:
        answers.inverters = readings.parse_inverters(data, times)
    elif path == DEVICE_DATA:
        answers.device_data = readings.parse_device_data(data, times)
    elif path == ENSEMBLE_INVENTORY:
        answers.inventory = readings.parse_ensemble_inventory(data, times)
    elif path == ENSEMBLE_POWER:
        answers.battery_watts = readings.parse_ensemble_power(data)


class RunsFailed(EnvoylogError):
    """One or more gateways failed; the exit code is the worst of theirs."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self._status = status

    @property
    def status(self) -> int:
        """The worst exit code of the failed gateways."""
        return self._status


def raise_for_runs(runs: list[GatewayRun]) -> None:
    """Raise one error that names every failed gateway and carries the worst exit code."""
    failed = [run for run in runs if run.error is not None]
    if not failed:
        return
    if len(runs) == 1:
        raise failed[0].error  # type: ignore[misc]
    message = "; ".join(f"gateway {run.name}: {run.error}" for run in failed)
    raise RunsFailed(message, max(run.error.status for run in failed if run.error is not None))
