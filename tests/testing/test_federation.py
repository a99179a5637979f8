"""The emulator's CI OIDC endpoints, spoken to as the real services are.

Azure Pipelines: ``POST {SYSTEM_OIDCREQUESTURI}?api-version=7.1&serviceConnectionId=...``
with ``Authorization: Bearer {System.AccessToken}`` answers ``{"oidcToken": jwt}``
(what azure-identity's ``AzurePipelinesCredential`` sends, checked below with that
credential unmodified). GitHub Actions: ``GET {ACTIONS_ID_TOKEN_REQUEST_URL}&audience=X``
with ``Authorization: Bearer {ACTIONS_ID_TOKEN_REQUEST_TOKEN}`` answers
``{"count": 1, "value": jwt}``. Plain requests pass ``verify=emu.ca_bundle`` per
request, which REQUESTS_CA_BUNDLE does not override (it overrides a Session's only).
"""

from __future__ import annotations

import time
from typing import Any

import pytest
import requests
from azure.core.exceptions import ClientAuthenticationError
from azure.identity import AzurePipelinesCredential

from requests_ppauth.testing import Emulator
from requests_ppauth.testing._jwt import unverified
from requests_ppauth.testing._state import App

EXCHANGE_AUDIENCE = "api://AzureADTokenExchange"
POWERAPPS_SCOPE = "https://service.powerapps.com//.default"
POWERAPPS_AUD = "https://service.powerapps.com/"
API_VERSION = "7.1"


def claims_of(token: str) -> dict[str, Any]:
    return unverified(token)[1]


def oidc_url(env: dict[str, str], *, connection_id: str | None = None, api_version: bool = True):
    """The URL azure-identity builds from the pipeline's variables."""
    connection = connection_id
    if connection is None:
        connection = env["AZURESUBSCRIPTION_SERVICE_CONNECTION_ID"]
    query = f"api-version={API_VERSION}&" if api_version else ""
    return f"{env['SYSTEM_OIDCREQUESTURI']}?{query}serviceConnectionId={connection}"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}


def post_oidc(emu: Emulator, env: dict[str, str], **kwargs: Any) -> requests.Response:
    token = kwargs.pop("access_token", env["SYSTEM_ACCESSTOKEN"])
    return requests.post(
        oidc_url(env, **kwargs), headers=bearer(token), verify=emu.ca_bundle, timeout=10
    )


def exchange(emu: Emulator, app: App, assertion: str) -> requests.Response:
    """Entra ID's client_credentials grant with ``assertion`` as the app's credential."""
    return requests.post(
        f"{emu.authority(app.tenant_id)}/oauth2/v2.0/token",
        data={
            "grant_type": "client_credentials",
            "client_id": app.client_id,
            "scope": POWERAPPS_SCOPE,
            "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            "client_assertion": assertion,
        },
        verify=emu.ca_bundle,
        timeout=10,
    )


# -- Azure Pipelines: the oidctoken endpoint ------------------------------------------------
def test_pipelines_oidc_token_names_the_service_connection(emu):
    env = emu.azure_pipelines_env("deploy-prod", org="fabrikam", project="portal")
    before = time.time()
    resp = post_oidc(emu, env)
    assert resp.status_code == 200
    assert resp.headers["Content-Type"].startswith("application/json")
    body = resp.json()
    assert list(body) == ["oidcToken"]
    header, claims = unverified(body["oidcToken"])
    assert header["alg"] == "RS256"
    assert claims["sub"] == emu.pipelines_subject("deploy-prod", org="fabrikam", project="portal")
    assert claims["sub"] == "sc://fabrikam/portal/deploy-prod"
    assert claims["aud"] == EXCHANGE_AUDIENCE
    assert claims["iss"] == emu.federation_issuer
    assert before + 600 - 5 <= claims["exp"] <= time.time() + 600 + 5


