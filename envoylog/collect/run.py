"""One cron run: for every gateway connect, authorize, read, choose sources, store what changed, log it."""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from sqlalchemy import Engine
from sqlalchemy.engine import Connection
from sqlalchemy.exc import SQLAlchemyError

from envoylog.collect.auth_store import DatabaseAuthStore
from envoylog.collect.escalation import Observation, escalate, escalate_problems
from envoylog.collect.read import Reading, read_gateway
from envoylog.config import CollectSettings, GatewaySettings, Settings
from envoylog.db import breakers, claims, credentials, gateways, problems, runs, samples
from envoylog.db.engine import DEADLINE_GRACE_S, SQLITE_BEGIN, describe_db_error, waiting_until
from envoylog.db.migrate import open_database
from envoylog.db.runs import RunOutcome
from envoylog.errors import ConfigError, DatabaseError, EnvoylogError, GatewayError, LockedError
from envoylog.gateway.auth import GatewayAuth
from envoylog.gateway.client import GatewayClient, GatewayUnreachable
from envoylog.gateway.cloud import CloudClient, CloudLogins
from envoylog.gateway.connect import UnsupportedGateway, connect
from envoylog.readings import model
from envoylog.readings.breakers import Breakers
from envoylog.readings.discovery import Discovery
from envoylog.readings.plausible import plausible_snapshot
from envoylog.readings.sources import build_snapshot

if TYPE_CHECKING:
    from envoylog.handoff.mqtt import Outcome
    from envoylog.handoff.state import RunFacts

log = logging.getLogger(__name__)

DEFAULT_DEADLINE_S = 50.0  # ends a cron run before the next minute's starts

# What a line a collect prints is: its error, a problem that has lasted (a warning), one that has cleared.
Notice = Literal["error", "warning", "cleared"]


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
    skipped: str | None = None  # why this run did not poll it: another collector had it
    recovered: str | None = None  # the line that says a failure, said before, has cleared
    reading: Reading | None = None  # what the gateway's endpoints answered, failed and skipped this run
    breakers: Breakers | None = None  # its endpoints' breakers, loaded before reading, saved with the run log
    warnings: list[str] = field(default_factory=list)  # problems that have lasted past their threshold
    cleared: list[str] = field(default_factory=list)  # problems said before that have cleared
    # What this run found about lasting problems (escalation), and whether the gateway's token is watched.
    observations: list[Observation] = field(default_factory=list)
    watch_token: bool = False
    token_told: bool = False  # this run told the user of a cloud failure only they can fix
    seconds: float = 0.0  # the run's wall time for this gateway

    def notices(self) -> list[tuple[Notice, str]]:
        """The lines this run says besides its error: lasting problems (warnings), problems that cleared."""
        good = [self.recovered] if self.recovered else []
        warnings: list[tuple[Notice, str]] = [("warning", line) for line in self.warnings]
        return warnings + [("cleared", line) for line in good + self.cleared]

    def summary(self) -> str:
        """One line for -v: requests made and rows added per series kind."""
        if self.skipped:
            return f"{self.name}: skipped, {self.skipped}"
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
    holder: str | None = None,
    textfile: Path | None = None,
) -> list[GatewayRun]:
    """One poll cycle of every configured gateway, many at once, each claimed for this run while polled.

    Every gateway has the whole run until the deadline (no slices: one that hangs only holds up its own
    worker). Opening and migrating the database comes first, so a new fleet's first gateway does not pay for
    it. `holder` names this collector in the claims (by default this process). After the run, what it read
    is handed on (`envoylog.handoff`): to the Prometheus `textfile` and to the `[mqtt]` broker, if set.
    """
    with Collector(
        settings, deadline_s=deadline_s, clock=clock, cloud_verify=cloud_verify, holder=holder
    ) as collector:
        return collector.cycle(textfile=textfile)


