"""One token provider's view of a :class:`~requests_ppauth.cache.CacheBackend`: our
access-token entries, and the msal partition a flow needs (see
:mod:`requests_ppauth.cache.keys` for the layout).

msal is given only what an acquisition needs, never the cache: nothing for an
app-only flow (client secret, certificate, federation, managed identity: the access
tokens are ours, and msal asks Entra ID whenever we ask it), and for a person's
flow the one partition of that client on that authority host: its refresh
tokens, accounts and id tokens. After the acquisition, only what msal changed in
that partition is written back, field by field, in the same batch as the new
access token; msal's own copy of the access token is dropped. So loading and
storing cost O(1) in the number of other tokens cached, and each access token is
stored once.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Mapping, Sequence
from typing import Any

from requests_ppauth.cache.keys import FIELD_SEPARATOR, access_token_key
from requests_ppauth.cache.protocol import CacheBackend, Entry, Op
from requests_ppauth.errors import CacheError, UnsafeCacheError

log = logging.getLogger("requests_ppauth")

# msal's sections a partition keeps; its AccessToken section is never stored
KEPT_SECTIONS = ("RefreshToken", "Account", "IdToken", "AppMetadata")


def checked(backend: CacheBackend, what: str, call: Any, *args: Any) -> Any:
    """``call(*args)`` on ``backend``; anything but :class:`CacheError` is a bug in
    the backend, reported as one naming it."""
    try:
        return call(*args)
    except CacheError:
        raise
    except Exception as exc:
        raise CacheError(
            f"cache backend {type(backend).__name__} ({backend.location}) failed in {what} "
            f"with {type(exc).__name__}: a backend must raise CacheError; this is a bug in it"
        ) from exc


def fields_to_state(fields: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """A partition's fields as msal's serialised cache (its sections of items)."""
    state: dict[str, dict[str, Any]] = {}
    for name, item in fields.items():
        section, sep, key = name.partition(FIELD_SEPARATOR)
        if sep and section in KEPT_SECTIONS and isinstance(item, dict):
            state.setdefault(section, {})[key] = item
    return state


def state_to_fields(state: Mapping[str, Any]) -> dict[str, Any]:
    """msal's serialised cache, without its access tokens, as partition fields."""
    return {
        section + FIELD_SEPARATOR + key: item
        for section in KEPT_SECTIONS
        for key, item in (state.get(section) or {}).items()
    }


class SharedTokens:
    """Per-provider glue between msal and the backend."""

    def __init__(self, backend: CacheBackend) -> None:
        self.backend = backend
        self.lock = threading.RLock()  # msal's cache object is not safe to swap mid-call
        self._loaded: dict[str, dict[str, Any]] = {}  # partition -> fields msal was given

    def get(self, keys: Sequence[str]) -> dict[str, Entry]:
        """The backend's entries at ``keys``."""
        found = checked(self.backend, "get", self.backend.get, list(keys))
        return found if isinstance(found, dict) else dict(found)

    def apply(self, ops: Sequence[Op]) -> None:
        """One batch to the backend."""
        if ops:
            checked(self.backend, "apply", self.backend.apply, list(ops))

    # -- our access tokens -------------------------------------------------------------
    def lookup(self, key: str) -> Entry | None:
        """Our entry for token key ``key`` (token, expires_on, refresh_on), if well-formed."""
        at = access_token_key(key)
        entry = self.get([at]).get(at)
        if not isinstance(entry, dict):
            return None
        if not isinstance(entry.get("secret"), str) or not all(
            isinstance(entry.get(f), int | float) for f in ("expires_on", "refresh_on")
        ):
            return None
        return entry

    def forget(self, key: str, token: str) -> None:
        """Drop the token of ``key`` only if it is still ``token``."""
        self.apply([Op(access_token_key(key), None, if_secret=token)])

    # -- msal's partition ----------------------------------------------------------------
    def partition(self, partition: str) -> dict[str, Any]:
        """The fields of ``partition`` (empty if there is none)."""
        return dict(self.get([partition]).get(partition) or {})

    def load_into(self, msal_cache: Any, partition: str | None) -> None:
        """Give msal ``partition`` (None: nothing at all) in place of what it holds."""
        fields: dict[str, Any] = {}
        if partition is not None:
            try:
                fields = self.partition(partition)
            except UnsafeCacheError:
                raise
            except CacheError as exc:
                log.warning("could not read sign-ins from %s: %s", self.backend.location, exc)
            self._loaded[partition] = fields
        msal_cache.deserialize(json.dumps(fields_to_state(fields)))
        msal_cache.has_state_changed = False

    def partition_ops(self, msal_cache: Any, partition: str) -> tuple[list[Op], dict[str, Any]]:
        """What msal changed in ``partition`` since :meth:`load_into`, as one patch,
        and the partition's fields as msal now holds them."""
        now = state_to_fields(json.loads(msal_cache.serialize() or "{}"))
        before = self._loaded.get(partition, {})
        patch: dict[str, Any] = {
            name: item for name, item in now.items() if before.get(name) != item
        }
        patch.update({name: None for name in before if name not in now})
        return ([Op(partition, fields=patch)] if patch else []), now

    def store(
        self,
        key: str,
        entry: Mapping[str, Any],
        msal_cache: Any | None = None,
        partition: str | None = None,
    ) -> None:
        """One batch: the access token of ``key``, and what msal changed in ``partition``."""
        ops = [Op(access_token_key(key), entry)]
        now = None
        if msal_cache is not None and partition is not None:
            patch, now = self.partition_ops(msal_cache, partition)
            ops += patch
        self.apply(ops)
        if now is not None and partition is not None:
            self._loaded[partition] = now

    def store_partition(self, msal_cache: Any, partition: str) -> None:
        """Write back what msal changed in ``partition`` (a sign-out)."""
        patch, now = self.partition_ops(msal_cache, partition)
        self.apply(patch)
        self._loaded[partition] = now
