"""What a token cache is, whoever keeps it: the :class:`CacheBackend` protocol and the
:class:`Op` records every change is made of.

A backend is a map of **keys** to **entries** (JSON objects), read by key and changed
by atomic batches of :class:`Op`. Nothing on the way to a token reads the whole map:
an acquisition reads one or two keys and writes one batch, so its cost does not
depend on how many tokens the cache holds (:meth:`CacheBackend.read_all` exists for
listing and sign-out, never for a token). The core decides what the keys and entries
mean (see :mod:`requests_ppauth.cache.partitions`); a backend only stores them.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

Entry = dict[str, Any]

# An entry whose ``expires_on`` (seconds since the epoch) is this far in the past may
# be dropped by its backend. Entries without a numeric ``expires_on`` are never dropped.
PRUNE_AFTER = 600.0


@dataclass(frozen=True)
class Op:
    """One change to one entry, in one of three forms:

    - ``Op(key, value)``: put ``value`` (a JSON object) at ``key``, replacing it;
    - ``Op(key)``: delete ``key``; with ``if_secret=s``, only while the entry's
      ``"secret"`` field is still exactly ``s`` (so dropping a token a server rejected
      never removes the newer one another process stored meanwhile);
    - ``Op(key, fields={...})``: patch ``key`` field by field, creating it if absent:
      a field given ``None`` is removed, any other value is set; an entry left with
      no fields is deleted. Two processes patching different fields of one entry
      both keep theirs (msal's partitions are written this way).
    """

    key: str
    value: Mapping[str, Any] | None = None
    if_secret: str | None = None
    fields: Mapping[str, Any] | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.key, str) or not self.key:
            raise ValueError(f"an Op needs a non-empty string key, not {self.key!r}")
        if self.fields is not None and (self.value is not None or self.if_secret is not None):
            raise ValueError("an Op patches fields, or puts or deletes a value: not both")

    def to_json(self) -> list[Any]:
        """Compact form, for a log line or a network message."""
        return [self.key, self.value, self.if_secret, self.fields]

    @classmethod
    def from_json(cls, raw: Any) -> Op:
        """Inverse of :meth:`to_json`; ``ValueError`` when malformed."""
        if not (isinstance(raw, list) and len(raw) == 4 and isinstance(raw[0], str)):
            raise ValueError("malformed op")
        key, value, if_secret, fields = raw
        if not (value is None or isinstance(value, dict)):
            raise ValueError("malformed op value")
        if not (fields is None or isinstance(fields, dict)):
            raise ValueError("malformed op fields")
        if not (if_secret is None or isinstance(if_secret, str)):
            raise ValueError("malformed op condition")
        return cls(key, value, if_secret, fields)


def apply_op(state: dict[str, Entry], op: Op) -> None:
    """Apply one ``op`` to ``state`` in place: the reference semantics every backend
    must match (the shipped contract checks them). An entry is replaced, never
    mutated, so an entry handed out earlier stays as it was."""
    if op.fields is not None:
        entry = patched(state.get(op.key), op.fields)
        if entry:
            state[op.key] = entry
        else:
            state.pop(op.key, None)
    elif op.value is not None:
        state[op.key] = dict(op.value)
    elif op.if_secret is None or (state.get(op.key) or {}).get("secret") == op.if_secret:
        state.pop(op.key, None)


def patched(entry: Mapping[str, Any] | None, fields: Mapping[str, Any]) -> Entry:
    """A copy of ``entry`` (None: a new one) with ``fields`` set, ``None`` ones removed."""
    result = dict(entry or {})
    for name, value in fields.items():
        if value is None:
            result.pop(name, None)
        else:
            result[name] = value
    return result


def apply_ops(state: dict[str, Entry], ops: Sequence[Op]) -> None:
    """Apply ``ops`` to ``state`` in place, in order."""
    for op in ops:
        apply_op(state, op)


def expires_on(entry: Mapping[str, Any]) -> float | None:
    """The entry's ``expires_on`` as a number, or None when it has none."""
    value = entry.get("expires_on")
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return None


def prunable(entry: Mapping[str, Any], now: float | None = None) -> bool:
    """Whether a backend may drop ``entry``: it has a numeric ``expires_on`` more than
    :data:`PRUNE_AFTER` seconds past. Anything else (msal's partitions: accounts and
    refresh tokens) is kept until the core deletes it."""
    when = expires_on(entry)
    return when is not None and when < (time.time() if now is None else now) - PRUNE_AFTER


class CacheWarning(UserWarning):
    """A cache file was unusable and has been moved aside."""


@runtime_checkable
class CacheBackend(Protocol):
    """Where tokens are shared: the built-in :class:`~requests_ppauth.cache.FileCache`
    and :class:`~requests_ppauth.cache.MemoryCache`, or a plugin's (registered with
    ``ppauth_register_cache_backends``). Every method may raise
    :class:`~requests_ppauth.CacheError` when the store fails; any other exception
    is a bug in the backend, and the core reports it naming the backend.
    ``requests_ppauth.testing.contract.CacheBackendContract`` is the test suite a
    backend must pass."""

    def get(self, keys: Sequence[str]) -> dict[str, Entry]:
        """The entries at ``keys`` that exist (absent keys are left out), as fresh as
        the store has them. Must cost O(len(keys)), not O(size of the cache). The
        caller must not mutate what it gets."""
        ...

    def apply(self, ops: Sequence[Op]) -> None:
        """Apply ``ops`` in order, atomically: every reader sees all of them or none,
        and two batches from two processes never interleave. When it returns, the
        change is durable and visible to every process using the store."""
        ...

    def read_all(self) -> Mapping[str, Entry]:
        """Every entry: for ``ppauth cache list``, ``cache clear``, ``logout`` and
        ``doctor`` only. Never called on the way to a token."""
        ...

    def key_lock(self, key: str, timeout: float) -> contextlib.AbstractContextManager[bool]:
        """Hold the single-flight lock for ``key`` (every process using the store
        agrees on it); yields False, holding nothing, once ``timeout`` seconds passed."""
        ...

    def try_key_lock(self, key: str) -> contextlib.AbstractContextManager[bool]:
        """Like :meth:`key_lock` without waiting: yields whether the lock was taken."""
        ...

    @property
    def location(self) -> str:
        """Where the cache lives, for messages and ``ppauth cache path`` (no secret)."""
        ...
