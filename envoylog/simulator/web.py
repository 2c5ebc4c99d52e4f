"""HTTP plumbing shared by the simulated gateway and cloud: a request in, a response out."""

from __future__ import annotations

import contextlib
import json
import logging
import selectors
import socket
import ssl
import struct
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from email.message import Message
from http.cookies import CookieError, SimpleCookie
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from socketserver import TCPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

log = logging.getLogger(__name__)

_MAX_BODY = 1 << 20  # the simulated services take small forms and JSON documents only
_IDLE_TIMEOUT_S = 30.0  # an idle keep-alive connection is closed after this long


@dataclass(frozen=True)
class Request:
    """One HTTP request as the simulated services see it."""

    method: str
    target: str  # the path with its query string, as sent
    path: str
    query: Mapping[str, str]
    headers: Message
    body: bytes = b""

    def header(self, name: str) -> str | None:
        """A header's value (case-insensitive name), or None."""
        value = self.headers.get(name)
        return None if value is None else str(value)

    def cookies(self) -> dict[str, str]:
        """The request's cookies by name."""
        jar: SimpleCookie = SimpleCookie()
        for value in self.headers.get_all("Cookie") or []:
            try:
                jar.load(str(value))
            except CookieError:
                continue
        return {name: morsel.value for name, morsel in jar.items()}

    def json(self) -> Any:
        """The body parsed as JSON; ValueError when it is not JSON."""
        return json.loads(self.body or b"null")


@dataclass
class Response:
    """One HTTP response; `delay_seconds` holds it back (a slow or hanging endpoint).

    A response with `drop` set is no answer at all: the connection is reset (status 0 in the request log).
    """

    status: int
    body: bytes = b""
    content_type: str = "text/plain; charset=utf-8"
    headers: list[tuple[str, str]] = field(default_factory=list)
    delay_seconds: float = 0.0
    drop: bool = False

    @classmethod
    def reset(cls) -> Response:
        """No answer: the connection is reset, as a gateway that is busy rebooting or overwhelmed does."""
        return cls(0, drop=True)

    @classmethod
    def json(cls, status: int, data: Any, headers: list[tuple[str, str]] | None = None) -> Response:
        """A JSON response."""
        return cls(status, json.dumps(data).encode(), "application/json", headers or [])

    @classmethod
    def text(cls, status: int, text: str, content_type: str = "text/plain; charset=utf-8") -> Response:
        """A text response."""
        return cls(status, text.encode(), content_type)


@dataclass(frozen=True)
class LoggedRequest:
    """A request the simulator answered (admin requests are not logged)."""

    at: datetime  # real time, UTC
    service: str  # gateway | enlighten | entrez
    method: str
    path: str  # with the query string
    status: int  # 0: no answer, the connection was reset
    account: str | None = None  # the Enlighten account a cloud request was for, when it names a known one


App = Callable[[Request], Response]


class _Handler(BaseHTTPRequestHandler):
    server: AppServer
    protocol_version = "HTTP/1.1"
    server_version = "openresty"
    sys_version = ""
    timeout = _IDLE_TIMEOUT_S
    # Headers and body go out in separate writes: with Nagle's algorithm each answer would wait ~40 ms.
    disable_nagle_algorithm = True

    def setup(self) -> None:
        # The TLS handshake happens here, in the connection's own thread, not in the accepting thread.
        if isinstance(self.request, ssl.SSLSocket):
            self.request.settimeout(self.timeout)
            self.request.do_handshake()
        super().setup()

    def log_message(self, format: str, *args: Any) -> None:
        """Keep stderr quiet; the simulator keeps its own request log."""

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length > _MAX_BODY:
            self.send_error(413)
            return
        body = self.rfile.read(length) if length else b""
        split = urlsplit(self.path)
        request = Request(
            method=self.command,
            target=self.path,
            path=split.path,
            query=dict(parse_qsl(split.query, keep_blank_values=True)),
            headers=self.headers,
            body=body,
        )
        try:
            response = self.server.app(request)
        except Exception:
            # A bug in the simulator: answer 500 rather than drop the connection, and say where.
            log.exception("the simulator failed to answer %s %s", self.command, split.path)
            response = Response.text(500, "simulator error\n")
        if response.delay_seconds > 0 and self.server.stopping.wait(response.delay_seconds):
            self.close_connection = True  # stopping: give up on the held-back answer
            return
        if response.drop:
            self._reset_connection()
            return
        self.send_response_only(response.status)
        self.send_header("Server", self.version_string())
        if not any(name.lower() == "date" for name, _ in response.headers):
            self.send_header("Date", self.date_time_string())
        self.send_header("Content-Type", response.content_type)
        self.send_header("Content-Length", str(len(response.body)))
        for name, value in response.headers:
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(response.body)

    def _reset_connection(self) -> None:
        """End the connection with a reset (RST) and no answer: the client sees a connection error."""
        self.close_connection = True
        with contextlib.suppress(OSError):
            # A zero linger makes close() send RST at once instead of a polite FIN.
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = do_PATCH = _serve


