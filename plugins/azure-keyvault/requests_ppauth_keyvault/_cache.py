"""Secrets held in memory for a bounded time; never written anywhere.

Why a cache at all: the core asks the sources again whenever it needs a new token
(a fresh process, a refresh, a 401), and every credential build would otherwise
cost a vault round trip, which Key Vault throttles per vault. Why a short one: a
rotated secret must reach long-running processes without a restart.

One lock guards the table; a per-key lock makes concurrent lookups of the same
reference wait for one vault read instead of each making their own (the 8-thread
contract test, and 32 worker threads at start-up, make one request).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

T = TypeVar("T")
MAX_ENTRIES = 256


@dataclass
class _Entry(Generic[T]):
    value: T = field(repr=False)
    expires: float


class SecretCache(Generic[T]):
    """A thread-safe, time-bounded map from a key to a secret.

    ``clock`` is monotonic seconds (replaceable so tests need not sleep). A
    ``ttl`` of 0 caches nothing; failures are never cached.
    """

    def __init__(
        self, clock: Callable[[], float] = time.monotonic, max_entries: int = MAX_ENTRIES
    ) -> None:
        self.clock = clock
        self.max_entries = max_entries
        self._lock = threading.Lock()
        self._entries: dict[Hashable, _Entry[T]] = {}
        self._key_locks: dict[Hashable, threading.Lock] = {}

    def __repr__(self) -> str:
        return f"<SecretCache: {len(self._entries)} entries>"

    def __len__(self) -> int:
        with self._lock:
            return sum(1 for e in self._entries.values() if e.expires > self.clock())

    def get_or_load(self, key: Hashable, ttl: float, load: Callable[[], T]) -> T:
        """The cached value for ``key`` if fresh, else ``load()`` (one caller at a time)."""
        with self._lock:
            hit = self._fresh(key)
            if hit is not None:
                return hit.value
            key_lock = self._key_locks.setdefault(key, threading.Lock())
        with key_lock:
            with self._lock:
                hit = self._fresh(key)  # another thread loaded it while we waited
                if hit is not None:
                    return hit.value
            value = load()
            if ttl > 0:
                with self._lock:
                    self._prune()
                    self._entries[key] = _Entry(value, self.clock() + ttl)
            return value

    def clear(self) -> None:
        """Forget every secret (after a rotation, or to drop them from memory early)."""
        with self._lock:
            self._entries.clear()

    def _fresh(self, key: Hashable) -> _Entry[T] | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry.expires > self.clock():
            return entry
        del self._entries[key]  # expired: drop the secret now, not at the next prune
        return None

    def _prune(self) -> None:
        now = self.clock()
        for key in [k for k, e in self._entries.items() if e.expires <= now]:
            del self._entries[key]
        while len(self._entries) >= self.max_entries:
            del self._entries[min(self._entries, key=lambda k: self._entries[k].expires)]
        for key in [k for k, lk in self._key_locks.items() if k not in self._entries]:
            if not self._key_locks[key].locked():
                del self._key_locks[key]

    def after_fork(self) -> None:
        """New locks in a forked child: a lock held by a parent thread would never be released."""
        self._lock = threading.Lock()
        self._key_locks = {}


SECRETS: SecretCache[str | bytes] = SecretCache()
"""The per-process cache every resolver shares unless given its own."""

if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=SECRETS.after_fork)
