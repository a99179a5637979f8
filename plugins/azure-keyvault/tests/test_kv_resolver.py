"""Reading the vault: secrets, certificates, versions, errors, the in-memory cache."""

from __future__ import annotations

import base64
import logging
import stat
import threading
from pathlib import Path

import pytest
from requests_ppauth import SecretReferenceError, SourceRequest, UnsafeFileError
from requests_ppauth.testing.contract import make_request

from requests_ppauth_keyvault import KeyVaultError, KeyVaultResolver, SecretCache


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture
def resolver(clock):
    """A resolver with its own cache on a clock the test moves."""
    return KeyVaultResolver(cache=SecretCache(clock=clock))


# -- values ---------------------------------------------------------------------------


def test_a_secret_is_a_string(vault, resolver):
    reference = vault.put("the-value")

    assert resolver.resolve(reference, vault.request()) == "the-value"
    assert vault.reads() == [401, 200]  # the bearer challenge, then the read
    [token] = vault.emu.requests("token")
    assert token.client_id == vault.reader_id  # the vault reader, not the Power Platform app


def test_a_pem_certificate_is_its_bytes(vault, resolver):
    pem = vault.emu.sample.certificate.pem_bundle
    reference = vault.put(pem.decode(), content_type="application/x-pem-file")

    assert resolver.resolve(reference, vault.request()) == pem


@pytest.mark.parametrize("password", [None, "pfx-password"])
def test_a_pkcs12_certificate_is_decoded_from_base64(vault, resolver, password):
    pfx = vault.emu.sample.certificate.pfx(password)
    reference = vault.put(base64.b64encode(pfx).decode(), content_type="application/x-pkcs12")

    assert resolver.resolve(reference, vault.request()) == pfx


def test_a_pkcs12_secret_that_is_not_base64_is_a_clear_error(vault, resolver):
    reference = vault.put("%%% not base64 %%%", content_type="application/x-pkcs12")

    with pytest.raises(SecretReferenceError, match="not base64") as info:
        resolver.resolve(reference, vault.request())
    assert "%%%" not in str(info.value)


def test_latest_version_unless_one_is_named(vault, resolver):
    first = vault.emu.set_secret("rotating", "v1")
    vault.emu.set_secret("rotating", "v2")

    assert resolver.resolve(vault.ref("rotating"), vault.request()) == "v2"
    assert resolver.resolve(vault.ref("rotating", first), vault.request()) == "v1"
    assert [r.path for r in vault.emu.requests("vault") if r.status == 200] == [
        "/secrets/rotating/",  # the SDK asks for "no version" with a trailing slash
        f"/secrets/rotating/{first}",
    ]


def test_a_disabled_current_version_is_an_error(vault, resolver):
    """Key Vault answers 403 SecretDisabled for a disabled current version; it does not
    fall back to an older one (the emulator used to, wrongly)."""
    vault.emu.set_secret("half", "good")
    vault.emu.set_secret("half", "disabled", enabled=False)
    with pytest.raises(KeyVaultError, match="is disabled"):
        resolver.resolve(vault.ref("half"), vault.request())


# -- errors -----------------------------------------------------------------------------


def test_a_missing_secret_names_the_reference(vault, resolver):
    vault.put("exists", name="exists")
    reference = vault.ref("does-not-exist")

    with pytest.raises(KeyVaultError) as info:
        resolver.resolve(reference, vault.request())

    message = str(info.value)
    assert reference in message
    assert "names no secret" in message
    assert info.value.status == 404
    assert info.value.reference == reference
    assert isinstance(info.value, SecretReferenceError)
    assert info.value.__cause__ is None  # no Azure response body rides along
    assert info.value.__suppress_context__


def test_a_missing_version_names_the_version(vault, resolver):
    vault.put("exists", name="exists")

    with pytest.raises(KeyVaultError, match=r"version 0{32}"):
        resolver.resolve(vault.ref("exists", "0" * 32), vault.request())


