"""Bad input gets a typed error naming the setting and the fix, before anything is sent.

Issue 12, findings 3 and 4: tenant ids pasted into the authority URL unchecked, blank
secrets sent to Entra ID, shared private-key files accepted, and raw exceptions
(RecursionError, a bare ValueError) for malformed config and unknown clouds. Every
case here goes through the real sources, config loader and (where a request could
leave) the emulator, whose request log must stay empty.
"""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from requests_ppauth import (
    ClientCertificate,
    ClientSecret,
    ConfigurationError,
    PowerPlatformAuth,
    PPAuthError,
    SourceError,
    UnsafeFileError,
    UsernamePassword,
)
from requests_ppauth.clouds import CLOUDS, get_cloud
from requests_ppauth.config import load_profile
from requests_ppauth.credentials import DeviceCode, ManagedIdentity, WorkloadIdentity
from requests_ppauth.errors import InvalidCredentialError
from requests_ppauth.hookspecs import hookimpl
from requests_ppauth.plugins import Plugins, get_plugins
from requests_ppauth.source_api import read_certificate
from requests_ppauth.testing import Emulator, make_client_certificate

ROOT = Path(__file__).resolve().parents[1]
ENVS = "/providers/Microsoft.BusinessAppPlatform/scopes/admin/environments?api-version=2020-10-01"
APPS_SCOPE = "https://service.powerapps.com//.default"
TENANT_FIX = "contoso.onmicrosoft.com"  # every tenant id message shows a valid example
BAD_TENANTS = {
    "dot-dot-slash": "../../evil",
    "query-and-fragment": "x?y=1#z",
    "userinfo": "@evil.localhost",
    "single-label": "tenant-1",
    "path-after-domain": "contoso.onmicrosoft.com/../x",
    "ip-address": "127.0.0.1",
    "space-inside": "contoso .onmicrosoft.com",
    "blank": "   ",
}
BAD_CLIENTS = {
    "slash": "app/../x",
    "query": "app?x=1",
    "form-field": "app&client_secret=x",
    "percent": "app%2F",
    "space": "my app",
}
# looks like an Entra ID client secret: must never be repeated by an error about the tenant
SECRET_LIKE = "Q8x8Q~abcDEFghiJKLmnoPQRstuVWXyz0123456.7_"


@pytest.fixture(scope="module")
def emu() -> Iterator[Emulator]:
    with Emulator() as emulator:
        yield emulator


@pytest.fixture(autouse=True)
def _fresh_log(emu: Emulator) -> None:
    emu.reset_counts()


def lookup(profile: str = "default") -> Any:
    env = dict(os.environ)
    return Plugins(env).find_credential(load_profile(profile, env), env)


def api_call(emu: Emulator, **kwargs: Any) -> requests.Response:
    """One API call through PowerPlatformAuth: credential lookup, discovery, token."""
    auth = PowerPlatformAuth(
        hosts={emu.api_url.split("//")[1]: APPS_SCOPE}, verify=emu.ca_bundle, cache=False, **kwargs
    )
    return requests.get(emu.api_url + ENVS, auth=auth, verify=emu.ca_bundle, timeout=30)


def use_secret(ppauth_env: Any, emu: Emulator, prefix: str = "PPAUTH_", **overrides: str) -> None:
    """Point the ``prefix`` family at the emulator's sample app, with ``overrides``."""
    s = emu.sample
    values = {
        "TENANT_ID": s.tenant_id,
        "CLIENT_ID": s.client_id,
        "CLIENT_SECRET": s.client_secret,
        **overrides,
    }
    ppauth_env.set(
        **{prefix + k: v for k, v in values.items()},
        PPAUTH_AUTHORITY_HOST=emu.authority_host,
        PPAUTH_CA_BUNDLE=emu.ca_bundle,
    )


def assert_clean(message: str, *secrets: str) -> None:
    for secret in secrets:
        assert secret not in message
    assert "\n" not in message


# -- tenant ids ---------------------------------------------------------------------------


@pytest.mark.parametrize("prefix", ["PPAUTH_", "AZURE_"])
@pytest.mark.parametrize("tenant", BAD_TENANTS.values(), ids=BAD_TENANTS.keys())
def test_bad_tenant_id_from_env_is_refused_before_any_request(ppauth_env, emu, prefix, tenant):
    use_secret(ppauth_env, emu, prefix, TENANT_ID=tenant)
    with pytest.raises(SourceError) as info:
        api_call(emu)
    message = str(info.value)
    assert message.startswith(f"[env] {prefix}TENANT_ID ")
    assert TENANT_FIX in message
    assert_clean(message, emu.sample.client_secret)
    assert emu.requests() == []


