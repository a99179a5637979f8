"""Sealed cache values: AES-256-GCM under ``PPAUTH_CACHE_KEY`` (the seal module), and
the file cache storing its entries sealed.

The sealer is exercised as it is used: real ``cryptography``, keys parsed from the
text a user sets, references resolved through a resolver registered with the public
plugin API, a key file on disk. The file cache is checked end to end against the
emulator with real processes, and by reading the SQLite files' raw bytes (a token
must not be in them) and their rows through a connection of our own.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import pickle
import sqlite3
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

import requests_ppauth
from requests_ppauth.cache import CacheWarning, Op
from requests_ppauth.cache import file as file_module
from requests_ppauth.cache.file import DB_FILE, SEALED_MARK, FileCache
from requests_ppauth.cache.seal import (
    KEY_VAR,
    Sealer,
    SealError,
    generate_key,
    parse_keys,
    sealer_from_environment,
)
from requests_ppauth.cache.select import resolve
from requests_ppauth.errors import (
    CacheError,
    ConfigurationError,
    SecretReferenceError,
    UnsafeFileError,
)
from requests_ppauth.plugins import get_plugins
from tests._cache_state import token_entry_key
from tests._cache_worker import SCOPE, digest
from tests.cache._calls import api_get, auth_for, sent_token

K1, K2, K3 = (bytes([n]) * 32 for n in (1, 2, 3))


def b64(key: bytes) -> str:
    return base64.b64encode(key).decode()


def raw_files(directory: Path) -> bytes:
    """Every byte of the cache's database and its side files, as on disk."""
    data = b""
    for suffix in ("", "-wal", "-shm", "-journal"):
        path = directory / (DB_FILE + suffix)
        if path.exists():
            data += path.read_bytes()
    return data


def rows(directory: Path) -> dict[str, object]:
    """key -> the stored value (bytes when sealed, str in the clear), read by our own
    read-only connection."""
    conn = sqlite3.connect((directory / DB_FILE).as_uri() + "?mode=ro", uri=True)
    try:
        return dict(conn.execute("SELECT key, value FROM entries"))
    finally:
        conn.close()


def meta_mark(directory: Path) -> object:
    conn = sqlite3.connect((directory / DB_FILE).as_uri() + "?mode=ro", uri=True)
    try:
        row = conn.execute("SELECT value FROM meta WHERE name=?", (SEALED_MARK,)).fetchone()
        return row[0] if row else None
    finally:
        conn.close()


@pytest.fixture
def fresh_warnings(monkeypatch):
    """The once-per-process warning, as in a fresh process."""
    monkeypatch.setattr(file_module, "_SEAL_WARNED", False)


# -- the sealer -----------------------------------------------------------------------------


def test_round_trip_and_blob_layout():
    sealer = Sealer([K1])
    blob = sealer.seal("at:abc", b'{"secret":"tok"}')
    assert sealer.open("at:abc", blob) == b'{"secret":"tok"}'
    # magic + version 1 + key id + 12-byte nonce + ciphertext (same length) + 16-byte tag
    assert blob[:4] == b"PPS\x01"
    assert blob[4:12].hex() == sealer.key_ids[0]
    assert len(blob) == 4 + 8 + 12 + len(b'{"secret":"tok"}') + 16
    assert b"tok" not in blob
    again = sealer.seal("at:abc", b'{"secret":"tok"}')
    assert again != blob  # a fresh nonce each time
    assert again[12:24] != blob[12:24]


def test_key_ids_are_short_hex_and_differ_per_key():
    ids = Sealer([K1, K2]).key_ids
    assert len(ids) == 2 and ids[0] != ids[1]
    assert all(len(i) == 16 and int(i, 16) >= 0 for i in ids)
    assert Sealer([K1]).key_ids == ids[:1]  # an id depends on its key only


