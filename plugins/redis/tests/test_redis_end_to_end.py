"""The Redis cache through the public door: PowerPlatformAuth(cache="redis"),
PPAUTH_CACHE=redis and a profile's [profiles.<name>.redis] table, real requests to the
emulator, and what Redis ends up holding (sealed values, hashed names, TTLs)."""

from __future__ import annotations

import time

import requests
from requests_ppauth_redis._fallback import RedisCache

from requests_ppauth import ClientSecret, PowerPlatformAuth
from requests_ppauth.cache.seal import is_sealed

ENVS = "/providers/Microsoft.BusinessAppPlatform/scopes/admin/environments?api-version=2020-10-01"
APPS_SCOPE = "https://service.powerapps.com//.default"


def _auth(emu, **kwargs):
    s = emu.sample
    cred = ClientSecret(
        tenant_id=s.tenant_id,
        client_id=s.client_id,
        secret=s.client_secret,
        authority_host=emu.authority_host,
    )
    kwargs.setdefault("hosts", {emu.api_url.split("//")[1]: APPS_SCOPE})
    return PowerPlatformAuth(credential=cred, verify=emu.ca_bundle, **kwargs)


def _get(emu, auth):
    with requests.Session() as session:
        session.auth = auth
        return session.get(emu.api_url + ENVS, verify=emu.ca_bundle)


def test_requests_share_one_token_through_redis(redis_env, ppauth_emulator):
    emu = ppauth_emulator
    first = _get(emu, _auth(emu, cache="redis"))
    assert first.status_code == 200, first.text
    assert emu.count("token") == 1
    # a second auth (a new process would do the same) reads the token from Redis
    second = _get(emu, _auth(emu, cache="redis"))
    assert second.status_code == 200, second.text
    assert emu.count("token") == 1, (
        f"a second PowerPlatformAuth on the same Redis: expected no new token request, "
        f"got {emu.count('token') - 1}"
    )


def test_redis_holds_sealed_values_under_hashed_names_with_a_ttl(redis_env, ppauth_emulator):
    emu, sample = ppauth_emulator, ppauth_emulator.sample
    auth = _auth(emu, cache="redis")
    token = auth.provider.get(APPS_SCOPE).token
    client = redis_env.client()
    names = sorted(n.decode() for n in client.keys("*"))
    assert [n.split(":at:")[0] for n in names] == ["{ppauth}:e"], names
    for name in names:
        for plain in (sample.tenant_id, sample.client_id, "powerapps", emu.authority_host):
            assert plain.lower() not in name.lower(), f"{plain!r} is readable in the key {name}"
    value = client.get(names[0])
    assert is_sealed(value), f"the value in Redis is not sealed: {value[:20]!r}"
    assert token.encode() not in value and token.split(".")[1].encode() not in value
    ttl = client.ttl(names[0])
    entry = auth.provider.cache.get([names[0].split(":e:", 1)[1]])
    (stored,) = entry.values()
    want = stored["expires_on"] + 600 - time.time()
    assert abs(ttl - want) < 5, f"TTL {ttl} s: expected expires_on + PRUNE_AFTER ({want:.0f} s)"


def test_ppauth_cache_redis_selects_it(redis_env, ppauth_env, ppauth_emulator):
    ppauth_env.set(PPAUTH_CACHE="redis")
    auth = _auth(ppauth_emulator)
    assert isinstance(auth.provider.cache, RedisCache)
    assert auth.provider.cache.location == f"{redis_env.url_without_password} {{ppauth}}"
    assert _get(ppauth_emulator, auth).status_code == 200
    assert redis_env.client().keys("{ppauth}:e:at:*"), "PPAUTH_CACHE=redis stored nothing in Redis"


def test_a_profiles_redis_table_configures_the_backend(
    redis_server, cache_key, ppauth_env, ppauth_emulator
):
    # the profile's [profiles.default.redis] table reaches the factory under `cache = "redis"`
    ppauth_env.set(PPAUTH_CACHE_KEY=cache_key)
    password = redis_server.password
    url = redis_server.url_without_password
    ppauth_env.write_config(
        f'[profiles.default]\ncache = "redis"\n\n'
        f'[profiles.default.redis]\nurl = "{url}"\npassword = "{password}"\nprefix = "team-a"\n'
    )
    auth = _auth(ppauth_emulator)
    assert isinstance(auth.provider.cache, RedisCache)
    assert _get(ppauth_emulator, auth).status_code == 200
    names = [n.decode() for n in redis_server.client().keys("*")]
    assert names and all(n.startswith("{team-a}:e:at:") for n in names), names
    assert password not in repr(auth.provider.cache)
    assert password not in auth.provider.cache.location
