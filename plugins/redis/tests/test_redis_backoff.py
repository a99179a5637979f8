"""The shared back-off is fleet-wide on Redis: when the identity provider says
Retry-After (or does not answer), the record lives in the token's entry in Redis, so
another machine (its own file cache, its own msal) waits too, without a request; and
the Redis cache over a unix socket."""

from __future__ import annotations

import time

import pytest
from requests_ppauth_redis import make_redis_cache
from requests_ppauth_redis.testing import RedisServer

from requests_ppauth import PowerPlatformAuth, TokenAcquisitionError

from .conftest import _need_redis_server

APPS_SCOPE = "https://service.powerapps.com//.default"


def _get(emu):
    return PowerPlatformAuth(cache=make_redis_cache({}), verify=emu.ca_bundle).provider.get(
        APPS_SCOPE
    )


def test_a_retry_after_holds_every_machine_without_a_request(
    redis_env, ppauth_env, ppauth_emulator, tmp_path
):
    emu = ppauth_emulator
    ppauth_env.use_emulator(emu)
    emu.inject("token", status=429, retry_after=30, times=None)
    with pytest.raises(TokenAcquisitionError) as first:
        _get(emu)
    assert first.value.retry_after is not None and 25 < first.value.retry_after <= 30.01
    assert emu.count("token") == 1
    # another machine: its own file cache, its own process state; only Redis is shared
    ppauth_env.set(PPAUTH_CACHE_DIR=str(tmp_path / "machine-2"))
    with pytest.raises(TokenAcquisitionError) as second:
        _get(emu)
    assert second.value.error == first.value.error
    assert second.value.retry_after is not None and 20 < second.value.retry_after <= 30.01
    assert emu.count("token") == 1, (
        f"a second machine asked the identity provider during its Retry-After: "
        f"{emu.count('token')} token requests"
    )


def test_a_dead_identity_provider_backs_off_the_fleet(
    redis_env, ppauth_env, ppauth_emulator, tmp_path
):
    emu = ppauth_emulator
    ppauth_env.use_emulator(emu)
    emu.inject("token", drop=True, times=None)  # the connection dies: no answer at all
    with pytest.raises(TokenAcquisitionError):
        _get(emu)
    made = emu.count("token")
    assert made >= 1
    ppauth_env.set(PPAUTH_CACHE_DIR=str(tmp_path / "machine-2"))
    with pytest.raises(TokenAcquisitionError) as held:
        _get(emu)
    assert held.value.retry_after is not None and "next token request" in str(held.value)
    assert emu.count("token") == made, "the second machine did not see the fleet's back-off"
    # the identity provider back and the back-off over: a token ends it for everyone
    emu.clear_faults()
    ppauth_env.set(PPAUTH_CACHE_DIR=str(tmp_path / "machine-3"))
    # (the first record holds for about 1 s; a token then replaces it in Redis)
    time.sleep(held.value.retry_after + 0.05)
    token = _get(emu).token
    ppauth_env.set(PPAUTH_CACHE_DIR=str(tmp_path / "machine-4"))
    assert _get(emu).token == token
    assert emu.count("token") == made + 1


def test_a_unix_socket_url(ppauth_env, ppauth_emulator, cache_key, tmp_path):
    _need_redis_server()
    socket = tmp_path / "redis.sock"
    with RedisServer(extra=["--unixsocket", str(socket), "--unixsocketperm", "700"]) as server:
        ppauth_env.use_emulator(ppauth_emulator)
        ppauth_env.set(
            PPAUTH_REDIS_URL=f"unix://{socket}?db=0",
            PPAUTH_REDIS_PASSWORD=server.password,
            PPAUTH_CACHE_KEY=cache_key,
        )
        cache = make_redis_cache({})
        assert str(socket) in cache.location and server.password not in repr(cache)
        first = PowerPlatformAuth(cache=cache, verify=ppauth_emulator.ca_bundle)
        token = first.provider.get(APPS_SCOPE).token
        again = PowerPlatformAuth(cache=make_redis_cache({}), verify=ppauth_emulator.ca_bundle)
        assert again.provider.get(APPS_SCOPE).token == token
        assert ppauth_emulator.count("token") == 1
