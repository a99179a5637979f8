"""The file cache on disk (SQLite): unusable and unsafe files and directories, modes of
what gets created, concurrent writers of threads and processes, a 401 dropping a
token from disk, store failures, ``cache=`` options, the
``ppauth_register_cache_backends`` hook, whole batches under a hammering reader,
removed secrets, damaged rows and pruning.

Real files, real processes, the emulator over HTTPS; nothing is mocked.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import sqlite3
import stat
import threading
import time
import warnings
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
import requests

from requests_ppauth import CacheError, ClientSecret, hookimpl
from requests_ppauth import plugins as plugins_module
from requests_ppauth.cache import CacheBackend, CacheWarning, MemoryCache, Op, apply_ops
from requests_ppauth.cache.file import DB_FILE as CACHE_FILE
from requests_ppauth.cache.file import FileCache
from requests_ppauth.plugins import PluginRegistrationError, Plugins, get_plugins
from tests._cache_state import entries, group, load, on_disk, token_entry_key
from tests._cache_worker import BAP_PATH, SCOPE, digest
from tests.cache._calls import api_get, auth_for, sent_token


def _foreign_database() -> bytes:
    """Another program's SQLite database, as bytes."""
    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE TABLE entries (k TEXT, v BLOB)")
    conn.execute("INSERT INTO entries VALUES ('x', 'y')")
    data = conn.serialize()
    conn.close()
    return bytes(data)


UNUSABLE = {
    "garbage-bytes": b"\x00\x13\x37 this is not a token cache {{{ \x7f" * 40,
    "old-json-format": b'{"AccessToken": {}, "PPAuthToken": {}}',
    "truncated-sqlite-header": b"SQLite format 3\x00\x20\x00",
    "sqlite-header-then-garbage": b"SQLite format 3\x00" + b"\xff" * 4000,
    "another-programs-database": _foreign_database(),
}


def write_file(path: Path, content: bytes, mode: int = 0o600) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as fh:
        fh.write(content)
    os.chmod(path, mode)


