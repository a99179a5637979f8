"""The ``keyring:`` secret reference, for any secret-valued setting or variable.

``keyring:<name>`` is the secret stored for username ``<name>`` in service
``requests-ppauth``; ``keyring:<service>/<name>`` names another service (the first
``/`` separates them, so a service name cannot contain one). Because the ``keyring``
source stores under ``<profile>:<field>``, ``client_secret = "keyring:prod:client_secret"``
and the ``keyring`` source read the same entry.

Examples, in a profile or the environment::

    client_secret = "keyring:prod"                 # service requests-ppauth, username prod
    password = { ref = "keyring:corp-vault/alice" }  # service corp-vault, username alice
    PPAUTH_CLIENT_SECRET=keyring:prod
"""

from __future__ import annotations

import shlex

from requests_ppauth import SecretReferenceError, SourceRequest
from requests_ppauth_keyring import _store

SCHEME = "keyring"
PREFIX = SCHEME + ":"


def parse_reference(reference: str) -> tuple[str, str]:
    """``(service, username)`` for a ``keyring:`` reference.

    :raises SecretReferenceError: not a ``keyring:`` reference, or an empty part.
    """
    if not reference[: len(PREFIX)].lower() == PREFIX:
        raise SecretReferenceError(f"{reference!r} is not a keyring: reference")
    rest = reference[len(PREFIX) :]
    service, slash, username = rest.partition("/")
    if not slash:
        service, username = _store.SERVICE, rest
    if not service or not username:
        raise SecretReferenceError(
            f"malformed keyring reference {reference!r}: write keyring:<name> "
            "(service requests-ppauth) or keyring:<service>/<name>"
        )
    return service, username


class KeyringResolver:
    """Resolves ``keyring:`` references from the OS keyring (see the module docstring)."""

    name = "keyring"
    schemes: tuple[str, ...] = (SCHEME,)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} schemes={self.schemes!r}>"

    def claims(self, reference: str) -> bool:
        """Whether ``reference`` starts with ``keyring:`` (any case, as URL schemes)."""
        return reference[: len(PREFIX)].lower() == PREFIX

    def store(self, profile: str, key: str, secret: str) -> str:
        """Keep ``key`` of ``profile`` where the ``keyring`` source looks; the reference.

        Makes this resolver a :class:`requests_ppauth.source_api.SecretStore`, so
        ``ppauth profile add`` puts secrets here instead of in the config file.
        """
        try:
            _store.set_secret(profile, key, secret)
        except _store.KeyringBackendError as exc:
            raise SecretReferenceError(
                f"cannot store {key} of profile {profile!r}: {exc}"
            ) from None
        return f"{PREFIX}{_store.profile_username(profile, key)}"

    def delete(self, reference: str) -> bool:
        """Forget what ``reference`` names; whether something was there."""
        service, username = parse_reference(reference)
        try:
            return _store.remove(service, username)
        except _store.KeyringBackendError as exc:
            raise SecretReferenceError(f"cannot delete {reference!r}: {exc}") from None

    def resolve(self, reference: str, request: SourceRequest) -> str:
        """The secret ``reference`` names; ``SecretReferenceError`` when absent."""
        service, username = parse_reference(reference)
        try:
            value = _store.get(service, username)
        except _store.KeyringBackendError as exc:
            raise SecretReferenceError(
                f"cannot resolve {reference!r} for profile {request.profile!r}: {exc}"
            ) from None
        if value is None:
            raise SecretReferenceError(
                f"{reference!r} (profile {request.profile!r}) names nothing in the keyring: "
                f"no secret for username {username!r} in service {service!r}. Store it with "
                f"`{_store.CLI} set {shlex.quote(reference)}` (reads the secret from stdin "
                "or a prompt)"
            )
        return value
