"""A real ``redis-server`` for tests and benchmarks: :class:`RedisServer`.

Tests of a Redis cache must meet a real server (its transactions, its leases
expiring, its pub/sub, a server that dies or freezes), not an imitation of one.
:class:`RedisServer` starts Debian's ``redis-server`` on a free loopback port with a
password and no persistence, in a private temporary directory, and can stop, kill
(SIGKILL), freeze (SIGSTOP) and restart it on the same port::

    with RedisServer() as server:
        os.environ["PPAUTH_REDIS_URL"] = server.url

``tls=True`` serves ``rediss://`` only (certificates from a test CA whose bundle is
:attr:`RedisServer.ca_bundle`); ``cluster=True`` starts a node with
``--cluster-enabled yes`` (see :func:`start_cluster`).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import TracebackType

REDIS_SERVER = "redis-server"
START_TIMEOUT = 10.0


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def new_cache_key() -> str:
    """A fresh ``PPAUTH_CACHE_KEY`` value (base64 of 32 random bytes; 1 in 64 starts
    with "/", which the core reads as a key, not a path)."""
    import base64

    return base64.b64encode(os.urandom(32)).decode()


def redis_server_path() -> str | None:
    """Where ``redis-server`` is, or None (tests then skip saying how to install it)."""
    return shutil.which(REDIS_SERVER)


class RedisServer:
    """One ``redis-server`` process on 127.0.0.1 (see the module docstring).

    :param password: ``--requirepass`` (a random one by default).
    :param tls: serve TLS only, with a server certificate of a test CA.
    :param cluster: start as a cluster node (``--cluster-enabled yes``).
    :param extra: more ``redis-server`` arguments.
    """

    def __init__(
        self,
        *,
        password: str | None = None,
        tls: bool = False,
        cluster: bool = False,
        extra: Sequence[str] = (),
        port: int | None = None,
    ) -> None:
        executable = redis_server_path()
        if executable is None:
            raise RuntimeError(
                "redis-server is not installed (Debian: apt-get install redis-server)"
            )
        self.executable = executable
        self.password = password if password is not None else os.urandom(12).hex()
        self.tls = tls
        self.cluster = cluster
        self.extra = tuple(extra)
        self.port = port if port is not None else free_port()
        self.bus_port = free_port() if cluster else 0
        self.directory = Path(tempfile.mkdtemp(prefix="ppauth-redis-"))
        self.ca_bundle: str | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._log = self.directory / "redis.log"
        if tls:
            self._write_certificates()
        self.start()

    # -- addresses ---------------------------------------------------------------------
    @property
    def scheme(self) -> str:
        return "rediss" if self.tls else "redis"

    @property
    def url(self) -> str:
        """``redis://:<password>@127.0.0.1:<port>/0`` (``rediss://`` with TLS)."""
        return f"{self.scheme}://:{self.password}@127.0.0.1:{self.port}/0"

    @property
    def url_without_password(self) -> str:
        """The URL to show in messages and assertions."""
        return f"{self.scheme}://127.0.0.1:{self.port}/0"

    def __repr__(self) -> str:
        return f"RedisServer({self.url_without_password})"

    # -- life cycle --------------------------------------------------------------------
    def _arguments(self) -> list[str]:
        args = [
            self.executable,
            "--bind",
            "127.0.0.1",
            "--requirepass",
            self.password,
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(self.directory),
            "--daemonize",
            "no",
            "--logfile",
            str(self._log),
            "--protected-mode",
            "no",
        ]
        if self.tls:
            args += [
                "--port",
                "0",
                "--tls-port",
                str(self.port),
                "--tls-cert-file",
                str(self.directory / "server.pem"),
                "--tls-key-file",
                str(self.directory / "server.key"),
                "--tls-ca-cert-file",
                str(self.directory / "ca.pem"),
                "--tls-auth-clients",
                "no",
            ]
        else:
            args += ["--port", str(self.port)]
        if self.cluster:
            args += [
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                str(self.directory / "nodes.conf"),
                # the bus port defaults to port + 10000, past 65535 for a high free port
                "--cluster-port",
                str(self.bus_port),
                "--masterauth",
                self.password,
            ]
        return args + list(self.extra)

    def start(self) -> None:
        """Start the server (if it is not running) and wait until it answers PING."""
        if self.running:
            return
        self._process = subprocess.Popen(  # noqa: S603 - our own arguments
            self._arguments(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.wait_ready()

    def wait_ready(self, timeout: float = START_TIMEOUT) -> None:
        """Wait until the server answers PING; RuntimeError (with its log) if not."""
        deadline = time.monotonic() + timeout
        while True:
            if self._process is not None and self._process.poll() is not None:
                raise RuntimeError(f"redis-server exited at start:\n{self.log_tail()}")
            if self.ping():
                return
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"redis-server did not answer within {timeout} s:\n{self.log_tail()}"
                )
            time.sleep(0.02)

    def client(self, **options: object) -> object:
        """A redis-py client on this server (``decode_responses`` off)."""
        import redis

        kwargs: dict[str, object] = {
            "host": "127.0.0.1",
            "port": self.port,
            "password": self.password,
            "socket_timeout": 2.0,
            "socket_connect_timeout": 2.0,
        }
        if self.tls:
            kwargs.update(ssl=True, ssl_ca_certs=self.ca_bundle)
        kwargs.update(options)
        return redis.Redis(**kwargs)  # type: ignore[arg-type]

    def ping(self) -> bool:
        """Whether the server answers PING now (with the password)."""
        import redis

        client = self.client(socket_timeout=0.5, socket_connect_timeout=0.5)
        assert isinstance(client, redis.Redis)
        try:
            return bool(client.ping())
        except redis.RedisError:
            return False
        finally:
            client.close()

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL after 5 s); a no-op if stopped."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(process.pid, signal.SIGCONT)  # a paused server cannot exit
        process.terminate()
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)

    def kill(self) -> None:
        """SIGKILL the server: what a crash or a lost machine looks like."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.kill()
        process.wait(5)

    def pause(self) -> None:
        """SIGSTOP: the server holds its connections and answers nothing."""
        if self._process is not None:
            os.kill(self._process.pid, signal.SIGSTOP)

    def resume(self) -> None:
        """SIGCONT after :meth:`pause`."""
        if self._process is not None:
            os.kill(self._process.pid, signal.SIGCONT)

    def restart(self) -> None:
        """Stop (if running) and start again on the same port, empty (no persistence)."""
        self.stop()
        self.start()

    def close(self) -> None:
        """Stop the server and remove its directory."""
        self.stop()
        shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self) -> RedisServer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self._log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    # -- TLS -----------------------------------------------------------------------------
    def _write_certificates(self) -> None:
        from requests_ppauth.testing._certs import tls_material

        material = tls_material()
        for name, data in (
            ("ca.pem", material.ca_pem),
            ("server.pem", material.server_cert_pem),
            ("server.key", material.server_key_pem),
        ):
            path = self.directory / name
            path.write_bytes(data)
            path.chmod(0o600)
        self.ca_bundle = str(self.directory / "ca.pem")


@contextlib.contextmanager
def start_cluster(nodes: int = 3, *, password: str | None = None) -> Iterator[list[RedisServer]]:
    """``nodes`` cluster nodes on loopback, joined with ``redis-cli --cluster create``
    (no replicas), all slots assigned; yields them, stops them at the end."""
    secret = password if password is not None else os.urandom(12).hex()
    servers: list[RedisServer] = []
    try:
        for _ in range(nodes):
            servers.append(RedisServer(password=secret, cluster=True))
        cli = shutil.which("redis-cli")
        if cli is None:
            raise RuntimeError("redis-cli is not installed (Debian: apt-get install redis-tools)")
        addresses = [f"127.0.0.1:{s.port}" for s in servers]
        subprocess.run(  # noqa: S603 - our own arguments
            [cli, "--cluster", "create", *addresses, "--cluster-replicas", "0", "--cluster-yes"],
            env={**os.environ, "REDISCLI_AUTH": secret},
            check=True,
            capture_output=True,
            timeout=30,
        )
        # every node must see the whole cluster ok: a node still learning its peers
        # answers CLUSTERDOWN, which the first test then meets under load
        deadline = time.monotonic() + START_TIMEOUT
        while not all(_cluster_ok(server, nodes) for server in servers):
            if time.monotonic() > deadline:
                raise RuntimeError("the cluster did not become ok")
            time.sleep(0.05)
        yield servers
    finally:
        for server in servers:
            server.close()


def _cluster_ok(server: RedisServer, nodes: int) -> bool:
    import redis

    client = server.client()
    assert isinstance(client, redis.Redis)
    try:
        info = client.execute_command("CLUSTER", "INFO")  # type: ignore[no-untyped-call]
    except redis.RedisError:
        return False
    finally:
        client.close()
    text = info.decode() if isinstance(info, bytes) else str(info)
    return (
        "cluster_state:ok" in text
        and "cluster_slots_ok:16384" in text
        and f"cluster_known_nodes:{nodes}\r" in text
    )
