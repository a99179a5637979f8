"""Filling both caches with the same N access tokens, for bench_cache.py.

Both sides get the same tokens (random JWT-sized secrets, one per entry, the size of
the emulator's real tokens), the same clients, scopes, tenant, authority and expiry:

- ours through the backend's own write path, ``FileCache.apply`` in batches, each
  entry exactly what ``TokenProvider._entry`` stores, under
  ``access_token_key(token_key(...))``; and, as the provider leaves behind, one
  (empty) single-flight lock file per key in ``locks/`` (:func:`token_ops` and
  :func:`fill` also fill any other backend, e.g. bench_fleet.py's Redis);
- msal-extensions' file from msal's own ``SerializableTokenCache.add()`` fed the
  token event msal's app hands it after a client-credentials request (captured from
  a real one against the emulator), serialised once, as ``PersistedTokenCache``
  writes it.

Two spreads: ``clients`` (N client ids, one scope each) and ``scopes`` (the sample
client with N scopes ``https://org{i}.crm.dynamics.com/.default``: one service
principal talking to many Dataverse orgs). The sample client's token for
:func:`lookup_scope` is always among the N, for the fresh-process lookup.
"""

from __future__ import annotations

import base64
import json
import os
import random
import sqlite3
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from requests_ppauth.cache import CacheBackend, Op
from requests_ppauth.cache.file import FileCache
from requests_ppauth.cache.keys import access_token_key, token_key

LIFETIME = 3600  # the emulator's, and Entra ID's usual
REFRESH_MARGIN = 300.0  # as AccessToken.from_msal
BATCH = 500
CLIENTS_SCOPE = "https://service.powerapps.com//.default"


@dataclass(frozen=True)
class Tenant:
    authority_host: str  # https://127.0.0.1:port
    tenant_id: str
    client_id: str  # the sample client: the one real acquisitions use

    @property
    def authority(self) -> str:
        return f"{self.authority_host}/{self.tenant_id}"

    @property
    def environment(self) -> str:  # msal's: the authority's host name
        return self.authority_host.split("://", 1)[1].split(":")[0].lower()


def lookup_scope(spread: str, n: int) -> str:
    """The scope of the sample client's token the fresh-process lookup reads."""
    return (
        CLIENTS_SCOPE if spread == "clients" else f"https://org{n // 2}.crm.dynamics.com/.default"
    )


def entries(
    tenant: Tenant, spread: str, n: int, token_bytes: int, seed: int
) -> list[tuple[str, str, str]]:
    """``n`` (client_id, scope, secret), the sample client's lookup token among them."""
    rng = random.Random(seed)  # noqa: S311 - fake tokens, reproducible
    out = []
    for i in range(n):
        if spread == "clients":
            client = (
                tenant.client_id
                if i == n // 2
                else str(uuid.UUID(int=rng.getrandbits(128), version=4))
            )
            scope = CLIENTS_SCOPE
        else:
            client, scope = tenant.client_id, f"https://org{i}.crm.dynamics.com/.default"
        raw = rng.randbytes(token_bytes)
        secret = "eyJ" + base64.urlsafe_b64encode(raw).decode().rstrip("=")[: token_bytes - 3]
        out.append((client, scope, secret))
    return out


def token_ops(tenant: Tenant, items: list[tuple[str, str, str]], now: float) -> list[Op]:
    """The writes that store ``items``, each entry exactly what
    ``TokenProvider._entry`` stores for an app's token (no "user")."""
    ops = []
    for client, scope, secret in items:
        key = token_key(tenant.authority, tenant.tenant_id, client, None, scope)
        entry = {
            "secret": secret,
            "expires_on": round(now + LIFETIME, 3),
            "refresh_on": round(now + LIFETIME - REFRESH_MARGIN, 3),
            "scope": scope,
            "client_id": client,
            "authority": tenant.authority,
        }
        ops.append(Op(access_token_key(key), entry))
    return ops


def fill(backend: CacheBackend, ops: list[Op]) -> None:
    """``ops`` through the backend's own write path, in batches."""
    for i in range(0, len(ops), BATCH):
        backend.apply(ops[i : i + BATCH])