class Collector:
    """What the cycles of one collecting process share: the database's engine, the gateways' HTTP sessions.

    `collect --every` runs its cycles on one Collector, so that neither the database's connections nor the
    gateways' (a TLS handshake costs a gateway more than an answer) are made anew each cycle; `collect_all`
    is one cycle of a Collector of its own. The gateways' session cookies are kept in the database either way.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        deadline_s: float = DEFAULT_DEADLINE_S,
        clock: Callable[[], datetime] = utc_now,
        cloud_verify: str | bool = True,
        holder: str | None = None,
    ) -> None:
        self.settings = settings
        self.deadline_s = deadline_s
        self.clock = clock
        self.cloud_verify = cloud_verify
        self.holder = holder or claims.this_process()
        # Each gateway's HTTP session, by its configured name; not for a fleet so big that a connection each
        # would take the process's file descriptors (1,024 by default).
        keep = len(settings.gateways) <= MAX_KEPT_SESSIONS
        self.sessions: dict[str, GatewayClient] | None = {} if keep else None
        self._engine: Engine | None = None

    def __enter__(self) -> Collector:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the gateways' connections and the database's."""
        if self.sessions:
            for client in self.sessions.values():
                client.close()
            self.sessions.clear()
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None

    def _database(self, deadline: float) -> Engine:
        """The engine, opened (and the schema made or upgraded) by the first cycle that gets this far."""
        if self._engine is None:
            options = self.settings.collect
            workers = min(options.workers, len(self.settings.gateways))
            with waiting_until(deadline):
                # A worker waits for a connection as long as the run lasts: what it read is worth storing.
                engine = open_database(
                    self.settings.db_url,
                    create=True,
                    connections=min(workers, options.db_connections),
                    pool_wait_s=self.deadline_s + DEADLINE_GRACE_S,
                )
            # On SQLite every transaction takes the write lock at its start: read-then-write transactions of
            # parallel workers would otherwise deadlock on the upgrade (SQLITE_BUSY at once, no waiting).
            self._engine = engine.execution_options(**{SQLITE_BEGIN: "IMMEDIATE"})
        return self._engine

    def cycle(self, *, textfile: Path | None = None) -> list[GatewayRun]:
        """Poll every configured gateway once; then hand on what was read (see collect_all)."""
        settings, options = self.settings, self.settings.collect
        deadline = time.monotonic() + self.deadline_s
        engine = self._database(deadline)
        shared = Shared(
            engine=engine,
            settings=settings,
            deadline=deadline,
            lease_s=self.deadline_s + CLAIM_MARGIN_S,
            min_start_s=min(MIN_START_S, self.deadline_s / 4),
            holder=self.holder,
            clock=self.clock,
            cloud_verify=self.cloud_verify,
            logins=CloudLogins(),
            sessions=self.sessions,
        )
        if options.shared:
            with waiting_until(deadline), engine.connect() as conn:
                shared.run_started_ms = claims.now_ms(conn)
        if len(settings.gateways) == 1:
            result = [_claimed_run(shared, settings.gateways[0])]
        else:
            with waiting_until(deadline):
                order = _order(engine, settings)
            workers = min(options.workers, len(settings.gateways))
            from concurrent.futures import ThreadPoolExecutor  # a fleet's: one gateway needs no thread

            with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="envoylog-collect") as pool:
                done = {run.name: run for run in pool.map(lambda g: _claimed_run(shared, g), order)}
            result = [done[gateway.name] for gateway in settings.gateways]
        if textfile is not None or settings.mqtt is not None:
            from envoylog.handoff.publish import hand_off  # only for a collect that hands its readings on

            facts = [_facts(run) for run in result]
            now = self.clock()
            left = deadline - time.monotonic()
            handed = hand_off(engine, settings, facts, textfile=textfile, now=now, time_left=left)
            if handed.mqtt is not None:
                _escalate_mqtt(engine, result, handed.mqtt, now, options)
            if handed.failed is not None:
                raise HandOffFailed(str(handed.failed), result) from handed.failed
        return result


class HandOffFailed(ConfigError):
    """The run stored what it read, but handing it on (the textfile, MQTT) failed; `runs` are the runs."""

    def __init__(self, message: str, runs: list[GatewayRun]) -> None:
        super().__init__(message)
        self.runs = runs