def test_rotation_new_key_writes_listed_old_keys_read_removed_key_does_not():
    old = Sealer([K1])
    sealed_old = old.seal("at:x", b"v1")
    rotated = Sealer([K2, K1])
    assert rotated.open("at:x", sealed_old) == b"v1"  # the old key still reads
    sealed_new = rotated.seal("at:x", b"v2")
    assert sealed_new[4:12].hex() == rotated.key_ids[0] == Sealer([K2]).key_ids[0]
    with pytest.raises(SealError) as not_yet:  # a process not rotated yet cannot read it
        old.open("at:x", sealed_new)
    assert not_yet.value.key_id == Sealer([K2]).key_id
    retired = Sealer([K2])  # the old key dropped: what it sealed no longer opens
    with pytest.raises(SealError, match=old.key_id) as exc:
        retired.open("at:x", sealed_old)
    assert exc.value.key_id == old.key_id
    assert isinstance(exc.value, CacheError)


def test_a_value_copied_to_another_name_does_not_open():
    sealer = Sealer([K1])
    blob = sealer.seal("at:alice", b"alice's token")
    with pytest.raises(SealError, match="copied from another entry"):
        sealer.open("at:bob", blob)
    assert sealer.open("at:alice", blob) == b"alice's token"


def test_flipping_any_single_byte_is_refused():
    sealer = Sealer([K1, K2])
    blob = sealer.seal("msal:p", b"refresh token and friends")
    for position in range(len(blob)):
        for bit in (0x01, 0x80):
            tampered = bytearray(blob)
            tampered[position] ^= bit
            with pytest.raises(SealError):
                sealer.open("msal:p", bytes(tampered))
    with pytest.raises(SealError):  # cut short
        sealer.open("msal:p", blob[:-1])


def test_a_listed_key_id_swapped_into_the_header_does_not_open():
    sealer = Sealer([K1, K2])
    blob = sealer.seal("at:x", b"value")
    swapped = blob[:4] + bytes.fromhex(sealer.key_ids[1]) + blob[12:]
    with pytest.raises(SealError, match=sealer.key_ids[1]):
        sealer.open("at:x", swapped)


@pytest.mark.parametrize("blob", [b"", b'{"secret":"x"}', b"PPS", b"PPS\x01short"])
def test_a_value_that_is_not_sealed_is_refused(blob):
    with pytest.raises(SealError, match="not sealed"):
        Sealer([K1]).open("at:x", blob)


def test_a_future_format_version_says_to_upgrade():
    sealer = Sealer([K1])
    blob = bytearray(sealer.seal("at:x", b"value"))
    blob[3] = 2
    with pytest.raises(SealError, match="version 2.*upgrade"):
        sealer.open("at:x", bytes(blob))


def test_repr_errors_and_pickle_show_no_key():
    sealer = Sealer([K3, K1])
    text = repr(sealer)
    assert sealer.key_ids[0] in text and sealer.key_ids[1] in text
    for key in (K3, K1):
        assert b64(key) not in text and repr(key) not in text
    with pytest.raises(SealError) as exc:
        Sealer([K2]).open("at:x", sealer.seal("at:x", b"v"))
    assert b64(K3) not in str(exc.value) and b64(K2) not in str(exc.value)
    copy = pickle.loads(pickle.dumps(sealer))  # noqa: S301 - our own bytes
    assert copy.key_ids == sealer.key_ids
    assert copy.open("at:x", sealer.seal("at:x", b"v")) == b"v"


def test_generated_keys_are_base64_of_32_random_bytes():
    keys = {generate_key() for _ in range(50)}
    assert len(keys) == 50
    for key in keys:
        assert len(base64.b64decode(key, validate=True)) == 32
        assert parse_keys(key, KEY_VAR) == [base64.b64decode(key)]


def test_parse_keys_takes_comma_separated_keys_current_first():
    text = f" {b64(K2)} ,{b64(K1)},\n{b64(K2)}, "
    assert parse_keys(text, KEY_VAR) == [K2, K1, K2]
    assert Sealer(parse_keys(text, KEY_VAR)).key_ids == Sealer([K2, K1]).key_ids  # deduplicated


BAD_KEYS = {
    "too short": base64.b64encode(b"k" * 16).decode(),
    "too long": base64.b64encode(b"k" * 33).decode(),
    "not base64": "this-is-not-base64!" * 3,
    "no padding": b64(K1).rstrip("="),
    "urlsafe alphabet": base64.urlsafe_b64encode(b"\xff" * 32).decode(),
    "second key bad": f"{b64(K1)},c2hvcnQ=",
    "empty": "",
    "only commas": " , ,",
}


