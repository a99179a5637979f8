"""The ``file`` source and the TOML config file it reads."""

from __future__ import annotations

import os
import re
import textwrap
from pathlib import Path

import pytest

import requests_ppauth
from requests_ppauth import (
    ClientCertificate,
    ClientSecret,
    ConfigurationError,
    NoCredentialError,
    PowerPlatformAuth,
    SecretReferenceError,
    SourceError,
    UnsafeFileError,
    UsernamePassword,
)
from requests_ppauth import plugins as plugins_module
from requests_ppauth.config import PROFILE_KEYS, load_profile
from requests_ppauth.plugins import Plugins
from requests_ppauth.testing import make_client_certificate

SECRET = "Fq8~file-secret-do-not-print"
TENANT = "11111111-2222-3333-4444-555555555555"
CLIENT = "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"


@pytest.fixture(autouse=True)
def _fresh_global_plugins(monkeypatch):
    """PowerPlatformAuth uses the process-wide manager: give each test its own."""
    monkeypatch.setattr(plugins_module, "_plugins", None)


def lookup(profile: str = "default", plugins: Plugins | None = None, *, explicit: bool = False):
    env = dict(os.environ)
    return (plugins or Plugins(env)).find_credential(
        load_profile(profile, env), env, explicit_profile=explicit
    )


def write(ppauth_env, text: str, mode: int = 0o600) -> Path:
    return ppauth_env.write_config(textwrap.dedent(text).lstrip(), mode)


def secret_profile(name: str = "default", secret: str = SECRET, client: str = CLIENT) -> str:
    return (
        f'[profiles.{name}]\ntenant_id = "{TENANT}"\nclient_id = "{client}"\n'
        f'client_secret = "{secret}"\n'
    )


class DemoResolver:
    """Resolves ``demo:NAME`` from a dict, counting calls."""

    name = "demo"
    schemes = ("demo",)

    def __init__(self, secrets: dict[str, str | bytes]) -> None:
        self.secrets = secrets
        self.calls: list[str] = []

    def claims(self, reference: str) -> bool:
        return reference.startswith("demo:")

    def resolve(self, reference: str, request: requests_ppauth.SourceRequest) -> str | bytes:
        self.calls.append(reference)
        key = reference.removeprefix("demo:")
        if key not in self.secrets:
            raise SecretReferenceError(f"demo has no secret named {key!r}")
        return self.secrets[key]


class DemoPlugin:
    def __init__(self, resolver: DemoResolver) -> None:
        self.resolver = resolver

    @requests_ppauth.hookimpl
    def ppauth_register_secret_resolvers(self, register):
        register(self.resolver)


@pytest.fixture
def demo() -> DemoResolver:
    return DemoResolver({"prod": "resolved-prod-secret", "raw": b"bytes-secret"})


@pytest.fixture
def demo_plugins(demo) -> Plugins:
    plugins = Plugins(dict(os.environ))
    plugins.register(DemoPlugin(demo), name="demo")
    return plugins


@pytest.fixture(scope="module")
def pem() -> bytes:
    return make_client_certificate().pem_bundle


@pytest.fixture
def pem_path(tmp_path, pem) -> Path:
    path = tmp_path / "client.pem"
    path.write_bytes(pem)
    path.chmod(0o600)
    return path


# -- credentials from a profile ----------------------------------------------------------


def test_client_secret_profile(ppauth_env):
    write(ppauth_env, secret_profile() + 'authority_host = "https://login.microsoftonline.us"\n')

    cred = lookup()

    assert type(cred) is ClientSecret
    assert (cred.tenant_id, cred.client_id, cred.secret) == (TENANT, CLIENT, SECRET)
    assert cred.authority_host == "https://login.microsoftonline.us"
    assert cred.source == "file"


