"""What the Redis cache is told: :class:`RedisSettings`, from the backend's options
and the environment, checked before anything connects.

Where each setting comes from (first found wins):

- ``url``: ``PPAUTH_REDIS_URL``, else the ``url`` option (``cache = { backend =
  "redis", url = ... }`` or the profile's ``[profiles.<name>.redis]`` table). The
  environment wins, as ``PPAUTH_CACHE`` wins over a profile's ``cache``: a fleet's
  deployment sets it from a Secret. Schemes: ``redis://``, ``rediss://`` (TLS),
  ``unix://``.
- the password: the URL's own (``redis://:pw@host``), else the ``password`` option
  (a value or a secret reference: ``keyring:…``, a Key Vault secret URL, ``{ ref =
  "..." }``), else ``PPAUTH_REDIS_PASSWORD``.
- ``ca_bundle``: ``PPAUTH_REDIS_CA_BUNDLE``, else the option; else the system's CAs.
- ``prefix``: the option, else ``PPAUTH_REDIS_PREFIX``, else ``ppauth``.
- the sealing key: ``PPAUTH_CACHE_KEY`` or the ``key`` option (see
  :mod:`requests_ppauth.cache.seal`); ``encryption = "none"`` turns sealing off and
  must be said explicitly.
- ``fallback``: ``"file"`` (default: this machine's file cache while Redis is
  unreachable) or ``"none"`` (failures are the core's ``CacheError``).
- ``connect_timeout`` / ``socket_timeout``: seconds (defaults
  :data:`CONNECT_TIMEOUT`, :data:`SOCKET_TIMEOUT`).
- ``cluster``: ``PPAUTH_REDIS_CLUSTER`` (``1``/``true``), else the option
  (``true``/``false``, default false): the URL is a seed node of a Redis Cluster
  (redis-py's ``RedisCluster`` follows the slot map). A cluster node met without it
  is a configuration error, not a stream of ``MOVED`` replies.
- ``lease_ttl``: seconds a key lock's lease lives unless renewed (default
  :data:`LEASE_TTL`): what a holder that died costs
  the processes waiting for it.

Nothing here holds a secret in its repr: the password is a
:class:`~requests_ppauth._redacted.Secret`, the URL kept for messages has none.
"""

from __future__ import annotations

import math
import os
import re
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from requests_ppauth._redacted import Secret

# Short on purpose: a cache that cannot answer within these is treated as down (the
# request goes on with this machine's file cache), and a frozen Redis must not hold
# a request longer than this per call. Loopback and a same-region managed Redis
# answer in about a millisecond.
CONNECT_TIMEOUT = 1.0
SOCKET_TIMEOUT = 1.0
DEFAULT_PREFIX = "ppauth"
LEASE_TTL = 10.0  # seconds a lease lives unless renewed: what a dead holder costs others
SCHEMES = ("redis", "rediss", "unix")
KNOWN_OPTIONS = frozenset(
    {
        "url",
        "password",
        "ca_bundle",
        "prefix",
        "encryption",
        "key",
        "fallback",
        "connect_timeout",
        "socket_timeout",
        "lease_ttl",
        "cluster",
    }
)
_PREFIX_RE = re.compile(r"^[A-Za-z0-9_.:/-]{1,64}$")
HOW_TO_SET_URL = (
    "set PPAUTH_REDIS_URL=redis://[user:password@]host:6379/0 (rediss:// for TLS), or url "
    "in the profile's [profiles.<name>.redis] table"
)


