"""Every ``SecretClient`` call a test suite reaches first, unmodified, against the emulated
Key Vault: list (paged), list versions, set with attributes, update, delete with soft
delete (the poller, get/list/purge/recover deleted), and the service's error shapes."""

from __future__ import annotations

import json
import urllib.parse
from datetime import UTC, datetime, timedelta

import pytest
import requests
from azure.core.exceptions import HttpResponseError, ResourceExistsError, ResourceNotFoundError
from azure.identity import ClientSecretCredential
from azure.keyvault.secrets import SecretClient

from requests_ppauth.testing import Emulator


@pytest.fixture
def emu():
    with Emulator() as emulator:
        yield emulator


def credential(emu: Emulator) -> ClientSecretCredential:
    s = emu.sample
    return ClientSecretCredential(
        s.tenant_id,
        s.client_id,
        s.client_secret,
        **emu.client_settings("azure-identity"),
    )


def make_client(emu: Emulator, **kwargs) -> SecretClient:
    return SecretClient(
        emu.vault_url,
        credential(emu),
        verify_challenge_resource=False,
        connection_verify=emu.ca_bundle,
        **kwargs,
    )


@pytest.fixture
def client(emu):
    with make_client(emu) as secret_client:
        yield secret_client


def vault_get(emu: Emulator, path: str, token: str | None = None, **query: str):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return requests.get(
        f"{emu.vault_url}{path}", params=query, headers=headers, verify=emu.ca_bundle, timeout=10
    )


def vault_token(emu: Emulator) -> str:
    return credential(emu).get_token("https://vault.azure.net/.default").token


# -- the challenge -------------------------------------------------------------------


def test_the_sdk_refuses_the_loopback_vault_without_verify_challenge_resource_false(emu):
    emu.set_secret("s", "v")
    strict = SecretClient(emu.vault_url, credential(emu), connection_verify=emu.ca_bundle)
    with strict, pytest.raises(ValueError, match="verify_challenge_resource=False"):
        strict.get_secret("s")
    assert [r.status for r in emu.requests("vault")] == [401]  # the challenge only
    assert emu.count("token") == 0


# -- list -------------------------------------------------------------------------------


def test_list_secrets_pages_with_next_link_and_max_page_size(emu, client):
    names = [f"s{i:02d}" for i in range(7)]
    latest = {}
    for name in names:
        emu.set_secret(name, "old")
        latest[name] = emu.set_secret(name, "new", content_type="text/plain")

    listed = list(client.list_properties_of_secrets(max_page_size=3))

    assert [p.name for p in listed] == names
    assert all(p.version is None for p in listed)  # list items name the secret, not a version
    assert all(p.content_type == "text/plain" for p in listed)
    pages = [r for r in emu.requests("vault") if r.status == 200]
    assert len(pages) == 3  # 3 + 3 + 1
    assert [r.path for r in pages] == ["/secrets"] * 3


def test_list_page_body_is_key_vaults(emu):
    for i in range(3):
        emu.set_secret(f"n{i}", "v")
    token = vault_token(emu)

    first = vault_get(emu, "/secrets", token, **{"api-version": "7.4", "maxresults": "2"}).json()

    assert [item["id"] for item in first["value"]] == [
        f"{emu.vault_url}/secrets/n0",
        f"{emu.vault_url}/secrets/n1",
    ]
    assert "value" not in first["value"][0]  # lists never carry values
    link = urllib.parse.urlsplit(first["nextLink"])
    query = dict(urllib.parse.parse_qsl(link.query))
    assert f"{link.scheme}://{link.netloc}{link.path}" == f"{emu.vault_url}/secrets"
    assert query["api-version"] == "7.4"
    assert query["maxresults"] == "2"
    assert query["$skiptoken"]
    second = requests.get(
        first["nextLink"],
        headers={"Authorization": f"Bearer {token}"},
        verify=emu.ca_bundle,
        timeout=10,
    ).json()
    assert [item["id"].rsplit("/", 1)[1] for item in second["value"]] == ["n2"]
    assert second["nextLink"] is None


@pytest.mark.parametrize("maxresults", ["0", "26", "x"])
def test_maxresults_outside_1_to_25_is_bad_parameter(emu, maxresults):
    resp = vault_get(
        emu, "/secrets", vault_token(emu), **{"api-version": "7.4", "maxresults": maxresults}
    )
    assert resp.status_code == 400
    assert resp.json()["error"]["code"] == "BadParameter"


def test_list_versions_lists_every_version_with_its_id(emu, client):
    first = emu.set_secret("rotating", "v1")
    second = emu.set_secret("rotating", "v2", enabled=False)
    emu.set_secret("other", "x")

    versions = list(client.list_properties_of_secret_versions("rotating"))

    assert sorted(p.version for p in versions) == sorted([first, second])
    assert {p.version: p.enabled for p in versions} == {first: True, second: False}
    assert all(p.name == "rotating" for p in versions)
    [page] = [r for r in emu.requests("vault") if r.status == 200]
    assert page.path == "/secrets/rotating/versions"


