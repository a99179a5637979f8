""":class:`MemoryCache`: a :class:`~requests_ppauth.cache.CacheBackend` in this
process's memory (``cache=False``, ``PPAUTH_CACHE=memory``).

Tokens live as long as the process: every thread of it shares them, and its key
locks make those threads single-flight, but no other process sees them. It is also
the smallest correct backend, which makes it the example to read first.
"""

from __future__ import annotations

import contextlib
import os
import threading
import weakref
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from requests_ppauth.cache.protocol import Entry, Op, apply_ops, prunable

PRUNE_EVERY = 1000  # batches between sweeps of long-expired tokens

_caches: weakref.WeakSet[MemoryCache] = weakref.WeakSet()


def _after_fork() -> None:
    # a parent thread may have held a lock at the fork: nobody would release it here
    for cache in list(_caches):
        cache._mutex = threading.Lock()
        cache._key_locks = {}


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork)


class MemoryCache:
    """A dict behind a lock; key locks are ``threading.Lock`` objects."""

    def __init__(self, options: Mapping[str, Any] | None = None) -> None:
        if options:
            raise ValueError(f"the memory cache takes no settings, got {sorted(options)}")
        self._state: dict[str, Entry] = {}
        self._mutex = threading.Lock()
        self._key_locks: dict[str, threading.Lock] = {}
        self._batches = 0
        _caches.add(self)

    @property
    def location(self) -> str:
        return f"memory (process {os.getpid()})"

    def __repr__(self) -> str:
        return f"MemoryCache({len(self._state)} entries)"

    def get(self, keys: Sequence[str]) -> dict[str, Entry]:
        with self._mutex:  # a batch is applied op by op: never show half of one
            state = self._state
            return {k: v for k in keys if (v := state.get(k)) is not None}

    def apply(self, ops: Sequence[Op]) -> None:
        with self._mutex:
            apply_ops(self._state, ops)
            self._batches += 1
            if self._batches % PRUNE_EVERY == 0:
                for key in [k for k, v in self._state.items() if prunable(v)]:
                    del self._state[key]

    def read_all(self) -> Mapping[str, Entry]:
        with self._mutex:
            return dict(self._state)

    def _lock(self, key: str) -> threading.Lock:
        with self._mutex:
            return self._key_locks.setdefault(key, threading.Lock())

    @contextlib.contextmanager
    def _held(self, key: str, timeout: float | None) -> Iterator[bool]:
        lock = self._lock(key)
        held = lock.acquire(timeout=timeout) if timeout is not None else lock.acquire(False)
        try:
            yield held
        finally:
            if held:
                lock.release()

    def key_lock(self, key: str, timeout: float) -> contextlib.AbstractContextManager[bool]:
        return self._held(key, max(timeout, 0.0))

    def try_key_lock(self, key: str) -> contextlib.AbstractContextManager[bool]:
        return self._held(key, None)

    # a memory cache is this process's: a pickled copy (a spawned worker) starts empty
    def __getstate__(self) -> dict[str, Any]:
        return {}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__()  # type: ignore[misc]
