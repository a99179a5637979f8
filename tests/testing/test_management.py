"""The Power Platform API's environment management and BAP's environment reads, with
plain ``requests``: paths, shapes, paging, api-version errors, 401 and 404."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import msal
import pytest
import requests

from requests_ppauth.testing import Emulator

PP = "/environmentmanagement/environments"
GROUPS = "/environmentmanagement/environmentGroups"
BAP_ADMIN = "/providers/Microsoft.BusinessAppPlatform/scopes/admin/environments"
BAP = "/providers/Microsoft.BusinessAppPlatform/environments"
PP_SCOPE = "https://api.powerplatform.com/.default"
BAP_SCOPE = "https://service.powerapps.com//.default"
VERSION = {"api-version": "2024-10-01"}
BAP_VERSION = {"api-version": "2020-10-01"}
COUNT = 7


@pytest.fixture(scope="module")
def tokens(_module_emulator: Emulator) -> dict[str, str]:
    """One app token per audience for the module (the emulator is module-wide)."""
    s = _module_emulator.sample
    app = msal.ConfidentialClientApplication(
        s.client_id,
        client_credential=s.client_secret,
        authority=_module_emulator.authority(),
        instance_discovery=False,
        http_client=_module_emulator.http_client(),
    )
    out = {}
    for scope in (PP_SCOPE, BAP_SCOPE):
        result = app.acquire_token_for_client([scope])
        assert "access_token" in result, result
        out[scope] = result["access_token"]
    return out


@pytest.fixture
def pp(emu: Emulator, tokens: dict[str, str]):
    """GET on the api listener with a Power Platform API token."""

    def get(path: str, params=None, token: str | None = tokens[PP_SCOPE], **kw):
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return requests.request(
            kw.pop("method", "GET"),
            path if path.startswith("https://") else emu.api_url + path,
            params=params,
            headers=headers,
            verify=emu.ca_bundle,
            timeout=10,
            **kw,
        )

    return get


@pytest.fixture
def bap(emu: Emulator, tokens: dict[str, str]):
    def get(path: str, params=None, token: str | None = tokens[BAP_SCOPE]):
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return requests.get(
            emu.api_url + path, params=params, headers=headers, verify=emu.ca_bundle, timeout=10
        )

    return get


@pytest.fixture(autouse=True)
def _page_size(emu: Emulator):
    yield
    emu.management.page_size = 100


# -- Power Platform API: environments ----------------------------------------------
def test_list_is_environment_response_shaped(emu, pp):
    r = pp(PP, VERSION)

    assert r.status_code == 200, r.text
    body = r.json()
    assert "@odata.nextLink" not in body
    items = body["value"]
    assert [i["id"] for i in items] == [f"env-{i:04d}" for i in range(COUNT)]
    first = items[0]
    assert first["tenantId"] == emu.sample.tenant_id
    assert first["displayName"] == "Environment 0"
    assert first["type"] == "Sandbox"
    assert first["geo"] == "unitedstates"
    assert first["state"] == "Ready"
    assert "properties" not in first and "name" not in first  # not BAP-shaped
    assert emu.count("environments") == 1


def test_server_paging_follows_odata_next_link_to_the_end(emu, pp):
    emu.management.page_size = 3
    url, params, seen, pages = PP, dict(VERSION), [], 0
    while url:
        r = pp(url, params)
        assert r.status_code == 200, r.text
        pages += 1
        seen += [i["id"] for i in r.json()["value"]]
        url, params = r.json().get("@odata.nextLink"), None

    assert seen == [f"env-{i:04d}" for i in range(COUNT)]
    assert pages == 3 and emu.count("environments") == 3


def test_next_link_keeps_the_query_and_moves_skip(emu, pp):
    emu.management.page_size = 2
    r = pp(PP, {**VERSION, "$select": "displayName"})

    link = r.json()["@odata.nextLink"]
    parts = urlsplit(link)
    assert f"{parts.scheme}://{parts.netloc}" == emu.api_url and parts.path == PP
    query = parse_qs(parts.query)
    assert query["api-version"] == ["2024-10-01"]
    assert query["$skip"] == ["2"]
    assert query["$select"] == ["displayName"]
    assert r.json()["value"] == [
        {"id": "env-0000", "displayName": "Environment 0"},
        {"id": "env-0001", "displayName": "Environment 1"},
    ]


def test_top_limits_and_skip_offsets_without_a_next_link(pp):
    r = pp(PP, {**VERSION, "$top": "2", "$skip": "5"})

    assert [i["id"] for i in r.json()["value"]] == ["env-0005", "env-0006"]
    assert "@odata.nextLink" not in r.json()
    r = pp(PP, {**VERSION, "$top": "2"})
    assert [i["id"] for i in r.json()["value"]] == ["env-0000", "env-0001"]
    assert "@odata.nextLink" not in r.json()  # $top caps the result, it is not a page size


def test_top_larger_than_a_page_pages_up_to_top(emu, pp):
    emu.management.page_size = 2
    r = pp(PP, {**VERSION, "$top": "3"})
    assert len(r.json()["value"]) == 2
    r2 = pp(r.json()["@odata.nextLink"])
    assert [i["id"] for i in r2.json()["value"]] == ["env-0002"]
    assert "@odata.nextLink" not in r2.json()


def test_filter_ids_and_orderby(emu, pp):
    r = pp(PP, {**VERSION, "ids": "env-0003,env-0001"})
    assert [i["id"] for i in r.json()["value"]] == ["env-0001", "env-0003"]

    r = pp(PP, {**VERSION, "$orderby": "displayName desc", "$top": "1"})
    assert [i["id"] for i in r.json()["value"]] == ["env-0006"]

    emu.management.add_environment("prod-1", "Production", sku="Production")
    try:
        r = pp(PP, {**VERSION, "$filter": "type eq 'Production'"})
        assert [i["id"] for i in r.json()["value"]] == ["prod-1"]
        r = pp(PP, {**VERSION, "$filter": "displayName eq 'x'"})  # not a filterable property
        assert r.status_code == 400
    finally:
        assert emu.management.remove_environment("prod-1")


def test_get_one_by_id_with_select(pp):
    r = pp(f"{PP}/env-0002", VERSION)
    assert r.status_code == 200
    assert r.json()["id"] == "env-0002" and r.json()["displayName"] == "Environment 2"

    r = pp(f"{PP}/env-0002", {**VERSION, "$select": "state"})
    assert r.json() == {"id": "env-0002", "state": "Ready"}


def test_unknown_environment_is_404(emu, pp):
    r = pp(f"{PP}/no-such-env", VERSION)

    assert r.status_code == 404
    assert r.json()["error"]["code"] == "EnvironmentNotFound"
    assert "no-such-env" in r.json()["error"]["message"]
    assert emu.count("environments") == 1


def test_linked_dataverse_is_reported(emu, pp):
    emu.management.add_environment("with-dv", dataverse_url="https://contoso.crm.dynamics.com")
    emu.management.add_environment("local-dv", dataverse_url=emu.api_url)
    try:
        body = pp(f"{PP}/with-dv", VERSION).json()
        local = pp(f"{PP}/local-dv", VERSION).json()
    finally:
        emu.management.remove_environment("with-dv")
        emu.management.remove_environment("local-dv")
    assert body["url"] == "https://contoso.crm.dynamics.com/"
    assert body["domainName"] == "contoso"
    assert body["dataverseId"] and body["version"]
    assert local["url"] == emu.api_url + "/" and local["domainName"] == "local-dv"


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({}, "ApiVersionUnspecified"),
        ({"api-version": ""}, "ApiVersionUnspecified"),
        ({"api-version": "2019-01-01"}, "UnsupportedApiVersion"),
    ],
)
@pytest.mark.parametrize("path", [PP, f"{PP}/env-0000", GROUPS])
def test_api_version_is_required_and_checked(emu, pp, path, params, code):
    r = pp(path, params)

    assert r.status_code == 400
    error = r.json()["error"]
    assert error["code"] == code
    assert "innerError" in error
    if params.get("api-version"):
        assert "'2019-01-01'" in error["message"]
    assert emu.count("environments") + emu.count("environmentGroups") == 1


def test_without_a_token_is_401_before_the_api_version(emu, pp):
    for params in (VERSION, {}):
        r = pp(PP, params, token=None)
        assert r.status_code == 401
        assert r.headers["WWW-Authenticate"].startswith("Bearer ")
    assert emu.count("environments") == 2


def test_a_bap_token_is_refused_by_the_power_platform_api(pp, tokens):
    r = pp(PP, VERSION, token=tokens[BAP_SCOPE])
    assert r.status_code == 401
    assert "audience" in r.json()["error"]["message"]


def test_injected_faults_hit_the_new_paths(emu, pp):
    emu.inject("environments", status=503, times=1)
    try:
        assert pp(PP, VERSION).status_code == 503
        assert pp(PP, VERSION).status_code == 200
    finally:
        emu.clear_faults()


# -- Power Platform API: environment groups ----------------------------------------
def test_environment_group_lifecycle(emu, pp):
    created = pp(GROUPS, VERSION, method="POST", json={"displayName": "Dev", "description": "d"})
    assert created.status_code == 200, created.text
    group = created.json()
    gid = group["id"]
    assert group["displayName"] == "Dev" and group["createdBy"]["type"] == "ServicePrincipal"

    assert [g["id"] for g in pp(GROUPS, VERSION).json()["value"]] == [gid]
    added = pp(f"{GROUPS}/{gid}/addEnvironment/env-0004", VERSION, method="POST")
    assert added.status_code == 202
    env = pp(f"{PP}/env-0004", VERSION).json()
    assert env["environmentGroupId"] == gid
    listed = pp(PP, {**VERSION, "$filter": f"environmentGroupId eq '{gid}'"}).json()["value"]
    assert [e["id"] for e in listed] == ["env-0004"]

    assert pp(f"{GROUPS}/{gid}", VERSION, method="DELETE").status_code == 400  # not empty
    removed = pp(f"{GROUPS}/{gid}/removeEnvironment/env-0004", VERSION, method="POST")
    assert removed.status_code == 202
    assert "environmentGroupId" not in pp(f"{PP}/env-0004", VERSION).json()

    renamed = pp(f"{GROUPS}/{gid}", VERSION, method="PUT", json={"displayName": "Dev 2"})
    assert renamed.json()["displayName"] == "Dev 2" and renamed.json()["id"] == gid
    assert pp(f"{GROUPS}/{gid}", VERSION, method="DELETE").status_code == 204
    missing = pp(f"{GROUPS}/{gid}", VERSION)
    assert missing.status_code == 404
    assert missing.headers["Content-Type"].startswith("application/problem+json")
    assert emu.count("environmentGroups") == 8


def test_group_create_needs_a_display_name(pp):
    r = pp(GROUPS, VERSION, method="POST", json={"description": "no name"})
    assert r.status_code == 400
    assert r.json()["status"] == 400 and "displayName" in r.json()["detail"]


# -- BAP -----------------------------------------------------------------------------
@pytest.mark.parametrize("prefix", [BAP_ADMIN, BAP])
def test_bap_single_environment(emu, bap, prefix):
    r = bap(f"{prefix}/env-0003", BAP_VERSION)

    assert r.status_code == 200, r.text
    env = r.json()
    assert env["name"] == "env-0003"
    assert env["id"].rsplit("/", 1)[-1] == env["name"]
    assert env["properties"]["displayName"] == "Environment 3"
    assert emu.count("environments") == 1


def test_bap_list_names_are_the_last_segment_of_ids(bap):
    r = bap(BAP_ADMIN, {**BAP_VERSION, "$top": "100"})
    for env in r.json()["value"]:
        assert env["id"].rsplit("/", 1)[-1] == env["name"]


def test_bap_unknown_environment_is_404(bap):
    r = bap(f"{BAP_ADMIN}/nope", BAP_VERSION)
    assert r.status_code == 404
    assert r.json()["error"]["code"] == "EnvironmentNotFound"


def test_bap_single_get_requires_the_api_version(bap):
    r = bap(f"{BAP_ADMIN}/env-0000")
    assert r.status_code == 400
    assert r.json()["error"]["code"] == "MissingApiVersionParameter"


@pytest.mark.parametrize("path", [BAP_ADMIN, BAP, f"{BAP}/env-0000"])
def test_bap_unknown_api_version_is_400(bap, path):
    r = bap(path, {"api-version": "1999-01-01"})
    assert r.status_code == 400
    assert r.json()["error"]["code"] == "InvalidApiVersionParameter"
    assert "'1999-01-01'" in r.json()["error"]["message"]


@pytest.mark.parametrize("path", [BAP_ADMIN, BAP])
def test_bap_list_requires_the_api_version(emu, bap, path):
    r = bap(path)
    assert r.status_code == 400
    assert r.json()["error"]["code"] == "MissingApiVersionParameter"
    assert bap(path, {"api-version": ""}).json()["error"]["code"] == "MissingApiVersionParameter"
    assert bap(path, BAP_VERSION).status_code == 200
    assert [rec.status for rec in emu.requests("environments")] == [400, 400, 200]


def test_bap_without_a_token_is_401(emu, bap):
    r = bap(f"{BAP_ADMIN}/env-0000", BAP_VERSION, token=None)
    assert r.status_code == 401
    assert emu.count("environments") == 1


def test_bap_refuses_a_power_platform_api_token(bap, tokens):
    r = bap(f"{BAP_ADMIN}/env-0000", BAP_VERSION, token=tokens[PP_SCOPE])
    assert r.status_code == 401


def test_admin_api_adds_an_environment(emu, pp):
    added = requests.post(
        f"{emu.authority_host}/_emulator/add_environment",
        json={"name": "from-admin", "display_name": "Over HTTP"},
        verify=emu.ca_bundle,
        timeout=10,
    )
    try:
        assert added.status_code == 200, added.text
        assert pp(f"{PP}/from-admin", VERSION).json()["displayName"] == "Over HTTP"
    finally:
        removed = requests.post(
            f"{emu.authority_host}/_emulator/remove_environment",
            json={"name": "from-admin"},
            verify=emu.ca_bundle,
            timeout=10,
        )
    assert removed.json() == {"result": True}
    assert pp(f"{PP}/from-admin", VERSION).status_code == 404
