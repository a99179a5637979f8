""":class:`RedisCache`: the backend the core gets: Redis while it answers, this
machine's file cache while it does not.

A request must not fail because the cache is away. When a call to Redis fails as
unavailable (refused, timed out: a frozen server costs one socket timeout), the
call is done on the local :class:`~requests_ppauth.cache.FileCache` (the default
directory, or ``PPAUTH_CACHE_DIR``) instead, one warning is shown per process, and
every call goes straight to the file cache until a back-off (1 s, doubling up to
:data:`MAX_BACKOFF`) has passed; then the next call tries Redis again. When Redis
answers again, what this process stored locally meanwhile is copied to Redis where
Redis has nothing for that key (a Redis restarted empty gets the tokens back; a
newer token stored by another machine is kept), and sharing resumes.

Wrong settings (a wrong password, a certificate that does not verify) are not an
outage: they are raised as :class:`~requests_ppauth.ConfigurationError` when the
backend is made, and as the core's :class:`~requests_ppauth.CacheError` later
(the core then gets a token without the cache and says so).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from requests_ppauth.cache import Entry, FileCache, Op
from requests_ppauth_redis._backend import RedisStore
from requests_ppauth_redis._connection import RedisUnavailable
from requests_ppauth_redis._warnings import warn_once

if TYPE_CHECKING:
    from requests_ppauth.cache.seal import Sealer

log = logging.getLogger("requests_ppauth_redis")

T = TypeVar("T")

FIRST_BACKOFF = 1.0
MAX_BACKOFF = 30.0
RESTORE_LIMIT = 1000  # locally stored keys remembered for copying back to Redis


class RedisCache:
    """:class:`~requests_ppauth.cache.CacheBackend` on Redis with a local fallback
    (see the module docstring). Made by :func:`requests_ppauth_redis.make_redis_cache`."""

    def __init__(
        self, store: RedisStore, options: Mapping[str, Any], *, check: bool = True
    ) -> None:
        self.store = store
        self._options = dict(options)  # for pickling: a copy re-reads its settings
        self._fallback = store.settings.fallback
        self._local: FileCache | None = None
        self._mutex = threading.Lock()
        self._down_until = 0.0
        self._backoff = FIRST_BACKOFF
        self._kept: set[str] = set()  # keys stored locally while Redis was away
        if check:
            try:
                store.ping()
            except RedisUnavailable as exc:
                if not self._fallback:
                    raise
                self._went_down(exc)

    # -- what it is --------------------------------------------------------------------
    @property
    def location(self) -> str:
        return self.store.location

    def __repr__(self) -> str:
        return f"RedisCache({self.location!r})"

    @property
    def sealer(self) -> Sealer | None:
        """What seals the values (None: ``encryption = "none"``): ``ppauth cache
        path`` and ``doctor`` show its key ids."""
        return self.store.sealer

    def __getstate__(self) -> dict[str, Any]:
        return {"options": self._options}

    def __setstate__(self, state: dict[str, Any]) -> None:
        from requests_ppauth_redis import make_redis_cache

        made = make_redis_cache(state["options"], check=False)
        self.__dict__.update(made.__dict__)

    @property
    def local(self) -> FileCache:
        """This machine's file cache (made on first need)."""
        with self._mutex:
            if self._local is None:
                # sealed with Redis's key (the `key` option wins over PPAUTH_CACHE_KEY);
                # with encryption = "none", as the file cache would be on its own
                self._local = FileCache(sealer=self.store.sealer)
            return self._local

    @property
    def sharing(self) -> bool:
        """Whether calls go to Redis now (False: to the local file cache)."""
        return time.monotonic() >= self._down_until

    # -- outages -----------------------------------------------------------------------
    def _went_down(self, exc: BaseException) -> None:
        with self._mutex:
            self._down_until = time.monotonic() + self._backoff
            wait = self._backoff
            self._backoff = min(self._backoff * 2, MAX_BACKOFF)
        location = self.local.location
        warn_once(
            "down",
            f"{exc}; using this machine's file cache {location} instead (tokens are not "
            f"shared with other machines meanwhile) and trying Redis again in {wait:.0f} s, "
            f"backing off to {MAX_BACKOFF:.0f} s",
        )

    def _came_back(self) -> None:
        with self._mutex:
            was_down = self._backoff > FIRST_BACKOFF
            self._backoff = FIRST_BACKOFF
            kept, self._kept = self._kept, set()
        if was_down:
            log.info("Redis at %s answers again: sharing tokens again", self.store.location)
        if kept and self._local is not None:
            with contextlib.suppress(Exception):
                restored = self.store.put_if_absent(self._local.get(sorted(kept)))
                log.info("copied %d tokens kept locally back to Redis", restored)

    def _either(self, remote: Callable[[], T], local: Callable[[FileCache], T]) -> T:
        if not self._fallback:
            return remote()
        if self.sharing:
            try:
                result = remote()
            except RedisUnavailable as exc:
                self._went_down(exc)
            else:
                if self._backoff > FIRST_BACKOFF or self._kept:
                    self._came_back()
                return result
        return local(self.local)

    # -- the protocol --------------------------------------------------------------------
    def get(self, keys: Sequence[str]) -> dict[str, Entry]:
        return self._either(lambda: self.store.get(keys), lambda c: c.get(keys))

    def apply(self, ops: Sequence[Op]) -> None:
        def local(cache: FileCache) -> None:
            cache.apply(ops)
            with self._mutex:
                if len(self._kept) < RESTORE_LIMIT:
                    self._kept.update(op.key for op in ops)

        self._either(lambda: self.store.apply(ops), local)

    def read_all(self) -> Mapping[str, Entry]:
        return self._either(self.store.read_all, lambda c: c.read_all())

    def key_lock(self, key: str, timeout: float) -> contextlib.AbstractContextManager[bool]:
        return self._lock(key, max(timeout, 0.0))

    def try_key_lock(self, key: str) -> contextlib.AbstractContextManager[bool]:
        return self._lock(key, None)

    @contextlib.contextmanager
    def _lock(self, key: str, timeout: float | None) -> Iterator[bool]:
        started = time.monotonic()
        held: contextlib.AbstractContextManager[bool] | None = None
        with contextlib.ExitStack() as stack:
            if not self._fallback or self.sharing:
                try:
                    held = self.store.leases.hold(key, timeout)
                    mine = stack.enter_context(held)
                except RedisUnavailable as exc:
                    if not self._fallback:
                        raise
                    self._went_down(exc)
                    held = None
            if held is None:
                local = self.local
                if timeout is None:
                    mine = stack.enter_context(local.try_key_lock(key))
                else:
                    left = max(timeout - (time.monotonic() - started), 0.0)
                    mine = stack.enter_context(local.key_lock(key, left))
            yield mine

    # -- ppauth doctor -----------------------------------------------------------------
    def diagnose(self) -> list[str]:
        """Lines for ``ppauth doctor``: reachability, authentication, TLS, and that
        the key opens a canary entry written here. Raises the failure otherwise."""
        from requests_ppauth_redis._doctor import diagnose

        return diagnose(self.store)
