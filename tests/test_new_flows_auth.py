"""The flows past username/password, end to end through ``PowerPlatformAuth``: device
code, managed identity and workload identity federation against the emulator (real
msal, real HTTPS, real cache files), and the sources that produce their credentials.
"""

from __future__ import annotations

import base64
import io
import json
import os
import re
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import requests

from requests_ppauth import (
    ClientSecret,
    ConfigurationError,
    DeviceCode,
    ManagedIdentity,
    NoCredentialError,
    PowerPlatformAuth,
    SourceError,
    TokenAcquisitionError,
    UsernamePassword,
    WorkloadIdentity,
)
from requests_ppauth.config import load_profile
from requests_ppauth.errors import AADSTS_HINTS
from requests_ppauth.plugins import Plugins, reset_plugins
from requests_ppauth.testing import Emulator
from tests._cache_state import load

APPS_SCOPE = "https://service.powerapps.com//.default"
PP_SCOPE = "https://api.powerplatform.com/.default"
BAP_PATH = (
    "/providers/Microsoft.BusinessAppPlatform/scopes/admin/environments?api-version=2020-10-01"
)
ROOT = Path(__file__).resolve().parent.parent
CODE = re.compile(r"enter the code (\S+)")
SUBJECT = "system:serviceaccount:jobs:ppauth"


# -- helpers -------------------------------------------------------------------------
def api_auth(emu: Emulator, **options: Any) -> PowerPlatformAuth:
    """An auth object for the emulator's API host (BAP scope)."""
    if options.get("credential") is not None:
        options.setdefault("verify", emu.ca_bundle)
    return PowerPlatformAuth(hosts={emu.api_url.split("//")[1]: APPS_SCOPE}, **options)


def get_envs(emu: Emulator, auth: PowerPlatformAuth) -> requests.Response:
    return requests.get(emu.api_url + BAP_PATH, auth=auth, verify=emu.ca_bundle, timeout=30)


