"""A fleet of simulated gateways in one process: a port each, one cloud with many accounts, one clock.

An installer's fleet in a box, cheap enough to run a thousand gateways at a real gateway's pace on a small
machine: one thread accepts on every port (web.Acceptor), each connection is served in a thread of its own,
and the gateways share what does not change between them (the TLS certificate, the token issuer, a few site
physics that each gateway scales to a site of its own, see plant.ScaledPlant).
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
import os
import re
import shutil
import tempfile
import threading
from collections import Counter, deque
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from types import TracebackType
from zoneinfo import ZoneInfo

from envoylog.simulator.clock import SimClock
from envoylog.simulator.cloud import LOGIN_PATH, Account, Cloud, service_of
from envoylog.simulator.endpoints import GatewayModel
from envoylog.simulator.faults import EndpointFault, Faults
from envoylog.simulator.gateway import Gateway
from envoylog.simulator.latency import CloudPace, Latency, OutageWindow, Pace, as_latency
from envoylog.simulator.plant import Plant, ScaledPlant, plant_of, serial_base
from envoylog.simulator.profiles import Profile, get_profile
from envoylog.simulator.sky import hash_unit
from envoylog.simulator.tls import Certificates, ensure_certificates
from envoylog.simulator.tokens import TokenIssuer, load_or_create_signing_key
from envoylog.simulator.web import Acceptor, AppServer, LoggedRequest, Request, Response

_SIGNING_KEY_FILE = "jwt-key.pem"
_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")  # a TOML key that needs no quotes
_KEPT_PER_GATEWAY = 64  # each gateway's request log keeps its newest entries only
_KEPT_CLOUD = 100_000
_DEFAULT_SITES = 4  # distinct site physics a fleet shares out, unless told otherwise
_SMALLEST_SCALE = 0.75  # each gateway's site is this much to all of its shared site's size


@dataclass(frozen=True)
class ConfigGateway:
    """One `[gateways.<name>]` table of an envoylog config file."""

    name: str
    host: str
    username: str
    password: str
    serial: str | None = None


def config_toml(
    gateways: Iterable[ConfigGateway],
    *,
    enlighten_url: str,
    entrez_url: str,
    timezone: str,
    db_url: str | None = None,
) -> str:
    """An envoylog config file (TOML) naming `gateways`, with the cloud they log into."""

    def value(text: str) -> str:
        return json.dumps(text)  # a JSON string is a TOML basic string

    lines = ["# Written by `envoylog simulate`: the simulated gateways, and the cloud they log into."]
    if db_url is not None:
        lines.append(f"db = {value(db_url)}")
    lines += [
        f"timezone = {value(timezone)}",
        f"enlighten_url = {value(enlighten_url)}",
        f"entrez_url = {value(entrez_url)}",
    ]
    for gateway in gateways:
        key = gateway.name if _BARE_KEY.fullmatch(gateway.name) else value(gateway.name)
        lines += ["", f"[gateways.{key}]", f"host = {value(gateway.host)}"]
        if gateway.serial is not None:
            lines.append(f"serial = {value(gateway.serial)}")
        lines += [f"username = {value(gateway.username)}", f"password = {value(gateway.password)}"]
    return "\n".join(lines) + "\n"


def write_private_text(path: Path, text: str) -> Path:
    """Write `text` to `path`, readable by the owner only (a config file holds passwords)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        os.fchmod(handle.fileno(), 0o600)
        handle.write(text)
    return path


def allow_open_files(wanted: int) -> None:
    """Raise this process's soft limit on open files towards `wanted`, as far as the hard limit allows."""
    try:
        import resource
    except ImportError:  # not a Unix: nothing to raise
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= wanted:
        return
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


