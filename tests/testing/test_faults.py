"""Fault injection: latency, throttling, 5xx, dropped connections, counting and matching."""

from __future__ import annotations

import time

import msal
import pytest
import requests

from requests_ppauth.testing import Emulator

SCOPE = "https://api.powerplatform.com/.default"


@pytest.fixture
def emu():
    with Emulator() as emulator:
        yield emulator


def token_post(emu: Emulator) -> requests.Response:
    """One raw client_credentials request, on a fresh connection."""
    s = emu.sample
    return requests.post(
        f"{emu.authority()}/oauth2/v2.0/token",
        data={
            "grant_type": "client_credentials",
            "client_id": s.client_id,
            "client_secret": s.client_secret,
            "scope": SCOPE,
        },
        verify=emu.ca_bundle,
        timeout=10,
    )


def discovery_get(emu: Emulator) -> requests.Response:
    return requests.get(
        f"{emu.authority()}/v2.0/.well-known/openid-configuration",
        verify=emu.ca_bundle,
        timeout=10,
    )


def msal_app(emu: Emulator) -> msal.ConfidentialClientApplication:
    s = emu.sample
    return msal.ConfidentialClientApplication(
        s.client_id,
        client_credential=s.client_secret,
        authority=emu.authority(),
        instance_discovery=False,
        http_client=emu.http_client(),
    )


# -- latency ---------------------------------------------------------------------


def test_latency_delays_the_response_and_lets_it_through(emu):
    fault = emu.inject("token", latency=0.3)

    started = time.monotonic()
    resp = token_post(emu)
    elapsed = time.monotonic() - started

    assert elapsed >= 0.3
    assert resp.status_code == 200
    assert "access_token" in resp.json()
    assert fault.fired == 1
    assert token_post(emu).status_code == 200
    assert [r.fault for r in emu.requests("token")] == ["latency 0.3s", None]


# -- throttling --------------------------------------------------------------------


def test_429_with_retry_after_on_the_token_endpoint(emu):
    emu.inject("token", status=429, retry_after=7)

    resp = token_post(emu)

    assert resp.status_code == 429
    assert resp.headers["Retry-After"] == "7"
    body = resp.json()
    assert body["error"] == "temporarily_unavailable"
    assert body["error_codes"] == [50196]
    assert body["error_description"].startswith("AADSTS50196")
    assert token_post(emu).status_code == 200  # times=1 by default


def test_429_without_retry_after_has_no_header(emu):
    emu.inject("token", status=429)
    resp = token_post(emu)
    assert resp.status_code == 429
    assert "Retry-After" not in resp.headers


def test_msal_returns_an_error_dict_on_429_and_honours_retry_after(emu):
    emu.inject("token", status=429, retry_after=7)
    app = msal_app(emu)

    result = app.acquire_token_for_client([SCOPE])

    assert "access_token" not in result
    assert result["error"] == "temporarily_unavailable"
    assert result["error_codes"] == [50196]
    assert emu.count("token") == 1

    # msal throttles itself for Retry-After seconds: same answer, no new request
    again = app.acquire_token_for_client([SCOPE])
    assert again["error"] == "temporarily_unavailable"
    assert emu.count("token") == 1

    # a client without that memory gets through: the fault fired once only
    assert "access_token" in msal_app(emu).acquire_token_for_client([SCOPE])
    assert emu.count("token") == 2


# -- server errors -------------------------------------------------------------------


@pytest.mark.parametrize("status", [500, 503])
def test_5xx_on_the_token_endpoint(emu, status):
    emu.inject("token", status=status)

    resp = token_post(emu)

    assert resp.status_code == status
    assert resp.json()["error"] == "server_error"
    assert resp.json()["error_codes"] == [50000]
    [record] = emu.requests("token")
    assert (record.status, record.fault) == (status, f"status {status}")


def test_msal_raises_on_a_5xx(emu):
    emu.inject("token", status=503)

    with pytest.raises(msal.exceptions.MsalServiceError, match="503"):
        msal_app(emu).acquire_token_for_client([SCOPE])

    assert emu.count("token") == 1


def test_5xx_on_a_resource_listener_uses_the_resource_error_shape(emu):
    emu.inject("environments", status=500)
    resp = requests.get(
        f"{emu.api_url}/environmentmanagement/environments?api-version=2024-10-01",
        verify=emu.ca_bundle,
        timeout=10,
    )
    assert resp.status_code == 500
    assert resp.json() == {
        "error": {"code": "ServiceError", "message": "injected fault (HTTP 500)"}
    }


# -- dropped connections -------------------------------------------------------------


def test_drop_closes_the_connection_without_an_answer(emu):
    emu.inject("token", drop=True)

    with pytest.raises(requests.exceptions.ConnectionError):
        token_post(emu)

    [record] = emu.requests("token")
    assert (record.status, record.fault) == (0, "drop")
    assert token_post(emu).status_code == 200


# -- times / fraction ------------------------------------------------------------------


