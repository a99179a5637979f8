"""Secret values of the shape ``scheme:rest``: references, never silently literal.

A ``client_secret = "pass:ppauth/prod"`` whose resolver plugin is missing or blocked used
to be sent to Entra ID as the secret. Now it is a ``SecretReferenceError`` naming the
scheme and the plugin that usually resolves it, and nothing is sent; ``literal:``
writes a secret that only looks like a reference. Real client
secrets, Windows paths and ordinary passwords are not taken for references.
"""

from __future__ import annotations

import os
import random
import string
import textwrap

import pytest
import requests

import requests_ppauth
from requests_ppauth import PowerPlatformAuth, SecretReferenceError, UnsafeFileError
from requests_ppauth import plugins as plugins_module
from requests_ppauth.config import load_profile
from requests_ppauth.plugins import Plugins
from requests_ppauth.source_api import reference_scheme

TENANT = "11111111-2222-3333-4444-555555555555"
CLIENT = "22222222-3333-4444-5555-666666666666"
PP_SCOPE = "https://service.powerapps.com//.default"


@pytest.fixture(autouse=True)
def _fresh_global_plugins(monkeypatch):
    """PowerPlatformAuth uses the process-wide manager: give each test its own."""
    monkeypatch.setattr(plugins_module, "_plugins", None)


class PassResolver:
    """A GNU ``pass``-like resolver over a dict: a real plugin object, counted."""

    name = "pass"
    schemes = ("pass",)

    def __init__(self, store: dict[str, str]) -> None:
        self.store = store
        self.calls: list[str] = []

    def claims(self, reference: str) -> bool:
        return reference.startswith("pass:")

    def resolve(self, reference: str, request: object) -> str:
        self.calls.append(reference)
        try:
            return self.store[reference.removeprefix("pass:")]
        except KeyError:
            raise SecretReferenceError(f"pass has no entry {reference!r}") from None


class PassPlugin:
    def __init__(self, resolver: PassResolver) -> None:
        self.resolver = resolver

    @requests_ppauth.hookimpl
    def ppauth_register_secret_resolvers(self, register):
        register(self.resolver)


def lookup(plugins: Plugins | None = None):
    env = dict(os.environ)
    return (plugins or Plugins(env)).find_credential(load_profile("default", env), env)


def env_secret(ppauth_env, secret: str) -> None:
    ppauth_env.set(PPAUTH_TENANT_ID=TENANT, PPAUTH_CLIENT_ID=CLIENT, PPAUTH_CLIENT_SECRET=secret)


def file_secret(ppauth_env, value: str, mode: int = 0o600) -> None:
    ppauth_env.write_config(
        textwrap.dedent(
            f"""\
            [profiles.default]
            tenant_id = "{TENANT}"
            client_id = "{CLIENT}"
            client_secret = {value}
            """
        ),
        mode,
    )


# -- refused, naming the scheme and the plugin -------------------------------------------------


@pytest.mark.parametrize(
    ("secret", "scheme", "plugin"),
    [
        ("pass:ppauth/prod", "pass", "GNU pass resolver plugin"),
        ("op://vault/item/credential", "op", "1Password"),
        ("vault:secret/data/ppauth#client_secret", "vault", "HashiCorp Vault"),
        ("mystore:prod", "mystore", None),
    ],
)
def test_unclaimed_reference_in_env_is_refused(ppauth_env, secret, scheme, plugin):
    env_secret(ppauth_env, secret)

    with pytest.raises(SecretReferenceError) as info:
        lookup()

    message = str(info.value)
    assert f"unknown secret scheme {scheme!r}" in message, message
    assert "PPAUTH_CLIENT_SECRET of profile 'default'" in message, message
    assert "Nothing was sent" in message, message
    assert "if it is the secret itself, put literal: before it" in message, message
    if plugin:
        assert plugin in message, message
    rest = secret.split(":", 1)[1]
    assert rest not in message, f"the reference's path {rest!r} leaked into: {message}"


def test_unclaimed_reference_in_the_config_file_is_refused(ppauth_env):
    file_secret(ppauth_env, '"pass:ppauth/prod"')

    with pytest.raises(SecretReferenceError) as info:
        lookup()

    message = str(info.value)
    assert "client_secret of profile 'default'" in message, message
    assert "unknown secret scheme 'pass'" in message, message
    assert "put literal: before it" in message, message


def test_keyring_reference_names_the_keyring_distribution(ppauth_env):
    file_secret(ppauth_env, '"keyring:prod"')

    with pytest.raises(SecretReferenceError, match="pip install requests-ppauth-keyring"):
        lookup()


def test_key_vault_url_names_the_keyvault_distribution(ppauth_env):
    env_secret(ppauth_env, "https://myvault.vault.azure.net/secrets/ppauth")

    with pytest.raises(SecretReferenceError, match="pip install requests-ppauth-keyvault"):
        lookup()


def test_a_url_that_is_not_a_key_vault_stays_literal(ppauth_env):
    env_secret(ppauth_env, "https://example.com/secret")

    assert lookup().secret == "https://example.com/secret"
    assert reference_scheme("https://example.com/secret") is None
    assert reference_scheme("https://myvault.vault.azure.net/secrets/x") == "https"