@pytest.mark.parametrize("name", sorted(BAD_KEYS))
def test_bad_keys_are_configuration_errors_naming_the_setting_never_the_value(name):
    value = BAD_KEYS[name]
    with pytest.raises(ConfigurationError) as exc:
        parse_keys(value, "PPAUTH_CACHE_KEY")
    message = str(exc.value)
    assert message.startswith("PPAUTH_CACHE_KEY")
    assert "ppauth cache keygen" in message
    for part in value.split(","):
        if part.strip():
            assert part.strip() not in message


@pytest.mark.parametrize("keys", [[], [b"short"], [K1, b"x" * 31], ["text" * 8]])
def test_a_sealer_refuses_anything_but_32_byte_keys(keys):
    with pytest.raises(ConfigurationError, match="ppauth cache keygen"):
        Sealer(keys)


# -- where the key comes from ---------------------------------------------------------------


def test_no_key_set_is_no_sealer(ppauth_env):
    assert sealer_from_environment() is None
    ppauth_env.set(PPAUTH_CACHE_KEY="  ")
    assert sealer_from_environment() is None
    assert sealer_from_environment({}) is None


def test_the_variable_and_an_explicit_value(ppauth_env):
    ppauth_env.set(PPAUTH_CACHE_KEY=f"{b64(K2)},{b64(K1)}")
    sealer = sealer_from_environment()
    assert sealer is not None and sealer.key_ids == Sealer([K2, K1]).key_ids
    assert sealer_from_environment({KEY_VAR: b64(K3)}).key_ids == Sealer([K3]).key_ids
    explicit = sealer_from_environment(value=b64(K3), setting="key of the cache table")
    assert explicit.key_ids == Sealer([K3]).key_ids  # the explicit value wins
    with pytest.raises(ConfigurationError, match="^key of the cache table is empty"):
        sealer_from_environment(value="", setting="key of the cache table")
    with pytest.raises(ConfigurationError, match="^key of the cache table: the key is not"):
        sealer_from_environment(value="no!pe", setting="key of the cache table")


def write_key_file(path: Path, text: str, mode: int) -> Path:
    path.write_text(text)
    path.chmod(mode)
    return path


@pytest.mark.parametrize("form", ["file:", ""])
def test_a_key_file_of_the_owner_only(ppauth_env, tmp_path, form):
    path = write_key_file(tmp_path / "cache.key", f"{b64(K2)}\n{b64(K1)}\n", 0o600)
    ppauth_env.set(PPAUTH_CACHE_KEY=f"{form}{path}")
    sealer = sealer_from_environment()
    assert sealer is not None and sealer.key_ids == Sealer([K2, K1]).key_ids


def test_a_key_file_readable_by_others_is_refused_unless_opted_out(ppauth_env, tmp_path):
    path = write_key_file(tmp_path / "cache.key", b64(K1), 0o644)
    ppauth_env.set(PPAUTH_CACHE_KEY=f"file:{path}")
    with pytest.raises(UnsafeFileError, match=r"chmod 600") as exc:
        sealer_from_environment()
    assert str(path) in str(exc.value) and "PPAUTH_CACHE_KEY" in str(exc.value)
    assert b64(K1) not in str(exc.value)
    ppauth_env.set(PPAUTH_ALLOW_SHARED_KEY_FILE="1")  # a read-only secret mount
    assert sealer_from_environment().key_ids == Sealer([K1]).key_ids


def test_a_missing_or_bad_key_file_names_the_file(ppauth_env, tmp_path):
    ppauth_env.set(PPAUTH_CACHE_KEY=f"file:{tmp_path / 'nothing'}")
    with pytest.raises(ConfigurationError, match="does not exist.*keygen"):
        sealer_from_environment()
    path = write_key_file(tmp_path / "bad.key", "c2hvcnQ=", 0o600)
    ppauth_env.set(PPAUTH_CACHE_KEY=str(path))
    with pytest.raises(ConfigurationError, match=f"the key file {path}.*base64 of 5 bytes, not 32"):
        sealer_from_environment()


