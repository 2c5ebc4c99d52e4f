"""The simulator: a gateway and the Enphase cloud on loopback, their shared state, and the admin endpoints."""

from __future__ import annotations

import copy
import json
import os
import shutil
import signal
import tempfile
import threading
import time
from collections.abc import Mapping
from dataclasses import fields
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from envoylog.simulator.admin import (
    faults_to_json,
    is_number,
    iso,
    json_object,
    logged_to_json,
    merge_faults,
    parse_time,
)
from envoylog.simulator.clock import SimClock
from envoylog.simulator.cloud import Account, Cloud, service_of
from envoylog.simulator.endpoints import GatewayModel
from envoylog.simulator.faults import EndpointFault, Faults, Quirks
from envoylog.simulator.gateway import Gateway, SiteModel, SiteProfile
from envoylog.simulator.latency import CloudPace, Latency, OutageWindow, Pace, as_latency
from envoylog.simulator.profiles import Profile, get_profile
from envoylog.simulator.tls import Certificates, certificate_sha256, ensure_certificates
from envoylog.simulator.tokens import TokenIssuer, load_or_create_signing_key
from envoylog.simulator.web import AppServer, LoggedRequest, Request, Response, serve_in_thread

ADMIN_PREFIX = "/_sim/"
_CLOCK_FILE = "clock.json"
_SIGNING_KEY_FILE = "jwt-key.pem"
_CLOCK_SAVE_EVERY_S = 5.0  # real seconds between saves of the clock's high-water mark while serving
_MAX_LOGGED = 100_000  # the request log keeps the newest entries only, so a long run stays bounded


