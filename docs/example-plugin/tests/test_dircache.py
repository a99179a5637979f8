"""The example cache backend's whole contract test: a subclass of the core's
CacheBackendContract, plus one token through the emulator, the backend chosen by name."""

from __future__ import annotations

import stat

import pytest
from ppauth_example_source import JsonDirCache

from requests_ppauth import ClientSecret, PowerPlatformAuth
from requests_ppauth.testing.cache_contract import CacheBackendContract


class TestJsonDirCache(CacheBackendContract):
    shared_across_processes = True

    @pytest.fixture
    def backend(self, tmp_path):
        return JsonDirCache(tmp_path / "cache")

    def broken_backend(self, tmp_path):
        (tmp_path / "a-file").write_text("")  # a directory below a file: fails even for root
        return JsonDirCache(tmp_path / "a-file" / "cache")


def test_selected_by_name_it_stores_the_token(ppauth_emulator, ppauth_env, tmp_path):
    emu, s = ppauth_emulator, ppauth_emulator.sample
    directory = tmp_path / "tokens"

    def auth():
        return PowerPlatformAuth(
            credential=ClientSecret(
                tenant_id=s.tenant_id, client_id=s.client_id, secret=s.client_secret
            ),
            authority_host=emu.authority_host,
            verify=emu.ca_bundle,
            cache={"backend": "jsondir", "directory": str(directory)},
        )

    first = auth()
    assert isinstance(first.provider.cache, JsonDirCache)
    token = first.provider.get("https://service.powerapps.com//.default")
    assert emu.count("token") == 1
    # a second auth (a fresh process would do the same) finds it there
    again = auth().provider.get("https://service.powerapps.com//.default")
    assert again.token == token.token
    assert emu.count("token") == 1
    stored = JsonDirCache(directory).read_all()
    assert [e["secret"] for k, e in stored.items() if k.startswith("at:")] == [token.token]
    files = list(directory.glob("*.json"))
    assert len(files) == 1
    assert stat.S_IMODE(files[0].stat().st_mode) == 0o600
