"""``requests_ppauth.httpx.PowerPlatformAuth`` with real httpx clients against the emulator.

httpx ignores ``REQUESTS_CA_BUNDLE``: the clients get ``verify=`` an SSL context that
trusts the emulator's CA.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from requests_ppauth import HostNotAllowedError
from requests_ppauth.auth import claims_from_challenge
from requests_ppauth.credentials import ClientSecret
from requests_ppauth.httpx import PowerPlatformAuth
from requests_ppauth.testing import Emulator

POWERAPPS_SCOPE = "https://service.powerapps.com//.default"
BAP_ENVIRONMENTS = "/providers/Microsoft.BusinessAppPlatform/scopes/admin/environments"
PARAMS = {"api-version": "2020-10-01"}


def make_auth(emu: Emulator, **options: Any) -> PowerPlatformAuth:
    s = emu.sample
    assert s is not None
    return PowerPlatformAuth(
        credential=ClientSecret(
            tenant_id=s.tenant_id,
            client_id=s.client_id,
            secret=s.client_secret,
            authority_host=emu.authority_host,
        ),
        verify=emu.ca_bundle,
        hosts={emu.api_url.removeprefix("https://"): POWERAPPS_SCOPE},
        **options,
    )


def context(emu: Emulator) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=emu.ca_bundle)


@pytest.fixture
def client(ppauth_emulator: Emulator) -> Iterator[httpx.Client]:
    emu = ppauth_emulator
    with httpx.Client(auth=make_auth(emu), verify=context(emu), timeout=10) as c:
        yield c


def bap_statuses(emu: Emulator) -> list[int]:
    return [r.status for r in emu.requests() if r.path == BAP_ENVIRONMENTS]


# -- sync ---------------------------------------------------------------------------------
def test_sync_client_gets_one_token_for_many_requests(ppauth_emulator, client):
    emu = ppauth_emulator
    for _ in range(3):
        resp = client.get(f"{emu.api_url}{BAP_ENVIRONMENTS}", params=PARAMS)
        assert resp.status_code == 200, resp.text
    assert emu.count("token") == 1
    sent = [r.authorization for r in emu.requests() if r.path == BAP_ENVIRONMENTS]
    assert len(sent) == 3 and all(a and a.startswith("Bearer ") for a in sent)


def test_a_host_outside_the_allow_list_gets_nothing(ppauth_emulator, client):
    emu = ppauth_emulator
    with pytest.raises(HostNotAllowedError):
        client.get(f"{emu.foreign_url}/anything")
    assert emu.count("foreign") == 0 and emu.count("token") == 0


def test_no_token_across_hosts_on_redirect(ppauth_emulator, client):
    emu = ppauth_emulator
    resp = client.get(f"{emu.api_url}/redirect", follow_redirects=True)
    assert resp.status_code == 200
    assert resp.json() == {"host": "foreign", "authorization_received": False}
    [redirect] = emu.requests("redirect")
    assert redirect.authorization and redirect.authorization.startswith("Bearer ")
    [landing] = emu.requests("foreign")
    assert landing.authorization is None


def test_one_401_retry_then_the_caller_sees_the_401(ppauth_emulator, client):
    emu = ppauth_emulator
    url = f"{emu.api_url}{BAP_ENVIRONMENTS}"
    assert client.get(url, params=PARAMS).status_code == 200
    emu.revoke()
    emu.reset_counts()
    resp = client.post(url, params=PARAMS, json={"replayed": True})  # a body in memory
    assert bap_statuses(emu) == [401, resp.status_code] and resp.status_code != 401
    assert [h.status_code for h in resp.history] == [401]
    assert emu.count("token") == 1

    # the request and its resend both refused: one resend, then the caller sees the 401
    emu.inject("environments", status=401, times=2)
    emu.reset_counts()
    resp = client.get(url, params=PARAMS)
    assert resp.status_code == 401
    assert bap_statuses(emu) == [401, 401]
    assert emu.count("token") == 1


def test_a_stream_body_is_not_resent(ppauth_emulator, client):
    emu = ppauth_emulator
    url = f"{emu.api_url}{BAP_ENVIRONMENTS}"
    assert client.get(url, params=PARAMS).status_code == 200
    emu.revoke()
    emu.reset_counts()
    resp = client.post(url, params=PARAMS, content=iter([b"a", b"b"]))
    assert resp.status_code == 401
    assert bap_statuses(emu) == [401] and emu.count("token") == 0


def test_claims_challenge_with_httpx(ppauth_emulator, client):
    emu = ppauth_emulator
    url = f"{emu.api_url}{BAP_ENVIRONMENTS}"
    assert client.get(url, params=PARAMS).status_code == 200
    first = emu.requests("token")[-1]
    assert "claims" not in first.form_fields
    [token] = [r.authorization for r in emu.requests() if r.path == BAP_ENVIRONMENTS]
    assert token is not None
    emu.revoke(token.removeprefix("Bearer "), claims_challenge=True)
    emu.reset_counts()

    resp = client.get(url, params=PARAMS)
    assert resp.status_code == 200, resp.text
    assert claims_from_challenge(resp.history[0].headers["WWW-Authenticate"]) is not None
    assert bap_statuses(emu) == [401, 200]
    (rec,) = emu.requests("token")
    assert "claims" in rec.form_fields


# -- async --------------------------------------------------------------------------------
def test_async_client_shares_the_token_with_the_requests_auth(ppauth_emulator):
    import requests

    emu = ppauth_emulator
    auth = make_auth(emu)
    url = f"{emu.api_url}{BAP_ENVIRONMENTS}"
    resp = requests.get(url, params=PARAMS, auth=auth.requests_auth, verify=emu.ca_bundle)
    assert resp.status_code == 200
    # a new httpx auth on the same shared (file) cache: a cache hit too
    other = make_auth(emu)

    async def main() -> list[int]:
        async with httpx.AsyncClient(verify=context(emu), timeout=10) as c:
            got = []
            for a in (auth, other):
                r = await c.get(url, params=PARAMS, auth=a)
                got.append(r.status_code)
            redirected = await c.get(f"{emu.api_url}/redirect", auth=auth, follow_redirects=True)
            assert redirected.json()["authorization_received"] is False
            return got

    assert asyncio.run(main()) == [200, 200]
    assert emu.count("token") == 1
    [landing] = emu.requests("foreign")
    assert landing.authorization is None


def test_async_retry_and_claims_challenge(ppauth_emulator):
    emu = ppauth_emulator
    auth = make_auth(emu)
    url = f"{emu.api_url}{BAP_ENVIRONMENTS}"

    async def get(c: httpx.AsyncClient) -> httpx.Response:
        return await c.get(url, params=PARAMS)

    async def main() -> None:
        async with httpx.AsyncClient(auth=auth, verify=context(emu), timeout=10) as c:
            assert (await get(c)).status_code == 200
            emu.revoke()
            emu.reset_counts()
            resp = await get(c)
            assert resp.status_code == 200 and [h.status_code for h in resp.history] == [401]
            assert emu.count("token") == 1
            token = auth.provider.tokens[POWERAPPS_SCOPE].token
            emu.revoke(token, claims_challenge=True)
            emu.reset_counts()
            resp = await get(c)
            assert resp.status_code == 200
            assert bap_statuses(emu) == [401, 200]
            (rec,) = emu.requests("token")
            assert "claims" in rec.form_fields

    asyncio.run(main())


def test_async_acquisition_does_not_block_the_loop(ppauth_emulator):
    emu = ppauth_emulator
    auth = make_auth(emu, cache=False)
    url = f"{emu.api_url}{BAP_ENVIRONMENTS}"
    emu.inject("token", latency=0.5)

    async def main() -> tuple[float, float, int]:
        gaps: list[float] = []
        done = asyncio.Event()

        async def tick() -> None:
            last = time.perf_counter()
            while not done.is_set():
                await asyncio.sleep(0.001)
                now = time.perf_counter()
                gaps.append(now - last)
                last = now

        ticker = asyncio.create_task(tick())
        start = time.perf_counter()
        async with httpx.AsyncClient(auth=auth, verify=context(emu), timeout=10) as c:
            statuses = await asyncio.gather(*(c.get(url, params=PARAMS) for _ in range(20)))
        took = time.perf_counter() - start
        done.set()
        await ticker
        assert all(r.status_code == 200 for r in statuses)
        return took, max(gaps), len(gaps)

    took, worst_gap, ticks = asyncio.run(main())
    assert took >= 0.5  # the slow identity provider was waited for
    assert emu.count("token") == 1  # 20 coroutines, one token request
    # the loop kept ticking while it waited (a blocked loop shows one gap of >= 0.5 s)
    assert worst_gap < 0.25, (worst_gap, ticks)
    assert ticks > 50


def test_the_core_package_does_not_import_httpx():
    import subprocess
    import sys

    code = (
        "import sys, requests_ppauth, requests_ppauth.retries\n"
        "assert callable(requests_ppauth.session), requests_ppauth.session\n"
        "requests_ppauth.session(cache=False)\n"
        "print(sorted(m for m in ('httpx', 'msal', 'anyio', 'azure.core') if m in sys.modules))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert out.stdout.strip() == "[]"