class Simulator:
    """A simulated gateway and Enphase cloud served on loopback; start() or use as a context manager."""

    def __init__(
        self,
        profile: str | Profile = "metered",
        *,
        speed: float = 1.0,
        start: datetime | None = None,
        seed: int = 1,
        host: str = "127.0.0.1",
        gateway_port: int = 0,
        cloud_port: int = 0,
        state_dir: Path | None = None,
        faults: Faults | None = None,
        username: str = "owner@example.com",
        password: str = "demo-password",  # noqa: S107 - the simulated account's, printed for users to copy
        cloud_token_user: str = "owner",  # noqa: S107 - a role, not a secret
        model: SiteModel | None = None,
        latency: Latency | str = "none",
    ) -> None:
        # A ready model (such as a CapturedModel replaying a real gateway) takes the place of the profile's.
        if model is None:
            chosen = get_profile(profile) if isinstance(profile, str) else profile
            model = GatewayModel(chosen, seed=seed)
        self.model: SiteModel = model
        self.profile: SiteProfile = model.profile
        self.serial = self.profile.serial
        self.clock = SimClock(start, speed)
        self.latency = as_latency(latency)
        self._seed = seed
        self._timezone = self.profile.timezone if isinstance(self.profile, Profile) else "UTC"
        self._start_given = start is not None
        self.rewound_from: datetime | None = None  # the saved clock an explicit, earlier `start` overrode
        self._faults = faults if faults is not None else Faults()
        self.username = username
        self.password = password
        self.host = host
        self._ports = (gateway_port, cloud_port)
        self._requested_state_dir = state_dir
        self._cloud_token_user = cloud_token_user
        self._faults_lock = threading.RLock()
        self._log: list[LoggedRequest] = []
        self._log_lock = threading.Lock()
        self._clock_lock = threading.Lock()
        self._last_clock_save = 0.0
        self._state_dir: Path | None = None
        self._certificates: Certificates | None = None
        self._issuer: TokenIssuer | None = None
        self._gateway: Gateway | None = None
        self._pace: Pace | None = None
        self._servers: list[AppServer] = []
        self._threads: list[threading.Thread] = []
        self._stopping = threading.Event()

    # --- life cycle -------------------------------------------------------------------------------

    def start(self) -> Simulator:
        """Bind the gateway and cloud servers and serve in background threads; returns self."""
        if self._servers:
            return self
        if self._requested_state_dir is None:
            self._state_dir = Path(tempfile.mkdtemp(prefix="envoylog-simulator-"))
        else:
            self._state_dir = self._requested_state_dir
            self._state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        try:
            self._prepare_state(self._state_dir)
            self._bind()
        except BaseException:
            self._remove_private_state()
            raise
        self._boot()
        return self

    def _boot(self) -> None:
        """Starting the simulator boots the gateway: firmware 3.x then reads all-zero production a while."""
        profile = self.profile
        if isinstance(profile, Profile) and profile.boot_zero_s > 0:
            with self._faults_lock:
                self.faults.quirks.booting_until = self.clock.now() + timedelta(seconds=profile.boot_zero_s)

    def stop(self) -> None:
        """Stop serving, end open connections, save the clock; a private state directory is removed."""
        if not self._servers:
            return
        self._stopping.set()
        self._close_servers()
        for thread in self._threads:
            thread.join(timeout=5)
        self._threads = []
        self._save_clock(force=True)
        self._remove_private_state()

    @property
    def running(self) -> bool:
        """Whether the servers are up."""
        return bool(self._servers)

    def __enter__(self) -> Simulator:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def _prepare_state(self, state_dir: Path) -> None:
        self._certificates = ensure_certificates(state_dir)
        if self._issuer is None:
            self._issuer = TokenIssuer(load_or_create_signing_key(state_dir / _SIGNING_KEY_FILE))
        saved = self._load_clock(state_dir)
        if saved is not None and saved > self.clock.now():
            if self._start_given:
                # The user asked for this time: it wins, and it becomes the clock's new high-water mark.
                self.rewound_from = saved
                (state_dir / _CLOCK_FILE).unlink(missing_ok=True)
            else:
                # Lifetime counters are a function of simulated time: a restart must not take them back.
                self.clock.set(saved)
        self._gateway = Gateway(self.model, self.clock, self.faults, self._issuer)

    def _bind(self) -> None:
        assert self._certificates is not None and self._issuer is not None
        self._stopping = threading.Event()
        cloud = Cloud(
            self.clock,
            self.faults,
            self._issuer,
            accounts=[Account(self.username, self.password, frozenset([self.serial]))],
            enphase_user=self._cloud_token_user,
        )
        gateway_tls = self._certificates.gateway_context() if self.profile.https else None
        cloud_tls = self._certificates.cloud_context()
        self._pace = None
        cloud_pace = None
        if self.latency.paced:
            self._pace = Pace(
                self.latency,
                clock=self.clock,
                timezone=self._timezone,
                seed=self._seed,
                stopping=self._stopping,
                reboot=self._running_gateway().expire_sessions,
            )
            cloud_pace = CloudPace(self.latency, seed=self._seed, stopping=self._stopping)

        def serve_cloud(request: Request) -> Response:
            response = (
                cloud.handle(request) if cloud_pace is None else cloud_pace.serve(request, cloud.handle)
            )
            self._record(service_of(request.path), request, response, cloud.account_of(request))
            return response

        gateway_server = AppServer(
            (self.host, self._ports[0]), self._serve_gateway, self._stopping, gateway_tls
        )
        try:
            cloud_server = AppServer((self.host, self._ports[1]), serve_cloud, self._stopping, cloud_tls)
        except BaseException:
            gateway_server.server_close()
            raise
        self._servers = [gateway_server, cloud_server]
        self._threads = [
            serve_in_thread(gateway_server, "envoylog-simulator-gateway"),
            serve_in_thread(cloud_server, "envoylog-simulator-cloud"),
        ]

    def _close_servers(self) -> None:
        self._stopping.set()
        for server in self._servers:
            server.shutdown()
            server.close_connections()
            server.server_close()
        self._servers = []

    def _remove_private_state(self) -> None:
        if self._requested_state_dir is None and self._state_dir is not None:
            shutil.rmtree(self._state_dir, ignore_errors=True)
            self._state_dir = None
            self._certificates = None

    # --- where to find it -------------------------------------------------------------------------

    @property
    def gateway_url(self) -> str:
        """The gateway's base URL: https, or http for firmware before 7."""
        return f"{'https' if self.profile.https else 'http'}://{self.host}:{self._server(0).port}"

    @property
    def enlighten_url(self) -> str:
        """Base URL of the simulated Enlighten login service."""
        return f"https://{self.host}:{self._server(1).port}"

    @property
    def entrez_url(self) -> str:
        """Base URL of the simulated Entrez token service (the same server as Enlighten)."""
        return self.enlighten_url

    @property
    def ca_file(self) -> Path:
        """PEM file of the CA that signed the cloud's certificate (for REQUESTS_CA_BUNDLE)."""
        return self._certs().ca_cert

    @property
    def gateway_cert_file(self) -> Path:
        """PEM file of the gateway's self-signed certificate."""
        return self._certs().gateway_cert

    @property
    def gateway_cert_sha256(self) -> str:
        """SHA-256 fingerprint of the gateway's certificate (lower-case hex), for pinning."""
        return certificate_sha256(self._certs().gateway_cert)

    @property
    def state_dir(self) -> Path:
        """Where the keys, certificates and clock are kept while running."""
        if self._state_dir is None:
            raise RuntimeError("the simulator is not running: call start() first")
        return self._state_dir

    def environment(self) -> dict[str, str]:
        """The environment variables that point envoylog at this simulator."""
        return {
            "ENVOYLOG_HOST": self.gateway_url,
            "ENVOYLOG_USERNAME": self.username,
            "ENVOYLOG_PASSWORD": self.password,
            "ENVOYLOG_ENLIGHTEN_URL": self.enlighten_url,
            "ENVOYLOG_ENTREZ_URL": self.entrez_url,
            "REQUESTS_CA_BUNDLE": str(self.ca_file),
            "ENVOYLOG_SERIAL": self.serial,
        }

    def _server(self, index: int) -> AppServer:
        if not self._servers:
            raise RuntimeError("the simulator is not running: call start() first")
        return self._servers[index]

    def _certs(self) -> Certificates:
        if self._certificates is None:
            raise RuntimeError("the simulator is not running: call start() first")
        return self._certificates

    def outage_window(self, day: date) -> OutageWindow | None:
        """When the gateway's nightly outage falls on the night of local `day`; None if it has none."""
        outage = self.latency.outage
        return None if outage is None else outage.window(day, ZoneInfo(self._timezone), self._seed)

    # --- faults, sessions, tokens -----------------------------------------------------------------

    @property
    def faults(self) -> Faults:
        """The live faults: a change to this object takes effect with the next request."""
        return self._faults

    @faults.setter
    def faults(self, faults: Faults) -> None:
        # Copied into the live object, which the gateway, the cloud and the model hold on to.
        if faults is self._faults:
            return
        new = copy.deepcopy(faults)
        with self._faults_lock:
            self.clear_faults()
            self.set_faults(
                mfa=new.mfa,
                wrong_password=new.wrong_password,
                cloud_down=new.cloud_down,
                endpoints=new.endpoints,
                quirks=new.quirks,
                cloud=new.cloud_paths,
            )

    def set_faults(
        self,
        *,
        mfa: bool | None = None,
        wrong_password: bool | None = None,
        cloud_down: bool | None = None,
        endpoints: Mapping[str, EndpointFault | None] | None = None,
        quirks: Quirks | None = None,
        cloud: Mapping[str, EndpointFault | None] | None = None,
    ) -> None:
        """Change some faults now; an endpoint or cloud path mapped to None is healed, `quirks` replaces all
        quirks."""
        with self._faults_lock:
            if mfa is not None:
                self.faults.mfa = mfa
            if wrong_password is not None:
                self.faults.wrong_password = wrong_password
            if cloud_down is not None:
                self.faults.cloud_down = cloud_down
            for path, fault in (endpoints or {}).items():
                self._set_endpoint(path, fault)
            for path, fault in (cloud or {}).items():
                self.faults.set_cloud(path, fault)
            if quirks is not None:
                # Copied field by field: the model holds on to the live Quirks object.
                for item in fields(Quirks):
                    setattr(self.faults.quirks, item.name, getattr(quirks, item.name))

    def set_endpoint_fault(self, path: str, fault: EndpointFault | None) -> None:
        """Make one gateway endpoint (a path without query) misbehave, or heal it with None."""
        with self._faults_lock:
            self._set_endpoint(path, fault)

    def clear_faults(self) -> None:
        """Back to a healthy gateway and cloud."""
        with self._faults_lock:
            self.faults.mfa = self.faults.wrong_password = self.faults.cloud_down = False
            self.faults.endpoints.clear()
            self.faults.cloud_paths.clear()
            for item in fields(Quirks):
                setattr(self.faults.quirks, item.name, getattr(Quirks(), item.name))

    def _set_endpoint(self, path: str, fault: EndpointFault | None) -> None:
        self.faults.set_endpoint(path, fault)

    def expire_sessions(self) -> int:
        """End every gateway session, as a reboot does; returns how many there were."""
        return self._running_gateway().expire_sessions()

    def revoke_tokens(self) -> None:
        """Revoke every token issued so far; the gateway refuses them and their sessions from now on."""
        self._running_issuer().revoke_all(self.clock.now())

    def issue_token(
        self,
        enphase_user: str = "owner",
        lifetime: timedelta | None = None,
        serial: str | None = None,
        username: str | None = None,
    ) -> str:
        """A token as Entrez would issue it now (by default for this gateway and account)."""
        return self._running_issuer().issue(
            serial=serial or self.serial,
            username=username or self.username,
            now=self.clock.now(),
            enphase_user=enphase_user,
            lifetime=lifetime,
        )

    def _running_gateway(self) -> Gateway:
        if self._gateway is None:
            raise RuntimeError("the simulator is not running: call start() first")
        return self._gateway

    def _running_issuer(self) -> TokenIssuer:
        if self._issuer is None:
            raise RuntimeError("the simulator is not running: call start() first")
        return self._issuer

    # --- request log ------------------------------------------------------------------------------

    def request_log(self) -> list[LoggedRequest]:
        """The requests answered so far, oldest first (admin requests are not included)."""
        with self._log_lock:
            return list(self._log)

    def clear_request_log(self) -> None:
        """Forget the requests answered so far."""
        with self._log_lock:
            self._log.clear()

    def gateway_connections(self) -> int:
        """The connections (on HTTPS, the TLS handshakes) the gateway accepted since it started."""
        return self._server(0).connections_accepted

    def _record(self, service: str, request: Request, response: Response, account: str | None = None) -> None:
        entry = LoggedRequest(
            datetime.now(UTC), service, request.method, request.target, response.status, account
        )
        with self._log_lock:
            self._log.append(entry)
            if len(self._log) > _MAX_LOGGED:
                del self._log[: len(self._log) - _MAX_LOGGED]
        self._save_clock()

    # --- serving ----------------------------------------------------------------------------------

    def _serve_gateway(self, request: Request) -> Response:
        if request.path.startswith(ADMIN_PREFIX) or request.path == ADMIN_PREFIX.rstrip("/"):
            return self._admin(request)
        gateway = self._running_gateway()
        pace = self._pace
        response = gateway.handle(request) if pace is None else pace.serve(request, gateway.handle)
        self._record("gateway", request, response)
        return response

    def _admin(self, request: Request) -> Response:
        route = (request.method, request.path.removeprefix(ADMIN_PREFIX.rstrip("/")))
        try:
            return self._admin_route(route, request)
        except ValueError as exc:
            return Response.json(400, {"error": str(exc)})

    def _admin_route(self, route: tuple[str, str], request: Request) -> Response:
        if route == ("GET", "/faults"):
            with self._faults_lock:
                return Response.json(200, faults_to_json(self.faults))
        if route == ("POST", "/faults"):
            with self._faults_lock:
                merge_faults(self.faults, json_object(request), self.clock.now())
                return Response.json(200, faults_to_json(self.faults))
        if route == ("POST", "/faults/clear"):
            self.clear_faults()
            with self._faults_lock:
                return Response.json(200, faults_to_json(self.faults))
        if route == ("POST", "/expire-sessions"):
            return Response.json(200, {"expired": self.expire_sessions()})
        if route == ("POST", "/revoke-tokens"):
            self.revoke_tokens()
            return Response.json(200, {"revoked": True})
        if route == ("GET", "/requests"):
            return Response.json(200, [logged_to_json(entry) for entry in self.request_log()])
        if route == ("POST", "/requests/clear"):
            self.clear_request_log()
            return Response.json(200, [])
        if route == ("GET", "/clock"):
            return Response.json(200, self._clock_json())
        if route == ("POST", "/clock"):
            self._set_clock(json_object(request))
            return Response.json(200, self._clock_json())
        if route == ("POST", "/token"):
            return self._admin_token(json_object(request))
        return Response.json(404, {"error": f"no admin endpoint {route[0]} {request.path}"})

    def _set_clock(self, data: dict[str, Any]) -> None:
        unknown = set(data) - {"now", "speed", "advance_seconds"}
        if unknown:
            raise ValueError(f"unknown clock field(s): {', '.join(sorted(unknown))}")
        speed = data.get("speed")
        if speed is not None and (not is_number(speed) or speed <= 0):
            raise ValueError("speed must be a positive number")
        when = parse_time(data["now"], self.clock.now()) if data.get("now") is not None else self.clock.now()
        advance = data.get("advance_seconds", 0)
        if not is_number(advance):
            raise ValueError("advance_seconds must be a number")
        self.clock.set(when + timedelta(seconds=advance), None if speed is None else float(speed))
        self._save_clock(force=True)

    def _clock_json(self) -> dict[str, Any]:
        return {"now": iso(self.clock.now()), "speed": self.clock.speed}

    def _admin_token(self, data: dict[str, Any]) -> Response:
        unknown = set(data) - {"enphase_user", "lifetime_seconds", "serial"}
        if unknown:
            raise ValueError(f"unknown token field(s): {', '.join(sorted(unknown))}")
        seconds = data.get("lifetime_seconds")
        if seconds is not None and not is_number(seconds):
            raise ValueError("lifetime_seconds must be a number")
        token = self.issue_token(
            enphase_user=str(data.get("enphase_user", "owner")),
            lifetime=None if seconds is None else timedelta(seconds=seconds),
            serial=None if data.get("serial") is None else str(data["serial"]),
        )
        return Response.text(200, token)

    # --- the clock's high-water mark ----------------------------------------------------------------

    @staticmethod
    def _load_clock(state_dir: Path) -> datetime | None:
        path = state_dir / _CLOCK_FILE
        try:
            saved = datetime.fromisoformat(json.loads(path.read_text())["high_water"])
        except (OSError, ValueError, KeyError, TypeError):
            return None
        return saved if saved.tzinfo is not None else None

    def _save_clock(self, *, force: bool = False) -> None:
        state_dir = self._state_dir
        if state_dir is None:
            return
        with self._clock_lock:
            if not force and time.monotonic() - self._last_clock_save < _CLOCK_SAVE_EVERY_S:
                return
            self._last_clock_save = time.monotonic()
            path = state_dir / _CLOCK_FILE
            saved = self._load_clock(state_dir)
            high_water = max(self.clock.now(), saved) if saved is not None else self.clock.now()
            temporary = path.with_suffix(".tmp")
            try:
                temporary.write_text(json.dumps({"high_water": iso(high_water)}) + "\n")
                os.replace(temporary, path)
            except OSError:
                pass  # the state directory went away (a private one being removed): nothing to keep


class Serving(Protocol):
    """Something that serves in background threads between start() and stop(): a Simulator or a Fleet."""

    def start(self) -> object: ...
    def stop(self) -> None: ...


def run_until_stopped(sim: Serving) -> None:
    """Serve until SIGINT or SIGTERM arrives, then stop the simulator cleanly; call from the main thread."""
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        sim.start()
        # Short waits keep the main thread responsive to signals on every platform.
        while not stop.wait(0.2):
            pass
    finally:
        try:
            sim.stop()  # still under our handlers: a second Ctrl-C does not cut the stop short
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


# --- faults as JSON (the admin endpoints) ---------------------------------------------------------
