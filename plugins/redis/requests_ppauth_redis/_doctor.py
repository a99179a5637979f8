"""``ppauth doctor`` for the Redis cache: each check a line, or the failure raised.

Checks, in order, what a fleet's first run would otherwise find out the hard way:
Redis answers (and how fast), it accepted the credentials, TLS verified (for
``rediss://``), the sealing key seals and opens a canary entry written just now, and
the entries already stored open with this machine's key.

The canary alone cannot catch a wrong key: it is sealed with the key it is opened
with, so it proves the round trip (Redis keeps bytes intact, the key parses), not
that this machine holds the fleet's key. What does is the entries other machines
stored: each sealed value names the id of the key that sealed it (ids, never keys),
so the survey counts the entries that open and names the key ids of those that do
not. When entries exist and none of them opens, this machine's key (or its
``encryption`` setting) differs from the fleet's: that fails the check. Some that
do not open beside some that do are what a rotation leaves behind (a retired key's
entries, refetched and overwritten on use): that is reported, not failed. With no
entries yet, the line says a wrong key cannot be seen yet.

The canary lives under the cache's hash tag for a few seconds and is deleted at once.
The survey reads at most :data:`SURVEY_LIMIT` entries, a page at a time (SCAN and
MGET: no long script blocks Redis), and never shows a value or an entry's name.
"""

from __future__ import annotations

import functools
import itertools
import json
import os
import time
from collections import Counter
from collections.abc import Iterator

from requests_ppauth.errors import CacheError
from requests_ppauth_redis._backend import RedisStore

CANARY_TTL_MS = 30_000
SURVEY_LIMIT = 1000  # entries read by the survey: enough to tell a wrong key
_PAGE = 200


def diagnose(store: RedisStore) -> list[str]:
    """The lines; raises ConfigurationError or CacheError on the first failing check."""
    settings = store.settings
    lines: list[str] = []
    started = time.perf_counter()
    store.ping()
    elapsed = (time.perf_counter() - started) * 1000
    info = store.server_info()
    version = info.get("redis_version", "?")
    lines.append(f"reachable: {settings.shown_url} (Redis {version}, {elapsed:.1f} ms)")
    lines.append(
        "authenticated"
        if settings.password is not None or "@" in settings.url
        else "authenticated: no password given (the server requires none)"
    )
    if settings.url.startswith("rediss://"):
        lines.append(
            f"TLS: server certificate verified against {settings.ca_bundle or 'the system CAs'}"
        )
    else:
        lines.append("TLS: not used (redis:// or unix://); use rediss:// across a network")
    lines.append(_canary(store))
    lines.append(_survey(store))
    return lines


def _canary(store: RedisStore) -> str:
    """Seal, write, read back and open an entry: the round trip works with this key."""
    name = f"{store.tag}:canary:{os.getpid()}-{os.urandom(4).hex()}"
    payload = {"canary": os.urandom(8).hex()}
    blob = store.seal(name, payload)
    client = store._client
    store.call("writing the doctor's canary", lambda: client.set(name, blob, px=CANARY_TTL_MS))
    try:
        back = store.call("reading the doctor's canary", lambda: client.get(name))
    finally:
        store.call("deleting the doctor's canary", lambda: client.delete(name))
    opened = store.open(name, back)
    if opened != payload:
        raise CacheError(
            f"the Redis cache {store.location}: a canary entry written just now did not read "
            "back as written"
        )
    if store.sealer is not None:
        ids = ", ".join(store.sealer.key_ids)
        return f"encryption: AES-256-GCM, a canary entry sealed and opened (key ids {ids})"
    return 'encryption: none (encryption = "none"): anyone who can read Redis reads tokens'


def _values(store: RedisStore) -> Iterator[tuple[str, bytes]]:
    """Up to :data:`SURVEY_LIMIT` stored entries (name, raw value), read a page at a
    time (``scan_iter`` works on a cluster too: every key shares one hash slot)."""
    client = store._client
    pattern = store.name("*")

    def scan() -> list[str]:
        found = itertools.islice(client.scan_iter(match=pattern, count=_PAGE), SURVEY_LIMIT)
        return [n.decode("utf-8", "replace") if isinstance(n, bytes) else str(n) for n in found]

    names = store.call("surveying entries", scan)
    for start in range(0, len(names), _PAGE):
        page = names[start : start + _PAGE]
        blobs = store.call("surveying entries", functools.partial(client.mget, page))
        for name, blob in zip(page, blobs, strict=True):
            if blob is not None:  # None: expired or deleted between SCAN and MGET
                yield name, blob if isinstance(blob, bytes) else str(blob).encode()


def _opens(store: RedisStore, name: str, blob: bytes) -> tuple[bool, str]:
    """Whether ``blob`` opens as an entry here, and, if not, why (a key id at most)."""
    from requests_ppauth.cache.seal import KEY_ID_BYTES, MAGIC, SealError, is_sealed

    data = blob
    if store.sealer is not None:
        try:
            data = store.sealer.open(name, blob)
        except SealError:
            if not is_sealed(blob):
                return False, 'not sealed (written with encryption = "none")'
            start = len(MAGIC) + 1
            key_id = blob[start : start + KEY_ID_BYTES].hex()
            if key_id in store.sealer.key_ids:
                return False, f"sealed with key id {key_id} but changed or damaged"
            return False, f"sealed with key id {key_id}"
    elif is_sealed(blob):
        return False, "sealed (encryption here is none)"
    try:
        entry = json.loads(data)
    except ValueError:
        return False, "not a cache entry"
    return (True, "") if isinstance(entry, dict) else (False, "not a cache entry")


def _survey(store: RedisStore) -> str:
    """The entries stored now: whether they open with this key (see the module
    docstring); raises CacheError when there are some and none opens."""
    opened = 0
    failures: Counter[str] = Counter()
    for name, blob in _values(store):
        ok, why = _opens(store, name, blob)
        if ok:
            opened += 1
        else:
            failures[why] += 1
    total = opened + sum(failures.values())
    scope = f"the first {total}" if total >= SURVEY_LIMIT else f"{total}"
    if total == 0:
        return (
            "entries: none stored yet (whether this key matches the fleet's shows once "
            "another machine has stored a token)"
        )
    if not failures:
        return f"entries: {scope} stored, all open with this key"
    why = "; ".join(f"{count} {reason}" for reason, count in sorted(failures.items()))
    if opened == 0:
        yours = (
            f"key ids {', '.join(store.sealer.key_ids)}"
            if store.sealer is not None
            else 'encryption = "none"'
        )
        raise CacheError(
            f"the Redis cache {store.location}: none of {scope} stored entries opens here "
            f"({why}; this machine has {yours}): set PPAUTH_CACHE_KEY to the key the fleet "
            "uses (to rotate, list the new key first and the old one after it), and the same "
            "encryption setting everywhere"
        )
    return (
        f"entries: {opened} of {scope} open with this key; {why}: left by a retired key or "
        "a machine with another key, refetched and overwritten when used"
    )