def test_blocked_resolver_is_refused_and_nothing_reaches_entra_id(ppauth_emulator, ppauth_env):
    """With the resolver's plugin blocked the reference fails before any request; with it
    registered the secret it resolves gets the token: exactly one token request."""
    emu, s = ppauth_emulator, ppauth_emulator.sample
    ppauth_env.set(
        PPAUTH_TENANT_ID=s.tenant_id,
        PPAUTH_CLIENT_ID=s.client_id,
        PPAUTH_CLIENT_SECRET="pass:ppauth/prod",
        PPAUTH_AUTHORITY_HOST=emu.authority_host,
        PPAUTH_DISABLE_PLUGINS="*,managed,pass-store",
    )
    resolver = PassResolver({"ppauth/prod": s.client_secret})
    host = emu.api_url.split("//")[1]
    url = (
        emu.api_url
        + "/providers/Microsoft.BusinessAppPlatform/scopes/admin/environments"
        + "?api-version=2020-10-01"
    )
    before = emu.count("token")

    plugins_module.get_plugins().register(PassPlugin(resolver), name="pass-store")  # blocked
    auth = PowerPlatformAuth(verify=emu.ca_bundle, hosts={host: PP_SCOPE}, cache=False)
    with pytest.raises(SecretReferenceError, match="unknown secret scheme 'pass'"):
        requests.get(url, auth=auth, verify=emu.ca_bundle, timeout=30)

    assert emu.count("token") == before, "a reference was sent to Entra ID as a secret"
    assert resolver.calls == []

    ppauth_env.set(PPAUTH_DISABLE_PLUGINS="*,managed")
    plugins_module.reset_plugins()
    plugins_module.get_plugins().register(PassPlugin(resolver), name="pass-store")
    auth = PowerPlatformAuth(verify=emu.ca_bundle, hosts={host: PP_SCOPE}, cache=False)
    r = requests.get(url, auth=auth, verify=emu.ca_bundle, timeout=30)

    assert r.status_code == 200, r.text
    assert emu.count("token") == before + 1
    assert resolver.calls == ["pass:ppauth/prod"]


def test_registered_resolver_claims_its_scheme(ppauth_env):
    file_secret(ppauth_env, '"pass:ppauth/prod"')
    resolver = PassResolver({"ppauth/prod": "resolved~secret"})
    plugins = Plugins(dict(os.environ))
    plugins.register(PassPlugin(resolver), name="pass-store")

    assert lookup(plugins).secret == "resolved~secret"
    assert resolver.calls == ["pass:ppauth/prod"]


# -- the literal forms --------------------------------------------------------------------------


def test_literal_prefix_in_env(ppauth_env):
    env_secret(ppauth_env, "literal:pass:ppauth/prod")

    assert lookup().secret == "pass:ppauth/prod"


def test_literal_prefix_in_the_file_is_not_offered_to_resolvers(ppauth_env):
    file_secret(ppauth_env, '"literal:pass:ppauth/prod"')
    resolver = PassResolver({"ppauth/prod": "resolved"})
    plugins = Plugins(dict(os.environ))
    plugins.register(PassPlugin(resolver), name="pass-store")

    assert lookup(plugins).secret == "pass:ppauth/prod"
    assert resolver.calls == []


def test_literal_prefix_is_plaintext_for_the_mode_check(ppauth_env):
    file_secret(ppauth_env, '"literal:a:b"', 0o640)

    with pytest.raises(UnsafeFileError, match="chmod 600"):
        lookup()


def test_literal_prefix_twice_keeps_one(ppauth_env):
    env_secret(ppauth_env, "literal:literal:x")

    assert lookup().secret == "literal:x"


# -- no false positives ------------------------------------------------------------------------


def entra_like_secrets(n: int = 200) -> list[str]:
    """Secrets as Entra ID makes them: 40 characters of [A-Za-z0-9~._-] (they hold no
    ':'), so none can have a scheme; seeded, so a failure is reproducible."""
    rng = random.Random(16)  # noqa: S311 - test data, not a secret
    alphabet = string.ascii_letters + string.digits + "~._-"
    return ["".join(rng.choice(alphabet) for _ in range(40)) for _ in range(n)]


def test_entra_secrets_are_never_references():
    taken = [s for s in entra_like_secrets() if reference_scheme(s) is not None]

    assert taken == [], f"taken for references: {taken}"


@pytest.mark.parametrize(
    "secret",
    [
        "Xy8Q~kLmN0pQrStUvWx.Yz_12-34abcdEFGHijkl",  # an Entra secret's shape
        "C:\\secrets\\ppauth.txt",  # a Windows path: one-letter "scheme"
        "c:/secrets/ppauth",
        "Summer:2024",  # a capital first letter: not a scheme
        "hunter 2:x",  # whitespace: not a reference
        "p:ss",
        "9ab:cd",
    ],
)
def test_plausible_literals_are_sent_as_they_are(ppauth_env, secret):
    env_secret(ppauth_env, secret)

    assert lookup().secret == secret
    assert reference_scheme(secret) is None


@pytest.mark.parametrize(
    ("value", "scheme"),
    [("pass:x", "pass"), ("op://a/b", "op"), ("my-store+v2:x", "my-store+v2"), ("ab:", "ab")],
)
def test_reference_shape(value, scheme):
    assert reference_scheme(value) == scheme