def test_a_key_that_starts_with_a_slash_is_a_key_not_a_path(ppauth_env):
    """base64 has '/': one key in 64 starts with it and must not be read as a path
    (CI once drew such a key: "names the key file /S1gg..., which does not exist")."""
    slashed = next(k for k in (os.urandom(32) for _ in range(10_000)) if b64(k).startswith("/"))
    ppauth_env.set(PPAUTH_CACHE_KEY=f"{b64(slashed)},{b64(K1)}")
    sealer = sealer_from_environment()
    assert sealer is not None and sealer.key_ids == Sealer([slashed, K1]).key_ids


class KeyResolver:
    """Resolves ``testkey:NAME`` from a dict, counting calls."""

    name = "testkeys"
    schemes = ("testkey",)

    def __init__(self, secrets: dict[str, str | bytes]) -> None:
        self.secrets = secrets
        self.calls: list[tuple[str, str]] = []

    def claims(self, reference: str) -> bool:
        return reference.startswith("testkey:")

    def resolve(self, reference: str, request: requests_ppauth.SourceRequest) -> str | bytes:
        self.calls.append((reference, request.profile))
        name = reference.removeprefix("testkey:")
        if name not in self.secrets:
            raise SecretReferenceError(f"testkeys has no secret named {name!r}")
        return self.secrets[name]


class KeyResolverPlugin:
    def __init__(self, resolver: KeyResolver) -> None:
        self.resolver = resolver

    @requests_ppauth.hookimpl
    def ppauth_register_secret_resolvers(self, register):
        register(self.resolver)


@pytest.fixture
def key_resolver() -> KeyResolver:
    resolver = KeyResolver({"cache": f"{b64(K2)},{b64(K1)}", "raw": b64(K3).encode(), "bad": "x"})
    get_plugins().register(KeyResolverPlugin(resolver), name="test-keys")
    return resolver


def test_a_reference_is_resolved_by_a_registered_resolver(ppauth_env, key_resolver):
    ppauth_env.set(PPAUTH_CACHE_KEY="testkey:cache")
    assert sealer_from_environment().key_ids == Sealer([K2, K1]).key_ids
    assert sealer_from_environment(value="testkey:raw").key_ids == Sealer([K3]).key_ids  # bytes
    assert [c[0] for c in key_resolver.calls] == ["testkey:cache", "testkey:raw"]
    with pytest.raises(ConfigurationError, match=r"^the secret testkey:bad \(PPAUTH_CACHE_KEY\)"):
        sealer_from_environment(value="testkey:bad")
    with pytest.raises(SecretReferenceError, match="no secret named 'missing'"):
        sealer_from_environment(value="testkey:missing")


def test_an_unknown_or_uninstalled_reference_says_what_is_installed(ppauth_env, key_resolver):
    with pytest.raises(SecretReferenceError, match="unknown secret scheme 'vault'.*testkey"):
        sealer_from_environment(value="vault:cachekey")
    # the keyring plugin is not loaded in the core's tests: the error says what to install
    with pytest.raises(SecretReferenceError, match="pip install requests-ppauth-keyring"):
        sealer_from_environment(value="keyring:cachekey")


# -- the file cache, sealed -----------------------------------------------------------------


def test_sealed_cache_end_to_end_a_second_process_reads_it_and_disk_shows_no_token(
    ppauth_emulator, ppauth_env, children, fresh_warnings
):
    emu = ppauth_emulator
    ppauth_env.use_emulator(emu, "secret")
    ppauth_env.set(PPAUTH_CACHE_KEY=generate_key())
    auth = auth_for(emu)
    token = sent_token(api_get(emu, auth))
    assert emu.count("token") == 1

    result = children("get", emu.api_url, emu.ca_bundle).result()  # inherits the key
    assert result["status"] == 200
    assert result["token"] == digest(token)
    assert emu.count("token") == 1  # read from the sealed cache, not fetched again

    stored = rows(ppauth_env.cache_dir)
    entry_key = token_entry_key(auth.provider.key(SCOPE))
    assert set(stored) == {entry_key}
    assert isinstance(stored[entry_key], bytes) and stored[entry_key][:4] == b"PPS\x01"
    disk = raw_files(ppauth_env.cache_dir)
    assert token.encode() not in disk
    assert token.encode()[20:60] not in disk
    assert b'"secret"' not in disk and b"service.powerapps.com" not in disk
    # and without the key the same file gives nothing: a miss
    with pytest.warns(CacheWarning, match="does not open"):
        assert FileCache(ppauth_env.cache_dir, {"key": generate_key()}).get([entry_key]) == {}


