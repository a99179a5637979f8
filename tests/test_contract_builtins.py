"""The built-in sources pass the same contract a third-party plugin must pass."""

from __future__ import annotations

import pytest

from requests_ppauth.sources import env as env_plugin
from requests_ppauth.sources import file as file_plugin
from requests_ppauth.sources.env import EnvSource
from requests_ppauth.sources.file import FileSource
from requests_ppauth.testing.contract import ExpectedCredential, SourceContract, make_request


class TestEnvSourceContract(SourceContract):
    plugin = env_plugin

    def provision_unavailable(self, profile):
        pytest.skip("the env source has no store: its values arrive in request.environ")

    @pytest.fixture
    def source(self):
        self.environ: dict[str, dict[str, str]] = {}
        return EnvSource()

    def provision(self, profile):
        self.environ[profile] = {
            "PPAUTH_TENANT_ID": profile + ".onmicrosoft.com",
            "PPAUTH_CLIENT_ID": "c-" + profile,
            "PPAUTH_CLIENT_SECRET": "secret-value-" + profile,
        }
        return ExpectedCredential(
            "secret", profile + ".onmicrosoft.com", "c-" + profile, ("secret-value-" + profile,)
        )

    def provision_broken(self, profile):
        self.environ[profile] = {"PPAUTH_CLIENT_ID": "c-" + profile}

    def request_for(self, profile):
        return make_request(profile, environ=self.environ.get(profile, {}))


class TestFileSourceContract(SourceContract):
    plugin = file_plugin

    def provision_unavailable(self, profile):
        pytest.skip("the file source is handed settings the core already read")

    @pytest.fixture
    def source(self):
        self.settings: dict[str, dict[str, str]] = {}
        return FileSource()

    def provision(self, profile):
        self.settings[profile] = {
            "tenant_id": profile + ".onmicrosoft.com",
            "client_id": "c-" + profile,
            "client_secret": "secret-value-" + profile,
        }
        return ExpectedCredential(
            "secret", profile + ".onmicrosoft.com", "c-" + profile, ("secret-value-" + profile,)
        )

    def provision_broken(self, profile):
        self.settings[profile] = {"tenant_id": "t.example", "client_secret": "s"}  # no client_id

    def request_for(self, profile):
        return make_request(profile, settings=self.settings.get(profile, {}))
