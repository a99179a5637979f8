"""Connecting to Redis, and what its failures mean for a token cache.

redis-py's exceptions may carry the address, and a URL may carry the password: no
exception of redis-py leaves this plugin raw. :func:`translate` turns each into one
of three things:

- :class:`~requests_ppauth.ConfigurationError`: the settings are wrong (a wrong
  password or user, a server certificate that does not verify, ``rediss://`` to a
  port without TLS or ``redis://`` to a TLS-only one): retrying will not help, the
  message names the URL without its password and the setting to fix;
- :class:`RedisUnavailable` (a :class:`~requests_ppauth.CacheError`): Redis did not
  answer (refused, timed out, restarting): the fallback takes over;
- :class:`~requests_ppauth.CacheError`: anything else Redis said.

Every call is bounded by the socket timeout, and redis-py's own retries are off: a
frozen server costs one timeout, not four.

A scheme that does not match the port fails like an outage: ``rediss://`` to a plain
port waits for a TLS handshake that never comes (a timeout), ``redis://`` to a
TLS-only port is reset. Such a failure (a handshake timeout, a reset) is followed by
one probe of the other protocol (:func:`_scheme_mismatch`, bounded by
:data:`PROBE_TIMEOUT`): a plain Redis answering ``PING``, or a port completing a TLS
handshake, makes it a configuration error instead of a fallback that would hide it.
A frozen server answers neither probe and stays an outage.
"""

from __future__ import annotations

import re
import socket
import ssl
import urllib.parse
from typing import TYPE_CHECKING, Any, cast

from requests_ppauth.errors import CacheError, ConfigurationError
from requests_ppauth_redis._settings import RedisSettings

if TYPE_CHECKING:
    import redis


PROBE_TIMEOUT = 0.5  # seconds the scheme-mismatch probe may take (at most connect_timeout)


class RedisUnavailable(CacheError):  # noqa: N818 - reads as a state, like the core's names
    """Redis did not answer: refused, timed out, loading, or gone mid-call."""


def make_client(settings: RedisSettings) -> redis.Redis:
    """A client (a connection pool: thread-safe, shared by this process's threads);
    for ``cluster = true`` a ``RedisCluster``, which offers the same commands (typed
    as ``Redis`` here: the backend uses only what both have)."""
    import redis
    from redis.backoff import NoBackoff
    from redis.cluster import RedisCluster
    from redis.retry import Retry

    kwargs: dict[str, Any] = {
        "socket_timeout": settings.socket_timeout,
        "socket_connect_timeout": settings.connect_timeout,
        "retry": Retry(NoBackoff(), 0),
        "retry_on_timeout": False,
        "health_check_interval": 30,
        "client_name": "requests-ppauth",
    }
    if settings.password is not None:
        kwargs["password"] = settings.password.reveal()
    if settings.url.startswith("rediss://"):
        if settings.ca_bundle:
            kwargs["ssl_ca_certs"] = settings.ca_bundle
        kwargs["ssl_min_version"] = ssl.TLSVersion.TLSv1_2
        kwargs["ssl_check_hostname"] = True  # said, not left to redis-py's default
    if settings.url.startswith("unix://"):
        kwargs.pop("socket_connect_timeout")
    if settings.cluster:
        kwargs.pop("health_check_interval")
        return cast("redis.Redis", RedisCluster.from_url(settings.url, **kwargs))
    return redis.Redis.from_url(settings.url, **kwargs)


def _is_tls_failure(exc: BaseException) -> bool:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, ssl.SSLError | ssl.CertificateError):
            return True
        current = current.__cause__ or current.__context__
    text = str(exc)
    return "SSL" in text or "CERTIFICATE" in text.upper()


def _chain_text(exc: BaseException) -> str:
    seen: set[int] = set()
    parts: list[str] = []
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        parts.append(f"{type(current).__name__}: {current}")
        current = current.__cause__ or current.__context__
    return " <- ".join(parts)


