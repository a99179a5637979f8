"""Microsoft's Dataverse SDK (``powerplatform-dataverse-client``), unmodified, against the
emulated Dataverse Web API: table list and lookup, record create / retrieve / update /
delete, queries (filter, select, top, orderby, paging), and what it does on a 429.

The SDK calls ``requests`` without ``verify``, so ``REQUESTS_CA_BUNDLE`` must name the
emulator's CA bundle; its token scope is ``<base_url>/.default``, so the org URL it is
given (``emu.api_url``) is the token's audience."""

from __future__ import annotations

import time
import warnings

import pandas as pd
import pytest
from azure.identity import ClientSecretCredential
from PowerPlatform.Dataverse.client import DataverseClient
from PowerPlatform.Dataverse.core.errors import HttpError, MetadataError
from PowerPlatform.Dataverse.models.filters import col

from requests_ppauth.testing import Emulator


@pytest.fixture
def emu(monkeypatch):
    with Emulator() as emulator:
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", emulator.ca_bundle)
        monkeypatch.setenv("CURL_CA_BUNDLE", emulator.ca_bundle)
        yield emulator


@pytest.fixture
def client(emu):
    s = emu.sample
    credential = ClientSecretCredential(
        s.tenant_id,
        s.client_id,
        s.client_secret,
        **emu.client_settings("azure-identity"),
    )
    with DataverseClient(emu.api_url, credential) as dataverse:
        yield dataverse


def add_tasks(emu: Emulator, count: int = 0) -> list[str]:
    emu.dataverse.add_table(
        "cr5_task",
        attributes={"cr5_title": "String", "cr5_hours": "Integer", "cr5_done": "Boolean"},
        primary_name="cr5_title",
        display_name="Task",
    )
    return emu.dataverse.add_rows(
        "cr5_task",
        [{"cr5_title": f"Task {i}", "cr5_hours": i, "cr5_done": i % 2 == 0} for i in range(count)],
    )


def test_tables_list_and_get(emu, client):
    add_tasks(emu)
    tables = client.tables.list()
    assert sorted(t["LogicalName"] for t in tables) == ["account", "contact", "cr5_task"]
    custom = client.tables.list(filter="IsCustomEntity eq true", select=["LogicalName"])
    assert [t["LogicalName"] for t in custom] == ["cr5_task"]
    info = client.tables.get("cr5_task")
    assert info is not None
    assert (info.entity_set_name, info.primary_id_attribute, info.primary_name_attribute) == (
        "cr5_tasks",
        "cr5_taskid",
        "cr5_title",
    )
    assert client.tables.get("cr5_nothing") is None
    columns = client.tables.list_columns("cr5_task", filter="AttributeType eq 'Integer'")
    assert [c["LogicalName"] for c in columns] == ["cr5_hours"]
    # two lists, two gets, and list_columns' definition lookup plus its Attributes query
    assert emu.count("dataverse-metadata") == 6
    assert emu.count("dataverse") == 0


def test_record_create_get_update_delete(emu, client):
    rid = client.records.create("account", {"name": "Contoso", "numberofemployees": 40})
    [row] = emu.dataverse.rows("account")
    assert row["accountid"] == rid and row["numberofemployees"] == 40

    record = client.records.retrieve("account", rid, select=["name", "numberofemployees"])
    assert record is not None
    assert record["name"] == "Contoso" and record["numberofemployees"] == 40
    assert record.etag == f'W/"{row["versionnumber"]}"'

    client.records.update("account", rid, {"telephone1": "555-0100", "numberofemployees": 41})
    [row] = emu.dataverse.rows("account")
    assert (row["telephone1"], row["numberofemployees"], row["name"]) == ("555-0100", 41, "Contoso")

    client.records.delete("account", rid)
    assert emu.dataverse.rows("account") == []
    assert client.records.retrieve("account", rid) is None  # the SDK turns our 404 into None
    last = emu.requests("dataverse")[-1]
    assert (last.method, last.status) == ("GET", 404)
    # one metadata lookup (cached by the SDK), one picklist fetch for the string values
    assert emu.count("dataverse-metadata") == 2


