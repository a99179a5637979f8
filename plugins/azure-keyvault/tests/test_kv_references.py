"""Which strings the resolver claims, and how references parse: no network here."""

from __future__ import annotations

import pytest
from requests_ppauth import SecretReferenceError
from requests_ppauth.testing.contract import make_request

from requests_ppauth_keyvault import KeyVaultResolver
from requests_ppauth_keyvault._references import MalformedReferenceError, parse


@pytest.mark.parametrize(
    "reference",
    [
        "https://contoso.vault.azure.net/secrets/pp-secret",
        "https://contoso.vault.azure.net/secrets/pp-secret/0123456789abcdef0123456789abcdef",
        "https://contoso.vault.azure.net/secrets/pp-secret/",
        "HTTPS://Contoso.Vault.Azure.Net/secrets/pp-secret",
        "https://contoso.vault.azure.net:443/secrets/pp-secret",
        "https://gov-vault.vault.usgovcloudapi.net/secrets/x",
        "https://cn-vault.vault.azure.cn/secrets/x",
        "https://de-vault.vault.microsoftazure.de/secrets/x",
    ],
)
def test_claims_key_vault_urls_of_every_cloud(reference):
    assert KeyVaultResolver().claims(reference)


@pytest.mark.parametrize(
    "reference",
    [
        "https://example.com/secrets/x",
        "https://127.0.0.1:8443/secrets/x",  # not allow-listed
        "https://login.microsoftonline.com/common",
        "https://contoso.vault.azure.net.attacker.example/secrets/x",
        "https://vault.azure.net/secrets/x",  # the bare suffix is no vault
        "https://contoso.managedhsm.azure.net/secrets/x",
        "http://contoso.vault.azure.net/secrets/x",  # plain http is never a vault
        "keyring:prod",
        "pa:ss",
        "https//contoso.vault.azure.net/secrets/x",
        "",
    ],
)
def test_does_not_claim_other_urls_or_strings(reference):
    assert not KeyVaultResolver().claims(reference)


def test_allow_listed_hosts_come_from_the_environment(ppauth_env):
    resolver = KeyVaultResolver()
    ppauth_env.set(PPAUTH_KEYVAULT_HOSTS=" 127.0.0.1:8443 , https://kv.internal.example ,")

    assert resolver.claims("https://127.0.0.1:8443/secrets/x")
    assert resolver.claims("https://kv.internal.example/secrets/x/abc")
    assert resolver.claims("https://kv.internal.example:443/secrets/x")
    assert not resolver.claims("https://127.0.0.1:8444/secrets/x")  # the port counts
    assert not resolver.claims("https://127.0.0.1:8443/keys/x")  # only secrets
    assert not resolver.claims("https://127.0.0.1:8443/")


def test_allow_listed_hosts_from_the_constructor():
    resolver = KeyVaultResolver(hosts=["[::1]:9000", "localhost:9001"])

    assert resolver.claims("https://[::1]:9000/secrets/x")
    assert resolver.claims("https://LOCALHOST:9001/secrets/x")
    assert not resolver.claims("https://localhost:9000/secrets/x")


def test_allow_listed_hosts_from_the_profile_need_the_request():
    resolver = KeyVaultResolver()
    request = make_request("p", settings={"keyvault": {"hosts": ["10.0.0.5:8443"]}})
    reference = "https://10.0.0.5:8443/secrets/x"

    assert not resolver.claims(reference)  # no profile to look in
    assert resolver.claims_for_request(reference, request)
    assert not resolver.claims_for_request(reference, make_request("p"))


def test_the_core_asks_for_the_claim_with_the_request():
    """Through SourceRequest.resolve, a profile's hosts make its reference ours."""
    resolver = KeyVaultResolver()
    request = make_request(
        "p",
        settings={"keyvault": {"hosts": ["10.0.0.5:8443"], "retries": -1}},
        resolvers=(resolver,),
    )

    # claimed: the resolver reads the table (and stops at its bad setting, before any
    # network) rather than the core using the URL as a literal password
    with pytest.raises(SecretReferenceError, match="retries"):
        request.resolve("https://10.0.0.5:8443/secrets/x", "client_secret")
    assert request.resolve("https://10.0.0.6:8443/secrets/x", "pw") == (
        "https://10.0.0.6:8443/secrets/x"
    )


def test_a_malformed_profile_table_never_breaks_claiming():
    resolver = KeyVaultResolver()
    for table in ("not a table", {"hosts": "10.0.0.5"}, {"hosts": [1, None]}):
        request = make_request("p", settings={"keyvault": table})
        assert not resolver.claims_for_request("https://10.0.0.5/secrets/x", request)
        assert resolver.claims_for_request("https://v1.vault.azure.net/secrets/x", request)


def test_parse_latest_and_versioned():
    latest = parse("https://contoso.vault.azure.net/secrets/pp-secret")
    pinned = parse("https://contoso.vault.azure.net/secrets/pp-secret/0123abcd")

    assert (latest.vault_url, latest.name, latest.version) == (
        "https://contoso.vault.azure.net",
        "pp-secret",
        None,
    )
    assert pinned.version == "0123abcd"
    assert latest.azure
    assert latest.authority_host == "https://login.microsoftonline.com"


@pytest.mark.parametrize(
    ("suffix", "authority"),
    [
        ("vault.usgovcloudapi.net", "https://login.microsoftonline.us"),
        ("vault.azure.cn", "https://login.chinacloudapi.cn"),
        ("vault.microsoftazure.de", "https://login.microsoftonline.de"),
    ],
)
def test_sovereign_vaults_default_to_their_cloud_authority(suffix, authority):
    ref = parse(f"https://kv1.{suffix}/secrets/x")
    assert ref.authority_host == authority
    assert ref.vault_url == f"https://kv1.{suffix}"


def test_allow_listed_hosts_are_not_azure():
    ref = parse("https://127.0.0.1:8443/secrets/x/v1")
    assert not ref.azure
    assert ref.authority_host is None
    assert (ref.hostport, ref.vault_url) == ("127.0.0.1:8443", "https://127.0.0.1:8443")


@pytest.mark.parametrize(
    ("reference", "says"),
    [
        ("https://contoso.vault.azure.net/certificates/pp-cert", "secret of the same name"),
        ("https://contoso.vault.azure.net/keys/k", "is not a secret"),
        ("https://contoso.vault.azure.net/secrets", "is not a secret"),
        ("https://contoso.vault.azure.net/secrets/a/b/c", "is not a secret"),
        ("https://contoso.vault.azure.net/secrets/bad_name", "not a secret name"),
        ("https://contoso.vault.azure.net/secrets/x?api-version=7.4", "query"),
        ("https://a.vault.azure.net/secrets/x", "not a vault name"),
        ("https://contoso.vault.azure.net/secrets/x/not-hex!", "not a secret version"),
    ],
)
def test_malformed_references_say_what_is_wrong(reference, says):
    assert KeyVaultResolver().claims(reference)  # ours, so the error is ours too
    with pytest.raises(MalformedReferenceError, match=says):
        parse(reference)
    with pytest.raises(SecretReferenceError, match=says):
        KeyVaultResolver().resolve(reference, make_request("p"))


def test_user_info_in_a_reference_is_never_echoed():
    reference = "https://admin:hunter2@contoso.vault.azure.net/secrets/x"
    with pytest.raises(SecretReferenceError) as info:
        KeyVaultResolver().resolve(reference, make_request("p"))
    assert "hunter2" not in str(info.value)
    assert "user info" in str(info.value)
