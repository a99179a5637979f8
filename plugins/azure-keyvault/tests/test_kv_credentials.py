"""Each way of opening the vault, with the real azure-identity credential behind it."""

from __future__ import annotations

import shutil

import pytest

from requests_ppauth_keyvault import KeyVaultError, KeyVaultResolver, SecretCache


@pytest.fixture
def resolver():
    return KeyVaultResolver(cache=SecretCache())


@pytest.fixture
def azure_env(vault, ppauth_env):
    """The vault reader's credentials in the variables EnvironmentCredential reads."""
    ppauth_env.set(
        AZURE_TENANT_ID=vault.emu.sample.tenant_id,
        AZURE_CLIENT_ID=vault.reader_id,
        AZURE_CLIENT_SECRET=vault.reader_secret,
    )


@pytest.mark.usefixtures("azure_env")
def test_environment_credential(vault, resolver):
    reference = vault.put("from-env")

    assert resolver.resolve(reference, vault.request({"credential": "environment"})) == "from-env"
    [token] = vault.emu.requests("token")
    assert token.client_id == vault.reader_id


@pytest.mark.usefixtures("azure_env")
def test_default_credential_is_the_default(vault, resolver):
    reference = vault.put("from-default")
    request = vault.request()
    del request.settings["keyvault"]["credential"]

    assert resolver.resolve(reference, request) == "from-default"
    [token] = vault.emu.requests("token")
    assert token.client_id == vault.reader_id  # DefaultAzureCredential's first: the env


@pytest.mark.usefixtures("azure_env")
def test_the_credential_table_may_hold_just_a_type(vault, resolver):
    reference = vault.put("v")
    request = vault.request({"credential": {"type": "environment"}})

    assert resolver.resolve(reference, request) == "v"


def test_environment_credential_without_variables_says_so(vault, resolver):
    reference = vault.put("v")

    with pytest.raises(KeyVaultError) as info:
        resolver.resolve(reference, vault.request({"credential": "environment"}))

    message = str(info.value)
    assert "cannot authenticate to Key Vault" in message
    assert "EnvironmentCredential" in message


@pytest.mark.skipif(shutil.which("az") is not None, reason="an Azure CLI is installed here")
def test_azure_cli_credential_without_the_cli_says_so(vault, resolver):
    reference = vault.put("v")

    with pytest.raises(KeyVaultError, match="Azure CLI") as info:
        resolver.resolve(reference, vault.request({"credential": "azure_cli"}))
    assert "az login" in str(info.value)


@pytest.mark.parametrize("kind", ["appservice", "imds"])
def test_managed_identity_credential(vault, resolver, ppauth_env, kind):
    emu = vault.emu
    if not hasattr(emu, "managed_identity_env"):
        pytest.skip("this emulator has no managed identity endpoints")
    ppauth_env.set(**emu.managed_identity_env(kind))
    identity = emu.add_managed_identity("vault-reader")
    reference = vault.put("from-msi")
    request = vault.request(
        {"credential": {"type": "managed_identity", "client_id": identity.client_id}}
    )

    assert resolver.resolve(reference, request) == "from-msi"

    emu.deny_vault(identity.client_id)
    with pytest.raises(KeyVaultError, match=f"user-assigned managed identity {identity.client_id}"):
        resolver.resolve(vault.put("denied"), request)
