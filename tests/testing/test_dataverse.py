"""The emulated Dataverse Web API driven by plain requests code: every query option, the
write semantics (``OData-EntityId``, ``Prefer``, ``If-Match``), the OData error shapes
with Dataverse's codes, the 401 challenge, and the service protection 429."""

from __future__ import annotations

import re
import time
import urllib.parse

import msal
import pytest
import requests

from requests_ppauth.testing import Emulator

API = "/api/data/v9.2"


@pytest.fixture
def emu():
    with Emulator() as emulator:
        yield emulator


def token_for(emu: Emulator, resource: str) -> str:
    s = emu.sample
    app = msal.ConfidentialClientApplication(
        s.client_id,
        client_credential=s.client_secret,
        authority=emu.authority(),
        instance_discovery=False,
        http_client=emu.http_client(),
    )
    result = app.acquire_token_for_client([f"{resource}/.default"])
    assert "access_token" in result, result
    return str(result["access_token"])


class Web:
    """Plain requests against the org URL (``emu.api_url``), with a bearer token.

    ``verify`` is passed on each request: REQUESTS_CA_BUNDLE would override a
    Session's own ``verify``."""

    def __init__(self, emu: Emulator, token: str | None) -> None:
        self.emu = emu
        self.base = f"{emu.api_url}{API}"
        self.headers = {
            "Accept": "application/json",
            "OData-MaxVersion": "4.0",
            "OData-Version": "4.0",
        }
        if token:
            self.headers["Authorization"] = f"Bearer {token}"

    def call(self, method: str, path: str, **kwargs) -> requests.Response:
        headers = {**self.headers, **kwargs.pop("headers", {})}
        url = path if path.startswith("https://") else f"{self.base}/{path}"
        return requests.request(
            method, url, headers=headers, verify=self.emu.ca_bundle, timeout=10, **kwargs
        )

    def get(self, path: str, **kwargs) -> requests.Response:
        return self.call("GET", path, **kwargs)


@pytest.fixture
def web(emu) -> Web:
    return Web(emu, token_for(emu, emu.api_url))


def error_of(resp: requests.Response) -> tuple[int, str, str]:
    body = resp.json()
    assert set(body) == {"error"}, body
    return resp.status_code, body["error"]["code"], body["error"]["message"]


def add_projects(emu: Emulator) -> list[str]:
    emu.dataverse.add_table(
        "new_project",
        attributes={
            "new_name": "String",
            "new_budget": "Integer",
            "new_owneremail": "String",
            "new_active": "Boolean",
            "new_kind": "Picklist",
        },
        primary_name="new_name",
        options={"new_kind": {100000000: "Internal", 100000001: "Customer"}},
    )
    return emu.dataverse.add_rows(
        "new_project",
        [
            {"new_name": "Apollo", "new_budget": 500, "new_active": True, "new_kind": 100000000},
            {"new_name": "Gemini", "new_budget": 200, "new_active": False},
            {"new_name": "Mercury", "new_budget": 100, "new_active": True, "new_kind": 100000001},
            {"new_name": "apollo two", "new_budget": 900, "new_owneremail": "a@contoso.com"},
            {"new_name": "Artemis", "new_budget": None, "new_active": True},
        ],
    )


def names(resp: requests.Response) -> list[str]:
    assert resp.status_code == 200, resp.text
    return [row["new_name"] for row in resp.json()["value"]]


# -- WhoAmI and authentication -------------------------------------------------------------


def test_whoami_answers_get_and_refuses_post_as_dataverse_does(emu, web):
    resp = web.get("WhoAmI")
    assert resp.status_code == 200
    body = resp.json()
    assert body["@odata.context"] == f"{web.base}/$metadata#Microsoft.Dynamics.CRM.WhoAmIResponse"
    assert {"BusinessUnitId", "UserId", "OrganizationId"} <= set(body)
    assert resp.headers["OData-Version"] == "4.0"

    post = web.call("POST", "WhoAmI")
    assert error_of(post) == (
        404,
        "",
        f"No HTTP resource was found that matches the request URI '{web.base}/WhoAmI'.",
    )
    assert emu.count("whoami") == 2


def test_a_token_for_the_generic_crm_audience_is_accepted(emu):
    web = Web(emu, token_for(emu, "https://org.crm.dynamics.com"))
    assert web.get("WhoAmI").status_code == 200
    assert web.get("accounts").status_code == 200


