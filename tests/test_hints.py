"""Every Entra ID error a Power Platform user meets reaches the caller of
``session.get`` as a :class:`TokenAcquisitionError` carrying the AADSTS code, the
OAuth error, the correlation id and the hint for that code.
"""

from __future__ import annotations

import time
import uuid
import warnings
from typing import Any

import pytest
import requests

from requests_ppauth import (
    ClientCertificate,
    ClientSecret,
    PowerPlatformAuth,
    ROPCWarning,
    TokenAcquisitionError,
    UsernamePassword,
)
from requests_ppauth.errors import AADSTS_HINTS
from requests_ppauth.testing import Emulator, make_client_certificate

POWERAPPS_SCOPE = "https://service.powerapps.com//.default"
BAP_PATH = (
    "/providers/Microsoft.BusinessAppPlatform/scopes/admin/environments?api-version=2020-10-01"
)


def fail(emu: Emulator, credential: Any, **options: Any) -> TokenAcquisitionError:
    """Send one request through a session; return the error it raised."""
    options.setdefault("verify", emu.ca_bundle)
    options.setdefault("authority_host", emu.authority_host)
    s = requests.Session()
    s.auth = PowerPlatformAuth(
        credential=credential, hosts={emu.api_url.split("//")[1]: POWERAPPS_SCOPE}, **options
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ROPCWarning)  # test_flows checks it
        with pytest.raises(TokenAcquisitionError) as info:
            s.get(emu.api_url + BAP_PATH, verify=emu.ca_bundle)
    assert not [r for r in emu.requests() if r.listener == "api"], "the API got a request"
    return info.value


def secret(emu: Emulator, value: str, client_id: str | None = None) -> ClientSecret:
    return ClientSecret(
        tenant_id=emu.sample.tenant_id,
        client_id=client_id or emu.sample.client_id,
        secret=value,
    )


def password(
    emu: Emulator, username: str, value: str, client_id: str | None = None
) -> UsernamePassword:
    return UsernamePassword(
        tenant_id=emu.sample.tenant_id,
        client_id=client_id or emu.sample.public_client_id,
        username=username,
        password=value,
    )


def assert_entra(err: TokenAcquisitionError, code: int, error: str) -> None:
    assert err.code == code
    assert err.codes[0] == code
    assert err.error == error
    assert err.hint == AADSTS_HINTS[code]
    assert err.correlation_id
    uuid.UUID(err.correlation_id)
    text = str(err)
    assert f"AADSTS{code}" in text
    assert f"Hint: {AADSTS_HINTS[code]}" in text
    assert err.correlation_id in text
    assert "Trace ID" not in text  # Entra's trailer is cut; the correlation id stays


def last_token_status(emu: Emulator) -> int:
    return emu.requests("token")[-1].status


# -- user flows --------------------------------------------------------------------------
def test_50076_mfa_required(ppauth_emulator):
    emu = ppauth_emulator
    emu.add_user("mfa@contoso.onmicrosoft.com", "mfa-pass-1", mfa_required=True)
    err = fail(emu, password(emu, "mfa@contoso.onmicrosoft.com", "mfa-pass-1"))
    assert_entra(err, 50076, "invalid_grant")
    assert "multi-factor" in err.hint
    assert "service principal" in err.hint
    assert err.retryable is False


def test_65001_no_consent(ppauth_emulator):
    emu = ppauth_emulator
    emu.add_user("new@contoso.onmicrosoft.com", "new-pass-1", consented=False)
    err = fail(emu, password(emu, "new@contoso.onmicrosoft.com", "new-pass-1"))
    assert_entra(err, 65001, "invalid_grant")
    assert "consent" in err.hint


def test_50126_wrong_password(ppauth_emulator):
    emu = ppauth_emulator
    err = fail(emu, password(emu, emu.sample.username, "not-the-password"))
    assert_entra(err, 50126, "invalid_grant")
    assert "PPAUTH_PASSWORD" in err.hint
    assert err.retryable is False


def test_7000218_ropc_against_a_confidential_app(ppauth_emulator):
    emu = ppauth_emulator
    cred = password(emu, emu.sample.username, emu.sample.password, emu.sample.client_id)
    err = fail(emu, cred)
    assert_entra(err, 7000218, "invalid_client")
    assert "Allow public client flows" in err.hint


# -- client secrets -----------------------------------------------------------------------
def test_7000215_wrong_secret(ppauth_emulator):
    emu = ppauth_emulator
    err = fail(emu, secret(emu, "a-secret-id-not-its-value"))
    assert_entra(err, 7000215, "invalid_client")
    assert "Value" in err.hint
    assert "Secret ID" in err.hint
    assert last_token_status(emu) == 401