def test_certificate_profile(ppauth_env, pem_path, pem):
    write(
        ppauth_env,
        f"""
        [profiles.default]
        tenant_id = "{TENANT}"
        client_id = "{CLIENT}"
        certificate_path = "{pem_path}"
        certificate_password = "pfx-password"
        send_certificate_chain = true
        """,
    )

    cred = lookup()

    assert type(cred) is ClientCertificate
    assert cred.certificate == pem
    assert cred.password == "pfx-password"
    assert cred.path == str(pem_path)
    assert cred.send_certificate_chain is True
    assert cred.source == "file"
    assert "pfx-password" not in repr(cred)


def test_certificate_profile_without_password(ppauth_env, pem_path):
    write(
        ppauth_env,
        f"""
        [profiles.default]
        tenant_id = "{TENANT}"
        client_id = "{CLIENT}"
        certificate_path = "{pem_path}"
        """,
    )

    cred = lookup()

    assert cred.password is None
    assert cred.send_certificate_chain is False


def test_missing_certificate_file_names_the_setting(ppauth_env, tmp_path):
    missing = tmp_path / "gone.pem"
    write(
        ppauth_env,
        f"""
        [profiles.default]
        tenant_id = "{TENANT}"
        client_id = "{CLIENT}"
        certificate_path = "{missing}"
        """,
    )

    with pytest.raises(SourceError, match="certificate_path") as info:
        lookup()

    assert str(missing) in str(info.value)
    assert "does not exist" in str(info.value)


@pytest.mark.parametrize(("tenant_line", "tenant"), [("", "organizations"), (TENANT, TENANT)])
def test_username_password_profile(ppauth_env, tenant_line, tenant):
    text = f'[profiles.default]\nclient_id = "{CLIENT}"\nusername = "ada@contoso.com"\n'
    text += 'password = "hunter2"\n'
    if tenant_line:
        text += f'tenant_id = "{tenant_line}"\n'
    write(ppauth_env, text)

    cred = lookup()

    assert type(cred) is UsernamePassword
    assert (cred.tenant_id, cred.username, cred.password) == (tenant, "ada@contoso.com", "hunter2")
    assert "hunter2" not in repr(cred)


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ('tenant_id = "t.example"\nclient_secret = "x"\n', "no client_id"),
        ('client_id = "c"\nclient_secret = "x"\n', "no tenant_id"),
        ('client_id = "c"\npassword = "x"\n', "a password needs a username"),
    ],
    ids=["no-client-id", "no-tenant", "password-only"],
)
def test_incomplete_profile_raises_source_error(ppauth_env, body, fragment):
    write(ppauth_env, "[profiles.default]\n" + body)

    with pytest.raises(SourceError, match=fragment) as info:
        lookup()

    assert info.value.source == "file"
    assert str(ppauth_env.config_path) in str(info.value)


def test_username_without_password_passes_for_a_later_source(ppauth_env):
    """The password may be in a keyring: the file source steps aside and says why."""
    write(ppauth_env, '[profiles.default]\nclient_id = "c"\nusername = "u@x"\n')

    with pytest.raises(NoCredentialError) as info:
        lookup()

    assert "names user 'u@x' but holds no password" in info.value.reasons["file"]


# -- choosing the profile ------------------------------------------------------------------


TWO_PROFILES = secret_profile("dev", "dev-secret", "dev-client") + secret_profile(
    "prod", "prod-secret", "prod-client"
)


def test_ppauth_profile_selects_the_profile(ppauth_env):
    write(ppauth_env, TWO_PROFILES)
    ppauth_env.set(PPAUTH_PROFILE="prod")

    cred = PowerPlatformAuth()._find_credential()

    assert (cred.client_id, cred.secret) == ("prod-client", "prod-secret")


def test_constructor_profile_wins_over_ppauth_profile(ppauth_env):
    write(ppauth_env, TWO_PROFILES)
    ppauth_env.set(PPAUTH_PROFILE="prod")

    cred = PowerPlatformAuth(profile="dev")._find_credential()

    assert (cred.client_id, cred.secret) == ("dev-client", "dev-secret")


