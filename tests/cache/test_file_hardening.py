"""The file cache where the file system says no, and where someone tampered with it.

- A read-only file system (real ones: tmpfs mounted ``ro``, a cache built on a
  writable tmpfs then remounted ``ro``, a read-only bind mount of a cache written
  elsewhere) and a full one: every failure is a :class:`CacheError` naming the path
  and the way out, so the token provider warns and gets tokens without the cache; a
  read-only cache that holds tokens is still read.
- The ``locks/`` folder and the lock files get the directory's checks: a symbolic
  link, a mode open to others or another user's folder is an
  :class:`UnsafeCacheError`, and nothing is followed or repaired.
- ``PPAUTH_CACHE_LOCKS=filelock`` really takes the lock path of platforms without
  ``fcntl`` (the processes tests also run on it: see ``lock_mechanism``).

The mounts need root (the test container is root); elsewhere these tests skip.
Real files, real processes, the emulator over HTTPS; nothing is mocked.
"""

from __future__ import annotations

import errno
import logging
import os
import shutil
import signal
import stat
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from requests_ppauth import CacheError, ConfigurationError, UnsafeCacheError
from requests_ppauth.cache import Op, locks
from requests_ppauth.cache import file as file_module
from requests_ppauth.cache.file import DB_FILE, FileCache
from requests_ppauth.cache.locks import LockTimeout, exclusive, shared
from tests._cache_state import entries
from tests._cache_worker import BAP_PATH, PACKAGE_ROOT, SCOPE, digest
from tests.cache._calls import api_get, auth_for, sent_token
from tests.test_cli import (
    _bytecode_cache,  # noqa: F401 - a fixture _cli_environment uses
    _cli_environment,  # noqa: F401 - the autouse fixture of the CLI tests
    failed,
    ok,
    ppauth,
)

LOCKS_ENV = "PPAUTH_CACHE_LOCKS"  # the documented switch
READ_ONLY = "read-only file system"
WAY_OUT = "Set PPAUTH_CACHE_DIR to a writable directory"


# -- real mounts ---------------------------------------------------------------------------


