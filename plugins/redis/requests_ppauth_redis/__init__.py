"""requests-ppauth-redis: the token cache backend ``redis``, shared by a whole fleet.

``PPAUTH_CACHE=redis`` (or ``cache = "redis"``, ``PowerPlatformAuth(cache="redis")``)
with ``PPAUTH_REDIS_URL`` and ``PPAUTH_CACHE_KEY`` set makes every process on every
machine share one token per key, fetched once (a Redis lease is the single-flight
lock), sealed with AES-256-GCM, and kept in this machine's file cache while Redis is
away. See the README for the settings and what an operator of Redis can see.

Modules, each holding one thing: :mod:`._settings` (what the backend is told),
:mod:`._connection` (redis-py clients and what their errors mean),
:mod:`._backend` (entries in Redis), :mod:`._leases` (fleet-wide key locks),
:mod:`._fallback` (the backend the core gets: Redis, or the local file cache),
:mod:`._doctor` (``ppauth doctor``), :mod:`.testing` (a real ``redis-server`` for
tests and benchmarks). Importing this package (the core does, to register the
backend) does not import redis-py: that waits until the backend is used.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from requests_ppauth import hookimpl

if TYPE_CHECKING:
    from requests_ppauth.cache import CacheBackend
    from requests_ppauth_redis._fallback import RedisCache

__all__ = ["make_redis_cache"]

NO_KEY = (
    "the redis cache seals every token with a key and none is set: run `ppauth cache keygen` "
    "and set PPAUTH_CACHE_KEY to what it prints (from a secret store: PPAUTH_CACHE_KEY="
    "keyring:<name>, a Key Vault secret URL, or file:<path>), or, to store tokens readable by "
    'anyone with access to Redis, say so: cache = { backend = "redis", encryption = "none" }'
)


def make_redis_cache(options: Mapping[str, Any], *, check: bool = True) -> RedisCache:
    """The factory the core calls with the backend's options (``{}`` for a bare
    ``redis``). Raises ValueError (shown as a ConfigurationError) for bad settings,
    a missing key, a wrong password or a TLS failure; when Redis merely does not
    answer, the backend starts on the local file cache (``check=False``: do not
    connect now)."""
    from requests_ppauth.cache.seal import sealer_from_environment
    from requests_ppauth_redis._backend import RedisStore
    from requests_ppauth_redis._fallback import RedisCache
    from requests_ppauth_redis._settings import settings_from

    settings = settings_from(options, os.environ)
    sealer = None
    if settings.encrypted:
        key = options.get("key")
        if isinstance(key, Mapping) and set(key) == {"ref"} and isinstance(key["ref"], str):
            key = key["ref"]  # key = { ref = "keyring:ppauth-cache" }: the reference itself
        if key is not None and not isinstance(key, str):
            raise ValueError(
                "key must be the keys (base64), file:<path>, or a secret reference "
                '(key = "keyring:<name>" or key = { ref = "..." })'
            )
        sealer = sealer_from_environment(
            os.environ,
            value=key,
            setting="the redis cache's key" if key is not None else "PPAUTH_CACHE_KEY",
        )
        if sealer is None:
            raise ValueError(NO_KEY)
    return RedisCache(RedisStore(settings, sealer), options, check=check)


@hookimpl
def ppauth_register_cache_backends(
    register: Callable[[str, Callable[[Mapping[str, Any]], CacheBackend]], None],
) -> None:
    register("redis", make_redis_cache)
