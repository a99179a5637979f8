"""The ``env`` source: ``PPAUTH_*`` variables, else azure-identity's ``AZURE_*`` names."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import requests_ppauth
from requests_ppauth import (
    ClientCertificate,
    ClientSecret,
    NoCredentialError,
    PowerPlatformAuth,
    SecretReferenceError,
    SourceError,
    UsernamePassword,
)
from requests_ppauth import plugins as plugins_module
from requests_ppauth.config import load_profile
from requests_ppauth.plugins import Plugins
from requests_ppauth.testing import make_client_certificate

SECRET = "Zq8~not-a-real-secret.v4lue"
PASSWORD = "Pw-do-not-print-91"
CERT_PASSWORD = "cert-pw-do-not-print-17"
TENANT = "11111111-2222-3333-4444-555555555555"
CLIENT = "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"
FAMILIES = ["PPAUTH_", "AZURE_"]
CREDENTIAL_NAMES = [
    "TENANT_ID",
    "CLIENT_ID",
    "CLIENT_SECRET",
    "CLIENT_CERTIFICATE_PATH",
    "CLIENT_CERTIFICATE_PASSWORD",
    "USERNAME",
    "PASSWORD",
]


@pytest.fixture(autouse=True)
def _fresh_global_plugins(monkeypatch):
    """PowerPlatformAuth uses the process-wide manager: give each test its own."""
    monkeypatch.setattr(plugins_module, "_plugins", None)


def lookup(profile: str = "default", plugins: Plugins | None = None):
    env = dict(os.environ)
    return (plugins or Plugins(env)).find_credential(load_profile(profile, env), env)


def set_family(ppauth_env, prefix: str, **names: str) -> None:
    ppauth_env.set(**{prefix + name: value for name, value in names.items()})


@pytest.fixture(scope="module")
def pem() -> bytes:
    return make_client_certificate().pem_bundle


@pytest.fixture
def pem_path(tmp_path, pem) -> Path:
    path = tmp_path / "client.pem"
    path.write_bytes(pem)
    path.chmod(0o600)
    return path


# -- complete credentials ------------------------------------------------------------


@pytest.mark.parametrize("prefix", FAMILIES)
def test_client_secret(ppauth_env, prefix):
    set_family(ppauth_env, prefix, TENANT_ID=TENANT, CLIENT_ID=CLIENT, CLIENT_SECRET=SECRET)

    cred = lookup()

    assert type(cred) is ClientSecret
    assert (cred.tenant_id, cred.client_id, cred.secret) == (TENANT, CLIENT, SECRET)
    assert cred.source == "env"
    assert cred.kind == "secret"
    assert cred.authority_host is None
    assert cred.user is None


@pytest.mark.parametrize("prefix", FAMILIES)
def test_certificate_path(ppauth_env, prefix, pem_path, pem):
    set_family(
        ppauth_env,
        prefix,
        TENANT_ID=TENANT,
        CLIENT_ID=CLIENT,
        CLIENT_CERTIFICATE_PATH=str(pem_path),
    )

    cred = lookup()

    assert type(cred) is ClientCertificate
    assert (cred.tenant_id, cred.client_id) == (TENANT, CLIENT)
    assert cred.certificate == pem
    assert cred.path == str(pem_path)
    assert cred.password is None
    assert cred.send_certificate_chain is False
    assert cred.source == "env"
    assert cred.kind == "certificate"


@pytest.mark.parametrize("prefix", FAMILIES)
@pytest.mark.parametrize(("flag", "expected"), [("true", True), ("1", True), ("no", False)])
def test_certificate_password_and_chain(ppauth_env, prefix, pem_path, flag, expected):
    set_family(
        ppauth_env,
        prefix,
        TENANT_ID=TENANT,
        CLIENT_ID=CLIENT,
        CLIENT_CERTIFICATE_PATH=str(pem_path),
        CLIENT_CERTIFICATE_PASSWORD=CERT_PASSWORD,
        CLIENT_SEND_CERTIFICATE_CHAIN=flag,
    )

    cred = lookup()

    assert cred.password == CERT_PASSWORD
    assert cred.send_certificate_chain is expected


@pytest.mark.parametrize("prefix", FAMILIES)
def test_username_password_defaults_to_organizations(ppauth_env, prefix):
    set_family(ppauth_env, prefix, CLIENT_ID=CLIENT, USERNAME="ada@contoso.com", PASSWORD=PASSWORD)

    cred = lookup()

    assert type(cred) is UsernamePassword
    assert cred.tenant_id == "organizations"
    assert (cred.client_id, cred.username, cred.password) == (CLIENT, "ada@contoso.com", PASSWORD)
    assert cred.user == "ada@contoso.com"
    assert cred.kind == "password"


@pytest.mark.parametrize("prefix", FAMILIES)
def test_username_password_with_tenant(ppauth_env, prefix):
    set_family(
        ppauth_env,
        prefix,
        TENANT_ID=TENANT,
        CLIENT_ID=CLIENT,
        USERNAME="ada@contoso.com",
        PASSWORD=PASSWORD,
    )

    assert lookup().tenant_id == TENANT


def test_through_power_platform_auth(ppauth_env):
    ppauth_env.set(PPAUTH_TENANT_ID=TENANT, PPAUTH_CLIENT_ID=CLIENT, PPAUTH_CLIENT_SECRET=SECRET)

    cred = PowerPlatformAuth()._find_credential()

    assert isinstance(cred, ClientSecret)
    assert (cred.client_id, cred.secret, cred.source) == (CLIENT, SECRET, "env")


def test_plaintext_secret_with_colon_is_literal(ppauth_env):
    ppauth_env.set(
        PPAUTH_TENANT_ID=TENANT, PPAUTH_CLIENT_ID=CLIENT, PPAUTH_CLIENT_SECRET="literal:pa:ss:word"
    )

    assert lookup().secret == "pa:ss:word"


def test_keyring_reference_without_plugin_says_what_to_install(ppauth_env):
    ppauth_env.set(
        PPAUTH_TENANT_ID=TENANT, PPAUTH_CLIENT_ID=CLIENT, PPAUTH_CLIENT_SECRET="keyring:prod"
    )

    with pytest.raises(SecretReferenceError, match="pip install requests-ppauth-keyring"):
        lookup()


# -- the two families are never mixed -------------------------------------------------


def test_ppauth_family_wins_over_complete_azure_family(ppauth_env):
    set_family(
        ppauth_env, "AZURE_", TENANT_ID="azure-t.example", CLIENT_ID="azure-c", CLIENT_SECRET="az"
    )
    set_family(ppauth_env, "PPAUTH_", TENANT_ID=TENANT, CLIENT_ID=CLIENT, CLIENT_SECRET=SECRET)

    cred = lookup()

    assert (cred.tenant_id, cred.client_id, cred.secret) == (TENANT, CLIENT, SECRET)


@pytest.mark.parametrize("name", CREDENTIAL_NAMES)
def test_any_ppauth_credential_variable_hides_every_azure_one(ppauth_env, name, tmp_path):
    """One PPAUTH_ variable is enough: nothing is borrowed from the AZURE_ family."""
    set_family(
        ppauth_env,
        "AZURE_",
        TENANT_ID="azure-tenant.example",
        CLIENT_ID="azure-client",
        CLIENT_SECRET="azure-secret",
        USERNAME="azure-user",
        PASSWORD="azure-password",
    )
    value = str(tmp_path / "missing.pem") if name == "CLIENT_CERTIFICATE_PATH" else "x"
    ppauth_env.set(**{"PPAUTH_" + name: value})

    with pytest.raises(SourceError) as info:
        lookup()

    message = str(info.value)
    assert "PPAUTH_" in message
    assert "AZURE_" not in message
    assert "azure-" not in message


def test_ppauth_secret_is_never_paired_with_azure_ids(ppauth_env):
    set_family(ppauth_env, "AZURE_", TENANT_ID="azure-tenant.example", CLIENT_ID="azure-client")
    ppauth_env.set(PPAUTH_CLIENT_SECRET=SECRET)

    with pytest.raises(SourceError, match="PPAUTH_CLIENT_ID is not"):
        lookup()


def test_non_credential_ppauth_variables_do_not_hide_azure(ppauth_env):
    """PPAUTH_CONFIG, PPAUTH_CACHE_DIR, PPAUTH_PROFILE... are not credential variables."""
    ppauth_env.set(PPAUTH_PROFILE="default", PPAUTH_AUTHORITY_HOST="https://login.example")
    set_family(ppauth_env, "AZURE_", TENANT_ID=TENANT, CLIENT_ID=CLIENT, CLIENT_SECRET=SECRET)
    assert os.environ["PPAUTH_CONFIG"]

    cred = lookup()

    assert (cred.client_id, cred.secret) == (CLIENT, SECRET)


# -- authority host --------------------------------------------------------------------


@pytest.mark.parametrize("prefix", FAMILIES)
@pytest.mark.parametrize("var", ["PPAUTH_AUTHORITY_HOST", "AZURE_AUTHORITY_HOST"])
def test_authority_host_is_carried_on_the_credential(ppauth_env, prefix, var):
    set_family(ppauth_env, prefix, TENANT_ID=TENANT, CLIENT_ID=CLIENT, CLIENT_SECRET=SECRET)
    ppauth_env.set(**{var: "https://login.microsoftonline.us"})

    assert lookup().authority_host == "https://login.microsoftonline.us"


def test_ppauth_authority_host_wins(ppauth_env):
    set_family(ppauth_env, "PPAUTH_", CLIENT_ID=CLIENT, USERNAME="u@x", PASSWORD=PASSWORD)
    ppauth_env.set(
        PPAUTH_AUTHORITY_HOST="https://login.chinacloudapi.cn",
        AZURE_AUTHORITY_HOST="https://login.microsoftonline.us",
    )

    assert lookup().authority_host == "https://login.chinacloudapi.cn"


# -- half-set combinations ---------------------------------------------------------------


def _half_set(case: str, prefix: str, tmp_path: Path) -> tuple[dict[str, str], list[str]]:
    """(variables without prefix, fragments the message must hold)."""
    p = prefix
    directory = tmp_path / "certs"
    directory.mkdir()
    empty = tmp_path / "empty.pem"
    empty.write_bytes(b"  \n")
    cert = {"TENANT_ID": TENANT, "CLIENT_ID": CLIENT, "CLIENT_CERTIFICATE_PASSWORD": SECRET}
    cases: dict[str, tuple[dict[str, str], list[str]]] = {
        "client-id-only": (
            {"CLIENT_ID": CLIENT},
            [
                f"{p}CLIENT_SECRET",
                f"{p}CLIENT_CERTIFICATE_PATH",
                f"{p}USERNAME",
                f"{p}PASSWORD",
            ],
        ),
        "tenant-only": ({"TENANT_ID": TENANT}, [f"{p}CLIENT_ID is not"]),
        "secret-without-tenant": (
            {"CLIENT_ID": CLIENT, "CLIENT_SECRET": SECRET},
            [f"{p}TENANT_ID is not"],
        ),
        "certificate-without-tenant": (
            {"CLIENT_ID": CLIENT, "CLIENT_CERTIFICATE_PATH": str(empty)},
            [f"{p}TENANT_ID is not"],
        ),
        "tenant-and-secret-without-client-id": (
            {"TENANT_ID": TENANT, "CLIENT_SECRET": SECRET},
            [f"{p}CLIENT_ID is not"],
        ),
        "secret-only": ({"CLIENT_SECRET": SECRET}, [f"{p}CLIENT_ID is not"]),
        "username-without-password": (
            {"CLIENT_ID": CLIENT, "USERNAME": "ada@contoso.com"},
            [f"{p}PASSWORD is not set"],
        ),
        "password-without-username": (
            {"CLIENT_ID": CLIENT, "PASSWORD": SECRET},
            [f"{p}USERNAME is not set"],
        ),
        "certificate-path-missing": (
            {**cert, "CLIENT_CERTIFICATE_PATH": str(tmp_path / "nope.pem")},
            [f"{p}CLIENT_CERTIFICATE_PATH", "nope.pem", "does not exist"],
        ),
        "certificate-path-is-directory": (
            {**cert, "CLIENT_CERTIFICATE_PATH": str(directory)},
            [f"{p}CLIENT_CERTIFICATE_PATH", str(directory), "directory"],
        ),
        "certificate-file-empty": (
            {**cert, "CLIENT_CERTIFICATE_PATH": str(empty)},
            [f"{p}CLIENT_CERTIFICATE_PATH", str(empty), "empty"],
        ),
    }
    return cases[case]


HALF_SET_CASES = [
    "client-id-only",
    "tenant-only",
    "secret-without-tenant",
    "certificate-without-tenant",
    "tenant-and-secret-without-client-id",
    "secret-only",
    "username-without-password",
    "password-without-username",
    "certificate-path-missing",
    "certificate-path-is-directory",
    "certificate-file-empty",
]


@pytest.mark.parametrize("prefix", FAMILIES)
@pytest.mark.parametrize("case", HALF_SET_CASES)
def test_half_set_variables_raise_source_error(ppauth_env, tmp_path, prefix, case):
    names, fragments = _half_set(case, prefix, tmp_path)
    set_family(ppauth_env, prefix, **names)

    with pytest.raises(SourceError) as info:
        lookup()

    error = info.value
    assert isinstance(error, requests_ppauth.ConfigurationError)
    assert error.source == "env"
    message = str(error)
    assert message.startswith("[env] ")
    for fragment in fragments:
        assert fragment in message
    for secret in (SECRET, PASSWORD):
        assert secret not in message
        assert secret not in repr(error)
        assert all(secret not in str(arg) for arg in error.args)


def test_half_set_env_stops_the_chain_even_when_the_file_has_a_credential(ppauth_env):
    ppauth_env.write_config(
        f'[profiles.default]\ntenant_id = "{TENANT}"\nclient_id = "{CLIENT}"\n'
        'client_secret = "from-file"\n'
    )
    ppauth_env.set(PPAUTH_CLIENT_ID=CLIENT)

    with pytest.raises(SourceError, match=r"^\[env\]"):
        lookup()


# -- nothing set ---------------------------------------------------------------------------


def test_nothing_set_raises_no_credential_with_reasons(ppauth_env):
    with pytest.raises(NoCredentialError) as info:
        lookup()

    error = info.value
    assert isinstance(error, LookupError)
    assert error.profile == "default"
    assert list(error.reasons) == ["env", "file"]
    assert "PPAUTH_" in error.reasons["env"]
    assert "AZURE_" in error.reasons["env"]
    assert "[profiles.default]" in error.reasons["file"]
    assert str(ppauth_env.config_path) in error.reasons["file"]
    message = str(error)
    assert "  - env: " in message
    assert "  - file: " in message


def test_empty_values_count_as_unset(ppauth_env):
    ppauth_env.set(PPAUTH_CLIENT_ID="", PPAUTH_CLIENT_SECRET="", AZURE_TENANT_ID="")

    with pytest.raises(NoCredentialError) as info:
        lookup()

    assert set(info.value.reasons) == {"env", "file"}


# -- secrets never shown ---------------------------------------------------------------------


def test_secret_credential_repr_hides_the_secret(ppauth_env):
    ppauth_env.set(PPAUTH_TENANT_ID=TENANT, PPAUTH_CLIENT_ID=CLIENT, PPAUTH_CLIENT_SECRET=SECRET)

    cred = lookup()

    assert SECRET not in repr(cred)
    assert SECRET not in str(cred)
    assert CLIENT in repr(cred)


def test_certificate_credential_repr_hides_key_and_password(ppauth_env, pem_path):
    ppauth_env.set(
        PPAUTH_TENANT_ID=TENANT,
        PPAUTH_CLIENT_ID=CLIENT,
        PPAUTH_CLIENT_CERTIFICATE_PATH=str(pem_path),
        PPAUTH_CLIENT_CERTIFICATE_PASSWORD=CERT_PASSWORD,
    )

    cred = lookup()

    text = repr(cred)
    assert CERT_PASSWORD not in text
    assert "PRIVATE KEY" not in text
    assert "BEGIN" not in text
    assert str(pem_path) in text


def test_password_credential_repr_hides_the_password(ppauth_env):
    ppauth_env.set(PPAUTH_CLIENT_ID=CLIENT, PPAUTH_USERNAME="ada@x.com", PPAUTH_PASSWORD=PASSWORD)

    cred = lookup()

    assert PASSWORD not in repr(cred)
    assert "ada@x.com" in repr(cred)
