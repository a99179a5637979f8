"""Microsoft's Power Platform Management SDK (``powerplatform-management``, Kiota),
unmodified, against the emulator's api listener over HTTPS.

What the SDK needs to reach a local emulator (nothing else is changed):

- ``adapter.base_url = emu.api_url`` (the SDK's default is https://api.powerplatform.com);
- explicit Kiota ``scopes=["https://api.powerplatform.com/.default"]``: without them
  Kiota derives ``https://<request host>/.default`` (here ``https://127.0.0.1/.default``),
  a resource the tenant does not know;
- ``allowed_hosts`` is optional (empty allows every host); if given, it must hold the
  api listener's host (``127.0.0.1``), or Kiota silently sends no token;
- the emulator's CA for httpx (``httpx.AsyncClient(verify=ssl.create_default_context(
  cafile=emu.ca_bundle))`` wrapped by
  ``KiotaClientFactory.create_with_default_middleware``): httpx reads neither
  ``REQUESTS_CA_BUNDLE`` nor ``CURL_CA_BUNDLE``;
- azure-identity's usual ``authority=emu.authority_host``,
  ``disable_instance_discovery=True``, ``connection_verify=emu.ca_bundle``.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar
from urllib.parse import urlsplit

import pytest

pytest.importorskip("mspp_management")

import httpx
from azure.core.exceptions import ClientAuthenticationError
from azure.identity import ClientSecretCredential
from kiota_abstractions.api_error import APIError
from kiota_abstractions.base_request_configuration import RequestConfiguration
from kiota_authentication_azure.azure_identity_authentication_provider import (
    AzureIdentityAuthenticationProvider,
)
from kiota_http.httpx_request_adapter import HttpxRequestAdapter
from kiota_http.kiota_client_factory import KiotaClientFactory
from mspp_management.environmentmanagement.environment_groups.environment_groups_request_builder import (  # noqa: E501
    EnvironmentGroupsRequestBuilder,
)
from mspp_management.environmentmanagement.environment_groups.item.add_environment.item.with_environment_item_request_builder import (  # noqa: E501
    WithEnvironmentItemRequestBuilder as AddEnvironment,
)
from mspp_management.environmentmanagement.environment_groups.item.remove_environment.item.with_environment_item_request_builder import (  # noqa: E501
    WithEnvironmentItemRequestBuilder as RemoveEnvironment,
)
from mspp_management.environmentmanagement.environment_groups.item.with_group_item_request_builder import (  # noqa: E501
    WithGroupItemRequestBuilder,
)
from mspp_management.environmentmanagement.environments.environments_request_builder import (
    EnvironmentsRequestBuilder,
)
from mspp_management.environmentmanagement.environments.item.environment_item_request_builder import (  # noqa: E501
    EnvironmentItemRequestBuilder,
)
from mspp_management.models.environment_group import EnvironmentGroup
from mspp_management.service_client_base import ServiceClientBase

from requests_ppauth.testing import Emulator

VERSION = "2024-10-01"
GROUPS_VERSION = "2022-03-01-preview"
SCOPE = "https://api.powerplatform.com/.default"
T = TypeVar("T")


def sdk_client(emu: Emulator, scopes: list[str] | None = None) -> tuple[ServiceClientBase, Any]:
    """The SDK's client for the emulator, and the httpx client to close after."""
    s = emu.sample
    credential = ClientSecretCredential(
        s.tenant_id,
        s.client_id,
        s.client_secret,
        **emu.client_settings("azure-identity"),
    )
    auth = AzureIdentityAuthenticationProvider(
        credential,
        scopes=[SCOPE] if scopes is None else scopes,
        allowed_hosts=[str(urlsplit(emu.api_url).hostname)],
    )
    http = KiotaClientFactory.create_with_default_middleware(
        httpx.AsyncClient(verify=ssl.create_default_context(cafile=emu.ca_bundle))
    )
    adapter = HttpxRequestAdapter(auth, http_client=http)
    adapter.base_url = emu.api_url
    return ServiceClientBase(adapter), http


