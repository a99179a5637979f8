"""What the contract's tests share: typed comparisons, bounded waits, lock probes."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from requests_ppauth.cache.protocol import CacheBackend, Entry, Op
from requests_ppauth.testing.cache_contract._worker import Worker

SCOPE = "https://service.powerapps.com//.default"
LOCK_WAIT = 0.2  # the short key_lock timeout the contract tries
SLACK = 3.0  # what a loaded machine may add to any bounded wait

StartWorker = Callable[[str, CacheBackend, dict[str, Any]], Worker]


# -- helpers -----------------------------------------------------------------------------
def _typed(value: Any) -> Any:
    """``value`` with every scalar tagged by its type: ``1``, ``1.0`` and ``True`` are
    equal in Python, not in JSON."""
    if isinstance(value, Mapping):
        return ("object", sorted((str(k), _typed(v)) for k, v in value.items()))
    if isinstance(value, list | tuple):
        return ("array", [_typed(v) for v in value])
    return (type(value).__name__, value)


def _same(got: Any, want: Any, what: str) -> None:
    assert _typed(got) == _typed(want), f"{what}: expected {want!r}, got {got!r}"


def _get(backend: CacheBackend, keys: Sequence[str]) -> dict[str, Entry]:
    found = backend.get(list(keys))
    assert isinstance(found, Mapping), (
        f"get({list(keys)[:3]}...) must return a dict of the entries found, got "
        f"{type(found).__name__}"
    )
    extra = sorted(set(found) - set(keys))
    assert not extra, f"get must return only keys asked for: asked {list(keys)}, got {extra} too"
    return dict(found)


def _all(backend: CacheBackend) -> dict[str, Entry]:
    found = backend.read_all()
    assert isinstance(found, Mapping), f"read_all must return a mapping, got {type(found)}"
    return dict(found)


def _in_thread(call: Callable[[], Any], timeout: float, what: str) -> Any:
    """``call()`` in another thread (another holder of locks); its result, or its
    exception, within ``timeout`` seconds."""
    box: list[tuple[bool, Any]] = []

    def run() -> None:
        try:
            box.append((True, call()))
        except BaseException as exc:  # re-raised in the test's thread
            box.append((False, exc))

    thread = threading.Thread(target=run, name="cache-contract", daemon=True)
    thread.start()
    thread.join(timeout)
    assert box, f"{what}: expected it to return within {timeout:.1f} s, it was still waiting"
    ok, value = box[0]
    if not ok:
        raise value
    return value


def _try_lock(backend: CacheBackend, key: str) -> bool:
    with backend.try_key_lock(key) as held:
        assert isinstance(held, bool), f"try_key_lock must yield a bool, got {held!r}"
        return held


def _timed_lock(backend: CacheBackend, key: str, timeout: float) -> tuple[bool, float]:
    started = time.monotonic()
    with backend.key_lock(key, timeout) as held:
        assert isinstance(held, bool), f"key_lock must yield a bool, got {held!r}"
        return held, time.monotonic() - started


def _expect_lock_refused(backend: CacheBackend, key: str, holder: str) -> None:
    """While ``holder`` holds ``key``: try_key_lock refuses, key_lock gives up in time."""
    got = _in_thread(lambda: _try_lock(backend, key), SLACK, "try_key_lock on a held key")
    assert got is False, f"try_key_lock while {holder} holds the key: expected False, got {got}"
    held, waited = _in_thread(
        lambda: _timed_lock(backend, key, LOCK_WAIT), LOCK_WAIT + SLACK, "key_lock(key, 0.2)"
    )
    assert held is False, f"key_lock(key, {LOCK_WAIT}) while {holder} holds it: expected False"
    assert LOCK_WAIT / 2 <= waited <= LOCK_WAIT + SLACK, (
        f"key_lock(key, {LOCK_WAIT}) while {holder} holds it: expected to give up after about "
        f"{LOCK_WAIT} s, gave up after {waited:.3f} s"
    )


def _random_batch(rng: random.Random, keys: Sequence[str], n: int) -> list[Op]:
    ops: list[Op] = []
    for _ in range(rng.randint(1, 4)):
        key = rng.choice(keys)
        kind = rng.randrange(5)
        if kind == 0:
            ops.append(Op(key, {"secret": rng.choice(["s1", "s2"]), "n": n, "f": n / 4}))
        elif kind == 1:
            ops.append(Op(key))
        elif kind == 2:
            ops.append(Op(key, if_secret=rng.choice(["s1", "s2", "S1", "s"])))
        else:
            fields = {
                name: (None if rng.random() < 0.4 else rng.choice([n, str(n), [n], {"n": n}]))
                for name in rng.sample(["secret", "a", "b", "c"], rng.randint(1, 3))
            }
            ops.append(Op(key, fields=fields))
    return ops