def test_missing_or_foreign_token_gets_the_dataverse_challenge(emu):
    tenant = emu.sample.tenant_id
    for web in (Web(emu, None), Web(emu, token_for(emu, "https://vault.azure.net"))):
        resp = web.get("accounts")
        assert resp.status_code == 401
        assert resp.content == b""
        challenge = resp.headers["WWW-Authenticate"]
        assert challenge == (
            f"Bearer authorization_uri={emu.authority_host}/{tenant}/oauth2/authorize, "
            f"resource_id={emu.api_url}/"
        )
    assert emu.count("dataverse") == 2
    assert emu.dataverse.throttled == 0


def test_a_revoked_token_is_refused(emu, web):
    assert web.get("accounts").status_code == 200
    emu.revoke()
    assert web.get("accounts").status_code == 401


# -- table definitions ----------------------------------------------------------------------


def test_entity_definitions_filtered_by_logical_name_with_select(emu, web):
    add_projects(emu)
    resp = web.get(
        "EntityDefinitions",
        params={
            "$select": "LogicalName,EntitySetName,PrimaryIdAttribute",
            "$filter": "LogicalName eq 'new_project'",
        },
    )
    assert resp.status_code == 200
    body = resp.json()
    assert body["@odata.context"].endswith(
        "$metadata#EntityDefinitions(LogicalName,EntitySetName,PrimaryIdAttribute)"
    )
    [item] = body["value"]
    assert set(item) == {"LogicalName", "EntitySetName", "PrimaryIdAttribute", "MetadataId"}
    assert item["EntitySetName"] == "new_projects"
    assert item["PrimaryIdAttribute"] == "new_projectid"
    assert emu.count("dataverse-metadata") == 1


def test_entity_definitions_filters_compose_and_are_case_sensitive(emu, web):
    add_projects(emu)

    def logical(filter_text: str) -> list[str]:
        resp = web.get(
            "EntityDefinitions", params={"$filter": filter_text, "$select": "LogicalName"}
        )
        assert resp.status_code == 200, resp.text
        return sorted(item["LogicalName"] for item in resp.json()["value"])

    assert logical("IsPrivate eq false") == ["account", "contact", "new_project"]
    assert logical("EntitySetName eq 'contacts'") == ["contact"]
    assert logical("LogicalName eq 'account' or LogicalName eq 'new_project'") == [
        "account",
        "new_project",
    ]
    assert logical("IsPrivate eq false and (IsCustomEntity eq true)") == ["new_project"]
    assert logical("not (LogicalName ne 'contact')") == ["contact"]
    assert logical("LogicalName eq 'Account'") == []  # metadata names are case-sensitive

    resp = web.get("EntityDefinitions", params={"$filter": "startswith(LogicalName,'new_')"})
    assert error_of(resp) == (
        501,
        "0x8006088a",
        'The "startswith" function isn\'t supported for Metadata Entities.',
    )


def test_one_definition_by_name_or_id_and_its_attributes(emu, web):
    add_projects(emu)
    one = web.get("EntityDefinitions(LogicalName='new_project')")
    assert one.status_code == 200
    definition = one.json()
    assert definition["PrimaryNameAttribute"] == "new_name"
    assert definition["IsPrivate"] is False
    by_id = web.get(
        f"EntityDefinitions({definition['MetadataId']})", params={"$select": "LogicalName"}
    )
    assert by_id.json()["LogicalName"] == "new_project"

    attrs = web.get(
        "EntityDefinitions(LogicalName='new_project')/Attributes",
        params={"$select": "LogicalName,AttributeType", "$filter": "AttributeType eq 'Integer'"},
    )
    assert [(a["LogicalName"], a["AttributeType"]) for a in attrs.json()["value"]] == [
        ("new_budget", "Integer")
    ]
    picklists = web.get(
        "EntityDefinitions(LogicalName='new_project')/Attributes"
        "/Microsoft.Dynamics.CRM.PicklistAttributeMetadata",
        params={"$select": "LogicalName", "$expand": "OptionSet($select=Options)"},
    )
    [kind] = picklists.json()["value"]
    assert kind["LogicalName"] == "new_kind"
    assert [
        (o["Value"], o["Label"]["LocalizedLabels"][0]["Label"])
        for o in kind["OptionSet"]["Options"]
    ] == [(100000000, "Internal"), (100000001, "Customer")]

    expanded = web.get(
        "EntityDefinitions",
        params={
            "$filter": "LogicalName eq 'new_project'",
            "$select": "LogicalName",
            "$expand": "Attributes($select=LogicalName)",
        },
    )
    [item] = expanded.json()["value"]
    assert {"new_name", "new_budget", "new_projectid", "createdon"} <= {
        a["LogicalName"] for a in item["Attributes"]
    }

    missing = web.get("EntityDefinitions(LogicalName='nothing')")
    assert error_of(missing) == (404, "0x80040217", "Could not find entity with name 'nothing'.")
    bad = web.get("EntityDefinitions", params={"$select": "LogicalName,Bogus"})
    assert error_of(bad) == (
        400,
        "0x0",
        "Could not find a property named 'Bogus' on type 'Microsoft.Dynamics.CRM.EntityMetadata'.",
    )


