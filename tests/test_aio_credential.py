"""``requests_ppauth.aio.PowerPlatformCredential``: azure-core's async protocols, one
token request for many coroutines (and threads beside them), an event loop that keeps
running while the identity provider is slow, cancellation, errors and claims, all
against the emulator."""

from __future__ import annotations

import asyncio
import base64
import re
import subprocess
import sys
import threading
import time

import pytest
import requests
from azure.core.credentials import AccessToken, AccessTokenInfo
from azure.core.credentials_async import AsyncSupportsTokenInfo, AsyncTokenCredential

from requests_ppauth import PowerPlatformAuth, TokenAcquisitionError
from requests_ppauth import PowerPlatformCredential as SyncCredential
from requests_ppauth.aio import PowerPlatformCredential
from requests_ppauth.azure import MultipleResourcesError, TenantMismatchError

APPS_SCOPE = "https://service.powerapps.com//.default"
ENVS = "/providers/Microsoft.BusinessAppPlatform/scopes/admin/environments?api-version=2020-10-01"
LATENCY = 0.5


@pytest.fixture
def emu(ppauth_emulator, ppauth_env):
    ppauth_env.use_emulator(ppauth_emulator)
    return ppauth_emulator


def test_importing_aio_loads_azure_core_but_not_msal():
    code = (
        "import sys, requests_ppauth.aio\n"
        "assert 'azure.core' in sys.modules and 'msal' not in sys.modules\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr


def test_it_is_the_async_protocols(emu):
    cred = PowerPlatformCredential()
    assert isinstance(cred, AsyncTokenCredential)
    assert isinstance(cred, AsyncSupportsTokenInfo)
    assert repr(cred) == "aio.PowerPlatformCredential(profile=None, cloud=None)"


def test_get_token_get_token_info_and_async_with(emu):
    async def main() -> tuple[AccessToken, AccessTokenInfo]:
        async with PowerPlatformCredential() as cred:
            token = await cred.get_token(APPS_SCOPE)
            info = await cred.get_token_info(APPS_SCOPE)
            assert cred.flights_started == 1  # the second answer came from memory, on the loop
        return token, info

    token, info = asyncio.run(main())
    assert type(token) is AccessToken and type(info) is AccessTokenInfo
    assert info.token == token.token and info.refresh_on is not None
    assert info.refresh_on < info.expires_on == token.expires_on
    assert emu.count("token") == 1


def ticker(gaps: list[float], stop: asyncio.Event) -> asyncio.Task[None]:
    async def tick() -> None:
        last = time.perf_counter()
        while not stop.is_set():
            await asyncio.sleep(0.001)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now

    return asyncio.get_running_loop().create_task(tick())


def test_100_coroutines_make_one_request_and_the_loop_keeps_ticking(emu):
    emu.inject("token", latency=LATENCY, times=None)

    async def main() -> tuple[list[AccessToken], list[float], int]:
        gaps: list[float] = []
        stop = asyncio.Event()
        tick = ticker(gaps, stop)
        await asyncio.sleep(0.01)
        async with PowerPlatformCredential() as cred:
            tokens = await asyncio.gather(*(cred.get_token(APPS_SCOPE) for _ in range(100)))
            flights = cred.flights_started
        stop.set()
        await tick
        return tokens, gaps, flights

    started = time.perf_counter()
    tokens, gaps, flights = asyncio.run(main())
    assert time.perf_counter() - started >= LATENCY  # it did wait for the slow provider
    assert len({t.token for t in tokens}) == 1
    assert emu.count("token") == 1
    assert flights == 1
    # ticking every ms all along: the loop was never held for anything near the latency
    assert len(gaps) > 100
    assert max(gaps) < LATENCY / 3, max(gaps)


def test_threads_and_coroutines_share_one_request(emu):
    emu.inject("token", latency=LATENCY, times=None)
    sync_tokens: list[str] = []

    def in_thread() -> None:
        sync_tokens.append(SyncCredential().get_token(APPS_SCOPE).token)

    async def main() -> list[AccessToken]:
        async with PowerPlatformCredential() as cred:
            return await asyncio.gather(*(cred.get_token(APPS_SCOPE) for _ in range(20)))

    threads = [threading.Thread(target=in_thread) for _ in range(4)]
    for t in threads:
        t.start()
    tokens = asyncio.run(main())
    for t in threads:
        t.join()
    assert emu.count("token") == 1  # the shared cache's key lock: one request in all
    assert {t.token for t in tokens} == set(sync_tokens)


def test_a_cancelled_waiter_leaves_the_flight_to_the_others(emu):
    emu.inject("token", latency=LATENCY, times=None)

    async def main() -> tuple[list[AccessToken], int]:
        cred = PowerPlatformCredential()
        impatient = asyncio.ensure_future(
            asyncio.wait_for(cred.get_token(APPS_SCOPE), timeout=0.05)
        )
        patient = [asyncio.ensure_future(cred.get_token(APPS_SCOPE)) for _ in range(5)]
        with pytest.raises(TimeoutError):
            await impatient
        tokens = await asyncio.gather(*patient)
        await cred.close()
        return tokens, cred.flights_started

    tokens, flights = asyncio.run(main())
    assert len({t.token for t in tokens}) == 1 and flights == 1
    assert emu.count("token") == 1


def test_a_failed_flight_fails_every_waiter_with_one_request(emu):
    emu.inject("token", status=503, times=1)

    async def main() -> tuple[list[BaseException | AccessToken], BaseException | None, int]:
        async with PowerPlatformCredential() as cred:
            failed = await asyncio.gather(
                *(cred.get_token(APPS_SCOPE) for _ in range(10)), return_exceptions=True
            )
            flights = cred.flights_started
            try:  # the provider's back-off holds: raised again without a request
                await cred.get_token(APPS_SCOPE)
            except TokenAcquisitionError as exc:
                return failed, exc, flights
            return failed, None, flights

    failed, again, flights = asyncio.run(main())
    assert all(isinstance(f, TokenAcquisitionError) for f in failed), failed
    assert flights == 1
    assert isinstance(again, TokenAcquisitionError)
    assert emu.count("token") == 1


def test_scope_and_tenant_errors_are_raised_to_the_caller(emu):
    async def main() -> None:
        async with PowerPlatformCredential() as cred:
            with pytest.raises(MultipleResourcesError):
                await cred.get_token(APPS_SCOPE, "https://vault.azure.net/.default")
            with pytest.raises(TenantMismatchError):
                await cred.get_token_info(
                    APPS_SCOPE, options={"tenant_id": "22222222-3333-4444-5555-666666666666"}
                )

    asyncio.run(main())
    assert emu.count("token") == 0


def test_claims_get_a_new_token_and_are_stored(emu):
    url = emu.api_url + ENVS

    async def main() -> tuple[str, str, str]:
        async with PowerPlatformCredential() as cred:
            first = await cred.get_token(APPS_SCOPE)
            emu.revoke(claims_challenge=True)
            resp = await asyncio.to_thread(
                requests.get,
                url,
                headers={"Authorization": f"Bearer {first.token}"},
                verify=emu.ca_bundle,
                timeout=10,
            )
            assert resp.status_code == 401
            match = re.search(r'claims="([^"]+)"', resp.headers["WWW-Authenticate"])
            assert match
            claims = base64.b64decode(match[1]).decode()
            fresh = await asyncio.gather(
                *(cred.get_token(APPS_SCOPE, claims=claims) for _ in range(10))
            )
            later = await cred.get_token(APPS_SCOPE)
            assert len({t.token for t in fresh}) == 1
            return first.token, fresh[0].token, later.token

    first, fresh, later = asyncio.run(main())
    assert fresh != first and later == fresh
    assert emu.count("token") == 2
    ok = requests.get(
        url, headers={"Authorization": f"Bearer {fresh}"}, verify=emu.ca_bundle, timeout=10
    )
    assert ok.status_code == 200


def test_one_credential_on_two_event_loops_and_after_close(emu):
    cred = PowerPlatformCredential(auth=PowerPlatformAuth())

    async def once() -> str:
        token = await cred.get_token(APPS_SCOPE)
        await cred.close()
        return token.token

    assert asyncio.run(once()) == asyncio.run(once())
    assert emu.count("token") == 1