def _escalate_mqtt(
    engine: Engine, result: list[GatewayRun], published: Outcome, now: datetime, options: CollectSettings
) -> None:
    """Say a failing broker once it has lasted (at once when only the user can fix it), and once it clears.

    The problem is the broker's, not a gateway's: a fleet's gateways each keep it, and say it in one line.
    """
    if published.error is None:
        seen = [Observation("mqtt", "", False), Observation("mqtt_setup", "", False)]
    else:
        # Only the failing kind is seen: a password fixed while the broker is down clears nothing yet.
        seen = [Observation("mqtt_setup" if published.needs_user else "mqtt", "", True, published.error)]
    runs_by_name = {run.name: run for run in result}
    said: dict[str, list[str]] = {}
    cleared: dict[str, list[str]] = {}
    try:
        with waiting_until(time.monotonic() + DEADLINE_GRACE_S), engine.begin() as conn:
            for name in published.gateways:
                run = runs_by_name[name]
                known = gateways.configured_gateway(conn, name=run.name, serial=run.serial)
                if known is None:
                    continue
                warnings, clears = escalate_problems(conn, known.id, run.name, seen, now, options)
                prefix = f"gateway {run.name}: "
                for line in warnings:
                    said.setdefault(line.removeprefix(prefix), []).append(run.name)
                for line in clears:
                    cleared.setdefault(line.removeprefix(prefix), []).append(run.name)
    except SQLAlchemyError as exc:
        log.info("cannot record how MQTT publishing went: %s", describe_db_error(exc))
        return
    first = runs_by_name[published.gateways[0]] if published.gateways else None
    if first is not None:
        first.warnings += [_named(names, text) for text, names in said.items()]
        first.cleared += [_named(names, text) for text, names in cleared.items()]


def _named(names: list[str], text: str) -> str:
    if len(names) == 1:
        return f"gateway {names[0]}: {text}"
    shown = ", ".join(names[:MAX_NAMED])
    more = f" and {len(names) - MAX_NAMED} more" if len(names) > MAX_NAMED else ""
    return f"gateways {shown}{more}: {text}"


def _facts(run: GatewayRun) -> RunFacts:
    """What the hand-off needs to know of a run."""
    from envoylog.handoff.state import RunFacts

    rows = sum(run.rows_added.values())
    outcome = "skipped" if run.skipped else run.outcome
    error = str(run.error) if run.error else None
    return RunFacts(run.name, run.serial, outcome, run.seconds, run.requests, run.cloud_requests, rows, error)


def _order(engine: Engine, settings: Settings) -> list[GatewaySettings]:
    """The order in which the workers take the gateways."""
    if settings.collect.shared:
        # Collectors sharing one config start at different places in it, so they rarely race for the
        # same gateway.
        cut = random.randrange(len(settings.gateways))
        return [*settings.gateways[cut:], *settings.gateways[:cut]]
    # The gateways polled longest ago first: when the workers cannot read them all within the deadline,
    # those left out this time come first the next time.
    last = claims.last_polled(engine)
    return sorted(settings.gateways, key=lambda gateway: last.get(gateway.name, -1))


MAX_KEPT_SESSIONS = 200  # gateways whose HTTP sessions a Collector keeps between cycles
CLAIM_MARGIN_S = 10.0  # a claim outlives its run's deadline by this much: the last writes, a slow exit
MIN_START_S = 5.0  # /info and the main endpoint of a real gateway take a few seconds


@dataclass
class Shared:
    """What the gateways of one run share: the database, the deadline, the claims, the cloud logins."""

    engine: Engine
    settings: Settings
    deadline: float
    lease_s: float
    min_start_s: float  # a gateway is not started with less time than this left: it could not be read
    holder: str
    clock: Callable[[], datetime]
    cloud_verify: str | bool
    logins: CloudLogins
    sessions: dict[str, GatewayClient] | None  # the gateways' HTTP sessions, kept from one cycle to the next
    run_started_ms: int | None = None  # the database's clock at the start, when collectors share a config

    @property
    def time_left(self) -> float:
        """Seconds to the deadline."""
        return self.deadline - time.monotonic()


def _claimed_run(shared: Shared, gateway: GatewaySettings) -> GatewayRun:
    """Claim the gateway, collect it, let go; a gateway another collector has is skipped."""
    with waiting_until(shared.deadline):  # per thread: the deadline is a context variable
        if shared.time_left < shared.min_start_s:
            if shared.settings.collect.shared:
                # Another collector of the shared config may still reach it; `status` shows it if none did.
                return GatewayRun(gateway.name, skipped="not reached before the run's deadline")
            # Not claimed, so that it keeps its place at the head of the next run's queue.
            count, workers = len(shared.settings.gateways), shared.settings.collect.workers
            late = GatewayUnreachable(
                f"not reached before the run's deadline: {workers} workers could not read {count} gateways "
                "in one run (raise [collect] workers, or add a collector)"
            )
            return _collect(shared, gateway, late=late)
        claim = Claim(shared.holder, shared.lease_s, shared.run_started_ms, shared.settings.collect.shared)
        return _collect(shared, gateway, claim=claim)


