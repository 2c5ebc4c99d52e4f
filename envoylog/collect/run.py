"""One cron run: for every gateway connect, authorize, read, choose sources, store what changed, log it."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from envoylog.collect.auth_store import DatabaseAuthStore
from envoylog.collect.read import read_gateway
from envoylog.config import GatewaySettings, Settings
from envoylog.db import credentials, gateways, runs, samples
from envoylog.db.engine import describe_db_error, waiting_until
from envoylog.db.lock import collect_lock
from envoylog.db.migrate import open_database
from envoylog.db.runs import RunOutcome
from envoylog.errors import DatabaseError, EnvoylogError, GatewayError
from envoylog.gateway.auth import GatewayAuth
from envoylog.gateway.client import (
    GatewayClient,
)
from envoylog.gateway.cloud import CloudClient
from envoylog.gateway.connect import UnsupportedGateway, connect
from envoylog.readings import model
from envoylog.readings.plausible import plausible_snapshot
from envoylog.readings.sources import build_snapshot

log = logging.getLogger(__name__)

DEFAULT_DEADLINE_S = 50.0  # ends a cron run before the next minute's starts


def utc_now() -> datetime:
    """The collector's clock."""
    return datetime.now(UTC)


@dataclass
class GatewayRun:
    """How collecting one gateway went."""

    name: str
    serial: str | None = None
    outcome: RunOutcome = "running"
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
            run_id = runs.start_run(conn, gateway.name, started)
            # Known from earlier runs: a run that cannot reach the gateway is still logged against it.
            known = gateways.configured_gateway(conn, name=gateway.name, serial=gateway.serial)
            gateway_id = known.id if known is not None else None
            # A gateway known to need a token, or pinned by a fingerprint, is reached over HTTPS only.
            https_only = bool(gateway.fingerprint) or (
                known is not None and model.firmware_tuple(known.firmware or "0") >= (7,)
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
            record = gateways.save_gateway(conn, info, gateway.name, now)
        gateway_id = record.id
        if record.previous_firmware:
            # A firmware update can add, drop or change endpoints: discovery runs again (read_gateway).
            log.info("gateway %s: firmware %s -> %s", info.serial, record.previous_firmware, info.firmware)
            with engine.begin() as conn:
                gateways.record_firmware_change(conn, record.id, record.previous_firmware, info.firmware, now)
        auth = None
        if info.needs_token:
            auth = GatewayAuth(
                store=DatabaseAuthStore(engine, record.id),
                serial=info.serial,
                settings=gateway,
                client=client,
                cloud=cloud,
                clock=clock,
            )
            auth.prepare()
        read = read_gateway(client, auth, info, record.discovery, now)
        run.endpoint_errors += read.errors
        discovery = read.discovery
        snapshot, impossible = plausible_snapshot(build_snapshot(info, discovery.meters, read.answers, now))
        run.endpoint_errors += impossible
        if not (snapshot.meters or snapshot.inverters or snapshot.batteries) and run.endpoint_errors:
            if read.html_only:
                raise UnsupportedGateway(
                    f"gateway {info.serial} (firmware {info.firmware}) serves only HTML pages, "
                    "no data: unsupported"
                )
            raise GatewayError(f"gateway {info.serial} answered errors only: {run.endpoint_errors[0]}")
        with engine.begin() as conn:
            saved = samples.save_snapshot(conn, record.id, snapshot, now)
            run.rows_added = saved.added
            run.endpoint_errors += saved.notes()
            gateways.save_discovery(conn, record.id, discovery)
            if discovery.firmware and discovery.firmware != record.discovery.firmware:
                gateways.record_event(conn, record.id, "discovered", discovery.describe(), now)
            if auth is not None and auth.session_used:
                credentials.touch_session(conn, record.id, clock())
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
    if abs(offset) <= samples.FUTURE_TOLERANCE:
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
            runs.finish_run(
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