def claims(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def api_claims(emu: Emulator) -> dict[str, Any]:
    """Claims of the token the API received last."""
    (record, *_) = [r for r in reversed(emu.requests()) if r.listener == "api"]
    return claims(str(record.authorization).removeprefix("Bearer "))


def device(emu: Emulator, prompt: Any = None, **kw: Any) -> DeviceCode:
    assert emu.sample is not None
    return DeviceCode(
        tenant_id=kw.pop("tenant_id", "organizations"),
        client_id=kw.pop("client_id", emu.sample.public_client_id),
        authority_host=emu.authority_host,
        prompt=prompt,
        **kw,
    )


class Person:
    """Plays the person at the browser: the prompt callback, acting on the code it shows."""

    def __init__(self, emu: Emulator, action: str = "approve", delay: float = 0.0) -> None:
        self.emu, self.action, self.delay = emu, action, delay
        self.messages: list[str] = []
        self.threads: list[threading.Thread] = []

    def __call__(self, message: str) -> None:
        self.messages.append(message)
        match = CODE.search(message)
        assert match, message
        act = getattr(self.emu, f"{self.action}_device")
        if not self.delay:
            act(match.group(1))
            return

        def later() -> None:
            time.sleep(self.delay)
            act(match.group(1))

        thread = threading.Thread(target=later, daemon=True)
        thread.start()
        self.threads.append(thread)


def lookup(profile: str = "default"):
    env = dict(os.environ)
    return Plugins(env).find_credential(load_profile(profile, env), env)


@pytest.fixture(autouse=True)
def stderr(monkeypatch):
    """stderr is no terminal (even under ``pytest -s``): a DeviceCode without a prompt
    never starts a sign-in that would wait for a person."""
    fake = io.StringIO()
    monkeypatch.setattr(sys, "stderr", fake)
    return fake


@pytest.fixture
def managed_on(ppauth_env):
    """The managed identity source, which the core's conftest turns off, back on."""
    ppauth_env.set(PPAUTH_DISABLE_PLUGINS="*")
    reset_plugins()
    return ppauth_env


# -- device code -------------------------------------------------------------------------
def test_device_code_waits_for_the_person_then_a_fresh_object_reuses_the_sign_in(
    ppauth_emulator, ppauth_env
):
    emu = ppauth_emulator
    person = Person(emu, delay=1.2)  # after the first poll: the client must wait
    r = get_envs(emu, api_auth(emu, credential=device(emu, person)))

    assert r.status_code == 200 and r.json()["value"]
    (message,) = person.messages
    assert emu.authority_host + "/devicelogin" in message
    grants = emu.requests("token")
    pending = [g for g in grants if g.extra.get("aadsts") == 70016]
    assert pending and grants[:-1] == pending  # authorization_pending while signing in
    assert grants[-1].status == 200 and grants[-1].grant_type.endswith("device_code")
    assert api_claims(emu)["upn"] == emu.sample.username
    assert emu.device_codes() == []
    assert "RefreshToken" in load(ppauth_env.cache_dir)

    # a fresh object (as in another process), no prompt, another scope: the refresh token
    emu.reset_counts()
    later = PowerPlatformAuth(credential=device(emu), scope=PP_SCOPE, verify=emu.ca_bundle)
    token = later.provider.get(PP_SCOPE)
    assert claims(token.token)["preferred_username"] == emu.sample.username  # v2.0 token
    assert [g.grant_type for g in emu.requests("token")] == ["refresh_token"]
    assert emu.count("devicecode") == 0


def test_device_code_declined(ppauth_emulator):
    emu = ppauth_emulator
    with pytest.raises(TokenAcquisitionError) as info:
        get_envs(emu, api_auth(emu, credential=device(emu, Person(emu, "decline"))))

    err = info.value
    assert err.error == "authorization_declined"
    assert "declined" in str(err) and "ppauth login --device-code" in (err.hint or "")
    assert emu.count("environments") == 0


def test_device_code_expired(ppauth_emulator):
    emu = ppauth_emulator
    with pytest.raises(TokenAcquisitionError) as info:
        get_envs(emu, api_auth(emu, credential=device(emu, Person(emu, "expire"))))

    assert info.value.error == "expired_token"
    assert info.value.code == 70020 and info.value.hint == AADSTS_HINTS[70020]


def test_device_code_without_a_prompt_or_a_terminal_says_how_to_sign_in(ppauth_emulator, stderr):
    emu = ppauth_emulator
    with pytest.raises(TokenAcquisitionError) as info:
        get_envs(emu, api_auth(emu, credential=device(emu)))

    err = info.value
    assert err.error == "interaction_required"
    assert "no signed-in account" in str(err)
    assert "ppauth login --device-code" in (err.hint or "")
    assert emu.count("devicecode") == 0 and emu.count("token") == 0
    assert stderr.getvalue() == ""  # nothing shown, nothing waited for


def test_sign_in_and_sign_out_leave_other_apps_signed_in(ppauth_emulator, ppauth_env):
    emu = ppauth_emulator
    other = emu.add_app(public_client=True, name="other-tool")
    mine = PowerPlatformAuth(credential=device(emu, Person(emu)), verify=emu.ca_bundle)
    theirs = PowerPlatformAuth(
        credential=device(emu, Person(emu), client_id=other.client_id), verify=emu.ca_bundle
    )
    mine.provider.get(PP_SCOPE)
    theirs.provider.get(PP_SCOPE)
    first = mine.provider.sign_in(PP_SCOPE)  # a new sign-in even though one is cached
    assert emu.count("devicecode") == 3
    assert first.token != theirs.provider.get(PP_SCOPE).token

    assert mine.provider.sign_out() == [emu.sample.username]
    emu.reset_counts()
    assert mine.provider.sign_out() == []
    assert emu.counts() == {}  # nothing left to remove, nothing asked of Entra ID
    state = load(ppauth_env.cache_dir)
    rt_clients = {v["client_id"] for v in state["RefreshToken"].values()}
    assert rt_clients == {other.client_id}
    assert {v["client_id"] for v in state["PPAuthToken"].values()} == {other.client_id}
    assert state["Account"]  # the other app still uses the account

    # in new objects: this app must sign in again; the other still gets tokens silently
    ppauth_env.set(PPAUTH_CA_BUNDLE=emu.ca_bundle)
    emu.reset_counts()
    with pytest.raises(TokenAcquisitionError, match="no signed-in account"):
        PowerPlatformAuth(credential=device(emu)).provider.get(PP_SCOPE)
    again = PowerPlatformAuth(credential=device(emu, client_id=other.client_id))
    assert claims(again.provider.get(APPS_SCOPE).token)["appid"] == other.client_id
    assert emu.count("devicecode") == 0


def test_sign_in_needs_a_device_code_credential(ppauth_emulator):
    emu = ppauth_emulator
    auth = PowerPlatformAuth(
        credential=ClientSecret(
            tenant_id=emu.sample.tenant_id,
            client_id=emu.sample.client_id,
            authority_host=emu.authority_host,
            secret=emu.sample.client_secret,
        ),
        verify=emu.ca_bundle,
    )
    with pytest.raises(ConfigurationError, match="InteractiveBrowser credential, not secret"):
        auth.provider.sign_in(PP_SCOPE)
    auth.provider.get(PP_SCOPE)
    assert auth.provider.sign_out() == []  # an app: its cached tokens go, nothing else
    emu.reset_counts()
    fresh = PowerPlatformAuth(credential=auth.credential, verify=emu.ca_bundle)
    fresh.provider.get(PP_SCOPE)
    assert [g.grant_type for g in emu.requests("token")] == ["client_credentials"]


# -- managed identity ---------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kind", "endpoint", "selector"),
    [("imds", "imds", "system"), ("appservice", "appservice-msi", None)],
)
def test_managed_identity_from_the_environment(
    ppauth_emulator, managed_on, kind, endpoint, selector
):
    emu = ppauth_emulator
    managed_on.set(**emu.managed_identity_env(kind), PPAUTH_MANAGED_IDENTITY=selector)
    auth = api_auth(emu)
    r = get_envs(emu, auth)

    assert r.status_code == 200 and r.json()["value"]
    cred = auth.provider.credential
    assert isinstance(cred, ManagedIdentity) and cred.source == "managed_identity"
    assert emu.count(endpoint) == 1 and emu.count("token") == 0
    token = api_claims(emu)
    assert token["oid"] == emu.system_identity.object_id
    assert token["aud"] == "https://service.powerapps.com/"  # the resource, not a scope


