"""Shared fixtures: an isolated environment, fresh plugins and caches, an emulated vault.

The ``ppauth_emulator`` and ``ppauth_env`` fixtures come from requests-ppauth's own
pytest plugin; the vault is the emulator's, read by the real azure-keyvault-secrets
and azure-identity over HTTPS.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from requests_ppauth.plugins import reset_plugins
from requests_ppauth.testing import Emulator
from requests_ppauth.testing.contract import make_request
from requests_ppauth.testing.pytest_plugin import PPAuthEnv

import requests_ppauth_keyvault


@pytest.fixture(autouse=True)
def _environ_guard() -> Iterator[None]:
    """Fail a test that changes os.environ without monkeypatch."""
    before = dict(os.environ)
    before.pop("PYTEST_CURRENT_TEST", None)
    yield
    after = dict(os.environ)
    after.pop("PYTEST_CURRENT_TEST", None)
    if before != after:
        os.environ.clear()
        os.environ.update(before)
        pytest.fail("test leaked environment changes")


@pytest.fixture(autouse=True)
def _isolated(ppauth_env: PPAuthEnv) -> Iterator[PPAuthEnv]:
    """No real credential, config or cache; plugins and secrets start fresh."""
    reset_plugins()
    requests_ppauth_keyvault.clear_cache()
    yield ppauth_env
    reset_plugins()
    requests_ppauth_keyvault.clear_cache()


@dataclass
class Vault:
    """The emulator plus what a profile needs to read its vault."""

    emu: Emulator
    reader_id: str
    reader_secret: str

    @property
    def host(self) -> str:
        return self.emu.vault_url.split("//", 1)[1]

    def ref(self, name: str, version: str | None = None) -> str:
        return f"{self.emu.vault_url}/secrets/{name}" + (f"/{version}" if version else "")

    def put(self, value: str, content_type: str | None = None, name: str | None = None) -> str:
        """Store ``value`` under a fresh (or given) name; return its reference."""
        name = name or f"s-{uuid.uuid4().hex[:12]}"
        self.emu.set_secret(name, value, content_type=content_type)
        return self.ref(name)

    def credential_table(self, **overrides: Any) -> dict[str, Any]:
        return {
            "type": "client_secret",
            "client_id": self.reader_id,
            "client_secret": self.reader_secret,
        } | overrides

    def settings(self, keyvault: dict[str, Any] | None = None, **profile: Any) -> dict[str, Any]:
        """A profile whose keyvault table can read the vault (``keyvault`` adds to it)."""
        s = self.emu.sample
        assert s is not None
        table: dict[str, Any] = {"hosts": [self.host], "credential": self.credential_table()}
        return {
            "tenant_id": s.tenant_id,
            "client_id": s.client_id,
            "authority_host": self.emu.authority_host,
            "ca_bundle": self.emu.ca_bundle,
            "keyvault": table | (keyvault or {}),
        } | profile

    def request(
        self, keyvault: dict[str, Any] | None = None, profile: str = "default", **extra: Any
    ):
        return make_request(profile, settings=self.settings(keyvault, **extra))

    def reads(self) -> list[int]:
        """Statuses of the vault requests so far."""
        return [r.status for r in self.emu.requests("vault")]


@pytest.fixture
def vault(ppauth_emulator: Emulator) -> Vault:
    """An emulated vault and an app (not the sample app) allowed to read it."""
    reader_id, reader_secret = str(uuid.uuid4()), "reader~" + uuid.uuid4().hex
    ppauth_emulator.add_app(client_id=reader_id, secret=reader_secret, name="vault-reader")
    return Vault(ppauth_emulator, reader_id, reader_secret)
