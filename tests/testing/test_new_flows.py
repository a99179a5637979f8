"""The emulator's device code, managed identity and federation endpoints, driven by
the real msal (raw HTTP where msal would hide the wire)."""

from __future__ import annotations

import threading
import time

import msal
import pytest
import requests

from requests_ppauth.testing._jwt import unverified

SCOPE = "https://api.powerplatform.com/.default"


def public_app(emu):
    s = emu.sample
    return msal.PublicClientApplication(
        s.public_client_id,
        authority=emu.authority(),
        instance_discovery=False,
        http_client=emu.http_client(),
    )


def poll(emu, device_code, client_id):
    return requests.post(
        f"{emu.authority()}/oauth2/v2.0/token",
        data={
            "grant_type": "urn:ietf:params:oauth:grant-type:device_code",
            "client_id": client_id,
            "device_code": device_code,
        },
        verify=emu.ca_bundle,
    )


# -- device code ---------------------------------------------------------------------


def test_device_flow_pending_then_approved(ppauth_emulator):
    emu = ppauth_emulator
    app = public_app(emu)
    flow = app.initiate_device_flow(scopes=[SCOPE])
    assert flow["verification_uri"].startswith(emu.authority_host)
    assert flow["user_code"].replace("-", "") in emu.device_codes()
    assert flow["interval"] == 1

    def approve():
        time.sleep(1.5)
        emu.approve_device(flow["user_code"])

    threading.Thread(target=approve).start()
    result = app.acquire_token_by_device_flow(flow)
    assert "access_token" in result, result
    # a v2.0 token (the Power Platform API): the user is preferred_username, not upn
    assert unverified(result["access_token"])[1]["preferred_username"] == emu.sample.username
    grants = [r for r in emu.requests("token")]
    assert grants[0].extra["aadsts"] == 70016  # authorization_pending first
    assert grants[-1].status == 200
    assert emu.device_codes() == []


def test_device_flow_errors_on_the_wire(ppauth_emulator):
    emu = ppauth_emulator
    cid = emu.sample.public_client_id
    start = requests.post(
        f"{emu.authority()}/oauth2/v2.0/devicecode",
        data={"client_id": cid, "scope": SCOPE},
        verify=emu.ca_bundle,
    ).json()
    r = poll(emu, start["device_code"], cid)
    assert (r.status_code, r.json()["error"]) == (400, "authorization_pending")
    emu.slow_down_device(start["user_code"])
    time.sleep(1)
    r = poll(emu, start["device_code"], cid)
    assert r.json()["error"] == "slow_down"
    r = poll(emu, start["device_code"], cid)  # too soon after the last poll
    assert r.json()["error"] == "slow_down"
    emu.decline_device(start["user_code"])
    time.sleep(1)
    r = poll(emu, start["device_code"], cid)
    assert r.json()["error"] == "authorization_declined"
    assert r.json()["error_codes"] == [70016]
    emu.expire_device(start["user_code"])
    r = poll(emu, start["device_code"], cid)
    assert (r.json()["error"], r.json()["error_codes"]) == ("expired_token", [70020])


def test_device_code_is_redeemed_once(ppauth_emulator):
    emu = ppauth_emulator
    cid = emu.sample.public_client_id
    start = requests.post(
        f"{emu.authority()}/oauth2/v2.0/devicecode",
        data={"client_id": cid, "scope": SCOPE},
        verify=emu.ca_bundle,
    ).json()
    emu.approve_device(start["user_code"])
    assert poll(emu, start["device_code"], cid).status_code == 200
    assert poll(emu, start["device_code"], cid).json()["error"] == "invalid_grant"


def test_msal_reports_a_declined_device_flow(ppauth_emulator):
    emu = ppauth_emulator
    app = public_app(emu)
    flow = app.initiate_device_flow(scopes=[SCOPE])
    emu.decline_device(flow["user_code"])
    result = app.acquire_token_by_device_flow(flow)
    assert result["error"] == "authorization_declined"