def test_7000222_expired_secret(ppauth_emulator):
    emu = ppauth_emulator
    app = emu.add_app(secret="expired~value", secret_expires_at=time.time() - 5)
    err = fail(emu, secret(emu, "expired~value", app.client_id))
    assert_entra(err, 7000222, "invalid_client")
    assert "expired" in err.hint


def test_700016_unknown_client_id(ppauth_emulator):
    emu = ppauth_emulator
    err = fail(emu, secret(emu, emu.sample.client_secret, str(uuid.uuid4())))
    assert_entra(err, 700016, "unauthorized_client")
    assert "wrong tenant or cloud" in err.hint


def test_90002_unknown_tenant(ppauth_emulator):
    emu = ppauth_emulator
    cred = ClientSecret(
        tenant_id=str(uuid.uuid4()),
        client_id=emu.sample.client_id,
        secret=emu.sample.client_secret,
    )
    err = fail(emu, cred)  # msal fails in discovery with a bare ValueError
    assert_entra(err, 90002, "invalid_tenant")
    assert "tenant id" in err.hint
    assert emu.count("token") == 0
    assert emu.requests("discovery")[-1].status == 400


# -- certificates --------------------------------------------------------------------------
def test_700027_certificate_not_registered(ppauth_emulator):
    emu = ppauth_emulator
    other = make_client_certificate("not registered", slot="other")
    cred = ClientCertificate(
        tenant_id=emu.sample.tenant_id,
        client_id=emu.sample.cert_client_id,
        certificate=other.pem_bundle,
    )
    err = fail(emu, cred)
    assert_entra(err, 700027, "invalid_client")
    assert "certificate" in err.hint
    assert other.thumbprint in str(err)  # Entra names the key used; so do we


# -- throttling and transport -------------------------------------------------------------
def test_50196_throttled_is_retryable(ppauth_emulator):
    emu = ppauth_emulator
    emu.inject("token", status=429, times=None)
    err = fail(emu, secret(emu, emu.sample.client_secret))
    assert err.code == 50196
    assert err.error == "temporarily_unavailable"
    assert err.hint == AADSTS_HINTS[50196]
    assert err.retryable is True
    assert last_token_status(emu) == 429


def test_5xx_from_the_token_endpoint_is_retryable(ppauth_emulator):
    emu = ppauth_emulator
    emu.inject("token", status=503, times=None)
    err = fail(emu, secret(emu, emu.sample.client_secret))
    assert err.error == "server_error"
    assert err.code == 50000
    assert err.retryable is True
    assert "503" in str(err)


def test_unreachable_authority_is_a_network_error(ppauth_emulator):
    emu = ppauth_emulator
    started = time.monotonic()
    err = fail(emu, secret(emu, emu.sample.client_secret), authority_host="https://127.0.0.1:1")
    assert time.monotonic() - started < 10
    assert err.error == "network_error"
    assert err.retryable is True
    assert err.code is None
    assert "127.0.0.1:1" in str(err)
    assert err.hint is not None
    assert "authority host" in err.hint
    assert emu.counts() == {}


def test_wrong_ca_bundle_names_ppauth_ca_bundle(ppauth_emulator):
    emu = ppauth_emulator
    err = fail(emu, secret(emu, emu.sample.client_secret), verify=True)  # system CAs only
    assert err.error == "network_error"
    assert "SSLError" in str(err)
    assert err.hint is not None
    assert "PPAUTH_CA_BUNDLE" in err.hint
    assert "PPAUTH_CA_BUNDLE" in str(err)
    assert emu.count("token") == 0


def test_wrong_ca_bundle_from_environment(ppauth_emulator, ppauth_env, tmp_path):
    """A PPAUTH_CA_BUNDLE that does not hold the emulator's CA fails the same way."""
    emu = ppauth_emulator
    ppauth_env.use_emulator(emu, "secret")
    bundle = tmp_path / "other-ca.pem"
    bundle.write_bytes(make_client_certificate("not the emulator's CA").cert_pem)
    ppauth_env.set(PPAUTH_CA_BUNDLE=str(bundle))
    s = requests.Session()
    s.auth = PowerPlatformAuth(hosts={emu.api_url.split("//")[1]: POWERAPPS_SCOPE})
    with pytest.raises(TokenAcquisitionError) as info:
        s.get(emu.api_url + BAP_PATH, verify=emu.ca_bundle)
    assert info.value.error == "network_error"
    assert "PPAUTH_CA_BUNDLE" in (info.value.hint or "")