def test_pipelines_oidc_token_is_trusted_by_an_app_federated_with_its_subject(emu):
    """The token is signed by the federation issuer: Entra ID takes it as the app's
    client assertion (the signature is checked there)."""
    app = emu.add_app(federated_subject=emu.pipelines_subject(), name="pipelines-direct")
    env = emu.azure_pipelines_env()
    assertion = post_oidc(emu, env).json()["oidcToken"]
    resp = exchange(emu, app, assertion)
    assert resp.status_code == 200, resp.text
    assert claims_of(resp.json()["access_token"])["aud"] == POWERAPPS_AUD
    assert emu.requests("token")[0].extra["client_auth"] == "federated"

    tampered = assertion[:-4] + ("AAAA" if not assertion.endswith("AAAA") else "BBBB")
    refused = exchange(emu, app, tampered)
    assert refused.status_code == 401
    assert refused.json()["error_codes"] == [700027]


def test_pipelines_oidc_is_logged_with_its_service_connection(emu):
    env = emu.azure_pipelines_env()
    assert post_oidc(emu, env).status_code == 200
    (rec,) = emu.requests("pipelines_oidc")
    assert (rec.endpoint, rec.method, rec.status) == ("pipelines_oidc", "POST", 200)
    assert rec.extra["service_connection_id"] == env["AZURESUBSCRIPTION_SERVICE_CONNECTION_ID"]
    assert rec.listener == "identity"
    assert rec.scope == EXCHANGE_AUDIENCE


@pytest.mark.parametrize("token", ["not-the-job-token", None], ids=["wrong", "absent"])
def test_pipelines_oidc_without_the_jobs_access_token_is_401(emu, token):
    env = emu.azure_pipelines_env()
    headers = bearer(token) if token else {"Content-Type": "application/json"}
    resp = requests.post(oidc_url(env), headers=headers, verify=emu.ca_bundle, timeout=10)
    assert resp.status_code == 401
    assert "oidcToken" not in resp.text
    (rec,) = emu.requests("pipelines_oidc")
    assert rec.status == 401


def test_pipelines_oidc_with_another_jobs_access_token_is_401(emu):
    mine = emu.azure_pipelines_env()
    theirs = emu.azure_pipelines_env()
    assert mine["SYSTEM_OIDCREQUESTURI"] != theirs["SYSTEM_OIDCREQUESTURI"]
    resp = post_oidc(emu, mine, access_token=theirs["SYSTEM_ACCESSTOKEN"])
    assert resp.status_code == 401
    # and each job's own token still works on its own URI
    assert post_oidc(emu, theirs).status_code == 200
    assert post_oidc(emu, mine).status_code == 200


def test_pipelines_oidc_get_is_405(emu):
    env = emu.azure_pipelines_env()
    resp = requests.get(
        oidc_url(env), headers=bearer(env["SYSTEM_ACCESSTOKEN"]), verify=emu.ca_bundle, timeout=10
    )
    assert resp.status_code == 405
    assert "oidcToken" not in resp.json()
    (rec,) = emu.requests("pipelines_oidc")
    assert (rec.method, rec.status) == ("GET", 405)


def test_pipelines_oidc_without_api_version_is_400(emu):
    env = emu.azure_pipelines_env()
    resp = post_oidc(emu, env, api_version=False)
    assert resp.status_code == 400
    assert "api-version" in resp.json()["message"]


def test_pipelines_oidc_unknown_service_connection_is_404_devops_error(emu):
    env = emu.azure_pipelines_env()
    unknown = "00000000-0000-0000-0000-000000000000"
    resp = post_oidc(emu, env, connection_id=unknown)
    assert resp.status_code == 404
    body = resp.json()
    assert unknown in body["message"]
    assert body["typeKey"] == "TaskOrchestrationException"
    assert "oidcToken" not in body
    (rec,) = emu.requests("pipelines_oidc")
    assert (rec.status, rec.extra["service_connection_id"]) == (404, unknown)


def test_pipelines_service_connection_id_is_per_connection(emu):
    """Another job on the same connection gets the same id; another connection does not,
    and its id is not usable from this job."""
    one = emu.azure_pipelines_env("conn-a")
    same = emu.azure_pipelines_env("conn-a")
    other = emu.azure_pipelines_env("conn-b")
    a_id = one["AZURESUBSCRIPTION_SERVICE_CONNECTION_ID"]
    assert same["AZURESUBSCRIPTION_SERVICE_CONNECTION_ID"] == a_id
    b_id = other["AZURESUBSCRIPTION_SERVICE_CONNECTION_ID"]
    assert b_id != a_id
    assert post_oidc(emu, one, connection_id=b_id).status_code == 404


