"""The ``keyvault`` secret resolver: Key Vault URLs in any profile setting.

``client_secret = "https://contoso.vault.azure.net/secrets/pp-app"`` in a profile
(read by the core's ``file`` source), ``PPAUTH_CLIENT_SECRET`` set to such a URL
(the ``env`` source), or a reference in ``[profiles.<name>.keyvault]`` (this
plugin's own source) all come here.
"""

from __future__ import annotations

import base64
import binascii
import logging
import os
import stat
import uuid
from collections.abc import Hashable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from requests_ppauth.errors import SecretReferenceError, UnsafeFileError
from requests_ppauth.source_api import SourceRequest

from requests_ppauth_keyvault import _references, _settings, _vault
from requests_ppauth_keyvault._cache import SECRETS, SecretCache
from requests_ppauth_keyvault._references import HOSTS_VAR, VaultReference

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential

log = logging.getLogger("requests_ppauth_keyvault")

PEM = "application/x-pem-file"
PKCS12 = "application/x-pkcs12"


class KeyVaultResolver:
    """Resolves ``https://<vault>.vault.azure.net/secrets/<name>[/<version>]``.

    Returns ``str`` for a secret and ``bytes`` for a certificate (a secret whose
    content type is ``application/x-pem-file`` or ``application/x-pkcs12``, which is
    how Key Vault keeps a certificate with its private key).

    :param hosts: ``host[:port]`` of vaults off Azure (emulators, private endpoints)
        to accept besides those in ``PPAUTH_KEYVAULT_HOSTS`` and a profile's ``hosts``.
    :param credential: an azure-identity credential to read every vault with,
        instead of the one each profile configures (for applications that have one).
    :param ca_bundle: CA bundle for vault and identity traffic, instead of the
        profile's ``ca_bundle`` / ``PPAUTH_CA_BUNDLE``.
    :param cache: where secrets are kept between reads (default: one per process).
    """

    name = "keyvault"
    schemes: tuple[str, ...] = ("https",)

    def __init__(
        self,
        *,
        hosts: Iterable[str] = (),
        credential: TokenCredential | None = None,
        ca_bundle: str | None = None,
        cache: SecretCache[str | bytes] | None = None,
        clients: _vault.Clients | None = None,
    ) -> None:
        self.hosts = _references.parse_hosts(hosts)
        self._credential = credential
        # names the given credential in cache keys (an id() could be reused after GC)
        self._credential_token = uuid.uuid4().hex
        self._ca_bundle = ca_bundle
        self.cache = SECRETS if cache is None else cache
        self._clients = _vault.CLIENTS if clients is None else clients

    def __repr__(self) -> str:
        extra = ", credential=<given>" if self._credential is not None else ""
        return f"KeyVaultResolver(hosts={sorted(self.hosts)!r}{extra})"

    # -- claiming ------------------------------------------------------------------
    def claims(self, reference: str) -> bool:
        """A URL on a Key Vault host, or a ``/secrets/`` URL on an allow-listed host."""
        allowed = self.hosts | _references.hosts_from_env(os.environ.get(HOSTS_VAR))
        return _references.claims(reference, allowed)

    def claims_for_request(self, reference: str, request: SourceRequest) -> bool:
        """As :meth:`claims`, with the profile's ``hosts`` and the request's environment."""
        return _references.claims(reference, self._allowed(request))

    def _allowed(self, request: SourceRequest) -> frozenset[str]:
        # the request's environment, not os.environ: the core may run a lookup for a
        # profile with variables of its own (and the contract checks a source does so)
        return _settings.allowed_hosts(
            request, self.hosts | _references.hosts_from_env(request.environ.get(HOSTS_VAR))
        )

    # -- resolving -----------------------------------------------------------------
    def resolve(self, reference: str, request: SourceRequest) -> str | bytes:
        """The secret (``bytes`` for a certificate), from memory if read recently."""
        try:
            ref = _references.parse(reference)
        except _references.MalformedReferenceError as exc:
            raise SecretReferenceError(str(exc)) from None
        settings = _settings.read(request, self.hosts)
        if not ref.azure and ref.hostport not in self._allowed(request):
            # a vault token must not go to a host nobody vouched for
            raise SecretReferenceError(
                f"{ref.hostport} is not a Key Vault host: list it in hosts = [...] of "
                f"{settings.where} or in {HOSTS_VAR} if it is an emulator or private endpoint"
            )
        credential_key = self._credential_key(settings)
        return self.cache.get_or_load(
            (credential_key, reference),
            settings.cache_ttl,
            lambda: self._read(ref, settings, credential_key, request),
        )

    def _credential_key(self, settings: _settings.VaultSettings) -> Hashable:
        if self._credential is not None:
            return ("given", self._credential_token)
        spec = settings.credential
        return (
            *spec.fingerprint(),
            settings.profile_authority_host or "",
            settings.profile_tenant_id or "",
        )

    def _read(
        self,
        ref: VaultReference,
        settings: _settings.VaultSettings,
        credential_key: Hashable,
        request: SourceRequest,
    ) -> str | bytes:
        ca_bundle: str | bool = self._ca_bundle or settings.ca_bundle
        spec = settings.credential
        tenant = spec.tenant_id or settings.profile_tenant_id
        authority = self._authority(ref, settings, request)
        principal = (
            "the credential this application gave the Key Vault resolver"
            if self._credential is not None
            else _vault.describe(spec, tenant)
        )
        credential = self._credential or self._clients.credential(
            (credential_key, ca_bundle, authority or "", tenant or ""),
            lambda: _vault.build_credential(
                spec,
                authority=authority,
                tenant_id=tenant,
                secret=self._vault_secret(spec.client_secret, settings, request),
                ca_bundle=ca_bundle,
                timeout=settings.timeout,
                where=f"{settings.where} credential",
            ),
        )
        client = self._clients.client(
            (
                credential_key,
                id(credential),
                ca_bundle,
                ref.vault_url,
                settings.retries,
                settings.timeout,
            ),
            lambda: _vault.build_client(
                ref,
                credential,
                ca_bundle=ca_bundle,
                retries=settings.retries,
                timeout=settings.timeout,
            ),
        )
        try:
            fetched = _vault.read(client, ref, principal, settings.retries)
        except _vault.KeyVaultError as exc:
            if exc.status in (None, 401):  # the credential failed: its secret may have rotated
                self._clients.forget(credential_key)
            raise
        log.debug(
            "read %s from Key Vault (version %s, content type %s); kept %g s in memory",
            ref,
            fetched.version,
            fetched.content_type,
            settings.cache_ttl,
        )
        return decode(fetched, ref)

    @staticmethod
    def _authority(
        ref: VaultReference, settings: _settings.VaultSettings, request: SourceRequest
    ) -> str | None:
        """Where the vault credential signs in: the nearest setting, else the vault's cloud."""
        return (
            settings.credential.authority_host
            or settings.profile_authority_host
            or request.environ.get("PPAUTH_AUTHORITY_HOST")
            or request.environ.get("AZURE_AUTHORITY_HOST")
            or ref.authority_host
        )

    def _vault_secret(
        self, value: Any, settings: _settings.VaultSettings, request: SourceRequest
    ) -> str | None:
        """The vault credential's own client secret: a literal or a non-Key-Vault reference."""
        if value is None:
            return None
        what = f"client_secret of {settings.where} credential"
        target = value.get("ref") if isinstance(value, Mapping) else value
        if isinstance(target, str) and self.claims_for_request(target, request):
            raise SecretReferenceError(
                f"{what} cannot come from Key Vault: it is what opens the vault. Use a "
                'keyring: reference, or a managed identity (credential = "managed_identity")'
            )
        resolved = request.resolve(value, what)
        if resolved is value:
            refuse_readable_plaintext(what, request)
        if isinstance(resolved, bytes):
            return resolved.decode()
        if not isinstance(resolved, str) or not resolved:
            raise SecretReferenceError(f"{what} must be a non-empty string or a reference")
        return resolved


def decode(fetched: _vault.Fetched, ref: VaultReference) -> str | bytes:
    """``str`` for a secret; the certificate's bytes (PEM or PKCS#12) for a certificate."""
    content_type = (fetched.content_type or "").split(";")[0].strip().lower()
    if content_type == PEM:
        return fetched.value.encode()
    if content_type == PKCS12:
        try:
            return base64.b64decode(fetched.value.strip(), validate=True)
        except (binascii.Error, ValueError):
            raise SecretReferenceError(
                f"Key Vault secret {ref} has content type {PKCS12} but its value is not "
                "base64: store the PFX base64-encoded, as Key Vault does for certificates"
            ) from None
    return fetched.value


def refuse_readable_plaintext(what: str, request: SourceRequest) -> None:
    """The core's rule for a plaintext secret in a config file others can read."""
    mode = request.settings_mode
    if mode is not None and mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise UnsafeFileError(
            f"{request.config_path} holds a plaintext {what} for profile {request.profile!r} "
            f"but is readable by others (mode {stat.S_IMODE(mode):o}): run `chmod 600 "
            f"{request.config_path}`, or use a keyring: reference"
        )
