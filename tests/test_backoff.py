"""Back-off when the identity provider cannot be reached, and short refreshes.

With no valid token in hand, a dropped connection (or a 429/503 with Retry-After)
leaves a back-off record in the shared cache: until it ends, every caller in every
process gets the same typed error at once, without a request; the schedule doubles
from ``backoff_base`` to ``backoff_cap``; a token (or any answer that is not a
passing failure) ends it. With a valid token in hand, a refresh uses a short timeout
and the valid token is served when it fails. Real processes, the real emulator with
its fault injection, nothing mocked.
"""

from __future__ import annotations

import json
import logging
import math
import time

import pytest
import requests

from requests_ppauth import ClientSecret, PowerPlatformAuth, TokenAcquisitionError
from requests_ppauth.tokens import REFRESH_TIMEOUT, RETRY_BACKOFF
from tests._cache_state import entries, token_entry_key
from tests._cache_worker import BAP_PATH, SCOPE
from tests.cache._calls import api_get, auth_for, sent_token
from tests.test_cli import ok, ppauth

NORMAL_READ_TIMEOUT = 30.0  # requests_ppauth._http.DEFAULT_TIMEOUT's read timeout


def slot(cache_dir, auth: PowerPlatformAuth) -> dict | None:
    """What the cache holds in the ``at:`` slot of the auth's scope: its token, or (the
    documented format) its back-off record, with a ``failures`` count and no secret."""
    return entries(cache_dir).get(token_entry_key(auth.provider.key(SCOPE)))


def backoff_records(cache_dir) -> list[dict]:
    return [v for k, v in entries(cache_dir).items() if k.startswith("at:") and "secret" not in v]


def call_fails(emu, auth: PowerPlatformAuth) -> TokenAcquisitionError:
    with pytest.raises(TokenAcquisitionError) as info:
        requests.get(emu.api_url + BAP_PATH, auth=auth, verify=emu.ca_bundle)
    return info.value


def max_attempts(seconds: float, base: float) -> int:
    """The most token requests the schedule allows in ``seconds``: attempt k+1 comes
    no sooner than base * (1 + 2 + ... + 2**(k-1)) = base * (2**k - 1) after the
    first, each one made under the key's lock after reading the record."""
    return 1 + math.floor(math.log2(seconds / base + 1))


# -- no token in hand: the shared back-off ------------------------------------------------


def test_processes_share_the_back_off_when_the_identity_provider_drops_connections(
    ppauth_emulator, ppauth_env, children
):
    emu = ppauth_emulator
    ppauth_env.use_emulator(emu, "secret")
    emu.inject("token", drop=True, times=None)
    processes, calls, pause, base = 4, 15, 0.1, 0.25
    kids = [
        children(
            "get-many",
            emu.api_url,
            emu.ca_bundle,
            str(calls),
            "--pause",
            str(pause),
            "--backoff-base",
            str(base),
            "--wait",
        )
        for _ in range(processes)
    ]
    for kid in kids:
        kid.ready()
    started = time.monotonic()
    for kid in kids:
        kid.go()
    outcomes = [call for kid in kids for call in kid.result()["calls"]]
    elapsed = time.monotonic() - started

    requested = emu.count("token")
    bound = max_attempts(elapsed, base)
    report = (
        f"{processes} processes x {calls} calls over {elapsed:.1f} s, token endpoint "
        f"dropping connections: {requested} token requests (schedule bound {bound}; "
        f"{processes * calls} without a back-off)"
    )
    print(report)
    assert 2 <= requested <= bound, report  # at least 2: a back-off ends
    assert len(outcomes) == processes * calls
    for call in outcomes:
        assert call["error"] == "network_error", call
        assert call["retryable"] is True, call
        assert 0 < call["retry_after"] <= base * 2**requested, call
        assert call["seconds"] < 5.0, call  # at once: nobody waits for the dead host
        assert "next token request" in call["message"], call
        assert emu.sample.client_secret not in call["message"]
    # the record every process read: one failure per request, no secret
    (record,) = backoff_records(ppauth_env.cache_dir)
    assert record["failures"] == requested, (record, report)
    assert record["error"] == "network_error"
    assert record["expires_on"] > time.time() - 5
    assert emu.sample.client_secret not in json.dumps(record)


