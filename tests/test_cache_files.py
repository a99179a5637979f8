"""The token cache file itself: unusable files, unsafe files and directories, modes of
what gets created, concurrent writers (msal's sections merged three-way), a 401
dropping a token from disk, store failures, ``cache=`` options, the
``ppauth_register_cache_backends`` hook, and atomic writes under a hammering reader.

Real files, real processes, the emulator over HTTPS; nothing is mocked.
"""

from __future__ import annotations

import contextlib
import copy
import errno
import json
import logging
import os
import stat
import threading
import time
import warnings
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
import requests

from requests_ppauth import CacheError, ClientSecret, PowerPlatformAuth, hookimpl
from requests_ppauth import plugins as plugins_module
from requests_ppauth.cache import OUR_SECTION, CacheBackend, CacheWarning, Op, apply_ops
from requests_ppauth.file_cache import CACHE_FILE, FileCache
from requests_ppauth.plugins import PluginRegistrationError, Plugins, get_plugins
from requests_ppauth.shared_cache import _entry_id
from tests._cache_state import load
from tests._cache_worker import BAP_PATH, SCOPE, digest

TRUNCATED = json.dumps(
    {OUR_SECTION: {"k": {"secret": "x" * 40, "expires_on": 2e9, "refresh_on": 2e9}}}
).encode()[:50]
UNUSABLE = {
    "empty": b"",
    "truncated-json": TRUNCATED,
    "garbage-bytes": b"\x00\x13\x37 this is not a token cache {{{ \x7f",
    "non-utf8": b'{"AccessToken": {"k": {"secret": "\xff\xfe\xfd"}}}',
    "json-list": b'[{"AccessToken": {}}]',
    "json-scalar-values": b'{"AccessToken": {}, "PPAuthToken": ["not", "a", "dict"]}',
    "json-string": b'"tokens"',
}


def auth_for(emu, **options: Any) -> PowerPlatformAuth:
    """Configured by the environment (``use_emulator``) unless ``credential=`` is given."""
    return PowerPlatformAuth(hosts={emu.api_url.split("//")[1]: SCOPE}, **options)


def api_get(emu, auth: PowerPlatformAuth) -> requests.Response:
    r = requests.get(emu.api_url + BAP_PATH, auth=auth, verify=emu.ca_bundle)
    assert r.status_code == 200, r.text
    return r


def sent_token(r: requests.Response) -> str:
    return str(r.request.headers["Authorization"]).removeprefix("Bearer ")


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
def test_unusable_file_is_read_as_empty_moved_aside_and_reported_once(ppauth_env, content):
    directory = ppauth_env.cache_dir
    cache = FileCache(directory)
    cache.prepare()
    write_file(directory / CACHE_FILE, content)

    with cache_warnings() as caught:
        assert cache.read() == {}
        assert cache.read() == {}
    assert len(caught) == 1
    assert str(directory / CACHE_FILE) in str(caught[0].message)
    (aside,) = corrupt_aside(directory)
    assert aside.read_bytes() == content  # kept as it was, for inspection
    assert mode_of(aside) == 0o600
    assert not (directory / CACHE_FILE).exists()

    # broken again: moved aside again (both kept), but this FileCache has warned already
    write_file(directory / CACHE_FILE, content + b"#2")
    with cache_warnings() as caught:
        assert cache.read() == {}
    assert caught == []
    assert sorted(p.read_bytes() for p in corrupt_aside(directory)) == sorted(
        [content, content + b"#2"]
    )
    # another FileCache reports its own find
    write_file(directory / CACHE_FILE, content + b"#3")
    with cache_warnings() as caught:
        assert FileCache(directory).read() == {}
    assert len(caught) == 1
    assert len(corrupt_aside(directory)) == 3


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
    data = load(directory)
    entry = data[OUR_SECTION][_entry_id(auth.provider.key(SCOPE))]
    assert entry["secret"] == token
    assert entry["client_id"] == emu.sample.client_id
    assert entry["refresh_on"] < entry["expires_on"]
    assert [at["secret"] for at in data["AccessToken"].values()] == [token]


# -- unsafe files and directories ---------------------------------------------------------


CACHE_FILES = pytest.mark.parametrize("name", [CACHE_FILE, CACHE_FILE + ".log"])


