"""When Redis is away a request still succeeds: this machine's file cache serves it,
one warning per process (not per request), and Redis is tried again after a back-off;
when it answers again, the tokens kept locally meanwhile are copied back where Redis
has none, so nothing the token's lifetime allows keeping is lost on either side."""

from __future__ import annotations

import time
import warnings

import pytest
from requests_ppauth_redis import make_redis_cache
from requests_ppauth_redis._fallback import FIRST_BACKOFF

from requests_ppauth import CacheError, PowerPlatformAuth

APPS_SCOPE = "https://service.powerapps.com//.default"


def _token(emu, cache):
    return PowerPlatformAuth(cache=cache, verify=emu.ca_bundle).provider.get(APPS_SCOPE).token


def test_an_outage_is_served_locally_then_healed_back_into_redis(
    redis_env, ppauth_env, ppauth_emulator, tmp_path
):
    emu, server = ppauth_emulator, redis_env
    ppauth_env.use_emulator(emu)
    cache = make_redis_cache({})
    server.kill()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        token = _token(emu, cache)
        for _ in range(5):  # more requests while Redis is away: no new warning
            assert _token(emu, cache) == token
    assert emu.count("token") == 1, f"Redis down: {emu.count('token')} token requests"
    down = [str(w.message) for w in caught if "did not answer" in str(w.message)]
    assert len(down) == 1, [str(w.message) for w in caught]
    assert server.password not in down[0]
    assert "file cache" in down[0]
    # a second backend on this machine (another process) reads the local copy
    assert _token(emu, make_redis_cache({}, check=False)) == token
    assert emu.count("token") == 1

    server.start()  # back, empty (no persistence)
    time.sleep(FIRST_BACKOFF + 0.2)  # the back-off before Redis is tried again
    assert cache.get(["at:nothing"]) == {}  # answered by Redis: sharing again
    assert cache.sharing
    # another machine (its own, empty file cache) finds the token in Redis
    ppauth_env.set(PPAUTH_CACHE_DIR=str(tmp_path / "machine-2"))
    assert _token(emu, make_redis_cache({})) == token
    assert emu.count("token") == 1, (
        f"the token kept locally during the outage was not copied back to Redis: "
        f"{emu.count('token')} token requests"
    )


def test_a_newer_token_in_redis_is_kept_over_the_local_copy(
    redis_env, ppauth_env, ppauth_emulator, tmp_path
):
    emu, server = ppauth_emulator, redis_env
    ppauth_env.use_emulator(emu)
    here = make_redis_cache({})
    server.kill()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        old = _token(emu, here)
    server.start()
    # meanwhile another machine stored its own token in the restarted Redis
    ppauth_env.set(PPAUTH_CACHE_DIR=str(tmp_path / "machine-2"))
    newer = _token(emu, make_redis_cache({}))
    assert newer != old and emu.count("token") == 2
    time.sleep(FIRST_BACKOFF + 0.2)
    here.get(["at:nothing"])  # back: the copy-back runs, and must not overwrite
    ppauth_env.set(PPAUTH_CACHE_DIR=str(tmp_path / "machine-3"))
    assert _token(emu, make_redis_cache({})) == newer
    assert emu.count("token") == 2


def test_without_the_fallback_an_outage_is_a_cache_error_and_the_request_still_works(
    redis_env, ppauth_env, ppauth_emulator, caplog
):
    emu, server = ppauth_emulator, redis_env
    ppauth_env.use_emulator(emu)
    cache = make_redis_cache({"fallback": "none"})
    server.kill()
    with pytest.raises(CacheError, match="did not answer") as exc:
        cache.get(["at:x"])
    assert server.password not in str(exc.value)
    with caplog.at_level("WARNING", logger="requests_ppauth"):
        assert _token(emu, cache)  # the core goes on without a cache, and says so
    assert emu.count("token") == 1
    said = [r.getMessage() for r in caplog.records if r.name == "requests_ppauth"]
    assert any("getting tokens without it" in line for line in said), said
    assert not any(server.password in line for line in said)
