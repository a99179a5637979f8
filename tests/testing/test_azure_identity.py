"""azure-identity's credentials, unmodified, against the emulator: one test per row of
the issue's "works" table, each proving what reached the emulator.

Every token is decoded (not verified: the emulator's own tests verify signatures) to
check the app or identity and the audience it names; the emulator's exact request
counters show what one acquisition costs, and that a second ``get_token`` comes from
azure-identity's (msal's) own cache. Settings the credentials need, all from
``emu.client_settings("azure-identity")``: ``authority`` (the emulator's host),
``disable_instance_discovery=True`` (instance discovery asks login.microsoftonline.com
about the authority) and ``connection_verify`` (the emulator's private CA; it wins over
REQUESTS_CA_BUNDLE, see ``test_connection_verify_alone_trusts_the_emulator``).
``DefaultAzureCredential`` hands ``authority`` to its environment credential only: its
workload identity credential reads ``AZURE_AUTHORITY_HOST``. Managed identity needs
only ``emu.managed_identity_env(kind)`` (its endpoints are plain http, as the real
ones are). The ``env`` fixture still points the CA variables at the emulator, so a
credential that ignored ``connection_verify`` would not fail for that reason alone.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from azure.core.exceptions import ClientAuthenticationError
from azure.identity import (
    CertificateCredential,
    ClientSecretCredential,
    CredentialUnavailableError,
    DefaultAzureCredential,
    DeviceCodeCredential,
    ManagedIdentityCredential,
    WorkloadIdentityCredential,
)
from azure.identity.aio import CertificateCredential as AsyncCertificateCredential
from azure.identity.aio import ClientSecretCredential as AsyncClientSecretCredential

from requests_ppauth.testing import Emulator
from requests_ppauth.testing._jwt import unverified
from requests_ppauth.testing.pytest_plugin import PPAuthEnv
from tests.testing.test_identity_flows import SNI_SUBJECT, sni_material

PP_SCOPE = "https://api.powerplatform.com/.default"
PP_AUD = "https://api.powerplatform.com"
POWERAPPS_SCOPE = "https://service.powerapps.com//.default"
POWERAPPS_AUD = "https://service.powerapps.com/"
UNKNOWN_SCOPE = "https://nonexistent.example.com/.default"
WORKLOAD_SUBJECT = "system:serviceaccount:payments:ppauth-worker"
SYSTEM_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"


def claims_of(token: str) -> dict[str, Any]:
    """The token's claims, unverified: what the assertions below are about."""
    return unverified(token)[1]


UNANSWERED = ("identity-unknown", "msi-unknown")


@pytest.fixture
def env(ppauth_env: PPAuthEnv, emu: Emulator) -> Iterator[PPAuthEnv]:
    """AZURE_*/IDENTITY_* cleared, and the emulator's CA in the variables that override
    a requests Session's ``verify`` (set on this machine and many CI machines).

    Afterwards, every request azure-identity made must have reached a route the
    emulator serves: a path it does not know would be a gap in the emulation.
    """
    ppauth_env.set(REQUESTS_CA_BUNDLE=emu.ca_bundle, CURL_CA_BUNDLE=emu.ca_bundle)
    yield ppauth_env
    unanswered = [(r.method, r.host, r.path) for r in emu.requests() if r.endpoint in UNANSWERED]
    assert unanswered == []


def settings(emu: Emulator) -> dict[str, Any]:
    return emu.client_settings("azure-identity")


def assert_one_token_request(emu: Emulator, client_id: str, grant_type: str) -> None:
    """Exactly one request reached the token endpoint, from ``client_id``, and it worked."""
    (rec,) = emu.requests("token")
    assert (rec.status, rec.client_id, rec.grant_type) == (200, client_id, grant_type)


def write(path: Path, data: bytes) -> str:
    path.write_bytes(data)
    path.chmod(0o600)
    return str(path)


# -- client secret ----------------------------------------------------------------------
def test_client_secret_credential(emu, env):
    s = emu.sample
    credential = ClientSecretCredential(s.tenant_id, s.client_id, s.client_secret, **settings(emu))
    token = credential.get_token(PP_SCOPE)
    claims = claims_of(token.token)
    assert (claims["aud"], claims["azp"], claims["tid"]) == (PP_AUD, s.client_id, s.tenant_id)
    assert claims["azpacr"] == "1"  # a secret authenticated the app
    assert token.expires_on > dt.datetime.now(dt.UTC).timestamp()
    assert_one_token_request(emu, s.client_id, "client_credentials")
    assert emu.requests("token")[0].extra["client_auth"] == "secret"

    assert credential.get_token(PP_SCOPE).token == token.token  # from the credential's cache
    assert emu.count("token") == 1