def test_times_n_faults_exactly_n_requests_then_normal(emu):
    fault = emu.inject("token", status=500, times=3)

    statuses = [token_post(emu).status_code for _ in range(6)]

    assert statuses == [500, 500, 500, 200, 200, 200]
    assert fault.fired == 3
    assert fault.times == 0


def test_times_none_faults_until_cleared(emu):
    fault = emu.inject("token", status=502, times=None)
    assert [token_post(emu).status_code for _ in range(4)] == [502] * 4
    assert fault.fired == 4


def test_fraction_with_a_seed(emu):
    total = 40
    fault = emu.inject("token", status=503, fraction=0.5, seed=20240601)

    statuses = [token_post(emu).status_code for _ in range(total)]

    faulted = statuses.count(503)
    assert statuses.count(200) == total - faulted
    assert fault.fired == faulted
    assert 0 < faulted < total
    assert [r.fault is not None for r in emu.requests("token")] == [s == 503 for s in statuses]


def test_the_same_seed_faults_the_same_requests(emu):
    runs = []
    for _ in range(2):
        emu.clear_faults()
        emu.inject("token", status=503, fraction=0.3, seed=7)
        runs.append([token_post(emu).status_code for _ in range(15)])
    assert runs[0] == runs[1]
    assert 503 in runs[0]
    assert 200 in runs[0]


# -- matching --------------------------------------------------------------------------


def test_endpoint_name_matches_only_that_endpoint(emu):
    emu.inject("token", status=503, times=None)

    assert discovery_get(emu).status_code == 200
    assert token_post(emu).status_code == 503


def test_listener_name_matches_every_endpoint_on_it(emu):
    emu.inject("identity", status=503, times=None)

    assert discovery_get(emu).status_code == 503
    assert token_post(emu).status_code == 503
    assert {r.endpoint for r in emu.requests() if r.fault} == {"discovery", "token"}
    # the admin API on the same listener is never faulted
    assert emu.admin_call("counts", {}) == {"discovery": 1, "token": 1}
    admin = requests.post(
        f"{emu.authority_host}/_emulator/counts", verify=emu.ca_bundle, timeout=10
    )
    assert admin.status_code == 200


def test_vault_listener_fault_leaves_other_listeners_alone(emu):
    emu.inject("vault", status=503, times=None)

    vault = requests.get(f"{emu.vault_url}/secrets/any", verify=emu.ca_bundle, timeout=10)
    api = requests.get(
        f"{emu.api_url}/redirect", allow_redirects=False, verify=emu.ca_bundle, timeout=10
    )

    assert vault.status_code == 503  # instead of the 401 challenge
    assert vault.json()["error"]["code"] == "ServiceError"
    assert api.status_code == 302
    assert token_post(emu).status_code == 200


def test_api_listener_fault_hits_all_its_routes_but_an_endpoint_fault_one(emu):
    emu.inject("whoami", status=500, times=None)
    whoami = f"{emu.api_url}/api/data/v9.2/WhoAmI"
    envs = f"{emu.api_url}/environmentmanagement/environments?api-version=2024-10-01"

    assert requests.get(whoami, verify=emu.ca_bundle, timeout=10).status_code == 500
    assert requests.get(envs, verify=emu.ca_bundle, timeout=10).status_code == 401

    emu.clear_faults()
    emu.inject("api", status=500, times=None)
    assert requests.get(whoami, verify=emu.ca_bundle, timeout=10).status_code == 500
    assert requests.get(envs, verify=emu.ca_bundle, timeout=10).status_code == 500


def test_first_matching_rule_wins(emu):
    first = emu.inject("token", status=500, times=1)
    second = emu.inject("*", status=503, times=1)

    assert token_post(emu).status_code == 500
    assert token_post(emu).status_code == 503
    assert token_post(emu).status_code == 200
    assert (first.fired, second.fired) == (1, 1)


# -- clearing --------------------------------------------------------------------------


def test_clear_faults_restores_normal_service(emu):
    emu.inject("token", status=500, times=None)
    emu.inject("vault", drop=True, times=None)
    assert token_post(emu).status_code == 500

    emu.clear_faults()

    assert token_post(emu).status_code == 200
    vault = requests.get(f"{emu.vault_url}/secrets/any", verify=emu.ca_bundle, timeout=10)
    assert vault.status_code == 401
    assert [r.fault for r in emu.requests()] == ["status 500", None, None]


def test_faults_over_the_admin_api(emu):
    url = f"{emu.authority_host}/_emulator"
    resp = requests.post(
        f"{url}/inject",
        json={"endpoint": "token", "status": 429, "retry_after": 3, "times": 2},
        verify=emu.ca_bundle,
        timeout=10,
    )
    assert resp.json() == {"result": None}

    assert [token_post(emu).status_code for _ in range(3)] == [429, 429, 200]

    requests.post(
        f"{url}/inject",
        json={"endpoint": "token", "status": 500, "times": None},
        verify=emu.ca_bundle,
        timeout=10,
    )
    assert token_post(emu).status_code == 500
    requests.post(f"{url}/clear_faults", verify=emu.ca_bundle, timeout=10)
    assert token_post(emu).status_code == 200
