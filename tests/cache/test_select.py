"""Choosing a cache backend without code, the same way in the library and in every
``ppauth`` command: ``cache=``, ``PPAUTH_CACHE``, a profile's ``cache``, ``--cache``;
names nobody registered are errors that list the registered ones."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from requests_ppauth import ConfigurationError, PowerPlatformAuth
from requests_ppauth.cache import FileCache, MemoryCache
from requests_ppauth.cache.select import resolve
from tests._cache_state import entries
from tests._cache_worker import BAP_PATH, SCOPE
from tests.cache._calls import auth_for


def ppauth(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "requests_ppauth.cli", *args],
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )


@pytest.mark.parametrize(
    ("setting", "kind"),
    [
        ("file", FileCache),
        ("memory", MemoryCache),
        (False, MemoryCache),
        (True, FileCache),
        (None, FileCache),
        ({"backend": "memory"}, MemoryCache),
    ],
)
def test_a_setting_names_a_backend(ppauth_env, setting, kind):
    assert isinstance(resolve(setting), kind)


@pytest.mark.parametrize("text", ["./tokens", "sub/dir", "~/ppauth-cache", ".", ".."])
def test_a_path_is_a_directory_of_the_file_cache(ppauth_env, text):
    backend = resolve(text)
    assert isinstance(backend, FileCache)
    assert backend.directory == Path(text).expanduser()


def test_a_table_passes_its_options_to_the_factory(ppauth_env, tmp_path):
    backend = resolve({"backend": "file", "directory": str(tmp_path / "x")})
    assert isinstance(backend, FileCache) and backend.directory == tmp_path / "x"
    with pytest.raises(ConfigurationError, match="file.*only 'directory'.*colour"):
        resolve({"backend": "file", "colour": "blue"})
    with pytest.raises(ConfigurationError, match=r"backend = "):
        resolve({"directory": str(tmp_path / "y")})


@pytest.mark.parametrize("typo", ["sqlit", "redis", "File"])
def test_a_name_nobody_registered_is_an_error_listing_the_names(
    ppauth_env, tmp_path, monkeypatch, typo
):
    here = tmp_path / "cwd"
    here.mkdir()
    monkeypatch.chdir(here)
    with pytest.raises(ConfigurationError) as error:
        resolve(typo)
    message = str(error.value)
    assert repr(typo) in message and "registered: file, memory" in message
    assert f"./{typo}" in message  # how to say "a directory"
    assert list(here.iterdir()) == []  # no ./sqlit/ created


@pytest.mark.parametrize("empty", ["", "   "])
def test_an_empty_setting_is_an_error(ppauth_env, empty):
    with pytest.raises(ConfigurationError, match="empty"):
        resolve(empty)


def test_ppauth_cache_wins_over_the_profile_and_cache_true(ppauth_env, tmp_path):
    ppauth_env.write_config(f'[profiles.default]\ncache = "{tmp_path / "profile"}"\n')
    auth = PowerPlatformAuth()
    assert isinstance(auth._cache_backend(), FileCache)
    assert auth._cache_backend().directory == tmp_path / "profile"
    ppauth_env.set(PPAUTH_CACHE="memory")
    assert isinstance(PowerPlatformAuth()._cache_backend(), MemoryCache)
    ppauth_env.set(PPAUTH_CACHE="nope")
    with pytest.raises(ConfigurationError, match="PPAUTH_CACHE: no cache backend is named 'nope'"):
        PowerPlatformAuth()._cache_backend()
    # an explicit cache= is the caller's choice
    assert isinstance(PowerPlatformAuth(cache="file")._cache_backend(), FileCache)


@pytest.mark.parametrize(
    ("value", "message"),
    [('""', "cache must be"), ("3", "cache must be"), ('{ url = "x" }', "cache must be")],
)
def test_a_profile_cache_of_the_wrong_shape_names_the_file(ppauth_env, value, message):
    path = ppauth_env.write_config(f"[profiles.default]\ncache = {value}\n")
    with pytest.raises(ConfigurationError, match=message) as error:
        PowerPlatformAuth()._cache_backend()
    assert str(path) in str(error.value)


def test_a_profile_table_reaches_the_factory(ppauth_emulator, ppauth_env, tmp_path):
    emu = ppauth_emulator
    ppauth_env.use_emulator(emu, "secret")
    chosen = tmp_path / "from-profile"
    ppauth_env.write_config(
        f'[profiles.default]\ncache = {{ backend = "file", directory = "{chosen}" }}\n'
    )
    r = requests.get(emu.api_url + BAP_PATH, auth=auth_for(emu), verify=emu.ca_bundle)
    assert r.status_code == 200
    assert [e["scope"] for e in entries(chosen).values()] == [SCOPE]
    assert not ppauth_env.cache_dir.exists()


def test_the_cli_uses_the_same_setting(ppauth_emulator, ppauth_env, tmp_path):
    emu = ppauth_emulator
    ppauth_env.use_emulator(emu, "secret")
    chosen = tmp_path / "chosen"
    ppauth_env.write_config(f'[profiles.default]\ncache = "{chosen}"\n')

    assert ppauth("cache", "path").stdout.strip() == str(chosen / "cache.db")
    assert ppauth("token").returncode == 0
    listed = json.loads(ppauth("cache", "list", "--json").stdout)
    assert [t["scope"] for t in listed["tokens"]] == ["https://api.powerplatform.com/.default"]
    assert "removed 1 token" in ppauth("cache", "clear").stdout
    assert entries(chosen) == {}
    assert not ppauth_env.cache_dir.exists()  # PPAUTH_CACHE_DIR was never the one

    # --cache and PPAUTH_CACHE pick another; memory is this command's only
    assert ppauth("--cache", "memory", "cache", "path").stdout.startswith("memory (process ")
    other = tmp_path / "other"
    assert ppauth("--cache", str(other), "token").returncode == 0
    assert len(entries(other)) == 1 and entries(chosen) == {}
    assert emu.count("token") == 2

    ppauth_env.set(PPAUTH_CACHE="sqlit")
    for command in (("token",), ("cache", "list"), ("logout",)):
        proc = ppauth(*command)
        assert proc.returncode == 1, (command, proc.stdout, proc.stderr)
        assert "no cache backend is named 'sqlit'" in proc.stderr
        assert "registered: file, memory" in proc.stderr and "Traceback" not in proc.stderr
    doctor = json.loads(ppauth("doctor", "--json").stdout)
    (check,) = [c for c in doctor["checks"] if c["name"] == "cache"]
    assert check["status"] == "fail" and "sqlit" in check["detail"]


def test_a_plaintext_cache_key_in_a_readable_config_is_refused(ppauth_env, tmp_path):
    """The sealing key in clear in a file others can read would unseal every token:
    refused as a plaintext client_secret is, by the library and by every command."""
    from requests_ppauth import UnsafeFileError
    from requests_ppauth.cache.seal import generate_key

    key = generate_key()
    directory = tmp_path / "tokens"
    ppauth_env.write_config(
        f'[profiles.default]\ncache = {{ backend = "file", directory = "{directory}", '
        f'key = "{key}" }}\n',
        mode=0o640,
    )
    with pytest.raises(UnsafeFileError) as caught:
        _ = PowerPlatformAuth(credential=None).provider
    assert "plaintext key" in str(caught.value) and "mode 640" in str(caught.value)
    assert key not in str(caught.value)
    assert not directory.exists()  # refused before the backend made anything

    proc = ppauth("cache", "path")
    assert proc.returncode != 0 and "plaintext key" in proc.stderr
    assert key not in proc.stdout + proc.stderr

    ppauth_env.write_config(ppauth_env.config_path.read_text(), mode=0o600)
    assert PowerPlatformAuth(credential=None).provider.cache is not None
