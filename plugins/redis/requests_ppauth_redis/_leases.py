"""Fleet-wide single-flight: the key lock as a Redis lease.

- **Names**: ``{<prefix>}:lock:<sha256 of the key>`` and ``{<prefix>}:wake:<…>``:
  the core's lock names hold tenant and client ids, Redis sees only hashes.
- **Taking it**: ``SET <lock> <random token> NX PX <ttl>``: one holder in the whole
  fleet, and a lease that ends by itself when the holder dies (SIGKILL, a lost
  node): nobody waits for a dead process longer than :data:`LEASE_TTL`.
- **Holding it**: a daemon thread extends the lease every ``ttl / 3`` while the
  holder still works (a slow identity provider may take longer than one lease),
  with a script that extends only our own token.
- **Releasing it**: a compare-and-delete script (delete only if the value is still
  our token, so a holder whose lease expired never frees its successor's), which
  also publishes on the key's channel: ``stored`` when the holder wrote to the cache
  while it held the lease (a token, or a back-off record), else ``released``.
- **Waiting**: a waiter subscribes to the key's channel *before* it tries ``SET NX``
  again (a release between its failed try and its subscription would otherwise be
  lost), then sleeps in the kernel on that connection until the release message,
  the lease's own end (a dead holder publishes nothing: the waiter reads the lease's
  ``PTTL`` and wakes when it runs out), or its own deadline, whichever comes first.
  No polling: a fleet of waiters costs Redis nothing while it waits. Past the
  deadline it yields False and the core fetches its own token.
- **Woken by ``stored``**: the waiter yields True without taking the lease. The core
  reads the cache after its key lock in every case, and what the holder stored
  answers it (a token, or the back-off to raise), so the whole herd reads at once
  instead of passing the lease along one by one (64 waiters took about 3 s that
  way under load). Woken by ``released`` (the holder stored nothing: it failed
  outright), waiters take turns for the lease as before.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    import redis

from requests_ppauth_redis._settings import LEASE_TTL

log = logging.getLogger("requests_ppauth_redis")

T = TypeVar("T")

STORED = "stored"  # what a release says when its holder wrote to the cache

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  redis.call('PUBLISH', ARGV[2], ARGV[3])
  return 1
end
return 0
"""

_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""


class Leases:
    """Key locks of one cache: lock ``<tag>:lock:<key>``, channel ``<tag>:wake:<key>``.

    ``call(doing, fn)`` runs ``fn()`` turning redis-py's errors into ours (see
    :mod:`requests_ppauth_redis._connection`)."""

    def __init__(
        self,
        client: redis.Redis,
        tag: str,
        call: Callable[[str, Callable[[], Any]], Any],
        ttl: float = LEASE_TTL,
    ) -> None:
        self._client = client
        self._tag = tag
        self._call = call
        self.ttl = ttl
        self._release = client.register_script(_RELEASE)
        self._renew = client.register_script(_RENEW)
        self._writes = threading.local()  # per thread: the core writes in the holder's

    def wrote(self) -> None:
        """Note that this thread stored something in the cache (see ``stored``)."""
        self._writes.count = getattr(self._writes, "count", 0) + 1

    def _written(self) -> int:
        return int(getattr(self._writes, "count", 0))

    def names(self, key: str) -> tuple[str, str]:
        """The lease's key and channel. The core's lock names are its token keys
        (authority, tenant, client, user, scope in clear): Redis sees a hash."""
        digest = hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()[:40]
        return f"{self._tag}:lock:{digest}", f"{self._tag}:wake:{digest}"

    def _try(self, lock: str, token: str) -> bool:
        ttl_ms = int(self.ttl * 1000)
        return bool(
            self._call(
                "taking a key lock", lambda: self._client.set(lock, token, nx=True, px=ttl_ms)
            )
        )

    @contextlib.contextmanager
    def hold(self, key: str, timeout: float | None) -> Iterator[bool]:
        """Yield whether the lease on ``key`` is ours, or its holder stored what it
        fetched (see the module docstring); ``timeout=None``: do not wait."""
        lock, channel = self.names(key)
        token = os.urandom(16).hex()
        held: bool | str = self._try(lock, token)
        if not held and timeout is not None and timeout > 0:
            held = self._wait(lock, channel, token, time.monotonic() + timeout)
        if held == STORED:
            yield True  # nothing to release: the lease was never ours
            return
        if not held:
            yield False
            return
        writes = self._written()
        stop = threading.Event()
        renewer = threading.Thread(
            target=self._keep, args=(lock, token, stop), name="ppauth-redis-lease", daemon=True
        )
        renewer.start()
        try:
            yield True
        finally:
            stop.set()
            said = STORED if self._written() > writes else "released"
            try:
                self._call(
                    "releasing a key lock",
                    lambda: self._release(keys=[lock], args=[token, channel, said]),
                )
            except Exception as exc:  # the lease ends by itself within its ttl
                log.debug("could not release a key lock (%s); its lease expires", exc)

    def _wait(self, lock: str, channel: str, token: str, deadline: float) -> bool | str:
        """Wait for the lease (see the module docstring): True once it is ours,
        :data:`STORED` when its holder stored its result, False past ``deadline``."""
        pubsub = self._call("waiting for a key lock", lambda: self._subscribed(channel))
        try:
            while True:
                if self._try(lock, token):  # after subscribing: no lost wake-up
                    return True
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                pttl = self._call("waiting for a key lock", lambda: self._client.pttl(lock))
                # -2: gone already (try again now); -1 cannot happen (we set PX)
                lease_left = (pttl / 1000 + 0.005) if isinstance(pttl, int) and pttl >= 0 else 0
                wait = min(remaining, lease_left if pttl != -1 else remaining)
                if wait > 0:
                    said = self._call(
                        "waiting for a key lock",
                        lambda wait=wait: _next_message(pubsub, wait),  # type: ignore[misc]
                    )
                    if said == STORED:
                        return STORED
        finally:
            with contextlib.suppress(Exception):
                pubsub.close()

    def _subscribed(self, channel: str) -> redis.client.PubSub:
        pubsub: redis.client.PubSub = self._client.pubsub()  # type: ignore[no-untyped-call]
        pubsub.subscribe(channel)
        deadline = time.monotonic() + 5.0
        while time.monotonic() < deadline:  # the confirmation: now no message is lost
            message = pubsub.get_message(timeout=1.0)
            if message is not None and message.get("type") == "subscribe":
                return pubsub
        pubsub.close()
        import redis as redis_module

        raise redis_module.TimeoutError("no subscription confirmation")

    def _keep(self, lock: str, token: str, stop: threading.Event) -> None:
        """Extend the lease every ttl/3 until ``stop``; a lost lease is logged (its
        holder goes on: the worst case is a second token request somewhere)."""
        ttl_ms = int(self.ttl * 1000)
        while not stop.wait(self.ttl / 3):
            try:
                renewed = self._call(
                    "renewing a key lock", lambda: self._renew(keys=[lock], args=[token, ttl_ms])
                )
            except Exception as exc:
                log.debug("could not renew a key lock (%s)", exc)
                continue
            if not renewed:
                log.warning("a key lock's lease ended before its holder finished")
                return


def _next_message(pubsub: redis.client.PubSub, timeout: float) -> str | None:
    """Block up to ``timeout`` for one message on ``pubsub`` (a release); what it
    said (``stored``, ``released``), or None when none came."""
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return None
        message = pubsub.get_message(timeout=left)
        if message is not None and message.get("type") == "message":
            data = message.get("data")
            return data.decode("ascii", "replace") if isinstance(data, bytes) else str(data)
