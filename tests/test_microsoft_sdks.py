"""Microsoft's SDKs, unmodified, with this package's credentials, against the emulator:
the Dataverse SDK (sync and async), the Power Platform Management SDK (Kiota, through
``AzureIdentityAuthenticationProvider``) and Key Vault's ``SecretClient`` (sync and
``aio``). Each gets its tokens from the env source's service principal through our
provider and file cache: the emulator's token counter proves one request per resource.

Only what a local emulator needs is set (see ``emu.client_settings``): the CA bundle for
each SDK's HTTP stack, Kiota's scopes and base URL, Key Vault's
``verify_challenge_resource=False``.
"""

from __future__ import annotations

import asyncio
import ssl
from typing import Any
from urllib.parse import urlsplit

import pytest

pytest.importorskip("PowerPlatform.Dataverse")

from PowerPlatform.Dataverse.client import DataverseClient

from requests_ppauth import PowerPlatformCredential
from requests_ppauth.aio import PowerPlatformCredential as AsyncCredential
from requests_ppauth.testing import Emulator


@pytest.fixture
def emu(ppauth_emulator: Emulator, ppauth_env: Any) -> Emulator:
    """The emulator; the env source names its sample service principal; requests (the
    Dataverse SDK's transport, which passes no ``verify``) trusts its CA."""
    ppauth_env.use_emulator(ppauth_emulator)
    ppauth_env.set(REQUESTS_CA_BUNDLE=ppauth_emulator.ca_bundle)
    return ppauth_emulator


def add_tasks(emu: Emulator, count: int) -> list[str]:
    emu.dataverse.add_table(
        "cr5_task",
        attributes={"cr5_title": "String", "cr5_hours": "Integer"},
        primary_name="cr5_title",
        display_name="Task",
    )
    return emu.dataverse.add_rows(
        "cr5_task", [{"cr5_title": f"Task {i}", "cr5_hours": i} for i in range(count)]
    )


# -- Dataverse, sync ----------------------------------------------------------------------


def test_dataverse_sdk_with_our_credential(emu):
    add_tasks(emu, 4)
    with DataverseClient(emu.api_url, PowerPlatformCredential()) as client:
        tables = sorted(t["LogicalName"] for t in client.tables.list())
        assert tables == ["account", "contact", "cr5_task"]

        rid = client.records.create("account", {"name": "Contoso", "numberofemployees": 40})
        record = client.records.retrieve("account", rid, select=["name", "numberofemployees"])
        assert record is not None and record["name"] == "Contoso"
        client.records.update("account", rid, {"numberofemployees": 41})
        [row] = emu.dataverse.rows("account")
        assert row["numberofemployees"] == 41
        client.records.delete("account", rid)
        assert emu.dataverse.rows("account") == []

        found = client.records.list(
            "cr5_task", filter="cr5_hours gt 1", select=["cr5_title"], orderby=["cr5_hours desc"]
        )
        assert [r["cr5_title"] for r in found] == ["Task 3", "Task 2"]
    assert emu.count("token") == 1
    # the one token was for the org's scope: asked for it, the cache answers
    PowerPlatformCredential().get_token(f"{emu.api_url}/.default")
    assert emu.count("token") == 1


def test_dataverse_sdk_refuses_a_requests_auth_and_takes_our_credential(emu):
    from requests_ppauth import PowerPlatformAuth

    with pytest.raises(TypeError, match="TokenCredential"):
        DataverseClient(emu.api_url, PowerPlatformAuth())  # type: ignore[arg-type]
    cred = PowerPlatformCredential()
    with DataverseClient(emu.api_url, cred) as client:
        assert client.tables.get("account") is not None
    # a second client, a second credential object: the shared cache answers
    with DataverseClient(emu.api_url, PowerPlatformCredential()) as client:
        assert client.tables.get("contact") is not None
    assert emu.count("token") == 1


# -- Dataverse, async ---------------------------------------------------------------------


@pytest.fixture
def aiohttp_trusts_the_emulator(emu, monkeypatch):
    """aiohttp builds its default SSL context when imported (it reads neither
    REQUESTS_CA_BUNDLE nor a later SSL_CERT_FILE): the emulator's CA goes into the one
    it uses, for this test only. The SDK is not touched."""
    import aiohttp.connector

    context = ssl.create_default_context(cafile=emu.ca_bundle)
    monkeypatch.setattr(aiohttp.connector, "_SSL_CONTEXT_VERIFIED", context)
    return emu