# -- managed identity ----------------------------------------------------------------


@pytest.mark.parametrize("kind", ["imds", "appservice"])
def test_system_assigned_identity(ppauth_emulator, monkeypatch, kind):
    emu = ppauth_emulator
    for name, value in emu.managed_identity_env(kind).items():
        monkeypatch.setenv(name, value)
    client = msal.ManagedIdentityClient(
        msal.SystemAssignedManagedIdentity(), http_client=emu.http_client()
    )
    result = client.acquire_token_for_client(resource="https://api.powerplatform.com")
    assert result["token_type"] == "Bearer", result
    claims = unverified(result["access_token"])[1]
    assert claims["aud"] == "https://api.powerplatform.com"
    assert claims["oid"] == emu.system_identity.object_id
    assert emu.count("imds" if kind == "imds" else "appservice-msi") == 1


@pytest.mark.parametrize("selector", ["client_id", "object_id", "resource_id"])
def test_user_assigned_identity_by_each_selector(ppauth_emulator, monkeypatch, selector):
    emu = ppauth_emulator
    ua = emu.add_managed_identity("worker")
    for name, value in emu.managed_identity_env("imds").items():
        monkeypatch.setenv(name, value)
    client = msal.ManagedIdentityClient(
        msal.UserAssignedManagedIdentity(**{selector: getattr(ua, selector)}),
        http_client=emu.http_client(),
    )
    result = client.acquire_token_for_client(resource="https://vault.azure.net")
    assert unverified(result["access_token"])[1]["appid"] == ua.client_id


def test_managed_identity_endpoints_refuse_bad_requests(ppauth_emulator):
    emu = ppauth_emulator
    url = emu.msi_url + "/metadata/identity/oauth2/token"
    params = {"api-version": "2018-02-01", "resource": "https://api.powerplatform.com"}
    assert requests.get(url, params=params).status_code == 400  # no Metadata header
    r = requests.get(url, params={**params, "client_id": "nobody"}, headers={"Metadata": "true"})
    assert r.json()["error_description"] == "Identity not found"
    r = requests.get(
        emu.msi_url + "/msi/token", params=params, headers={"X-IDENTITY-HEADER": "wrong"}
    )
    assert r.status_code == 401


# -- workload identity federation -------------------------------------------------------------


def confidential(emu, client_id, assertion):
    return msal.ConfidentialClientApplication(
        client_id,
        client_credential={"client_assertion": lambda: assertion},
        authority=emu.authority(),
        instance_discovery=False,
        http_client=emu.http_client(),
    )


def test_federated_assertion_is_trusted_for_its_subject_only(ppauth_emulator):
    emu = ppauth_emulator
    app = emu.add_app(federated_subject="repo:contoso/jobs:ref:refs/heads/main", name="gha")
    good = emu.federated_token("repo:contoso/jobs:ref:refs/heads/main")
    result = confidential(emu, app.client_id, good).acquire_token_for_client([SCOPE])
    assert result["token_type"] == "Bearer"
    assert emu.requests("token")[-1].extra["client_auth"] == "federated"

    other = emu.federated_token("repo:evil/fork:ref:refs/heads/main")
    result = confidential(emu, app.client_id, other).acquire_token_for_client([SCOPE])
    assert result["error_codes"] == [70021]
    assert "repo:evil/fork" in result["error_description"]

    wrong_aud = emu.federated_token("repo:contoso/jobs:ref:refs/heads/main", audience="x")
    result = confidential(emu, app.client_id, wrong_aud).acquire_token_for_client([SCOPE])
    assert result["error_codes"] == [70021]


def test_expired_federated_assertion(ppauth_emulator):
    emu = ppauth_emulator
    app = emu.add_app(federated_subject="sub", name="k8s")
    stale = emu.federated_token("sub", lifetime=-400)  # beyond the five-minute skew
    result = confidential(emu, app.client_id, stale).acquire_token_for_client([SCOPE])
    assert result["error_codes"] == [700024]