@pytest.mark.parametrize("tenant", BAD_TENANTS.values(), ids=BAD_TENANTS.keys())
def test_bad_tenant_id_in_a_profile_names_file_and_profile(ppauth_env, emu, tenant):
    s = emu.sample
    path = ppauth_env.write_config(
        f'[profiles.default]\ntenant_id = "{tenant}"\nclient_id = "{s.client_id}"\n'
        f'client_secret = "{s.client_secret}"\nauthority_host = "{emu.authority_host}"\n'
    )
    with pytest.raises(ConfigurationError) as info:
        api_call(emu)
    message = str(info.value)
    assert f"{path}: [profiles.default]: tenant_id " in message and TENANT_FIX in message
    assert_clean(message, s.client_secret)
    assert emu.requests() == []


@pytest.mark.parametrize("tenant", BAD_TENANTS.values(), ids=BAD_TENANTS.keys())
def test_bad_tenant_id_of_an_explicit_credential(emu, tenant):
    with pytest.raises(InvalidCredentialError) as info:
        ClientSecret(tenant_id=tenant, client_id=emu.sample.client_id, secret="s3cret-x")
    assert isinstance(info.value, ConfigurationError) and isinstance(info.value, ValueError)
    message = str(info.value)
    assert "the tenant_id of a ClientSecret credential" in message and TENANT_FIX in message
    assert_clean(message, "s3cret-x")


class _BadSource:
    """A third-party source that builds a credential with a hostile tenant id."""

    name = "thirdparty"
    priority = 5

    def __init__(self, tenant: str) -> None:
        self.tenant = tenant

    def credential(self, request: Any) -> Any:
        return ClientSecret(tenant_id=self.tenant, client_id="app-1", secret="third-party-s3cret")


class _BadPlugin:
    def __init__(self, tenant: str) -> None:
        self.tenant = tenant

    @hookimpl
    def ppauth_register_sources(self, register: Any) -> None:
        register(_BadSource(self.tenant))


def test_bad_tenant_id_from_a_third_party_source_names_the_source(ppauth_env, emu):
    ppauth_env.set(PPAUTH_AUTHORITY_HOST=emu.authority_host)
    get_plugins().register(_BadPlugin("../../evil"), name="thirdparty-plugin")
    with pytest.raises(SourceError) as info:
        api_call(emu)
    message = str(info.value)
    assert message.startswith("[thirdparty] the tenant_id of a ClientSecret credential")
    assert TENANT_FIX in message
    assert_clean(message, "third-party-s3cret")
    assert emu.requests() == []


def test_a_secret_pasted_as_tenant_id_is_not_repeated(ppauth_env, emu):
    use_secret(ppauth_env, emu, TENANT_ID=SECRET_LIKE)
    with pytest.raises(SourceError, match="PPAUTH_TENANT_ID is not a tenant id") as info:
        lookup()
    assert SECRET_LIKE not in str(info.value) and SECRET_LIKE[:12] not in str(info.value)


@pytest.mark.parametrize(
    "tenant",
    [
        "11111111-2222-3333-4444-555555555555",
        "ABCDEF01-2222-3333-4444-555555555555",
        "contoso.onmicrosoft.com",
        "fabrikam.example",
        "xn--bcher-kva.example",
        "organizations",
        "common",
        "consumers",
        "Organizations",
    ],
)
def test_valid_tenant_ids_are_accepted(tenant):
    assert ClientSecret(tenant_id=tenant, client_id="app-1", secret="x").tenant_id == tenant


def test_surrounding_whitespace_of_ids_is_dropped_and_the_domain_works(ppauth_env, emu):
    """A copied line's newline is not an error; the tenant's domain signs in like its id."""
    use_secret(
        ppauth_env,
        emu,
        TENANT_ID=f" {emu.sample.tenant_domain}\n",
        CLIENT_ID=emu.sample.client_id + "\n",
    )
    assert (lookup().tenant_id, lookup().client_id) == (
        emu.sample.tenant_domain,
        emu.sample.client_id,
    )
    assert api_call(emu).status_code == 200