@pytest.mark.parametrize("ca_variables", ["machine", "unset"])
def test_connection_verify_alone_trusts_the_emulator(emu, ppauth_env, monkeypatch, ca_variables):
    """``connection_verify`` is a per-request ``verify`` in azure-core's requests
    transport, which REQUESTS_CA_BUNDLE does not override (it overrides a Session's
    ``verify`` only): the setting works on machines that set the variable and on
    machines that do not."""
    if ca_variables == "machine":
        # a system bundle, as on this machine and many CI images: it lacks the emulator's CA
        ppauth_env.set(REQUESTS_CA_BUNDLE=SYSTEM_BUNDLE, CURL_CA_BUNDLE=SYSTEM_BUNDLE)
    else:
        for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "SSL_CERT_FILE"):
            monkeypatch.delenv(name, raising=False)
    s = emu.sample
    credential = ClientSecretCredential(s.tenant_id, s.client_id, s.client_secret, **settings(emu))
    assert claims_of(credential.get_token(PP_SCOPE).token)["azp"] == s.client_id
    assert emu.count("token") == 1


def test_client_secret_credential_wrong_secret_is_aadsts7000215(emu, env):
    s = emu.sample
    wrong = "not-the-secret~0123456789"
    credential = ClientSecretCredential(s.tenant_id, s.client_id, wrong, **settings(emu))
    with pytest.raises(ClientAuthenticationError) as caught:
        credential.get_token(PP_SCOPE)
    assert "AADSTS7000215" in str(caught.value)
    assert wrong not in str(caught.value)
    (rec,) = emu.requests("token")
    assert rec.status == 401


def test_client_secret_credential_unknown_resource_is_aadsts500011(emu, env):
    s = emu.sample
    credential = ClientSecretCredential(s.tenant_id, s.client_id, s.client_secret, **settings(emu))
    with pytest.raises(ClientAuthenticationError) as caught:
        credential.get_token(UNKNOWN_SCOPE)
    assert "AADSTS500011" in str(caught.value)
    assert "https://nonexistent.example.com" in str(caught.value)
    assert [r.status for r in emu.requests("token")] == [400]


# -- certificate -------------------------------------------------------------------------
@pytest.mark.parametrize("form", ["pem", "pfx", "pfx-password"])
def test_certificate_credential(emu, env, tmp_path, form):
    s = emu.sample
    cert = s.certificate
    kwargs: dict[str, Any] = {}
    if form == "pem":
        path = write(tmp_path / "client.pem", cert.pem_bundle)
    elif form == "pfx":
        path = write(tmp_path / "client.pfx", cert.pfx())
    else:
        path = write(tmp_path / "client.pfx", cert.pfx("pfx-pass-1"))
        kwargs["password"] = "pfx-pass-1"
    credential = CertificateCredential(
        s.tenant_id, s.cert_client_id, path, **kwargs, **settings(emu)
    )
    token = credential.get_token(PP_SCOPE).token
    claims = claims_of(token)
    assert (claims["aud"], claims["azp"]) == (PP_AUD, s.cert_client_id)
    assert claims["azpacr"] == "2"  # a certificate authenticated the app
    assert_one_token_request(emu, s.cert_client_id, "client_credentials")
    (rec,) = emu.requests("token")
    assert rec.extra["client_auth"] == "assertion"
    assert "client_secret" not in rec.form_fields

    assert credential.get_token(PP_SCOPE).token == token
    assert emu.count("token") == 1


def test_certificate_credential_sends_the_chain_for_subject_name_issuer(emu, env, tmp_path):
    """``send_certificate_chain=True``: the app trusts a CA and a subject name, not a
    registered certificate; the leaf in ``x5c`` must be the one that signed."""
    material = sni_material()
    app = emu.add_app(
        trusted_issuer=material["ca"], trusted_subject=SNI_SUBJECT, name="sni-azure-identity"
    )
    s = emu.sample
    # key, leaf, then its issuing CA: the chain file an enterprise PKI hands out
    path = write(tmp_path / "chain.pem", material["key"] + material["leaf"] + material["ca"])
    credential = CertificateCredential(
        s.tenant_id, app.client_id, path, send_certificate_chain=True, **settings(emu)
    )
    token = credential.get_token(POWERAPPS_SCOPE).token
    claims = claims_of(token)
    # the Power Apps service is a v1 resource: appid, not azp
    assert (claims["aud"], claims["appid"], claims["ver"]) == (
        POWERAPPS_AUD,
        app.client_id,
        "1.0",
    )
    assert claims["appidacr"] == "2"
    assert_one_token_request(emu, app.client_id, "client_credentials")
    assert credential.get_token(POWERAPPS_SCOPE).token == token
    assert emu.count("token") == 1