@dataclass(frozen=True)
class Claim:
    """How a run claims its gateway: taken with the run's start, let go with its end (db/claims.py)."""

    holder: str
    lease_s: float
    run_started_ms: int | None  # collectors sharing a config: refuse a gateway polled since then
    shared: bool

    def take(self, conn: Connection, name: str) -> claims.Refusal | None:
        """Claim the gateway `name`; who has it if another collector does."""
        return claims.claim_in(
            conn, name, self.holder, lease_s=self.lease_s, run_started_ms=self.run_started_ms
        )


def _collect(
    shared: Shared, gateway: GatewaySettings, *, late: GatewayError | None = None, claim: Claim | None = None
) -> GatewayRun:
    run = collect_gateway(
        shared.engine,
        shared.settings,
        gateway,
        deadline=shared.deadline,
        clock=shared.clock,
        cloud_verify=shared.cloud_verify,
        logins=shared.logins,
        late=late,
        claim=claim,
        sessions=shared.sessions,
    )
    log.info("%s", run.summary())
    if isinstance(run.error, DatabaseError):
        _quiet_if_recent(shared, gateway, run.error)
    return run


def _quiet_if_recent(shared: Shared, gateway: GatewaySettings, error: DatabaseError) -> None:
    """A database locked or restarting for a minute or two fails quietly, like a gateway's nightly outage.

    The run could not write, so it asks the run log whether the gateway was read within the quiet window: in
    WAL mode SQLite still reads while another process holds the write lock, and a restarted PostgreSQL answers
    a new connection. A database that cannot even be read says every failure: nobody else will.
    """
    try:
        reader = shared.engine.execution_options(**{SQLITE_BEGIN: "DEFERRED"})  # no write lock to wait for
        with waiting_until(time.monotonic() + DEADLINE_GRACE_S), reader.connect() as conn:
            known = gateways.configured_gateway(conn, name=gateway.name, serial=gateway.serial)
            success = runs.last_run(conn, known.id, successful=True) if known is not None else None
    except SQLAlchemyError:
        return
    window = timedelta(minutes=shared.settings.collect.quiet_minutes)
    if success is not None and success.finished_at and shared.clock() - success.finished_at < window:
        error.quiet = True


def _skipped(name: str, refusal: claims.Refusal, shared: bool) -> GatewayRun:
    who = claims.holder_for_people(refusal.holder)
    if refusal.reason == "done":
        note = f"polled by another collector ({who}) since this run began"
    else:
        note = f"polled by another collector ({who}) for up to {refusal.seconds_left:.0f} s more"
    run = GatewayRun(name, skipped=note)
    if refusal.reason == "held" and not shared:
        # Two collectors on one gateway outside a shared config: an overrun, a manual run, two configs that
        # name the same gateway. Said, with exit 6; shared configs race for gateways by design.
        run.error = LockedError(
            f"another envoylog collect is running for gateway {name} ({who}, "
            f"for up to {refusal.seconds_left:.0f} s more); this run did not poll it"
        )
    return run