def test_a_managed_identity_needs_no_tenant_but_is_checked_when_given():
    assert ManagedIdentity(tenant_id="", client_id="").tenant_id == ""
    with pytest.raises(InvalidCredentialError, match="tenant_id of a ManagedIdentity"):
        ManagedIdentity(tenant_id="../x", client_id="")
    with pytest.raises(InvalidCredentialError, match="client_id of a ManagedIdentity"):
        ManagedIdentity(tenant_id="", client_id="id?x=1")


@pytest.mark.parametrize(
    "make",
    [
        lambda t: DeviceCode(tenant_id=t, client_id="app-1"),
        lambda t: WorkloadIdentity(tenant_id=t, client_id="app-1", token_file="/t"),
        lambda t: UsernamePassword(tenant_id=t, client_id="app-1", username="u", password="p"),
        lambda t: ClientCertificate(tenant_id=t, client_id="app-1", certificate=b"pem"),
    ],
    ids=["device-code", "workload", "password", "certificate"],
)
def test_every_credential_class_checks_its_tenant(make):
    with pytest.raises(InvalidCredentialError, match="tenant_id of a"):
        make("x?y=1#z")


# -- client ids ---------------------------------------------------------------------------


@pytest.mark.parametrize("client", BAD_CLIENTS.values(), ids=BAD_CLIENTS.keys())
def test_bad_client_id_from_env_is_refused_before_any_request(ppauth_env, emu, client):
    use_secret(ppauth_env, emu, CLIENT_ID=client)
    with pytest.raises(SourceError) as info:
        api_call(emu)
    message = str(info.value)
    assert message.startswith("[env] PPAUTH_CLIENT_ID is not an application (client) id")
    assert "Application (client) id" in message
    assert_clean(message, emu.sample.client_secret)
    assert emu.requests() == []


@pytest.mark.parametrize("client", BAD_CLIENTS.values(), ids=BAD_CLIENTS.keys())
def test_bad_client_id_in_a_profile(ppauth_env, client):
    path = ppauth_env.write_config(
        f'[profiles.default]\ntenant_id = "{TENANT_FIX}"\nclient_id = "{client}"\n'
        'client_secret = "file-s3cret"\n'
    )
    with pytest.raises(ConfigurationError) as info:
        lookup()
    message = str(info.value)
    assert f"{path}: [profiles.default]: client_id is not an application (client) id" in message
    assert_clean(message, "file-s3cret")


# -- blank secrets ------------------------------------------------------------------------

BLANKS = {"spaces": "   ", "newline": "\n", "tab-and-newline": "\t \r\n"}


@pytest.mark.parametrize("prefix", ["PPAUTH_", "AZURE_"])
@pytest.mark.parametrize("blank", BLANKS.values(), ids=BLANKS.keys())
def test_blank_client_secret_in_env_is_refused_like_an_unset_one(ppauth_env, emu, prefix, blank):
    use_secret(ppauth_env, emu, prefix, CLIENT_SECRET=blank)
    with pytest.raises(SourceError) as info:
        api_call(emu)
    message = str(info.value)
    assert message.startswith(f"[env] {prefix}CLIENT_SECRET is empty or only whitespace")
    assert "set it to the secret's value, or unset it" in message
    assert emu.requests() == []


def test_blank_user_password_in_env(ppauth_env, emu):
    s = emu.sample
    ppauth_env.set(
        PPAUTH_CLIENT_ID=s.public_client_id,
        PPAUTH_USERNAME=s.username,
        PPAUTH_PASSWORD="  \n",
        PPAUTH_AUTHORITY_HOST=emu.authority_host,
        PPAUTH_CA_BUNDLE=emu.ca_bundle,
    )
    with pytest.raises(SourceError, match=r"^\[env\] PPAUTH_PASSWORD is empty or only whitespace"):
        api_call(emu)
    assert emu.requests() == []


def test_blank_certificate_password_in_env(ppauth_env, tmp_path):
    path = tmp_path / "c.pem"
    path.write_bytes(make_client_certificate().pem_bundle)
    path.chmod(0o600)
    ppauth_env.set(
        PPAUTH_TENANT_ID=TENANT_FIX,
        PPAUTH_CLIENT_ID="app-1",
        PPAUTH_CLIENT_CERTIFICATE_PATH=str(path),
        PPAUTH_CLIENT_CERTIFICATE_PASSWORD="   ",
    )
    with pytest.raises(SourceError, match=r"PPAUTH_CLIENT_CERTIFICATE_PASSWORD is empty or only"):
        lookup()