def test_a_wrong_key_is_a_miss_with_one_warning_and_a_new_token(
    ppauth_emulator, ppauth_env, fresh_warnings, caplog
):
    emu = ppauth_emulator
    ppauth_env.use_emulator(emu, "secret")
    ppauth_env.set(PPAUTH_CACHE_KEY=b64(K1))
    first = sent_token(api_get(emu, auth_for(emu)))
    ppauth_env.set(PPAUTH_CACHE_KEY=b64(K2))  # another key: nothing it can open
    auth = auth_for(emu)
    entry_key = token_entry_key(auth.provider.key(SCOPE))
    with warnings.catch_warnings(record=True) as caught, caplog.at_level(logging.DEBUG):
        warnings.simplefilter("always")
        cache = FileCache(ppauth_env.cache_dir)
        assert cache.get([entry_key]) == {}
        assert cache.get([entry_key]) == {}
        assert FileCache(ppauth_env.cache_dir).read_all() == {}
        second = sent_token(api_get(emu, auth))
    assert second != first
    assert emu.count("token") == 2  # fetched anew, never a crash
    seal_warnings = [w for w in caught if issubclass(w.category, CacheWarning)]
    assert len(seal_warnings) == 1
    warned = [r for r in caplog.records if r.levelno == logging.WARNING and "open" in r.message]
    assert len(warned) == 1
    assert Sealer([K1]).key_id in warned[0].message  # the key it was sealed with, by id
    for text in (str(seal_warnings[0].message), caplog.text):
        assert b64(K1) not in text and b64(K2) not in text and first not in text
    # the new token was stored under the new key: a fresh reader with it needs no request
    assert auth_for(emu).provider.get(SCOPE).token == second
    assert emu.count("token") == 2


def test_sealed_entries_read_without_a_key_are_misses_that_say_to_set_it(
    ppauth_env, fresh_warnings
):
    FileCache(ppauth_env.cache_dir, {"key": b64(K1)}).apply([Op("at:x", {"secret": "s"})])
    with pytest.warns(CacheWarning, match="Set PPAUTH_CACHE_KEY"):
        assert FileCache(ppauth_env.cache_dir).get(["at:x"]) == {}


def test_a_tampered_value_on_disk_is_a_miss(ppauth_env, fresh_warnings):
    cache = FileCache(ppauth_env.cache_dir, {"key": b64(K1)})
    cache.apply([Op("at:x", {"secret": "s", "expires_on": 4e9}), Op("at:y", {"secret": "t"})])
    conn = sqlite3.connect(ppauth_env.cache_dir / DB_FILE)
    blob = bytearray(conn.execute("SELECT value FROM entries WHERE key='at:x'").fetchone()[0])
    blob[-1] ^= 1
    with conn:
        conn.execute("UPDATE entries SET value=? WHERE key='at:x'", (bytes(blob),))
    conn.close()
    with pytest.warns(CacheWarning, match="does not open"):
        assert FileCache(ppauth_env.cache_dir, {"key": b64(K1)}).get(["at:x", "at:y"]) == {
            "at:y": {"secret": "t"}
        }


def test_a_copied_value_on_disk_does_not_open_under_another_entry(ppauth_env, fresh_warnings):
    cache = FileCache(ppauth_env.cache_dir, {"key": b64(K1)})
    cache.apply([Op("at:alice", {"secret": "alice"}), Op("at:bob", {"secret": "bob"})])
    conn = sqlite3.connect(ppauth_env.cache_dir / DB_FILE)
    with conn:
        conn.execute(
            "UPDATE entries SET value=(SELECT value FROM entries WHERE key='at:alice') "
            "WHERE key='at:bob'"
        )
    conn.close()
    with pytest.warns(CacheWarning, match="copied from another entry"):
        assert FileCache(ppauth_env.cache_dir, {"key": b64(K1)}).read_all() == {
            "at:alice": {"secret": "alice"}
        }