def collect_gateway(
    engine: Engine,
    settings: Settings,
    gateway: GatewaySettings,
    *,
    deadline: float,
    clock: Callable[[], datetime] = utc_now,
    cloud_verify: str | bool = True,
    logins: CloudLogins | None = None,
    late: GatewayError | None = None,
    claim: Claim | None = None,
    sessions: dict[str, GatewayClient] | None = None,
) -> GatewayRun:
    """Read one gateway and store what changed; every outcome is written to the run log.

    A run that goes well is two transactions (each commit is an fsync, on an SD card too). The first claims
    the gateway (with `claim`) and writes the run's `running` row, so that a run that dies shows as one; it
    also reads what the run needs of the gateway's stored state. The last stores the readings, then ends the
    run in a savepoint (see `_finish`). Tokens and sessions that change are stored at once (gateway/auth.py).

    `late`: the run's time is up before this gateway's turn; the run log says so, and nothing is asked.
    `sessions`: the gateways' HTTP sessions, by name, kept for the next run (None: closed after this one).
    """
    run = GatewayRun(gateway.name)
    cloud = CloudClient(
        settings.enlighten_url, settings.entrez_url, verify=cloud_verify, deadline=deadline, logins=logins
    )
    client: GatewayClient | None = None
    auth: GatewayAuth | None = None
    started = clock()
    began = time.monotonic()
    try:
        with engine.begin() as conn:
            refusal = claim.take(conn, gateway.name) if claim is not None else None
            if refusal is not None:
                run = _skipped(gateway.name, refusal, claim is not None and claim.shared)
                log.info("%s", run.summary())
                return run
            run_id = runs.start_run(conn, gateway.name, started)
            # Known from earlier runs: a run that cannot reach the gateway is still logged against it.
            known = gateways.configured_gateway(conn, name=gateway.name, serial=gateway.serial)
            stored = _Stored.load(conn, known.id) if known is not None else None
    except SQLAlchemyError as exc:
        run.outcome, run.error = (
            "failed",
            DatabaseError(f"cannot write the run log: {describe_db_error(exc)}"),
        )
        return run
    gateway_id = known.id if known is not None else None
    remembered = known.clock_offset_s if known is not None else None
    # A gateway known to need a token, or pinned by a fingerprint, is reached over HTTPS only.
    https_only = bool(gateway.fingerprint) or (
        known is not None and model.firmware_tuple(known.firmware or "0") >= (7,)
    )
    answer: _Answer | None = None
    readings: _Readings | None = None
    try:
        if late is not None:
            raise late
        kept = sessions.pop(gateway.name, None) if sessions is not None else None
        client, info = connect(gateway, deadline, https_only=https_only, kept=kept)
        run.serial = info.serial
        clock = _trusted_clock(clock, client.gateway_now(), info.serial, run)
        now = clock()
        if known is not None and stored is not None and known.serial == info.serial:
            record = gateways.gateway_record(known, info, gateway.name)  # stored as the run ends
        else:  # new to the database, or another gateway under this name: stored at once
            with engine.begin() as conn:
                record = gateways.save_gateway(conn, info, gateway.name, now)
                stored = _Stored.load(conn, record.id)
        gateway_id = record.id
        offset_s = run.clock_offset.total_seconds() if run.clock_offset else None
        answer = _Answer(info, now, record.previous_firmware, offset_s, remembered)
        run.breakers = stored.breakers
        if record.previous_firmware:
            # A firmware update can add, drop or change endpoints: discovery runs again (read_gateway).
            log.info("gateway %s: firmware %s -> %s", info.serial, record.previous_firmware, info.firmware)
        run.watch_token = info.needs_token
        if info.needs_token:
            auth = GatewayAuth(
                store=DatabaseAuthStore(engine, record.id, stored.auth),
                serial=info.serial,
                settings=gateway,
                client=client,
                cloud=cloud,
                clock=clock,
            )
            auth.prepare()
        read = run.reading = read_gateway(client, auth, info, record.discovery, now, run.breakers)
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
        session_used = clock() if auth is not None and auth.session_used else None
        readings = _Readings(record.discovery, snapshot, discovery, now, session_used)
        run.observations = _observations(read)
    except EnvoylogError as exc:
        run.outcome, run.error = "failed", exc
    except SQLAlchemyError as exc:  # storing the gateway, its token or its session
        run.outcome, run.error = (
            "failed",
            DatabaseError(f"cannot store the readings: {describe_db_error(exc)}"),
        )
    except Exception as exc:  # a defect met with one gateway: logged, and the others still run
        log.info("internal error collecting %s", gateway.name, exc_info=True)
        run.outcome, run.error = "failed", EnvoylogError(f"internal error: {type(exc).__name__}: {exc}")
    finally:
        if client is not None:
            if sessions is not None:
                sessions[gateway.name] = client  # its connection serves the next run
            else:
                client.close()
        run.token_told = auth is not None and auth.told_user
    if remembered and run.clock_offset is None and (client is None or client.gateway_now() is None):
        # No answer, so no clock from the gateway: its clock of the last answer times this run too.
        run.clock_offset = timedelta(seconds=remembered)
        clock = _shifted(clock, run.clock_offset)
    run.requests = client.requests_made if client is not None else run.requests
    run.cloud_requests = cloud.requests_made
    end = _End(run_id, gateway_id, started, clock(), answer, readings, claim)
    _finish(engine, run, end, settings.collect)
    run.seconds = time.monotonic() - began
    return run


