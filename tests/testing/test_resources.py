"""The emulated Power Platform side, driven by the real msal and the real requests."""

from __future__ import annotations

import base64
import json
import time
import warnings
from urllib.parse import urlsplit

import msal
import pytest
import requests

from requests_ppauth.testing import Emulator

BAP = "/providers/Microsoft.BusinessAppPlatform"
BAP_ENVIRONMENTS = f"{BAP}/scopes/admin/environments?api-version=2020-10-01"
PP_ENVIRONMENTS = "/environmentmanagement/environments?api-version=2024-10-01"
POWER_APPS_SCOPE = "https://service.powerapps.com//.default"
POWER_PLATFORM_SCOPE = "https://api.powerplatform.com/.default"
VAULT_SCOPE = "https://vault.azure.net/.default"
ENVIRONMENT_COUNT = 7


@pytest.fixture
def emu():
    with Emulator() as emulator:
        yield emulator


def confidential_app(emu: Emulator) -> msal.ConfidentialClientApplication:
    s = emu.sample
    return msal.ConfidentialClientApplication(
        s.client_id,
        client_credential=s.client_secret,
        authority=emu.authority(),
        instance_discovery=False,
        http_client=emu.http_client(),
    )


def app_token(emu: Emulator, scope: str) -> str:
    """A fresh app-only token (a new msal app each time: no shared cache)."""
    result = confidential_app(emu).acquire_token_for_client([scope])
    assert "access_token" in result, result
    return result["access_token"]


