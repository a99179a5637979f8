"""The file cache's key lock and a herd: a holder that stored its result lets every
waiter read it at once (they do not take the lock one after another only to find the
token there); a holder that stored nothing hands the lock to one waiter at a time.
Real files, real locks (filelock), threads of one process (flock conflicts between
open files, so threads contend as processes do)."""

from __future__ import annotations

import os
import threading
import time

import pytest

from requests_ppauth.cache import FileCache, Op
from requests_ppauth.cache.locks import mark_stored, stored_since

KEY = "at|login.example|tenant|client||scope"
WAITERS = 4


def _herd_behind_a_holder(cache: FileCache, *, holder_stores: bool) -> tuple[list[bool], int]:
    inside = most = 0
    mutex = threading.Lock()
    got: list[bool] = []
    queued = threading.Barrier(WAITERS + 1, timeout=10)
    entered, release = threading.Event(), threading.Event()

    def holder() -> None:
        with cache.key_lock(KEY, 5.0) as mine:
            assert mine
            entered.set()
            release.wait(10)
            if holder_stores:
                cache.apply([Op("at:held", {"secret": "t0ken", "expires_on": time.time() + 3600})])

    def waiter() -> None:
        nonlocal inside, most
        queued.wait()
        with cache.key_lock(KEY, 10.0) as mine:
            with mutex:
                got.append(mine)
                inside += 1
                most = max(most, inside)
            time.sleep(0.2)  # long enough for the others to pile in, if they may
            with mutex:
                inside -= 1

    first = threading.Thread(target=holder)
    first.start()
    assert entered.wait(10)
    threads = [threading.Thread(target=waiter) for _ in range(WAITERS)]
    for thread in threads:
        thread.start()
    queued.wait()
    time.sleep(0.2)  # every waiter is polling
    release.set()
    for thread in [first, *threads]:
        thread.join(20)
    assert not any(t.is_alive() for t in [first, *threads]), "a thread is stuck"
    return got, most


def test_a_holder_that_stored_lets_the_whole_herd_read_at_once(tmp_path):
    cache = FileCache(tmp_path / "cache")
    got, most = _herd_behind_a_holder(cache, holder_stores=True)
    assert got == [True] * WAITERS
    assert most == WAITERS, f"waiters went one by one ({most} at once) after a store"
    assert cache.get(["at:held"])["at:held"]["secret"] == "t0ken"
    with cache.try_key_lock(KEY) as mine:  # nobody kept the lock on the way
        assert mine


def test_a_holder_that_stored_nothing_hands_the_lock_to_one_waiter_at_a_time(tmp_path):
    cache = FileCache(tmp_path / "cache")
    got, most = _herd_behind_a_holder(cache, holder_stores=False)
    assert got == [True] * WAITERS
    assert most == 1, f"{most} waiters held the lock at once"


def test_a_store_by_another_thread_does_not_count_as_the_holders(tmp_path):
    """The signal is per thread: another thread's write while the lock is held is not
    the holder's result, and waiters must not be let through by it."""
    cache = FileCache(tmp_path / "cache")
    with cache.key_lock(KEY, 1.0) as mine:
        assert mine
        other = threading.Thread(target=lambda: cache.apply([Op("at:other", {"secret": "x"})]))
        other.start()
        other.join()
    marker = cache._key_path(KEY).with_name(cache._key_path(KEY).name + ".stored")
    assert not marker.exists()


def test_the_marker_is_private_and_never_followed_through_a_link(tmp_path):
    marker = tmp_path / "k.lock.stored"
    before = time.time_ns()
    mark_stored(marker)
    assert stored_since(marker, before) and not stored_since(marker, time.time_ns())
    assert marker.stat().st_mode & 0o777 == 0o600
    target = tmp_path / "elsewhere"
    target.write_bytes(b"keep")
    link = tmp_path / "l.lock.stored"
    os.symlink(target, link)
    with pytest.raises(OSError, match="Too many levels of symbolic links"):  # O_NOFOLLOW
        mark_stored(link)
    assert target.read_bytes() == b"keep"
    assert not stored_since(link, 0)  # a link is doubt: wait for the lock instead
    (tmp_path / "short").write_bytes(b"123")
    assert not stored_since(tmp_path / "short", 0)
