"""Continuous access evaluation: after ``emu.revoke(..., claims_challenge=True)`` the
resources answer a claims challenge, and only a token requested with those claims
passes, driven by plain msal (``claims_challenge=``), azure-identity
(``get_token(..., claims=...)``) and azure-core's ``BearerTokenCredentialPolicy``, which
answers the challenge by itself.

The header is the one Microsoft documents for CAE-enabled resources
(https://learn.microsoft.com/entra/identity-platform/claims-challenge):
``Bearer realm="", authorization_uri="...", error="insufficient_claims", claims="<base64>"``.
"""

from __future__ import annotations

import base64
import json
import re
from typing import Any

import msal
import pytest
import requests
from azure.core.pipeline import Pipeline
from azure.core.pipeline.policies import BearerTokenCredentialPolicy
from azure.core.pipeline.transport import HttpRequest, RequestsTransport
from azure.identity import ClientSecretCredential

from requests_ppauth.testing import Emulator

POWERAPPS_SCOPE = "https://service.powerapps.com//.default"
BAP_ENVIRONMENTS = "/providers/Microsoft.BusinessAppPlatform/scopes/admin/environments"
CHALLENGE = re.compile(
    r'^Bearer realm="", authorization_uri="(?P<uri>[^"]+)", '
    r'error="insufficient_claims", claims="(?P<claims>[A-Za-z0-9+/=]+)"$'
)


def claims_of(token: str) -> dict[str, Any]:
    segment = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))


def call(emu: Emulator, token: str) -> requests.Response:
    """A call to a resource (BAP's admin environment list) with ``token``."""
    return requests.get(
        f"{emu.api_url}{BAP_ENVIRONMENTS}",
        params={"api-version": "2020-10-01"},
        headers={"Authorization": f"Bearer {token}"},
        verify=emu.ca_bundle,
        timeout=10,
    )


def challenge_claims(resp: requests.Response, emu: Emulator) -> str:
    """The decoded claims of a 401's claims challenge (asserting its exact layout)."""
    assert resp.status_code == 401, resp.text
    match = CHALLENGE.match(resp.headers["WWW-Authenticate"])
    assert match, resp.headers["WWW-Authenticate"]
    assert match["uri"] == f"{emu.authority_host}/common/oauth2/authorize"
    return base64.b64decode(match["claims"]).decode()


def confidential(emu: Emulator, **kwargs: Any) -> msal.ConfidentialClientApplication:
    s = emu.sample
    assert s is not None
    return msal.ConfidentialClientApplication(
        s.client_id,
        client_credential=s.client_secret,
        authority=emu.authority(),
        http_client=emu.http_client(),
        instance_discovery=False,
        **kwargs,
    )


def token_forms(emu: Emulator) -> list[tuple[str, ...]]:
    return [r.form_fields for r in emu.requests("token")]


# -- plain msal ------------------------------------------------------------------------
def test_msal_app_answers_the_claims_challenge(ppauth_emulator):
    emu = ppauth_emulator
    app = confidential(emu)
    first = app.acquire_token_for_client([POWERAPPS_SCOPE])["access_token"]
    assert call(emu, first).status_code == 200

    event = emu.revoke(claims_challenge=True)
    claims = challenge_claims(call(emu, first), emu)
    assert json.loads(claims) == {"access_token": {"nbf": {"essential": True, "value": str(event)}}}

    # without the claims msal answers from its cache: the same token, the same 401
    cached = app.acquire_token_for_client([POWERAPPS_SCOPE])["access_token"]
    assert cached == first
    assert emu.count("token") == 1
    assert call(emu, cached).status_code == 401

    fresh = app.acquire_token_for_client([POWERAPPS_SCOPE], claims_challenge=claims)
    token = fresh["access_token"]
    assert token != first
    assert emu.count("token") == 2
    assert "claims" in token_forms(emu)[-1]
    assert claims_of(token)["nbf"] >= event
    assert call(emu, token).status_code == 200
    # the event still stands for the tokens issued before it
    assert call(emu, first).status_code == 401


def test_a_token_requested_without_the_claims_stays_challenged(ppauth_emulator):
    emu = ppauth_emulator
    first = confidential(emu).acquire_token_for_client([POWERAPPS_SCOPE])["access_token"]
    emu.revoke(first, claims_challenge=True)
    claims = challenge_claims(call(emu, first), emu)

    # a new client (empty cache) gets a new token, but without the claims
    unanswered = confidential(emu).acquire_token_for_client([POWERAPPS_SCOPE])["access_token"]
    assert unanswered != first
    assert challenge_claims(call(emu, unanswered), emu) == claims

    answered = confidential(emu).acquire_token_for_client(
        [POWERAPPS_SCOPE], claims_challenge=claims
    )["access_token"]
    assert call(emu, answered).status_code == 200
    # once answered, the principal's later tokens pass (as after a re-authentication)
    later = confidential(emu).acquire_token_for_client([POWERAPPS_SCOPE])["access_token"]
    assert call(emu, later).status_code == 200
    assert call(emu, unanswered).status_code == 401
    assert emu.count("token") == 4


