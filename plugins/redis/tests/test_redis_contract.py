"""The Redis backend passes the contract every cache backend must pass (the one
the built-in file and memory caches pass), on a real redis-server: sealed, and with
``encryption = "none"``; and a Redis that does not answer raises CacheError when the
fallback is off."""

from __future__ import annotations

import os

import pytest
from requests_ppauth_redis import make_redis_cache
from requests_ppauth_redis.testing import RedisServer, free_port

from requests_ppauth.testing.cache_contract import CacheBackendContract


@pytest.fixture
def _keyed(ppauth_env, cache_key):
    ppauth_env.set(PPAUTH_CACHE_KEY=cache_key)


def _prefix() -> str:
    return f"contract-{os.urandom(6).hex()}"  # a fresh, empty cache on the shared server


class TestRedisCacheContract(CacheBackendContract):
    shared_across_processes = True

    @pytest.fixture
    def backend(self, redis_session_server: RedisServer, _keyed):
        return make_redis_cache({"url": redis_session_server.url, "prefix": _prefix()})

    def broken_backend(self, tmp_path):
        # nothing listens on that port, and the fallback is off: every call fails
        return make_redis_cache(
            {"url": f"redis://127.0.0.1:{free_port()}/0", "fallback": "none", "encryption": "none"},
            check=False,
        )


class TestUnencryptedRedisCacheContract(CacheBackendContract):
    shared_across_processes = True
    processes = 4

    @pytest.fixture
    def backend(self, redis_session_server: RedisServer):
        return make_redis_cache(
            {"url": redis_session_server.url, "prefix": _prefix(), "encryption": "none"}
        )