@pytest.mark.parametrize(
    ("key", "extra"),
    [
        ("client_secret", ""),
        ("password", 'username = "u@contoso.onmicrosoft.com"\n'),
        ("certificate_password", 'certificate_path = "{pem}"\n'),
    ],
)
@pytest.mark.parametrize("blank", ["   ", "\\n", ""], ids=["spaces", "newline", "empty"])
def test_blank_secret_in_a_profile(ppauth_env, tmp_path, key, extra, blank):
    pem = tmp_path / "c.pem"
    pem.write_bytes(make_client_certificate().pem_bundle)
    pem.chmod(0o600)
    path = ppauth_env.write_config(
        f'[profiles.default]\ntenant_id = "{TENANT_FIX}"\nclient_id = "app-1"\n'
        + extra.format(pem=pem)
        + f'{key} = "{blank}"\n'
    )
    if key == "certificate_password" and blank == "":
        # "" means no password, as an empty variable does: the unencrypted key is used
        from requests_ppauth.certificates import parse_certificate

        cred = lookup()
        assert not cred.password
        assert parse_certificate(cred.certificate, cred.password, str(pem)).thumbprint
        return
    with pytest.raises(SourceError) as info:
        lookup()
    message = str(info.value)
    assert message.startswith(f"[file] [profiles.default] in {path}: {key} is empty or only")
    assert f"or remove {key}" in message


class _BlankResolver:
    name = "blankvault"
    schemes = ("blankvault",)

    def claims(self, reference: str) -> bool:
        return reference.startswith("blankvault:")

    def resolve(self, reference: str, request: Any) -> str:
        return " \n"


class _BlankResolverPlugin:
    @hookimpl
    def ppauth_register_secret_resolvers(self, register: Any) -> None:
        register(_BlankResolver())


def test_a_reference_that_resolves_to_a_blank_secret(ppauth_env):
    ppauth_env.write_config(
        f'[profiles.default]\ntenant_id = "{TENANT_FIX}"\nclient_id = "app-1"\n'
        'client_secret = "blankvault:prod"\n'
    )
    plugins = Plugins(dict(os.environ))
    plugins.register(_BlankResolverPlugin(), name="blankvault")
    env = dict(os.environ)
    with pytest.raises(SourceError, match="client_secret refers to a secret that is empty"):
        plugins.find_credential(load_profile("default", env), env)


@pytest.mark.parametrize(
    "make",
    [
        lambda: ClientSecret(tenant_id=TENANT_FIX, client_id="a", secret=" \n"),
        lambda: ClientSecret(tenant_id=TENANT_FIX, client_id="a"),
        lambda: UsernamePassword(tenant_id=TENANT_FIX, client_id="a", username="u", password="\n"),
        lambda: ClientCertificate(tenant_id=TENANT_FIX, client_id="a", password="  "),
    ],
    ids=["secret", "no-secret", "password", "certificate-password"],
)
def test_blank_secrets_of_explicit_credentials(make):
    with pytest.raises(InvalidCredentialError, match="is empty or only whitespace: pass the"):
        make()


def test_a_copied_secret_s_line_break_is_dropped_and_the_token_comes(ppauth_env, emu):
    """Trailing newline (``$(cat secret.txt)`` keeps none, a file read or a Key Vault
    secret set from a file has one): dropped, and Entra ID accepts the secret."""
    use_secret(ppauth_env, emu, CLIENT_SECRET=emu.sample.client_secret + "\r\n")
    assert lookup().secret == emu.sample.client_secret
    assert api_call(emu).status_code == 200