def test_default_profile_is_named_default(ppauth_env):
    write(ppauth_env, TWO_PROFILES + secret_profile("default", "default-secret"))

    assert PowerPlatformAuth()._find_credential().secret == "default-secret"


@pytest.mark.parametrize("how", ["PPAUTH_PROFILE", "constructor"])
def test_unknown_profile_lists_available_ones(ppauth_env, how):
    write(ppauth_env, TWO_PROFILES)
    if how == "PPAUTH_PROFILE":
        ppauth_env.set(PPAUTH_PROFILE="staging")
        auth = PowerPlatformAuth()
    else:
        auth = PowerPlatformAuth(profile="staging")

    with pytest.raises(NoCredentialError) as info:
        auth._find_credential()

    error = info.value
    assert error.profile == "staging"
    assert "dev, prod" in error.reasons["(config)"]
    assert "'staging'" in str(error)
    assert "dev, prod" in str(error)


# -- reading and validating the file -------------------------------------------------------


def test_malformed_toml_names_file_and_line(ppauth_env):
    path = write(
        ppauth_env, '[profiles.default]\nclient_id = "unterminated\ntenant_id = "t.example"\n'
    )

    with pytest.raises(ConfigurationError) as info:
        load_profile("default")

    message = str(info.value)
    assert str(path) in message
    assert "not valid TOML" in message
    assert re.search(r"\bline 2\b", message)
    assert isinstance(info.value, ValueError)


def test_malformed_toml_fails_the_credential_lookup(ppauth_env):
    write(ppauth_env, "[profiles.default\n")

    with pytest.raises(ConfigurationError, match="line 1"):
        PowerPlatformAuth()._find_credential()


def test_non_utf8_file(ppauth_env):
    path = ppauth_env.config_path
    path.write_bytes(b'[profiles.default]\nusername = "J\xf6rg"\n')
    path.chmod(0o600)

    with pytest.raises(ConfigurationError, match="not UTF-8") as info:
        load_profile("default")

    assert str(path) in str(info.value)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ('profiles = "default"\n', "'profiles' must be a table"),
        ("profiles = [1, 2]\n", "'profiles' must be a table"),
        ('[profiles]\ndefault = "x"\n', "[profiles.default] must be a table"),
        ('client_id = "x"\n[profiles.default]\n', "unknown top-level key(s) client_id"),
    ],
    ids=["string", "array", "profile-not-table", "top-level-key"],
)
def test_bad_structure(ppauth_env, text, fragment):
    path = write(ppauth_env, text)

    with pytest.raises(ConfigurationError) as info:
        load_profile("default")

    assert fragment in str(info.value)
    assert str(path) in str(info.value)


def test_unknown_key_lists_allowed_keys(ppauth_env):
    write(
        ppauth_env,
        f"""
        [profiles.default]
        tenant_id = "t.example"
        client_id = "c"
        client_secert = "{SECRET}"
        """,
    )

    with pytest.raises(ConfigurationError) as info:
        load_profile("default")

    message = str(info.value)
    assert "[profiles.default]" in message
    assert "unknown key(s) client_secert" in message
    allowed = message.split("allowed: ", 1)[1].split(" (plugin settings", 1)[0]
    assert allowed.split(", ") == sorted(PROFILE_KEYS)
    assert "[profiles.default.<plugin>]" in message
    assert "client_secret" in allowed
    assert SECRET not in message


