"""No secret and no token ever shows: not in a log line at any level (msal's and
urllib3's DEBUG output included), not in an exception's str/repr (or its chain), not
in the repr of the auth object, its provider, a credential or an AccessToken.

Each flow runs against the emulator with success and with failures; the tokens the
emulator issued are read back from what reached the API and from its refresh grants.
"""

from __future__ import annotations

import logging
import os
import secrets
import tempfile
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests
from cryptography.hazmat.primitives import serialization

from requests_ppauth import (
    AccessToken,
    ClientCertificate,
    ClientSecret,
    ConfigurationError,
    PowerPlatformAuth,
    PPAuthError,
    ROPCWarning,
    TokenAcquisitionError,
    UsernamePassword,
)
from requests_ppauth.certificates import parse_certificate
from requests_ppauth.testing import Emulator

POWERAPPS_SCOPE = "https://service.powerapps.com//.default"
PP_SCOPE = "https://api.powerplatform.com/.default"
BAP_PATH = (
    "/providers/Microsoft.BusinessAppPlatform/scopes/admin/environments?api-version=2020-10-01"
)
PP_PATH = "/environmentmanagement/environments?api-version=2024-10-01"
LOGGERS = ("msal", "urllib3", "requests_ppauth", "requests")


@dataclass
class Watch:
    """What a test saw: the secrets in play, the errors raised, the objects made."""

    emu: Emulator
    caplog: pytest.LogCaptureFixture
    cache_root: Path  # pytest's tmp_path: the caches (they hold tokens) go with it
    secrets: dict[str, str] = field(default_factory=dict)
    errors: list[BaseException] = field(default_factory=list)
    objects: list[Any] = field(default_factory=list)

    def auth(self, credential: Any = None, **options: Any) -> requests.Session:
        emu = self.emu
        options.setdefault(
            "hosts",
            {
                emu.api_url.split("//")[1]: POWERAPPS_SCOPE,
                f"localhost:{emu.ports['api']}": PP_SCOPE,
            },
        )
        if credential is not None:
            options.setdefault("verify", emu.ca_bundle)
            options.setdefault("authority_host", emu.authority_host)
            self.objects.append(credential)
        # each auth its own on-disk cache: it starts cold (so a failing credential really
        # fails) and the cache's own logging is part of what is searched for secrets
        options.setdefault("cache", tempfile.mkdtemp(prefix="cache-", dir=self.cache_root))
        s = requests.Session()
        s.auth = auth = PowerPlatformAuth(credential=credential, **options)
        self.objects.append(auth)
        return s

    def call(self, s: requests.Session, *, ok: bool) -> None:
        """One request to each scope; on failure, keep the error for inspection."""
        emu = self.emu
        urls = (emu.api_url + BAP_PATH, f"https://localhost:{emu.ports['api']}{PP_PATH}")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ROPCWarning)
            for url in urls:
                try:
                    r = s.get(url, verify=emu.ca_bundle)
                except PPAuthError as exc:
                    if ok:
                        raise
                    self.errors.append(exc)
                    return
                assert ok, f"{url} answered {r.status_code} where a failure was expected"
                assert r.status_code == 200, r.text

    def records(self) -> list[logging.LogRecord]:
        """Everything logged while the test set up and ran (read from teardown too)."""
        return self.caplog.get_records("setup") + self.caplog.get_records("call")

    # -- the check --------------------------------------------------------------------
    def access_tokens(self) -> list[AccessToken]:
        """The AccessToken objects the providers of this test's auth objects hold."""
        return [
            token
            for obj in self.objects
            if isinstance(obj, PowerPlatformAuth) and obj._provider is not None
            for token in obj._provider.tokens.values()
        ]

    def issued(self) -> dict[str, str]:
        """Every access token that reached the API or sits in a provider, every RT."""
        found: dict[str, str] = {}
        for rec in self.emu.requests():
            if rec.listener == "api" and rec.authorization:
                found[f"access token #{len(found)}"] = rec.authorization.split()[1]
        for token in self.access_tokens():
            found[f"access token for {token.scope} ({len(found)})"] = token.token
        with self.emu.directory.lock:
            for i, rt in enumerate(self.emu.directory.refresh_grants):
                found[f"refresh token #{i}"] = rt
        return found

    def check(self) -> None:
        values = dict(self.secrets)
        for name, token in self.issued().items():
            values[name] = token
            if token.startswith("eyJ") and token.count(".") == 2:  # a JWT: its parts leak too
                _header, payload, signature = token.split(".")
                values[f"{name} (payload)"] = payload
                values[f"{name} (signature)"] = signature

        log_text = "\n".join(self.caplog.handler.format(r) for r in self.records())
        error_text = "\n".join(describe(e) for e in self.errors)
        shown = [*self.objects, *self.access_tokens()]
        shown += [
            o._provider
            for o in self.objects
            if isinstance(o, PowerPlatformAuth) and o._provider is not None
        ]
        repr_text = "\n".join(repr(o) for o in shown)
        for name, value in values.items():
            assert value, name
            assert value not in log_text, f"{name} appears in the log"
            assert value not in error_text, f"{name} appears in an exception"
            assert value not in repr_text, f"{name} appears in a repr"