def test_a_password_keeps_its_spaces_but_loses_its_line_break(ppauth_env, emu):
    cred = UsernamePassword(tenant_id=TENANT_FIX, client_id="a", username="u", password=" pw \n")
    assert cred.password == " pw "
    s = emu.sample
    ppauth_env.set(
        PPAUTH_CLIENT_ID=s.public_client_id,
        PPAUTH_USERNAME=s.username,
        PPAUTH_PASSWORD=s.password + "\n",
        PPAUTH_AUTHORITY_HOST=emu.authority_host,
        PPAUTH_CA_BUNDLE=emu.ca_bundle,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ROPCWarning
        assert api_call(emu).status_code == 200


# -- certificate private-key files --------------------------------------------------------


@pytest.fixture(scope="module")
def pem() -> bytes:
    return make_client_certificate().pem_bundle


def cert_env(ppauth_env: Any, path: Path) -> None:
    ppauth_env.set(
        PPAUTH_TENANT_ID=TENANT_FIX,
        PPAUTH_CLIENT_ID="app-1",
        PPAUTH_CLIENT_CERTIFICATE_PATH=str(path),
        PPAUTH_CLIENT_CERTIFICATE_PASSWORD="cert-pw-never-shown",
    )


def cert_profile(ppauth_env: Any, path: Path) -> Path:
    return ppauth_env.write_config(
        f'[profiles.default]\ntenant_id = "{TENANT_FIX}"\nclient_id = "app-1"\n'
        f'certificate_path = "{path}"\n'
    )


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o602, 0o660, 0o666])
@pytest.mark.parametrize("where", ["env", "file"])
def test_a_key_file_open_to_others_is_refused(ppauth_env, tmp_path, pem, mode, where):
    path = tmp_path / "client.pem"
    path.write_bytes(pem)
    path.chmod(mode)
    if where == "env":
        cert_env(ppauth_env, path)
        setting = "[env] PPAUTH_CLIENT_CERTIFICATE_PATH"
    else:
        setting = (
            f"[file] certificate_path of [profiles.default] in {cert_profile(ppauth_env, path)}"
        )
    with pytest.raises(UnsafeFileError) as info:
        lookup()
    assert isinstance(info.value, PermissionError)
    message = str(info.value)
    assert message.startswith(f"{setting} points to {path}, which holds a private key")
    # the config file's wording, and what to do on Kubernetes
    assert f"is readable by others (mode {mode:o}): run `chmod 600 {path}`" in message
    assert "defaultMode: 0400" in message and "PPAUTH_ALLOW_SHARED_KEY_FILE=1" in message
    assert_clean(message, "cert-pw-never-shown", "PRIVATE KEY")


def test_the_refusal_holds_no_key_in_its_frames(ppauth_env, tmp_path, pem):
    """Error reporters (Sentry, ``pytest --showlocals``) record every frame's locals."""
    path = tmp_path / "client.pem"
    path.write_bytes(pem)
    path.chmod(0o644)
    cert_env(ppauth_env, path)
    with pytest.raises(UnsafeFileError) as info:
        lookup()
    tb = info.value.__traceback__.tb_next  # past this test's frame, which holds `pem`
    names = []
    while tb is not None:
        names.append(tb.tb_frame.f_code.co_name)
        for value in tb.tb_frame.f_locals.values():
            assert not (isinstance(value, bytes) and b"PRIVATE KEY" in value), names[-1]
        tb = tb.tb_next
    assert "read_certificate" in names and "credential" in names


@pytest.mark.parametrize("mode", [0o600, 0o400])
@pytest.mark.parametrize("where", ["env", "file"])
def test_a_private_key_file_is_accepted(ppauth_env, tmp_path, pem, mode, where):
    path = tmp_path / "client.pem"
    path.write_bytes(pem)
    path.chmod(mode)
    if where == "env":
        cert_env(ppauth_env, path)
    else:
        cert_profile(ppauth_env, path)
    assert lookup().certificate == pem


@pytest.mark.parametrize(("value", "accepted"), [("1", True), ("true", True), ("0", False)])
def test_the_opt_out_for_read_only_mounts(ppauth_env, tmp_path, pem, value, accepted):
    path = tmp_path / "client.pem"
    path.write_bytes(pem)
    path.chmod(0o644)
    cert_env(ppauth_env, path)
    ppauth_env.set(PPAUTH_ALLOW_SHARED_KEY_FILE=value)
    if accepted:
        assert lookup().certificate == pem
    else:
        with pytest.raises(UnsafeFileError):
            lookup()


def kubernetes_secret_volume(root: Path, pem: bytes, mode: int) -> Path:
    """The layout the kubelet writes: ``tls.pem -> ..data/tls.pem``, ``..data -> ..<ts>``."""
    stamped = root / "..2026_01_31_12_00_00.000000001"
    stamped.mkdir(parents=True)
    (stamped / "tls.pem").write_bytes(pem)
    (stamped / "tls.pem").chmod(mode)
    (root / "..data").symlink_to(stamped.name)
    (root / "tls.pem").symlink_to("..data/tls.pem")
    return root / "tls.pem"