def test_list_versions_pages_too(emu, client):
    made = [emu.set_secret("many", str(i)) for i in range(5)]

    versions = [
        p.version for p in client.list_properties_of_secret_versions("many", max_page_size=2)
    ]

    assert versions == sorted(made)  # Key Vault lists versions by id, not by age
    assert len([r for r in emu.requests("vault") if r.status == 200]) == 3


def test_list_versions_of_an_unknown_secret_is_empty(emu, client):
    assert list(client.list_properties_of_secret_versions("nothing-here")) == []


def test_listing_needs_the_list_permission(emu, client):
    emu.set_secret("a", "1")
    emu.deny_vault(emu.sample.client_id)

    with pytest.raises(HttpResponseError) as info:
        list(client.list_properties_of_secrets())

    assert info.value.status_code == 403
    assert "does not have secrets list permission" in str(info.value)


# -- set / update -----------------------------------------------------------------------


def test_set_secret_with_content_type_tags_and_attributes(emu, client):
    nbf = datetime(2030, 1, 1, tzinfo=UTC)
    exp = nbf + timedelta(days=30)

    made = client.set_secret(
        "api-key",
        "s3cr3t",
        content_type="password",
        tags={"owner": "team-a"},
        not_before=nbf,
        expires_on=exp,
    )

    assert made.value == "s3cr3t"
    assert made.properties.content_type == "password"
    assert made.properties.tags == {"owner": "team-a"}
    assert made.properties.not_before == nbf
    assert made.properties.expires_on == exp
    assert made.properties.enabled is True
    assert made.properties.recovery_level == "Recoverable+Purgeable"
    assert made.properties.recoverable_days == 90
    [put] = [r for r in emu.requests("vault") if r.method == "PUT" and r.status == 200]
    assert put.path == "/secrets/api-key"
    # a not-yet-valid secret still reads: Key Vault's get ignores nbf/exp
    again = client.get_secret("api-key")
    assert again.value == "s3cr3t"
    assert again.properties.version == made.properties.version
    assert again.properties.not_before == nbf
    assert emu.keyvault.tags("api-key", made.properties.version) == {"owner": "team-a"}


def test_set_adds_a_version_that_becomes_current(emu, client):
    old = emu.set_secret("db", "first")

    new = client.set_secret("db", "second")

    assert new.properties.version != old
    assert client.get_secret("db").value == "second"
    assert client.get_secret("db", version=old).value == "first"
    assert len(list(client.list_properties_of_secret_versions("db"))) == 2


def test_an_expired_secret_still_reads(emu, client):
    past = datetime.now(UTC).replace(microsecond=0) - timedelta(days=1)
    client.set_secret("expired", "still-here", expires_on=past)

    secret = client.get_secret("expired")

    assert secret.value == "still-here"
    assert secret.properties.expires_on == past


def test_set_disabled_then_get_is_secret_disabled(emu, client):
    client.set_secret("off", "value", enabled=False)

    with pytest.raises(HttpResponseError) as info:
        client.get_secret("off")

    assert info.value.status_code == 403
    assert info.value.error.code == "Forbidden"
    assert "SecretDisabled" in str(info.value)


def test_update_secret_properties(emu, client):
    made = client.set_secret("rotate-me", "v")

    updated = client.update_secret_properties(
        "rotate-me", made.properties.version, enabled=False, tags={"state": "retired"}
    )

    assert updated.enabled is False
    assert updated.tags == {"state": "retired"}
    assert updated.version == made.properties.version
    with pytest.raises(HttpResponseError) as info:
        client.get_secret("rotate-me")
    assert info.value.status_code == 403
    client.update_secret_properties("rotate-me", made.properties.version, enabled=True)
    assert client.get_secret("rotate-me").value == "v"


def test_secret_names_are_case_insensitive(emu, client):
    version = emu.set_secret("MixedCase", "v")
    secret = client.get_secret("mixedcase")
    assert secret.value == "v"
    assert secret.properties.version == version
    assert secret.name == "MixedCase"


def test_an_invalid_name_is_bad_parameter(emu, client):
    with pytest.raises(HttpResponseError) as info:
        client.set_secret("under_score", "v")
    assert info.value.status_code == 400
    assert info.value.error.code == "BadParameter"
    assert "under_score" in str(info.value)


# -- delete (soft delete) -----------------------------------------------------------------


def test_begin_delete_secret_then_get_is_not_found(emu, client):
    emu.set_secret("doomed", "v1")
    emu.set_secret("doomed", "v2")

    poller = client.begin_delete_secret("doomed")
    deleted = poller.result()
    poller.wait()

    assert poller.done()
    assert deleted.name == "doomed"
    assert deleted.recovery_id == f"{emu.vault_url}/deletedsecrets/doomed"
    assert deleted.deleted_date is not None
    assert deleted.scheduled_purge_date - deleted.deleted_date == timedelta(days=90)
    with pytest.raises(ResourceNotFoundError) as info:
        client.get_secret("doomed")
    assert info.value.error.code == "SecretNotFound"
    paths = [(r.method, r.path, r.status) for r in emu.requests("vault") if r.status != 401]
    assert paths[0] == ("DELETE", "/secrets/doomed", 200)
    assert ("GET", "/deletedsecrets/doomed", 200) in paths  # what the poller polls
    assert [p.name for p in client.list_properties_of_secrets()] == []