def test_an_unsealed_cache_is_read_with_a_key_and_sealed_whole_by_the_next_write(
    ppauth_emulator, ppauth_env
):
    emu = ppauth_emulator
    ppauth_env.use_emulator(emu, "secret")
    token = sent_token(api_get(emu, auth_for(emu)))  # no key: written in the clear
    assert token.encode() in raw_files(ppauth_env.cache_dir)  # the check below can fail

    ppauth_env.set(PPAUTH_CACHE_KEY=b64(K1))
    assert sent_token(api_get(emu, auth_for(emu))) == token  # still read: no new request
    assert emu.count("token") == 1
    FileCache(ppauth_env.cache_dir).apply([Op("x:other", {"v": 1})])  # any write
    assert all(isinstance(v, bytes) for v in rows(ppauth_env.cache_dir).values())
    assert token.encode() not in raw_files(ppauth_env.cache_dir)
    assert meta_mark(ppauth_env.cache_dir) == Sealer([K1]).key_id
    assert sent_token(api_get(emu, auth_for(emu))) == token
    assert emu.count("token") == 1

    ppauth_env.set(PPAUTH_CACHE_KEY=None)  # a write without a key undoes the mark
    FileCache(ppauth_env.cache_dir).apply([Op("x:plain", {"v": 2})])
    assert meta_mark(ppauth_env.cache_dir) is None
    assert isinstance(rows(ppauth_env.cache_dir)["x:plain"], str)


def test_rotation_in_the_file_cache_reseals_under_the_new_key(ppauth_env):
    FileCache(ppauth_env.cache_dir, {"key": b64(K1)}).apply(
        [Op(f"at:{n}", {"secret": f"s{n}"}) for n in range(5)]
    )
    rotated = FileCache(ppauth_env.cache_dir, {"key": f"{b64(K2)},{b64(K1)}"})
    assert rotated.get(["at:3"]) == {"at:3": {"secret": "s3"}}  # the old key reads
    rotated.apply([Op("at:new", {"secret": "n"})])  # the new key writes, and reseals
    new_id = bytes.fromhex(Sealer([K2]).key_id)
    assert {v[4:12] for v in rows(ppauth_env.cache_dir).values()} == {new_id}
    only_new = FileCache(ppauth_env.cache_dir, {"key": b64(K2)})
    assert len(only_new.read_all()) == 6  # the old key can be dropped now


def test_patches_and_conditional_deletes_work_on_sealed_entries(ppauth_env):
    cache = FileCache(ppauth_env.cache_dir, {"key": b64(K1)})
    cache.apply([Op("msal:p", fields={"RefreshToken/a": {"secret": "r1"}})])
    cache.apply([Op("msal:p", fields={"Account/b": {"home": "x"}})])
    cache.apply([Op("at:t", {"secret": "old"})])
    cache.apply([Op("at:t", if_secret="other")])  # not the stored secret: kept
    assert cache.get(["msal:p", "at:t"]) == {
        "msal:p": {"RefreshToken/a": {"secret": "r1"}, "Account/b": {"home": "x"}},
        "at:t": {"secret": "old"},
    }
    cache.apply([Op("at:t", if_secret="old"), Op("msal:p", fields={"RefreshToken/a": None})])
    assert cache.get(["msal:p", "at:t"]) == {"msal:p": {"Account/b": {"home": "x"}}}
    assert b"r1" not in raw_files(ppauth_env.cache_dir)


def test_pruning_still_reads_expiry_of_sealed_entries(ppauth_env, monkeypatch):
    cache = FileCache(ppauth_env.cache_dir, {"key": b64(K1)})
    cache.apply([Op("msal:p", {"a": 1})])  # the first write of a cache sweeps: now done
    cache.apply([Op("at:old", {"secret": "s", "expires_on": 1000.0})])
    conn = sqlite3.connect((ppauth_env.cache_dir / DB_FILE).as_uri() + "?mode=ro", uri=True)
    assert dict(conn.execute("SELECT key, expires_on FROM entries")) == {
        "at:old": 1000.0,
        "msal:p": None,
    }
    conn.close()
    monkeypatch.setattr(file_module, "PRUNE_EVERY", 0.0)
    FileCache(ppauth_env.cache_dir, {"key": b64(K1)}).apply([Op("at:fresh", {"secret": "t"})])
    assert set(rows(ppauth_env.cache_dir)) == {"msal:p", "at:fresh"}