def test_access_denied_names_the_principal_the_permission_and_the_vault(vault, resolver):
    reference = vault.put("guarded-value")
    vault.emu.deny_vault(vault.reader_id)

    with pytest.raises(KeyVaultError) as info:
        resolver.resolve(reference, vault.request())

    message = str(info.value)
    assert info.value.status == 403
    assert vault.reader_id in message
    assert "object id" in message  # what a role assignment names
    assert "lacks 'get' permission" in message
    assert vault.emu.vault_url in message
    assert "Key Vault Secrets User" in message
    assert "guarded-value" not in message


def test_persistent_throttling_gives_up_after_the_retries(vault, resolver):
    reference = vault.put("busy-value")
    vault.emu.inject("vault", status=429, retry_after=0, times=None)

    with pytest.raises(KeyVaultError) as info:
        resolver.resolve(reference, vault.request({"retries": 1}))

    assert vault.reads() == [429, 429]  # one try, one retry
    assert info.value.status == 429
    assert info.value.retry_after == 0
    message = str(info.value)
    assert "throttling" in message
    assert "after 1 retry" in message
    assert "busy-value" not in message


def test_throttling_reports_retry_after(vault, resolver):
    reference = vault.put("busy-value")
    vault.emu.inject("vault", status=429, retry_after=7, times=None)

    with pytest.raises(KeyVaultError, match="retry after 7 seconds") as info:
        resolver.resolve(reference, vault.request({"retries": 0}))

    assert info.value.retry_after == 7
    assert vault.reads() == [429]


def test_one_throttled_answer_is_retried_by_the_sdk(vault, resolver):
    reference = vault.put("eventually")
    vault.emu.inject("vault", status=429, retry_after=0, times=1)

    assert resolver.resolve(reference, vault.request()) == "eventually"
    assert vault.reads() == [429, 401, 200]


def test_a_wrong_vault_credential_is_an_authentication_error(vault, resolver):
    reference = vault.put("value")
    request = vault.request({"credential": vault.credential_table(client_secret="wrong-secret")})

    with pytest.raises(KeyVaultError) as info:
        resolver.resolve(reference, request)

    message = str(info.value)
    assert message.startswith(f"cannot authenticate to Key Vault {vault.emu.vault_url}")
    assert vault.reader_id in message
    assert "AADSTS7000215" in message  # Entra ID's reason, passed on
    assert "wrong-secret" not in message
    assert vault.reads() == [401]  # the challenge came; no token ever reached the vault


def test_a_fixed_vault_credential_is_used_at_once(vault, resolver):
    """A failed credential is dropped, so the corrected setting is not shadowed."""
    reference = vault.put("value")
    bad = vault.request({"credential": vault.credential_table(client_secret="wrong-secret")})
    with pytest.raises(KeyVaultError):
        resolver.resolve(reference, bad)

    assert resolver.resolve(reference, vault.request()) == "value"


def test_a_vault_in_another_tenant_is_explained(vault, resolver):
    """The challenge names the vault's tenant; azure-identity refuses to switch to it."""
    reference = vault.put("value")
    other = vault.emu.add_tenant("fabrikam.onmicrosoft.com")
    request = vault.request(tenant_id=other.id)

    with pytest.raises(KeyVaultError) as info:
        resolver.resolve(reference, request)

    message = str(info.value)
    assert f"tenant {other.id}" in message  # the tenant the credential signs in to
    assert vault.emu.sample.tenant_id in message  # the vault's tenant, from the challenge


def test_without_the_private_ca_the_error_says_how_to_trust_it(vault, resolver):
    reference = vault.put("value")
    settings = vault.settings({"retries": 0})  # azure-core retries connection errors too
    del settings["ca_bundle"]
    request = make_request("p", settings=settings)

    with pytest.raises(KeyVaultError, match="PPAUTH_CA_BUNDLE") as info:
        resolver.resolve(reference, request)

    assert str(info.value).startswith(f"cannot reach Key Vault {vault.emu.vault_url}")


