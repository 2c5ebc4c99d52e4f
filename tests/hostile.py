"""A deliberately evil peer for the tests: answers that trickle, never end, or are absurd; TLS and plain
HTTP on one port (as an impostor in place of a gateway would offer both); and a log of every header it got.

Each route answers a status, headers and a body given as bytes or as a generator of (bytes, seconds to wait
before sending them), so a body can trickle a byte at a time or go on for ever.
"""

from __future__ import annotations

import socket
import ssl
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from envoylog.simulator.tls import ensure_certificates

Body = bytes | Callable[[], Iterable[tuple[bytes, float]]]


@dataclass
class Route:
    """What one path answers."""

    status: int = 200
    body: Body = b""
    content_type: str = "application/json"
    headers: list[tuple[str, str]] = field(default_factory=list)
    chunked: bool = False  # Transfer-Encoding: chunked instead of a Content-Length
    header_delay_s: float = 0.0  # wait this long between the header lines (headers that trickle)


@dataclass
class Seen:
    """One request the peer received."""

    tls: bool
    method: str
    path: str
    headers: dict[str, str]


INFO_FW8 = (
    b"<?xml version='1.0' encoding='UTF-8'?><envoy_info><device><sn>122238082763</sn><pn>800-00654-r08</pn>"
    b"<software>D8.2.4345</software><imeter>true</imeter></device><web-tokens>true</web-tokens></envoy_info>"
)


class HostilePeer:
    """A TCP server on 127.0.0.1 that speaks HTTP, and HTTPS with a certificate of its own when `tls`."""

    def __init__(
        self,
        routes: dict[str, Route],
        *,
        state_dir: Path,
        tls: bool = True,
        plain: bool = True,
        cloud: bool = False,
    ) -> None:
        self.routes = routes
        self.seen: list[Seen] = []
        self._tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER) if tls else None
        certificates = ensure_certificates(state_dir)  # certificates of its own: not the gateway's
        self.ca_file = certificates.ca_cert  # what a client trusts to talk to it as a cloud service
        if self._tls is not None:
            # As a cloud service: a certificate for 127.0.0.1 signed by its CA; else a self-signed one.
            cert, key = (
                (certificates.cloud_cert, certificates.cloud_key)
                if cloud
                else (certificates.gateway_cert, certificates.gateway_key)
            )
            self._tls.load_cert_chain(cert, key)
        self._plain = plain
        self._socket = socket.create_server(("127.0.0.1", 0))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="hostile-peer", daemon=True)

    @property
    def port(self) -> int:
        """Where it listens."""
        return int(self._socket.getsockname()[1])

    def __enter__(self) -> HostilePeer:
        self._thread.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop.set()
        self._socket.close()
        self._thread.join(timeout=5)

    def _serve(self) -> None:
        self._socket.settimeout(0.2)
        while not self._stop.is_set():
            try:
                conn, _ = self._socket.accept()
            except (TimeoutError, OSError):
                continue
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        conn.settimeout(30)
        try:
            first = conn.recv(1, socket.MSG_PEEK)
            is_tls = first == b"\x16"  # a TLS handshake record starts so
            if is_tls and self._tls is not None:
                conn = self._tls.wrap_socket(conn, server_side=True)
            elif is_tls or not self._plain:
                conn.close()
                return
            with conn, conn.makefile("rb") as reader:
                while self._one(conn, reader, is_tls):
                    pass
        except (OSError, ssl.SSLError, ValueError):
            pass  # the client went away, or sent what no client of a gateway sends

    def _one(self, conn: socket.socket, reader: socket.SocketIO | object, tls: bool) -> bool:
        line = reader.readline()  # type: ignore[attr-defined]
        if not line:
            return False
        method, target, _ = line.decode("latin-1").split(" ", 2)
        headers: dict[str, str] = {}
        while header := reader.readline().decode("latin-1").strip():  # type: ignore[attr-defined]
            name, _, value = header.partition(":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length") or 0)
        if length:
            reader.read(length)  # type: ignore[attr-defined]
        self.seen.append(Seen(tls, method, target, headers))
        route = self.routes.get(target.split("?")[0], Route(404, b"not found", "text/plain"))
        self._answer(conn, route)
        return True

    def _answer(self, conn: socket.socket, route: Route) -> None:
        head = [
            f"HTTP/1.1 {route.status} X",
            f"Content-Type: {route.content_type}",
            *(f"{n}: {v}" for n, v in route.headers),
        ]
        parts: Iterable[tuple[bytes, float]]
        if isinstance(route.body, bytes):
            parts = [(route.body, 0.0)]
            if not route.chunked:
                head.append(f"Content-Length: {len(route.body)}")
        else:
            parts = route.body()
        if route.chunked or not isinstance(route.body, bytes):
            head.append("Transfer-Encoding: chunked")
        for line in head:
            conn.sendall(f"{line}\r\n".encode())
            if route.header_delay_s:
                self._stop.wait(route.header_delay_s)
        conn.sendall(b"\r\n")
        chunked = route.chunked or not isinstance(route.body, bytes)
        for data, wait in parts:
            if wait:
                self._stop.wait(wait)
            if self._stop.is_set():
                return
            conn.sendall(b"%x\r\n%s\r\n" % (len(data), data) if chunked else data)
        if chunked:
            conn.sendall(b"0\r\n\r\n")


def trickle(data: bytes, every_s: float) -> Callable[[], Iterator[tuple[bytes, float]]]:
    """A body sent a byte at a time, `every_s` apart."""
    return lambda: ((data[i : i + 1], every_s) for i in range(len(data)))


def endless(chunk: bytes = b"[" * 65536) -> Callable[[], Iterator[tuple[bytes, float]]]:
    """A body that never ends."""

    def body() -> Iterator[tuple[bytes, float]]:
        while True:
            yield chunk, 0.0

    return body


def without_root_powers() -> list[str]:
    """A command prefix under which file permissions hold, also for root (who otherwise ignores them).

    Root keeps its uid but loses the capabilities to override read, write and search permissions; another
    user needs no prefix.
    """
    import os
    import shutil

    import pytest

    if os.geteuid() != 0:
        return []
    if shutil.which("setpriv") is None:
        pytest.skip("running as root without setpriv: file permissions cannot be made to hold")
    drop = "-dac_override,-dac_read_search"
    return ["setpriv", f"--bounding-set={drop}", f"--inh-caps={drop}"]