def test_a_symlinked_key_file_is_judged_by_its_target(ppauth_env, tmp_path, pem):
    private = kubernetes_secret_volume(tmp_path / "private", pem, 0o400)
    assert private.is_symlink()
    cert_env(ppauth_env, private)
    assert lookup().certificate == pem

    shared = kubernetes_secret_volume(tmp_path / "shared", pem, 0o644)
    cert_env(ppauth_env, shared)
    with pytest.raises(UnsafeFileError, match="mode 644"):
        lookup()


def test_the_helper_for_plugins_checks_the_mode_too(tmp_path, pem):
    path = tmp_path / "client.pfx"
    path.write_bytes(pem)
    path.chmod(0o644)
    with pytest.raises(UnsafeFileError, match=r"^\[keyring\] certificate_path of"):
        read_certificate("keyring", str(path), "certificate_path of [profiles.prod]")
    path.chmod(0o600)
    assert read_certificate("keyring", str(path), "certificate_path of [profiles.prod]") == pem


# -- clouds -------------------------------------------------------------------------------


def test_an_unknown_cloud_is_a_configuration_error_listing_the_clouds():
    with pytest.raises(ConfigurationError) as info:
        get_cloud("mars")
    assert isinstance(info.value, ValueError)
    message = str(info.value)
    assert "unknown cloud 'mars'" in message
    assert all(name in message for name in CLOUDS)
    assert "cloud=" in message and "--cloud" in message and "profile's cloud" in message
    with pytest.raises(ConfigurationError, match="unknown cloud 'mars'"):
        PowerPlatformAuth(cloud="mars")


def test_an_unknown_cloud_in_a_profile_names_file_and_profile(ppauth_env, emu):
    use_secret(ppauth_env, emu)
    path = ppauth_env.write_config('[profiles.default]\ncloud = "mars"\n')
    with pytest.raises(ConfigurationError) as info:
        api_call(emu)
    message = str(info.value)
    assert message.startswith(f"{path}: [profiles.default]: cloud 'mars' is not a cloud: set it")
    assert all(name in message for name in CLOUDS)
    assert emu.requests() == []


def test_cloud_aliases_still_work_in_a_profile(ppauth_env):
    ppauth_env.write_config('[profiles.default]\ncloud = "USGovernment"\n')
    assert load_profile("default").get("cloud") == "USGovernment"


# -- malformed config files ---------------------------------------------------------------

DEEP = 3000
MALFORMED = {
    "deep-arrays": ("x = " + "[" * DEEP + "]" * DEEP, ["nests arrays or tables too deeply"]),
    "deep-inline-tables": (
        "x = " + "{a = " * DEEP + "1" + "}" * DEEP,
        ["nests arrays or tables too deeply", "remove the nesting"],
    ),
    "tenant-not-a-string": ("tenant_id = 1", ["tenant_id must be a string"]),
    "sources-not-a-list": ('sources = "env"', ["sources must be a list of strings"]),
    "sources-of-numbers": ("sources = [1, 2]", ["sources must be a list of strings"]),
    "bool-as-string": ('send_certificate_chain = "yes"', ["send_certificate_chain must be"]),
    "cache-as-number": ("cache = 5", ["cache must be"]),
    "secret-as-date": ("client_secret = 2024-01-01", ["client_secret must be a string"]),
    "unknown-key": ('tennant_id = "x"', ["unknown key(s) tennant_id", "allowed:"]),
}