def _scheme_mismatch(exc: BaseException, settings: RedisSettings) -> str | None:
    """What is wrong when ``exc`` (an outage, by its look) came from a port speaking
    the other protocol than the URL's scheme; None when it did not (or cannot tell).
    Probes only after a TLS handshake timed out (``rediss://``) or the connection was
    reset or closed at once (``redis://``)."""
    parts = urllib.parse.urlsplit(settings.url)
    text = _chain_text(exc)
    if parts.scheme == "rediss":
        if "handshake" not in text:
            return None
    elif parts.scheme == "redis":
        if not any(s in text for s in ("ConnectionResetError", "Connection reset", "closed by")):
            return None
    else:
        return None
    host, port = parts.hostname or "localhost", parts.port or 6379
    timeout = min(settings.connect_timeout, PROBE_TIMEOUT)
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            if parts.scheme == "rediss":
                sock.sendall(b"PING\r\n")
                if sock.recv(64)[:1] in (b"+", b"-"):  # a RESP reply: plain Redis
                    return (
                        "answers without TLS on that port: use redis:// for it, or rediss:// "
                        "with the server's tls-port"
                    )
                return None
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE  # only asks "is this TLS?"; nothing is sent
            with context.wrap_socket(sock, server_hostname=host):
                return (
                    "speaks TLS only on that port: use rediss:// (with ca_bundle or "
                    "PPAUTH_REDIS_CA_BUNDLE when a private CA signed its certificate)"
                )
    except (OSError, ssl.SSLError):
        return None


_PIPELINE_COMMAND = re.compile(r"Command # (\d+) \((\S+).*?\) of pipeline caused error: ", re.S)


def _scrubbed(exc: BaseException, settings: RedisSettings) -> str:
    """A short description of ``exc`` with the URL and password taken out.

    redis-py quotes a failed pipeline command with its arguments ("Command # 1 (SET
    key <value>) of pipeline caused error: ..."): the value is a token (sealed, or in
    clear with ``encryption = false``), so only the command's name is kept."""
    text = f"{type(exc).__name__}: {exc}"
    text = _PIPELINE_COMMAND.sub(r"command #\1 (\2) of a pipeline: ", text)
    for secret in (settings.url, settings.password.reveal() if settings.password else None):
        if secret:
            text = text.replace(secret, "***")
    from urllib.parse import urlsplit

    url_password = urlsplit(settings.url).password
    if url_password:
        text = text.replace(url_password, "***")
    return text[:300]


def translate(exc: BaseException, settings: RedisSettings, doing: str) -> Exception:
    """The exception to raise for redis-py's ``exc`` while ``doing`` (see the module
    docstring); raise it ``from None``: the original may hold the URL."""
    from redis import exceptions as e

    where = settings.shown_url
    refused = tuple(
        getattr(e, name)
        for name in ("AuthenticationError", "AuthorizationError", "NoPermissionError")
        if hasattr(e, name)
    )
    if isinstance(exc, refused) or (
        isinstance(exc, e.ResponseError)
        and str(exc).split(" ", 1)[0] in ("WRONGPASS", "NOAUTH", "NOPERM")
    ):
        return ConfigurationError(
            f"Redis at {where} refused the credentials while {doing}: check the password "
            "(in PPAUTH_REDIS_URL, the profile's [profiles.<name>.redis] password, or "
            "PPAUTH_REDIS_PASSWORD) and the user's ACL"
        )
    if isinstance(exc, e.MovedError | e.AskError) or (
        isinstance(exc, e.ResponseError) and str(exc).startswith(("MOVED", "ASK"))
    ):
        return ConfigurationError(
            f"Redis at {where} is a Redis Cluster node: set cluster = true in the profile's "
            "[profiles.<name>.redis] table (or PPAUTH_REDIS_CLUSTER=1)"
        )
    if isinstance(exc, e.ConnectionError) and _is_tls_failure(exc):
        return ConfigurationError(
            f"TLS with Redis at {where} failed while {doing} ({_scrubbed(exc, settings)}): "
            "check that the server speaks TLS on that port and that its certificate is "
            "signed by a CA in ca_bundle (PPAUTH_REDIS_CA_BUNDLE) or the system's store"
        )
    if isinstance(exc, e.ConnectionError | e.TimeoutError | OSError):
        mismatch = _scheme_mismatch(exc, settings)
        if mismatch is not None:
            return ConfigurationError(f"Redis at {where} {mismatch} (found while {doing})")
    if isinstance(exc, e.ConnectionError | e.TimeoutError | e.BusyLoadingError | OSError):
        return RedisUnavailable(
            f"Redis at {where} did not answer while {doing} ({_scrubbed(exc, settings)})"
        )
    if isinstance(exc, e.ClusterDownError | e.TryAgainError) or (
        isinstance(exc, e.ResponseError)
        and str(exc).startswith(("LOADING", "MASTERDOWN", "CLUSTERDOWN", "TRYAGAIN", "READONLY"))
    ):
        return RedisUnavailable(f"Redis at {where} is not ready while {doing}")
    return CacheError(f"Redis at {where} failed while {doing}: {_scrubbed(exc, settings)}")