def test_the_back_off_holds_then_a_token_ends_it(ppauth_emulator, ppauth_env):
    emu = ppauth_emulator
    ppauth_env.use_emulator(emu, "secret")
    auth = auth_for(emu)
    auth.provider.backoff_base = 0.3
    fault = emu.inject("token", drop=True, times=None)

    first = call_fails(emu, auth)
    assert (first.error, first.retryable) == ("network_error", True)
    assert first.retry_after is not None and 0.25 < first.retry_after <= 0.31
    assert "1 failure in a row" in str(first) and first.hint  # the original's hint kept
    held = call_fails(emu, auth)
    assert emu.count("token") == 1  # raised from the record, without a request
    assert held.error == "network_error" and held.retry_after is not None
    assert 0 < held.retry_after <= first.retry_after

    emu.clear_faults()  # the identity provider is back, the back-off still holds
    assert fault.fired == 1
    call_fails(emu, auth)
    assert emu.count("token") == 1

    time.sleep(0.35)  # the back-off ends: the next call asks, gets a token
    api_get(emu, auth)
    assert emu.count("token") == 2
    stored = slot(ppauth_env.cache_dir, auth)  # the token ended it, in the record's place
    assert stored is not None and "failures" not in stored
    assert stored["secret"] == auth.provider.tokens[SCOPE].token

    # a new failure starts the schedule afresh: the record was gone, not just run out
    auth.provider.forget(SCOPE)
    emu.inject("token", drop=True, times=None)
    again = call_fails(emu, auth)
    assert "1 failure in a row" in str(again), str(again)
    assert emu.count("token") == 3


def test_the_back_off_doubles_up_to_its_cap(ppauth_emulator, ppauth_env):
    emu = ppauth_emulator
    ppauth_env.use_emulator(emu, "secret")
    auth = auth_for(emu)
    auth.provider.backoff_base, auth.provider.backoff_cap = 0.05, 0.2
    emu.inject("token", drop=True, times=None)
    waits = []
    for _ in range(5):
        err = call_fails(emu, auth)
        assert err.retry_after is not None
        waits.append(err.retry_after)
        time.sleep(err.retry_after + 0.02)
    assert emu.count("token") == 5
    assert [round(w, 2) for w in waits] == [0.05, 0.1, 0.2, 0.2, 0.2]


def test_a_retry_after_without_a_token_holds_every_process(ppauth_emulator, ppauth_env, children):
    emu = ppauth_emulator
    ppauth_env.use_emulator(emu, "secret")
    emu.inject("token", status=429, retry_after=30, times=None)
    err = call_fails(emu, auth_for(emu))
    assert err.error == "temporarily_unavailable" and err.code == 50196
    assert err.retry_after is not None and 25 < err.retry_after <= 30.01

    # another process (msal's throttle is per process) waits too, without a request
    (call,) = children("get-many", emu.api_url, emu.ca_bundle, "1").result()["calls"]
    assert call["error"] == "temporarily_unavailable", call
    assert 20 < call["retry_after"] <= 30.01, call
    assert emu.count("token") == 1


def test_invalid_client_is_never_backed_off(ppauth_emulator, ppauth_env):
    emu = ppauth_emulator
    ppauth_env.use_emulator(emu, "secret")  # the CA bundle; the credential is given
    s = emu.sample
    cred = ClientSecret(
        tenant_id=s.tenant_id,
        client_id=s.client_id,
        secret="not-the-secret",
        authority_host=emu.authority_host,
    )
    auth = auth_for(emu, credential=cred)
    auth.provider.backoff_base = 0.2
    emu.inject("token", drop=True, times=1)
    assert call_fails(emu, auth).error == "network_error"
    time.sleep(0.25)  # that back-off ends; Entra ID then answers invalid_client

    for n in (2, 3):  # each a request: whoever fixes the secret must not wait
        err = call_fails(emu, auth)
        assert err.error == "invalid_client" and err.retry_after is None, str(err)
        assert "next token request" not in str(err)
        assert emu.count("token") == n
    assert slot(ppauth_env.cache_dir, auth) is None  # the answer ended it