def test_the_ca_bundle_can_come_from_ppauth_ca_bundle(vault, resolver):
    reference = vault.put("value")
    settings = {k: v for k, v in vault.settings().items() if k != "ca_bundle"}
    request = make_request(
        "p", settings=settings, environ={"PPAUTH_CA_BUNDLE": vault.emu.ca_bundle}
    )

    assert resolver.resolve(reference, request) == "value"


def test_a_host_nobody_allowed_gets_no_request(vault, resolver):
    reference = vault.put("value")
    request = vault.request({"hosts": []})

    with pytest.raises(SecretReferenceError, match="is not a Key Vault host"):
        resolver.resolve(reference, request)

    assert vault.emu.counts() == {}


def test_the_vault_credential_cannot_come_from_the_vault(vault, resolver):
    reference = vault.put("value")
    for secret in (vault.ref("reader"), {"ref": vault.ref("reader")}):
        request = vault.request({"credential": vault.credential_table(client_secret=secret)})
        with pytest.raises(SecretReferenceError, match="cannot come from Key Vault"):
            resolver.resolve(reference, request)
    assert vault.emu.counts() == {}


def test_a_plaintext_vault_credential_in_a_readable_file_is_refused(vault, resolver):
    reference = vault.put("value")
    request = SourceRequest(
        profile="p",
        settings=vault.settings(),
        environ={},
        config_path=Path("/etc/ppauth.toml"),
        settings_mode=stat.S_IFREG | 0o644,
    )

    with pytest.raises(UnsafeFileError, match="chmod 600"):
        resolver.resolve(reference, request)
    assert vault.emu.counts() == {}


@pytest.mark.parametrize(
    ("table", "says"),
    [
        ({"tenant_id": "t"}, "go in \\[profiles.default.keyvault.credential\\]"),
        ({"credential": "password"}, "unknown type 'password'"),
        ({"credential": {"type": "client_secret", "client_id": "c"}}, "needs client_secret"),
        ({"credential": {"type": "azure_cli", "client_secret": "x"}}, "do\\(es\\) not apply"),
        ({"cache_ttl": -1}, "cache_ttl must be a number"),
        ({"cache_ttl": "soon"}, "cache_ttl must be a number"),
        ({"retries": 99}, "retries must be"),
        ({"timeout": 0}, "timeout must be more than 0"),
        ({"hosts": "127.0.0.1"}, "hosts must be a list"),
    ],
)
def test_bad_settings_fail_before_any_request(vault, resolver, table, says):
    reference = vault.put("value")

    with pytest.raises(SecretReferenceError, match=says):
        resolver.resolve(reference, vault.request(table))
    assert vault.emu.counts() == {}


# -- the in-memory cache ---------------------------------------------------------------


def test_a_secret_is_read_once_per_ttl_then_again(vault, resolver, clock):
    reference = vault.put("first", name="ttl")
    request = vault.request({"cache_ttl": 60})

    assert resolver.resolve(reference, request) == "first"
    assert vault.emu.count("vault") == 2  # challenge + read

    vault.emu.set_secret("ttl", "second")  # rotated in the vault
    clock.now += 59
    assert resolver.resolve(reference, request) == "first"  # still within the TTL
    assert vault.emu.count("vault") == 2

    clock.now += 2
    assert resolver.resolve(reference, request) == "second"
    assert vault.emu.count("vault") == 3  # one read, with the token the client kept
    assert vault.emu.count("token") == 1


def test_the_default_ttl_is_five_minutes(vault, resolver, clock):
    reference = vault.put("value")
    request = vault.request()
    resolver.resolve(reference, request)

    clock.now += 299
    resolver.resolve(reference, request)
    assert vault.emu.count("vault") == 2
    clock.now += 2
    resolver.resolve(reference, request)
    assert vault.emu.count("vault") == 3


