""":class:`RedisStore`: the token cache in Redis itself, without the fallback (see
:mod:`requests_ppauth_redis._fallback` for the backend the core gets).

- **Keys**: one Redis key per entry, ``{<prefix>}:e:<key>``, where ``<key>`` is the
  core's own (``at:<sha256>``, ``msal:<sha256>``: hashes, never a tenant, client or
  user name). The braces are a hash tag: every key of the cache (entries, leases,
  the canary) hashes to one Redis Cluster slot, so MGET, WATCH and MULTI/EXEC over
  several keys work on a cluster too. One slot holds the whole cache easily (10,000
  tokens are about 15 MB); a cluster is for availability, not for size.
- **Values**: the entry's JSON, sealed with AES-256-GCM under ``PPAUTH_CACHE_KEY``
  with the Redis key name bound in as associated data (a value copied to another
  key does not open). ``encryption = "none"`` stores the JSON as it is.
- **Expiry**: an entry with a numeric ``expires_on`` gets ``PXAT expires_on +
  PRUNE_AFTER``: Redis drops dead tokens (and back-off records) itself, exactly
  when the core's pruning rule allows. Entries without one (msal's partitions:
  refresh tokens and accounts) get no TTL: the core deletes them (``logout``).
- **get**: one ``MGET``, atomic, O(len(keys)).
- **apply**: a batch of puts and unconditional deletes is one ``MULTI``/``EXEC``.
  A batch that depends on what is stored (a field patch, an ``if_secret`` delete)
  cannot be evaluated by Redis (it cannot open sealed values): it ``WATCH``es the
  batch's keys, reads them, works out the result with the core's reference
  :func:`~requests_ppauth.cache.apply_ops`, and writes it in ``MULTI``/``EXEC``;
  when another writer touched a watched key first, Redis refuses the transaction
  and it starts over (bounded by :data:`APPLY_DEADLINE`).
- **read_all**: one script that ``SCAN``s the cache's keys and reads them, so a
  listing is a snapshot (never half a batch); it never runs on the way to a token.
- **A value that does not open** (a wrong or retired key, a tampered value, a
  plaintext value read with a key) is a miss, reported once per process.
"""

from __future__ import annotations

import contextlib
import json
import random
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from requests_ppauth.cache import PRUNE_AFTER, Entry, Op, apply_ops
from requests_ppauth.errors import CacheError, ConfigurationError
from requests_ppauth_redis._connection import make_client, translate
from requests_ppauth_redis._leases import Leases
from requests_ppauth_redis._settings import RedisSettings
from requests_ppauth_redis._warnings import warn_once

if TYPE_CHECKING:
    from requests_ppauth.cache.seal import Sealer

T = TypeVar("T")

APPLY_DEADLINE = 10.0  # seconds a contended batch may keep retrying its transaction

_READ_ALL = """
local cursor = "0"
local out = {}
repeat
  local page = redis.call('SCAN', cursor, 'MATCH', ARGV[1], 'COUNT', 1000)
  cursor = page[1]
  for _, name in ipairs(page[2]) do
    local value = redis.call('GET', name)
    if value then
      out[#out + 1] = name
      out[#out + 1] = value
    end
  end
until cursor == "0"
return out
"""


def _dumps(value: Mapping[str, Any]) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def _expiry_ms(entry: Mapping[str, Any]) -> int | None:
    """When Redis may drop ``entry`` (ms since the epoch), or None: never."""
    when = entry.get("expires_on")
    if isinstance(when, int | float) and not isinstance(when, bool):
        return int((float(when) + PRUNE_AFTER) * 1000)
    return None


