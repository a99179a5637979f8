"""Access tokens as Entra ID issues them: v1.0 or v2.0 by resource, the claims of each
(docs/emulator-tokens.md has the tables and their sources), AADSTS500011 for resources
the tenant does not know, and a JWKS whose keys carry the signing certificate.

Driven by the real msal over HTTPS; the emulator's counters prove what was issued.
"""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

import msal
import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from requests_ppauth.testing import Emulator

POWERAPPS = "https://service.powerapps.com/"
PP_API = "https://api.powerplatform.com"
GLOBAL_ADMIN = "62e90394-69f5-4237-9190-012177145e10"


def b64url_json(segment: str) -> dict[str, Any]:
    return json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))


def header_of(token: str) -> dict[str, Any]:
    return b64url_json(token.split(".")[0])


def claims_of(token: str) -> dict[str, Any]:
    return b64url_json(token.split(".")[1])


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def confidential(
    emu: Emulator, client_id: str, credential: Any
) -> msal.ConfidentialClientApplication:
    return msal.ConfidentialClientApplication(
        client_id,
        client_credential=credential,
        authority=emu.authority(),
        http_client=emu.http_client(),
        instance_discovery=False,
    )


def public(emu: Emulator) -> msal.PublicClientApplication:
    assert emu.sample is not None
    return msal.PublicClientApplication(
        emu.sample.public_client_id,
        authority=emu.authority(),
        http_client=emu.http_client(),
        instance_discovery=False,
    )


def app_token(emu: Emulator, scope: str) -> dict[str, Any]:
    s = emu.sample
    assert s is not None
    result = confidential(emu, s.client_id, s.client_secret).acquire_token_for_client([scope])
    assert "access_token" in result, result
    return result


def user_token(emu: Emulator, scope: str, username: str | None = None) -> dict[str, Any]:
    s = emu.sample
    assert s is not None
    password = s.password if username is None else s.admin_password
    result = public(emu).acquire_token_by_username_password(
        username or s.username, password, [scope]
    )
    assert "access_token" in result, result
    return result


def discovery(emu: Emulator) -> dict[str, Any]:
    url = f"{emu.authority()}/v2.0/.well-known/openid-configuration"
    return requests.get(url, verify=emu.ca_bundle, timeout=10).json()


# -- v1.0 and v2.0 by resource ---------------------------------------------------------
V1_SCOPES = [
    ("https://service.powerapps.com//.default", "https://service.powerapps.com/"),
    ("https://service.flow.microsoft.com//.default", "https://service.flow.microsoft.com/"),
    ("https://contoso.crm4.dynamics.com/.default", "https://contoso.crm4.dynamics.com"),
    ("https://vault.azure.net/.default", "https://vault.azure.net"),
    ("https://management.core.windows.net//.default", "https://management.core.windows.net/"),
    ("https://management.azure.com//.default", "https://management.azure.com/"),
]


@pytest.mark.parametrize(("scope", "aud"), V1_SCOPES)
def test_v1_resources_get_v1_app_tokens(emu, scope, aud):
    s = emu.sample
    token = app_token(emu, scope)["access_token"]
    claims, header = claims_of(token), header_of(token)

    assert claims["ver"] == "1.0"
    assert claims["aud"] == aud
    assert claims["iss"] == claims["idp"] == f"https://sts.windows.net/{s.tenant_id}/"
    assert claims["appid"] == s.client_id
    assert claims["appidacr"] == "1"  # client secret
    assert "azp" not in claims and "azpacr" not in claims
    assert claims["idtyp"] == "app"
    assert claims["oid"] == claims["sub"]
    assert "roles" not in claims  # the sample app was granted none
    assert "scp" not in claims
    for opaque in ("aio", "rh", "uti"):
        assert isinstance(claims[opaque], str) and claims[opaque]
    assert header["x5t"] == header["kid"]  # x5t: legacy, v1.0 tokens only


def test_the_emulators_own_api_origin_is_a_dataverse_org(emu):
    claims = claims_of(app_token(emu, f"{emu.api_url}/.default")["access_token"])
    assert claims["ver"] == "1.0"
    assert claims["aud"] == emu.api_url
    vault = claims_of(app_token(emu, f"{emu.vault_url}/.default")["access_token"])
    assert vault["ver"] == "1.0"
    assert emu.count("token") == 2


def test_power_platform_api_gets_v2_app_tokens(emu):
    s = emu.sample
    token = app_token(emu, f"{PP_API}/.default")["access_token"]
    claims, header = claims_of(token), header_of(token)

    assert claims["ver"] == "2.0"
    assert claims["aud"] == PP_API
    assert claims["iss"] == discovery(emu)["issuer"].replace("{tenantid}", s.tenant_id)
    assert claims["iss"] == f"{emu.authority_host}/{s.tenant_id}/v2.0"
    assert claims["azp"] == s.client_id
    assert claims["azpacr"] == "1"
    for v1_only in ("appid", "appidacr", "idp", "upn", "unique_name"):
        assert v1_only not in claims
    assert "x5t" not in header
    assert header["kid"]