class FleetGateway:
    """One gateway of a fleet: its site, its HTTP side, its faults, its pace and its port."""

    def __init__(
        self,
        index: int,
        name: str,
        model: GatewayModel,
        account: Account,
        faults: Faults,
        latency: Latency,
    ) -> None:
        self.index = index
        self.name = name
        self.model = model
        self.serial = model.profile.serial
        self.account = account
        self.faults = faults
        self.latency = latency
        self.gateway: Gateway | None = None
        self.pace: Pace | None = None
        self.server: AppServer | None = None
        self.requests = 0  # answered or reset, since the start or the last clear_request_log()
        self.log: deque[LoggedRequest] = deque(maxlen=_KEPT_PER_GATEWAY)
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        """The gateway's base URL."""
        if self.server is None:
            raise RuntimeError("the fleet is not running: call start() first")
        scheme = "https" if self.model.profile.https else "http"
        return f"{scheme}://{self.server.server_name}:{self.server.port}"

    def set_endpoint_fault(self, path: str, fault: EndpointFault | None) -> None:
        """Make one endpoint of this gateway misbehave, or heal it with None."""
        self.faults.set_endpoint(path, fault)

    def expire_sessions(self) -> int:
        """End this gateway's sessions (as a reboot does); returns how many there were."""
        return self.gateway.expire_sessions() if self.gateway is not None else 0

    def outage_window(self, day: date) -> OutageWindow | None:
        """When this gateway's nightly outage falls on the night of local `day`; None if it has none."""
        outage = self.latency.outage
        timezone = ZoneInfo(self.model.profile.timezone)
        return None if outage is None else outage.window(day, timezone, self.model.seed)

    def request_log(self) -> list[LoggedRequest]:
        """This gateway's newest requests, oldest first (at most 64)."""
        with self._lock:
            return list(self.log)

    def serve(self, request: Request) -> Response:
        """Answer one request at this gateway's pace."""
        gateway = self.gateway
        if gateway is None:
            return Response.reset()
        pace = self.pace
        response = gateway.handle(request) if pace is None else pace.serve(request, gateway.handle)
        entry = LoggedRequest(datetime.now(UTC), "gateway", request.method, request.target, response.status)
        with self._lock:
            self.requests += 1
            self.log.append(entry)
        return response

    def clear_request_log(self) -> None:
        """Forget this gateway's requests and their count."""
        with self._lock:
            self.requests = 0
            self.log.clear()