def test_pipelines_env_with_app_names_its_ids(emu):
    app = emu.add_app(federated_subject=emu.pipelines_subject(), name="pipelines-env")
    env = emu.azure_pipelines_env(app=app)
    assert env["AZURESUBSCRIPTION_CLIENT_ID"] == app.client_id
    assert env["AZURESUBSCRIPTION_TENANT_ID"] == app.tenant_id
    assert env["TF_BUILD"] == "True"
    assert env["SYSTEM_OIDCREQUESTURI"].startswith(f"{emu.authority_host}/_devops/contoso/")
    assert env["SYSTEM_OIDCREQUESTURI"].endswith("/oidctoken")

    bare = emu.azure_pipelines_env()
    assert "AZURESUBSCRIPTION_CLIENT_ID" not in bare
    assert "AZURESUBSCRIPTION_TENANT_ID" not in bare
    assert set(env) - set(bare) == {"AZURESUBSCRIPTION_CLIENT_ID", "AZURESUBSCRIPTION_TENANT_ID"}


def test_pipelines_env_access_token_given_is_the_one_accepted(emu):
    env = emu.azure_pipelines_env(access_token="my-system-access-token")
    assert env["SYSTEM_ACCESSTOKEN"] == "my-system-access-token"
    assert post_oidc(emu, env).status_code == 200


def test_pipelines_negative_lifetime_gives_an_expired_token(emu):
    env = emu.azure_pipelines_env(lifetime=-3600)
    claims = claims_of(post_oidc(emu, env).json()["oidcToken"])
    assert claims["exp"] < time.time() - 3000


def test_pipelines_expired_token_is_refused_by_entra_id(emu):
    app = emu.add_app(federated_subject=emu.pipelines_subject(), name="pipelines-expired")
    assertion = post_oidc(emu, emu.azure_pipelines_env(lifetime=-3600)).json()["oidcToken"]
    resp = exchange(emu, app, assertion)
    assert resp.status_code == 401
    assert resp.json()["error"] == "invalid_client"
    assert resp.json()["error_codes"] == [700024]


def test_pipelines_audience_option_sets_aud(emu):
    env = emu.azure_pipelines_env(audience="api://Other")
    claims = claims_of(post_oidc(emu, env).json()["oidcToken"])
    assert claims["aud"] == "api://Other"
    assert claims["sub"] == emu.pipelines_subject()


# -- GitHub Actions: the id-token endpoint ------------------------------------------------
def github_get(emu: Emulator, env: dict[str, str], audience: str | None, token: str | None = None):
    url = env["ACTIONS_ID_TOKEN_REQUEST_URL"]
    if audience is not None:
        url += f"&audience={audience}"
    auth = token if token is not None else env["ACTIONS_ID_TOKEN_REQUEST_TOKEN"]
    return requests.get(url, headers=bearer(auth), verify=emu.ca_bundle, timeout=10)


def test_github_oidc_token_has_the_requested_audience_and_the_jobs_subject(emu):
    env = emu.github_actions_env("fabrikam/site", ref="refs/heads/release")
    assert "?api-version=" in env["ACTIONS_ID_TOKEN_REQUEST_URL"]
    before = time.time()
    resp = github_get(emu, env, EXCHANGE_AUDIENCE)
    assert resp.status_code == 200
    body = resp.json()
    assert body["count"] == 1
    assert set(body) == {"count", "value"}
    claims = claims_of(body["value"])
    assert claims["aud"] == EXCHANGE_AUDIENCE
    assert claims["sub"] == "repo:fabrikam/site:ref:refs/heads/release"
    assert claims["iss"] == emu.federation_issuer
    assert before + 600 - 5 <= claims["exp"] <= time.time() + 600 + 5
    (rec,) = emu.requests("github_oidc")
    assert (rec.method, rec.status, rec.scope) == ("GET", 200, EXCHANGE_AUDIENCE)


def test_github_oidc_audience_is_whatever_is_asked(emu):
    env = emu.github_actions_env()
    claims = claims_of(github_get(emu, env, "api://Custom").json()["value"])
    assert claims["aud"] == "api://Custom"
    assert claims["sub"] == "repo:contoso/power-app:ref:refs/heads/main"