# -- create, retrieve, update, delete -------------------------------------------------------


def test_create_answers_204_with_odata_entity_id(emu, web):
    resp = web.call("POST", "accounts", json={"name": "Contoso", "numberofemployees": 12})
    assert resp.status_code == 204
    assert resp.content == b""
    location = resp.headers["OData-EntityId"]
    match = re.fullmatch(rf"{re.escape(web.base)}/accounts\(([0-9a-f-]{{36}})\)", location)
    assert match, location
    [row] = emu.dataverse.rows("account")
    assert row["accountid"] == match.group(1)
    assert row["name"] == "Contoso" and row["numberofemployees"] == 12


def test_create_with_return_representation_answers_201_with_the_row(emu, web):
    resp = web.call(
        "POST",
        "accounts?$select=name",
        json={"name": "Fabrikam"},
        headers={"Prefer": "return=representation"},
    )
    assert resp.status_code == 201
    assert resp.headers["Preference-Applied"] == "return=representation"
    body = resp.json()
    assert body["name"] == "Fabrikam"
    assert set(body) == {"@odata.context", "@odata.etag", "name", "accountid"}
    assert resp.headers["OData-EntityId"].endswith(f"accounts({body['accountid']})")


def test_retrieve_by_key_with_select_always_returns_the_key_and_etag(emu, web):
    [rid] = emu.dataverse.add_rows("account", [{"name": "Litware", "telephone1": "555-0100"}])
    resp = web.get(f"accounts({rid})", params={"$select": "telephone1"})
    assert resp.status_code == 200
    body = resp.json()
    assert body["@odata.context"] == f"{web.base}/$metadata#accounts(telephone1)/$entity"
    assert body["telephone1"] == "555-0100"
    assert body["accountid"] == rid
    assert re.fullmatch(r'W/"\d+"', body["@odata.etag"])
    assert "name" not in body

    unchanged = web.get(f"accounts({rid})", headers={"If-None-Match": body["@odata.etag"]})
    assert (unchanged.status_code, unchanged.content) == (304, b"")

    full = web.get(f"accounts({rid})").json()
    assert full["name"] == "Litware" and full["description"] is None
    assert web.get(f"accounts({rid})/telephone1").json()["value"] == "555-0100"


def test_update_upsert_and_the_if_match_headers(emu, web):
    [rid] = emu.dataverse.add_rows("account", [{"name": "Old"}])
    etag = web.get(f"accounts({rid})").json()["@odata.etag"]

    resp = web.call("PATCH", f"accounts({rid})", json={"name": "New"}, headers={"If-Match": "*"})
    assert resp.status_code == 204
    assert resp.headers["OData-EntityId"].endswith(f"accounts({rid})")
    assert emu.dataverse.rows("account")[0]["name"] == "New"

    stale = web.call("PATCH", f"accounts({rid})", json={"name": "X"}, headers={"If-Match": etag})
    assert error_of(stale) == (
        412,
        "0x80060882",
        "The version of the existing record doesn't match the RowVersion property provided.",
    )
    exists = web.call(
        "PATCH", f"accounts({rid})", json={"name": "X"}, headers={"If-None-Match": "*"}
    )
    assert error_of(exists) == (
        412,
        "0x80040237",
        "A record with matching key values already exists.",
    )

    ghost = "00000000-0000-0000-0000-0000000000aa"
    missing = web.call("PATCH", f"accounts({ghost})", json={"name": "G"}, headers={"If-Match": "*"})
    assert error_of(missing) == (404, "0x80040217", f"account With Id = {ghost} Does Not Exist")
    assert len(emu.dataverse.rows("account")) == 1

    upsert = web.call(
        "PATCH",
        f"accounts({ghost})",
        json={"name": "Upserted"},
        headers={"Prefer": "return=representation"},
    )
    assert upsert.status_code == 201
    assert upsert.json()["accountid"] == ghost
    assert {r["name"] for r in emu.dataverse.rows("account")} == {"New", "Upserted"}