def test_certificate_without_the_chain_is_refused_for_subject_name_issuer(emu, env, tmp_path):
    """Without ``x5c`` the app has no registered key to check the assertion against."""
    material = sni_material()
    app = emu.add_app(
        trusted_issuer=material["ca"], trusted_subject=SNI_SUBJECT, name="sni-no-chain"
    )
    path = write(tmp_path / "leaf.pem", material["key"] + material["leaf"])
    credential = CertificateCredential(emu.sample.tenant_id, app.client_id, path, **settings(emu))
    with pytest.raises(ClientAuthenticationError) as caught:
        credential.get_token(PP_SCOPE)
    assert "AADSTS700027" in str(caught.value)
    assert [r.status for r in emu.requests("token")] == [401]


# -- device code -------------------------------------------------------------------------
def test_device_code_credential(emu, env):
    s = emu.sample
    prompts: list[tuple[str, str]] = []

    def approve(verification_uri: str, user_code: str, expires_on: dt.datetime) -> None:
        # the person at the browser signs in before azure-identity's first poll
        assert expires_on > dt.datetime.now(dt.UTC)
        prompts.append((verification_uri, user_code))
        emu.approve_device(user_code, s.username)

    credential = DeviceCodeCredential(
        s.public_client_id, tenant_id=s.tenant_id, prompt_callback=approve, **settings(emu)
    )
    token = credential.get_token(PP_SCOPE).token
    claims = claims_of(token)
    assert (claims["aud"], claims["azp"]) == (PP_AUD, s.public_client_id)
    assert claims["preferred_username"] == s.username
    assert len(prompts) == 1
    assert emu.count("devicecode") == 1
    assert_one_token_request(
        emu, s.public_client_id, "urn:ietf:params:oauth:grant-type:device_code"
    )

    assert credential.get_token(PP_SCOPE).token == token  # msal's cache: no second sign-in
    assert (emu.count("devicecode"), emu.count("token"), len(prompts)) == (1, 1, 1)


def test_device_code_credential_declined(emu, env):
    s = emu.sample

    def decline(verification_uri: str, user_code: str, expires_on: dt.datetime) -> None:
        emu.decline_device(user_code)

    credential = DeviceCodeCredential(
        s.public_client_id, tenant_id=s.tenant_id, prompt_callback=decline, **settings(emu)
    )
    with pytest.raises(ClientAuthenticationError) as caught:
        credential.get_token(PP_SCOPE)
    assert "authorization_declined" in str(caught.value)
    assert emu.count("token") == 1


# -- managed identity --------------------------------------------------------------------
MSI_ENDPOINT = {"imds": "imds", "appservice": "appservice-msi"}


@pytest.mark.parametrize("kind", ["imds", "appservice"])
def test_managed_identity_credential_system_assigned(emu, env, kind):
    env.set(**emu.managed_identity_env(kind))
    credential = ManagedIdentityCredential()
    token = credential.get_token(PP_SCOPE).token
    claims = claims_of(token)
    identity = emu.system_identity
    assert (claims["aud"], claims["oid"]) == (PP_AUD, identity.object_id)
    assert claims["azp"] == identity.client_id
    assert emu.count(MSI_ENDPOINT[kind]) == 1
    (rec,) = emu.requests(MSI_ENDPOINT[kind])
    assert rec.status == 200

    assert credential.get_token(PP_SCOPE).token == token
    assert emu.count(MSI_ENDPOINT[kind]) == 1
    assert emu.count("token") == 0  # managed identity never reaches Entra's token endpoint


@pytest.mark.parametrize("kind", ["imds", "appservice"])
def test_managed_identity_credential_user_assigned(emu, env, kind):
    worker = emu.add_managed_identity(f"worker-{kind}")
    env.set(**emu.managed_identity_env(kind))
    credential = ManagedIdentityCredential(client_id=worker.client_id)
    claims = claims_of(credential.get_token(POWERAPPS_SCOPE).token)
    assert (claims["aud"], claims["appid"], claims["oid"]) == (
        POWERAPPS_AUD,
        worker.client_id,
        worker.object_id,
    )
    assert emu.count(MSI_ENDPOINT[kind]) == 1