def test_azpacr_and_appidacr_say_how_the_client_authenticated(emu):
    s = emu.sample
    cert = {"private_key": s.certificate.key_pem.decode(), "thumbprint": s.certificate.thumbprint}
    by_cert = confidential(emu, s.cert_client_id, cert)
    v1 = claims_of(by_cert.acquire_token_for_client([f"{POWERAPPS}/.default"])["access_token"])
    v2 = claims_of(by_cert.acquire_token_for_client([f"{PP_API}/.default"])["access_token"])
    assert (v1["appidacr"], v2["azpacr"]) == ("2", "2")  # certificate
    public_v1 = claims_of(user_token(emu, f"{POWERAPPS}/.default")["access_token"])
    assert public_v1["appidacr"] == "0"  # public client


def test_roles_only_when_granted(emu):
    granted = emu.add_app(secret="granted-secret", roles=("Environments.Read", "Admin.All"))
    client = confidential(emu, granted.client_id, "granted-secret")
    for scope in (f"{POWERAPPS}/.default", f"{PP_API}/.default"):
        claims = claims_of(client.acquire_token_for_client([scope])["access_token"])
        assert claims["roles"] == ["Environments.Read", "Admin.All"]
        assert "scp" not in claims
    plain = claims_of(app_token(emu, f"{PP_API}/.default")["access_token"])
    assert "roles" not in plain


def test_v1_user_token_claims(emu):
    s = emu.sample
    claims = claims_of(user_token(emu, f"{POWERAPPS}/.default")["access_token"])
    assert claims["ver"] == "1.0"
    assert claims["iss"] == f"https://sts.windows.net/{s.tenant_id}/"
    assert claims["upn"] == claims["unique_name"] == s.username
    assert "preferred_username" not in claims  # v2.0 only
    assert claims["scp"] == "user_impersonation"
    assert claims["acr"] == "1"
    assert claims["amr"] == ["pwd"]
    assert claims["appid"] == s.public_client_id
    assert claims["idtyp"] == "user"
    assert claims["name"]
    assert "roles" not in claims and "wids" not in claims


def test_v2_user_token_claims(emu):
    s = emu.sample
    claims = claims_of(user_token(emu, f"{PP_API}/Environments.Read")["access_token"])
    assert claims["ver"] == "2.0"
    assert claims["iss"] == f"{emu.authority_host}/{s.tenant_id}/v2.0"
    assert claims["preferred_username"] == s.username
    assert claims["scp"] == "Environments.Read"
    assert claims["azp"] == s.public_client_id
    assert claims["azpacr"] == "0"
    for v1_only in ("upn", "unique_name", "acr", "amr", "appid", "appidacr"):
        assert v1_only not in claims


def test_admin_user_token_carries_wids(emu):
    claims = claims_of(
        user_token(emu, f"{POWERAPPS}/.default", emu.sample.admin_username)["access_token"]
    )
    assert claims["wids"] == [GLOBAL_ADMIN]


# -- resources the tenant does not know --------------------------------------------------
def test_unknown_resource_is_aadsts500011_for_client_credentials(emu):
    s = emu.sample
    resp = requests.post(
        f"{emu.authority()}/oauth2/v2.0/token",
        data={
            "grant_type": "client_credentials",
            "client_id": s.client_id,
            "client_secret": s.client_secret,
            "scope": "https://nonexistent.example.com/.default",
        },
        verify=emu.ca_bundle,
        timeout=10,
    )
    assert resp.status_code == 400
    body = resp.json()
    assert body["error"] == "invalid_resource"
    assert body["error_codes"] == [500011]
    assert body["error_description"].startswith(
        "AADSTS500011: The resource principal named https://nonexistent.example.com was not "
        f"found in the tenant named {s.tenant_id}. This can happen if the application has not "
        "been installed by the administrator of the tenant or consented to by any user in the "
        "tenant. You might have sent your authentication request to the wrong tenant. Trace ID: "
    )
    assert "access_token" not in body
    (rec,) = emu.requests("token")
    assert rec.extra["aadsts"] == 500011
    assert "issued_uti" not in rec.extra


def test_unknown_resource_through_msal_for_users_too(emu):
    result = public(emu).acquire_token_by_username_password(
        emu.sample.username, emu.sample.password, ["https://nonexistent.example.com/.default"]
    )
    assert result["error"] == "invalid_resource"
    assert result["error_codes"] == [500011]


