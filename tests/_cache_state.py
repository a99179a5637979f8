"""The file cache's state read without the library, from its documented format: an
independent reader, so tests check the format and not the code against itself.

The cache is the SQLite database ``cache.db``: table ``entries(key, value, expires_on)``
with ``value`` a JSON object. Keys ``at:<sha256(token key)[:40]>`` hold our access
tokens; keys ``msal:<...>`` hold one msal partition each, as fields
``"<msal section>/<msal key>"``.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from pathlib import Path
from typing import Any

CACHE_FILE = "cache.db"
MSAL_SECTIONS = ("AccessToken", "RefreshToken", "Account", "IdToken", "AppMetadata")


def entries(directory: Path) -> dict[str, Any]:
    """Every entry, by key, read through a read-only connection of our own."""
    uri = (directory / CACHE_FILE).as_uri() + "?mode=ro"
    conn = sqlite3.connect(uri, uri=True)
    try:
        return {k: json.loads(v) for k, v in conn.execute("SELECT key, value FROM entries")}
    finally:
        conn.close()


def group(directory: Path, name: str) -> dict[str, Any]:
    """The test writers' entries ``<name>:<key>`` = ``{"v": value}``, as ``{key: value}``."""
    prefix = name + ":"
    return {
        k[len(prefix) :]: v.get("v") for k, v in entries(directory).items() if k.startswith(prefix)
    }


def token_entry_key(key: str) -> str:
    """Where the access token of a provider's token key lives."""
    return "at:" + hashlib.sha256(key.encode()).hexdigest()[:40]


def load(directory: Path) -> dict[str, Any]:
    """The entries as msal-style sections: ``PPAuthToken`` (our access tokens, by the
    hex id after ``at:``) and msal's sections gathered from every partition. msal's
    ``AccessToken`` section is there, and must stay empty: each token is stored once."""
    state: dict[str, Any] = {name: {} for name in ("PPAuthToken", *MSAL_SECTIONS)}
    for key, value in entries(directory).items():
        if key.startswith("at:"):
            state["PPAuthToken"][key[3:]] = value
        elif key.startswith("msal:"):
            for name, item in value.items():
                section, _, item_key = name.partition("/")
                state.setdefault(section, {})[item_key] = item
    return state


def on_disk(directory: Path) -> bytes:
    """Every byte the cache keeps: a removed secret must not be anywhere in it."""
    return b"".join(p.read_bytes() for p in sorted(directory.glob(CACHE_FILE + "*")) if p.is_file())