def test_delete_then_the_row_is_gone(emu, web):
    [rid] = emu.dataverse.add_rows("account", [{"name": "Doomed"}])
    assert web.call("DELETE", f"accounts({rid})", headers={"If-Match": "*"}).status_code == 204
    assert emu.dataverse.rows("account") == []
    assert error_of(web.get(f"accounts({rid})")) == (
        404,
        "0x80040217",
        f"account With Id = {rid} Does Not Exist",
    )
    assert error_of(web.call("DELETE", f"accounts({rid})"))[:2] == (404, "0x80040217")


def test_create_multiple_returns_the_ids(emu, web):
    resp = web.call(
        "POST",
        "accounts/Microsoft.Dynamics.CRM.CreateMultiple",
        json={
            "Targets": [
                {"name": "A", "@odata.type": "Microsoft.Dynamics.CRM.account"},
                {"name": "B", "@odata.type": "Microsoft.Dynamics.CRM.account"},
            ]
        },
    )
    assert resp.status_code == 200
    ids = resp.json()["Ids"]
    assert [r["accountid"] for r in emu.dataverse.rows("account")] == ids


@pytest.mark.parametrize(
    ("body", "status", "code", "message"),
    [
        (
            {"Name": "x"},
            400,
            "0x0",
            "An error occurred while validating input parameters: Microsoft.Crm.CrmException: "
            "Invalid property 'Name' was found in entity 'Microsoft.Dynamics.CRM.account'. ---> "
            "Microsoft.OData.ODataException: Does not support untyped value in non-open type.",
        ),
        (
            {"numberofemployees": "many"},
            400,
            "0x0",
            "Cannot convert the literal 'many' to the expected type 'Edm.Int32'.",
        ),
        (
            {"accountcategorycode": 7},
            400,
            "0x8004431a",
            "A validation error occurred. The value 7 of 'accountcategorycode' on record of type "
            "'account' is outside the valid range.",
        ),
    ],
)
def test_invalid_bodies_are_refused_with_dataverse_errors(emu, web, body, status, code, message):
    assert error_of(web.call("POST", "accounts", json=body)) == (status, code, message)
    assert emu.dataverse.rows("account") == []


# -- queries -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("filter_text", "expected"),
    [
        ("new_name eq 'Apollo'", ["Apollo"]),
        ("new_name eq 'APOLLO'", ["Apollo"]),  # SQL collation: case-insensitive
        ("new_budget ne 500", ["Gemini", "Mercury", "apollo two", "Artemis"]),
        ("new_budget gt 100 and new_budget le 500", ["Apollo", "Gemini"]),
        ("new_budget lt 150 or new_name eq 'Gemini'", ["Gemini", "Mercury"]),
        ("contains(new_name,'OLL')", ["Apollo", "apollo two"]),
        ("startswith(new_name,'a')", ["Apollo", "apollo two", "Artemis"]),
        ("endswith(new_name, 'two')", ["apollo two"]),
        ("new_budget eq null", ["Artemis"]),
        ("new_owneremail ne null", ["apollo two"]),
        ("new_active eq true and not (new_name eq 'Mercury')", ["Apollo", "Artemis"]),
        ("(new_budget ge 500 or new_active eq false) and new_budget lt 900", ["Apollo", "Gemini"]),
        ("new_name eq 'O''Brien'", []),
        (
            'Microsoft.Dynamics.CRM.In(PropertyName=\'new_name\',PropertyValues=["Gemini","Mercury"])',
            ["Gemini", "Mercury"],
        ),
        (
            "Microsoft.Dynamics.CRM.NotIn(PropertyName='new_kind',PropertyValues=[\"100000000\"])",
            ["Gemini", "Mercury", "apollo two", "Artemis"],
        ),
    ],
)
def test_filter_operators(emu, web, filter_text, expected):
    add_projects(emu)
    assert names(web.get("new_projects", params={"$filter": filter_text})) == expected