@pytest.mark.parametrize("kind", ["imds", "appservice"])
def test_managed_identity_credential_unknown_resource_is_aadsts500011(emu, env, kind):
    """azure-identity reports any error body from a managed identity endpoint as
    "unavailable" (so DefaultAzureCredential moves on), with Entra's text inside."""
    env.set(**emu.managed_identity_env(kind))
    with pytest.raises(CredentialUnavailableError) as caught:
        ManagedIdentityCredential().get_token(UNKNOWN_SCOPE)
    assert "AADSTS500011" in str(caught.value)
    assert "https://nonexistent.example.com" in str(caught.value)
    (rec,) = emu.requests(MSI_ENDPOINT[kind])
    assert rec.status == 400


# -- workload identity -------------------------------------------------------------------
def federated_app(
    emu: Emulator, tmp_path: Path, subject: str = WORKLOAD_SUBJECT
) -> tuple[str, str]:
    """An app trusting the emulator's federation issuer for WORKLOAD_SUBJECT, and a token
    file holding ``subject``'s token (what the Kubernetes webhook mounts)."""
    app = emu.add_app(federated_subject=WORKLOAD_SUBJECT, name="aks-workload")
    path = tmp_path / "azure-identity-token"
    path.write_text(emu.federated_token(subject), encoding="ascii")
    return app.client_id, str(path)


def test_workload_identity_credential(emu, env, tmp_path):
    client_id, token_file = federated_app(emu, tmp_path)
    credential = WorkloadIdentityCredential(
        tenant_id=emu.sample.tenant_id,
        client_id=client_id,
        token_file_path=token_file,
        **settings(emu),
    )
    token = credential.get_token(PP_SCOPE).token
    claims = claims_of(token)
    assert (claims["aud"], claims["azp"]) == (PP_AUD, client_id)
    assert_one_token_request(emu, client_id, "client_credentials")
    assert emu.requests("token")[0].extra["client_auth"] == "federated"

    assert credential.get_token(PP_SCOPE).token == token
    assert emu.count("token") == 1


def test_workload_identity_credential_untrusted_subject_is_aadsts70021(emu, env, tmp_path):
    client_id, token_file = federated_app(emu, tmp_path, subject="system:serviceaccount:x:y")
    credential = WorkloadIdentityCredential(
        tenant_id=emu.sample.tenant_id,
        client_id=client_id,
        token_file_path=token_file,
        **settings(emu),
    )
    with pytest.raises(ClientAuthenticationError) as caught:
        credential.get_token(PP_SCOPE)
    assert "AADSTS70021" in str(caught.value)
    assert [r.status for r in emu.requests("token")] == [400]


# -- DefaultAzureCredential ----------------------------------------------------------------
#: everything DefaultAzureCredential would try after the environment and workload identity
OTHERS_EXCLUDED = {
    "exclude_managed_identity_credential": True,
    "exclude_shared_token_cache_credential": True,
    "exclude_visual_studio_code_credential": True,
    "exclude_cli_credential": True,
    "exclude_developer_cli_credential": True,
    "exclude_powershell_credential": True,
    "exclude_interactive_browser_credential": True,
    "exclude_broker_credential": True,
}


def default_credential(emu: Emulator, **flags: bool) -> DefaultAzureCredential:
    return DefaultAzureCredential(
        **emu.client_settings("azure-identity"),
        **OTHERS_EXCLUDED,
        **flags,
    )


def test_default_azure_credential_picks_the_environment(emu, env):
    s = emu.sample
    env.set(
        AZURE_TENANT_ID=s.tenant_id,
        AZURE_CLIENT_ID=s.client_id,
        AZURE_CLIENT_SECRET=s.client_secret,
        AZURE_AUTHORITY_HOST=emu.authority_host,
    )
    credential = default_credential(emu, exclude_workload_identity_credential=True)
    token = credential.get_token(PP_SCOPE).token
    assert (claims_of(token)["azp"], claims_of(token)["aud"]) == (s.client_id, PP_AUD)
    assert_one_token_request(emu, s.client_id, "client_credentials")
    assert credential.get_token(PP_SCOPE).token == token
    assert emu.count("token") == 1


