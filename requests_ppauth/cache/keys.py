"""What the core stores under which key: the names every backend sees.

- ``at:<id>``: one access token, ours (msal's copy is never stored): the token,
  when it expires and when to refresh it, and what it is for. ``<id>`` hashes the
  token key (authority, tenant, client, user, scope), which is also the key's
  single-flight lock name. Or, in its place, that key's **back-off record**
  (:func:`is_backoff`: a ``failures`` count and no ``secret``), written when the
  identity provider could not be reached (or said Retry-After) and no valid token
  was left: until when (``expires_on``, so a backend may prune it), how many
  attempts in a row failed, the error (no secret) and what it is for. While it
  holds, every process raises that error without a request. It shares the token's
  slot so that an acquisition still reads one key, and the token that ends the
  back-off replaces it in the same batch.
- ``msal:<id>``: one msal partition: the refresh tokens, accounts, id tokens and
  app metadata of one client app on one authority host (msal's ``environment``),
  as fields ``"<msal section>/<msal key>"``. Only flows with a signed-in person
  (username/password, device code) have one; an app-only flow needs no msal state.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

ACCESS_TOKEN_PREFIX = "at:"  # noqa: S105 - a key prefix, not a secret
PARTITION_PREFIX = "msal:"
FIELD_SEPARATOR = "/"  # between msal's section name (which never holds one) and its key


def token_key(authority: str, tenant: str, client_id: str, user: str | None, scope: str) -> str:
    """The single-flight key: everything that makes two tokens different."""
    return "|".join((authority, tenant, client_id, user or "", scope)).lower()


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:40]


def access_token_key(key: str) -> str:
    """Where the access token of :func:`token_key` ``key`` is stored."""
    return ACCESS_TOKEN_PREFIX + _digest(key)


def is_backoff(entry: Mapping[str, Any]) -> bool:
    """Whether an ``at:`` entry is a back-off record rather than a token."""
    failures = entry.get("failures")
    return (
        "secret" not in entry
        and isinstance(failures, int)
        and not isinstance(failures, bool)
        and isinstance(entry.get("expires_on"), int | float)
    )


def partition_key(environment: str, client_id: str) -> str:
    """Where msal's state for ``client_id`` on the authority host ``environment``
    (a hostname, as msal records it) is stored."""
    return PARTITION_PREFIX + _digest(f"{environment}|{client_id}".lower())
