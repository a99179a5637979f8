"""The example plugin's whole contract test: a subclass of the core's SourceContract,
plus one end-to-end request through the emulator."""

from __future__ import annotations

import json
import os

import ppauth_example_source
import pytest
import requests

from requests_ppauth import PowerPlatformAuth
from requests_ppauth.source_api import source_report
from requests_ppauth.testing.contract import ExpectedCredential, SourceContract, make_request


class TestJsonFileSource(SourceContract):
    plugin = ppauth_example_source

    @pytest.fixture
    def source(self, tmp_path):
        self.path = tmp_path / "profiles.json"
        self.profiles: dict[str, dict[str, str]] = {}
        return ppauth_example_source.JsonFileSource()

    def _write(self):
        self.path.write_text(json.dumps(self.profiles))
        self.path.chmod(0o600)

    def provision(self, profile):
        self.profiles[profile] = {
            "tenant_id": "contoso.onmicrosoft.com",
            "client_id": "c-" + profile,
            "client_secret": "s3cret-" + profile,
        }
        self._write()
        return ExpectedCredential(
            "secret", "contoso.onmicrosoft.com", "c-" + profile, ("s3cret-" + profile,)
        )

    def provision_broken(self, profile):
        self.profiles[profile] = {"tenant_id": "contoso.onmicrosoft.com"}
        self._write()

    def provision_unavailable(self, profile):
        # the store cannot be read: bytes that are not JSON (an undecryptable file)
        stored = self.provision(profile)
        self.path.write_bytes(b"\x00\xff" + stored.secrets[0].encode() + b" not json")
        return stored

    def request_for(self, profile):
        return make_request(profile, environ={"PPAUTH_JSONFILE": str(self.path)})


def test_end_to_end_through_the_entry_point(ppauth_emulator, ppauth_env, tmp_path):
    emu, s = ppauth_emulator, ppauth_emulator.sample
    path = tmp_path / "profiles.json"
    path.write_text(
        json.dumps(
            {
                "default": {
                    "tenant_id": s.tenant_id,
                    "client_id": s.client_id,
                    "client_secret": s.client_secret,
                    "authority_host": emu.authority_host,
                }
            }
        )
    )
    os.chmod(path, 0o600)
    ppauth_env.set(PPAUTH_JSONFILE=str(path))
    auth = PowerPlatformAuth(
        sources=["jsonfile"],
        verify=emu.ca_bundle,
        hosts={emu.api_url.split("//")[1]: "https://service.powerapps.com//.default"},
    )
    r = requests.get(
        emu.api_url + "/providers/Microsoft.BusinessAppPlatform/scopes/admin/environments",
        params={"api-version": "2020-10-01"},
        auth=auth,
        verify=emu.ca_bundle,
    )
    assert r.status_code == 200
    report = source_report(auth)  # the public answer to "which source answered, and why"
    assert report.answered_by == "jsonfile", str(report)
    assert report.answered is not None and report.answered.plugin == "jsonfile"
    assert report.answered.distribution == "requests-ppauth-example"