def build_ours(
    directory: Path, tenant: Tenant, items: list[tuple[str, str, str]], now: float
) -> None:
    cache = FileCache(directory)
    cache.prepare()
    for client, scope, _secret in items:
        key = token_key(tenant.authority, tenant.tenant_id, client, None, scope)
        lock = cache._key_path(key)
        os.close(os.open(lock, os.O_WRONLY | os.O_CREAT, 0o600))
    fill(cache, token_ops(tenant, items, now))
    if cache._conn is not None:  # the driver keeps no connection open on it
        cache._conn.close()
        cache._conn = None
    checkpoint(directory)


def checkpoint(directory: Path) -> None:
    conn = sqlite3.connect(directory / "cache.db")
    try:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()


def event(tenant: Tenant, client: str, scope: str, secret: str) -> dict[str, Any]:
    """What msal's app gives its token cache after a client-credentials response."""
    return {
        "client_id": client,
        "scope": [scope],
        "token_endpoint": f"{tenant.authority}/oauth2/v2.0/token",
        "grant_type": "client_credentials",
        "response": {
            "token_type": "Bearer",
            "scope": scope,
            "expires_in": LIFETIME,
            "ext_expires_in": LIFETIME,
            "access_token": secret,
        },
        "params": None,
        "data": {"claims": None, "scope": [scope]},
        "environment": tenant.environment,
    }


def build_theirs(path: Path, tenant: Tenant, items: list[tuple[str, str, str]], now: float) -> None:
    import msal

    cache = msal.SerializableTokenCache()
    for client, scope, secret in items:
        cache.add(event(tenant, client, scope, secret), now=now)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(cache.serialize())
    os.chmod(path, 0o600)


def size_ours(directory: Path) -> int:
    checkpoint(directory)
    return sum(
        (directory / name).stat().st_size
        for name in ("cache.db", "cache.db-wal")
        if (directory / name).exists()
    )


def breakdown(directory: Path) -> str:
    """Where our bytes are: pages per table and index, and their unused bytes (SQLite's
    ``dbstat``, when compiled in)."""
    conn = sqlite3.connect(directory / "cache.db")
    try:
        rows = conn.execute(
            "SELECT name, sum(pgsize), sum(unused), sum(payload) FROM dbstat GROUP BY name"
        ).fetchall()
    except sqlite3.Error:
        return "(no dbstat)"
    finally:
        conn.close()
    rows.sort(key=lambda x: -x[1])
    return ", ".join(
        f"{name} {size / 1e3:.0f} kB ({payload / 1e3:.0f} payload, {unused / 1e3:.0f} unused)"
        for name, size, unused, payload in rows[:3]
    )


def size_theirs(path: Path) -> int:
    return path.stat().st_size


def build_both(
    root: Path, tenant: Tenant, spread: str, n: int, token_bytes: int, seed: int
) -> tuple[Path, Path]:
    """Our directory and their file under ``root``, holding the same ``n`` tokens."""
    items = entries(tenant, spread, n, token_bytes, seed)
    now = time.time()
    ours, theirs = root / "ours", root / "theirs" / "cache.json"
    build_ours(ours, tenant, items, now)
    build_theirs(theirs, tenant, items, now)
    return ours, theirs


def build_side(
    side: str, root: Path, tenant: Tenant, spread: str, n: int, token_bytes: int, seed: int
) -> Path:
    """One side's cache of :func:`build_both` (``root/ours`` or
    ``root/theirs/cache.json``)."""
    items = entries(tenant, spread, n, token_bytes, seed)
    if side == "ours":
        build_ours(root / "ours", tenant, items, time.time())
        return root / "ours"
    build_theirs(root / "theirs" / "cache.json", tenant, items, time.time())
    return root / "theirs" / "cache.json"


def count_ours(directory: Path) -> int:
    conn = sqlite3.connect(directory / "cache.db")
    try:
        return int(conn.execute("SELECT count(*) FROM entries WHERE key LIKE 'at:%'").fetchone()[0])
    finally:
        conn.close()


def count_theirs(path: Path) -> int:
    return len(json.loads(path.read_text()).get("AccessToken", {}))