@CACHE_FILES
@pytest.mark.parametrize("target_exists", [True, False], ids=["link", "dangling-link"])
def test_symlinked_cache_file_is_refused_and_its_target_left_alone(
    ppauth_emulator, ppauth_env, target_exists, name
):
    emu = ppauth_emulator
    ppauth_env.use_emulator(emu, "secret")
    directory = ppauth_env.cache_dir
    FileCache(directory).prepare()
    target = ppauth_env.root / "elsewhere.json"
    if target_exists:
        write_file(target, b'{"AccessToken": {}}')
        before = (target.read_bytes(), os.stat(target).st_mtime_ns, os.stat(target).st_ino)
    link = directory / name
    link.unlink()
    link.symlink_to(target)

    with pytest.raises(CacheError, match="symbolic link") as read_error:
        FileCache(directory).read()
    assert str(link) in str(read_error.value)
    with pytest.raises(CacheError, match="symbolic link"):
        FileCache(directory).apply([Op(OUR_SECTION, "k", {"secret": "s"})])
    with pytest.raises(CacheError, match="symbolic link"):
        requests.get(emu.api_url + BAP_PATH, auth=auth_for(emu), verify=emu.ca_bundle)

    assert emu.counts() == {}  # refused before anything was sent
    assert link.is_symlink()
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
    write_file(path, b"{}")
    os.chown(path, 4242, -1)

    with pytest.raises(CacheError, match=r"belongs to another user \(uid 4242\)") as error:
        FileCache(directory).read()
    assert str(path) in str(error.value)
    with pytest.raises(CacheError, match="another user"):
        FileCache(directory).apply([Op(OUR_SECTION, "k", {"secret": "s"})])
    assert os.stat(path).st_uid == 4242
    assert path.read_bytes() == b"{}"


def test_cache_directory_of_another_user_is_refused(ppauth_env):
    directory = ppauth_env.cache_dir
    directory.mkdir(mode=0o700)
    os.chown(directory, 4242, -1)

    with pytest.raises(CacheError, match="directory .* belongs to another user"):
        FileCache(directory).read()
    assert list(directory.iterdir()) == []


@CACHE_FILES
@pytest.mark.parametrize("mode", [0o644, 0o660, 0o604], ids=oct)
def test_cache_file_readable_by_others_is_refused_with_chmod_600(ppauth_env, mode, name):
    directory = ppauth_env.cache_dir
    FileCache(directory).prepare()
    path = directory / name
    write_file(path, b"{}", mode)

    with pytest.raises(CacheError, match=rf"chmod 600 {path}") as error:
        FileCache(directory).read()
    assert f"mode {mode:o}" in str(error.value)
    with pytest.raises(CacheError, match="chmod 600"):
        FileCache(directory).apply([Op(OUR_SECTION, "k", {"secret": "s"})])
    assert mode_of(path) == mode  # reported, not silently changed
    assert path.read_bytes() == b"{}"


@pytest.mark.parametrize("mode", [0o755, 0o750, 0o701], ids=oct)
def test_cache_directory_open_to_others_is_refused_with_chmod_700(ppauth_env, mode):
    directory = ppauth_env.cache_dir
    directory.mkdir()
    directory.chmod(mode)

    with pytest.raises(CacheError, match=rf"chmod 700 {directory}"):
        FileCache(directory).read()
    with pytest.raises(CacheError, match="chmod 700"):
        FileCache(directory).apply([Op(OUR_SECTION, "k", {"secret": "s"})])
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
    assert {CACHE_FILE, CACHE_FILE + ".lock", CACHE_FILE + ".log", "locks"} <= names
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
                cache.apply([Op("W", f"{name}-{i}", i)])
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
    section = load(directory)["W"]
    assert sorted(set(expected) - set(section)) == []
    assert section == expected