def test_github_oidc_without_audience_defaults_to_the_owner_url(emu):
    env = emu.github_actions_env()  # contoso/power-app
    claims = claims_of(github_get(emu, env, None).json()["value"])
    assert claims["aud"] == "https://github.com/contoso"


def test_github_oidc_token_is_trusted_by_an_app_federated_with_its_subject(emu):
    subject = "repo:contoso/power-app:ref:refs/heads/main"
    app = emu.add_app(federated_subject=subject, name="github-direct")
    env = emu.github_actions_env()
    assertion = github_get(emu, env, EXCHANGE_AUDIENCE).json()["value"]
    assert exchange(emu, app, assertion).status_code == 200


def test_github_oidc_wrong_request_token_is_401(emu):
    env = emu.github_actions_env()
    resp = github_get(emu, env, EXCHANGE_AUDIENCE, token="not-the-request-token")
    assert resp.status_code == 401
    assert "value" not in resp.json()
    (rec,) = emu.requests("github_oidc")
    assert rec.status == 401


def test_github_oidc_post_is_401(emu):
    env = emu.github_actions_env()
    resp = requests.post(
        f"{env['ACTIONS_ID_TOKEN_REQUEST_URL']}&audience={EXCHANGE_AUDIENCE}",
        headers=bearer(env["ACTIONS_ID_TOKEN_REQUEST_TOKEN"]),
        verify=emu.ca_bundle,
        timeout=10,
    )
    assert resp.status_code == 401
    assert "value" not in resp.json()


def test_github_oidc_lifetime_and_request_token_options(emu):
    env = emu.github_actions_env(lifetime=-3600, request_token="given-request-token")
    assert env["ACTIONS_ID_TOKEN_REQUEST_TOKEN"] == "given-request-token"
    claims = claims_of(github_get(emu, env, EXCHANGE_AUDIENCE).json()["value"])
    assert claims["exp"] < time.time() - 3000


# -- azure-identity's AzurePipelinesCredential, unmodified ----------------------------------
def pipelines_credential(emu: Emulator, app: App, env: dict[str, str]) -> AzurePipelinesCredential:
    """The credential as the AzureCLI@2 task's script would build it; the settings are
    those every azure-identity test uses (emulator authority, no instance discovery,
    the emulator's CA per request)."""
    return AzurePipelinesCredential(
        tenant_id=app.tenant_id,
        client_id=app.client_id,
        service_connection_id=env["AZURESUBSCRIPTION_SERVICE_CONNECTION_ID"],
        system_access_token=env["SYSTEM_ACCESSTOKEN"],
        **emu.client_settings("azure-identity"),
    )


def test_azure_pipelines_credential_gets_a_token(emu, ppauth_env):
    app = emu.add_app(federated_subject=emu.pipelines_subject(), name="pipelines-sdk")
    env = emu.azure_pipelines_env(app=app)
    ppauth_env.set(SYSTEM_OIDCREQUESTURI=env["SYSTEM_OIDCREQUESTURI"])
    credential = pipelines_credential(emu, app, env)
    token = credential.get_token(POWERAPPS_SCOPE)
    claims = claims_of(token.token)
    # a v1.0 token (service.powerapps.com takes v1): the app, authenticated by an assertion
    assert (claims["aud"], claims["appid"], claims["tid"]) == (
        POWERAPPS_AUD,
        app.client_id,
        app.tenant_id,
    )
    assert claims["appidacr"] == "2"
    assert token.expires_on > time.time()

    (oidc,) = emu.requests("pipelines_oidc")
    assert (oidc.method, oidc.status) == ("POST", 200)
    assert oidc.extra["service_connection_id"] == env["AZURESUBSCRIPTION_SERVICE_CONNECTION_ID"]
    (rec,) = emu.requests("token")
    assert (rec.status, rec.client_id, rec.grant_type) == (200, app.client_id, "client_credentials")
    assert rec.extra["client_auth"] == "federated"
    assert "client_assertion" in rec.form_fields

    assert credential.get_token(POWERAPPS_SCOPE).token == token.token  # azure-identity's cache
    assert emu.count("token") == 1