def test_user_assigned_identity_by_client_id_from_the_profile(ppauth_emulator, managed_on):
    emu = ppauth_emulator
    worker = emu.add_managed_identity("worker")
    managed_on.set(**emu.managed_identity_env("imds"))
    managed_on.write_config(f'[profiles.default]\nmanaged_identity = "{worker.client_id}"\n')
    r = get_envs(emu, api_auth(emu))

    assert r.status_code == 200
    assert api_claims(emu)["appid"] == worker.client_id
    assert emu.requests("imds")[-1].client_id == worker.client_id


def test_unknown_managed_identity(ppauth_emulator, managed_on):
    emu = ppauth_emulator
    managed_on.set(**emu.managed_identity_env("imds"), PPAUTH_MANAGED_IDENTITY=str(uuid.uuid4()))
    with pytest.raises(TokenAcquisitionError, match="Identity not found"):
        get_envs(emu, api_auth(emu))
    assert emu.count("environments") == 0


def test_managed_identity_is_fetched_once_across_objects_and_processes(ppauth_emulator, managed_on):
    emu = ppauth_emulator
    managed_on.set(**emu.managed_identity_env("imds"), PPAUTH_MANAGED_IDENTITY="system")
    emu.inject("imds", latency=0.5, times=None)  # both are waiting when the answer comes
    auths = [PowerPlatformAuth(scope=PP_SCOPE), PowerPlatformAuth(scope=PP_SCOPE)]
    start = threading.Barrier(2)
    tokens: list[str] = []

    def fetch(auth: PowerPlatformAuth) -> None:
        start.wait()
        tokens.append(auth.provider.get(PP_SCOPE).token)

    threads = [threading.Thread(target=fetch, args=(a,)) for a in auths]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(tokens) == 2 and tokens[0] == tokens[1]
    assert emu.count("imds") == 1

    script = (
        "from requests_ppauth import PowerPlatformAuth\n"
        f"print(PowerPlatformAuth(scope={PP_SCOPE!r}).provider.get({PP_SCOPE!r}).token)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", script],
        env=os.environ.copy(),
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == tokens[0]
    assert emu.count("imds") == 1  # the other process read the shared cache


# -- workload identity federation ------------------------------------------------------------
@pytest.fixture
def federated(ppauth_emulator, ppauth_env):
    """An app trusting SUBJECT, and AZURE_* variables as a Kubernetes pod would have them."""
    emu = ppauth_emulator
    app = emu.add_app(federated_subject=SUBJECT, name="k8s-job")
    token_file = ppauth_env.root / "federated-token"
    token_file.write_text(emu.federated_token(SUBJECT))
    ppauth_env.set(
        AZURE_FEDERATED_TOKEN_FILE=str(token_file),
        AZURE_CLIENT_ID=app.client_id,
        AZURE_TENANT_ID=emu.sample.tenant_id,
        AZURE_AUTHORITY_HOST=emu.authority_host,
        PPAUTH_CA_BUNDLE=emu.ca_bundle,
    )
    return emu, app, token_file


