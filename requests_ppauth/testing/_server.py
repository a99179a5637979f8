"""HTTPS plumbing for the emulator: one threaded TLS listener per emulated host.

The TLS handshake runs in the connection's own thread, not in the accept loop,
so a slow or silent client cannot stall the others; 64 processes connecting at
once are served in parallel.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from requests_ppauth.testing._wire import Request, Response

Dispatch = Callable[[Request], Response | None]


class TLSListener(ThreadingHTTPServer):
    """A ``ThreadingHTTPServer`` that wraps each accepted socket in TLS."""

    daemon_threads = True
    request_queue_size = 512
    allow_reuse_address = True
    block_on_close = False

    def __init__(
        self,
        host: str,
        role: str,
        context: ssl.SSLContext | None,
        dispatch: Dispatch,
        port: int = 0,
    ) -> None:
        self.role = role
        self.context = context
        self.dispatch = dispatch
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()
        # a fixed port (443 for msal's port-dropping user realm lookup) must be free:
        # SO_REUSEADDR only lets a port in TIME_WAIT be reused, never a listening one
        super().__init__((host, port), _Handler)

    @property
    def port(self) -> int:
        """The port bound (the OS's pick unless one was asked for)."""
        return int(self.server_address[1])

    def finish_request(self, request: Any, client_address: Any) -> None:
        request.settimeout(30)
        if self.context is None:  # plain http (the managed identity endpoints)
            tls = request
        else:
            try:
                tls = self.context.wrap_socket(request, server_side=True)
            except (ssl.SSLError, OSError):
                return
        with self._open_lock:
            self._open.add(tls)
        try:
            _Handler(tls, client_address, self)
        except (ssl.SSLError, OSError):
            pass
        finally:
            with self._open_lock:
                self._open.discard(tls)
            with contextlib.suppress(OSError):
                tls.close()

    def close_connections(self) -> None:
        """Shut every open connection so keep-alive threads end with the emulator."""
        with self._open_lock:
            conns = list(self._open)
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "requests-ppauth-emulator/1"
    # headers and body go out in separate writes: with Nagle on, the body waits for the
    # client's delayed ACK and every response stalls ~40 ms
    disable_nagle_algorithm = True
    server: TLSListener

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the emulator keeps its own request log."""

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks: list[bytes] = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    self.rfile.readline()
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _dispatch(self) -> None:
        url = urlsplit(self.path)
        host = self.headers.get("Host") or f"127.0.0.1:{self.server.port}"
        req = Request(
            method=self.command,
            path=url.path,
            query=dict(parse_qsl(url.query, keep_blank_values=True)),
            headers={k.lower(): v for k, v in self.headers.items()},
            body=self._body(),
            listener=self.server.role,
            origin=f"{'https' if self.server.context else 'http'}://{host}",
        )
        resp = self.server.dispatch(req)
        if resp is None:  # a "dropped connection" fault
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
            return
        self.send_response(resp.status)
        names = {k.lower() for k, _ in resp.headers}
        for key, value in resp.headers:
            self.send_header(key, value)
        if "content-length" not in names:
            self.send_header("Content-Length", str(len(resp.body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(resp.body)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = _dispatch  # noqa: N815


def server_context(cert_file: str, key_file: str) -> ssl.SSLContext:
    """TLS 1.2+ server context for the emulator's certificate."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(cert_file, key_file)
    return ctx