def test_default_azure_credential_picks_workload_identity(emu, env, tmp_path):
    client_id, token_file = federated_app(emu, tmp_path)
    env.set(
        AZURE_TENANT_ID=emu.sample.tenant_id,
        AZURE_CLIENT_ID=client_id,
        AZURE_FEDERATED_TOKEN_FILE=token_file,
        AZURE_AUTHORITY_HOST=emu.authority_host,
    )
    # the environment credential is tried first and is unavailable: no secret, no cert
    credential = default_credential(emu)
    token = credential.get_token(PP_SCOPE).token
    assert (claims_of(token)["azp"], claims_of(token)["aud"]) == (client_id, PP_AUD)
    assert_one_token_request(emu, client_id, "client_credentials")
    assert emu.requests("token")[0].extra["client_auth"] == "federated"
    assert credential.get_token(PP_SCOPE).token == token
    assert emu.count("token") == 1


def test_default_azure_credential_wrong_secret_stops_the_chain(emu, env, tmp_path):
    """An environment credential that is configured but refused is an error, not a
    reason to try the next credential (the workload identity would have worked)."""
    client_id, token_file = federated_app(emu, tmp_path)
    env.set(
        AZURE_TENANT_ID=emu.sample.tenant_id,
        AZURE_CLIENT_ID=client_id,
        AZURE_CLIENT_SECRET="wrong~secret~0123456789",
        AZURE_FEDERATED_TOKEN_FILE=token_file,
        AZURE_AUTHORITY_HOST=emu.authority_host,
    )
    with pytest.raises(ClientAuthenticationError) as caught:
        default_credential(emu).get_token(PP_SCOPE)
    assert "AADSTS7000215" in str(caught.value)
    assert "wrong~secret~0123456789" not in str(caught.value)
    assert [r.status for r in emu.requests("token")] == [401]


# -- async ----------------------------------------------------------------------------------
def test_async_client_secret_credential(emu, env):
    s = emu.sample

    async def run() -> tuple[str, str]:
        async with AsyncClientSecretCredential(
            s.tenant_id, s.client_id, s.client_secret, **settings(emu)
        ) as credential:
            first = (await credential.get_token(PP_SCOPE)).token
            return first, (await credential.get_token(PP_SCOPE)).token

    first, second = asyncio.run(run())
    assert (claims_of(first)["azp"], claims_of(first)["aud"]) == (s.client_id, PP_AUD)
    assert second == first
    assert_one_token_request(emu, s.client_id, "client_credentials")


def test_async_client_secret_credential_wrong_secret(emu, env):
    s = emu.sample

    async def run() -> None:
        async with AsyncClientSecretCredential(
            s.tenant_id, s.client_id, "wrong~0123456789", **settings(emu)
        ) as credential:
            await credential.get_token(PP_SCOPE)

    with pytest.raises(ClientAuthenticationError) as caught:
        asyncio.run(run())
    assert "AADSTS7000215" in str(caught.value)
    assert emu.count("token") == 1


def test_async_certificate_credential(emu, env, tmp_path):
    s = emu.sample
    path = write(tmp_path / "client.pem", s.certificate.pem_bundle)

    async def run() -> tuple[str, str]:
        async with AsyncCertificateCredential(
            s.tenant_id, s.cert_client_id, path, **settings(emu)
        ) as credential:
            first = (await credential.get_token(POWERAPPS_SCOPE)).token
            return first, (await credential.get_token(POWERAPPS_SCOPE)).token

    first, second = asyncio.run(run())
    claims = claims_of(first)
    assert (claims["appid"], claims["aud"], claims["appidacr"]) == (
        s.cert_client_id,
        POWERAPPS_AUD,
        "2",
    )
    assert second == first
    assert_one_token_request(emu, s.cert_client_id, "client_credentials")
    assert emu.requests("token")[0].extra["client_auth"] == "assertion"


def test_async_certificate_credential_unknown_resource(emu, env, tmp_path):
    s = emu.sample
    path = write(tmp_path / "client.pem", s.certificate.pem_bundle)

    async def run() -> None:
        async with AsyncCertificateCredential(
            s.tenant_id, s.cert_client_id, path, **settings(emu)
        ) as credential:
            await credential.get_token(UNKNOWN_SCOPE)

    with pytest.raises(ClientAuthenticationError) as caught:
        asyncio.run(run())
    assert "AADSTS500011" in str(caught.value)
    assert [r.status for r in emu.requests("token")] == [400]