def test_the_key_option_of_a_cache_table(ppauth_env, tmp_path, key_resolver):
    path = write_key_file(tmp_path / "k", b64(K3), 0o600)
    backend = resolve({"backend": "file", "key": f"file:{path}"}, environ={})
    assert isinstance(backend, FileCache) and backend.sealer is not None
    assert backend.sealer.key_ids == Sealer([K3]).key_ids
    ppauth_env.set(PPAUTH_CACHE_KEY=b64(K1))  # the option wins over the variable
    assert resolve({"backend": "file", "key": "testkey:cache"}).sealer.key_ids == (
        Sealer([K2, K1]).key_ids
    )
    with pytest.raises(ConfigurationError, match="cache backend 'file': the file cache's key"):
        resolve({"backend": "file", "key": "bad"}, environ={})
    with pytest.raises(ConfigurationError, match="key option is text"):
        resolve({"backend": "file", "key": 42}, environ={})


def test_a_bad_variable_fails_loudly_and_names_it(ppauth_env):
    ppauth_env.set(PPAUTH_CACHE_KEY="c2hvcnQ=")
    with pytest.raises(ConfigurationError, match="^PPAUTH_CACHE_KEY: the key is base64 of 5"):
        FileCache(ppauth_env.cache_dir)


def test_a_pickled_file_cache_carries_the_setting_not_the_key(ppauth_env, tmp_path):
    path = write_key_file(tmp_path / "k", b64(K3), 0o600)
    cache = FileCache(ppauth_env.cache_dir, {"key": f"file:{path}"})
    data = pickle.dumps(cache)
    assert K3 not in data and b64(K3).encode() not in data
    copy = pickle.loads(data)  # noqa: S301 - our own bytes
    assert copy.sealer.key_ids == cache.sealer.key_ids
    given = FileCache(ppauth_env.cache_dir, sealer=Sealer([K2]))  # a sealer given travels whole
    assert pickle.loads(pickle.dumps(given)).sealer.key_ids == Sealer([K2]).key_ids  # noqa: S301
    assert FileCache(ppauth_env.cache_dir).sealer is None
    assert "PPAUTH_CACHE_KEY" not in os.environ


# -- the CLI --------------------------------------------------------------------------------


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "requests_ppauth.cli", *args],
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )


def test_keygen_prints_a_new_usable_key_and_json(ppauth_env):
    first, second = cli("cache", "keygen"), cli("cache", "keygen", "--json")
    assert first.returncode == 0 and second.returncode == 0, first.stderr + second.stderr
    key = first.stdout.strip()
    assert len(base64.b64decode(key, validate=True)) == 32
    data = json.loads(second.stdout)
    assert data["key"] != key
    assert data["key_id"] == Sealer(parse_keys(data["key"], KEY_VAR)).key_id


def test_cache_path_and_doctor_say_whether_entries_are_sealed_by_key_id(ppauth_env):
    plain = cli("cache", "path", "--json")
    assert json.loads(plain.stdout)["sealed"] is False
    assert "not sealed" in cli("cache", "path").stderr
    ppauth_env.set(PPAUTH_CACHE_KEY=f"{b64(K2)},{b64(K1)}")
    sealed = cli("cache", "path")
    assert sealed.stdout.strip() == str(ppauth_env.cache_dir / DB_FILE)  # stdout: the path only
    ids = Sealer([K2, K1]).key_ids
    assert f"key ids {ids[0]}, {ids[1]}" in sealed.stderr
    assert json.loads(cli("cache", "path", "--json").stdout)["key_ids"] == list(ids)
    doctor = cli("doctor")
    assert f"key ids {ids[0]}, {ids[1]}" in doctor.stdout + doctor.stderr
    for proc in (sealed, doctor):
        assert b64(K1) not in proc.stdout + proc.stderr and b64(K2) not in proc.stdout + proc.stderr
