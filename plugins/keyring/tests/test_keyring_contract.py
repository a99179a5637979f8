"""The core's contract tests, against two real keyrings.

- the Secret Service (gnome-keyring-daemon on a private D-Bus session, see conftest);
- keyrings.alt's plaintext file backend, its file in tmp_path.

Both go through the real ``keyring`` library, made current with ``keyring.set_keyring``.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import keyring
import pytest
import requests_ppauth_keyring
from keyring.backends import fail
from requests_ppauth_keyring import SERVICE, KeyringResolver, KeyringSource, set_secret

from requests_ppauth import SecretReferenceError
from requests_ppauth.source_api import SourceRequest
from requests_ppauth.testing.contract import (
    ExpectedCredential,
    ResolverContract,
    SourceContract,
    make_request,
)


class KeyringSourceContract(SourceContract):
    """The source contract; subclasses pick the backend through ``keyring_under_test``."""

    plugin = requests_ppauth_keyring

    @pytest.fixture
    def keyring_under_test(self) -> Any:
        raise NotImplementedError

    @pytest.fixture
    def source(self, keyring_under_test: Any) -> KeyringSource:
        self.settings: dict[str, dict[str, Any]] = {}
        return KeyringSource()

    def provision(self, profile: str) -> ExpectedCredential:
        # the identifiers in the profile (config file), only the secret in the keyring
        secret = f"secret-value-{uuid.uuid4().hex}"
        set_secret(profile, "client_secret", secret)
        self.settings[profile] = {
            "tenant_id": profile + ".onmicrosoft.com",
            "client_id": "c-" + profile,
        }
        return ExpectedCredential("secret", profile + ".onmicrosoft.com", "c-" + profile, (secret,))

    def provision_broken(self, profile: str) -> None:
        # a secret in the keyring, but the profile has no tenant_id / client_id
        set_secret(profile, "client_secret", f"orphan-{uuid.uuid4().hex}")

    def request_for(self, profile: str) -> SourceRequest:
        return make_request(profile, settings=self.settings.get(profile, {}))

    def provision_unavailable(self, profile: str) -> ExpectedCredential:
        # the secret is stored, then no backend is usable (keyring's own "fail" backend:
        # what a machine without a Secret Service or keyrings.alt gets)
        stored = self.provision(profile)
        keyring.set_keyring(fail.Keyring())
        return stored


class TestSecretServiceSource(KeyringSourceContract):
    @pytest.fixture
    def keyring_under_test(self, secret_service_keyring: Any) -> Any:
        return secret_service_keyring


class TestFileKeyringSource(KeyringSourceContract):
    @pytest.fixture
    def keyring_under_test(self, file_keyring: Any) -> Any:
        self.keyring_file = Path(file_keyring.backend.file_path)
        return file_keyring

    def provision_unavailable(self, profile: str) -> ExpectedCredential:
        # the keyring file cannot be parsed any more (a corrupt or foreign file)
        stored = self.provision(profile)
        self.keyring_file.write_text(f"{stored.secrets[0]}\n[[[ not an ini file\n")
        return stored


class KeyringResolverContract(ResolverContract):
    """The resolver contract; secrets stored with plain ``keyring.set_password``."""

    plugin = requests_ppauth_keyring

    @pytest.fixture
    def keyring_under_test(self) -> Any:
        raise NotImplementedError

    @pytest.fixture
    def resolver(self, keyring_under_test: Any) -> KeyringResolver:
        return KeyringResolver()

    def provision_secret(self, value: str) -> str:
        name = f"ref-{uuid.uuid4().hex}"
        keyring.set_password(SERVICE, name, value)
        return f"keyring:{name}"

    def missing_reference(self) -> str:
        return f"keyring:missing-{uuid.uuid4().hex}"

    def foreign_references(self) -> list[str]:
        return [
            *super().foreign_references(),
            "keyrings:prod",
            "https://myvault.vault.azure.net/secrets/prod",
            "prod:client_secret",
        ]

    def test_service_form(self, resolver: KeyringResolver) -> None:
        name, value = f"ref-{uuid.uuid4().hex}", f"other-{uuid.uuid4().hex}"
        keyring.set_password("corp-vault", name, value)
        request = make_request("default", resolvers=(resolver,))
        assert request.resolve(f"keyring:corp-vault/{name}", "client_secret") == value
        # the same name in the default service is another entry
        with pytest.raises(SecretReferenceError, match="names nothing in the keyring"):
            request.resolve(f"keyring:{name}", "client_secret")

    def test_reads_what_the_source_stores(self, resolver: KeyringResolver) -> None:
        value = f"s-{uuid.uuid4().hex}"
        set_secret("prod", "client_secret", value)
        request = make_request("default", resolvers=(resolver,))
        assert request.resolve("keyring:prod:client_secret", "client_secret") == value


class TestSecretServiceResolver(KeyringResolverContract):
    @pytest.fixture
    def keyring_under_test(self, secret_service_keyring: Any) -> Any:
        return secret_service_keyring


class TestFileKeyringResolver(KeyringResolverContract):
    @pytest.fixture
    def keyring_under_test(self, file_keyring: Any) -> Any:
        return file_keyring