@pytest.mark.parametrize(
    ("line", "fragment"),
    [
        ("client_id = 42", "client_id must be a string"),
        ("cloud = true", "cloud must be a string"),
        ('scope = ["https://x/.default"]', "scope must be a string"),
        ("client_secret = 42", 'client_secret must be a string or { ref = "scheme:..." }'),
        ("password = { ref = 1 }", "password must be a string or"),
        ('password = { ref = "demo:x", other = "y" }', "password must be a string or"),
        ("certificate_password = [1]", "certificate_password must be a string or"),
        ('send_certificate_chain = "yes"', "send_certificate_chain must be true or false"),
        ('sources = "env"', "sources must be a list of strings"),
        ('sources = ["env", 1]', "sources must be a list of strings"),
    ],
)
def test_wrong_value_types(ppauth_env, line, fragment):
    write(ppauth_env, f"[profiles.default]\n{line}\n")

    with pytest.raises(ConfigurationError) as info:
        load_profile("default")

    assert fragment in str(info.value)
    assert "[profiles.default]" in str(info.value)


def test_absent_file_is_an_empty_profile(ppauth_env):
    assert not ppauth_env.config_path.exists()

    profile = load_profile("default")

    assert (profile.exists, dict(profile.settings), profile.available) == (False, {}, ())


# -- plaintext secrets and file permissions --------------------------------------------------


def _profile_with_plaintext(key: str, pem_path: Path) -> str:
    if key == "client_secret":
        return secret_profile()
    if key == "password":
        return (
            f'[profiles.default]\nclient_id = "{CLIENT}"\nusername = "u@x"\npassword = "{SECRET}"\n'
        )
    return (
        f'[profiles.default]\ntenant_id = "{TENANT}"\nclient_id = "{CLIENT}"\n'
        f'certificate_path = "{pem_path}"\ncertificate_password = "{SECRET}"\n'
    )


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644, 0o660, 0o602])
@pytest.mark.parametrize("key", ["client_secret", "password", "certificate_password"])
def test_plaintext_secret_in_shared_file_is_refused(ppauth_env, pem_path, mode, key):
    path = write(ppauth_env, _profile_with_plaintext(key, pem_path), mode)

    with pytest.raises(UnsafeFileError) as info:
        lookup()

    error = info.value
    assert isinstance(error, PermissionError)
    message = str(error)
    assert f"chmod 600 {path}" in message
    assert f"plaintext {key}" in message
    assert f"mode {mode:o}" in message
    assert SECRET not in message


@pytest.mark.parametrize("key", ["client_secret", "password", "certificate_password"])
def test_plaintext_secret_in_private_file_works(ppauth_env, pem_path, key):
    write(ppauth_env, _profile_with_plaintext(key, pem_path), 0o600)

    cred = lookup()

    assert SECRET in (getattr(cred, "secret", None), getattr(cred, "password", None))


def test_settings_only_profile_in_shared_file_is_fine(ppauth_env):
    write(ppauth_env, '[profiles.default]\ncloud = "gcc"\n', 0o644)

    with pytest.raises(NoCredentialError):
        lookup()


@pytest.mark.parametrize(
    "value", ['{ ref = "demo:prod" }', '"demo:prod"'], ids=["ref-table", "ref-string"]
)
def test_reference_in_shared_file_is_not_refused(ppauth_env, demo_plugins, value):
    write(ppauth_env, secret_profile().replace(f'"{SECRET}"', value), 0o644)

    assert lookup(plugins=demo_plugins).secret == "resolved-prod-secret"


def test_settings_only_profile_passes_with_a_reason(ppauth_env):
    write(
        ppauth_env,
        """
        [profiles.default]
        cloud = "gcc"
        scope = "https://service.powerapps.us/.default"
        """,
    )

    with pytest.raises(NoCredentialError) as info:
        lookup()

    reason = info.value.reasons["file"]
    assert "[profiles.default]" in reason
    assert (
        "holds no secret, certificate, username, device_code, interactive or federated_token_file"
        in reason
    )
    assert load_profile("default").get("cloud") == "gcc"


def test_settings_only_profile_lets_env_answer(ppauth_env):
    write(ppauth_env, '[profiles.default]\nsources = ["file", "env"]\ncloud = "gcc"\n')
    ppauth_env.set(PPAUTH_TENANT_ID=TENANT, PPAUTH_CLIENT_ID=CLIENT, PPAUTH_CLIENT_SECRET="e")

    assert lookup().source == "env"