def test_workload_identity_from_the_environment(federated):
    emu, app, _ = federated
    auth = api_auth(emu)
    r = get_envs(emu, auth)

    assert r.status_code == 200
    assert isinstance(auth.provider.credential, WorkloadIdentity)
    (grant,) = emu.requests("token")
    assert grant.grant_type == "client_credentials" and grant.extra["client_auth"] == "federated"
    assert api_claims(emu)["appid"] == app.client_id


def test_workload_identity_rereads_a_rotated_token_file(federated):
    emu, app, token_file = federated
    token_file.write_text(emu.federated_token("system:serviceaccount:other:intruder") + "\n")
    auth = api_auth(emu)
    with pytest.raises(TokenAcquisitionError) as info:
        get_envs(emu, auth)
    assert info.value.code == 70021 and "intruder" in str(info.value)
    assert info.value.hint == AADSTS_HINTS[70021]

    token_file.write_text(emu.federated_token(SUBJECT))  # the kubelet rotates it
    assert get_envs(emu, auth).status_code == 200  # the same object, the new file
    assert api_claims(emu)["appid"] == app.client_id


def test_workload_identity_missing_token_file(federated, ppauth_env):
    emu, _, token_file = federated
    token_file.unlink()
    with pytest.raises(ConfigurationError) as info:
        get_envs(emu, api_auth(emu))
    assert str(token_file) in str(info.value)
    assert "AZURE_FEDERATED_TOKEN_FILE" in str(info.value)
    assert emu.count("token") == 0

    token_file.write_text("")
    with pytest.raises(ConfigurationError, match="is empty"):
        get_envs(emu, api_auth(emu))


def test_workload_identity_without_a_tenant(federated, ppauth_env):
    emu, _, _ = federated
    ppauth_env.set(AZURE_TENANT_ID=None)
    with pytest.raises(SourceError, match="AZURE_FEDERATED_TOKEN_FILE and AZURE_CLIENT_ID"):
        get_envs(emu, api_auth(emu))
    assert emu.count("discovery") == 0


# -- sources: the new keys ---------------------------------------------------------------------
@pytest.mark.parametrize("prefix", ["PPAUTH_", "AZURE_"])
def test_env_federated_token_file(ppauth_env, prefix):
    ppauth_env.set(
        **{
            prefix + "FEDERATED_TOKEN_FILE": "/var/run/secrets/token",
            prefix + "CLIENT_ID": "app-1",
            prefix + "TENANT_ID": "tenant-1.example",
        },
        AZURE_AUTHORITY_HOST="https://login.microsoftonline.us",
    )
    cred = lookup()
    assert cred == WorkloadIdentity(
        tenant_id="tenant-1.example",
        client_id="app-1",
        authority_host="https://login.microsoftonline.us",
        token_file="/var/run/secrets/token",
        source="env",
    )
    assert cred.kind == "workload_identity" and cred.user is None

    ppauth_env.set(**{prefix + "TENANT_ID": None})
    with pytest.raises(SourceError, match=f"{prefix}TENANT_ID is not"):
        lookup()


def test_env_secret_wins_over_a_federated_token_file(ppauth_env):
    ppauth_env.set(
        PPAUTH_FEDERATED_TOKEN_FILE="/var/run/token",
        PPAUTH_CLIENT_ID="app-1",
        PPAUTH_TENANT_ID="tenant-1.example",
        PPAUTH_CLIENT_SECRET="s3cret-value",
    )
    assert isinstance(lookup(), ClientSecret)
    ppauth_env.set(PPAUTH_CLIENT_SECRET=None, PPAUTH_CLIENT_ID=None)
    with pytest.raises(SourceError, match="PPAUTH_CLIENT_ID is not"):
        lookup()


def test_env_client_id_alone_names_every_option(ppauth_env):
    ppauth_env.set(AZURE_CLIENT_ID="app-1")
    with pytest.raises(SourceError, match="AZURE_FEDERATED_TOKEN_FILE"):
        lookup()


def test_file_device_code_profile(ppauth_env):
    ppauth_env.write_config(
        '[profiles.admin]\ndevice_code = true\nclient_id = "public-app"\n'
        'username = "admin@contoso.example"\nauthority_host = "https://login.microsoftonline.us"\n'
        '[profiles.tenant]\ndevice_code = true\nclient_id = "public-app"\n'
        'tenant_id = "t-1.example"\n'
    )
    cred = lookup("admin")
    assert isinstance(cred, DeviceCode) and cred.source == "file"
    assert (cred.tenant_id, cred.client_id, cred.user) == (
        "organizations",
        "public-app",
        "admin@contoso.example",
    )
    assert cred.authority_host == "https://login.microsoftonline.us" and cred.prompt is None
    assert cred.kind == "device_code"
    assert lookup("tenant").tenant_id == "t-1.example"