class Fleet:
    """`count` simulated gateways and one Enphase cloud on loopback; start() or use as a context manager.

    Gateway i belongs to account i % `accounts`. Each gateway has a serial, a port, sessions, faults and a
    site of its own (sharing `sites` site physics between them). The clock is shared: `speed` simulated
    seconds pass per real second from `start`.
    """

    def __init__(
        self,
        count: int,
        profile: str | Profile = "metered",
        *,
        latency: Latency | str = "none",
        accounts: int = 1,
        start: datetime | None = None,
        speed: float = 1.0,
        seed: int = 1,
        sites: int | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        cloud_port: int = 0,
        state_dir: Path | None = None,
        faults: Faults | None = None,
        cloud_token_user: str = "owner",  # noqa: S107 - a role, not a secret
    ) -> None:
        if count < 1:
            raise ValueError("a fleet has at least one gateway")
        if not 1 <= accounts <= count:
            raise ValueError("a fleet has between one account and one account per gateway")
        if sites is not None and sites < 1:
            raise ValueError("a fleet shares at least one site")
        if port and not 0 < port + count - 1 <= 65535:
            raise ValueError(f"ports {port} to {port + count - 1} are not all valid ports")
        self.profile = get_profile(profile) if isinstance(profile, str) else profile
        self.clock = SimClock(start, speed)
        self.latency = as_latency(latency)
        self.seed = seed
        self.host = host
        self._ports = (port, cloud_port)
        self._requested_state_dir = state_dir
        self._cloud_token_user = cloud_token_user
        initial = faults if faults is not None else Faults()
        # The cloud's switches (mfa, wrong password, cloud down) and its paths' faults are the cloud's; the
        # rest is per gateway.
        self.cloud_faults = Faults(
            mfa=initial.mfa,
            wrong_password=initial.wrong_password,
            cloud_down=initial.cloud_down,
            cloud_paths=copy.deepcopy(initial.cloud_paths),
        )
        self.accounts = [
            Account(f"owner{number + 1:03d}@example.com", f"fleet-password-{number + 1}")
            for number in range(accounts)
        ]
        self._plants: dict[int, Plant] = {}
        self.gateways = self._make_gateways(count, sites or min(count, _DEFAULT_SITES), initial)
        owned: dict[str, set[str]] = {account.username: set() for account in self.accounts}
        for unit in self.gateways:
            owned[unit.account.username].add(unit.serial)
        self.accounts = [dataclasses.replace(a, serials=frozenset(owned[a.username])) for a in self.accounts]
        for unit in self.gateways:
            unit.account = self.accounts[unit.index % accounts]
        self._by_name = {unit.name: unit for unit in self.gateways}
        self._cloud: Cloud | None = None
        self._cloud_server: AppServer | None = None
        self._cloud_log: deque[LoggedRequest] = deque(maxlen=_KEPT_CLOUD)
        self._cloud_lock = threading.Lock()
        self._state_dir: Path | None = None
        self._certificates: Certificates | None = None
        self._issuer: TokenIssuer | None = None
        self._acceptor: Acceptor | None = None
        self._stopping = threading.Event()

    def _make_gateways(self, count: int, sites: int, initial: Faults) -> list[FleetGateway]:
        base = self.profile
        width = max(4, len(str(count - 1)))
        digits = base.serial[-6:]
        number = int(digits) if digits.isdigit() else 0
        # Inverter serials run on from gateway to gateway, as for sites an installer stocked from one batch.
        prefix, first_inverter = serial_base(self.seed, 100, base.installed_at, base.inverter_count * count)
        gateways = []
        for index in range(count):
            serial = f"{base.serial[:-6]}{(number + index) % 1_000_000:06d}"
            profile = dataclasses.replace(base, serial=serial)
            site = index % sites
            plant = self._plants.get(site)
            if plant is None:
                plant = self._plants[site] = plant_of(profile, self.seed + site)
            scale = _SMALLEST_SCALE + (1.0 - _SMALLEST_SCALE) * float(hash_unit(self.seed, 300, index))
            inverters = [
                f"{prefix}{(first_inverter + base.inverter_count * index + k) % 1_000_000:06d}"
                for k in range(base.inverter_count)
            ]
            model = GatewayModel(
                profile, seed=self.seed + 7919 * index, plant=ScaledPlant(plant, scale, inverters)
            )
            account = self.accounts[index % len(self.accounts)]
            faults = Faults(endpoints=dict(initial.endpoints), quirks=copy.copy(initial.quirks))
            name = f"gw{index:0{width}d}"
            gateways.append(FleetGateway(index, name, model, account, faults, self.latency))
        return gateways

    # --- life cycle -------------------------------------------------------------------------------

    def start(self) -> Fleet:
        """Bind every gateway and the cloud, and serve them from background threads; returns self."""
        if self._acceptor is not None:
            return self
        if self._requested_state_dir is None:
            self._state_dir = Path(tempfile.mkdtemp(prefix="envoylog-fleet-"))
        else:
            self._state_dir = self._requested_state_dir
            self._state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._stopping = threading.Event()
        # A socket per gateway, and a connection or two each while a collector polls them.
        allow_open_files(3 * len(self.gateways) + 256)
        try:
            self._certificates = ensure_certificates(self._state_dir)
            if self._issuer is None:
                self._issuer = TokenIssuer(load_or_create_signing_key(self._state_dir / _SIGNING_KEY_FILE))
            self._bind(self._certificates, self._issuer)
        except BaseException:
            self._close_servers()
            self._remove_private_state()
            raise
        self._warm()
        if self.profile.boot_zero_s > 0:
            # Starting boots the gateways: firmware 3.x then reads all-zero production a while.
            booted = self.clock.now() + timedelta(seconds=self.profile.boot_zero_s)
            for unit in self.gateways:
                unit.faults.quirks.booting_until = booted
        servers = [unit.server for unit in self.gateways if unit.server is not None]
        assert self._cloud_server is not None
        self._acceptor = Acceptor([*servers, self._cloud_server], self._stopping, "envoylog-fleet-accept")
        self._acceptor.start()
        return self

    def stop(self) -> None:
        """Stop serving, end open connections and waiting requests; a private state directory is removed."""
        if self._acceptor is None:
            return
        self._stopping.set()
        self._acceptor.join()
        self._acceptor = None
        self._close_servers()
        self._remove_private_state()

    @property
    def running(self) -> bool:
        """Whether the fleet is serving."""
        return self._acceptor is not None

    def __enter__(self) -> Fleet:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def _bind(self, certificates: Certificates, issuer: TokenIssuer) -> None:
        gateway_tls = certificates.gateway_context() if self.profile.https else None  # one for all ports
        paced = self.latency.paced
        for unit in self.gateways:
            unit.gateway = Gateway(unit.model, self.clock, unit.faults, issuer)
            unit.pace = (
                Pace(
                    self.latency,
                    clock=self.clock,
                    timezone=self.profile.timezone,
                    seed=unit.model.seed,
                    stopping=self._stopping,
                    reboot=unit.gateway.expire_sessions,
                )
                if paced
                else None
            )
            port = self._ports[0] + unit.index if self._ports[0] else 0
            unit.server = AppServer((self.host, port), unit.serve, self._stopping, gateway_tls)
        cloud = Cloud(
            self.clock, self.cloud_faults, issuer, accounts=self.accounts, enphase_user=self._cloud_token_user
        )
        cloud_pace = CloudPace(self.latency, seed=self.seed, stopping=self._stopping) if paced else None

        def serve_cloud(request: Request) -> Response:
            response = (
                cloud.handle(request) if cloud_pace is None else cloud_pace.serve(request, cloud.handle)
            )
            entry = LoggedRequest(
                datetime.now(UTC),
                service_of(request.path),
                request.method,
                request.target,
                response.status,
                cloud.account_of(request),
            )
            with self._cloud_lock:
                self._cloud_log.append(entry)
            return response

        self._cloud = cloud
        self._cloud_server = AppServer(
            (self.host, self._ports[1]), serve_cloud, self._stopping, certificates.cloud_context()
        )

    def _warm(self) -> None:
        """Work out each shared site up to now, so that the first requests do not wait for a year of sun."""
        now = self.clock.now().timestamp()
        for plant in self._plants.values():
            plant.lifetime(now)
            plant.power(now)

    def _close_servers(self) -> None:
        self._stopping.set()
        servers = [unit.server for unit in self.gateways] + [self._cloud_server]
        for server in servers:
            if server is not None:
                server.close_connections()
                server.server_close()
        for unit in self.gateways:
            unit.server = None
        self._cloud_server = None

    def _remove_private_state(self) -> None:
        if self._requested_state_dir is None and self._state_dir is not None:
            shutil.rmtree(self._state_dir, ignore_errors=True)
        self._state_dir = None
        self._certificates = None

    # --- where to find it -------------------------------------------------------------------------

    def gateway(self, key: int | str) -> FleetGateway:
        """A gateway by its index or its name."""
        return self.gateways[key] if isinstance(key, int) else self._by_name[key]

    @property
    def gateway_urls(self) -> list[str]:
        """Every gateway's base URL, in order."""
        return [unit.url for unit in self.gateways]

    @property
    def serials(self) -> list[str]:
        """Every gateway's serial, in order."""
        return [unit.serial for unit in self.gateways]

    @property
    def enlighten_url(self) -> str:
        """Base URL of the simulated Enlighten login service."""
        if self._cloud_server is None:
            raise RuntimeError("the fleet is not running: call start() first")
        return f"https://{self.host}:{self._cloud_server.port}"

    @property
    def entrez_url(self) -> str:
        """Base URL of the simulated Entrez token service (the same server as Enlighten)."""
        return self.enlighten_url

    @property
    def ca_file(self) -> Path:
        """PEM file of the CA that signed the cloud's certificate (for REQUESTS_CA_BUNDLE)."""
        if self._certificates is None:
            raise RuntimeError("the fleet is not running: call start() first")
        return self._certificates.ca_cert

    @property
    def state_dir(self) -> Path:
        """Where the keys and certificates are kept while running."""
        if self._state_dir is None:
            raise RuntimeError("the fleet is not running: call start() first")
        return self._state_dir

    def environment(self) -> dict[str, str]:
        """What envoylog needs in its environment beside the config file: trust in the cloud's CA."""
        return {"REQUESTS_CA_BUNDLE": str(self.ca_file)}

    def config_text(self, *, db_url: str | None = None) -> str:
        """An envoylog config file naming every gateway with its account's credentials."""
        return config_toml(
            (
                ConfigGateway(unit.name, unit.url, unit.account.username, unit.account.password, unit.serial)
                for unit in self.gateways
            ),
            enlighten_url=self.enlighten_url,
            entrez_url=self.entrez_url,
            timezone=self.profile.timezone,
            db_url=db_url,
        )

    def write_config(self, path: Path, *, db_url: str | None = None) -> Path:
        """Write config_text() to `path`, readable by the owner only (it holds passwords)."""
        return write_private_text(path, self.config_text(db_url=db_url))

    # --- counting, faults, tokens -----------------------------------------------------------------

    def requests_by_gateway(self) -> dict[str, int]:
        """Requests each gateway was sent (answered or reset), by gateway name."""
        return {unit.name: unit.requests for unit in self.gateways}

    def cloud_log(self) -> list[LoggedRequest]:
        """The requests the cloud answered, oldest first (the newest 100,000)."""
        with self._cloud_lock:
            return list(self._cloud_log)

    def logins_by_account(self, path: str = LOGIN_PATH) -> dict[str, int]:
        """Logins (successful or not) per account, every account listed: Enlighten's, or with `path`
        WEB_LOGIN_PATH ("/login") Entrez's web logins."""
        counts = Counter(
            entry.account
            for entry in self.cloud_log()
            if entry.path.split("?")[0] == path and entry.account is not None
        )
        return {account.username: counts[account.username] for account in self.accounts}

    def clear_request_log(self) -> None:
        """Forget the requests so far, of the gateways and the cloud."""
        for unit in self.gateways:
            unit.clear_request_log()
        with self._cloud_lock:
            self._cloud_log.clear()

    def expire_sessions(self) -> int:
        """End every gateway's sessions; returns how many there were."""
        return sum(unit.expire_sessions() for unit in self.gateways)

    def revoke_tokens(self) -> None:
        """Revoke every token issued so far."""
        self._running_issuer().revoke_all(self.clock.now())

    def issue_token(
        self, gateway: int | str, enphase_user: str = "owner", lifetime: timedelta | None = None
    ) -> str:
        """A token as Entrez would issue it now for one gateway and its account."""
        unit = self.gateway(gateway)
        return self._running_issuer().issue(
            serial=unit.serial,
            username=unit.account.username,
            now=self.clock.now(),
            enphase_user=enphase_user,
            lifetime=lifetime,
        )

    def _running_issuer(self) -> TokenIssuer:
        if self._issuer is None:
            raise RuntimeError("the fleet is not running: call start() first")
        return self._issuer
