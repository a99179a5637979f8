"""What the token cache is, whoever keeps it: the :class:`CacheBackend` protocol, the
:class:`Op` records every change is made of, and the pruning of expired tokens.

The built-in backend is :class:`requests_ppauth.file_cache.FileCache` (a snapshot and
a write-ahead log in a directory of this machine); a plugin can register another (a
network cache) with ``ppauth_register_cache_backends`` without touching the auth.
The state a backend holds is msal's ``SerializableTokenCache`` schema plus
``PPAuthToken``: one entry per (authority, tenant, client, user, scope) with the
token and when to refresh it, so a fresh process can use a cached token without
building an msal app.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

OUR_SECTION = "PPAuthToken"
PRUNE_AFTER = 600.0  # access tokens this long past expiry are dropped when folded


@dataclass(frozen=True)
class Op:
    """One change to the state: put ``value`` at ``section[key]``, or delete it
    (``value is None``), optionally only while it still holds the token ``if_secret``."""

    section: str
    key: str
    value: Any = None
    if_secret: str | None = None

    def to_json(self) -> list[Any]:
        """Compact form for the log."""
        return [self.section, self.key, self.value, self.if_secret]

    @classmethod
    def from_json(cls, raw: Any) -> Op:
        """Inverse of :meth:`to_json`; ValueError when malformed."""
        if not (
            isinstance(raw, list)
            and len(raw) == 4
            and isinstance(raw[0], str)
            and isinstance(raw[1], str)
        ):
            raise ValueError("malformed op")
        return cls(raw[0], raw[1], raw[2], raw[3])


def apply_ops(state: dict[str, Any], ops: Sequence[Op]) -> None:
    """Apply ``ops`` to ``state`` in place."""
    for op in ops:
        section = state.setdefault(op.section, {})
        if op.value is not None:
            section[op.key] = op.value
        elif op.if_secret is None or (section.get(op.key) or {}).get("secret") == op.if_secret:
            section.pop(op.key, None)


def prune(state: dict[str, Any], now: float) -> None:
    """Drop access tokens long expired, so the file does not grow without bound."""
    for name in ("AccessToken", OUR_SECTION):
        section = state.get(name, {})
        for key in [
            k
            for k, v in section.items()
            if not isinstance(v, dict) or _float(v.get("expires_on")) < now - PRUNE_AFTER
        ]:
            del section[key]


def _float(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return 0.0


class CacheWarning(UserWarning):
    """The cache file was unusable and has been moved aside."""


@runtime_checkable
class CacheBackend(Protocol):
    """Where tokens are shared. The built-in one is :class:`FileCache`; a plugin can
    register another (a network cache) with ``ppauth_register_cache_backends``."""

    def read(self) -> Mapping[str, Any]:
        """The current state (msal schema plus ``PPAuthToken``); do not mutate it."""
        ...

    def apply(self, ops: Sequence[Op]) -> None:
        """Apply ``ops`` to the freshest state atomically (all or nothing)."""
        ...

    def key_lock(self, key: str, timeout: float) -> contextlib.AbstractContextManager[bool]:
        """Hold the single-flight lock for ``key``; yields False if ``timeout`` passed."""
        ...

    def try_key_lock(self, key: str) -> contextlib.AbstractContextManager[bool]:
        """Like :meth:`key_lock` without waiting: yields whether the lock was taken."""
        ...

    @property
    def location(self) -> str:
        """Where the cache lives, for messages and ``ppauth cache path``."""
        ...


def default_cache_dir(environ: Mapping[str, str] | None = None) -> Path:
    """``PPAUTH_CACHE_DIR`` or the platform's user cache directory."""
    env = os.environ if environ is None else environ
    if env.get("PPAUTH_CACHE_DIR"):
        return Path(env["PPAUTH_CACHE_DIR"]).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("requests-ppauth", appauthor=False))