# -- memoisation ------------------------------------------------------------------------------


def test_unchanged_file_is_parsed_once(ppauth_env):
    write(ppauth_env, secret_profile())

    first, second = load_profile("default"), load_profile("default")

    assert first.settings is second.settings


def test_rewritten_file_is_picked_up(ppauth_env):
    write(ppauth_env, secret_profile(secret="first"))
    assert lookup().secret == "first"

    write(ppauth_env, secret_profile(secret="second-and-longer"))

    assert load_profile("default").get("client_secret") == "second-and-longer"
    assert lookup().secret == "second-and-longer"


def test_rewritten_file_with_new_profile_is_picked_up(ppauth_env):
    write(ppauth_env, secret_profile("dev"))
    assert load_profile("prod").available == ("dev",)

    write(ppauth_env, secret_profile("dev") + secret_profile("prod", "p"))

    profile = load_profile("prod")
    assert profile.exists
    assert profile.available == ("dev", "prod")


def test_chmod_600_is_picked_up_without_rewriting(ppauth_env):
    """The fix the error suggests must work in the same process (mtime and size unchanged)."""
    path = write(ppauth_env, secret_profile(), 0o644)
    plugins = Plugins(dict(os.environ))
    with pytest.raises(UnsafeFileError):
        lookup(plugins=plugins)

    path.chmod(0o600)

    assert lookup(plugins=plugins).secret == SECRET


def test_chmod_644_is_picked_up_without_rewriting(ppauth_env):
    path = write(ppauth_env, secret_profile(), 0o600)
    plugins = Plugins(dict(os.environ))
    assert lookup(plugins=plugins).secret == SECRET

    path.chmod(0o644)

    with pytest.raises(UnsafeFileError):
        lookup(plugins=plugins)


# -- secret references ----------------------------------------------------------------------


def test_unknown_ref_scheme_is_named(ppauth_env):
    write(ppauth_env, secret_profile().replace(f'"{SECRET}"', '{ ref = "nosuch:abc" }'))

    with pytest.raises(SecretReferenceError) as info:
        lookup()

    message = str(info.value)
    assert "'nosuch'" in message
    assert "client_secret" in message
    assert "installed resolvers handle: none" in message
    assert isinstance(info.value, ConfigurationError)


def test_unknown_ref_scheme_lists_installed_resolvers(ppauth_env, demo_plugins):
    write(ppauth_env, secret_profile().replace(f'"{SECRET}"', '{ ref = "nosuch:abc" }'))

    with pytest.raises(SecretReferenceError, match="installed resolvers handle: demo"):
        lookup(plugins=demo_plugins)


@pytest.mark.parametrize(
    ("value", "package"),
    [
        ('"keyring:prod"', "requests-ppauth-keyring"),
        ('{ ref = "keyring:prod" }', "requests-ppauth-keyring"),
        ('"https://myvault.vault.azure.net/secrets/app"', "requests-ppauth-keyvault"),
    ],
)
def test_well_known_reference_without_plugin_says_what_to_install(ppauth_env, value, package):
    write(ppauth_env, secret_profile().replace(f'"{SECRET}"', value), 0o644)

    with pytest.raises(SecretReferenceError) as info:
        lookup()

    assert f"pip install {package}" in str(info.value)


@pytest.mark.parametrize("password", ["Pa:ss", "https:not-a-vault", "a:b:c", "literal:pa:ss"])
def test_plaintext_password_with_colon_is_literal(ppauth_env, password):
    """Not a reference's shape (upper case, one letter, a non-vault URL), or said to be
    literal with ``literal:`` (a lower-case ``scheme:rest`` nobody claims is an error:
    tests/test_secret_schemes.py)."""
    write(
        ppauth_env,
        f'[profiles.default]\nclient_id = "{CLIENT}"\nusername = "u@x"\npassword = "{password}"\n',
    )

    assert lookup().password == password.removeprefix("literal:")


