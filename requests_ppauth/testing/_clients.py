"""What Microsoft's own clients need to be told to talk to the emulator, in one place
(``emu.client_settings(name)``), so a test or a notebook never rediscovers it.

Every setting here exists because the emulator is local, not because it differs from
the real service: its hosts are ``127.0.0.1`` on free ports with a private CA, and
instance discovery always goes to ``login.microsoftonline.com`` whatever the authority
(the emulator cannot answer it), so it is turned off. Each entry says why.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from requests_ppauth.testing.emulator import Emulator

POWER_PLATFORM_SCOPE = "https://api.powerplatform.com/.default"

#: the client names :func:`client_settings` knows, and what each returns
CLIENTS = {
    "msal": "keyword arguments for msal's ConfidentialClientApplication / PublicClientApplication",
    "azure-identity": "keyword arguments for any azure-identity credential",
    "azure-identity-env": "environment for EnvironmentCredential / DefaultAzureCredential",
    "keyvault": "keyword arguments for azure-keyvault-secrets' SecretClient",
    "management": "settings for the Power Platform Management SDK (Kiota): base_url, scopes, CA",
    "dataverse": "settings for the Dataverse SDK: base_url (the org URL) and the CA bundle",
    "azure-cli": "environment variables for az, then `az cloud register` arguments",
}


def client_settings(emu: Emulator, client: str, **options: Any) -> dict[str, Any]:
    """The settings ``client`` needs for ``emu`` (see :data:`CLIENTS`); ``options``:
    ``config_dir`` for ``azure-cli`` (its ``AZURE_CONFIG_DIR``)."""
    ca = emu.ca_bundle
    if client == "msal":
        # msal's Session would take REQUESTS_CA_BUNDLE over verify=; this client does not
        return {
            "authority": emu.authority(),
            "instance_discovery": False,
            "http_client": emu.http_client(),
        }
    if client == "azure-identity":
        return {
            "authority": emu.authority_host,
            "disable_instance_discovery": True,
            "connection_verify": ca,
        }
    if client == "azure-identity-env":
        return {
            "AZURE_AUTHORITY_HOST": emu.authority_host,
            # azure-core's transport reads these (both are set on many CI machines)
            "REQUESTS_CA_BUNDLE": ca,
            "CURL_CA_BUNDLE": ca,
            "SSL_CERT_FILE": ca,
        }
    if client == "keyvault":
        # the challenge names vault.azure.net; the vault's host is 127.0.0.1
        return {
            "vault_url": emu.vault_url,
            "verify_challenge_resource": False,
            "connection_verify": ca,
        }
    if client == "management":
        # without explicit scopes Kiota asks for https://<host>/.default (AADSTS500011);
        # httpx ignores REQUESTS_CA_BUNDLE: build its client with this CA
        return {"base_url": emu.api_url, "scopes": [POWER_PLATFORM_SCOPE], "ca_bundle": ca}
    if client == "dataverse":
        return {"base_url": emu.api_url, "scope": f"{emu.api_url}/.default", "ca_bundle": ca}
    if client == "azure-cli":
        env = {
            "REQUESTS_CA_BUNDLE": ca,
            "CURL_CA_BUNDLE": ca,
            "AZURE_CORE_INSTANCE_DISCOVERY": "false",
            "AZURE_CORE_COLLECT_TELEMETRY": "false",
        }
        if options.get("config_dir") is not None:
            env["AZURE_CONFIG_DIR"] = str(options["config_dir"])
        return {
            "env": env,
            "register": [
                *("cloud", "register", "-n", "ppauth-emulator"),
                *("--endpoint-resource-manager", emu.api_url),
            ],
        }
    raise ValueError(f"unknown client {client!r}; known: {', '.join(CLIENTS)}")
