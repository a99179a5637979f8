"""The emulated Key Vault, read by the real azure-keyvault-secrets with azure-identity."""

from __future__ import annotations

import base64
import hashlib

import pytest
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.identity import ClientSecretCredential
from azure.keyvault.secrets import SecretClient
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs12

from requests_ppauth.testing import Emulator


@pytest.fixture
def emu():
    with Emulator() as emulator:
        yield emulator


def make_client(emu: Emulator, **kwargs) -> SecretClient:
    s = emu.sample
    cred = ClientSecretCredential(
        s.tenant_id,
        s.client_id,
        s.client_secret,
        **emu.client_settings("azure-identity"),
    )
    return SecretClient(
        emu.vault_url,
        cred,
        verify_challenge_resource=False,
        connection_verify=emu.ca_bundle,
        **kwargs,
    )


@pytest.fixture
def client(emu):
    with make_client(emu) as secret_client:
        yield secret_client


def test_latest_version_of_a_secret(emu, client):
    emu.set_secret("db-password", "first")
    latest = emu.set_secret("db-password", "second")

    secret = client.get_secret("db-password")

    assert secret.value == "second"
    assert secret.name == "db-password"
    assert secret.properties.version == latest
    assert secret.properties.enabled is True
    assert secret.properties.content_type is None


def test_a_specific_older_version(emu, client):
    old = emu.set_secret("api-key", "v1-value")
    emu.set_secret("api-key", "v2-value")

    secret = client.get_secret("api-key", version=old)

    assert secret.value == "v1-value"
    assert secret.properties.version == old
    [record] = [r for r in emu.requests("vault") if r.status == 200]
    assert record.path == f"/secrets/api-key/{old}"


def test_a_disabled_current_version_is_forbidden_not_skipped(emu, client):
    """Key Vault's current version is the newest; disabling it does not fall back."""
    enabled = emu.set_secret("rotating", "good")
    emu.set_secret("rotating", "disabled", enabled=False)

    with pytest.raises(HttpResponseError) as info:
        client.get_secret("rotating")

    assert info.value.status_code == 403
    assert not isinstance(info.value, ResourceNotFoundError)
    assert info.value.error is not None
    assert info.value.error.code == "Forbidden"
    assert "Operation get is not allowed on a disabled secret." in str(info.value)
    assert "SecretDisabled" in str(info.value)
    assert client.get_secret("rotating", version=enabled).value == "good"


def test_pem_certificate_secret(emu, client):
    cert = emu.sample.certificate
    emu.set_secret(
        "client-cert", cert.pem_bundle.decode("ascii"), content_type="application/x-pem-file"
    )

    secret = client.get_secret("client-cert")

    assert secret.properties.content_type == "application/x-pem-file"
    data = secret.value.encode("ascii")
    assert data == cert.pem_bundle
    loaded = x509.load_pem_x509_certificate(data)
    der = loaded.public_bytes(serialization.Encoding.DER)
    assert hashlib.sha1(der).hexdigest().upper() == cert.thumbprint  # noqa: S324
    key = serialization.load_pem_private_key(data, password=None)
    assert key.public_key().public_numbers() == loaded.public_key().public_numbers()


def test_pkcs12_certificate_secret(emu, client):
    cert = emu.sample.certificate
    encoded = base64.b64encode(cert.pfx()).decode("ascii")
    emu.set_secret("client-pfx", encoded, content_type="application/x-pkcs12")

    secret = client.get_secret("client-pfx")

    assert secret.properties.content_type == "application/x-pkcs12"
    key, leaf, extra = pkcs12.load_key_and_certificates(base64.b64decode(secret.value), None)
    assert leaf is not None
    assert key is not None
    assert extra == []
    der = leaf.public_bytes(serialization.Encoding.DER)
    assert hashlib.sha256(der).hexdigest().upper() == cert.thumbprint_sha256
    assert key.public_key().public_numbers() == leaf.public_key().public_numbers()


def test_missing_secret_is_resource_not_found(emu, client):
    emu.set_secret("exists", "value")
    with pytest.raises(ResourceNotFoundError) as info:
        client.get_secret("does-not-exist")
    assert info.value.status_code == 404
    assert "does-not-exist" in str(info.value)


def test_missing_version_is_resource_not_found(emu, client):
    emu.set_secret("exists", "value")
    with pytest.raises(ResourceNotFoundError):
        client.get_secret("exists", version="0" * 32)


def test_denied_principal_gets_403(emu, client):
    emu.set_secret("guarded", "value")
    emu.deny_vault(emu.sample.client_id)

    with pytest.raises(HttpResponseError) as info:
        client.get_secret("guarded")

    assert info.value.status_code == 403
    assert not isinstance(info.value, ResourceNotFoundError)
    assert "does not have secrets get permission" in str(info.value)
    assert [r.status for r in emu.requests("vault")] == [401, 403]


def test_the_401_challenge_is_what_makes_the_sdk_authenticate(emu, client):
    emu.set_secret("s", "v")

    assert client.get_secret("s").value == "v"

    first, second = emu.requests("vault")
    assert first.authorization is None
    assert first.status == 401
    assert second.authorization is not None
    assert second.authorization.startswith("Bearer ")
    assert second.status == 200
    [token] = emu.requests("token")
    assert first.time <= token.time <= second.time
    assert token.grant_type == "client_credentials"
    assert token.client_id == emu.sample.client_id
    assert token.scope is not None
    assert token.scope.startswith("https://vault.azure.net/.default")


def test_the_token_is_reused_for_later_reads(emu, client):
    emu.set_secret("a", "1")
    emu.set_secret("b", "2")

    assert client.get_secret("a").value == "1"
    assert client.get_secret("b").value == "2"

    assert emu.count("token") == 1
    assert [r.status for r in emu.requests("vault")] == [401, 200, 200]


def test_throttled_vault_is_retried_and_succeeds(emu, client):
    emu.set_secret("busy", "finally")
    assert client.get_secret("busy").value == "finally"  # authenticated from here on
    vault_before, token_before = emu.count("vault"), emu.count("token")

    emu.inject("vault", status=429, retry_after=0, times=1)
    assert client.get_secret("busy").value == "finally"

    assert emu.count("vault") == vault_before + 2
    assert emu.count("token") == token_before
    throttled, retried = emu.requests("vault")[-2:]
    assert (throttled.status, throttled.fault) == (429, "status 429")
    assert (retried.status, retried.fault) == (200, None)
    assert retried.authorization == throttled.authorization


def test_persistent_throttling_without_retries_raises_429(emu):
    emu.set_secret("busy", "never")
    emu.inject("vault", status=429, retry_after=0, times=None)

    with make_client(emu, retry_total=0) as client, pytest.raises(HttpResponseError) as info:
        client.get_secret("busy")

    assert info.value.status_code == 429
    assert emu.count("vault") == 1  # no retry at all
    assert emu.count("token") == 0  # never got as far as the challenge