@pytest.mark.parametrize(
    ("filter_text", "code", "message"),
    [
        ("new_name eq", "0x80060888", "Expression expected at position 11 in 'new_name eq'."),
        (
            "new_name eq 'x' and",
            "0x80060888",
            "Expression expected at position 19 in 'new_name eq 'x' and'.",
        ),
        (
            "new_name eq eq 'x'",
            "0x80060888",
            "Syntax error at position 12 in 'new_name eq eq 'x''.",
        ),
        (
            "(new_name eq 'x'",
            "0x80060888",
            "Expression expected at position 16 in '(new_name eq 'x''.",
        ),
        (
            "new_name eq 'x",
            "0x80060888",
            "There is an unterminated string literal at position 12 in 'new_name eq 'x'.",
        ),
        (
            "bogus(new_name,'x')",
            "0x80060888",
            "An unknown function with name 'bogus' was found. This may also be a function import "
            "or a key lookup on a navigation property, which is not allowed.",
        ),
        (
            "Name eq 'x'",
            "0x0",
            "Could not find a property named 'Name' on type 'Microsoft.Dynamics.CRM.new_project'.",
        ),
        (
            "new_name eq 5",
            "0x0",
            "A binary operator with incompatible types was detected. Found operand types "
            "'Edm.String' and 'Edm.Int32' for operator kind 'Equal'.",
        ),
    ],
)
def test_bad_filters_are_400_with_dataverse_codes(emu, web, filter_text, code, message):
    add_projects(emu)
    assert error_of(web.get("new_projects", params={"$filter": filter_text})) == (
        400,
        code,
        message,
    )


def test_select_orderby_and_top(emu, web):
    add_projects(emu)
    resp = web.get(
        "new_projects",
        params={"$select": "new_name,new_budget", "$orderby": "new_active desc,new_name asc"},
    )
    assert (
        resp.json()["@odata.context"] == f"{web.base}/$metadata#new_projects(new_name,new_budget)"
    )
    rows = resp.json()["value"]
    assert [r["new_name"] for r in rows] == ["Apollo", "Artemis", "Mercury", "Gemini", "apollo two"]
    assert set(rows[0]) == {"@odata.etag", "new_name", "new_budget", "new_projectid"}
    assert names(web.get("new_projects", params={"$orderby": "new_budget", "$top": "2"})) == [
        "Artemis",  # NULL sorts first, as in SQL
        "Mercury",
    ]
    assert names(web.get("new_projects", params={"$orderby": "new_budget desc", "$top": "1"})) == [
        "apollo two"
    ]
    bad = web.get("new_projects", params={"$select": "new_name,Budget"})
    assert error_of(bad) == (
        400,
        "0x0",
        "Could not find a property named 'Budget' on type 'Microsoft.Dynamics.CRM.new_project'.",
    )
    assert error_of(web.get("new_projects", params={"$orderby": "nope"}))[:2] == (400, "0x0")


def test_paging_with_maxpagesize_follows_next_links(emu, web):
    emu.dataverse.add_rows("account", [{"name": f"Account {i:02d}"} for i in range(7)])
    emu.reset_counts()
    prefer = {"Prefer": "odata.maxpagesize=3"}
    resp = web.get("accounts", params={"$select": "name", "$orderby": "name"}, headers=prefer)
    pages = []
    while True:
        assert resp.status_code == 200
        assert resp.headers["Preference-Applied"] == "odata.maxpagesize=3"
        body = resp.json()
        pages.append([r["name"] for r in body["value"]])
        link = body.get("@odata.nextLink")
        if link is None:
            break
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(link).query)
        assert query["$select"] == ["name"] and query["$orderby"] == ["name"]
        cookie = query["$skiptoken"][0]
        assert re.match(r'<cookie pagenumber="\d+" pagingcookie="%253ccookie', cookie, re.I)
        resp = web.get(link, headers=prefer)
    assert pages == [
        ["Account 00", "Account 01", "Account 02"],
        ["Account 03", "Account 04", "Account 05"],
        ["Account 06"],
    ]
    assert emu.count("dataverse") == 3


