"""``ppauth doctor`` for the Redis cache: each check a line, or the failure raised.

Checks, in order, what a fleet's first run would otherwise find out the hard way:
Redis answers (and how fast), it accepted the credentials, TLS verified (for
``rediss://``), and the sealing key opens a canary entry written just now (so
every machine sealing with this key can read what the others store). The canary
lives under the cache's hash tag for a few seconds and is deleted at once.
"""

from __future__ import annotations

import os
import time

from requests_ppauth.errors import CacheError
from requests_ppauth_redis._backend import RedisStore

CANARY_TTL_MS = 30_000


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
        lines.append(f"encryption: AES-256-GCM, a canary entry sealed and opened (key ids {ids})")
    else:
        lines.append(
            'encryption: none (encryption = "none"): anyone who can read Redis reads tokens'
        )
    return lines