@pytest.fixture
def run(emu: Emulator) -> Iterator[Callable[[Callable[[ServiceClientBase], Awaitable[T]]], T]]:
    """Run one coroutine against a fresh SDK client on a fresh event loop."""

    def runner(body: Callable[[ServiceClientBase], Awaitable[T]]) -> T:
        async def main() -> T:
            client, http = sdk_client(emu)
            try:
                return await body(client)
            finally:
                await http.aclose()

        return asyncio.run(main())

    yield runner
    emu.management.page_size = 100


def env_query(**kw: Any) -> RequestConfiguration[Any]:
    q = EnvironmentsRequestBuilder.EnvironmentsRequestBuilderGetQueryParameters(
        api_version=VERSION, **kw
    )
    return RequestConfiguration(query_parameters=q)


def test_sdk_lists_environments(emu, run):
    result = run(lambda c: c.environmentmanagement.environments.get(env_query()))

    assert [e.id for e in result.value] == [f"env-{i:04d}" for i in range(7)]
    first = result.value[0]
    assert first.display_name == "Environment 0"
    assert first.tenant_id == emu.sample.tenant_id
    assert first.type == "Sandbox" and first.state == "Ready" and first.geo == "unitedstates"
    assert first.created_date_time is not None and first.created_date_time.year == 2024
    assert first.additional_data == {}  # every field the emulator sends is in the SDK's model
    assert emu.count("token") == 1 and emu.count("environments") == 1
    [record] = emu.requests("environments")
    assert record.path == "/environmentmanagement/environments"


def test_sdk_query_parameters_reach_the_service(emu, run):
    async def body(c):
        return await c.environmentmanagement.environments.get(
            env_query(
                top=2, skip=1, select="displayName", ids=["env-0004", "env-0001", "env-0002", "x"]
            )
        )

    result = run(body)

    assert [(e.id, e.display_name, e.state) for e in result.value] == [
        ("env-0002", "Environment 2", None),
        ("env-0004", "Environment 4", None),
    ]


def test_sdk_follows_server_paging(emu, run):
    emu.management.page_size = 3

    async def body(c):
        builder = c.environmentmanagement.environments
        page = await builder.get(env_query())
        ids = [e.id for e in page.value]
        while link := page.additional_data.get("@odata.nextLink"):
            assert page.odata_nextlink is None  # the SDK's model spells it @odata.nextlink
            page = await builder.with_url(link).get()
            ids += [e.id for e in page.value]
        return ids

    assert run(body) == [f"env-{i:04d}" for i in range(7)]
    assert emu.count("environments") == 3 and emu.count("token") == 1


def test_sdk_gets_one_environment(emu, run):
    q = EnvironmentItemRequestBuilder.EnvironmentItemRequestBuilderGetQueryParameters(
        api_version=VERSION
    )
    env = run(
        lambda c: c.environmentmanagement.environments.by_environment_id("env-0005").get(
            RequestConfiguration(query_parameters=q)
        )
    )

    assert env.id == "env-0005" and env.display_name == "Environment 5"
    [record] = emu.requests("environments")
    assert record.path == "/environmentmanagement/environments/env-0005"


def test_sdk_unknown_environment_raises_404(emu, run):
    q = EnvironmentItemRequestBuilder.EnvironmentItemRequestBuilderGetQueryParameters(
        api_version=VERSION
    )
    with pytest.raises(APIError) as caught:
        run(
            lambda c: c.environmentmanagement.environments.by_environment_id("nope").get(
                RequestConfiguration(query_parameters=q)
            )
        )
    assert caught.value.response_status_code == 404


def test_sdk_without_api_version_gets_400(emu, run):
    with pytest.raises(APIError) as caught:
        run(lambda c: c.environmentmanagement.environments.get())
    assert caught.value.response_status_code == 400
    [record] = emu.requests("environments")
    assert record.status == 400