class Mounts:
    """tmpfs mounts, read-only remounts and read-only bind mounts under ``root``; every
    one is unmounted at the end (lazily if something still has a file open there)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.points: list[Path] = []

    def _mount(self, *args: str) -> None:
        proc = subprocess.run(["mount", *args], capture_output=True, text=True, check=False)
        if proc.returncode and not self.points:
            pytest.skip(f"cannot mount here (mount {' '.join(args)}: {proc.stderr.strip()})")
        assert proc.returncode == 0, f"mount {' '.join(args)}: {proc.stderr}"

    def tmpfs(self, name: str, *, read_only: bool = False, options: str = "") -> Path:
        where = self.root / name
        where.mkdir(mode=0o700)
        flags = ",".join(f for f in ("ro" if read_only else "rw", "mode=0700", options) if f)
        self._mount("-t", "tmpfs", "-o", flags, "tmpfs", str(where))
        self.points.append(where)
        if read_only:
            assert_read_only(where)
        return where

    def remount_read_only(self, where: Path) -> None:
        self._mount("-o", "remount,ro", str(where))
        assert_read_only(where)

    def bind_read_only(self, source: Path, name: str) -> Path:
        where = self.root / name
        where.mkdir(mode=0o700)
        self._mount("--bind", str(source), str(where))
        self.points.append(where)
        self._mount("-o", "remount,bind,ro", str(where))
        assert_read_only(where)
        return where

    def unmount_all(self) -> None:
        for where in reversed(self.points):
            if subprocess.run(["umount", str(where)], capture_output=True, check=False).returncode:
                subprocess.run(["umount", "-l", str(where)], capture_output=True, check=False)


def assert_read_only(where: Path) -> None:
    """Creating a file there fails with EROFS: the file system really is read-only."""
    with pytest.raises(OSError, match="Read-only file system") as error:
        os.close(os.open(where / ".probe", os.O_WRONLY | os.O_CREAT, 0o600))
    assert error.value.errno == errno.EROFS, error.value


@pytest.fixture
def mounts(tmp_path) -> Iterator[Mounts]:
    if not hasattr(os, "geteuid") or os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("real read-only file systems need root and mount(8)")
    made = Mounts(tmp_path)
    try:
        yield made
    finally:
        made.unmount_all()


def files(directory: Path) -> dict[str, bytes]:
    return {
        p.relative_to(directory).as_posix(): p.read_bytes()
        for p in sorted(directory.rglob("*"))
        if p.is_file()
    }


def warnings_of(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]


def assert_warned_about(caplog, cache_dir: Path, reason: str) -> None:
    """A warning names the cache, why it failed and the way out; none calls it a bug."""
    warned = warnings_of(caplog)
    assert any(str(cache_dir) in m and reason in m and "PPAUTH_CACHE_DIR" in m for m in warned), (
        warned
    )
    assert not any("bug" in m for m in warned), warned


def assert_unavailable(error: BaseException, path: Path, reason: str = READ_ONLY) -> None:
    """A plain CacheError (unavailable, not unsafe) naming ``path``, why and the way out."""
    assert type(error) is CacheError, f"expected CacheError, got {type(error).__name__}: {error}"
    assert str(path) in str(error), error
    assert reason in str(error), error
    assert WAY_OUT in str(error), error


CALLS: dict[str, Callable[[FileCache], Any]] = {
    "prepare": lambda c: c.prepare(),
    "get": lambda c: c.get(["at:k"]),
    "read_all": lambda c: c.read_all(),
    "apply": lambda c: c.apply([Op("at:k", {"secret": "s"})]),
    "key_lock": lambda c: c.key_lock("at:k", 1.0).__enter__(),
    "try_key_lock": lambda c: c.try_key_lock("at:k").__enter__(),
}


# -- read-only and full file systems: unavailable, never a raw OSError ------------------------


@pytest.mark.parametrize("where", ["empty-directory", "directory-to-create"])
def test_a_request_with_the_cache_on_a_read_only_file_system_gets_a_token_and_warns(
    ppauth_emulator, ppauth_env, mounts, caplog, where
):
    emu = ppauth_emulator
    ppauth_env.use_emulator(emu, "secret")
    mnt = mounts.tmpfs("ro", read_only=True)
    cache_dir = mnt if where == "empty-directory" else mnt / "not" / "there"
    ppauth_env.set(PPAUTH_CACHE_DIR=str(cache_dir))
    caplog.set_level(logging.WARNING, logger="requests_ppauth")

    auth = auth_for(emu)
    r = api_get(emu, auth)
    api_get(emu, auth)  # the token is kept in this process

    assert emu.count("token") == 1
    assert_warned_about(caplog, cache_dir, READ_ONLY)
    assert sent_token(r) not in caplog.text
    assert os.listdir(mnt) == []


@pytest.mark.parametrize("call", list(CALLS))
def test_every_call_on_an_empty_read_only_cache_directory_is_a_cache_error(mounts, call):
    mnt = mounts.tmpfs("ro", read_only=True)
    with pytest.raises(CacheError) as error:
        CALLS[call](FileCache(mnt))
    assert_unavailable(error.value, mnt)


def test_a_request_with_the_cache_on_a_full_file_system_gets_a_token_and_warns(
    ppauth_emulator, ppauth_env, mounts, caplog
):
    emu = ppauth_emulator
    ppauth_env.use_emulator(emu, "secret")
    # a tmpfs of two inodes: its root and one more, so the cache can make nothing
    full = mounts.tmpfs("full", options="nr_inodes=2")
    (full / "the-last-inode").write_text("")
    with pytest.raises(OSError, match="No space left") as error:
        (full / "one-more").mkdir()
    assert error.value.errno == errno.ENOSPC
    ppauth_env.set(PPAUTH_CACHE_DIR=str(full))
    caplog.set_level(logging.WARNING, logger="requests_ppauth")

    api_get(emu, auth_for(emu))

    assert emu.count("token") == 1
    assert_warned_about(caplog, full, os.strerror(errno.ENOSPC))
    with pytest.raises(CacheError) as raised:
        FileCache(full).get(["at:k"])
    assert_unavailable(raised.value, full, os.strerror(errno.ENOSPC))


def test_ppauth_cache_commands_and_doctor_on_a_read_only_cache_directory(
    ppauth_emulator, ppauth_env, mounts
):
    ppauth_env.use_emulator(ppauth_emulator, "secret")
    mnt = mounts.tmpfs("ro", read_only=True)
    ppauth_env.set(PPAUTH_CACHE_DIR=str(mnt))

    assert ok(ppauth("cache", "path")).strip() == str(mnt / DB_FILE)
    for command in ("list", "clear"):
        line, hint = failed(ppauth("cache", command))
        assert str(mnt) in line and READ_ONLY in line, line
        assert WAY_OUT in hint, hint
    doctor = ppauth("doctor")
    assert doctor.returncode == 1
    (cache_line,) = [li for li in doctor.stdout.splitlines() if "FAIL  cache" in li]
    assert READ_ONLY in cache_line, doctor.stdout
    assert "PPAUTH_CACHE_DIR" in doctor.stdout
    assert "Traceback" not in doctor.stdout + doctor.stderr


# -- a read-only cache that holds tokens: read, shared, never written ------------------------


def test_a_cache_remounted_read_only_is_still_read_and_refuses_writes_cleanly(
    ppauth_emulator, ppauth_env, mounts, children, caplog
):
    emu = ppauth_emulator
    ppauth_env.use_emulator(emu, "secret")
    mnt = mounts.tmpfs("cache")
    ppauth_env.set(PPAUTH_CACHE_DIR=str(mnt))
    filled = children("get", emu.api_url, emu.ca_bundle).result()  # and it has exited
    assert emu.count("token") == 1
    mounts.remount_read_only(mnt)
    before = files(mnt)
    caplog.set_level(logging.WARNING, logger="requests_ppauth")

    # a fresh auth shares the token that is there: no token request
    auth = auth_for(emu)
    assert digest(sent_token(api_get(emu, auth))) == filled["token"]
    assert emu.count("token") == 1
    assert warnings_of(caplog) == []
    other = children("get", emu.api_url, emu.ca_bundle).result()  # another process too
    assert other["token"] == filled["token"]
    assert emu.count("token") == 1

    # writes and key locks are unavailable: a typed error that says tokens are still read
    cache = FileCache(mnt)
    assert len(cache.read_all()) == 1
    with pytest.raises(CacheError) as error:
        cache.apply([Op("at:x", {"secret": "s"})])
    assert_unavailable(error.value, mnt / DB_FILE)
    assert "still read" in str(error.value)
    for call in ("key_lock", "try_key_lock"):
        with pytest.raises(CacheError) as error:
            CALLS[call](cache)
        assert_unavailable(error.value, mnt)

    # the token is revoked: it cannot be dropped from the file, but this process does
    # not read it again; the new one is fetched, used and kept here, unshared
    emu.revoke()
    r = api_get(emu, auth)
    assert [h.status_code for h in r.history] == [401]
    renewed = sent_token(r)
    assert digest(renewed) != filled["token"]
    assert emu.count("token") == 2
    assert_warned_about(caplog, mnt, READ_ONLY)
    assert renewed not in caplog.text
    assert sent_token(api_get(emu, auth)) == renewed
    assert emu.count("token") == 2

    # the commands read it too, and clearing it is a clean failure
    listing = ok(ppauth("cache", "list", "--json"))
    assert '"tokens": [' in listing and SCOPE in listing
    line, hint = failed(ppauth("cache", "clear"))
    assert READ_ONLY in line and WAY_OUT in hint
    assert files(mnt) == before  # nothing was written, nothing moved aside


_KILLED_WRITER = """
import os, signal, sys
from requests_ppauth.cache import Op
from requests_ppauth.cache.file import FileCache
FileCache(sys.argv[1]).apply([Op("at:k", {"v": 2}), Op("at:new", {"v": 1})])
os.kill(os.getpid(), signal.SIGKILL)  # committed, never checkpointed: it is in the log only
"""


def test_a_read_only_cache_whose_last_writes_are_in_its_log_is_read_whole(mounts):
    mnt = mounts.tmpfs("cache")
    env = {**os.environ, "PYTHONPATH": PACKAGE_ROOT}
    first = subprocess.run(
        [sys.executable, "-c", "import sys\nfrom requests_ppauth.cache import Op\n"
         "from requests_ppauth.cache.file import FileCache\n"
         "FileCache(sys.argv[1]).apply([Op('at:k', {'v': 1})])", str(mnt)],
        env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert first.returncode == 0, first.stderr
    killed = subprocess.run(
        [sys.executable, "-c", _KILLED_WRITER, str(mnt)], env=env, capture_output=True, check=False
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert (mnt / (DB_FILE + "-wal")).stat().st_size > 0
    mounts.remount_read_only(mnt)

    # the database file alone still says v1: the log must be read too
    assert FileCache(mnt).get(["at:k", "at:new"]) == {"at:k": {"v": 2}, "at:new": {"v": 1}}


def test_a_read_only_view_of_a_cache_written_elsewhere_follows_its_writes(
    tmp_path, mounts, children
):
    source = tmp_path / "source"
    source.mkdir(mode=0o700)
    view = mounts.bind_read_only(source, "view")
    children("write", str(source), "W", "a", "1").result()
    reader = FileCache(view)
    assert reader.get(["W:a-0"]) == {"W:a-0": {"v": 0}}

    # written (and closed) through the writable path: the same reader sees the change
    children("write", str(source), "W", "a", "3", "--pad", "20000").result()
    want = {f"W:a-{i}": {"v": i} for i in range(3)}
    assert reader.get(list(want)) == want
    assert {k: v for k, v in reader.read_all().items() if k.startswith("W:")} == want
    with pytest.raises(CacheError) as error:
        reader.apply([Op("W:b", {"v": 1})])
    assert_unavailable(error.value, view / DB_FILE)
    assert entries(source).keys() >= want.keys()


# -- a write lock that never comes -------------------------------------------------------------


def test_a_write_lock_held_past_its_timeout_is_a_cache_error(
    tmp_path, children, monkeypatch, lock_mechanism
):
    directory = tmp_path / "cache"
    holder = children("hold-file-lock", str(directory))
    assert holder.line() == "held"
    monkeypatch.setattr(file_module, "WRITE_LOCK_TIMEOUT", 0.3)

    with pytest.raises(CacheError, match="timed out after 0.3 s") as error:
        FileCache(directory).apply([Op("at:k", {"secret": "s"})])
    assert type(error.value) is CacheError
    assert str(directory / (DB_FILE + ".lock")) in str(error.value)


# -- the locks/ folder and the lock files ------------------------------------------------------


def prepared(directory: Path) -> Path:
    """A working cache in ``directory``; its locks folder."""
    FileCache(directory).prepare()
    locks = directory / "locks"
    assert stat.S_ISDIR(os.lstat(locks).st_mode)
    return locks


LOCK_CALLS = ("get", "apply", "key_lock", "try_key_lock")


def test_a_symlinked_locks_folder_is_refused_and_never_followed(ppauth_emulator, ppauth_env):
    emu = ppauth_emulator
    ppauth_env.use_emulator(emu, "secret")
    directory = ppauth_env.cache_dir
    locks = prepared(directory)
    locks.rmdir()
    target = ppauth_env.root / "elsewhere"
    target.mkdir(mode=0o700)
    locks.symlink_to(target, target_is_directory=True)

    for call in LOCK_CALLS:
        with pytest.raises(UnsafeCacheError, match="symbolic link") as error:
            CALLS[call](FileCache(directory))
        assert str(locks) in str(error.value)
        assert f"rm {locks}" in str(error.value)
    with pytest.raises(UnsafeCacheError, match="symbolic link"):
        requests.get(emu.api_url + BAP_PATH, auth=auth_for(emu), verify=emu.ca_bundle)

    assert emu.counts() == {}  # refused before anything was sent
    assert list(target.iterdir()) == []  # no lock file was made where the link points
    assert locks.is_symlink()


@pytest.mark.parametrize("mode", [0o777, 0o770, 0o705], ids=oct)
def test_a_locks_folder_open_to_others_is_refused_with_chmod_700(ppauth_env, mode):
    directory = ppauth_env.cache_dir
    locks = prepared(directory)
    locks.chmod(mode)

    for call in LOCK_CALLS:
        with pytest.raises(UnsafeCacheError, match=rf"chmod 700 {locks}") as error:
            CALLS[call](FileCache(directory))
        assert f"mode {mode:o}" in str(error.value)
    assert stat.S_IMODE(os.lstat(locks).st_mode) == mode  # reported, not silently changed
    assert list(locks.iterdir()) == []


def test_a_locks_folder_of_another_user_is_refused(ppauth_env):
    directory = ppauth_env.cache_dir
    locks = prepared(directory)
    os.chown(locks, 4242, -1)

    for call in LOCK_CALLS:
        with pytest.raises(UnsafeCacheError, match=r"another user \(uid 4242\)") as error:
            CALLS[call](FileCache(directory))
        assert str(locks) in str(error.value)
    assert os.lstat(locks).st_uid == 4242
    assert list(locks.iterdir()) == []


def test_a_locks_folder_that_is_a_file_is_a_cache_error(ppauth_env):
    directory = ppauth_env.cache_dir
    locks = prepared(directory)
    locks.rmdir()
    locks.write_text("not a folder")
    with pytest.raises(CacheError, match="not a directory") as error:
        FileCache(directory).get(["at:k"])
    assert type(error.value) is CacheError and f"rm {locks}" in str(error.value)


@pytest.mark.parametrize("which", ["write-lock", "key-lock"])
def test_a_symlinked_lock_file_is_refused_and_its_target_left_alone(
    ppauth_env, lock_mechanism, which
):
    directory = ppauth_env.cache_dir
    cache = FileCache(directory)
    cache.prepare()
    link = cache._lock_path if which == "write-lock" else cache._key_path("at:k")
    link.unlink(missing_ok=True)
    target = ppauth_env.root / "precious.txt"
    target.write_bytes(b"not yours to truncate")
    link.symlink_to(target)
    call = CALLS["apply"] if which == "write-lock" else CALLS["key_lock"]

    with pytest.raises(UnsafeCacheError, match="symbolic link") as error:
        call(FileCache(directory))
    assert str(link) in str(error.value)
    assert target.read_bytes() == b"not yours to truncate"
    assert link.is_symlink()


def test_lock_files_and_their_folder_are_created_private_under_umask_0(
    ppauth_emulator, ppauth_env, children, lock_mechanism
):
    emu = ppauth_emulator
    ppauth_env.use_emulator(emu, "secret")
    directory = ppauth_env.cache_dir

    result = children("get", emu.api_url, emu.ca_bundle, umask=0).result()

    assert result["status"] == 200 and result["kernel_flock"] is (lock_mechanism == "flock")
    locks = directory / "locks"
    made = [directory / (DB_FILE + ".lock"), *locks.iterdir()]
    assert len(made) == 2, made  # the write lock and one key lock
    assert {p.name: oct(stat.S_IMODE(os.lstat(p).st_mode)) for p in made} == {
        p.name: oct(0o600) for p in made
    }
    assert stat.S_IMODE(os.lstat(locks).st_mode) == 0o700


# -- the filelock switch -------------------------------------------------------------------


def _flock_helpers() -> int:
    return sum(t.name == "ppauth-flock" for t in threading.enumerate())


def _wait_while_held(path: Path) -> tuple[bool, int]:
    """With ``path`` held by another open file: whether a 0.3 s wait for it timed out,
    and how many kernel-wait helper threads ran during it."""
    seen: list[int] = []
    stop = threading.Event()

    def count() -> None:
        while not stop.is_set():
            seen.append(_flock_helpers())
            stop.wait(0.01)

    counter = threading.Thread(target=count, daemon=True)
    counter.start()
    try:
        with exclusive(path, 0.3):
            timed_out = False
    except LockTimeout:
        timed_out = True
    finally:
        stop.set()
        counter.join(5)
    return timed_out, max(seen, default=0)


def test_the_filelock_switch_takes_the_lock_path_of_platforms_without_fcntl(ppauth_env, tmp_path):
    path = tmp_path / "x.lock"

    # the kernel path: shared holders coexist, a wait blocks in a helper thread
    assert locks.kernel_flock() is True
    with shared(path, 1.0), shared(path, 0.2):
        pass
    with exclusive(path, 1.0):
        timed_out, helpers = _wait_while_held_in_thread(path)
    assert (timed_out, helpers >= 1) == (True, True)

    # the fallback: filelock's lock has no shared mode, and nobody waits in the kernel
    ppauth_env.set(**{LOCKS_ENV: "filelock"})
    assert locks.kernel_flock() is False
    with shared(path, 1.0), pytest.raises(LockTimeout), shared(path, 0.2):
        pass
    while _flock_helpers():  # the kernel path's helper gives up once the lock is free
        threading.Event().wait(0.01)
    with exclusive(path, 1.0):
        timed_out, helpers = _wait_while_held_in_thread(path)
    assert (timed_out, helpers) == (True, 0)
    # and a lock taken on one path excludes the other (a mixed fleet stays exclusive)
    with exclusive(path, 1.0):
        ppauth_env.set(**{LOCKS_ENV: None})
        timed_out, _ = _wait_while_held_in_thread(path)
    assert timed_out


def _wait_while_held_in_thread(path: Path) -> tuple[bool, int]:
    """:func:`_wait_while_held` from another thread (this one holds the lock)."""
    box: list[tuple[bool, int]] = []
    thread = threading.Thread(target=lambda: box.append(_wait_while_held(path)), daemon=True)
    thread.start()
    thread.join(10)
    assert box, "the wait did not end"
    return box[0]


@pytest.mark.parametrize("value", ["fcntl-please", "soft"])
def test_a_bad_lock_switch_is_a_configuration_error(ppauth_env, tmp_path, value):
    ppauth_env.set(**{LOCKS_ENV: value})
    with pytest.raises(ConfigurationError, match=LOCKS_ENV) as error:
        FileCache(tmp_path / "cache")
    assert repr(value) in str(error.value) and "filelock" in str(error.value)