def user_token(emu: Emulator, username: str, password: str, scope: str) -> str:
    app = msal.PublicClientApplication(
        emu.sample.public_client_id,
        authority=emu.authority(),
        instance_discovery=False,
        http_client=emu.http_client(),
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # ROPC is deprecated in msal
        result = app.acquire_token_by_username_password(username, password, scopes=[scope])
    assert "access_token" in result, result
    return result["access_token"]


def claims_of(token: str) -> dict:
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def get(emu: Emulator, url: str, token: str | None = None, **kwargs) -> requests.Response:
    headers = bearer(token) if token else {}
    return requests.get(url, headers=headers, verify=emu.ca_bundle, timeout=10, **kwargs)


def call(emu: Emulator, method: str, url: str, token: str) -> requests.Response:
    return requests.request(method, url, headers=bearer(token), verify=emu.ca_bundle, timeout=10)


def collect_pages(emu: Emulator, path: str, token: str, link_key: str) -> tuple[list, int]:
    url: str | None = f"{emu.api_url}{path}"
    items: list = []
    pages = 0
    while url:
        resp = get(emu, url, token)
        assert resp.status_code == 200, resp.text
        body = resp.json()
        items.extend(body["value"])
        pages += 1
        assert pages <= ENVIRONMENT_COUNT, "paging does not terminate"
        url = body.get(link_key)
    return items, pages


# -- environments paging ---------------------------------------------------------


def test_bap_environments_follow_next_link_until_all_collected(emu):
    token = app_token(emu, POWER_APPS_SCOPE)
    first = get(emu, f"{emu.api_url}{BAP_ENVIRONMENTS}", token).json()
    assert "nextLink" in first
    assert "@odata.nextLink" not in first

    items, pages = collect_pages(emu, BAP_ENVIRONMENTS, token, "nextLink")

    names = [env["name"] for env in items]
    assert len(names) == ENVIRONMENT_COUNT
    assert len(set(names)) == ENVIRONMENT_COUNT
    assert pages == 3  # default page size 3: 3 + 3 + 1
    assert emu.count("environments") == pages + 1


def test_power_platform_environments_follow_odata_next_link(emu):
    # the server's page size, not $top (which caps the total there), makes the pages
    emu.management.page_size = 2
    token = app_token(emu, POWER_PLATFORM_SCOPE)
    first = get(emu, f"{emu.api_url}{PP_ENVIRONMENTS}", token).json()
    assert len(first["value"]) == 2
    assert "@odata.nextLink" in first
    assert "nextLink" not in first
    assert urlsplit(first["@odata.nextLink"]).netloc == urlsplit(emu.api_url).netloc

    items, pages = collect_pages(emu, PP_ENVIRONMENTS, token, "@odata.nextLink")

    ids = [env["id"] for env in items]
    assert len(ids) == ENVIRONMENT_COUNT
    assert len(set(ids)) == ENVIRONMENT_COUNT
    assert pages == 4  # 2 + 2 + 2 + 1: the next link carries the api-version and $skip


def test_environments_routes_check_their_own_audience(emu):
    powerapps = app_token(emu, POWER_APPS_SCOPE)
    assert get(emu, f"{emu.api_url}{BAP_ENVIRONMENTS}", powerapps).status_code == 200
    assert get(emu, f"{emu.api_url}{PP_ENVIRONMENTS}", powerapps).status_code == 401


# -- Dataverse -------------------------------------------------------------------


def test_dataverse_whoami(emu):
    token = app_token(emu, f"{emu.api_url}/.default")
    resp = get(emu, f"{emu.api_url}/api/data/v9.2/WhoAmI", token)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert {"BusinessUnitId", "UserId", "OrganizationId"} <= set(body)
    assert body["@odata.context"].startswith(f"{emu.api_url}/api/data/v9.2/$metadata")
    # the same principal always maps to the same Dataverse user
    again = get(
        emu, f"{emu.api_url}/api/data/v9.2/WhoAmI", app_token(emu, f"{emu.api_url}/.default")
    )
    assert again.json()["UserId"] == body["UserId"]
    assert emu.count("whoami") == 2


# -- bearer validation -----------------------------------------------------------


def assert_invalid_token(resp: requests.Response, reason: str) -> None:
    assert resp.status_code == 401, resp.text
    challenge = resp.headers["WWW-Authenticate"]
    assert challenge.startswith("Bearer ")
    assert 'error="invalid_token"' in challenge
    assert reason in challenge
    assert resp.json()["error"]["code"] == "InvalidAuthenticationToken"


def test_token_for_the_wrong_audience_is_rejected(emu):
    token = app_token(emu, VAULT_SCOPE)
    resp = get(emu, f"{emu.api_url}{BAP_ENVIRONMENTS}", token)
    assert_invalid_token(resp, "invalid audience")


def test_missing_token_is_rejected(emu):
    resp = get(emu, f"{emu.api_url}{BAP_ENVIRONMENTS}")
    assert_invalid_token(resp, "missing")
    [record] = emu.requests("environments")
    assert record.authorization is None
    assert record.status == 401


def test_tampered_signature_is_rejected(emu):
    token = app_token(emu, POWER_APPS_SCOPE)
    head, body, sig = token.split(".")
    raw = bytearray(base64.urlsafe_b64decode(sig + "=" * (-len(sig) % 4)))
    raw[len(raw) // 2] ^= 0x01
    tampered = ".".join([head, body, base64.urlsafe_b64encode(bytes(raw)).rstrip(b"=").decode()])
    assert tampered != token

    assert get(emu, f"{emu.api_url}{BAP_ENVIRONMENTS}", token).status_code == 200
    assert_invalid_token(get(emu, f"{emu.api_url}{BAP_ENVIRONMENTS}", tampered), "signature")


def test_tampered_claims_are_rejected(emu):
    token = app_token(emu, VAULT_SCOPE)
    head, _claims, sig = token.split(".")
    claims = claims_of(token) | {"aud": "https://service.powerapps.com/"}
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    resp = get(emu, f"{emu.api_url}{BAP_ENVIRONMENTS}", f"{head}.{forged}.{sig}")
    assert_invalid_token(resp, "signature")


def test_expired_token_is_rejected(emu):
    emu.policy.lifetime = 1
    token = app_token(emu, POWER_APPS_SCOPE)  # msal caches it; we hold on to this one
    claims = claims_of(token)
    assert claims["exp"] - claims["iat"] == 1
    url = f"{emu.api_url}{BAP_ENVIRONMENTS}"
    time.sleep(max(0.0, claims["exp"] - time.time()) + 0.1)
    assert_invalid_token(get(emu, url, token), "expired")


def test_revoked_token_is_rejected_and_a_new_one_works(emu):
    url = f"{emu.api_url}{BAP_ENVIRONMENTS}"
    token = app_token(emu, POWER_APPS_SCOPE)
    assert get(emu, url, token).status_code == 200

    emu.revoke(token)
    assert_invalid_token(get(emu, url, token), "revoked")

    fresh = app_token(emu, POWER_APPS_SCOPE)
    assert claims_of(fresh)["uti"] != claims_of(token)["uti"]
    assert get(emu, url, fresh).status_code == 200
    assert get(emu, url, token).status_code == 401  # revocation sticks


def test_revoke_everything_issued_so_far(emu):
    url = f"{emu.api_url}{BAP_ENVIRONMENTS}"
    first, second = app_token(emu, POWER_APPS_SCOPE), app_token(emu, POWER_APPS_SCOPE)
    emu.revoke()
    assert get(emu, url, first).status_code == 401
    assert get(emu, url, second).status_code == 401
    assert get(emu, url, app_token(emu, POWER_APPS_SCOPE)).status_code == 200


# -- cross-host redirect ---------------------------------------------------------


def test_redirect_points_at_the_foreign_host(emu):
    token = app_token(emu, POWER_APPS_SCOPE)
    resp = get(emu, f"{emu.api_url}/redirect", token, allow_redirects=False)
    assert resp.status_code == 302
    location = resp.headers["Location"]
    assert location.startswith(emu.foreign_url)
    assert urlsplit(location).hostname == "localhost"
    assert emu.requests("foreign") == []


def test_requests_strips_the_token_on_a_cross_host_redirect(emu):
    token = app_token(emu, POWER_APPS_SCOPE)
    resp = get(emu, f"{emu.api_url}/redirect", token)

    assert resp.status_code == 200
    assert [r.status_code for r in resp.history] == [302]
    assert resp.url.startswith(emu.foreign_url)
    assert resp.json() == {"host": "foreign", "authorization_received": False}

    [redirect] = emu.requests("redirect")
    assert redirect.authorization == f"Bearer {token}"  # the API host did get it
    [landing] = emu.requests("foreign")
    assert landing.host == urlsplit(emu.foreign_url).netloc
    assert landing.host.startswith("localhost:")
    assert landing.listener == "foreign"
    assert landing.authorization is None


def test_foreign_host_records_a_token_sent_to_it_directly(emu):
    # the counterpart of the test above: the foreign listener does see tokens
    resp = get(emu, f"{emu.foreign_url}/landing", "not-a-real-token")
    assert resp.json()["authorization_received"] is True
    [landing] = emu.requests("foreign")
    assert landing.authorization == "Bearer not-a-real-token"


# -- adminApplications -----------------------------------------------------------


def test_admin_user_registers_lists_and_removes_an_application(emu):
    s = emu.sample
    token = user_token(emu, s.admin_username, s.admin_password, POWER_APPS_SCOPE)
    assert claims_of(token)["idtyp"] == "user"
    base = f"{emu.api_url}{BAP}/adminApplications"

    put = call(emu, "PUT", f"{base}/{s.client_id}", token)
    assert put.status_code == 200, put.text
    assert put.json() == {"applicationId": s.client_id, "tenantId": s.tenant_id}

    listed = call(emu, "GET", base, token)
    assert listed.status_code == 200
    assert [a["applicationId"] for a in listed.json()["value"]] == [s.client_id]
    one = call(emu, "GET", f"{base}/{s.client_id}", token)
    assert one.status_code == 200
    assert one.json()["applicationId"] == s.client_id

    deleted = call(emu, "DELETE", f"{base}/{s.client_id}", token)
    assert deleted.status_code == 204
    assert call(emu, "GET", f"{base}/{s.client_id}", token).status_code == 404
    assert call(emu, "GET", base, token).json()["value"] == []


@pytest.mark.parametrize("who", ["app", "user"])
def test_admin_applications_needs_an_admin_user(emu, who):
    s = emu.sample
    if who == "app":
        token = app_token(emu, POWER_APPS_SCOPE)
    else:
        token = user_token(emu, s.username, s.password, POWER_APPS_SCOPE)
    base = f"{emu.api_url}{BAP}/adminApplications"

    put = call(emu, "PUT", f"{base}/{s.client_id}", token)
    assert put.status_code == 403, put.text
    assert put.json()["error"]["code"] == "Forbidden"
    assert call(emu, "GET", base, token).status_code == 403
    assert call(emu, "DELETE", f"{base}/{s.client_id}", token).status_code == 403

    admin = user_token(emu, s.admin_username, s.admin_password, POWER_APPS_SCOPE)
    assert call(emu, "GET", base, admin).json()["value"] == []  # the refused PUT registered nothing
