"""``emu.client_settings(name)``: what Microsoft's own clients need to reach the
emulator, proved by those clients getting what they asked for with exactly that and
nothing else (the README's testing section lists the same settings)."""

from __future__ import annotations

import msal
import pytest
from azure.identity import ClientSecretCredential, EnvironmentCredential
from azure.keyvault.secrets import SecretClient

from requests_ppauth.testing._clients import CLIENTS

APPS_SCOPE = "https://service.powerapps.com//.default"


def test_msal(ppauth_emulator):
    emu = ppauth_emulator
    app = msal.ConfidentialClientApplication(
        emu.sample.client_id,
        client_credential=emu.sample.client_secret,
        **emu.client_settings("msal"),
    )
    result = app.acquire_token_for_client([APPS_SCOPE])
    assert "access_token" in result, result.get("error_description")
    assert emu.count("token") == 1


def test_azure_identity_and_keyvault(ppauth_emulator):
    emu = ppauth_emulator
    emu.set_secret("greeting", "hello")
    s = emu.sample
    credential = ClientSecretCredential(
        s.tenant_id, s.client_id, s.client_secret, **emu.client_settings("azure-identity")
    )
    assert credential.get_token(APPS_SCOPE).token
    client = SecretClient(credential=credential, **emu.client_settings("keyvault"))
    assert client.get_secret("greeting").value == "hello"


def test_azure_identity_from_the_environment(ppauth_emulator, monkeypatch):
    emu = ppauth_emulator
    s = emu.sample
    for name, value in emu.client_settings("azure-identity-env").items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AZURE_TENANT_ID", s.tenant_id)
    monkeypatch.setenv("AZURE_CLIENT_ID", s.client_id)
    monkeypatch.setenv("AZURE_CLIENT_SECRET", s.client_secret)
    credential = EnvironmentCredential(disable_instance_discovery=True)
    assert credential.get_token(APPS_SCOPE).token
    assert emu.count("token") == 1


def test_the_cli_and_sdk_settings_name_the_emulator(ppauth_emulator, tmp_path):
    emu = ppauth_emulator
    cli = emu.client_settings("azure-cli", config_dir=tmp_path)
    assert cli["env"]["AZURE_CONFIG_DIR"] == str(tmp_path)
    assert cli["env"]["AZURE_CORE_INSTANCE_DISCOVERY"] == "false"
    assert emu.api_url in cli["register"]
    kiota = emu.client_settings("management")
    assert kiota["scopes"] == ["https://api.powerplatform.com/.default"]
    assert kiota["base_url"] == emu.api_url


def test_an_unknown_client_lists_the_known_ones(ppauth_emulator):
    with pytest.raises(ValueError, match="known: msal, azure-identity") as exc:
        ppauth_emulator.client_settings("adal")
    assert all(name in str(exc.value) for name in CLIENTS)