@pytest.mark.parametrize(("body", "expected"), MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_profile_values(ppauth_env, body, expected):
    path = ppauth_env.write_config("[profiles.default]\n" + body + "\n")
    with pytest.raises(ConfigurationError) as info:
        load_profile("default")
    message = str(info.value)
    assert str(path) in message
    for text in expected:
        assert text in message


MALFORMED_FILES = {
    "profile-not-a-table": (b'[profiles]\ndefault = "x"\n', ["[profiles.default] must be a table"]),
    "profiles-not-a-table": (b"profiles = 3\n", ["'profiles' must be a table"]),
    "array-of-profiles": (b"[[profiles]]\nx = 1\n", ["'profiles' must be a table"]),
    "top-level-key": (b'tenant_id = "x"\n', ["unknown top-level key(s) tenant_id"]),
    "invalid-utf8": (b'[profiles.default]\nusername = "J\xf6rg"\n', ["not UTF-8 text", "save"]),
    "binary-garbage": (bytes(range(256)) * 4, ["not UTF-8 text"]),
    "nul-bytes": (b"\x00\x01\x02 junk = \x00", ["not valid TOML"]),
    "not-toml": (b"{ this is json: true }", ["not valid TOML"]),
}


@pytest.mark.parametrize(("data", "expected"), MALFORMED_FILES.values(), ids=MALFORMED_FILES.keys())
def test_malformed_config_files(ppauth_env, data, expected):
    ppauth_env.config_path.write_bytes(data)
    ppauth_env.config_path.chmod(0o600)
    with pytest.raises(ConfigurationError) as info:
        load_profile("default")
    message = str(info.value)
    assert str(ppauth_env.config_path) in message
    for text in expected:
        assert text in message


def test_a_directory_as_config_path(ppauth_env, tmp_path):
    ppauth_env.set(PPAUTH_CONFIG=str(tmp_path))
    with pytest.raises(ConfigurationError) as info:
        load_profile("default")
    assert f"config file {tmp_path} is a directory: point PPAUTH_CONFIG at" in str(info.value)


def test_a_config_path_below_a_file(ppauth_env, tmp_path):
    (tmp_path / "plain").write_text("")
    ppauth_env.set(PPAUTH_CONFIG=str(tmp_path / "plain" / "config.toml"))
    with pytest.raises(ConfigurationError) as info:
        load_profile("default")
    message = str(info.value)
    assert "cannot read config file" in message and "PPAUTH_CONFIG" in message


# -- the command line: one line and a hint, never a traceback -----------------------------


def ppauth(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "requests_ppauth.cli", *args],
        env=os.environ.copy(),
        capture_output=True,
        text=True,
        timeout=90,
        cwd=ROOT,
    )


def failed(proc: subprocess.CompletedProcess[str], status: int = 1) -> tuple[str, str]:
    out = proc.stdout + proc.stderr
    assert proc.returncode == status, out
    assert "Traceback" not in out
    lines = proc.stderr.splitlines()
    assert len(lines) == 2, proc.stderr
    assert lines[0].startswith("ppauth") and ": error: " in lines[0]
    assert lines[1].startswith("hint: ")
    return lines[0], lines[1]


@pytest.mark.parametrize("tenant", ["../../evil", "x?y=1#z", "@evil.localhost"])
def test_cli_bad_tenant_in_env(ppauth_env, emu, tenant):
    use_secret(ppauth_env, emu, TENANT_ID=tenant)
    line, hint = failed(ppauth("token"))
    assert "[env] PPAUTH_TENANT_ID is not a tenant id" in line and TENANT_FIX in hint
    assert emu.sample.client_secret not in line + hint
    assert emu.requests() == []


def test_cli_bad_tenant_in_a_profile(ppauth_env, emu):
    use_secret(ppauth_env, emu)
    ppauth_env.write_config('[profiles.default]\ntenant_id = "../../evil"\n')
    line, hint = failed(ppauth("token"))
    assert "[profiles.default]: tenant_id is not a tenant id" in line and TENANT_FIX in hint
    assert emu.requests() == []


def test_cli_unknown_cloud(ppauth_env, emu):
    line, hint = failed(ppauth("--cloud", "mars", "token"), 2)
    assert "unknown cloud 'mars'" in line and "public" in line
    use_secret(ppauth_env, emu)
    ppauth_env.write_config('[profiles.default]\ncloud = "mars"\n')
    line, hint = failed(ppauth("token"))
    assert "cloud 'mars' is not a cloud" in line and "public" in hint
    assert emu.requests() == []


def test_cli_shared_key_file(ppauth_env, emu, tmp_path, pem):
    path = tmp_path / "client.pem"
    path.write_bytes(pem)
    path.chmod(0o644)
    use_secret(ppauth_env, emu, CLIENT_ID=emu.sample.cert_client_id)
    ppauth_env.set(PPAUTH_CLIENT_SECRET=None, PPAUTH_CLIENT_CERTIFICATE_PATH=str(path))
    line, hint = failed(ppauth("token"))
    assert "PPAUTH_CLIENT_CERTIFICATE_PATH" in line and f"chmod 600 {path}" in hint
    assert emu.requests() == []


def test_every_error_here_is_a_ppauth_error():
    """The types asserted above all sit under the one base class."""
    for cls in (InvalidCredentialError, SourceError, UnsafeFileError, ConfigurationError):
        assert issubclass(cls, PPAuthError)
