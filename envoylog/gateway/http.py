"""HTTP that ends on time and reads a bounded amount, whatever the peer does.

requests' timeouts bound each socket operation, not a request: a peer that sends one byte every few seconds
keeps a request alive for minutes. Every connection made through a `BoundedSession` is watched, and when the
request's deadline passes the watchdog shuts its sockets down, which ends any blocked read at once. Bodies are
read in chunks up to a size cap, so an endless answer cannot fill the memory of a Raspberry Pi.
"""

from __future__ import annotations

import contextlib
import functools
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

# Real gateway and cloud answers are a few kB to a few hundred kB (device_data of 50 inverters ~ 60 kB).
MAX_BODY_BYTES = 4 * 1024 * 1024
_CHUNK_BYTES = 64 * 1024


class DeadlineReached(Exception):
    """The watchdog cut the connection: the request's deadline passed while the peer was still sending."""


class BodyTooLarge(Exception):
    """The answer grew past the size cap."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"answered more than {limit // 1024 // 1024} MB")
        self.limit = limit


class SocketWatch:
    """The sockets of one session's connections, which the watchdog can shut down all at once."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self.fired = False

    def add(self, sock: socket.socket) -> None:
        """Watch a newly connected socket (and forget those already closed)."""
        with self._lock:
            self._sockets = [s for s in self._sockets if s.fileno() != -1]
            self._sockets.append(sock)

    def cut(self) -> None:
        """Shut every watched socket down: blocked reads return at once."""
        with self._lock:
            self.fired = True
            for sock in self._sockets:
                # The plain socket's shutdown, also for TLS: it wakes a reader without touching TLS state.
                with contextlib.suppress(OSError):  # already closed
                    socket.socket.shutdown(sock, socket.SHUT_RDWR)

    @contextmanager
    def deadline(self, at_monotonic: float) -> Iterator[None]:
        """Cut the sockets if the block is still running at `at_monotonic` (a time.monotonic() value)."""
        self.fired = False
        timer = threading.Timer(max(0.0, at_monotonic - time.monotonic()), self.cut)
        timer.daemon = True
        timer.start()
        try:
            yield
        finally:
            timer.cancel()


def _watched_pool(
    pool: type[HTTPConnectionPool],
    connection: type[HTTPConnection],
    watch: SocketWatch,
    self_signed: bool = False,
) -> Any:
    class WatchedConnection(connection):  # type: ignore[valid-type,misc]
        def connect(self) -> None:
            super().connect()
            watch.add(self.sock)

    class WatchedPool(pool):  # type: ignore[valid-type,misc]
        ConnectionCls = WatchedConnection

        def _validate_conn(self, conn: Any) -> None:
            if not self_signed:
                super()._validate_conn(conn)
                return
            # The HTTPS pool's own check, less its InsecureRequestWarning: the gateway's certificate is
            # self-signed, knowingly not verified (or pinned). Silenced here rather than by a warnings
            # filter, which is process-wide and not safe while other threads make requests.
            HTTPConnectionPool._validate_conn(self, conn)
            if conn.is_closed:
                conn.connect()

    return WatchedPool


@functools.cache
def _self_signed_context() -> ssl.SSLContext:
    """One TLS context for every gateway: no CA store to load (20 ms of CPU each time) for a certificate that
    no CA signed. A pinned fingerprint is still checked, by urllib3, after the handshake."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


class _WatchedAdapter(HTTPAdapter):
    """An adapter whose connections report their sockets to a SocketWatch (and may pin a certificate)."""

    def __init__(self, watch: SocketWatch, fingerprint: str | None = None, self_signed: bool = False) -> None:
        self._watch = watch
        self._fingerprint = fingerprint
        self._self_signed = self_signed
        super().__init__()

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        if self._self_signed:
            kwargs["ssl_context"] = _self_signed_context()
        if self._fingerprint:
            # The gateway's certificate is self-signed: its SHA-256 is checked instead of a CA chain.
            kwargs["assert_fingerprint"] = self._fingerprint
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {
            "http": _watched_pool(HTTPConnectionPool, HTTPConnection, self._watch),
            "https": _watched_pool(HTTPSConnectionPool, HTTPSConnection, self._watch, self._self_signed),
        }


class BoundedSession(requests.Session):
    """A requests Session whose `fetch` ends by a deadline and reads at most MAX_BODY_BYTES."""

    def __init__(
        self, *, fingerprint: str | None = None, self_signed: bool = False, max_bytes: int = MAX_BODY_BYTES
    ) -> None:
        super().__init__()
        self.headers["User-Agent"] = "envoylog"
        self.watch = SocketWatch()
        self.max_bytes = max_bytes
        # self_signed: the peer's certificate is not checked against CAs (a gateway), so no warning about it.
        self.mount("https://", _WatchedAdapter(self.watch, fingerprint, self_signed))
        self.mount("http://", _WatchedAdapter(self.watch))

    def fetch(
        self, method: str, url: str, *, deadline: float, **kwargs: Any
    ) -> tuple[requests.Response, bytes]:
        """Send a request, read its body by `deadline` (monotonic); else DeadlineReached or BodyTooLarge."""
        with self.watch.deadline(deadline):
            try:
                response = self.request(method, url, stream=True, **kwargs)
                try:
                    body = self._read(response)
                finally:
                    response.close()
            except requests.exceptions.RequestException:
                if self.watch.fired:
                    raise DeadlineReached from None
                raise
            # A cut can also look like an answer that ended early (headers cut short read as complete).
            if self.watch.fired:
                raise DeadlineReached
        return response, body

    def _read(self, response: requests.Response) -> bytes:
        declared = response.headers.get("Content-Length", "")
        if declared.isdigit() and int(declared) > self.max_bytes:
            raise BodyTooLarge(self.max_bytes)
        chunks, size = [], 0
        for chunk in response.iter_content(_CHUNK_BYTES):
            size += len(chunk)
            if size > self.max_bytes:
                raise BodyTooLarge(self.max_bytes)
            chunks.append(chunk)
        return b"".join(chunks)