class AppServer(ThreadingHTTPServer):
    """A threading HTTP(S) server for one app that stops promptly, keep-alive connections included."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128  # a fleet's cloud is asked by many gateways' collectors at once

    def __init__(
        self, address: tuple[str, int], app: App, stopping: threading.Event, tls: ssl.SSLContext | None = None
    ) -> None:
        super().__init__(address, _Handler)
        if tls is not None:
            self.socket = tls.wrap_socket(self.socket, server_side=True, do_handshake_on_connect=False)
        self.app = app
        self.stopping = stopping
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        self.connections_accepted = 0  # a client that keeps its connection alive costs one handshake

    def server_bind(self) -> None:
        """Bind without HTTPServer's reverse DNS look-up of the address, which can be slow."""
        TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = str(host)
        self.server_port = int(port)

    @property
    def port(self) -> int:
        """The port the server listens on."""
        return int(self.server_address[1])

    def accept_one(self) -> None:
        """Accept a waiting connection and serve it in a thread of its own (what serve_forever does)."""
        try:
            request, client_address = self.get_request()
        except OSError:
            return  # the client gave up already, or the server is closing
        try:
            self.process_request(request, client_address)
        except Exception:
            self.handle_error(request, client_address)
            self.shutdown_request(request)

    def process_request(self, request: Any, client_address: Any) -> None:
        """Remember the connection so that stopping can close it."""
        with self._connections_lock:
            self._connections.add(request)
            self.connections_accepted += 1
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        """Forget a finished connection."""
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that hangs up or refuses the certificate is normal here: no traceback on stderr."""
        log.debug("connection from %s ended with an error", client_address, exc_info=True)

    def close_connections(self) -> None:
        """End every open connection, so that no keep-alive connection outlives the server."""
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            # The plain socket's shutdown: an SSLSocket's own would pull its state from under the reader.
            with contextlib.suppress(OSError):
                socket.socket.shutdown(connection, socket.SHUT_RDWR)


class Acceptor:
    """Accepts the connections of many servers from one thread; each connection gets its own thread as usual.

    A fleet of simulated gateways listens on a port each: one thread waiting on all their sockets costs
    nothing per gateway, where a `serve_forever` thread each would wake a thousand threads 50 times a second.
    Servers served this way are stopped with close_connections() and server_close(), never shutdown().
    """

    def __init__(self, servers: Iterable[AppServer], stopping: threading.Event, name: str) -> None:
        self._servers = list(servers)
        self._stopping = stopping
        self._name = name
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start accepting in a daemon thread."""
        selector = selectors.DefaultSelector()
        for server in self._servers:
            selector.register(server, selectors.EVENT_READ, server)
        self._thread = threading.Thread(target=self._run, args=(selector,), name=self._name, daemon=True)
        self._thread.start()

    def join(self, timeout: float = 5.0) -> None:
        """Wait for the accepting thread to end (after `stopping` is set)."""
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _run(self, selector: selectors.BaseSelector) -> None:
        with selector:
            while not self._stopping.is_set():
                for key, _ in selector.select(timeout=0.05):
                    server: AppServer = key.data
                    server.accept_one()


def serve_in_thread(server: AppServer, name: str) -> threading.Thread:
    """Run `server` in a daemon thread."""
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.02}, name=name, daemon=True
    )
    thread.start()
    return thread