def test_the_event_is_per_principal(ppauth_emulator):
    emu = ppauth_emulator
    other = emu.add_app(secret="other-secret", name="other")
    mine = confidential(emu).acquire_token_for_client([POWERAPPS_SCOPE])["access_token"]
    theirs = msal.ConfidentialClientApplication(
        other.client_id,
        client_credential="other-secret",
        authority=emu.authority(),
        http_client=emu.http_client(),
        instance_discovery=False,
    ).acquire_token_for_client([POWERAPPS_SCOPE])["access_token"]

    emu.revoke(mine, claims_challenge=True)
    assert call(emu, mine).status_code == 401
    assert call(emu, theirs).status_code == 200


def test_msal_public_client_with_cp1_through_the_refresh_token(ppauth_emulator):
    emu = ppauth_emulator
    s = emu.sample
    app = msal.PublicClientApplication(
        s.public_client_id,
        authority=emu.authority(),
        http_client=emu.http_client(),
        instance_discovery=False,
        client_capabilities=["CP1"],
    )
    result = app.acquire_token_by_username_password(s.username, s.password, [POWERAPPS_SCOPE])
    first = result["access_token"]
    assert claims_of(first)["xms_cc"] == ["CP1"]  # the client said it handles challenges

    emu.revoke(first, claims_challenge=True)
    claims = challenge_claims(call(emu, first), emu)
    (account,) = app.get_accounts()
    again = app.acquire_token_silent([POWERAPPS_SCOPE], account, claims_challenge=claims)
    assert again is not None and "access_token" in again, again
    (rec,) = emu.requests("token")[-1:]
    assert rec.grant_type == "refresh_token"
    assert "claims" in rec.form_fields
    assert call(emu, again["access_token"]).status_code == 200


def test_revoke_with_claims_challenge_over_the_admin_api(ppauth_emulator):
    emu = ppauth_emulator
    token = confidential(emu).acquire_token_for_client([POWERAPPS_SCOPE])["access_token"]
    resp = requests.post(
        f"{emu.authority_host}/_emulator/revoke",
        json={"token": token, "claims_challenge": True},
        verify=emu.ca_bundle,
        timeout=10,
    )
    assert resp.status_code == 200
    assert isinstance(resp.json()["result"], int)
    challenge_claims(call(emu, token), emu)


# -- azure-identity and azure-core -------------------------------------------------------
@pytest.fixture
def ca_env(ppauth_env, ppauth_emulator):
    """azure-core's requests transport trusts what REQUESTS_CA_BUNDLE names."""
    ppauth_env.set(
        REQUESTS_CA_BUNDLE=ppauth_emulator.ca_bundle, CURL_CA_BUNDLE=ppauth_emulator.ca_bundle
    )
    return ppauth_emulator


def secret_credential(emu: Emulator) -> ClientSecretCredential:
    s = emu.sample
    assert s is not None
    return ClientSecretCredential(
        s.tenant_id,
        s.client_id,
        s.client_secret,
        authority=emu.authority_host,
        disable_instance_discovery=True,
    )


def test_azure_identity_get_token_with_claims(ca_env):
    emu = ca_env
    credential = secret_credential(emu)
    first = credential.get_token(POWERAPPS_SCOPE, enable_cae=True).token
    assert claims_of(first)["xms_cc"] == ["CP1"]
    emu.revoke(claims_challenge=True)
    claims = challenge_claims(call(emu, first), emu)

    assert credential.get_token(POWERAPPS_SCOPE, enable_cae=True).token == first  # cached
    fresh = credential.get_token(POWERAPPS_SCOPE, claims=claims, enable_cae=True).token
    assert fresh != first
    assert call(emu, fresh).status_code == 200
    assert emu.count("token") == 2


def test_azure_core_bearer_policy_answers_the_challenge_by_itself(ca_env):
    emu = ca_env
    credential = secret_credential(emu)
    policy = BearerTokenCredentialPolicy(credential, POWERAPPS_SCOPE, enable_cae=True)
    pipeline: Pipeline[Any, Any] = Pipeline(transport=RequestsTransport(), policies=[policy])
    url = f"{emu.api_url}{BAP_ENVIRONMENTS}?api-version=2020-10-01"

    assert pipeline.run(HttpRequest("GET", url)).http_response.status_code == 200
    emu.revoke(claims_challenge=True)
    emu.reset_counts()

    response = pipeline.run(HttpRequest("GET", url)).http_response
    assert response.status_code == 200
    assert [r.status for r in emu.requests() if r.path == BAP_ENVIRONMENTS] == [401, 200]
    (rec,) = emu.requests("token")
    assert "claims" in rec.form_fields
