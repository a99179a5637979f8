"""Every sign-in flow end to end: ``requests.Session`` + ``PowerPlatformAuth`` against the
emulator (real msal, real HTTPS, real files), from the environment and from explicit
credentials, plus the token lifecycle the hot path relies on.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import pytest
import requests
from cryptography.hazmat.primitives import serialization

import requests_ppauth
from requests_ppauth import (
    AccessToken,
    ClientCertificate,
    ClientSecret,
    ConfigurationError,
    PowerPlatformAuth,
    ROPCWarning,
    TokenAcquisitionError,
    UsernamePassword,
)
from requests_ppauth.testing import Emulator, make_client_certificate

POWERAPPS_SCOPE = "https://service.powerapps.com//.default"
PP_SCOPE = "https://api.powerplatform.com/.default"
BAP_PATH = (
    "/providers/Microsoft.BusinessAppPlatform/scopes/admin/environments?api-version=2020-10-01"
)
PP_PATH = "/environmentmanagement/environments?api-version=2024-10-01"
SNI_SUBJECT = "ppauth-flows-sni.contoso.example"


# -- helpers -------------------------------------------------------------------------
def api_host(emu: Emulator) -> str:
    return emu.api_url.split("//")[1]


def localhost_url(emu: Emulator) -> str:
    """The api listener under a second host name (the TLS certificate covers both)."""
    return f"https://localhost:{emu.ports['api']}"


def session_for(emu: Emulator, credential: Any = None, **options: Any) -> requests.Session:
    options.setdefault("hosts", {api_host(emu): POWERAPPS_SCOPE})
    if credential is not None:
        options.setdefault("verify", emu.ca_bundle)
    s = requests.Session()
    s.auth = PowerPlatformAuth(credential=credential, **options)
    return s


def get_envs(s: requests.Session, emu: Emulator, base: str | None = None) -> requests.Response:
    r = s.get((base or emu.api_url) + BAP_PATH, verify=emu.ca_bundle)
    assert r.status_code == 200, r.text
    assert r.json()["value"], r.text
    return r


def claims(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def bearer(record: Any) -> str:
    assert record.authorization is not None
    assert record.authorization.startswith("Bearer ")
    return str(record.authorization).removeprefix("Bearer ")


def api_tokens(emu: Emulator) -> list[str]:
    return [bearer(r) for r in emu.requests() if r.listener == "api"]


def write_private(path: Path, data: bytes) -> str:
    path.write_bytes(data)
    path.chmod(0o600)
    return str(path)


def cert_credential(emu: Emulator, data: bytes, password: str | None = None, **kw: Any) -> Any:
    assert emu.sample is not None
    return ClientCertificate(
        tenant_id=emu.sample.tenant_id,
        client_id=kw.pop("client_id", emu.sample.cert_client_id),
        authority_host=emu.authority_host,
        certificate=data,
        password=password,
        **kw,
    )


def encrypted_pem(key_pem: bytes, password: str) -> bytes:
    key = serialization.load_pem_private_key(key_pem, None)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(password.encode()),
    )


# -- client secret ---------------------------------------------------------------------
def test_client_secret_from_environment(ppauth_emulator, ppauth_env):
    emu = ppauth_emulator
    ppauth_env.use_emulator(emu, "secret")
    s = session_for(emu)  # tenant, client, secret, authority and CA all from PPAUTH_*
    get_envs(s, emu)
    (token_req,) = emu.requests("token")
    assert token_req.grant_type == "client_credentials"
    assert token_req.client_id == emu.sample.client_id
    assert token_req.scope == POWERAPPS_SCOPE
    assert token_req.extra["client_auth"] == "secret"
    (token,) = api_tokens(emu)
    assert claims(token)["aud"] == "https://service.powerapps.com/"
    assert claims(token)["appid"] == emu.sample.client_id


def test_client_secret_explicit(ppauth_emulator):
    emu = ppauth_emulator
    cred = ClientSecret(
        tenant_id=emu.sample.tenant_id,
        client_id=emu.sample.client_id,
        secret=emu.sample.client_secret,
    )
    s = session_for(emu, cred, authority_host=emu.authority_host)
    get_envs(s, emu)
    assert emu.count("token") == 1
    assert emu.requests("token")[0].extra["client_auth"] == "secret"
    assert claims(api_tokens(emu)[0])["idtyp"] == "app"


# -- certificates ----------------------------------------------------------------------
def test_certificate_pem_bundle_from_environment(ppauth_emulator, ppauth_env):
    emu = ppauth_emulator
    ppauth_env.use_emulator(emu, "certificate")
    s = session_for(emu)
    get_envs(s, emu)
    (token_req,) = emu.requests("token")
    assert token_req.client_id == emu.sample.cert_client_id
    assert token_req.extra["client_auth"] == "assertion"
    assert "client_secret" not in token_req.form_fields
    assert claims(api_tokens(emu)[0])["appid"] == emu.sample.cert_client_id


@pytest.mark.parametrize("password", ["pfx-pass-1", None], ids=["with-password", "no-password"])
def test_certificate_pfx_file_from_environment(ppauth_emulator, ppauth_env, password):
    emu = ppauth_emulator
    ppauth_env.use_emulator(emu, "certificate")
    path = write_private(ppauth_env.root / "client.pfx", emu.sample.certificate.pfx(password))
    ppauth_env.set(PPAUTH_CLIENT_CERTIFICATE_PATH=path, PPAUTH_CLIENT_CERTIFICATE_PASSWORD=password)
    s = session_for(emu)
    get_envs(s, emu)
    assert emu.count("token") == 1
    assert emu.requests("token")[0].extra["client_auth"] == "assertion"


def test_certificate_pfx_explicit_with_password(ppauth_emulator):
    emu = ppauth_emulator
    cred = cert_credential(emu, emu.sample.certificate.pfx("s3cret-pfx"), "s3cret-pfx")
    get_envs(session_for(emu, cred), emu)
    assert emu.requests("token")[0].extra["client_auth"] == "assertion"


def test_certificate_encrypted_pem_with_password(ppauth_emulator):
    emu = ppauth_emulator
    cert = emu.sample.certificate
    data = encrypted_pem(cert.key_pem, "pem-pass") + cert.cert_pem
    get_envs(session_for(emu, cert_credential(emu, data, "pem-pass")), emu)
    assert emu.count("token") == 1


def test_certificate_pfx_wrong_password_fails_before_any_request(ppauth_emulator, ppauth_env):
    emu = ppauth_emulator
    ppauth_env.use_emulator(emu, "certificate")
    path = write_private(ppauth_env.root / "client.pfx", emu.sample.certificate.pfx("right"))
    ppauth_env.set(PPAUTH_CLIENT_CERTIFICATE_PATH=path, PPAUTH_CLIENT_CERTIFICATE_PASSWORD="wrong")
    s = session_for(emu)
    with pytest.raises(ConfigurationError, match="wrong certificate password") as info:
        s.get(emu.api_url + BAP_PATH, verify=emu.ca_bundle)
    assert path in str(info.value)  # names the file
    assert emu.count("token") == 0
    assert emu.counts() == {}  # not even discovery, nor the API


def test_certificate_pfx_password_missing(ppauth_emulator):
    emu = ppauth_emulator
    cred = cert_credential(emu, emu.sample.certificate.pfx("needed"), None)
    with pytest.raises(ConfigurationError, match="PKCS#12"):
        session_for(emu, cred).get(emu.api_url + BAP_PATH, verify=emu.ca_bundle)
    assert emu.counts() == {}


def test_certificate_encrypted_pem_without_password(ppauth_emulator, ppauth_env):
    emu = ppauth_emulator
    ppauth_env.use_emulator(emu, "certificate")
    cert = emu.sample.certificate
    path = write_private(
        ppauth_env.root / "enc.pem", encrypted_pem(cert.key_pem, "pem-pass") + cert.cert_pem
    )
    ppauth_env.set(PPAUTH_CLIENT_CERTIFICATE_PATH=path)
    s = session_for(emu)
    with pytest.raises(ConfigurationError, match="encrypted: set the certificate password") as info:
        s.get(emu.api_url + BAP_PATH, verify=emu.ca_bundle)
    assert path in str(info.value)
    assert emu.count("token") == 0


def test_certificate_password_for_unencrypted_pem(ppauth_emulator):
    emu = ppauth_emulator
    cred = cert_credential(emu, emu.sample.certificate.pem_bundle, "not-needed")
    with pytest.raises(ConfigurationError, match="not encrypted: remove the certificate password"):
        session_for(emu, cred).get(emu.api_url + BAP_PATH, verify=emu.ca_bundle)
    assert emu.count("token") == 0


def test_certificate_file_without_private_key(ppauth_emulator, ppauth_env):
    emu = ppauth_emulator
    ppauth_env.use_emulator(emu, "certificate")
    path = write_private(ppauth_env.root / "cert-only.pem", emu.sample.certificate.cert_pem)
    ppauth_env.set(PPAUTH_CLIENT_CERTIFICATE_PATH=path)
    s = session_for(emu)
    with pytest.raises(ConfigurationError, match="no private key") as info:
        s.get(emu.api_url + BAP_PATH, verify=emu.ca_bundle)
    assert path in str(info.value)
    assert "password" not in str(info.value)  # no password was set: do not blame one
    assert emu.count("token") == 0


def test_certificate_key_without_certificate(ppauth_emulator):
    emu = ppauth_emulator
    cred = cert_credential(emu, emu.sample.certificate.key_pem)
    with pytest.raises(ConfigurationError, match="no certificate"):
        session_for(emu, cred).get(emu.api_url + BAP_PATH, verify=emu.ca_bundle)
    assert emu.count("token") == 0


def test_certificate_key_and_certificate_do_not_match(ppauth_emulator):
    emu = ppauth_emulator
    other = make_client_certificate("someone else", slot="flows-mismatch")
    cred = cert_credential(emu, emu.sample.certificate.key_pem + other.cert_pem)
    with pytest.raises(ConfigurationError, match="matches its private key"):
        session_for(emu, cred).get(emu.api_url + BAP_PATH, verify=emu.ca_bundle)
    assert emu.count("token") == 0


def test_send_certificate_chain_subject_name_issuer(ppauth_emulator):
    emu = ppauth_emulator
    cert = make_client_certificate(SNI_SUBJECT, slot="flows-sni")
    app = emu.add_app(trusted_issuer=cert.cert_pem, trusted_subject=SNI_SUBJECT, name="sni")
    with_chain = cert_credential(
        emu, cert.pem_bundle, client_id=app.client_id, send_certificate_chain=True
    )
    get_envs(session_for(emu, with_chain), emu)
    (token_req,) = emu.requests("token")
    assert token_req.status == 200
    assert token_req.extra["client_auth"] == "assertion"
    assert claims(api_tokens(emu)[0])["appid"] == app.client_id

    # without the x5c chain the app has no registered thumbprint to match (no shared
    # cache here: the token the first auth stored would answer without asking)
    without = cert_credential(emu, cert.pem_bundle, client_id=app.client_id)
    with pytest.raises(TokenAcquisitionError) as info:
        session_for(emu, without, cache=False).get(emu.api_url + BAP_PATH, verify=emu.ca_bundle)
    assert info.value.code == 700027


def test_send_certificate_chain_from_environment(ppauth_emulator, ppauth_env):
    emu = ppauth_emulator
    cert = make_client_certificate(SNI_SUBJECT, slot="flows-sni")
    app = emu.add_app(trusted_issuer=cert.cert_pem, trusted_subject=SNI_SUBJECT, name="sni")
    ppauth_env.use_emulator(emu, "certificate")
    path = write_private(ppauth_env.root / "sni.pem", cert.pem_bundle)
    ppauth_env.set(
        PPAUTH_CLIENT_ID=app.client_id,
        PPAUTH_CLIENT_CERTIFICATE_PATH=path,
        PPAUTH_CLIENT_SEND_CERTIFICATE_CHAIN="true",
    )
    get_envs(session_for(emu), emu)
    assert emu.requests("token")[0].client_id == app.client_id


# -- username / password (ROPC) --------------------------------------------------------
def test_ropc_warns_once_and_uses_the_refresh_token_for_other_scopes(ppauth_emulator, ppauth_env):
    emu = ppauth_emulator
    ppauth_env.use_emulator(emu, "password")
    hosts = {api_host(emu): POWERAPPS_SCOPE, localhost_url(emu).split("//")[1]: PP_SCOPE}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        s = session_for(emu, hosts=hosts)
        for _ in range(3):
            get_envs(s, emu)
        r = s.get(localhost_url(emu) + PP_PATH, verify=emu.ca_bundle)
        assert r.status_code == 200, r.text
        r = s.get(localhost_url(emu) + PP_PATH, verify=emu.ca_bundle)
        assert r.status_code == 200, r.text

    ropc = [w for w in caught if issubclass(w.category, ROPCWarning)]
    assert len(ropc) == 1, [str(w.message) for w in caught]
    assert "ROPC" in str(ropc[0].message)
    assert "multi-factor" in str(ropc[0].message)
    deprecations = [w for w in caught if issubclass(w.category, DeprecationWarning)]
    assert deprecations == [], [(w.filename, str(w.message)) for w in deprecations]

    grants = [(r.grant_type, r.scope and r.scope.split()) for r in emu.requests("token")]
    assert len(grants) == 2, grants
    assert grants[0][0] == "password"
    assert POWERAPPS_SCOPE in grants[0][1]
    assert grants[1][0] == "refresh_token"  # the second scope needs no password
    assert PP_SCOPE in grants[1][1]
    first, second = emu.requests("token")
    assert "password" in first.form_fields
    assert "password" not in second.form_fields
    assert "refresh_token" in second.form_fields

    tokens = api_tokens(emu)
    assert {claims(t)["aud"] for t in tokens} == {
        "https://service.powerapps.com/",
        "https://api.powerplatform.com",
    }
    # v1.0 tokens (Power Apps) name the user in upn, v2.0 ones (the PP API) preferred_username
    users = {claims(t).get("upn") or claims(t)["preferred_username"] for t in tokens}
    assert users == {emu.sample.username}


def test_ropc_explicit_credential(ppauth_emulator):
    emu = ppauth_emulator
    cred = UsernamePassword(
        tenant_id=emu.sample.tenant_id,
        client_id=emu.sample.public_client_id,
        authority_host=emu.authority_host,
        username=emu.sample.admin_username,
        password=emu.sample.admin_password,
    )
    with pytest.warns(ROPCWarning):
        get_envs(session_for(emu, cred), emu)
    token = api_tokens(emu)[0]
    assert claims(token)["idtyp"] == "user"
    assert claims(token)["upn"] == emu.sample.admin_username


# -- laziness --------------------------------------------------------------------------
def test_nothing_happens_at_construction(ppauth_emulator, ppauth_env):
    emu = ppauth_emulator
    ppauth_env.use_emulator(emu, "secret")
    auth = PowerPlatformAuth(hosts={api_host(emu): POWERAPPS_SCOPE})
    s = requests.Session()
    s.auth = auth
    assert emu.counts() == {}
    assert auth._provider is None  # no provider, so no msal app either
    get_envs(s, emu)
    assert emu.count("token") == 1


def test_import_and_construction_load_neither_msal_nor_pluggy_nor_a_cache():
    code = (
        "import sys, requests_ppauth\n"
        "a = requests_ppauth.PowerPlatformAuth(hosts={'h.example': 'https://x/.default'})\n"
        "repr(a)\n"
        "heavy = ('msal', 'filelock', 'pluggy', 'sqlite3', 'dataclasses',\n"
        "         'requests_ppauth.tokens')\n"
        "print(sorted(m for m in heavy if m in sys.modules))\n"
    )
    root = Path(requests_ppauth.__file__).resolve().parents[1]
    env = dict(os.environ, PYTHONPATH=str(root))
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


# -- scopes and the hot path ----------------------------------------------------------
def test_one_auth_two_hosts_one_token_per_scope(ppauth_emulator, ppauth_env):
    emu = ppauth_emulator
    ppauth_env.use_emulator(emu, "secret")
    local = localhost_url(emu)
    hosts = {api_host(emu): POWERAPPS_SCOPE, local.split("//")[1]: PP_SCOPE}
    s = session_for(emu, hosts=hosts)
    for _ in range(3):
        get_envs(s, emu)
        r = s.get(local + PP_PATH, verify=emu.ca_bundle)
        assert r.status_code == 200, r.text
    scopes = sorted(r.scope for r in emu.requests("token"))
    assert scopes == sorted([POWERAPPS_SCOPE, PP_SCOPE])
    by_host: dict[str, set[str]] = {}
    for rec in emu.requests():
        if rec.listener == "api":
            by_host.setdefault(rec.host.split(":")[0], set()).add(bearer(rec))
    assert len(by_host["127.0.0.1"]) == 1
    assert len(by_host["localhost"]) == 1
    assert by_host["127.0.0.1"] != by_host["localhost"]


def test_hot_path_100_requests_one_token(ppauth_emulator, ppauth_env):
    emu = ppauth_emulator
    ppauth_env.use_emulator(emu, "secret")
    s = session_for(emu)
    for _ in range(100):
        r = s.get(emu.api_url + BAP_PATH, params={"$top": "1"}, verify=emu.ca_bundle)
        assert r.status_code == 200
    assert emu.count("token") == 1
    assert emu.count("discovery") == 1
    assert emu.count("environments") == 100
    assert len(set(api_tokens(emu))) == 1


# -- lifetimes: proactive refresh ------------------------------------------------------
def current_token(s: requests.Session, scope: str = POWERAPPS_SCOPE) -> AccessToken:
    auth = s.auth
    assert isinstance(auth, PowerPlatformAuth)
    return auth.provider.tokens[scope]


def sleep_until(moment: float) -> None:
    time.sleep(max(0.0, moment - time.time()))


def test_refresh_on_margin_is_half_a_short_lifetime():
    now = 1_000_000.0
    short = AccessToken.from_msal({"access_token": "t", "expires_in": 20}, "s", now)
    assert (short.expires_on, short.refresh_on) == (now + 20, now + 10)
    long = AccessToken.from_msal({"access_token": "t", "expires_in": 3600}, "s", now)
    assert long.refresh_on == now + 3600 - 300
    hinted = AccessToken.from_msal(
        {"access_token": "t", "expires_in": 3600, "refresh_in": 60}, "s", now
    )
    assert hinted.refresh_on == now + 60


def test_short_lived_token_is_refreshed_proactively(ppauth_emulator, ppauth_env):
    emu = ppauth_emulator
    emu.policy.lifetime = 4
    ppauth_env.use_emulator(emu, "secret")
    s = session_for(emu)
    get_envs(s, emu)
    first = current_token(s)
    assert first.expires_on - first.refresh_on == pytest.approx(2, abs=0.01)
    get_envs(s, emu)  # well before refresh_on: the same token, no new request
    assert emu.count("token") == 1

    sleep_until(first.refresh_on + 0.2)
    assert time.time() < first.expires_on  # the old token is still valid: refreshed early
    get_envs(s, emu)
    assert emu.count("token") == 2
    second = current_token(s)
    assert second.token != first.token
    assert second.refresh_on > first.expires_on - 0.5
    tokens = api_tokens(emu)
    assert tokens[:2] == [first.token, first.token]
    assert tokens[2] == second.token


def test_failed_proactive_refresh_keeps_the_current_token(ppauth_emulator, ppauth_env, caplog):
    emu = ppauth_emulator
    emu.policy.lifetime = 14  # refresh_on at +7 s, still usable (5 s margin) until +9 s
    ppauth_env.use_emulator(emu, "secret")
    s = session_for(emu)
    get_envs(s, emu)
    first = current_token(s)

    sleep_until(first.refresh_on + 0.2)
    emu.inject("token", status=503, times=5)
    caplog.set_level(logging.WARNING, logger="requests_ppauth")
    r = get_envs(s, emu)  # no exception: the current token still works
    assert r.request.headers["Authorization"] == "Bearer " + first.token
    assert api_tokens(emu)[-1] == first.token
    failed = [rec for rec in emu.requests("token") if rec.status == 503]
    assert len(failed) >= 1
    warned = [
        rec
        for rec in caplog.records
        if rec.name == "requests_ppauth" and rec.levelno == logging.WARNING
    ]
    assert len(warned) == 1, caplog.text
    assert "refresh" in warned[0].getMessage()
    assert POWERAPPS_SCOPE in warned[0].getMessage()

    # the failure is not retried on every request: the next one backs off
    calls = emu.count("token")
    get_envs(s, emu)
    assert emu.count("token") == calls
    assert current_token(s).token == first.token
    assert current_token(s).refresh_on > time.time()