def test_create_many_uses_create_multiple_and_resolves_choice_labels(emu, client):
    ids = client.records.create(
        "account",
        [
            {"name": "A", "accountcategorycode": "Standard"},
            {"name": "B", "accountcategorycode": "Preferred Customer"},
        ],
    )
    rows = emu.dataverse.rows("account")
    assert [r["accountid"] for r in rows] == ids
    assert [r["accountcategorycode"] for r in rows] == [2, 1]
    paths = [r.path for r in emu.requests("dataverse")]
    assert paths == ["/api/data/v9.2/accounts/Microsoft.Dynamics.CRM.CreateMultiple"]

    client.records.update("account", ids, {"description": "bulk"})
    assert [r["description"] for r in emu.dataverse.rows("account")] == ["bulk", "bulk"]
    assert emu.requests("dataverse")[-1].path.endswith("Microsoft.Dynamics.CRM.UpdateMultiple")


def test_query_filter_select_orderby_top(emu, client):
    add_tasks(emu, 6)
    result = client.records.list(
        "cr5_task",
        filter="cr5_done eq true or cr5_hours gt 4",
        select=["cr5_title"],
        orderby=["cr5_hours desc"],
    )
    assert [r["cr5_title"] for r in result] == ["Task 5", "Task 4", "Task 2", "Task 0"]
    assert all(set(r.data) == {"cr5_title", "cr5_taskid"} for r in result)

    top = client.records.list("cr5_task", select=["cr5_title"], orderby=["cr5_hours"], top=2)
    assert [r["cr5_title"] for r in top] == ["Task 0", "Task 1"]

    built = (
        client.query.builder("cr5_task")
        .select("cr5_title")
        .where(col("cr5_title").startswith("task") & (col("cr5_hours") >= 3))
        .order_by("cr5_hours", descending=True)
        .execute()
    )
    assert [r["cr5_title"] for r in built] == ["Task 5", "Task 4", "Task 3"]
    chosen = (
        client.query.builder("cr5_task")
        .select("cr5_title")
        .where(col("cr5_title").in_(["Task 1", "Task 3"]))
    )
    assert sorted(r["cr5_title"] for r in chosen.execute()) == ["Task 1", "Task 3"]


def test_query_pages_follow_next_links(emu, client):
    add_tasks(emu, 7)
    emu.reset_counts()
    pages = list(
        client.records.list_pages(
            "cr5_task", select=["cr5_title"], orderby=["cr5_hours"], page_size=3
        )
    )
    assert [[r["cr5_title"] for r in page] for page in pages] == [
        ["Task 0", "Task 1", "Task 2"],
        ["Task 3", "Task 4", "Task 5"],
        ["Task 6"],
    ]
    requests_made = emu.requests("dataverse")
    assert len(requests_made) == 3
    assert all(r.status == 200 for r in requests_made)
    assert emu.count("dataverse-metadata") == 1


def test_unknown_table_and_bad_filter_surface_as_sdk_errors(emu, client):
    with pytest.raises(MetadataError):
        client.records.list("cr5_missing", select=["x"])
    add_tasks(emu, 1)
    with pytest.raises(HttpError) as excinfo:
        client.records.list("cr5_task", filter="cr5_title eq", select=["cr5_title"])
    err = excinfo.value
    assert err.status_code == 400
    assert err.details["service_error_code"] == "0x80060888"
    assert "Expression expected at position" in err.message


