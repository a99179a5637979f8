"""Glue between one token provider and a :class:`~requests_ppauth.cache.CacheBackend`:
our per-key entries, and keeping msal's in-memory cache in step with the file.

msal owns refresh tokens and accounts; we mirror its sections to and from the
backend with a three-way merge (what we loaded, what msal holds now, what is on
disk now), so entries other processes wrote meanwhile survive our write.
"""

from __future__ import annotations

import copy
import hashlib
import json
import threading
from collections.abc import Mapping
from typing import Any

from requests_ppauth.cache import OUR_SECTION, CacheBackend, Op

ACCESS_TOKENS = "AccessToken"  # msal's section of access tokens


def token_key(authority: str, tenant: str, client_id: str, user: str | None, scope: str) -> str:
    """The single-flight and storage key: everything that makes two tokens different."""
    return "|".join((authority, tenant, client_id, user or "", scope)).lower()


def _entry_id(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()[:40]


class SharedTokens:
    """Per-provider view of the shared cache."""

    def __init__(self, backend: CacheBackend) -> None:
        self.backend = backend
        self.lock = threading.RLock()  # msal's cache object is not safe to swap mid-call
        self._loaded: Mapping[str, Any] | None = None
        self._baseline: dict[str, Any] = {}

    # -- our entries -----------------------------------------------------------------
    def lookup(self, key: str) -> dict[str, Any] | None:
        """Our entry for ``key`` (token, expires_on, refresh_on), if well-formed."""
        entry = self.backend.read().get(OUR_SECTION, {}).get(_entry_id(key))
        if not isinstance(entry, dict):
            return None
        if not isinstance(entry.get("secret"), str) or not all(
            isinstance(entry.get(f), int | float) for f in ("expires_on", "refresh_on")
        ):
            return None
        return entry

    # -- msal's sections ---------------------------------------------------------------
    def load_into(self, msal_cache: Any) -> None:
        """Give msal what is on disk now (only when it changed since the last load)."""
        with self.lock:
            state = self.backend.read()
            if state is self._loaded:
                return
            sections = {k: v for k, v in state.items() if k != OUR_SECTION}
            msal_cache.deserialize(json.dumps(sections))
            self._baseline = copy.deepcopy(sections)
            self._loaded = state

    def store(
        self,
        msal_cache: Any | None,
        key: str | None = None,
        entry: dict[str, Any] | None = None,
        *,
        forget_token: str | None = None,
    ) -> None:
        """One commit: msal's changes since we loaded, and our entry (or its removal)."""
        with self.lock:
            ops: list[Op] = []
            ours: dict[str, Any] = {}
            if msal_cache is not None:
                ours = json.loads(msal_cache.serialize() or "{}")
                base = self._baseline
                for section in set(ours) | set(base):
                    mine, before = ours.get(section, {}), base.get(section, {})
                    ops += [Op(section, k, v) for k, v in mine.items() if before.get(k) != v]
                    ops += [Op(section, k) for k in before if k not in mine]
            if key is not None:
                if entry is not None:
                    ops.append(Op(OUR_SECTION, _entry_id(key), entry))
                elif forget_token is not None:
                    ops.append(Op(OUR_SECTION, _entry_id(key), None, if_secret=forget_token))
                    # and msal's copy: a process whose msal app never loaded it (a warm
                    # start) would otherwise get the same rejected token back from msal
                    ats = self.backend.read().get(ACCESS_TOKENS, {})
                    ops += [
                        Op(ACCESS_TOKENS, k, None, if_secret=forget_token)
                        for k, v in ats.items()
                        if isinstance(v, dict) and v.get("secret") == forget_token
                    ]
            if not ops:
                return
            self.backend.apply(ops)
            # msal still holds only its own view: that is the baseline for the next merge
            # (others' entries are not in it, so they never look "removed by us"); the
            # next load_into hands msal the merged state.
            self._loaded = None
            if msal_cache is not None:
                self._baseline = ours
                msal_cache.has_state_changed = False
