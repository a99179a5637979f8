"""The keyvault source: which profiles it answers, what it builds, how it fails."""

from __future__ import annotations

import base64
import re

import pytest
from requests_ppauth import ClientCertificate, ClientSecret, SourceError
from requests_ppauth.testing.contract import make_request

from requests_ppauth_keyvault import KeyVaultError, KeyVaultSource


@pytest.fixture
def source():
    return KeyVaultSource()


@pytest.mark.parametrize(
    ("settings", "says"),
    [
        ({}, "no [profiles.p.keyvault] table"),
        ({"tenant_id": "t", "client_secret": "s"}, "no [profiles.p.keyvault] table"),
        ({"keyvault": {"hosts": ["127.0.0.1:1"]}}, "names neither client_secret nor certificate"),
        ({"keyvault": {"credential": "managed_identity"}}, "neither"),
    ],
)
def test_passes_with_a_reason_when_the_profile_has_no_vault_credential(source, settings, says):
    request = make_request("p", settings=settings)

    assert source.credential(request) is None
    assert says in request.notes[-1]


def test_client_secret_from_the_vault(vault, source):
    s = vault.emu.sample
    request = vault.request({"client_secret": vault.put(s.client_secret)})

    credential = source.credential(request)

    assert isinstance(credential, ClientSecret)
    assert (credential.tenant_id, credential.client_id) == (s.tenant_id, s.client_id)
    assert credential.secret == s.client_secret
    assert credential.authority_host == vault.emu.authority_host
    assert s.client_secret not in repr(credential)


def test_pem_certificate_from_the_vault(vault, source):
    cert = vault.emu.sample.certificate
    reference = vault.put(cert.pem_bundle.decode(), content_type="application/x-pem-file")

    credential = source.credential(vault.request({"certificate": reference}))

    assert isinstance(credential, ClientCertificate)
    assert credential.certificate == cert.pem_bundle
    assert credential.password is None


def test_pfx_certificate_with_a_password_from_the_vault(vault, source):
    cert = vault.emu.sample.certificate
    pfx = cert.pfx("pfx-pass")
    reference = vault.put(base64.b64encode(pfx).decode(), content_type="application/x-pkcs12")
    password = vault.put("pfx-pass")  # the password can be a vault secret too

    credential = source.credential(
        vault.request({"certificate": reference, "certificate_password": password})
    )

    assert isinstance(credential, ClientCertificate)
    assert credential.certificate == pfx
    assert credential.password == "pfx-pass"


def test_literal_certificate_password(vault, source):
    pfx = vault.emu.sample.certificate.pfx("literal-pass")
    reference = vault.put(base64.b64encode(pfx).decode(), content_type="application/x-pkcs12")

    credential = source.credential(
        vault.request(
            {"certificate": reference, "certificate_password": "literal-pass"},
            send_certificate_chain=True,
        )
    )

    assert credential.password == "literal-pass"
    assert credential.send_certificate_chain


def test_a_pem_secret_without_content_type_is_still_a_certificate(vault, source):
    pem = vault.emu.sample.certificate.pem_bundle
    credential = source.credential(vault.request({"certificate": vault.put(pem.decode())}))

    assert credential.certificate == pem


def test_ref_table_form(vault, source):
    reference = vault.put("v")
    credential = source.credential(vault.request({"client_secret": {"ref": reference}}))

    assert credential.secret == "v"


def test_errors_of_the_vault_become_source_errors(vault, source):
    request = vault.request({"client_secret": vault.ref("absent")})

    with pytest.raises(SourceError) as info:
        source.credential(request)

    assert info.value.source == "keyvault"
    assert str(info.value).startswith("[keyvault] Key Vault reference")
    assert isinstance(info.value.__cause__, KeyVaultError)
    assert info.value.__cause__.status == 404


@pytest.mark.parametrize(
    ("table", "profile", "says"),
    [
        ({"client_secret": "R", "certificate": "R"}, {}, "both client_secret and certificate"),
        ({"client_secret": "R"}, {"client_id": None}, "has no client_id"),
        ({"client_secret": "R"}, {"tenant_id": None}, "has no tenant_id"),
        ({"client_secret": "R", "certificate_password": "x"}, {}, "without certificate"),
        ({"client_secret": "R", "colour": "blue"}, {}, "unknown key\\(s\\) colour"),
        ({"client_secret": 42}, {}, "must be a reference string"),
    ],
)
def test_recognised_but_broken_profiles(vault, source, table, profile, says):
    reference = vault.put("value")
    table = {k: reference if v == "R" else v for k, v in table.items()}
    request = vault.request(table, **profile)
    request.settings = {k: v for k, v in request.settings.items() if v is not None}

    with pytest.raises(SourceError, match=says):
        source.credential(request)
    assert vault.emu.counts() == {}  # checked before any network


def test_a_plain_value_is_refused_without_being_echoed(vault, source):
    request = vault.request({"client_secret": "pasted-secret-value"})

    with pytest.raises(SourceError, match="is not a Key Vault reference") as info:
        source.credential(request)

    assert "pasted-secret-value" not in str(info.value)


def test_a_non_allow_listed_host_is_refused(vault, source):
    request = vault.request({"client_secret": vault.put("v"), "hosts": []})

    with pytest.raises(SourceError, match=re.escape("hosts = [...] or PPAUTH_KEYVAULT_HOSTS")):
        source.credential(request)
    assert vault.emu.counts() == {}


def test_hosts_from_the_environment(vault, source):
    settings = vault.settings({"client_secret": vault.put("v"), "hosts": []})
    request = make_request("p", settings=settings, environ={"PPAUTH_KEYVAULT_HOSTS": vault.host})

    assert source.credential(request).secret == "v"


def test_a_certificate_reference_to_a_plain_secret(vault, source):
    request = vault.request({"certificate": vault.put("just-a-password")})

    with pytest.raises(SourceError, match="no certificate") as info:
        source.credential(request)
    assert "just-a-password" not in str(info.value)


def test_a_client_secret_reference_to_a_certificate(vault, source):
    pem = vault.emu.sample.certificate.pem_bundle.decode()
    request = vault.request({"client_secret": vault.put(pem, "application/x-pem-file")})

    with pytest.raises(SourceError, match=re.escape("write certificate = ... instead")):
        source.credential(request)


def test_source_repr_shows_no_secret(vault, source):
    source.credential(vault.request({"client_secret": vault.put("repr-canary")}))

    assert "repr-canary" not in repr(source)
    assert vault.reader_secret not in repr(source)