def test_a_tls_failure_is_not_backed_off(ppauth_emulator, ppauth_env):
    """A wrong CA bundle is a setting to fix: the fix must work at the next call."""
    emu = ppauth_emulator
    ppauth_env.use_emulator(emu, "secret")
    auth = PowerPlatformAuth(
        hosts={emu.api_url.split("//")[1]: SCOPE}, verify=True
    )  # system CAs: the emulator's certificate fails
    for _ in range(2):
        err = call_fails(emu, auth)
        assert err.error == "network_error" and "SSLError" in str(err)
        assert err.retry_after is None and "next token request" not in str(err)
    assert backoff_records(ppauth_env.cache_dir) == []


def test_cache_list_shows_the_back_off_and_sign_out_removes_it(ppauth_emulator, ppauth_env):
    emu = ppauth_emulator
    ppauth_env.use_emulator(emu, "secret")
    auth = auth_for(emu)
    auth.provider.backoff_base = 120  # still held while the CLI starts
    emu.inject("token", drop=True, times=None)
    call_fails(emu, auth)

    listed = json.loads(ok(ppauth("cache", "list", "--json")))
    assert listed["tokens"] == []
    (row,) = listed["backoffs"]
    assert row["scope"] == SCOPE and row["client_id"] == emu.sample.client_id
    assert row["error"] == "network_error" and row["failures"] == 1
    text = ok(ppauth("cache", "list"))
    assert "0 tokens" in text and "backing off" in text and SCOPE in text
    assert emu.sample.client_secret not in text + json.dumps(listed)

    record = slot(ppauth_env.cache_dir, auth)
    assert record is not None and record["failures"] == 1
    auth.provider.sign_out()
    assert slot(ppauth_env.cache_dir, auth) is None
    emu.clear_faults()
    api_get(emu, auth)  # signed out: asked at once
    assert emu.count("token") == 2


# -- a valid token in hand: a short refresh ----------------------------------------------------


@pytest.mark.parametrize("provider", ["same", "fresh"])
def test_a_slow_identity_provider_does_not_hold_a_refresh_while_a_token_is_valid(
    ppauth_emulator, ppauth_env, caplog, provider
):
    """``same``: the provider that got the token refreshes (its msal app is built: the
    token request is slow). ``fresh``: a new process's provider finds the token in the
    cache and must build its msal app first (the authority's discovery is slow)."""
    emu = ppauth_emulator
    ppauth_env.use_emulator(emu, "secret")
    emu.policy.refresh_in = 1  # the token is due for refresh after 1 s, valid for an hour
    auth = auth_for(emu)
    first = sent_token(api_get(emu, auth))
    emu.policy.refresh_in = None
    time.sleep(1.1)
    if provider == "fresh":
        auth = auth_for(emu)
    emu.inject("identity", latency=2 * NORMAL_READ_TIMEOUT, times=None)
    caplog.set_level(logging.WARNING, logger="requests_ppauth")

    started = time.monotonic()
    r = api_get(emu, auth)
    waited = time.monotonic() - started

    assert sent_token(r) == first  # the valid token, served when the refresh gave up
    # about the short read timeout, not the normal one (a generous margin either way)
    assert REFRESH_TIMEOUT[1] - 0.5 <= waited < NORMAL_READ_TIMEOUT / 2, waited
    warned = [rec.getMessage() for rec in caplog.records if rec.levelno == logging.WARNING]
    assert any("still using the current token" in m for m in warned), warned
    for secret in (first, emu.sample.client_secret):
        assert secret not in caplog.text
    # the next try is RETRY_BACKOFF later: the next call does not wait
    started = time.monotonic()
    assert sent_token(api_get(emu, auth)) == first
    assert time.monotonic() - started < 2.0
    assert auth.provider.tokens[SCOPE].refresh_on > time.time() + RETRY_BACKOFF - 10