@dataclass(frozen=True)
class _Stored:
    """What a run reads of its gateway's stored state as it starts: the endpoints' breakers, the auth rows."""

    breakers: Breakers
    auth: credentials.StoredAuth

    @staticmethod
    def load(conn: Connection, gateway_id: int) -> _Stored:
        return _Stored(breakers.load_breakers(conn, gateway_id), credentials.load_auth(conn, gateway_id))


@dataclass(frozen=True)
class _Answer:
    """What the gateway's /info told, stored as the run ends."""

    info: model.GatewayInfo
    at: datetime
    previous_firmware: str | None  # the firmware stored before, when it changed
    clock_offset_s: float | None  # the gateway's clock minus this machine's, where they disagree
    stored_offset_s: float | None  # the one stored before


@dataclass(frozen=True)
class _Readings:
    """What a run read, stored in its last transaction."""

    known: Discovery  # what discovery knew before this run
    snapshot: model.Snapshot
    discovery: Discovery
    now: datetime
    session_used: datetime | None  # the stored gateway session worked: when


@dataclass(frozen=True)
class _End:
    """What the run's last transaction writes besides its readings."""

    run_id: int
    gateway_id: int | None
    started: datetime
    now: datetime
    answer: _Answer | None
    readings: _Readings | None
    claim: Claim | None


def _observations(read: Reading) -> list[Observation]:
    """What a run that stored readings saw of lasting problems: each endpoint it asked, and discovery."""
    if read.discovering:
        # While discovering, the failing endpoints are discovery's problem: one line names them.
        incomplete = read.discovery.firmware is None
        return [Observation("discovery", "", incomplete, "; ".join(read.errors[:3]) if incomplete else None)]
    seen = [
        Observation("endpoint", path, path in read.failed, read.failed.get(path))
        for path in sorted(read.asked)
    ]
    # A skipped endpoint still fails: its breaker is open because it timed out, and it keeps its `since`.
    seen += [Observation("endpoint", path, True) for path in sorted(read.skipped) if path not in read.asked]
    return [*seen, Observation("discovery", "", False)]


def _token_observation(conn: Connection, gateway_id: int, told: bool) -> Observation:
    """Whether the token's renewal is failing: since the first failed cloud attempt after the last token.

    `told`: this run said the failure already (one the user must fix): escalation adds no line of its own.
    """
    stored = credentials.load_token(conn, gateway_id)
    since = stored.cloud_failing_since if stored is not None else None
    return Observation("token", "", since is not None, stored.cloud_error if stored else None, since, told)


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
    return _shifted(clock, offset)


def _shifted(clock: Callable[[], datetime], offset: timedelta) -> Callable[[], datetime]:
    return lambda: clock() + offset


def _duration(delta: timedelta) -> str:
    minutes = round(delta.total_seconds() / 60)
    return f"{minutes} min" if minutes < 120 else f"{minutes / 60:.1f} h"


def _finish(engine: Engine, run: GatewayRun, end: _End, options: CollectSettings) -> None:
    """The run's last transaction: what /info told and the readings, then in a savepoint the run's end.

    The readings come first and are kept whatever happens to the rest: a run log that cannot be written loses
    no reading. Readings that cannot be stored fail the run, which is then logged in a transaction of its own.
    """
    if end.readings is not None:
        try:
            with engine.begin() as conn:
                _save_answer(conn, run, end)
                _store(conn, run, end)
                run.outcome = "partial" if run.endpoint_errors else "ok"
                try:
                    with conn.begin_nested():
                        _end_run(conn, run, end, options)
                except SQLAlchemyError as exc:
                    run.outcome, run.error = (
                        "failed",
                        DatabaseError(f"cannot write the run log: {describe_db_error(exc)}"),
                    )
            return
        except SQLAlchemyError as exc:
            run.outcome, run.error = (
                "failed",
                DatabaseError(f"cannot store the readings: {describe_db_error(exc)}"),
            )
            run.rows_added, run.observations = {}, []
    try:
        with engine.begin() as conn:
            _save_answer(conn, run, end)
            _end_run(conn, run, end, options)
    except SQLAlchemyError as exc:
        if run.error is None:
            run.outcome, run.error = (
                "failed",
                DatabaseError(f"cannot write the run log: {describe_db_error(exc)}"),
            )