def test_a_429_is_raised_not_retried_and_carries_retry_after(emu, client):
    add_tasks(emu, 2)
    client.records.list("cr5_task", select=["cr5_title"])  # warm the SDK's metadata cache
    before = emu.count("dataverse")
    emu.dataverse.throttle(times=1, retry_after=2, code="0x80072322")
    started = time.monotonic()
    with pytest.raises(HttpError) as excinfo:
        client.records.list("cr5_task", select=["cr5_title"])
    elapsed = time.monotonic() - started
    err = excinfo.value
    assert err.status_code == 429
    assert err.is_transient is True
    assert err.details["retry_after"] == 2
    assert err.details["service_error_code"] == "0x80072322"
    assert err.message == (
        "Number of requests exceeded the limit of 6000 over time window of 300 seconds."
    )
    # the SDK (1.x) neither retries nor waits: one request reached the emulator
    assert emu.count("dataverse") == before + 1
    assert elapsed < 2  # Retry-After was 2 s: it did not wait for it
    assert emu.dataverse.throttled == 1
    # honouring Retry-After is the caller's job; after the window, the call works
    assert len(client.records.list("cr5_task", select=["cr5_title"])) == 2


def test_a_revoked_token_is_a_401_for_the_sdk(emu, client):
    add_tasks(emu, 1)
    assert len(client.records.list("cr5_task", select=["cr5_title"])) == 1
    emu.revoke()
    with pytest.raises(HttpError) as excinfo:
        client.records.list("cr5_task", select=["cr5_title"])
    assert excinfo.value.status_code == 401