def mode_of(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


@contextlib.contextmanager
def cache_warnings() -> Iterator[list[warnings.WarningMessage]]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        found: list[warnings.WarningMessage] = []
        yield found
    found += [w for w in caught if issubclass(w.category, CacheWarning)]


def corrupt_aside(directory: Path) -> list[Path]:
    return sorted(directory.glob(f"{CACHE_FILE}.corrupt-*"))


# -- unusable files -------------------------------------------------------------------------


@pytest.mark.parametrize("content", list(UNUSABLE.values()), ids=list(UNUSABLE))
def test_unusable_file_is_moved_aside_reported_once_and_a_new_cache_started(ppauth_env, content):
    directory = ppauth_env.cache_dir
    directory.mkdir(mode=0o700)
    write_file(directory / CACHE_FILE, content)

    with cache_warnings() as caught:
        cache = FileCache(directory)
        assert cache.get(["at:x"]) == {}
        assert cache.read_all() == {}
        cache.apply([Op("at:x", {"secret": "s"})])
    assert len(caught) == 1, [str(w.message) for w in caught]
    assert str(directory / CACHE_FILE) in str(caught[0].message)
    (aside,) = corrupt_aside(directory)
    assert aside.read_bytes() == content  # kept as it was, for inspection
    assert mode_of(aside) == 0o600
    assert entries(directory) == {"at:x": {"secret": "s"}}  # the new cache works

    # broken again: another FileCache moves it aside again (both kept) and says so
    write_file(directory / CACHE_FILE, content + b"#2")
    for side in ("-wal", "-shm"):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(str(directory / CACHE_FILE) + side)
    with cache_warnings() as caught:
        assert FileCache(directory).get(["at:x"]) == {}
    assert len(caught) == 1
    assert sorted(p.read_bytes() for p in corrupt_aside(directory)) == sorted(
        [content, content + b"#2"]
    )


def test_an_empty_file_is_adopted_as_a_new_cache(ppauth_env):
    directory = ppauth_env.cache_dir
    directory.mkdir(mode=0o700)
    write_file(directory / CACHE_FILE, b"")
    with cache_warnings() as caught:
        FileCache(directory).apply([Op("at:x", {"secret": "s"})])
    assert caught == [] and corrupt_aside(directory) == []
    assert entries(directory) == {"at:x": {"secret": "s"}}


def test_a_damaged_row_is_skipped_and_replaced_by_the_next_write(ppauth_env, caplog):
    directory = ppauth_env.cache_dir
    cache = FileCache(directory)
    cache.apply([Op("at:good", {"secret": "g"}), Op("at:bad", {"secret": "b"})])
    conn = sqlite3.connect(directory / CACHE_FILE)
    conn.execute("UPDATE entries SET value='{not json' WHERE key='at:bad'")
    conn.commit()
    conn.close()
    caplog.set_level(logging.WARNING, logger="requests_ppauth.cache")

    assert FileCache(directory).get(["at:good", "at:bad"]) == {"at:good": {"secret": "g"}}
    assert "damaged entry" in caplog.text
    FileCache(directory).apply([Op("at:bad", fields={"n": 1})])  # a patch starts it afresh
    assert FileCache(directory).get(["at:bad"]) == {"at:bad": {"n": 1}}


@pytest.mark.parametrize("content", list(UNUSABLE.values()), ids=list(UNUSABLE))
def test_after_an_unusable_file_a_token_is_fetched_and_stored_normally(
    ppauth_emulator, ppauth_env, content
):
    emu = ppauth_emulator
    ppauth_env.use_emulator(emu, "secret")
    directory = ppauth_env.cache_dir
    directory.mkdir(mode=0o700)
    write_file(directory / CACHE_FILE, content)
    auth = auth_for(emu)

    with cache_warnings() as caught:
        token = sent_token(api_get(emu, auth))
        api_get(emu, auth)
    assert len(caught) == 1
    assert emu.count("token") == 1
    (aside,) = corrupt_aside(directory)
    assert aside.read_bytes() == content
    data = entries(directory)
    entry = data[token_entry_key(auth.provider.key(SCOPE))]
    assert entry["secret"] == token
    assert entry["client_id"] == emu.sample.client_id
    assert entry["refresh_on"] < entry["expires_on"]
    assert list(data) == [token_entry_key(auth.provider.key(SCOPE))]  # one copy, ours


# -- unsafe files and directories ---------------------------------------------------------


CACHE_FILES = pytest.mark.parametrize("name", [CACHE_FILE, CACHE_FILE + "-wal"])


@CACHE_FILES
@pytest.mark.parametrize("target_exists", [True, False], ids=["link", "dangling-link"])
def test_symlinked_cache_file_is_refused_and_its_target_left_alone(
    ppauth_emulator, ppauth_env, target_exists, name
):
    emu = ppauth_emulator
    ppauth_env.use_emulator(emu, "secret")
    directory = ppauth_env.cache_dir
    # kept open: SQLite deletes its log when the last connection closes, link or not
    first = FileCache(directory)
    first.apply([Op("at:x", {"secret": "s"})])
    target = ppauth_env.root / "elsewhere.json"
    if target_exists:
        write_file(target, b'{"AccessToken": {}}')
        before = (target.read_bytes(), os.stat(target).st_mtime_ns, os.stat(target).st_ino)
    link = directory / name
    with contextlib.suppress(FileNotFoundError):
        link.unlink()
    link.symlink_to(target)

    with pytest.raises(CacheError, match="symbolic link") as read_error:
        FileCache(directory).get(["at:k"])
    assert str(link) in str(read_error.value)
    with pytest.raises(CacheError, match="symbolic link"):
        FileCache(directory).apply([Op("at:k", {"secret": "s"})])
    with pytest.raises(CacheError, match="symbolic link"):
        requests.get(emu.api_url + BAP_PATH, auth=auth_for(emu), verify=emu.ca_bundle)

    assert emu.counts() == {}  # refused before anything was sent
    assert link.is_symlink()
    if name == CACHE_FILE:  # a process that had the cache open sees the swap and refuses too
        with pytest.raises(CacheError, match="symbolic link"):
            first.get(["at:x"])
    if target_exists:
        after = (target.read_bytes(), os.stat(target).st_mtime_ns, os.stat(target).st_ino)
        assert after == before
    else:
        assert not target.exists()


@CACHE_FILES
def test_cache_file_of_another_user_is_refused(ppauth_env, name):
    directory = ppauth_env.cache_dir
    FileCache(directory).prepare()
    path = directory / name
    write_file(path, b"{}") if not path.exists() else None
    before = path.read_bytes()
    os.chown(path, 4242, -1)

    with pytest.raises(CacheError, match=r"belongs to another user \(uid 4242\)") as error:
        FileCache(directory).get(["at:k"])
    assert str(path) in str(error.value)
    with pytest.raises(CacheError, match="another user"):
        FileCache(directory).apply([Op("at:k", {"secret": "s"})])
    assert os.stat(path).st_uid == 4242
    assert path.read_bytes() == before


def test_cache_directory_of_another_user_is_refused(ppauth_env):
    directory = ppauth_env.cache_dir
    directory.mkdir(mode=0o700)
    os.chown(directory, 4242, -1)

    with pytest.raises(CacheError, match="directory .* belongs to another user"):
        FileCache(directory).get(["at:k"])
    assert list(directory.iterdir()) == []


@CACHE_FILES
@pytest.mark.parametrize("mode", [0o644, 0o660, 0o604], ids=oct)
def test_cache_file_readable_by_others_is_refused_with_chmod_600(ppauth_env, mode, name):
    directory = ppauth_env.cache_dir
    FileCache(directory).prepare()
    path = directory / name
    if not path.exists():
        write_file(path, b"", mode)
    os.chmod(path, mode)
    before = path.read_bytes()

    with pytest.raises(CacheError, match=rf"chmod 600 {path}") as error:
        FileCache(directory).get(["at:k"])
    assert f"mode {mode:o}" in str(error.value)
    with pytest.raises(CacheError, match="chmod 600"):
        FileCache(directory).apply([Op("at:k", {"secret": "s"})])
    assert mode_of(path) == mode  # reported, not silently changed
    assert path.read_bytes() == before


@pytest.mark.parametrize("mode", [0o755, 0o750, 0o701], ids=oct)
def test_cache_directory_open_to_others_is_refused_with_chmod_700(ppauth_env, mode):
    directory = ppauth_env.cache_dir
    directory.mkdir()
    directory.chmod(mode)

    with pytest.raises(CacheError, match=rf"chmod 700 {directory}"):
        FileCache(directory).get(["at:k"])
    with pytest.raises(CacheError, match="chmod 700"):
        FileCache(directory).apply([Op("at:k", {"secret": "s"})])
    assert list(directory.iterdir()) == []
    assert mode_of(directory) == mode


def test_a_missing_cache_directory_is_created_0700_with_files_0600(
    ppauth_emulator, ppauth_env, children
):
    emu = ppauth_emulator
    ppauth_env.use_emulator(emu, "secret")
    directory = ppauth_env.root / "not" / "there" / "yet"
    ppauth_env.set(PPAUTH_CACHE_DIR=str(directory))

    # umask 0: the modes must come from the code, not from a friendly umask
    result = children("get", emu.api_url, emu.ca_bundle, umask=0).result()

    assert result["status"] == 200
    made = sorted(directory.rglob("*"))
    names = {p.relative_to(directory).as_posix() for p in made}
    assert {CACHE_FILE, CACHE_FILE + ".lock", "locks"} <= names
    assert any(n.startswith("locks/") and n.endswith(".lock") for n in names), names
    assert mode_of(directory) == 0o700
    wrong = {
        p.relative_to(directory).as_posix(): oct(mode_of(p))
        for p in made
        if mode_of(p) != (0o700 if p.is_dir() else 0o600)
    }
    assert wrong == {}
    assert all(os.lstat(p).st_uid == os.geteuid() for p in [directory, *made])


# -- concurrent writers -------------------------------------------------------------------


def test_concurrent_writers_of_different_keys_keep_every_entry(tmp_path, children):
    directory = tmp_path / "cache"
    shared = FileCache(directory)  # several threads on one object...
    kids = [children("write", str(directory), "W", f"proc{n}", "40", "--wait") for n in range(3)]
    for kid in kids:
        kid.ready()
    barrier = threading.Barrier(8)
    errors: list[BaseException] = []

    def writer(name: str, cache: FileCache) -> None:
        try:
            barrier.wait()
            for i in range(40):
                cache.apply([Op(f"W:{name}-{i}", {"v": i})])
        except BaseException as exc:  # reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(f"shared{n}", shared)) for n in range(4)]
    # ...and threads with their own object, like separate processes
    threads += [
        threading.Thread(target=writer, args=(f"own{n}", FileCache(directory))) for n in range(4)
    ]
    for thread in threads:
        thread.start()
    for kid in kids:
        kid.go()
    for thread in threads:
        thread.join(60)
    results = [kid.result() for kid in kids]

    assert errors == []
    assert [r["written"] for r in results] == [40] * 3
    names = [f"shared{n}" for n in range(4)] + [f"own{n}" for n in range(4)]
    names += [f"proc{n}" for n in range(3)]
    expected = {f"{name}-{i}": i for name in names for i in range(40)}
    section = group(directory, "W")
    assert sorted(set(expected) - set(section)) == []
    assert section == expected


@pytest.mark.parametrize("where", ["process", "thread"])
def test_two_apps_sharing_a_cache_both_end_up_in_it_each_token_once(
    ppauth_emulator, ppauth_env, children, where
):
    emu = ppauth_emulator
    ppauth_env.use_emulator(emu, "secret")  # app A: the sample app, from the environment
    app_b = emu.add_app(secret="second-app-secret", name="second")
    cred_b = ClientSecret(
        tenant_id=emu.sample.tenant_id,
        client_id=app_b.client_id,
        secret="second-app-secret",
        authority_host=emu.authority_host,
    )
    # A's token response is held back 1 s: A looked at the (empty) cache before B
    # stored, and stores after B
    slow = emu.inject("token", latency=1.0, times=1)
    seen: list[requests.Response] = []
    if where == "process":
        a = children("get", emu.api_url, emu.ca_bundle)
    else:
        thread = threading.Thread(target=lambda: seen.append(api_get(emu, auth_for(emu))))
        thread.start()
    deadline = time.monotonic() + 30
    while slow.fired == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert slow.fired == 1, "A's token request never arrived"

    auth_b = auth_for(emu, credential=cred_b, verify=emu.ca_bundle)
    token_b = sent_token(api_get(emu, auth_b))
    assert load(ppauth_env.cache_dir)  # B stored while A's request was in flight
    if where == "process":
        result = a.result()
        assert result["status"] == 200
        digest_a = result["token"]
    else:
        thread.join(30)
        digest_a = digest(sent_token(seen[0]))

    data = entries(ppauth_env.cache_dir)
    both = {emu.sample.client_id, app_b.client_id}
    assert all(k.startswith("at:") for k in data), data.keys()  # app-only: no msal state
    assert {e["client_id"] for e in data.values()} == both
    assert {digest(e["secret"]) for e in data.values()} == {digest_a, digest(token_b)}
    assert emu.count("token") == 2


# -- 401, store failures, cache= options --------------------------------------------------


def test_a_401_drops_the_token_from_the_disk_cache_too(ppauth_emulator, ppauth_env, children):
    emu = ppauth_emulator
    ppauth_env.use_emulator(emu, "secret")
    directory = ppauth_env.cache_dir
    first = sent_token(api_get(emu, auth_for(emu)))  # cached on disk, also in msal's section
    emu.revoke()

    # a fresh process gets the revoked token from the file, is refused, and recovers
    recovering = children("get", emu.api_url, emu.ca_bundle).result()
    assert recovering["status"] == 200
    assert recovering["retried"] == 1
    assert recovering["token"] != digest(first)
    assert first.encode() not in on_disk(directory)  # gone from every file
    assert [digest(e["secret"]) for e in entries(directory).values()] == [recovering["token"]]

    # the next fresh process uses the new token straight away
    before = emu.counts()
    fresh = children("get", emu.api_url, emu.ca_bundle).result()
    assert (fresh["status"], fresh["retried"], fresh["token"]) == (200, 0, recovering["token"])
    assert emu.counts() == {**before, "environments": before["environments"] + 1}


def test_a_401_in_this_process_drops_the_token_from_disk(ppauth_emulator, ppauth_env):
    emu = ppauth_emulator
    ppauth_env.use_emulator(emu, "secret")
    auth = auth_for(emu)
    first = sent_token(api_get(emu, auth))
    emu.revoke()

    r = api_get(emu, auth)
    assert [h.status_code for h in r.history] == [401]
    second = sent_token(r)
    assert second != first
    assert first.encode() not in on_disk(ppauth_env.cache_dir)
    entry = entries(ppauth_env.cache_dir)[token_entry_key(auth.provider.key(SCOPE))]
    assert entry["secret"] == second


class UnwritableCache(FileCache):
    """A file cache whose disk is full."""

    def apply(self, ops: Sequence[Op]) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")


def test_a_fetched_token_is_used_even_when_storing_it_fails(ppauth_emulator, ppauth_env, caplog):
    emu = ppauth_emulator
    ppauth_env.use_emulator(emu, "secret")
    directory = ppauth_env.root / "full-disk"
    auth = auth_for(emu, cache=UnwritableCache(directory))
    caplog.set_level(logging.WARNING, logger="requests_ppauth")

    r = api_get(emu, auth)
    api_get(emu, auth)  # and kept in memory: no second request

    assert r.status_code == 200
    assert emu.count("token") == 1
    warned = [rec for rec in caplog.records if rec.levelno == logging.WARNING]
    assert any("could not store the token" in rec.getMessage() for rec in warned), caplog.text
    assert any(str(directory) in rec.getMessage() for rec in warned)
    assert sent_token(r) not in caplog.text
    assert entries(directory) == {}  # an empty cache, started when first used: no token


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    return {
        str(p): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in sorted(root.rglob("*"))
        if not p.is_symlink()
    }


def test_cache_false_writes_no_files(ppauth_emulator, ppauth_env):
    emu = ppauth_emulator
    ppauth_env.use_emulator(emu, "secret")
    before = snapshot(ppauth_env.root)
    auth = auth_for(emu, cache=False)

    api_get(emu, auth)
    api_get(emu, auth)

    assert emu.count("token") == 1  # memory still caches
    assert isinstance(auth.provider.cache, MemoryCache)
    assert snapshot(ppauth_env.root) == before
    assert not ppauth_env.cache_dir.exists()


@pytest.mark.parametrize("as_type", [str, Path])
def test_cache_path_uses_that_directory(ppauth_emulator, ppauth_env, as_type):
    emu = ppauth_emulator
    ppauth_env.use_emulator(emu, "secret")
    directory = ppauth_env.root / "chosen cache"
    auth = auth_for(emu, cache=as_type(directory))

    token = sent_token(api_get(emu, auth))

    assert mode_of(directory) == 0o700
    entry = entries(directory)[token_entry_key(auth.provider.key(SCOPE))]
    assert entry["secret"] == token
    assert not ppauth_env.cache_dir.exists()  # PPAUTH_CACHE_DIR was not used
    # and another auth with the same directory starts warm
    again = auth_for(emu, cache=as_type(directory))
    assert sent_token(api_get(emu, again)) == token
    assert emu.count("token") == 1


# -- the ppauth_register_cache_backends hook ------------------------------------------------


class DictCache:
    """A CacheBackend in this process's memory that records what it was asked."""

    def __init__(self, options: Mapping[str, Any]) -> None:
        self.options = dict(options)
        self.state: dict[str, Any] = {}
        self.commits = 0
        self.asked: list[list[str]] = []
        self._lock = threading.Lock()
        self._key_locks: dict[str, threading.Lock] = {}

    @property
    def location(self) -> str:
        return "dict://test"

    def get(self, keys: Sequence[str]) -> dict[str, Any]:
        self.asked.append(list(keys))
        return {k: self.state[k] for k in keys if k in self.state}

    def read_all(self) -> Mapping[str, Any]:
        return dict(self.state)

    def apply(self, ops: Sequence[Op]) -> None:
        with self._lock:
            apply_ops(self.state, ops)
            self.commits += 1

    def _key(self, key: str) -> threading.Lock:
        with self._lock:
            return self._key_locks.setdefault(key, threading.Lock())

    @contextlib.contextmanager
    def key_lock(self, key: str, timeout: float) -> Iterator[bool]:
        lock = self._key(key)
        held = lock.acquire(timeout=timeout)
        try:
            yield held
        finally:
            if held:
                lock.release()

    @contextlib.contextmanager
    def try_key_lock(self, key: str) -> Iterator[bool]:
        lock = self._key(key)
        held = lock.acquire(blocking=False)
        try:
            yield held
        finally:
            if held:
                lock.release()


class DictBackendPlugin:
    def __init__(self, name: str = "dict") -> None:
        self.name = name
        self.made: list[DictCache] = []

    @hookimpl
    def ppauth_register_cache_backends(self, register):
        register(self.name, self.make)

    def make(self, options: Mapping[str, Any]) -> DictCache:
        backend = DictCache(options)
        self.made.append(backend)
        return backend


@pytest.fixture
def plugins(monkeypatch) -> Plugins:
    """A fresh process-wide plugin manager for this test."""
    fresh = Plugins()
    monkeypatch.setattr(plugins_module, "_plugins", fresh)
    return fresh


def test_the_test_backend_is_a_cache_backend():
    assert isinstance(DictCache({}), CacheBackend)
    assert isinstance(MemoryCache(), CacheBackend)
    assert isinstance(FileCache("/nonexistent/never/created"), CacheBackend)


def test_a_registered_cache_backend_is_used_by_name(ppauth_emulator, ppauth_env, plugins):
    emu = ppauth_emulator
    ppauth_env.use_emulator(emu, "secret")
    plugin = DictBackendPlugin()
    get_plugins().register(plugin, name="dict-cache")
    assert set(get_plugins().cache_backends()) == {"file", "memory", "dict"}

    auth = auth_for(emu, cache="dict")
    token = sent_token(api_get(emu, auth))

    (backend,) = plugin.made
    assert auth.provider.cache is backend
    assert backend.options == {}
    key = token_entry_key(auth.provider.key(SCOPE))
    assert backend.state[key]["secret"] == token
    assert list(backend.state) == [key]  # stored once, and no msal state for an app
    assert backend.commits == 1
    assert backend.asked == [[key], [key]]  # the key, before and under the lock: no more
    assert not ppauth_env.cache_dir.exists()  # the file cache was not touched

    # a second auth on the same kind of backend gets its own (empty) instance
    other = auth_for(emu, cache="dict")
    assert sent_token(api_get(emu, other)) != token
    assert len(plugin.made) == 2


@pytest.mark.parametrize("taken", ["dict", "file", "memory"])
def test_a_duplicate_cache_backend_name_is_an_error(ppauth_emulator, ppauth_env, plugins, taken):
    emu = ppauth_emulator
    ppauth_env.use_emulator(emu, "secret")
    get_plugins().register(DictBackendPlugin("dict"), name="first")
    get_plugins().register(DictBackendPlugin(taken), name="second")

    with pytest.raises(PluginRegistrationError, match=f"cache backend '{taken}'"):
        get_plugins().cache_backends()
    with pytest.raises(PluginRegistrationError):
        requests.get(emu.api_url + BAP_PATH, auth=auth_for(emu, cache="dict"))
    assert emu.counts() == {}


# -- atomic writes ------------------------------------------------------------------------


def test_readers_never_see_half_a_batch(tmp_path, children):
    directory = tmp_path / "cache"
    FileCache(directory).prepare()
    stop = threading.Event()
    problems: list[str] = []
    reads = {"long-lived": 0, "fresh": 0}
    states: set[int] = set()
    checkpoints: set[int] = set()  # sizes of the SQLite log seen: it is checkpointed

    def check(cache: FileCache, seen: set[str], who: str) -> None:
        state = cache.read_all()
        keys = {k[2:] for k in state if k.startswith("P:")}
        twins = {k[7:] for k in state if k.startswith("P-twin:")}
        if keys != twins:
            problems.append(f"{who}: half a batch visible")
        if not seen <= keys:
            problems.append(f"{who}: {len(seen - keys)} committed keys went missing")
        pair = [f"P:{k}" for k in list(keys)[:3]] + [f"P-twin:{k}" for k in list(keys)[:3]]
        got = cache.get(pair)
        if set(got) != set(pair):
            problems.append(f"{who}: get lost {sorted(set(pair) - set(got))}")
        seen |= keys
        states.add(len(keys))

    def reader(fresh: bool) -> None:
        who = "fresh" if fresh else "long-lived"
        cache = FileCache(directory)
        seen: set[str] = set()
        while not stop.is_set():
            try:
                check(FileCache(directory) if fresh else cache, seen, who)
                with contextlib.suppress(FileNotFoundError):
                    checkpoints.add(os.stat(directory / (CACHE_FILE + "-wal")).st_size)
            except Exception as exc:  # any exception is the failure
                problems.append(f"{who}: {type(exc).__name__}: {exc}")
            reads[who] += 1

    def writer(name: str) -> None:
        cache = FileCache(directory)
        i = 0
        while not stop.is_set():
            value = {"writer": name, "i": i}
            pad = Op(f"Pad:{name}-{i % 8}", {"pad": "x" * 3000})
            cache.apply([Op(f"P:{name}-{i}", value), Op(f"P-twin:{name}-{i}", value), pad])
            i += 1

    kid = children(
        "write",
        str(directory),
        "P",
        "proc",
        "100000",
        "--twin",
        "--seconds",
        "2",
        "--min-writes",
        "25",
        "--pad",
        "3000",
    )
    threads = [threading.Thread(target=reader, args=(fresh,)) for fresh in (False, True)]
    threads += [threading.Thread(target=writer, args=(f"t{n}",)) for n in range(2)]
    with cache_warnings() as caught:
        for thread in threads:
            thread.start()
        result = kid.result()
        stop.set()
        for thread in threads:
            thread.join(30)

    assert problems == []
    assert caught == []
    assert not corrupt_aside(directory)
    assert result["written"] > 20
    assert min(reads.values()) > 50, reads
    assert len(states) > 20, "the readers saw too few batches to prove anything"
    final = group(directory, "P")
    assert set(final) == set(group(directory, "P-twin"))
    assert {f"proc-{i}" for i in range(result["written"])} <= set(final)


# -- secrets removed, tokens pruned -----------------------------------------------------------


def test_a_removed_secret_leaves_no_trace_in_any_file(tmp_path):
    directory = tmp_path / "cache"
    cache = FileCache(directory)
    keep, gone = "KEEP" + "k" * 1200, "GONE" + "g" * 1200
    cache.apply([Op("at:keep", {"secret": keep}), Op("at:gone", {"secret": gone})])
    for i in range(20):  # the page holding it is rewritten a few times in the log
        cache.apply([Op(f"at:other{i}", {"secret": f"other-{i}"})])
    assert gone.encode() in on_disk(directory)

    cache.apply([Op("at:gone", if_secret=gone)])

    assert gone.encode() not in on_disk(directory)
    assert keep.encode() in on_disk(directory)
    assert set(FileCache(directory).get(["at:keep", "at:gone"])) == {"at:keep"}


def test_long_expired_tokens_are_pruned_and_entries_without_expiry_kept(tmp_path):
    directory = tmp_path / "cache"
    now = time.time()
    FileCache(directory).apply(
        [
            Op("at:old", {"secret": "o", "expires_on": now - 3600}),
            Op("at:just-expired", {"secret": "j", "expires_on": now - 60}),
            Op("at:valid", {"secret": "v", "expires_on": now + 3600}),
            Op("msal:partition", fields={"RefreshToken/x": {"secret": "rt"}}),
            Op("at:odd", {"secret": "n", "expires_on": "soon"}),
        ]
    )
    conn = sqlite3.connect(directory / CACHE_FILE)  # as if the last sweep was long ago
    conn.execute("UPDATE meta SET value=0 WHERE name='pruned_at'")
    conn.commit()
    conn.close()

    FileCache(directory).apply([Op("at:new", {"secret": "x", "expires_on": now + 3600})])

    assert sorted(entries(directory)) == [
        "at:just-expired",
        "at:new",
        "at:odd",
        "at:valid",
        "msal:partition",
    ]


def test_a_cache_removed_under_a_running_process_is_recreated_not_written_to_a_ghost(tmp_path):
    directory = tmp_path / "cache"
    running = FileCache(directory)
    running.apply([Op("at:before", {"secret": "b"})])
    for path in directory.glob(CACHE_FILE + "*"):  # `ppauth cache`-less cleanup: rm -f
        path.unlink()

    running.apply([Op("at:after", {"secret": "a"})])

    assert entries(directory) == {"at:after": {"secret": "a"}}  # others see the write
    assert FileCache(directory).get(["at:after"]) == {"at:after": {"secret": "a"}}


def test_a_removed_field_leaves_no_trace_in_any_file(tmp_path):
    directory = tmp_path / "cache"
    cache = FileCache(directory)
    rt = "REFRESH" + "r" * 1200
    cache.apply([Op("msal:p", fields={"RefreshToken/x": {"secret": rt}, "Account/a": {"n": 1}})])
    assert rt.encode() in on_disk(directory)

    cache.apply([Op("msal:p", fields={"RefreshToken/x": None})])  # a sign-out's patch

    assert rt.encode() not in on_disk(directory)
    assert FileCache(directory).get(["msal:p"]) == {"msal:p": {"Account/a": {"n": 1}}}