def test_top_turns_paging_off_and_big_pages_are_ignored(emu, web):
    emu.dataverse.add_rows("account", [{"name": f"A{i}"} for i in range(6)])
    top = web.get("accounts", params={"$top": "4"}, headers={"Prefer": "odata.maxpagesize=2"})
    assert len(top.json()["value"]) == 4
    assert "@odata.nextLink" not in top.json()
    assert "Preference-Applied" not in top.headers
    big = web.get("accounts", headers={"Prefer": "odata.maxpagesize=6000"})
    assert len(big.json()["value"]) == 6
    assert "Preference-Applied" not in big.headers


def test_count_and_skip(emu, web):
    add_projects(emu)
    counted = web.get(
        "new_projects",
        params={"$count": "true", "$filter": "new_active eq true", "$top": "1"},
    )
    assert counted.json()["@odata.count"] == 3
    assert len(counted.json()["value"]) == 1
    plain = web.get("new_projects/$count")
    assert plain.status_code == 200 and plain.text == "5"
    assert error_of(web.get("new_projects", params={"$skip": "2"})) == (
        400,
        "0x80060888",
        "The query parameter $skip is not supported",
    )


def test_formatted_values_when_prefer_asks(emu, web):
    add_projects(emu)
    prefer = {"Prefer": 'odata.include-annotations="OData.Community.Display.V1.FormattedValue"'}
    resp = web.get(
        "new_projects",
        params={"$filter": "new_name eq 'Apollo'", "$select": "new_kind,new_active,new_budget"},
        headers=prefer,
    )
    assert resp.headers["Preference-Applied"] == prefer["Prefer"]
    [row] = resp.json()["value"]
    annotation = "@OData.Community.Display.V1.FormattedValue"
    assert row[f"new_kind{annotation}"] == "Internal"
    assert row[f"new_active{annotation}"] == "Yes"
    assert row[f"new_budget{annotation}"] == "500"
    plain = web.get("new_projects", params={"$filter": "new_name eq 'Apollo'"}).json()["value"][0]
    assert not any("@OData.Community" in key for key in plain)


def test_unknown_entity_set_and_unimplemented_features(emu, web):
    assert error_of(web.get("Account")) == (
        404,
        "0x8006088a",
        "Resource not found for the segment 'Account'.",
    )
    assert error_of(web.get("accounts", params={"$expand": "primarycontactid"}))[:2] == (
        501,
        "NotImplemented",
    )
    assert web.get("").json()["value"][0] == {
        "name": "accounts",
        "kind": "EntitySet",
        "url": "accounts",
    }


# -- service protection limits ------------------------------------------------------------


def test_throttle_answers_429_with_retry_after_then_lets_requests_through(emu, web):
    emu.dataverse.throttle(times=2, retry_after=3, code="0x80072321")
    first = web.get("accounts")
    second = web.get("WhoAmI")
    for resp in (first, second):
        assert resp.status_code == 429
        assert resp.headers["Retry-After"] == "3"
        assert error_of(resp) == (
            429,
            "0x80072321",
            "Combined execution time of incoming requests exceeded limit of 1,200,000 "
            "milliseconds over time window of 300 seconds. Decrease number of concurrent "
            "requests or reduce the duration of requests and try again later.",
        )
    assert web.get("accounts").status_code == 200
    assert emu.dataverse.throttled == 2
    assert emu.count("dataverse") == 2 and emu.count("whoami") == 1


def test_throttle_counts_only_authenticated_requests(emu, web):
    emu.dataverse.throttle(times=1, code="0x80072322")
    assert Web(emu, None).get("accounts").status_code == 401  # authentication comes first
    throttled = web.get("accounts")
    assert error_of(throttled) == (
        429,
        "0x80072322",
        "Number of requests exceeded the limit of 6000 over time window of 300 seconds.",
    )
    assert throttled.headers["Retry-After"] == "2"
    emu.dataverse.throttle(times=None, code="0x80072326")
    assert [web.get("accounts").status_code for _ in range(3)] == [429, 429, 429]
    emu.dataverse.clear_throttle()
    assert web.get("accounts").status_code == 200
    assert emu.dataverse.throttled == 4


# -- the admin API -------------------------------------------------------------------------