def describe(exc: BaseException) -> str:
    """str and repr of ``exc`` and of every exception chained to it."""
    parts: list[str] = []
    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo:
        e = todo.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        parts += [str(e), repr(e), repr(e.args), repr(vars(e))]
        todo += [e.__cause__, e.__context__]
    return "\n".join(parts)


def key_body_lines(key_pem: bytes) -> dict[str, str]:
    """The base64 lines of a PEM private key (each one is part of the secret)."""
    lines = [ln for ln in key_pem.decode().splitlines() if ln and not ln.startswith("-----")]
    return {f"private key line {i}": ln for i, ln in enumerate(lines)}


@pytest.fixture
def watch(ppauth_emulator, caplog, tmp_path) -> Iterator[Watch]:
    caplog.set_level(logging.DEBUG)
    for name in LOGGERS:
        caplog.set_level(logging.DEBUG, logger=name)
    w = Watch(ppauth_emulator, caplog, tmp_path)
    sample = ppauth_emulator.sample
    w.secrets.update(
        {
            "client secret": sample.client_secret,
            "user password": sample.password,
            "admin password": sample.admin_password,
            **key_body_lines(sample.certificate.key_pem),
        }
    )
    yield w
    w.check()
    # the capture really saw DEBUG traffic of every layer: otherwise the check proves nothing
    names = {r.name.split(".")[0] for r in w.records() if r.levelno == logging.DEBUG}
    assert {"msal", "urllib3", "requests_ppauth"} <= names, names


def fresh(prefix: str) -> str:
    return f"{prefix}~{secrets.token_urlsafe(18)}"


# -- flows --------------------------------------------------------------------------------
def test_client_secret_flow(watch, ppauth_env):
    emu = watch.emu
    ppauth_env.use_emulator(emu, "secret")
    s = watch.auth()
    watch.call(s, ok=True)
    watch.call(s, ok=True)  # from memory

    emu.revoke()  # every token so far: the API answers 401, the auth refreshes and resends
    watch.call(s, ok=True)

    wrong = fresh("wrong-secret")
    watch.secrets["wrong client secret"] = wrong
    cred = ClientSecret(
        tenant_id=emu.sample.tenant_id, client_id=emu.sample.client_id, secret=wrong
    )
    watch.call(watch.auth(cred), ok=False)
    (err,) = watch.errors
    assert isinstance(err, TokenAcquisitionError)
    assert err.code == 7000215
    issued = {v for k, v in watch.issued().items() if k.startswith("access token")}
    assert len(issued) >= 3  # two scopes, then a new one after the revocation


def test_certificate_flow_with_password(watch, ppauth_env):
    emu = watch.emu
    cert = emu.sample.certificate
    pfx_password = fresh("pfx-password")
    pem_password = fresh("pem-password")
    watch.secrets.update({"pfx password": pfx_password, "pem password": pem_password})

    ppauth_env.use_emulator(emu, "certificate")
    path = ppauth_env.root / "client.pfx"
    path.write_bytes(cert.pfx(pfx_password))
    path.chmod(0o600)
    ppauth_env.set(
        PPAUTH_CLIENT_CERTIFICATE_PATH=str(path), PPAUTH_CLIENT_CERTIFICATE_PASSWORD=pfx_password
    )
    watch.call(watch.auth(), ok=True)

    key = serialization.load_pem_private_key(cert.key_pem, None)
    encrypted = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(pem_password.encode()),
    )
    pem_cred = ClientCertificate(
        tenant_id=emu.sample.tenant_id,
        client_id=emu.sample.cert_client_id,
        certificate=encrypted + cert.cert_pem,
        password=pem_password,
    )
    watch.call(watch.auth(pem_cred), ok=True)
    watch.objects.append(parse_certificate(pem_cred.certificate, pem_password, "test"))

    wrong = fresh("wrong-pfx-password")
    watch.secrets["wrong certificate password"] = wrong
    ppauth_env.set(PPAUTH_CLIENT_CERTIFICATE_PASSWORD=wrong)
    watch.call(watch.auth(), ok=False)
    pem_wrong = ClientCertificate(
        tenant_id=emu.sample.tenant_id,
        client_id=emu.sample.cert_client_id,
        certificate=encrypted + cert.cert_pem,
        password=wrong,
    )
    watch.call(watch.auth(pem_wrong), ok=False)
    assert len(watch.errors) == 2
    assert all(isinstance(e, ConfigurationError) for e in watch.errors)
    assert all("wrong certificate password" in str(e) for e in watch.errors)


def test_username_password_flow(watch, ppauth_env):
    emu = watch.emu
    ppauth_env.use_emulator(emu, "password")
    s = watch.auth()
    watch.call(s, ok=True)  # the second scope goes through the refresh token
    grants = [r.grant_type for r in emu.requests("token")]
    assert grants == ["password", "refresh_token"]
    assert any(k.startswith("refresh token") for k in watch.issued())

    wrong = fresh("wrong-password")
    watch.secrets["wrong user password"] = wrong
    cred = UsernamePassword(
        tenant_id=emu.sample.tenant_id,
        client_id=emu.sample.public_client_id,
        username=emu.sample.username,
        password=wrong,
    )
    watch.call(watch.auth(cred), ok=False)
    (err,) = watch.errors
    assert isinstance(err, TokenAcquisitionError)
    assert err.code == 50126