def test_deprecated_get_still_works(emu, client):
    [rid] = add_tasks(emu, 1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        record = client.records.get("cr5_task", rid, select=["cr5_title"])
        pages = list(client.records.get("cr5_task", select=["cr5_title"], page_size=1))
    assert record["cr5_title"] == "Task 0"
    assert [[r["cr5_title"] for r in page] for page in pages] == [["Task 0"]]


def test_batch_with_a_changeset_and_content_id_references(emu, client):
    [existing] = emu.dataverse.add_rows("account", [{"name": "Existing"}])
    batch = client.batch.new()
    batch.records.create("account", {"name": "Plain"})
    batch.records.retrieve("account", existing, select=["name"])
    with batch.changeset() as cs:
        ref = cs.records.create("account", {"name": "In changeset"})
        cs.records.update("account", ref, {"telephone1": "555-0199"})
    result = batch.execute()
    assert not result.has_errors
    assert [r.status_code for r in result.responses] == [204, 200, 204, 204]
    assert result.responses[1].data["name"] == "Existing"
    rows = {r["name"]: r for r in emu.dataverse.rows("account")}
    assert set(rows) == {"Existing", "Plain", "In changeset"}
    assert rows["In changeset"]["telephone1"] == "555-0199"
    assert result.responses[3].entity_id == rows["In changeset"]["accountid"]
    assert [r.path for r in emu.requests("dataverse")] == ["/api/data/v9.2/$batch"]


def test_a_failed_changeset_rolls_back_and_stops_the_batch_unless_asked(emu, client):
    ghost = "00000000-0000-0000-0000-000000000001"

    def failing_batch():
        batch = client.batch.new()
        with batch.changeset() as cs:
            cs.records.create("account", {"name": "Rolled back"})
            cs.records.update("account", ghost, {"name": "x"})
        batch.records.create("account", {"name": "After"})
        return batch

    result = failing_batch().execute()
    assert result.has_errors
    [failure] = result.responses  # the changeset answers its failure alone; the batch stops
    assert (failure.status_code, failure.error_code) == (404, "0x80040217")
    assert failure.error_message == f"account With Id = {ghost} Does Not Exist"
    assert emu.dataverse.rows("account") == []

    result = failing_batch().execute(continue_on_error=True)
    assert [r.status_code for r in result.responses] == [404, 204]
    assert [r["name"] for r in emu.dataverse.rows("account")] == ["After"]


def test_dataframes_round_trip(emu, client):
    frame = pd.DataFrame(
        [{"name": "A", "numberofemployees": 3}, {"name": "B", "numberofemployees": 9}]
    )
    ids = client.dataframe.create("account", frame)
    assert list(ids) == [r["accountid"] for r in emu.dataverse.rows("account")]
    result = (
        client.query.builder("account")
        .select("name", "numberofemployees")
        .where(col("numberofemployees") > 5)
        .execute()
        .to_dataframe()
    )
    assert result["name"].tolist() == ["B"]
    assert result["numberofemployees"].tolist() == [9]


def test_upsert_by_alternate_key_single_and_multiple(emu, client):
    from PowerPlatform.Dataverse.models.upsert import UpsertItem

    emu.dataverse.add_table(
        "cr5_device",
        attributes={"cr5_serial": "String", "cr5_site": "String", "cr5_units": "Integer"},
        primary_name="cr5_serial",
        alternate_keys={"cr5_serial_site": ["cr5_serial", "cr5_site"]},
    )
    keys = client.tables.get_alternate_keys("cr5_device")
    assert [(k.schema_name, k.key_attributes) for k in keys] == [
        ("cr5_serial_site", ["cr5_serial", "cr5_site"])
    ]
    key = {"cr5_serial": "SN-1", "cr5_site": "Oslo"}
    client.records.upsert("cr5_device", [UpsertItem(alternate_key=key, record={"cr5_units": 1})])
    client.records.upsert("cr5_device", [UpsertItem(alternate_key=key, record={"cr5_units": 2})])
    [row] = emu.dataverse.rows("cr5_device")
    assert (row["cr5_serial"], row["cr5_site"], row["cr5_units"]) == ("SN-1", "Oslo", 2)
    assert [r.method for r in emu.requests("dataverse")] == ["PATCH", "PATCH"]

    client.records.upsert(
        "cr5_device",
        [
            UpsertItem(alternate_key=key, record={"cr5_units": 3}),
            UpsertItem(alternate_key={"cr5_serial": "SN-2", "cr5_site": "Oslo"}, record={}),
        ],
    )
    rows = emu.dataverse.rows("cr5_device")
    assert [(r["cr5_serial"], r["cr5_units"]) for r in rows] == [("SN-1", 3), ("SN-2", None)]
    assert emu.requests("dataverse")[-1].path.endswith("Microsoft.Dynamics.CRM.UpsertMultiple")


def test_deleting_many_uses_bulk_delete(emu, client):
    ids = add_tasks(emu, 4)
    job = client.records.delete("cr5_task", ids[:3])
    assert isinstance(job, str) and len(job) == 36
    assert [r["cr5_taskid"] for r in emu.dataverse.rows("cr5_task")] == [ids[3]]
    [bulk] = emu.requests("dataverse")
    assert (bulk.method, bulk.path, bulk.status) == ("POST", "/api/data/v9.2/BulkDelete", 200)
    client.records.delete("cr5_task", ids[3:], use_bulk_delete=False)
    assert emu.dataverse.rows("cr5_task") == []
    assert emu.requests("dataverse")[-1].method == "DELETE"


def test_within_a_throttle_window_the_caller_must_wait_retry_after(emu, client):
    add_tasks(emu, 1)
    client.records.list("cr5_task", select=["cr5_title"])
    started = time.monotonic()
    emu.dataverse.throttle(retry_after=2, code="0x80072326", window=True)
    waits = []
    for _ in range(2):  # the SDK gives up at once each time, so retrying early fails again
        with pytest.raises(HttpError) as excinfo:
            client.records.list("cr5_task", select=["cr5_title"])
        assert excinfo.value.details["service_error_code"] == "0x80072326"
        waits.append(excinfo.value.details["retry_after"])
    assert waits[0] == 2 and waits[1] in (1, 2)
    time.sleep(max(0.0, started + 2.1 - time.monotonic()))
    assert len(client.records.list("cr5_task", select=["cr5_title"])) == 1
    assert emu.dataverse.throttled == 2
