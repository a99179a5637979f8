"""``ppauth doctor`` and ``ppauth cache path|list|clear`` on the Redis cache, run in
this process through :func:`requests_ppauth.cli.main` (the command line's own entry
point: argument parsing, the backend chosen from ``PPAUTH_CACHE=redis``, the failure
line and hint), against a real ``redis-server`` and the emulator.

What each command must show: doctor an ok line per check (reachable, authenticated,
TLS, the key sealing a canary, the stored entries opening) or a fail line naming what
to fix; the cache commands the entries without a token, the URL without a password.
No password, cache key or token appears in any output.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from typing import Any

import pytest
from requests_ppauth_redis._fallback import RedisCache
from requests_ppauth_redis.testing import RedisServer, free_port, new_cache_key, redis_server_path

from requests_ppauth import PowerPlatformAuth
from requests_ppauth.cache.seal import Sealer, parse_keys
from requests_ppauth.cli import main

APPS_SCOPE = "https://service.powerapps.com//.default"
PP_SCOPE = "https://api.powerplatform.com/.default"


def key_id(key: str) -> str:
    return Sealer(parse_keys(key, "test key")).key_id


def ppauth(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """``ppauth ARGV`` in this process: (exit status, stdout, stderr)."""
    capsys.readouterr()  # drop what came before
    status = main(list(argv))
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return status, out, err


def doctor(capsys: pytest.CaptureFixture[str]) -> tuple[dict[str, Any], str]:
    """``ppauth doctor --json``: the cache check, and all the output (to search)."""
    _, out, err = ppauth(capsys, "doctor", "--json")
    data = json.loads(out)
    (check,) = [c for c in data["checks"] if c["name"] == "cache"]
    return check, out + err


def fetch(scope: str = APPS_SCOPE) -> str:
    """A token through PowerPlatformAuth on the configured cache (PPAUTH_* set)."""
    auth = PowerPlatformAuth(cache="redis")
    assert isinstance(auth.provider.cache, RedisCache)
    return auth.provider.get(scope).token


@pytest.fixture
def emu(ppauth_emulator, ppauth_env, redis_env):
    """The emulator's sample app in PPAUTH_*, and PPAUTH_CACHE=redis on this test's server."""
    ppauth_env.use_emulator(ppauth_emulator, "secret")
    ppauth_env.set(PPAUTH_CACHE="redis")
    return ppauth_emulator


@pytest.fixture
def tls_server() -> Iterator[RedisServer]:
    """A fresh TLS-only ``redis-server`` (``rediss://``) with a test-CA certificate."""
    if redis_server_path() is None:
        if os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no"):
            pytest.fail("redis-server not found and CI is set", pytrace=False)
        pytest.skip("redis-server not found (Debian/Ubuntu: apt-get install redis-server)")
    with RedisServer(tls=True) as server:
        yield server


# -- ppauth doctor ------------------------------------------------------------------------


def test_doctor_on_redis_all_good(emu, redis_env, cache_key, capsys):
    token = fetch()
    check, output = doctor(capsys)
    assert check["status"] == "ok", check
    detail = check["detail"]
    assert detail.startswith(f"{redis_env.url_without_password} {{ppauth}}: "), detail
    assert f"reachable: {redis_env.url_without_password} (Redis 7" in detail, detail
    assert "; authenticated;" in detail, detail
    assert "TLS: not used" in detail, detail
    assert f"a canary entry sealed and opened (key ids {key_id(cache_key)})" in detail, detail
    assert re.search(r"entries: \d+ stored, all open with this key", detail), detail
    for secret in (redis_env.password, cache_key, token):
        assert secret not in output
    # the canary was deleted: only what the token fetch stored remains
    client = redis_env.client()
    assert not client.keys("{ppauth}:canary:*")


def test_doctor_on_rediss_says_tls_verified(
    tls_server, cache_key, ppauth_env, ppauth_emulator, capsys
):
    ppauth_env.use_emulator(ppauth_emulator, "secret")
    ppauth_env.set(
        PPAUTH_CACHE="redis",
        PPAUTH_REDIS_URL=tls_server.url,
        PPAUTH_REDIS_CA_BUNDLE=tls_server.ca_bundle,
        PPAUTH_CACHE_KEY=cache_key,
    )
    check, output = doctor(capsys)
    assert check["status"] == "ok", check
    assert f"reachable: {tls_server.url_without_password}" in check["detail"]
    assert f"TLS: server certificate verified against {tls_server.ca_bundle}" in check["detail"]
    assert "entries: none stored yet" in check["detail"], check
    assert tls_server.password not in output and cache_key not in output


def test_doctor_on_rediss_without_the_ca_fails_naming_tls(
    tls_server, cache_key, ppauth_env, ppauth_emulator, capsys
):
    ppauth_env.use_emulator(ppauth_emulator, "secret")
    ppauth_env.set(
        PPAUTH_CACHE="redis", PPAUTH_REDIS_URL=tls_server.url, PPAUTH_CACHE_KEY=cache_key
    )
    check, output = doctor(capsys)
    assert check["status"] == "fail", check
    assert "TLS" in check["detail"] and tls_server.url_without_password in check["detail"]
    assert tls_server.password not in output


def test_doctor_fails_on_a_wrong_password_without_showing_it(emu, redis_env, capsys, ppauth_env):
    wrong = "not-the-password-" + os.urandom(4).hex()
    ppauth_env.set(PPAUTH_REDIS_URL=redis_env.url.replace(redis_env.password, wrong))
    status, out, err = ppauth(capsys, "doctor")
    assert status == 1
    assert "FAIL  cache" in out, out
    (line,) = [ln for ln in out.splitlines() if "FAIL  cache" in ln]
    assert "refused the credentials" in line and redis_env.url_without_password in line, line
    assert "check the password" in out, out
    for secret in (wrong, redis_env.password):
        assert secret not in out + err
    assert "1 check failed." in out, out  # the credential, authority and token still pass


def test_doctor_fails_on_an_unreachable_redis(emu, capsys, ppauth_env, cache_key):
    port = free_port()
    password = os.urandom(8).hex()
    ppauth_env.set(PPAUTH_REDIS_URL=f"redis://:{password}@127.0.0.1:{port}/0")
    check, output = doctor(capsys)
    assert check["status"] == "fail", check
    assert f"Redis at redis://127.0.0.1:{port}/0 did not answer" in check["detail"], check
    assert password not in output and cache_key not in output


def test_cache_list_with_redis_down_warns_once(emu, capsys, ppauth_env, cache_key):
    """The plugin logs the outage and warns it (CacheWarning): the command shows it once."""
    from requests_ppauth_redis import _warnings

    _warnings.reset()
    port = free_port()
    ppauth_env.set(PPAUTH_REDIS_URL=f"redis://127.0.0.1:{port}/0")
    status, out, err = ppauth(capsys, "cache", "list")
    assert status == 0, err
    lines = [line for line in err.splitlines() if "did not answer" in line]
    assert len(lines) == 1, err
    assert lines[0].startswith("ppauth: warning: Redis at") and "file cache" in lines[0]
    assert "0 tokens" in out


def test_doctor_fails_when_no_stored_entry_opens_with_this_key(
    emu, redis_env, cache_key, ppauth_env, capsys
):
    token = fetch()  # sealed with the fleet's key
    other = new_cache_key()
    ppauth_env.set(PPAUTH_CACHE_KEY=other)  # this machine has another one
    check, output = doctor(capsys)
    assert check["status"] == "fail", check
    detail = check["detail"]
    assert "none of" in detail and "stored entries opens here" in detail, detail
    assert f"sealed with key id {key_id(cache_key)}" in detail, detail
    assert f"this machine has key ids {key_id(other)}" in detail, detail
    assert "PPAUTH_CACHE_KEY" in check["hint"] + detail
    for secret in (cache_key, other, token, redis_env.password):
        assert secret not in output

    # the fleet's key listed after the new one (a rotation): everything opens again
    ppauth_env.set(PPAUTH_CACHE_KEY=f"{other},{cache_key}")
    check, _ = doctor(capsys)
    assert check["status"] == "ok", check
    assert re.search(r"entries: \d+ stored, all open with this key", check["detail"]), check


def test_doctor_reports_but_passes_entries_left_by_a_retired_key(
    emu, redis_env, cache_key, ppauth_env, capsys
):
    fetch(APPS_SCOPE)  # under the old key
    new = new_cache_key()
    ppauth_env.set(PPAUTH_CACHE_KEY=new)
    fetch(PP_SCOPE)  # another token, under the new key
    assert emu.count("token") == 2
    check, output = doctor(capsys)
    assert check["status"] == "ok", check
    found = re.search(
        r"entries: (\d+) of (\d+) open with this key; (\d+) sealed with key id ", check["detail"]
    )
    assert found, check["detail"]
    opened, total, stale = map(int, found.groups())
    assert opened >= 1 and stale >= 1 and opened + stale == total, check["detail"]
    assert f"sealed with key id {key_id(cache_key)}" in check["detail"]
    assert cache_key not in output and new not in output


def test_doctor_fails_on_plaintext_entries_read_with_a_key(emu, redis_env, ppauth_env, capsys):
    ppauth_env.set(PPAUTH_CACHE=None)
    auth = PowerPlatformAuth(cache={"backend": "redis", "encryption": "none"})
    auth.provider.get(APPS_SCOPE)
    ppauth_env.set(PPAUTH_CACHE="redis")  # this machine seals; the fleet stores plaintext
    check, _ = doctor(capsys)
    assert check["status"] == "fail", check
    assert '1 not sealed (written with encryption = "none")' in check["detail"], check
    assert "the same encryption setting everywhere" in check["hint"], check


# -- ppauth cache path|list|clear -------------------------------------------------------------


def test_cache_list_shows_the_token_without_its_secret(emu, redis_env, cache_key, capsys):
    token = fetch()
    status, out, err = ppauth(capsys, "cache", "list")
    assert status == 0, err
    assert out.startswith(f"{redis_env.url_without_password} {{ppauth}}: 1 token\n"), out
    assert APPS_SCOPE in out and emu.sample.client_id in out and emu.sample.tenant_id in out
    status, out_json, _ = ppauth(capsys, "cache", "list", "--json")
    data = json.loads(out_json)
    assert [t["scope"] for t in data["tokens"]] == [APPS_SCOPE], data
    for text in (out + err, out_json):
        for secret in (token, token.split(".")[1], redis_env.password, cache_key):
            assert secret not in text


def test_cache_clear_empties_the_prefix_in_redis(emu, redis_env, capsys):
    fetch()
    client = redis_env.client()
    assert client.keys("{ppauth}:*"), "the token fetch stored nothing in Redis"
    status, out, err = ppauth(capsys, "cache", "clear")
    assert status == 0, err
    assert out.startswith(f"{redis_env.url_without_password} {{ppauth}}: removed 1 token "), out
    assert client.keys("{ppauth}*") == []
    assert client.dbsize() == 0
    status, out, _ = ppauth(capsys, "cache", "list")
    assert status == 0 and ": 0 tokens" in out, out
    status, out, _ = ppauth(capsys, "cache", "clear")
    assert status == 0 and "nothing to clear" in out, out
    assert redis_env.password not in out


def test_cache_path_shows_the_url_without_its_password(emu, redis_env, capsys):
    status, out, err = ppauth(capsys, "cache", "path")
    assert status == 0, err
    assert out == f"{redis_env.url_without_password} {{ppauth}}\n"
    assert redis_env.password not in out + err


def test_cache_path_says_entries_are_sealed_and_by_which_key(emu, cache_key, capsys):
    _, out, err = ppauth(capsys, "cache", "path")
    assert f"entries sealed (AES-256-GCM), key ids {key_id(cache_key)}" in err, err
    _, out, _ = ppauth(capsys, "cache", "path", "--json")
    data = json.loads(out)
    assert data["sealed"] is True and data["key_ids"] == [key_id(cache_key)], data
    assert cache_key not in out + err