@pytest.mark.parametrize("where", ["process", "thread"])
def test_two_apps_sharing_a_cache_both_end_up_in_it_with_msal_sections_merged(
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
    # A's token response is held back 1 s: A loaded the (empty) cache into msal before
    # B stored, and stores after B, from an msal cache that never saw B's entries
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

    data = load(ppauth_env.cache_dir)
    both = {emu.sample.client_id, app_b.client_id}
    assert {e["client_id"] for e in data[OUR_SECTION].values()} == both
    assert {e["client_id"] for e in data["AccessToken"].values()} == both
    assert {digest(e["secret"]) for e in data["AccessToken"].values()} == {
        digest_a,
        digest(token_b),
    }
    assert {e["client_id"] for e in data.get("AppMetadata", {}).values()} == both
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
    text = (directory / CACHE_FILE).read_text()
    assert first not in text  # gone from our entry and from msal's section
    assert [digest(e["secret"]) for e in load(directory)[OUR_SECTION].values()] == [
        recovering["token"]
    ]

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
    assert first not in (ppauth_env.cache_dir / CACHE_FILE).read_text()
    entry = load(ppauth_env.cache_dir)[OUR_SECTION][_entry_id(auth.provider.key(SCOPE))]
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
    assert load(directory) == {}  # an empty cache, started when first used: no token


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
    assert auth.provider.cache is None
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
    entry = load(directory)[OUR_SECTION][_entry_id(auth.provider.key(SCOPE))]
    assert entry["secret"] == token
    assert not ppauth_env.cache_dir.exists()  # PPAUTH_CACHE_DIR was not used
    # and another auth with the same directory starts warm
    again = auth_for(emu, cache=as_type(directory))
    assert sent_token(api_get(emu, again)) == token
    assert emu.count("token") == 1


# -- the ppauth_register_cache_backends hook ------------------------------------------------


class MemoryCache:
    """A CacheBackend in this process's memory: the smallest correct one."""

    def __init__(self) -> None:
        self.state: dict[str, Any] = {}
        self.commits = 0
        self._lock = threading.Lock()
        self._key_locks: dict[str, threading.Lock] = {}

    @property
    def location(self) -> str:
        return "memory://test"

    def read(self) -> Mapping[str, Any]:
        return self.state  # replaced, never mutated, by apply

    def apply(self, ops: Sequence[Op]) -> None:
        with self._lock:
            state = copy.deepcopy(self.state)
            apply_ops(state, ops)
            self.state = state
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


class MemoryBackendPlugin:
    def __init__(self, name: str = "memory") -> None:
        self.name = name
        self.made: list[MemoryCache] = []

    @hookimpl
    def ppauth_register_cache_backends(self, register):
        register(self.name, self.make)

    def make(self) -> MemoryCache:
        backend = MemoryCache()
        self.made.append(backend)
        return backend


@pytest.fixture
def plugins(monkeypatch) -> Plugins:
    """A fresh process-wide plugin manager for this test."""
    fresh = Plugins()
    monkeypatch.setattr(plugins_module, "_plugins", fresh)
    return fresh


def test_memory_cache_is_a_cache_backend():
    assert isinstance(MemoryCache(), CacheBackend)


def test_a_registered_cache_backend_is_used_by_name(ppauth_emulator, ppauth_env, plugins):
    emu = ppauth_emulator
    ppauth_env.use_emulator(emu, "secret")
    plugin = MemoryBackendPlugin()
    get_plugins().register(plugin, name="memory-cache")
    assert set(get_plugins().cache_backends()) == {"file", "memory"}

    auth = auth_for(emu, cache="memory")
    token = sent_token(api_get(emu, auth))

    (backend,) = plugin.made
    assert auth.provider.cache is backend
    entry = backend.state[OUR_SECTION][_entry_id(auth.provider.key(SCOPE))]
    assert entry["secret"] == token
    assert [at["secret"] for at in backend.state["AccessToken"].values()] == [token]
    assert backend.commits == 1
    assert not ppauth_env.cache_dir.exists()  # the file cache was not touched

    # a second auth on the same kind of backend gets its own (empty) instance
    other = auth_for(emu, cache="memory")
    assert sent_token(api_get(emu, other)) != token
    assert len(plugin.made) == 2


@pytest.mark.parametrize("taken", ["memory", "file"])
def test_a_duplicate_cache_backend_name_is_an_error(ppauth_emulator, ppauth_env, plugins, taken):
    emu = ppauth_emulator
    ppauth_env.use_emulator(emu, "secret")
    get_plugins().register(MemoryBackendPlugin("memory"), name="first")
    get_plugins().register(MemoryBackendPlugin(taken), name="second")

    with pytest.raises(PluginRegistrationError, match=f"cache backend '{taken}'"):
        get_plugins().cache_backends()
    with pytest.raises(PluginRegistrationError):
        requests.get(emu.api_url + BAP_PATH, auth=auth_for(emu, cache="memory"))
    assert emu.counts() == {}


# -- atomic writes ------------------------------------------------------------------------


def test_readers_never_see_a_torn_or_partial_state(tmp_path, children):
    directory = tmp_path / "cache"
    FileCache(directory).prepare()
    stop = threading.Event()
    problems: list[str] = []
    reads = {"long-lived": 0, "fresh": 0}
    states: set[int] = set()
    logs: set[int] = set()  # log files seen: each fold starts a new one

    def check(state: Mapping[str, Any], seen: set[str], who: str) -> None:
        keys = set(state.get("P", {}))
        if keys != set(state.get("P-twin", {})):
            problems.append(f"{who}: half a commit visible")
        if not seen <= keys:
            problems.append(f"{who}: {len(seen - keys)} committed keys went missing")
        seen |= keys
        states.add(len(keys))

    def reader(fresh: bool) -> None:
        who = "fresh" if fresh else "long-lived"
        cache = FileCache(directory)
        seen: set[str] = set()
        while not stop.is_set():
            try:
                state = (FileCache(directory) if fresh else cache).read()
                check(state, seen, who)
                with contextlib.suppress(FileNotFoundError):
                    logs.add(os.stat(directory / (CACHE_FILE + ".log")).st_ino)
            except Exception as exc:  # any exception is the failure
                problems.append(f"{who}: {type(exc).__name__}: {exc}")
            reads[who] += 1

    def writer(name: str) -> None:
        cache = FileCache(directory)
        i = 0
        while not stop.is_set():
            value = {"writer": name, "i": i}
            pad = Op("Pad", f"{name}-{i % 8}", "x" * 3000)  # fills the log: it is folded
            cache.apply([Op("P", f"{name}-{i}", value), Op("P-twin", f"{name}-{i}", value), pad])
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
    assert min(reads.values()) > 100, reads
    assert len(states) > 20, "the readers saw too few commits to prove anything"
    assert len(logs) >= 3, "the log was not folded while they read"
    final = load(directory)
    assert set(final["P"]) == set(final["P-twin"])
    assert {f"proc-{i}" for i in range(result["written"])} <= set(final["P"])