def test_plaintext_with_colon_is_still_plaintext_for_the_mode_check(ppauth_env):
    write(ppauth_env, secret_profile(secret="literal:pa:ss"), 0o640)

    with pytest.raises(UnsafeFileError, match="chmod 600"):
        lookup()


@pytest.mark.parametrize(
    "value", ['"demo:prod"', '{ ref = "demo:prod" }'], ids=["string", "ref-table"]
)
def test_runtime_resolver_for_file_source(ppauth_env, demo, demo_plugins, value):
    write(ppauth_env, secret_profile().replace(f'"{SECRET}"', value))

    cred = lookup(plugins=demo_plugins)

    assert cred.secret == "resolved-prod-secret"
    assert cred.source == "file"
    assert demo.calls == ["demo:prod"], "a resolver is asked once per secret"


def test_runtime_resolver_for_file_source_certificate_password(
    ppauth_env, demo, demo_plugins, pem_path
):
    write(
        ppauth_env,
        f"""
        [profiles.default]
        tenant_id = "{TENANT}"
        client_id = "{CLIENT}"
        certificate_path = "{pem_path}"
        certificate_password = "demo:raw"
        """,
    )

    assert lookup(plugins=demo_plugins).password == "bytes-secret"
    assert demo.calls == ["demo:raw"]


@pytest.mark.parametrize("prefix", ["PPAUTH_", "AZURE_"])
def test_runtime_resolver_for_env_source(ppauth_env, demo, demo_plugins, prefix):
    ppauth_env.set(
        **{
            prefix + "TENANT_ID": TENANT,
            prefix + "CLIENT_ID": CLIENT,
            prefix + "CLIENT_SECRET": "demo:prod",
        }
    )

    cred = lookup(plugins=demo_plugins)

    assert (cred.secret, cred.source) == ("resolved-prod-secret", "env")
    assert demo.calls == ["demo:prod"]


@pytest.mark.parametrize("source", ["env", "file"])
def test_resolver_returning_bytes_gives_text(ppauth_env, demo_plugins, source):
    if source == "env":
        ppauth_env.set(PPAUTH_CLIENT_ID=CLIENT, PPAUTH_USERNAME="u@x", PPAUTH_PASSWORD="demo:raw")
    else:
        write(
            ppauth_env,
            f'[profiles.default]\nclient_id = "{CLIENT}"\nusername = "u@x"\n'
            'password = { ref = "demo:raw" }\n',
        )

    cred = lookup(plugins=demo_plugins)

    assert cred.source == source
    assert cred.password == "bytes-secret"


@pytest.mark.parametrize("source", ["env", "file"])
def test_resolver_error_propagates(ppauth_env, demo_plugins, source):
    if source == "env":
        ppauth_env.set(
            PPAUTH_TENANT_ID=TENANT, PPAUTH_CLIENT_ID=CLIENT, PPAUTH_CLIENT_SECRET="demo:absent"
        )
    else:
        write(ppauth_env, secret_profile(secret="demo:absent"))

    with pytest.raises(SecretReferenceError, match="no secret named 'absent'"):
        lookup(plugins=demo_plugins)


def test_unregistered_resolver_no_longer_claims(ppauth_env, demo_plugins):
    write(ppauth_env, secret_profile().replace(f'"{SECRET}"', '{ ref = "demo:prod" }'))
    demo_plugins.unregister("demo")

    with pytest.raises(SecretReferenceError, match="unknown secret scheme 'demo'"):
        lookup(plugins=demo_plugins)


def test_plugin_sub_tables_pass_through_untouched(ppauth_env):
    write(
        ppauth_env,
        """
        [profiles.default]
        tenant_id = "t.example"

        [profiles.default.keyvault]
        credential = "managed_identity"
        retries = 3
        """,
    )
    profile = load_profile("default")
    assert profile.settings["keyvault"] == {"credential": "managed_identity", "retries": 3}