def test_add_resource_makes_a_resource_known_with_its_token_version(ppauth_emulator):
    emu = ppauth_emulator
    scope = "https://contoso-api.example/.default"
    refused = confidential(emu, emu.sample.client_id, emu.sample.client_secret)
    assert refused.acquire_token_for_client([scope])["error_codes"] == [500011]

    emu.add_resource("https://contoso-api.example", version=2)
    v2 = claims_of(app_token(emu, scope)["access_token"])
    assert (v2["ver"], v2["aud"]) == ("2.0", "https://contoso-api.example")

    # the admin API verb, as a test in another process would call it
    resp = requests.post(
        f"{emu.authority_host}/_emulator/add_resource",
        json={"uri": "https://fabrikam-api.example", "version": 1},
        verify=emu.ca_bundle,
        timeout=10,
    )
    assert resp.status_code == 200
    assert resp.json()["result"]["version"] == 1
    v1 = claims_of(app_token(emu, "https://fabrikam-api.example/.default")["access_token"])
    assert v1["ver"] == "1.0"
    assert emu.count("token") == 3


def test_resource_app_id_works_as_the_resource(emu):
    # the Power Platform API's app id in place of its identifier URI
    claims = claims_of(
        app_token(emu, "8578e004-a5c6-46e7-913e-12f58912df43/.default")["access_token"]
    )
    assert claims["ver"] == "2.0"


# -- JWKS -------------------------------------------------------------------------------
def test_jwks_keys_carry_the_signing_certificate(emu):
    keys = requests.get(discovery(emu)["jwks_uri"], verify=emu.ca_bundle, timeout=10).json()["keys"]
    (key,) = keys
    der = base64.b64decode(key["x5c"][0])
    cert = x509.load_der_x509_certificate(der)
    assert key["x5t"] == key["kid"] == b64url(hashlib.sha1(der).digest())  # noqa: S324
    assert key["issuer"] == f"{emu.authority_host}/{emu.sample.tenant_id}/v2.0"
    public_key = cert.public_key()
    assert isinstance(public_key, rsa.RSAPublicKey)
    assert b64url(public_key.public_numbers().n.to_bytes(256, "big")) == key["n"]

    # a token verifies against the certificate's key, and names it by kid
    for scope in (f"{POWERAPPS}/.default", f"{PP_API}/.default"):
        token = app_token(emu, scope)["access_token"]
        assert header_of(token)["kid"] == key["kid"]
        signing_input, _, sig = token.rpartition(".")
        public_key.verify(
            base64.urlsafe_b64decode(sig + "=" * (-len(sig) % 4)),
            signing_input.encode(),
            padding.PKCS1v15(),
            hashes.SHA256(),
        )


# -- managed identity --------------------------------------------------------------------
def test_managed_identity_tokens_follow_the_resource(ppauth_emulator):
    emu = ppauth_emulator
    url = f"{emu.msi_url}/metadata/identity/oauth2/token"
    headers = {"Metadata": "true"}
    arm = requests.get(
        url, params={"resource": "https://management.azure.com/"}, headers=headers, timeout=10
    )
    claims = claims_of(arm.json()["access_token"])
    assert claims["ver"] == "1.0"
    assert claims["appid"] == emu.system_identity.client_id
    assert claims["appidacr"] == "2"
    assert claims["oid"] == emu.system_identity.object_id
    assert claims["xms_mirid"] == emu.system_identity.resource_id

    pp = requests.get(url, params={"resource": PP_API}, headers=headers, timeout=10)
    assert claims_of(pp.json()["access_token"])["ver"] == "2.0"

    unknown = requests.get(
        url, params={"resource": "https://nonexistent.example.com"}, headers=headers, timeout=10
    )
    assert unknown.status_code == 400
    assert unknown.json()["error"] == "invalid_resource"
    assert unknown.json()["error_description"].startswith("AADSTS500011: ")
    assert emu.count("imds") == 3


def test_a_resource_accepts_its_app_id_as_the_audience(emu):
    # Power Apps' app id as the resource: Entra puts the app id in aud, and the resource
    # (here BAP's environment list) takes it as its own
    token = app_token(emu, "475226c6-020e-4fb2-8a90-7a972cbfc1d4/.default")["access_token"]
    assert claims_of(token)["aud"] == "475226c6-020e-4fb2-8a90-7a972cbfc1d4"
    url = f"{emu.api_url}/providers/Microsoft.BusinessAppPlatform/scopes/admin/environments"
    headers = {"Authorization": f"Bearer {token}"}
    params = {"api-version": "2020-10-01"}
    ok = requests.get(url, params=params, headers=headers, verify=emu.ca_bundle, timeout=10)
    assert ok.status_code == 200, ok.text
    other = app_token(emu, "https://vault.azure.net/.default")["access_token"]
    headers = {"Authorization": f"Bearer {other}"}
    refused = requests.get(url, params=params, headers=headers, verify=emu.ca_bundle, timeout=10)
    assert refused.status_code == 401
