"""The lease is the fleet's key lock: one holder at a time, and a holder that stored
its result lets every waiter read it at once (they do not pass the lease along one
by one); a holder that stored nothing hands the lease to one waiter at a time."""

from __future__ import annotations

import threading
import time

import pytest
from requests_ppauth_redis import make_redis_cache

from requests_ppauth.cache import Op

KEY = "at|login.example|tenant|client||scope"  # a lock name, as the core's hold ids
WAITERS = 4


def _entry() -> dict[str, object]:
    return {"secret": "t0ken", "expires_on": time.time() + 3600}


def _herd_behind_a_holder(cache, *, holder_stores: bool):
    """A holder takes the lease, WAITERS threads queue for it, the holder stores (or
    not) and releases; returns what each waiter got and how many were inside their
    lock at once, at most."""
    inside = 0
    most = 0
    mutex = threading.Lock()
    got: list[bool] = []
    queued = threading.Barrier(WAITERS + 1, timeout=10)
    release = threading.Event()

    def holder(entered: threading.Event) -> None:
        with cache.key_lock(KEY, 5.0) as mine:
            assert mine
            entered.set()
            release.wait(10)
            if holder_stores:
                cache.apply([Op("at:held", _entry())])

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

    entered = threading.Event()
    first = threading.Thread(target=holder, args=(entered,))
    first.start()
    assert entered.wait(10)
    threads = [threading.Thread(target=waiter) for _ in range(WAITERS)]
    for thread in threads:
        thread.start()
    queued.wait()
    time.sleep(0.3)  # every waiter has tried the lease and is subscribed
    release.set()
    first.join(10)
    for thread in threads:
        thread.join(20)
    assert not any(t.is_alive() for t in [first, *threads]), "a thread is stuck"
    return got, most


def test_a_holder_that_stored_lets_the_whole_herd_read_at_once(redis_env):
    cache = make_redis_cache({})
    got, most = _herd_behind_a_holder(cache, holder_stores=True)
    assert got == [True] * WAITERS
    assert most == WAITERS, f"waiters went one by one ({most} at once) after a store"
    # and the lease itself is free: nobody took it on the way
    with cache.try_key_lock(KEY) as mine:
        assert mine


def test_a_holder_that_stored_nothing_hands_the_lease_to_one_waiter_at_a_time(redis_env):
    cache = make_redis_cache({})
    got, most = _herd_behind_a_holder(cache, holder_stores=False)
    assert got == [True] * WAITERS
    assert most == 1, f"{most} waiters held the lease at once"


def test_a_lease_is_one_holders_in_the_whole_fleet(redis_env):
    one, other = make_redis_cache({}), make_redis_cache({})  # two "machines"
    with one.try_key_lock(KEY) as mine:
        assert mine
        with other.try_key_lock(KEY) as theirs:
            assert not theirs
        started = time.monotonic()
        with other.key_lock(KEY, 0.3) as theirs:
            waited = time.monotonic() - started
            assert not theirs
        assert 0.25 <= waited < 2.0, f"a bounded wait lasted {waited:.2f} s (0.3 s asked)"
    with other.try_key_lock(KEY) as theirs:
        assert theirs


@pytest.mark.parametrize("lease_ttl", [0.5])
def test_a_long_holder_keeps_its_lease_by_renewing_it(redis_env, lease_ttl):
    holder = make_redis_cache({"lease_ttl": lease_ttl})
    other = make_redis_cache({"lease_ttl": lease_ttl})
    with holder.try_key_lock(KEY) as mine:
        assert mine
        time.sleep(lease_ttl * 4)  # four leases long: renewed every third of one
        with other.try_key_lock(KEY) as theirs:
            assert not theirs, "the lease expired under a live holder"
    with other.try_key_lock(KEY) as theirs:
        assert theirs