def test_tables_rows_and_throttles_over_the_admin_api(emu, web):
    def admin(verb: str, **params) -> requests.Response:
        return requests.post(
            f"{emu.authority_host}/_emulator/{verb}",
            json=params,
            verify=emu.ca_bundle,
            timeout=10,
        )

    created = admin(
        "dataverse_add_table",
        logical_name="cr1_ticket",
        attributes={"cr1_title": "String", "cr1_points": "Integer"},
        primary_name="cr1_title",
    )
    assert created.status_code == 200
    assert created.json()["result"]["EntitySetName"] == "cr1_tickets"
    ids = admin(
        "dataverse_add_rows",
        table="cr1_ticket",
        rows=[{"cr1_title": "First", "cr1_points": 3}, {"cr1_title": "Second", "cr1_points": 5}],
    ).json()["result"]
    assert len(ids) == 2
    listed = web.get("cr1_tickets", params={"$filter": "cr1_points gt 4", "$select": "cr1_title"})
    assert [r["cr1_title"] for r in listed.json()["value"]] == ["Second"]
    rows = admin("dataverse_rows", table="cr1_tickets").json()["result"]
    assert [r["cr1_ticketid"] for r in rows] == ids

    bad = admin("dataverse_add_rows", table="cr1_ticket", rows=[{"cr1_points": "x"}])
    assert bad.status_code == 400
    assert admin("dataverse_throttle", times=1, retry_after=5).status_code == 200
    throttled = web.get("cr1_tickets")
    assert (throttled.status_code, throttled.headers["Retry-After"]) == (429, "5")


# -- the project's own auth ----------------------------------------------------------------


def test_power_platform_auth_pages_and_replays_a_write_after_a_401(emu, ppauth_env):
    from requests_ppauth import PowerPlatformAuth
    from requests_ppauth.credentials import ClientSecret

    s = emu.sample
    host = emu.api_url.removeprefix("https://")
    auth = PowerPlatformAuth(
        credential=ClientSecret(
            tenant_id=s.tenant_id,
            client_id=s.client_id,
            secret=s.client_secret,
            authority_host=emu.authority_host,
        ),
        verify=emu.ca_bundle,
        hosts={host: f"{emu.api_url}/.default"},
        cache=False,
    )
    session = requests.Session()
    session.auth = auth
    base = f"{emu.api_url}{API}"
    [rid] = emu.dataverse.add_rows("account", [{"name": "Before"}])
    emu.dataverse.add_rows("account", [{"name": f"More {i}"} for i in range(4)])
    emu.reset_counts()

    url: str | None = f"{base}/accounts?$select=name"
    seen: list[str] = []
    while url:
        resp = session.get(url, headers={"Prefer": "odata.maxpagesize=2"}, verify=emu.ca_bundle)
        assert resp.status_code == 200, resp.text
        seen += [r["name"] for r in resp.json()["value"]]
        url = resp.json().get("@odata.nextLink")
    assert seen == ["Before", "More 0", "More 1", "More 2", "More 3"]
    assert (emu.count("dataverse"), emu.count("token")) == (3, 1)

    emu.revoke()  # Dataverse's 401 (empty body, bare challenge): a new token, the PATCH again
    patched = session.patch(
        f"{base}/accounts({rid})",
        json={"name": "After"},
        headers={"If-Match": "*"},
        verify=emu.ca_bundle,
    )
    assert patched.status_code == 204 and len(patched.history) == 1
    assert patched.history[0].status_code == 401
    assert emu.dataverse.rows("account")[0]["name"] == "After"
    assert (emu.count("dataverse"), emu.count("token")) == (5, 2)


def test_plain_batch_request_with_relative_urls(emu, web):
    body = "\r\n".join(
        [
            "--batch_1",
            'Content-Type: multipart/mixed; boundary="changeset_1"',
            "",
            "--changeset_1",
            "Content-Type: application/http",
            "Content-Transfer-Encoding: binary",
            "Content-ID: 1",
            "",
            "POST accounts HTTP/1.1",
            "Content-Type: application/json; type=entry",
            "",
            '{"name": "Batched"}',
            "--changeset_1",
            "Content-Type: application/http",
            "Content-Transfer-Encoding: binary",
            "Content-ID: 2",
            "",
            "PATCH $1 HTTP/1.1",
            "Content-Type: application/json; type=entry",
            "",
            '{"telephone1": "555"}',
            "--changeset_1--",
            "--batch_1",
            "Content-Type: application/http",
            "Content-Transfer-Encoding: binary",
            "",
            f"GET {API}/accounts?$select=name,telephone1 HTTP/1.1",
            "Accept: application/json",
            "",
            "",
            "--batch_1--",
            "",
        ]
    )
    resp = web.call(
        "POST",
        "$batch",
        data=body.encode(),
        headers={"Content-Type": 'multipart/mixed; boundary="batch_1"'},
    )
    assert resp.status_code == 200
    assert resp.headers["Content-Type"].startswith("multipart/mixed; boundary=batchresponse_")
    text = resp.text
    assert text.count("HTTP/1.1 204 No Content") == 2
    assert "HTTP/1.1 200 OK" in text
    assert '"telephone1": "555"' in text  # the GET ran after the change set committed
    [row] = emu.dataverse.rows("account")
    assert (row["name"], row["telephone1"]) == ("Batched", "555")
    assert emu.count("dataverse") == 1

    no_boundary = web.call("POST", "$batch", data=b"x", headers={"Content-Type": "text/plain"})
    assert no_boundary.status_code == 400