def test_delete_of_an_unknown_secret_is_not_found(emu, client):
    with pytest.raises(ResourceNotFoundError):
        client.begin_delete_secret("never-was")


def test_deleted_secrets_list_purge_and_name_reuse(emu, client):
    emu.set_secret("gone", "v")
    client.begin_delete_secret("gone").wait()

    assert [d.name for d in client.list_deleted_secrets()] == ["gone"]
    assert client.get_deleted_secret("gone").recovery_id.endswith("/deletedsecrets/gone")
    with pytest.raises(ResourceExistsError) as info:  # 409 while recoverable
        client.set_secret("gone", "again")
    assert info.value.status_code == 409
    assert "ObjectIsDeletedButRecoverable" in str(info.value)

    client.purge_deleted_secret("gone")

    assert list(client.list_deleted_secrets()) == []
    with pytest.raises(ResourceNotFoundError):
        client.get_deleted_secret("gone")
    assert client.set_secret("gone", "again").value == "again"


def test_recover_a_deleted_secret(emu, client):
    version = emu.set_secret("oops", "precious")
    client.begin_delete_secret("oops").wait()

    recovered = client.begin_recover_deleted_secret("oops").result()

    assert recovered.version == version
    assert client.get_secret("oops").value == "precious"
    assert list(client.list_deleted_secrets()) == []


# -- api-version -------------------------------------------------------------------------


def test_an_unknown_api_version_is_bad_parameter(emu):
    emu.set_secret("s", "v")
    with (
        make_client(emu, api_version="1999-01-01") as client,
        pytest.raises(HttpResponseError) as info,
    ):
        client.get_secret("s")
    assert info.value.status_code == 400
    assert info.value.error.code == "BadParameter"
    assert "The specified version (1999-01-01) is not recognized" in str(info.value)
    assert [r.status for r in emu.requests("vault")] == [401, 400]  # challenge, then refusal


def test_a_missing_api_version_is_bad_parameter(emu):
    assert vault_get(emu, "/secrets/s").status_code == 401  # the challenge comes first
    resp = vault_get(emu, "/secrets/s", vault_token(emu))
    assert resp.status_code == 400
    body = resp.json()
    assert body["error"]["code"] == "BadParameter"
    assert "api-version" in body["error"]["message"]


@pytest.mark.parametrize("version", ["7.4", "7.6", "2025-07-01"])
def test_older_api_versions_work(emu, version):
    emu.set_secret("s", "v")
    with make_client(emu, api_version=version) as client:
        assert client.get_secret("s").value == "v"
    assert all(r.status in (200, 401) for r in emu.requests("vault"))


def test_error_bodies_are_key_vaults_shape(emu):
    resp = vault_get(emu, "/secrets/missing", vault_token(emu), **{"api-version": "7.4"})
    assert resp.status_code == 404
    body = json.loads(resp.content)
    assert set(body) == {"error"}
    assert body["error"]["code"] == "SecretNotFound"
    assert "missing" in body["error"]["message"]


# -- state from tests ---------------------------------------------------------------------


def test_attributes_and_tags_set_from_a_test_show_in_the_sdk(emu, client):
    version = emu.set_secret("seeded", "v", content_type="text/plain")
    exp = int((datetime.now(UTC) + timedelta(days=7)).timestamp())

    emu.keyvault.set_attributes("seeded", version, exp=exp, nbf=exp - 86400, tags={"env": "ci"})

    secret = client.get_secret("seeded")
    assert secret.properties.expires_on == datetime.fromtimestamp(exp, UTC)
    assert secret.properties.not_before == datetime.fromtimestamp(exp - 86400, UTC)
    assert secret.properties.tags == {"env": "ci"}
    assert secret.properties.content_type == "text/plain"
    [listed] = client.list_properties_of_secrets()
    assert listed.tags == {"env": "ci"}
    assert listed.expires_on == secret.properties.expires_on


def test_attributes_and_deleted_names_over_the_admin_api(emu, client):
    version = emu.admin_call("set_secret", {"name": "remote", "value": "v"})
    emu.admin_call(
        "vault_set_attributes", {"name": "remote", "version": version, "exp": 2000000000}
    )

    assert client.get_secret("remote").properties.expires_on == datetime.fromtimestamp(
        2000000000, UTC
    )
    assert emu.admin_call("vault_deleted", {}) == []
    client.begin_delete_secret("remote").wait()
    assert emu.admin_call("vault_deleted", {}) == ["remote"]
    with pytest.raises(KeyError):
        emu.keyvault.set_attributes("remote", version, exp=1)  # deleted: not live any more