def test_ttl_from_the_environment(vault, resolver, clock):
    reference = vault.put("value")
    request = make_request(
        "p", settings=vault.settings(), environ={"PPAUTH_KEYVAULT_CACHE_TTL": "10"}
    )
    resolver.resolve(reference, request)

    clock.now += 11
    resolver.resolve(reference, request)
    assert vault.emu.count("vault") == 3


def test_a_zero_ttl_reads_every_time(vault, resolver):
    reference = vault.put("value")
    request = vault.request({"cache_ttl": 0})

    for _ in range(3):
        assert resolver.resolve(reference, request) == "value"

    assert vault.reads() == [401, 200, 200, 200]
    assert len(resolver.cache) == 0


def test_failures_are_not_cached(vault, resolver):
    vault.emu.inject("vault", status=503, times=None)
    reference = vault.put("value")
    with pytest.raises(KeyVaultError, match="HTTP 503"):
        resolver.resolve(reference, vault.request({"retries": 0}))

    vault.emu.clear_faults()
    assert resolver.resolve(reference, vault.request()) == "value"


def test_concurrent_reads_make_one_request(vault, resolver):
    reference = vault.put("shared")
    request = vault.request()
    results: list[object] = []
    start = threading.Barrier(16)

    def read() -> None:
        start.wait()
        results.append(resolver.resolve(reference, request))

    threads = [threading.Thread(target=read) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)

    assert results == ["shared"] * 16
    assert vault.reads() == [401, 200]
    assert vault.emu.count("token") == 1


def test_different_vault_credentials_do_not_share_cached_secrets(vault, resolver):
    """A principal the vault denies must not read what another one cached."""
    reference = vault.put("value")
    assert resolver.resolve(reference, vault.request()) == "value"
    other_id, other_secret = "0f0f0f0f-0000-4000-8000-000000000001", "other~secret"
    vault.emu.add_app(client_id=other_id, secret=other_secret)
    vault.emu.deny_vault(other_id)
    other = vault.request(
        {"credential": vault.credential_table(client_id=other_id, client_secret=other_secret)}
    )

    with pytest.raises(KeyVaultError, match="lacks 'get' permission"):
        resolver.resolve(reference, other)


def test_the_shared_cache_is_per_process_and_clearable(vault):
    import requests_ppauth_keyvault

    reference = vault.put("value")
    KeyVaultResolver().resolve(reference, vault.request())
    KeyVaultResolver().resolve(reference, vault.request())  # another instance, same cache
    assert vault.reads() == [401, 200]

    requests_ppauth_keyvault.clear_cache()
    KeyVaultResolver().resolve(reference, vault.request())
    assert vault.reads() == [401, 200, 200]  # read again (the SDK remembers the challenge)
    assert vault.emu.count("token") == 2  # by a new credential


# -- nothing leaks -----------------------------------------------------------------------


def test_no_secret_in_any_log_line_repr_or_error(vault, resolver, caplog):
    caplog.set_level(logging.DEBUG)
    values = ["leak-canary-1f2e3d", vault.reader_secret]
    reference = vault.put(values[0])
    texts = []

    value = resolver.resolve(reference, vault.request({"cache_ttl": 0}))
    assert value == values[0]
    for table in (
        {"hosts": []},
        {"credential": vault.credential_table(client_secret="leak-canary-wrong")},
    ):
        with pytest.raises(SecretReferenceError) as info:
            resolver.resolve(reference, vault.request(table))
        texts.append(str(info.value))
    vault.emu.deny_vault(vault.reader_id)
    with pytest.raises(SecretReferenceError) as info:
        resolver.resolve(reference, vault.request({"cache_ttl": 0}))
    texts.append(str(info.value))

    texts += [caplog.text, repr(resolver), repr(resolver.cache), repr(vault.request())]
    texts += [repr(info.value), repr(vars(info.value))]
    shown = "\n".join(texts)
    assert "read " + reference in caplog.text  # our own debug line is there...
    for secret in [*values, "leak-canary-wrong"]:
        assert secret not in shown  # ...but no value anywhere