class RedisStore:
    """Entries and leases in Redis (see the module docstring). Every failure is a
    :class:`~requests_ppauth.CacheError` (``RedisUnavailable`` when Redis did not
    answer) or, for wrong settings, a :class:`~requests_ppauth.ConfigurationError`."""

    def __init__(self, settings: RedisSettings, sealer: Sealer | None) -> None:
        self.settings = settings
        self.sealer = sealer
        self.tag = settings.hash_tag
        self._entry_prefix = f"{self.tag}:e:"
        self._client = make_client(settings)
        self._read_all = self._client.register_script(_READ_ALL)
        self.leases = Leases(self._client, self.tag, self.call, settings.lease_ttl)

    @property
    def location(self) -> str:
        return f"{self.settings.shown_url} {self.tag}"

    def __repr__(self) -> str:
        return f"RedisStore({self.location!r})"

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._client.close()

    # -- calls -------------------------------------------------------------------------
    def call(self, doing: str, fn: Callable[[], T]) -> T:
        """``fn()``, with redis-py's errors translated (never raised raw: they may
        name the URL)."""
        import redis

        try:
            return fn()
        except (redis.RedisError, OSError) as exc:
            error = translate(exc, self.settings, doing)
        raise error from None

    def ping(self) -> None:
        """Connect and authenticate: ConfigurationError for wrong credentials or
        TLS, or a cluster node met without ``cluster = true`` (its ``MOVED`` replies
        would otherwise come only with the first token); RedisUnavailable when Redis
        does not answer. One round trip."""
        if self.settings.cluster:
            self.call("connecting", self._client.ping)
            return

        def ping_and_mode() -> Any:
            with self._client.pipeline(transaction=False) as pipe:
                pipe.ping()
                pipe.info("cluster")
                return pipe.execute()[1]

        info = self.call("connecting", ping_and_mode)
        if isinstance(info, Mapping) and str(info.get("cluster_enabled", "0")) == "1":
            raise ConfigurationError(
                f"Redis at {self.settings.shown_url} is a Redis Cluster node: set cluster = "
                "true in the profile's [profiles.<name>.redis] table (or PPAUTH_REDIS_CLUSTER=1)"
            )

    def server_info(self) -> Mapping[str, Any]:
        info: Mapping[str, Any] = self.call("reading INFO", lambda: self._client.info("server"))
        return info

    # -- values ------------------------------------------------------------------------
    def name(self, key: str) -> str:
        return self._entry_prefix + key

    def seal(self, name: str, entry: Mapping[str, Any]) -> bytes:
        data = _dumps(entry)
        return self.sealer.seal(name, data) if self.sealer is not None else data

    def open(self, name: str, blob: bytes | str | None) -> Entry | None:
        """The entry in ``blob``, or None (absent, or a value that does not open:
        reported once per process, never raised)."""
        if blob is None:
            return None
        data = blob.encode() if isinstance(blob, str) else blob  # clients return bytes
        if self.sealer is not None:
            from requests_ppauth.cache.seal import SealError

            try:
                data = self.sealer.open(name, data)
            except SealError:
                warn_once(
                    "unopenable",
                    f"an entry of the Redis cache {self.location} does not open with "
                    "PPAUTH_CACHE_KEY (a wrong or retired key, or a changed value): treated "
                    "as absent; a token is fetched and stored over it",
                )
                return None
        try:
            entry = json.loads(data)
        except ValueError:
            entry = None
        if not isinstance(entry, dict):
            warn_once(
                "unreadable",
                f"an entry of the Redis cache {self.location} is not a cache entry "
                "(written by something else, or encryption differs): treated as absent",
            )
            return None
        return entry

    # -- the protocol --------------------------------------------------------------------
    def get(self, keys: Sequence[str]) -> dict[str, Entry]:
        wanted = list(dict.fromkeys(keys))
        if not wanted:
            return {}
        names = [self.name(k) for k in wanted]
        blobs = self.call("reading tokens", lambda: self._client.mget(names))
        found: dict[str, Entry] = {}
        for key, name, blob in zip(wanted, names, blobs, strict=True):
            entry = self.open(name, blob)
            if entry is not None:
                found[key] = entry
        return found

    def apply(self, ops: Sequence[Op]) -> None:
        if not ops:
            return
        touched = list(dict.fromkeys(op.key for op in ops))
        if all(op.fields is None and op.if_secret is None for op in ops):
            final: dict[str, Entry | None] = {}
            for op in ops:  # puts and deletes: the last op on a key decides
                final[op.key] = dict(op.value) if op.value is not None else None
            self.call("storing tokens", lambda: self._write(final, watched=None))
        else:
            self.call("storing tokens", lambda: self._apply_watched(touched, ops))
        self.leases.wrote()  # a lease this thread holds now releases with "stored"

    def _apply_watched(self, touched: list[str], ops: Sequence[Op]) -> None:
        import redis

        names = [self.name(k) for k in touched]
        deadline = time.monotonic() + APPLY_DEADLINE
        attempt = 0
        while True:
            with self._client.pipeline(transaction=True) as pipe:
                try:
                    pipe.watch(*names)  # type: ignore[no-untyped-call]
                    # a command after WATCH runs at once; RedisCluster's pipeline
                    # refuses pipe.mget, not the raw command (one slot: one node)
                    blobs = pipe.execute_command("MGET", *names)  # type: ignore[no-untyped-call]
                    state = {
                        k: e
                        for k, n, b in zip(touched, names, blobs, strict=True)
                        if (e := self.open(n, b)) is not None
                    }
                    apply_ops(state, ops)
                    self._write({k: state.get(k) for k in touched}, watched=pipe)
                    return
                except redis.WatchError:
                    attempt += 1
                    if time.monotonic() > deadline:
                        raise CacheError(
                            f"the Redis cache {self.location}: a batch lost to other writers "
                            f"{attempt} times in {APPLY_DEADLINE:.0f} s"
                        ) from None
                    time.sleep(random.uniform(0, min(0.002 * attempt, 0.05)))  # noqa: S311

    def _write(self, final: Mapping[str, Entry | None], watched: Any) -> None:
        """Write ``final`` (None: delete) in one MULTI/EXEC (on ``watched``, the
        pipeline holding the WATCH, when given)."""
        now_ms = int(time.time() * 1000)
        if watched is None:
            pipe = self._client.pipeline(transaction=True)
        else:
            pipe = watched
            pipe.multi()
        try:
            for key, entry in final.items():
                name = self.name(key)
                expiry = _expiry_ms(entry) if entry is not None else None
                if entry is None or (expiry is not None and expiry <= now_ms):
                    pipe.delete(name)  # gone, or already past pruning: Redis would drop it
                elif expiry is not None:
                    pipe.set(name, self.seal(name, entry), pxat=expiry)
                else:
                    pipe.set(name, self.seal(name, entry))
            pipe.execute()
        finally:
            if watched is None:
                pipe.reset()

    def put_if_absent(self, entries: Mapping[str, Entry]) -> int:
        """Store each of ``entries`` only where Redis has none (what this machine kept
        while Redis was away); how many were stored."""
        now_ms = int(time.time() * 1000)
        pipe = self._client.pipeline(transaction=False)
        for key, entry in entries.items():
            name = self.name(key)
            expiry = _expiry_ms(entry)
            if expiry is not None and expiry <= now_ms:
                continue
            pipe.set(name, self.seal(name, entry), nx=True, pxat=expiry)
        results = self.call("restoring tokens", pipe.execute)
        return sum(1 for r in results if r)

    def read_all(self) -> dict[str, Entry]:
        pattern = self._entry_prefix + "*"
        flat = self.call(
            "listing tokens", lambda: self._read_all(keys=[self.tag + ":index"], args=[pattern])
        )
        found: dict[str, Entry] = {}
        for raw_name, blob in zip(flat[::2], flat[1::2], strict=True):
            name = raw_name.decode("utf-8", "replace") if isinstance(raw_name, bytes) else raw_name
            entry = self.open(name, blob)
            if entry is not None:
                found[name[len(self._entry_prefix) :]] = entry
        return found

    def key_lock(self, key: str, timeout: float) -> contextlib.AbstractContextManager[bool]:
        return self.leases.hold(key, max(timeout, 0.0))

    def try_key_lock(self, key: str) -> contextlib.AbstractContextManager[bool]:
        return self.leases.hold(key, None)
