"""What the core stores under which key: the names every backend sees.

- ``at:<id>``: one access token, ours (msal's copy is never stored): the token,
  when it expires and when to refresh it, and what it is for. ``<id>`` hashes the
  token key (authority, tenant, client, user, scope), which is also the key's
  single-flight lock name.
- ``msal:<id>``: one msal partition: the refresh tokens, accounts, id tokens and
  app metadata of one client app on one authority host (msal's ``environment``),
  as fields ``"<msal section>/<msal key>"``. Only flows with a signed-in person
  (username/password, device code) have one; an app-only flow needs no msal state.
"""

from __future__ import annotations

import hashlib

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


def partition_key(environment: str, client_id: str) -> str:
    """Where msal's state for ``client_id`` on the authority host ``environment``
    (a hostname, as msal records it) is stored."""
    return PARTITION_PREFIX + _digest(f"{environment}|{client_id}".lower())