def test_sdk_default_scope_is_refused_by_the_tenant(emu):
    """Without explicit scopes Kiota asks for ``https://127.0.0.1/.default``: AADSTS500011."""

    async def main():
        client, http = sdk_client(emu, scopes=[])
        try:
            return await client.environmentmanagement.environments.get(env_query())
        finally:
            await http.aclose()

    with pytest.raises(ClientAuthenticationError, match="AADSTS500011"):
        asyncio.run(main())
    [token] = emu.requests("token")
    assert token.scope == "https://127.0.0.1/.default" and token.status == 400
    assert emu.count("environments") == 0


def test_sdk_environment_group_lifecycle(emu, run):
    def cfg(builder_cls: Any, name: str) -> RequestConfiguration[Any]:
        return RequestConfiguration(
            query_parameters=getattr(builder_cls, name)(api_version=GROUPS_VERSION)
        )

    async def body(c):
        groups = c.environmentmanagement.environment_groups
        created = await groups.post(
            EnvironmentGroup(display_name="Test envs", description="made by the SDK"),
            cfg(
                EnvironmentGroupsRequestBuilder,
                "EnvironmentGroupsRequestBuilderPostQueryParameters",
            ),
        )
        gid = str(created.id)
        item = groups.by_group_id(gid)
        await item.add_environment.by_environment_id("env-0001").post(
            cfg(AddEnvironment, "WithEnvironmentItemRequestBuilderPostQueryParameters")
        )
        listed = await groups.get(
            cfg(
                EnvironmentGroupsRequestBuilder, "EnvironmentGroupsRequestBuilderGetQueryParameters"
            )
        )
        env = await c.environmentmanagement.environments.by_environment_id("env-0001").get(
            RequestConfiguration(
                query_parameters=EnvironmentItemRequestBuilder.EnvironmentItemRequestBuilderGetQueryParameters(
                    api_version=VERSION
                )
            )
        )
        await item.remove_environment.by_environment_id("env-0001").post(
            cfg(RemoveEnvironment, "WithEnvironmentItemRequestBuilderPostQueryParameters")
        )
        replaced = await item.put(
            EnvironmentGroup(display_name="Renamed"),
            cfg(WithGroupItemRequestBuilder, "WithGroupItemRequestBuilderPutQueryParameters"),
        )
        fetched = await item.get(
            cfg(WithGroupItemRequestBuilder, "WithGroupItemRequestBuilderGetQueryParameters")
        )
        await item.delete(
            cfg(WithGroupItemRequestBuilder, "WithGroupItemRequestBuilderDeleteQueryParameters")
        )
        return created, listed, env, replaced, fetched

    created, listed, env, replaced, fetched = run(body)

    assert created.display_name == "Test envs" and created.created_by.type == "ServicePrincipal"
    assert [g.id for g in listed.value] == [created.id]
    assert str(env.environment_group_id) == str(created.id)
    assert replaced.display_name == "Renamed" == fetched.display_name
    assert fetched.id == created.id
    assert emu.management.environment_groups() == []
    assert emu.count("environmentGroups") == 7 and emu.count("token") == 1


def test_sdk_reads_the_linked_dataverse_url(emu, run):
    emu.management.add_environment("with-dv", "Has Dataverse", dataverse_url=emu.api_url)
    q = EnvironmentItemRequestBuilder.EnvironmentItemRequestBuilderGetQueryParameters(
        api_version=VERSION
    )
    try:
        env = run(
            lambda c: c.environmentmanagement.environments.by_environment_id("with-dv").get(
                RequestConfiguration(query_parameters=q)
            )
        )
    finally:
        emu.management.remove_environment("with-dv")

    assert env.url == emu.api_url + "/"
    assert env.domain_name == "with-dv" and env.dataverse_id and env.version
