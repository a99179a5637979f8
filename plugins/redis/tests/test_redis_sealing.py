"""Values in Redis are sealed: a wrong key, a retired key, a changed value or a value
copied to another entry is a miss and one warning per process, never a crash and
never a token; rotation writes with the new key and still reads the old."""

from __future__ import annotations

import warnings

from requests_ppauth_redis import _warnings, make_redis_cache
from requests_ppauth_redis.testing import new_cache_key as new_key

from requests_ppauth import ClientSecret, PowerPlatformAuth
from requests_ppauth.cache import CacheWarning, Op
from requests_ppauth.cache.seal import Sealer, parse_keys

APPS_SCOPE = "https://service.powerapps.com//.default"


def _cache(server, ppauth_env, key):
    ppauth_env.set(PPAUTH_CACHE_KEY=key, PPAUTH_REDIS_URL=server.url)
    return make_redis_cache({})


def _reads(cache, keys, times=3):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        results = [cache.get(keys) for _ in range(times)]
    return results, [w for w in caught if issubclass(w.category, CacheWarning)]


def test_a_wrong_key_is_a_miss_and_one_warning(redis_server, ppauth_env):
    writer = _cache(redis_server, ppauth_env, new_key())
    writer.apply([Op("at:k", {"secret": "s"}), Op("msal:p", fields={"a": 1})])
    reader = _cache(redis_server, ppauth_env, new_key())
    results, caught = _reads(reader, ["at:k", "msal:p"])
    assert results == [{}, {}, {}]
    assert len(caught) == 1, f"expected one warning per process, got {[str(w) for w in caught]}"
    assert "PPAUTH_CACHE_KEY" in str(caught[0].message)
    assert len(reader.read_all()) == 0


def test_rotation_writes_with_the_new_key_and_reads_the_old(redis_server, ppauth_env):
    old, new = new_key(), new_key()
    _cache(redis_server, ppauth_env, old).apply([Op("at:old", {"secret": "o"})])
    rotated = _cache(redis_server, ppauth_env, f"{new},{old}")
    results, caught = _reads(rotated, ["at:old"], times=1)
    assert results == [{"at:old": {"secret": "o"}}] and not caught
    rotated.apply([Op("at:new", {"secret": "n"})])
    blob = redis_server.client().get("{ppauth}:e:at:new")
    assert Sealer(parse_keys(new, "new")).open("{ppauth}:e:at:new", blob) == b'{"secret":"n"}'
    # once the old key is dropped, what it sealed is a miss; what the new one sealed reads
    _warnings.reset()
    only_new = _cache(redis_server, ppauth_env, new)
    results, caught = _reads(only_new, ["at:old", "at:new"], times=2)
    assert results == [{"at:new": {"secret": "n"}}] * 2
    assert len(caught) == 1


def test_a_tampered_value_is_a_miss_a_warning_and_a_new_token(
    redis_server, ppauth_env, ppauth_emulator, cache_key
):
    emu, s = ppauth_emulator, ppauth_emulator.sample
    ppauth_env.set(PPAUTH_CACHE_KEY=cache_key, PPAUTH_REDIS_URL=redis_server.url)

    def token():
        cred = ClientSecret(
            tenant_id=s.tenant_id,
            client_id=s.client_id,
            secret=s.client_secret,
            authority_host=emu.authority_host,
        )
        auth = PowerPlatformAuth(credential=cred, verify=emu.ca_bundle, cache="redis")
        return auth.provider.get(APPS_SCOPE).token

    first = token()
    client = redis_server.client()
    (name,) = client.keys("{ppauth}:e:at:*")
    blob = bytearray(client.get(name))
    blob[-1] ^= 0x01  # one bit of the tag
    client.set(name, bytes(blob), keepttl=True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        second = token()
        third = token()
    seal_warnings = [w for w in caught if "does not open" in str(w.message)]
    assert len(seal_warnings) == 1, [str(w.message) for w in caught]
    assert emu.count("token") == 2, "the tampered token must be replaced by one new request"
    assert second == third != first
    assert client.get(name) != bytes(blob), "the new token was not stored over the tampered one"


def test_a_value_copied_to_another_entry_does_not_open(redis_server, ppauth_env, cache_key):
    cache = _cache(redis_server, ppauth_env, cache_key)
    cache.apply([Op("at:alice", {"secret": "alice's token"})])
    client = redis_server.client()
    client.set("{ppauth}:e:at:mallory", client.get("{ppauth}:e:at:alice"))
    results, caught = _reads(cache, ["at:mallory", "at:alice"], times=1)
    assert results == [{"at:alice": {"secret": "alice's token"}}]
    assert len(caught) == 1


def test_a_patch_over_a_value_that_does_not_open_starts_afresh(redis_server, ppauth_env, cache_key):
    client = redis_server.client()
    client.set("{ppauth}:e:msal:p", b"PPS\x01garbage" + b"\x00" * 40)
    cache = _cache(redis_server, ppauth_env, cache_key)
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        cache.apply([Op("msal:p", fields={"a": 1})])
        assert cache.get(["msal:p"]) == {"msal:p": {"a": 1}}