def redact_url(url: str) -> str:
    """``url`` without its password (the user name stays) and without its query (it
    may say ``password=``): what messages show.

    Text, not a URL parser: a password with an unencoded ``/``, ``?`` or ``#`` makes
    the URL unparsable, and that is exactly when the message must not show it. The
    user information ends at the *last* ``@``."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return "(an unparsable URL)" if "@" in url or ":" in url else url
    if "@" in rest:
        userinfo, _, rest = rest.rpartition("@")
        user = userinfo.partition(":")[0]
        if any(c in user for c in "/?#"):  # not a user name: a path or a query held '@'
            user = ""
        rest = (user + "@" if user else "") + rest
    rest = rest.split("?", 1)[0].split("#", 1)[0]
    return f"{scheme}://{rest}"


@dataclass(frozen=True)
class RedisSettings:
    """Checked settings of one Redis cache (see the module docstring)."""

    url: str = field(repr=False)  # may hold the password: never shown
    shown_url: str
    password: Secret[str] | None
    ca_bundle: str | None
    prefix: str
    encrypted: bool
    fallback: bool
    connect_timeout: float
    socket_timeout: float
    lease_ttl: float
    cluster: bool = False

    @property
    def hash_tag(self) -> str:
        """``{prefix}``: every key of this cache carries it, so Redis Cluster puts
        them all in one slot and accepts every multi-key command and transaction."""
        return "{" + self.prefix + "}"


def _number(options: Mapping[str, Any], name: str, default: float) -> float:
    value = options.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{name} must be a number of seconds, not {type(value).__name__}")
    if not (math.isfinite(value) and 0 < value <= 60):
        raise ValueError(f"{name} must be between 0 and 60 seconds, not {value}")
    return float(value)


_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off", "")


def _flag(options: Mapping[str, Any], environ: Mapping[str, str], name: str, var: str) -> bool:
    """A yes/no setting: the variable ``var`` when set, else the option ``name``."""
    text = environ.get(var)
    if text is not None:
        if text.strip().lower() in _TRUE:
            return True
        if text.strip().lower() in _FALSE:
            return False
        raise ValueError(f"{var} must be 1 or 0 (true or false), not {text!r}")
    value = options.get(name, False)
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be true or false, not {value!r}")
    return value


def _text(options: Mapping[str, Any], name: str) -> str | None:
    value = options.get(name)
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{name} must be a non-empty string")
    return value.strip()


def _resolve_password(value: Any) -> str:
    """The ``password`` option: a literal, or a secret reference a plugin resolves."""
    from requests_ppauth.plugins import get_plugins
    from requests_ppauth.source_api import SourceRequest

    request = SourceRequest(
        profile="(redis cache)",
        settings={},
        environ=os.environ,
        resolvers=get_plugins().resolvers(),
    )
    resolved = request.resolve(value, "password")
    if isinstance(resolved, bytes):
        resolved = resolved.decode()
    if not isinstance(resolved, str) or not resolved:
        raise ValueError("password must be a non-empty string or a secret reference")
    return resolved


def check_url(url: str, where: str) -> str:
    """``url`` if its scheme and shape are usable; ValueError naming ``where`` if not
    (the message shows the URL without its password)."""
    try:
        parts = urllib.parse.urlsplit(url)
        _ = parts.port
    except ValueError:
        raise ValueError(f"{where}={redact_url(url)!r} is not a URL: {HOW_TO_SET_URL}") from None
    if parts.scheme not in SCHEMES:
        raise ValueError(
            f"{where}={redact_url(url)!r}: the scheme must be redis://, rediss:// (TLS) or "
            f"unix://, not {parts.scheme or '(none)'!r}"
        )
    if parts.scheme == "unix" and not parts.path:
        raise ValueError(f"{where}={redact_url(url)!r}: a unix:// URL needs a socket path")
    if parts.scheme != "unix" and not parts.hostname:
        raise ValueError(f"{where}={redact_url(url)!r}: the URL needs a host")
    return url


def settings_from(options: Mapping[str, Any], environ: Mapping[str, str]) -> RedisSettings:
    """Checked settings, or ValueError naming the setting and the fix."""
    unknown = sorted(set(options) - KNOWN_OPTIONS)
    if unknown:
        raise ValueError(
            f"the redis cache does not know {unknown}; it takes {sorted(KNOWN_OPTIONS)}"
        )
    if environ.get("PPAUTH_REDIS_URL"):
        url = check_url(environ["PPAUTH_REDIS_URL"].strip(), "PPAUTH_REDIS_URL")
    elif options.get("url") is not None:
        url = check_url(_text(options, "url") or "", "url")
    else:
        raise ValueError(f"the redis cache needs a URL: {HOW_TO_SET_URL}")
    shown = redact_url(url)
    password: Secret[str] | None = None
    if urllib.parse.urlsplit(url).password is None:
        if options.get("password") is not None:
            password = Secret(_resolve_password(options["password"]), "redis password")
        elif environ.get("PPAUTH_REDIS_PASSWORD"):
            password = Secret(environ["PPAUTH_REDIS_PASSWORD"], "redis password")
    ca_bundle = environ.get("PPAUTH_REDIS_CA_BUNDLE") or _text(options, "ca_bundle")
    if ca_bundle is not None:
        ca_bundle = os.path.expanduser(ca_bundle)
        if not os.path.isfile(ca_bundle):
            raise ValueError(f"ca_bundle {ca_bundle!r} is not a file (a PEM bundle of CAs)")
    prefix = _text(options, "prefix") or environ.get("PPAUTH_REDIS_PREFIX") or DEFAULT_PREFIX
    prefix = prefix.strip()
    if prefix.startswith("{") and prefix.endswith("}"):
        prefix = prefix[1:-1]
    if not _PREFIX_RE.match(prefix):
        raise ValueError(
            f"prefix {prefix!r}: use 1 to 64 letters, digits and _ . : / - (the keys' hash tag)"
        )
    encryption = options.get("encryption", "aes-256-gcm")
    if encryption not in ("aes-256-gcm", "none"):
        raise ValueError(
            f'encryption must be "aes-256-gcm" (the default) or "none", not {encryption!r}'
        )
    fallback = options.get("fallback", "file")
    if fallback not in ("file", "none"):
        raise ValueError(f'fallback must be "file" (the default) or "none", not {fallback!r}')
    cluster = _flag(options, environ, "cluster", "PPAUTH_REDIS_CLUSTER")
    if cluster and url.startswith("unix://"):
        raise ValueError("cluster = true needs a redis:// or rediss:// seed node, not unix://")
    return RedisSettings(
        url=url,
        shown_url=shown,
        password=password,
        ca_bundle=ca_bundle,
        prefix=prefix,
        encrypted=encryption != "none",
        fallback=fallback == "file",
        connect_timeout=_number(options, "connect_timeout", CONNECT_TIMEOUT),
        socket_timeout=_number(options, "socket_timeout", SOCKET_TIMEOUT),
        lease_ttl=_number(options, "lease_ttl", LEASE_TTL),
        cluster=cluster,
    )