def test_odata_bind_to_an_undeclared_navigation_property(emu, web):
    resp = web.call(
        "POST",
        "contacts",
        json={
            "lastname": "x",
            "parentcustomerid@odata.bind": "accounts(00000000-0000-0000-0000-000000000001)",
        },
    )
    status, code, message = error_of(resp)
    assert (status, code) == (400, "0x80048d19")
    assert message.startswith(
        "Error identified in Payload provided by the user for Entity :'contacts'"
    )
    assert (
        "An undeclared property 'parentcustomerid' which only has property annotations" in message
    )
    assert emu.dataverse.rows("contact") == []


def test_rows_by_alternate_key_and_by_named_primary_key(emu, web):
    emu.dataverse.add_table(
        "cr1_item",
        attributes={"cr1_code": "String", "cr1_qty": "Integer"},
        primary_name="cr1_code",
        alternate_keys={"cr1_code_key": ["cr1_code"]},
    )
    [rid] = emu.dataverse.add_rows("cr1_item", [{"cr1_code": "A1", "cr1_qty": 1}])
    by_key = web.get("cr1_items(cr1_code='a1')")  # key lookups follow the SQL collation
    assert by_key.status_code == 200 and by_key.json()["cr1_itemid"] == rid
    assert web.get(f"cr1_items(cr1_itemid={rid})").json()["cr1_code"] == "A1"

    upsert = web.call("PATCH", "cr1_items(cr1_code='B2')", json={"cr1_qty": 5})
    assert upsert.status_code == 204
    created = [r for r in emu.dataverse.rows("cr1_item") if r["cr1_code"] == "B2"]
    assert [r["cr1_qty"] for r in created] == [5]
    assert upsert.headers["OData-EntityId"].endswith(f"cr1_items({created[0]['cr1_itemid']})")

    missing = web.call(
        "PATCH", "cr1_items(cr1_code='C3')", json={"cr1_qty": 1}, headers={"If-Match": "*"}
    )
    assert error_of(missing) == (
        404,
        "0x80040217",
        "cr1_item With Id = cr1_code='C3' Does Not Exist",
    )
    assert web.call("DELETE", "cr1_items(cr1_code='A1')").status_code == 204
    assert [r["cr1_code"] for r in emu.dataverse.rows("cr1_item")] == ["B2"]

    undefined = web.get("cr1_items(cr1_qty=5)")
    assert error_of(undefined)[:2] == (400, "0x80060888")
    keys = web.get("EntityDefinitions(LogicalName='cr1_item')/Keys").json()["value"]
    assert [(k["SchemaName"], k["KeyAttributes"]) for k in keys] == [("cr1_code_key", ["cr1_code"])]


def test_a_throttle_window_refuses_everything_until_retry_after_has_passed(emu, web):
    started = time.monotonic()
    emu.dataverse.throttle(retry_after=2, window=True)
    refused = [web.get("accounts") for _ in range(3)]
    assert [r.status_code for r in refused] == [429, 429, 429]
    assert refused[0].headers["Retry-After"] == "2"  # what is left of the wait, rounded up
    assert {r.headers["Retry-After"] for r in refused} <= {"1", "2"}
    time.sleep(max(0.0, started + 2.1 - time.monotonic()))  # the client honours Retry-After
    assert web.get("accounts").status_code == 200  # ... and the service lets it in again
    assert emu.dataverse.throttled == 3
    assert emu.count("dataverse") == 4
