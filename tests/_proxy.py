"""A real forward proxy on loopback, for the proxy tests: it sees what a corporate
proxy would see, and keeps all of it.

``CONNECT host:port`` opens a tunnel (counted per target) and relays bytes both ways;
an absolute-URI request (``GET http://host:port/path``) is forwarded as plain HTTP and
recorded with its headers. Every byte the proxy received or relayed, in both
directions, is kept in ``seen``: a secret that shows up there was visible to the proxy.
"""

from __future__ import annotations

import contextlib
import socket
import socketserver
import threading
from collections import Counter
from dataclasses import dataclass, field
from types import TracebackType
from typing import Self
from urllib.parse import urlsplit


@dataclass
class Forwarded:
    """One plain-HTTP request the proxy forwarded."""

    method: str
    url: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Log:
    """What the proxy saw; every field is guarded by ``lock``."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    connections: int = 0
    tunnels: Counter[str] = field(default_factory=Counter)
    forwarded: list[Forwarded] = field(default_factory=list)
    seen: bytearray = field(default_factory=bytearray)

    def add(self, data: bytes) -> None:
        with self.lock:
            self.seen += data


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    block_on_close = False

    def __init__(self, log: Log) -> None:
        self.log = log
        self.open: set[socket.socket] = set()
        self.open_lock = threading.Lock()
        super().__init__(("127.0.0.1", 0), _Handler)

    def track(self, sock: socket.socket, add: bool = True) -> None:
        with self.open_lock:
            if add:
                self.open.add(sock)
            else:
                self.open.discard(sock)


class _Handler(socketserver.StreamRequestHandler):
    rbufsize = 0  # unbuffered: no tunnel byte may stay behind in a read buffer
    server: _Server

    def _head(self) -> list[bytes]:
        lines: list[bytes] = []
        while len(lines) < 200:
            line = self.rfile.readline(65536)
            self.server.log.add(line)
            if line in (b"\r\n", b"\n", b""):
                break
            lines.append(line)
        return lines

    def handle(self) -> None:
        log = self.server.log
        with log.lock:
            log.connections += 1
        self.server.track(self.connection)
        try:
            head = self._head()
            if not head:
                return
            method, target, _ = head[0].decode("latin-1").split(" ", 2)
            headers = {}
            for raw in head[1:]:
                name, _, value = raw.decode("latin-1").partition(":")
                headers[name.strip()] = value.strip()
            if method.upper() == "CONNECT":
                self._tunnel(target)
            else:
                self._forward(method, target, headers)
        except OSError:
            pass
        finally:
            self.server.track(self.connection, add=False)

    def _open(self, host: str, port: int) -> socket.socket | None:
        try:
            upstream = socket.create_connection((host, port), timeout=10)
        except OSError:
            self.wfile.write(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
            return None
        self.server.track(upstream)
        return upstream

    def _tunnel(self, target: str) -> None:
        log = self.server.log
        with log.lock:
            log.tunnels[target] += 1
        host, _, port = target.rpartition(":")
        upstream = self._open(host.strip("[]"), int(port))
        if upstream is None:
            return
        reply = b"HTTP/1.1 200 Connection established\r\n\r\n"
        log.add(reply)
        self.wfile.write(reply)
        pump = threading.Thread(target=self._pump, args=(upstream, self.connection), daemon=True)
        pump.start()
        self._pump(self.connection, upstream)
        pump.join(timeout=30)
        self.server.track(upstream, add=False)
        upstream.close()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        src.settimeout(60)
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                self.server.log.add(data)
                dst.sendall(data)
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                dst.shutdown(socket.SHUT_WR)

    def _forward(self, method: str, target: str, headers: dict[str, str]) -> None:
        parts = urlsplit(target)
        length = int(headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        self.server.log.add(body)
        with self.server.log.lock:
            self.server.log.forwarded.append(Forwarded(method, target, dict(headers), body))
        upstream = self._open(parts.hostname or "", parts.port or 80)
        if upstream is None:
            return
        path = parts.path or "/"
        if parts.query:
            path += "?" + parts.query
        lines = [f"{method} {path} HTTP/1.1"]
        lines += [
            f"{k}: {v}"
            for k, v in headers.items()
            if k.lower() not in ("connection", "proxy-connection", "proxy-authorization")
        ]
        lines.append("Connection: close")
        upstream.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
        self._pump(upstream, self.connection)
        self.server.track(upstream, add=False)
        upstream.close()


class Proxy:
    """``with Proxy() as proxy:``; ``proxy.url`` is ``http://127.0.0.1:PORT``."""

    def __init__(self) -> None:
        self.log = Log()
        self._server = _Server(self.log)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def tunnels(self) -> Counter[str]:
        with self.log.lock:
            return Counter(self.log.tunnels)

    @property
    def forwarded(self) -> list[Forwarded]:
        with self.log.lock:
            return list(self.log.forwarded)

    @property
    def connections(self) -> int:
        with self.log.lock:
            return self.log.connections

    @property
    def seen(self) -> bytes:
        with self.log.lock:
            return bytes(self.log.seen)

    def start(self) -> Self:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        with self._server.open_lock:
            socks = list(self._server.open)
        for sock in socks:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def dead_port() -> int:
    """A loopback port nobody listens on (bound, then closed)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
