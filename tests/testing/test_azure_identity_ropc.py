"""azure-identity's username/password credentials, unmodified, against an emulator on
port 443 (msal drops the authority's port for the user realm lookup).

Settings they need: ``authority=emu.authority_host`` (``AZURE_AUTHORITY_HOST`` for
``EnvironmentCredential``), ``disable_instance_discovery=True`` (instance discovery
asks login.microsoftonline.com about the authority), and the emulator's CA in
``REQUESTS_CA_BUNDLE`` (azure-core's requests transport honours it).
"""

from __future__ import annotations

import base64
import json
import warnings
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from azure.core.exceptions import ClientAuthenticationError
from azure.identity import DefaultAzureCredential, EnvironmentCredential, UsernamePasswordCredential

from requests_ppauth.testing import Emulator
from tests.testing.test_port_443 import running_on_443

POWERAPPS_SCOPE = "https://service.powerapps.com//.default"
PP_SCOPE = "https://api.powerplatform.com/.default"


def claims_of(token: str) -> dict[str, Any]:
    segment = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))


@pytest.fixture(scope="module")
def _emulator_on_443() -> Iterator[Emulator]:
    with running_on_443() as emu:
        yield emu


@pytest.fixture
def emu443(_emulator_on_443: Emulator, ppauth_env: Any) -> Emulator:
    """The port-443 emulator, counters reset; AZURE_* cleared, its CA trusted."""
    emu = _emulator_on_443
    emu.reset_counts()
    ppauth_env.set(REQUESTS_CA_BUNDLE=emu.ca_bundle, CURL_CA_BUNDLE=emu.ca_bundle)
    return emu


@pytest.fixture(autouse=True)
def _quiet_ropc_deprecation() -> Iterator[None]:
    # azure-identity and msal warn that ROPC is deprecated (no MFA): true, and not news here
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        yield


def test_username_password_credential(emu443):
    s = emu443.sample
    credential = UsernamePasswordCredential(
        s.public_client_id,
        s.username,
        s.password,
        tenant_id=s.tenant_id,
        authority=emu443.authority_host,
        disable_instance_discovery=True,
    )
    token = credential.get_token(POWERAPPS_SCOPE).token
    claims = claims_of(token)
    assert claims["upn"] == s.username
    assert claims["ver"] == "1.0"
    assert credential.get_token(POWERAPPS_SCOPE).token == token  # from msal's cache
    assert (emu443.count("userrealm"), emu443.count("token")) == (1, 1)
    (rec,) = emu443.requests("token")
    assert rec.grant_type == "password"
    assert rec.client_id == s.public_client_id


def test_environment_credential_with_username_and_password(emu443, ppauth_env):
    s = emu443.sample
    ppauth_env.set(
        AZURE_CLIENT_ID=s.public_client_id,
        AZURE_TENANT_ID=s.tenant_id,
        AZURE_USERNAME=s.username,
        AZURE_PASSWORD=s.password,
        AZURE_AUTHORITY_HOST=emu443.authority_host,
    )
    token = EnvironmentCredential(disable_instance_discovery=True).get_token(PP_SCOPE).token
    claims = claims_of(token)
    assert (claims["ver"], claims["preferred_username"]) == ("2.0", s.username)
    (rec,) = emu443.requests("token")
    assert rec.grant_type == "password"


def test_default_azure_credential_picks_the_environment(emu443, ppauth_env):
    s = emu443.sample
    ppauth_env.set(
        AZURE_CLIENT_ID=s.public_client_id,
        AZURE_TENANT_ID=s.tenant_id,
        AZURE_USERNAME=s.username,
        AZURE_PASSWORD=s.password,
        AZURE_AUTHORITY_HOST=emu443.authority_host,
    )
    credential = DefaultAzureCredential(disable_instance_discovery=True)
    token = credential.get_token(POWERAPPS_SCOPE).token
    assert claims_of(token)["upn"] == s.username
    assert emu443.count("token") == 1


def test_wrong_password_is_aadsts50126_and_keeps_the_password_out(emu443):
    s = emu443.sample
    credential = UsernamePasswordCredential(
        s.public_client_id,
        s.username,
        "not-the-password-xyz",
        tenant_id=s.tenant_id,
        authority=emu443.authority_host,
        disable_instance_discovery=True,
    )
    with pytest.raises(ClientAuthenticationError) as caught:
        credential.get_token(POWERAPPS_SCOPE)
    assert "AADSTS50126" in str(caught.value)
    assert "not-the-password-xyz" not in str(caught.value)
    (rec,) = emu443.requests("token")
    assert rec.status == 400


def test_cae_capable_username_password_credential(emu443):
    s = emu443.sample
    credential = UsernamePasswordCredential(
        s.public_client_id,
        s.username,
        s.password,
        tenant_id=s.tenant_id,
        authority=emu443.authority_host,
        disable_instance_discovery=True,
    )
    first = credential.get_token(POWERAPPS_SCOPE, enable_cae=True).token
    assert claims_of(first)["xms_cc"] == ["CP1"]
    event = emu443.revoke(first, claims_challenge=True)
    claims = json.dumps({"access_token": {"nbf": {"essential": True, "value": str(event)}}})
    fresh = credential.get_token(POWERAPPS_SCOPE, claims=claims, enable_cae=True).token
    assert fresh != first
    assert "claims" in emu443.requests("token")[-1].form_fields
    url = f"{emu443.api_url}/providers/Microsoft.BusinessAppPlatform/scopes/admin/environments"
    statuses = [
        requests.get(
            url,
            params={"api-version": "2020-10-01"},
            headers={"Authorization": f"Bearer {token}"},
            timeout=10,
        ).status_code
        for token in (first, fresh)
    ]
    assert statuses == [401, 200]