@pytest.mark.parametrize(
    ("profile", "expected"),
    [
        ("device_code = true\n", "device_code needs a client_id"),
        ('federated_token_file = "/t"\nclient_id = "a"\n', "needs client_id and tenant_id"),
        ('federated_token_file = "/t"\ntenant_id = "t.example"\n', "needs client_id and tenant_id"),
    ],
)
def test_file_new_keys_incomplete(ppauth_env, profile, expected):
    ppauth_env.write_config("[profiles.default]\n" + profile)
    with pytest.raises(SourceError, match=expected):
        lookup()


def test_file_federated_token_file_and_precedence(ppauth_env):
    ppauth_env.write_config(
        '[profiles.k8s]\nfederated_token_file = "/var/run/token"\nclient_id = "a"\n'
        'tenant_id = "t.example"\n'
        '[profiles.both]\ndevice_code = true\nclient_id = "a"\ntenant_id = "t.example"\n'
        'username = "u@contoso.example"\npassword = "pw-in-file"\n'
        '[profiles.off]\ndevice_code = false\nclient_id = "a"\n'
    )
    cred = lookup("k8s")
    assert isinstance(cred, WorkloadIdentity) and cred.token_file == "/var/run/token"
    assert isinstance(lookup("both"), UsernamePassword)  # a password says ROPC
    with pytest.raises(NoCredentialError):
        lookup("off")  # device_code = false is no credential at all


@pytest.mark.parametrize(
    ("selector", "fields"),
    [
        ("system", {}),
        (
            "11111111-2222-3333-4444-555555555555",
            {"client_id": "11111111-2222-3333-4444-555555555555"},
        ),
        ("object_id:abc", {"object_id": "abc"}),
        (
            "/subscriptions/0/resourcegroups/rg/providers/x/id",
            {"resource_id": "/subscriptions/0/resourcegroups/rg/providers/x/id"},
        ),
    ],
)
def test_managed_source_selectors(managed_on, selector, fields):
    managed_on.write_config(f'[profiles.default]\nmanaged_identity = "{selector}"\n')
    cred = lookup()
    assert cred == ManagedIdentity(
        tenant_id="", source="managed_identity", **{"client_id": "", **fields}
    )
    assert cred.kind == "managed_identity"


def test_managed_source_follows_the_platform(managed_on):
    with pytest.raises(NoCredentialError, match="no managed identity"):
        lookup()
    managed_on.set(IDENTITY_ENDPOINT="http://127.0.0.1:9/msi/token", IDENTITY_HEADER="h")
    assert lookup() == ManagedIdentity(tenant_id="", client_id="", source="managed_identity")
    managed_on.set(AZURE_CLIENT_ID="ua-client")
    assert lookup().client_id == "ua-client"  # azure-identity's way to pick a user-assigned one
    managed_on.set(IDENTITY_HEADER=None, AZURE_POD_IDENTITY_AUTHORITY_HOST="http://127.0.0.1:9")
    assert lookup().client_id == "ua-client"
    managed_on.set(PPAUTH_MANAGED_IDENTITY="system")  # an explicit choice wins
    assert lookup().client_id == ""


def test_sign_out_without_a_shared_cache(ppauth_emulator):
    emu = ppauth_emulator
    cred = device(emu, Person(emu))
    person = PowerPlatformAuth(credential=cred, cache=False, verify=emu.ca_bundle)
    person.provider.get(PP_SCOPE)
    assert person.provider.sign_out() == [emu.sample.username]
    person.provider.get(APPS_SCOPE)  # no refresh token left in memory: a new sign-in
    assert emu.count("devicecode") == 2
    assert "refresh_token" not in [g.grant_type for g in emu.requests("token")]

    app = PowerPlatformAuth(
        credential=ClientSecret(
            tenant_id=emu.sample.tenant_id,
            client_id=emu.sample.client_id,
            authority_host=emu.authority_host,
            secret=emu.sample.client_secret,
        ),
        cache=False,
        verify=emu.ca_bundle,
    )
    app.provider.get(PP_SCOPE)
    assert app.provider.sign_out() == []
    app.provider.get(PP_SCOPE)
    assert [g.grant_type for g in emu.requests("token")][-2:] == ["client_credentials"] * 2