def test_async_dataverse_sdk_with_our_async_credential(aiohttp_trusts_the_emulator):
    emu = aiohttp_trusts_the_emulator
    from PowerPlatform.Dataverse.aio.async_client import AsyncDataverseClient

    add_tasks(emu, 3)

    async def main() -> None:
        async with (
            AsyncCredential() as cred,
            AsyncDataverseClient(emu.api_url, cred) as client,
        ):
            tables = sorted(t["LogicalName"] for t in await client.tables.list())
            assert tables == ["account", "contact", "cr5_task"]
            rid = await client.records.create("account", {"name": "Fabrikam"})
            record = await client.records.retrieve("account", rid, select=["name"])
            assert record is not None and record["name"] == "Fabrikam"
            await client.records.update("account", rid, {"telephone1": "555-0100"})
            assert emu.dataverse.rows("account")[0]["telephone1"] == "555-0100"
            await client.records.delete("account", rid)
            assert emu.dataverse.rows("account") == []
            found = await client.records.list(
                "cr5_task", filter="cr5_hours ge 1", select=["cr5_title"], orderby=["cr5_hours"]
            )
            assert [r["cr5_title"] for r in found] == ["Task 1", "Task 2"]
            # concurrent calls of one client: still one token
            await asyncio.gather(*(client.tables.get("contact") for _ in range(10)))
            assert cred.flights_started == 1

    asyncio.run(main())
    assert emu.count("token") == 1


# -- Power Platform Management SDK (Kiota) ----------------------------------------------


def test_management_sdk_lists_environments_with_our_async_credential(emu):
    pytest.importorskip("mspp_management")
    import httpx
    from kiota_abstractions.base_request_configuration import RequestConfiguration
    from kiota_authentication_azure.azure_identity_authentication_provider import (
        AzureIdentityAuthenticationProvider,
    )
    from kiota_http.httpx_request_adapter import HttpxRequestAdapter
    from kiota_http.kiota_client_factory import KiotaClientFactory
    from mspp_management.environmentmanagement.environments.environments_request_builder import (
        EnvironmentsRequestBuilder,
    )
    from mspp_management.service_client_base import ServiceClientBase

    settings = emu.client_settings("management")
    query = EnvironmentsRequestBuilder.EnvironmentsRequestBuilderGetQueryParameters(
        api_version="2024-10-01"
    )

    async def main() -> list[str]:
        async with AsyncCredential() as cred:
            provider = AzureIdentityAuthenticationProvider(
                cred,
                scopes=settings["scopes"],
                allowed_hosts=[str(urlsplit(settings["base_url"]).hostname)],
            )
            http = KiotaClientFactory.create_with_default_middleware(
                httpx.AsyncClient(verify=ssl.create_default_context(cafile=settings["ca_bundle"]))
            )
            try:
                adapter = HttpxRequestAdapter(provider, http_client=http)
                adapter.base_url = settings["base_url"]
                client = ServiceClientBase(adapter)
                environments = client.environmentmanagement.environments
                pages = await asyncio.gather(
                    *(
                        environments.get(RequestConfiguration(query_parameters=query))
                        for _ in range(3)
                    )
                )
            finally:
                await http.aclose()
        return [str(e.id) for e in pages[0].value]

    assert asyncio.run(main()) == [f"env-{i:04d}" for i in range(7)]
    assert emu.count("token") == 1 and emu.count("environments") == 3
    PowerPlatformCredential().get_token("https://api.powerplatform.com/.default")
    assert emu.count("token") == 1  # that was the token the SDK got: a cache hit


# -- Key Vault ---------------------------------------------------------------------------


def test_keyvault_secret_client_with_our_credential(emu):
    from azure.keyvault.secrets import SecretClient

    emu.set_secret("db-password", "s3cret")
    settings = emu.client_settings("keyvault")
    vault_url = settings.pop("vault_url")
    with SecretClient(vault_url, PowerPlatformCredential(), **settings) as client:
        assert client.get_secret("db-password").value == "s3cret"
        client.set_secret("api-key", "k1")
        assert client.get_secret("api-key").value == "k1"
        assert {p.name for p in client.list_properties_of_secrets()} == {"db-password", "api-key"}
    assert emu.count("token") == 1


def test_async_keyvault_secret_client_with_our_async_credential(emu):
    from azure.keyvault.secrets.aio import SecretClient

    emu.set_secret("db-password", "s3cret")
    settings = emu.client_settings("keyvault")
    vault_url = settings.pop("vault_url")

    async def main() -> list[str | None]:
        async with AsyncCredential() as cred, SecretClient(vault_url, cred, **settings) as client:
            secrets = await asyncio.gather(*(client.get_secret("db-password") for _ in range(5)))
            return [s.value for s in secrets]

    assert asyncio.run(main()) == ["s3cret"] * 5
    assert emu.count("token") == 1


def test_one_token_for_keyvault_serves_the_sync_and_async_clients(emu):
    from azure.keyvault.secrets import SecretClient
    from azure.keyvault.secrets.aio import SecretClient as AsyncSecretClient

    emu.set_secret("s", "v")
    settings = emu.client_settings("keyvault")
    vault_url = settings.pop("vault_url")
    with SecretClient(vault_url, PowerPlatformCredential(), **settings) as client:
        assert client.get_secret("s").value == "v"

    async def main() -> str | None:
        async with AsyncCredential() as cred, AsyncSecretClient(vault_url, cred, **settings) as c:
            return (await c.get_secret("s")).value

    assert asyncio.run(main()) == "v"
    assert emu.count("token") == 1  # the async client's token was the file cache's