def test_azure_pipelines_credential_other_service_connection_is_aadsts70021(emu, ppauth_env):
    app = emu.add_app(federated_subject=emu.pipelines_subject(), name="pipelines-mismatch")
    env = emu.azure_pipelines_env("another-connection", app=app)
    ppauth_env.set(SYSTEM_OIDCREQUESTURI=env["SYSTEM_OIDCREQUESTURI"])
    with pytest.raises(ClientAuthenticationError) as caught:
        pipelines_credential(emu, app, env).get_token(POWERAPPS_SCOPE)
    assert "AADSTS70021" in str(caught.value)
    assert [r.status for r in emu.requests("pipelines_oidc")] == [200]
    assert [r.status for r in emu.requests("token")] == [400]


def test_azure_pipelines_credential_bad_access_token_fails_at_devops(emu, ppauth_env):
    app = emu.add_app(federated_subject=emu.pipelines_subject(), name="pipelines-bad-token")
    env = emu.azure_pipelines_env(app=app) | {"SYSTEM_ACCESSTOKEN": "revoked"}
    ppauth_env.set(SYSTEM_OIDCREQUESTURI=env["SYSTEM_OIDCREQUESTURI"])
    with pytest.raises(ClientAuthenticationError) as caught:
        pipelines_credential(emu, app, env).get_token(POWERAPPS_SCOPE)
    assert "OIDC token endpoint" in str(caught.value)
    assert {r.status for r in emu.requests("pipelines_oidc")} == {401}
    assert emu.count("token") == 0


# -- admin verbs ----------------------------------------------------------------------------
def test_admin_azure_pipelines_env_names_the_apps_ids(emu):
    app = emu.add_app(federated_subject=emu.pipelines_subject(), name="pipelines-admin")
    env = emu.admin_call("azure_pipelines_env", {"client_id": app.client_id})
    assert set(env) == set(emu.azure_pipelines_env(app=app))
    assert env["AZURESUBSCRIPTION_CLIENT_ID"] == app.client_id
    assert env["AZURESUBSCRIPTION_TENANT_ID"] == app.tenant_id
    assert post_oidc(emu, env).status_code == 200


def test_admin_azure_pipelines_env_without_app_and_with_options(emu):
    env = emu.admin_call(
        "azure_pipelines_env", {"service_connection": "from-admin", "audience": "api://Other"}
    )
    assert set(env) == set(emu.azure_pipelines_env())
    claims = claims_of(post_oidc(emu, env).json()["oidcToken"])
    assert (claims["sub"], claims["aud"]) == (emu.pipelines_subject("from-admin"), "api://Other")


def test_admin_azure_pipelines_env_unknown_client_id_is_keyerror(emu):
    with pytest.raises(KeyError, match="unknown app"):
        emu.admin_call("azure_pipelines_env", {"client_id": "00000000-dead-beef-0000-000000000000"})


def test_admin_azure_pipelines_env_over_http(emu):
    """The admin API other processes use: the same verb, JSON in and out; an unknown app
    is a 400 naming the KeyError."""
    app = emu.add_app(federated_subject=emu.pipelines_subject(), name="pipelines-admin-http")
    url = f"{emu.authority_host}/_emulator/azure_pipelines_env"
    resp = requests.post(url, json={"client_id": app.client_id}, verify=emu.ca_bundle, timeout=10)
    assert resp.status_code == 200
    env = resp.json()["result"]
    assert env["AZURESUBSCRIPTION_CLIENT_ID"] == app.client_id
    assert post_oidc(emu, env).status_code == 200

    resp = requests.post(url, json={"client_id": "nope"}, verify=emu.ca_bundle, timeout=10)
    assert resp.status_code == 400
    assert resp.json()["error"].startswith("KeyError")


def test_admin_github_actions_env(emu):
    env = emu.admin_call("github_actions_env", {"repo": "fabrikam/admin", "ref": "refs/tags/v1"})
    assert set(env) == {"ACTIONS_ID_TOKEN_REQUEST_URL", "ACTIONS_ID_TOKEN_REQUEST_TOKEN"}
    claims = claims_of(github_get(emu, env, EXCHANGE_AUDIENCE).json()["value"])
    assert claims["sub"] == "repo:fabrikam/admin:ref:refs/tags/v1"
