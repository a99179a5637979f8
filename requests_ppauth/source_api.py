"""The public contract between the core and credential-source plugins.

A plugin author needs only this module, :mod:`requests_ppauth.credentials`,
:mod:`requests_ppauth.errors` and ``requests_ppauth.hookimpl``; the contract tests
in :mod:`requests_ppauth.testing.contract` check an implementation against it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from requests_ppauth.credentials import Credential
from requests_ppauth.errors import SecretReferenceError
from requests_ppauth.sources._certfile import read_certificate as _read_certificate

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*):")
# Schemes we know plugins for: a string using one is a reference even when the plugin
# is missing, so the error says what to install instead of sending "keyring:x" as a secret.
WELL_KNOWN = {
    "keyring": "requests-ppauth-keyring",
    "https": "requests-ppauth-keyvault",
}


@runtime_checkable
class CredentialSource(Protocol):
    """Finds a credential for a profile.

    ``name``: unique, lower-case (``env``, ``file``, ``keyring``). ``priority``: lower
    is consulted first when nothing names an order.
    """

    name: str
    priority: int

    def credential(self, request: SourceRequest) -> Credential | None:
        """A credential, or ``None`` to pass (after ``request.note(why)``).

        Raise :class:`requests_ppauth.SourceError` when this source recognises the
        request (its settings are present) but cannot complete it.
        """
        ...


@runtime_checkable
class SecretResolver(Protocol):
    """Turns a secret reference into the secret."""

    name: str
    schemes: tuple[str, ...]

    def claims(self, reference: str) -> bool:
        """Whether ``reference`` is this resolver's to resolve."""
        ...

    def resolve(self, reference: str, request: SourceRequest) -> str | bytes:
        """The secret (``bytes`` for certificates); raise SecretReferenceError if missing."""
        ...


@runtime_checkable
class RequestAwareResolver(SecretResolver, Protocol):
    """A resolver whose claim can depend on the profile asking (optional extension).

    ``claims(reference)`` sees only the string, so a resolver cannot honour an
    allow-list kept in the profile (the Key Vault plugin's private-endpoint hosts in
    ``[profiles.<name>.keyvault] hosts``). When a resolver also has
    ``claims_for_request``, :meth:`SourceRequest.resolve` asks that instead; ``claims``
    must still answer for callers without a request.
    """

    def claims_for_request(self, reference: str, request: SourceRequest) -> bool:
        """Whether ``reference`` is this resolver's, given the request's settings and environ."""
        ...


@runtime_checkable
class SecretStore(Protocol):
    """A resolver that can also *keep* a secret, so ``ppauth profile add`` never has to
    write one into the config file (optional extension of :class:`SecretResolver`).

    ``store`` keeps ``secret`` (``key`` is ``client_secret``, ``certificate_password``
    or ``password``) and returns the reference to write instead, one the same resolver
    ``claims`` and resolves. ``ppauth profile remove`` also calls ``delete(reference)``
    when the store has it.
    """

    name: str

    def claims(self, reference: str) -> bool:
        """Whether ``reference`` is this store's."""
        ...

    def store(self, profile: str, key: str, secret: str) -> str:
        """Keep ``secret``; return the reference to write in the config file."""
        ...


@dataclass
class SourceRequest:
    """What a source is asked: which profile, its settings, the environment.

    ``settings`` is the profile's config-file table (empty if there is none);
    ``explicit_profile`` is true when the caller named the profile. ``note`` records
    why a source passed.
    """

    profile: str
    # both may hold plaintext secrets (a profile's client_secret, PPAUTH_CLIENT_SECRET)
    settings: Mapping[str, Any] = field(repr=False)
    environ: Mapping[str, str] = field(repr=False)
    config_path: Path | None = None
    settings_mode: int | None = None
    explicit_profile: bool = False
    resolvers: Sequence[SecretResolver] = ()
    notes: list[str] = field(default_factory=list)

    def note(self, reason: str) -> None:
        """Say why this source passed; shown in "no credential" errors and ``ppauth sources``."""
        self.notes.append(reason)

    def resolve(self, value: Any, what: str) -> Any:
        """``value`` itself, or the secret it references.

        A reference is ``{ ref = "scheme:..." }`` in TOML, or a string whose scheme a
        registered resolver claims or that is well known (``keyring:``, Key Vault
        URLs). Other strings are literal secrets (a password may contain ``:``).
        """
        if isinstance(value, Mapping) and "ref" in value:
            return self._resolve(str(value["ref"]), what, explicit=True)
        if isinstance(value, str) and _SCHEME.match(value):
            return self._resolve(value, what, explicit=False)
        return value

    def _resolve(self, reference: str, what: str, *, explicit: bool) -> Any:
        for resolver in self.resolvers:
            if _claims(resolver, reference, self):
                return resolver.resolve(reference, self)
        match = _SCHEME.match(reference)
        scheme = match.group(1).lower() if match else ""
        if scheme in WELL_KNOWN and (scheme != "https" or ".vault." in reference):
            raise SecretReferenceError(
                f"{what} of profile {self.profile!r} refers to a {scheme}: secret, but no "
                f"installed plugin resolves it: pip install {WELL_KNOWN[scheme]}"
            )
        if not explicit:
            return reference
        known = sorted({s for r in self.resolvers for s in r.schemes})
        raise SecretReferenceError(
            f"{what} of profile {self.profile!r}: unknown secret scheme {scheme or '(none)'!r}; "
            f"installed resolvers handle: {', '.join(known) or 'none'}"
        )


def _claims(resolver: SecretResolver, reference: str, request: SourceRequest) -> bool:
    if isinstance(resolver, RequestAwareResolver):
        return resolver.claims_for_request(reference, request)
    return resolver.claims(reference)


SourceFactory = Callable[[], CredentialSource]


def read_certificate(source: str, path: str, setting: str) -> bytes:
    """The bytes of the PEM or PKCS#12 file at ``path``, for a ``ClientCertificate``.

    For sources whose profile names a ``certificate_path`` (the keyring source keeps
    the certificate's password in the keyring, the file on disk). Raises
    :class:`~requests_ppauth.SourceError` for ``source`` when the file is missing, a
    directory, unreadable or empty, naming ``setting`` (e.g. ``"certificate_path of
    [profiles.prod]"``) in the same words as the built-in sources, so users meet one
    vocabulary whichever source read the file.
    """
    return _read_certificate(source, path, setting)