def _save_answer(conn: Connection, run: GatewayRun, end: _End) -> None:
    """What /info told: the gateway's row, its clock's offset when that changed, a firmware update."""
    answer = end.answer
    if end.gateway_id is None or answer is None:
        return
    gateways.save_answer(conn, end.gateway_id, answer.info, run.name, answer.at)
    if answer.clock_offset_s != answer.stored_offset_s:
        gateways.save_clock_offset(conn, end.gateway_id, answer.clock_offset_s)
    if answer.previous_firmware:
        previous, current = answer.previous_firmware, answer.info.firmware
        gateways.record_firmware_change(conn, end.gateway_id, previous, current, answer.at)


def _store(conn: Connection, run: GatewayRun, end: _End) -> None:
    """Append the readings that changed; store what discovery found and that the gateway session worked."""
    readings = end.readings
    assert readings is not None and end.gateway_id is not None
    saved = samples.save_snapshot(conn, end.gateway_id, readings.snapshot, readings.now)
    run.rows_added = saved.added
    run.endpoint_errors += saved.notes()
    discovery = readings.discovery
    gateways.save_discovery(conn, end.gateway_id, discovery)
    if discovery.firmware and discovery.firmware != readings.known.firmware:
        gateways.record_event(conn, end.gateway_id, "discovered", discovery.describe(), readings.now)
    if readings.session_used is not None:
        credentials.touch_session(conn, end.gateway_id, readings.session_used)


def _end_run(conn: Connection, run: GatewayRun, end: _End, options: CollectSettings) -> None:
    """The breakers this run changed, whether its outcome is worth a line (escalation), its row in the run
    log, and the claim let go."""
    gateway_id = end.gateway_id
    if gateway_id is not None and run.breakers is not None and run.breakers.changed:
        breakers.save_breakers(conn, gateway_id, run.breakers, end.now)
    if gateway_id is not None:
        observations = run.observations
        if run.watch_token:
            observations = [*observations, _token_observation(conn, gateway_id, run.token_told)]
        known = problems.load(conn, gateway_id) if observations else {}
        token = known.get(("token", ""))
        run.recovered = escalate(
            conn,
            gateway_id,
            run.name,
            run.outcome,
            run.error,
            end.now,
            options.quiet_minutes,
            told=run.token_told or (token is not None and token.said_at is not None),
        )
        run.warnings, run.cleared = escalate_problems(
            conn, gateway_id, run.name, observations, end.now, options, known
        )
    runs.finish_run(
        conn,
        end.run_id,
        gateway_id=gateway_id,
        # Timed by the trusted clock, so that coverage counts the minutes the run really covers.
        started_at=end.started + run.clock_offset if run.clock_offset else None,
        now=end.now,
        outcome=run.outcome,
        requests=run.requests,
        cloud_requests=run.cloud_requests,
        rows_added=sum(run.rows_added.values()),
        error=str(run.error) if run.error else "; ".join(run.endpoint_errors) or None,
    )
    if end.claim is not None:
        claims.release_in(conn, run.name, end.claim.holder)


MAX_NAMED = 5  # failed gateways a run's one line names; `status` lists the rest


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
    """Raise one error that names every failed gateway and carries the worst exit code.

    Failures that are quiet (transient, or said already) keep their exit code but are named only when no
    other failure is: then the error is quiet too.
    """
    failed = [run.error for run in runs if run.error is not None]
    if not failed:
        return
    if len(runs) == 1:
        raise failed[0]
    said = [run for run in runs if run.error is not None and not run.error.quiet] or [
        run for run in runs if run.error is not None
    ]
    named = "; ".join(f"gateway {run.name}: {run.error}" for run in said[:MAX_NAMED])
    if len(said) > MAX_NAMED:
        named += f"; and {len(said) - MAX_NAMED} more gateways (`envoylog status` lists them)"
    error = RunsFailed(named, max(e.status for e in failed))
    error.quiet = all(e.quiet for e in failed)
    raise error