def test_throttling_and_outage(watch, ppauth_env):
    emu = watch.emu
    ppauth_env.use_emulator(emu, "secret")
    emu.inject("token", status=429, times=1)
    watch.call(watch.auth(), ok=False)
    emu.inject("token", status=503, times=1)
    watch.call(watch.auth(), ok=False)
    cred = ClientSecret(
        tenant_id=emu.sample.tenant_id,
        client_id=emu.sample.client_id,
        secret=emu.sample.client_secret,
    )
    # an explicit authority_host= wins over the credential's and the environment's
    watch.call(watch.auth(cred, authority_host="https://127.0.0.1:1"), ok=False)
    watch.call(watch.auth(), ok=True)
    assert [getattr(e, "error", None) for e in watch.errors] == [
        "temporarily_unavailable",
        "server_error",
        "network_error",
    ]


def test_ci_federation_flows(watch, ppauth_env):
    """GitHub Actions and Azure Pipelines: their request tokens (bearer secrets) and
    the OIDC tokens they hand out (client assertions) show nowhere, on success and on
    a refused request token."""
    from requests_ppauth.plugins import reset_plugins

    emu = watch.emu
    ppauth_env.set(PPAUTH_DISABLE_PLUGINS="*,managed")
    reset_plugins()
    gh = emu.add_app(federated_subject="repo:contoso/power-app:ref:refs/heads/main", name="gh")
    ado = emu.add_app(federated_subject=emu.pipelines_subject(), name="ado")
    common = {"AZURE_AUTHORITY_HOST": emu.authority_host, "PPAUTH_CA_BUNDLE": emu.ca_bundle}
    github_env = emu.github_actions_env(request_token=fresh("gh-request-token"))
    pipelines_env = emu.azure_pipelines_env(app=ado, access_token=fresh("ado-access-token"))
    watch.secrets["GitHub request token"] = github_env["ACTIONS_ID_TOKEN_REQUEST_TOKEN"]
    watch.secrets["Pipelines access token"] = pipelines_env["SYSTEM_ACCESSTOKEN"]

    ppauth_env.set(**github_env, AZURE_CLIENT_ID=gh.client_id, AZURE_TENANT_ID=gh.tenant_id)
    ppauth_env.set(**common)
    watch.call(watch.auth(), ok=True)
    ppauth_env.set(ACTIONS_ID_TOKEN_REQUEST_TOKEN=fresh("gh-wrong"))
    watch.secrets["wrong GitHub request token"] = os.environ["ACTIONS_ID_TOKEN_REQUEST_TOKEN"]
    watch.call(watch.auth(), ok=False)

    ppauth_env.set(
        ACTIONS_ID_TOKEN_REQUEST_URL=None,
        ACTIONS_ID_TOKEN_REQUEST_TOKEN=None,
        AZURE_CLIENT_ID=None,
        AZURE_TENANT_ID=None,
        **pipelines_env,
    )
    watch.call(watch.auth(), ok=True)
    ppauth_env.set(SYSTEM_ACCESSTOKEN=fresh("ado-wrong"))
    watch.secrets["wrong Pipelines access token"] = os.environ["SYSTEM_ACCESSTOKEN"]
    watch.call(watch.auth(), ok=False)

    oidc = emu.issued_oidc_tokens()
    assert len(oidc) == 4  # one per scope per CI system
    for i, token in enumerate(oidc):
        watch.secrets[f"OIDC token #{i}"] = token
        watch.secrets[f"OIDC token #{i} (signature)"] = token.split(".")[2]
    assert [type(e).__name__ for e in watch.errors] == [
        "GitHubActionsTokenError",
        "AzurePipelinesTokenError",
    ]


def test_the_check_catches_a_leak(watch):
    """The watcher is not blind: a secret in a DEBUG line of msal's, in an exception
    or in a repr is found."""
    emu = watch.emu
    cred = ClientSecret(
        tenant_id=emu.sample.tenant_id,
        client_id=emu.sample.client_id,
        secret=emu.sample.client_secret,
    )
    watch.call(watch.auth(cred), ok=True)
    watch.check()
    token = next(iter(watch.issued().values()))

    logging.getLogger("msal.application").debug("oops %s", emu.sample.client_secret)
    with pytest.raises(AssertionError, match="client secret appears in the log"):
        watch.check()
    watch.caplog.clear()
    watch.call(watch.auth(cred), ok=True)  # DEBUG lines again, for the fixture's own check

    watch.errors.append(RuntimeError("refused", {"sig": token.split(".")[2]}))
    with pytest.raises(AssertionError, match=r"access token .* appears in an exception"):
        watch.check()
    watch.errors.clear()

    watch.objects.append(UsernamePassword("t.example", "c", password=emu.sample.password).__dict__)
    with pytest.raises(AssertionError, match="user password appears in a repr"):
        watch.check()
    watch.objects.pop()
