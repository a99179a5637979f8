"""The ``keyvault`` source: a profile's client secret or certificate, kept in Key Vault.

::

    [profiles.prod]
    tenant_id = "contoso.onmicrosoft.com"
    client_id = "00000000-0000-0000-0000-000000000000"

    [profiles.prod.keyvault]
    certificate = "https://contoso.vault.azure.net/secrets/pp-app-cert"
    credential = "managed_identity"

The ids come from the profile, the secret from the vault. Unlike a Key Vault URL
in the profile's own ``client_secret`` (which the core's ``file`` source resolves
through this plugin's resolver), this source can return a certificate: Key Vault
keeps a certificate's private key as a secret of the same name.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from requests_ppauth.credentials import ClientCertificate, ClientSecret, Credential
from requests_ppauth.errors import SecretReferenceError, SourceError
from requests_ppauth.source_api import SourceRequest

from requests_ppauth_keyvault import _settings
from requests_ppauth_keyvault._references import SHAPE
from requests_ppauth_keyvault._resolver import KeyVaultResolver, refuse_readable_plaintext


class KeyVaultSource:
    """Credentials whose secret part is in Key Vault (``[profiles.<name>.keyvault]``).

    :param resolver: reads the vault (default: a :class:`KeyVaultResolver` sharing the
        per-process secret cache).
    """

    name = "keyvault"
    priority = 40  # after env (10), file (20) and keyring (30): the only one with network

    def __init__(self, resolver: KeyVaultResolver | None = None) -> None:
        self.resolver = resolver or KeyVaultResolver()

    def __repr__(self) -> str:
        return f"KeyVaultSource(resolver={self.resolver!r})"

    def credential(self, request: SourceRequest) -> Credential | None:
        """A ClientSecret or ClientCertificate, or None (with a note) when not configured."""
        here = _settings.where(request)
        kv = request.settings.get(_settings.TABLE) if request.settings else None
        if kv is None:
            request.note(f"no {here} table in {request.config_path}")
            return None
        if not isinstance(kv, Mapping):
            raise SourceError(self.name, f"{here} must be a table")
        present = [k for k in ("client_secret", "certificate") if k in kv]
        if not present:
            request.note(f"{here} names neither client_secret nor certificate")
            return None
        try:
            return self._credential(request, kv, present, here)
        except SecretReferenceError as exc:
            raise SourceError(self.name, str(exc)) from exc

    def _credential(
        self, request: SourceRequest, kv: Mapping[str, Any], present: list[str], here: str
    ) -> Credential:
        _settings.read(request, self.resolver.hosts)  # a bad table fails before any network
        if len(present) == 2:
            raise SourceError(self.name, f"{here} names both client_secret and certificate")
        if "certificate_password" in kv and "certificate" not in kv:
            raise SourceError(self.name, f"{here}: certificate_password without certificate")
        s = request.settings
        missing = [k for k in ("tenant_id", "client_id") if not s.get(k)]
        if missing:
            raise SourceError(
                self.name,
                f"{here} holds a {present[0]} but [profiles.{request.profile}] has no "
                f"{' or '.join(missing)} (the ids of the app the secret belongs to)",
            )
        common: dict[str, Any] = {
            "tenant_id": str(s["tenant_id"]),
            "client_id": str(s["client_id"]),
            "authority_host": s.get("authority_host"),
        }
        if present == ["client_secret"]:
            secret = self._fetch(request, kv["client_secret"], f"client_secret of {here}")
            if isinstance(secret, bytes):
                raise SourceError(
                    self.name,
                    f"client_secret of {here} names a certificate (its content type says so): "
                    "write certificate = ... instead",
                )
            return ClientSecret(**common, secret=secret)
        certificate = self._fetch(request, kv["certificate"], f"certificate of {here}")
        if isinstance(certificate, str):
            if "-----BEGIN" not in certificate:
                raise SourceError(
                    self.name,
                    f"certificate of {here} names a secret that is no certificate: its content "
                    "type is neither application/x-pem-file nor application/x-pkcs12 and it "
                    "holds no PEM. Import the certificate into Key Vault as a certificate, "
                    "and reference the secret of the same name",
                )
            certificate = certificate.encode()
        password = kv.get("certificate_password")
        return ClientCertificate(
            **common,
            certificate=certificate,
            password=(
                None
                if password is None
                else _text(
                    self._fetch(request, password, f"certificate_password of {here}", any_ref=True)
                )
            ),
            send_certificate_chain=bool(s.get("send_certificate_chain", False)),
        )

    def _fetch(
        self, request: SourceRequest, value: Any, what: str, *, any_ref: bool = False
    ) -> str | bytes:
        """Resolve a setting: a Key Vault reference through our resolver, else another's.

        Only the certificate password may be a literal (others have no reason to be
        here rather than in the profile, where the ``file`` source reads them).
        """
        target = value.get("ref") if isinstance(value, Mapping) else value
        if not isinstance(target, str):
            raise SourceError(self.name, f'{what} must be a reference string or {{ ref = "..." }}')
        if self.resolver.claims_for_request(target, request):
            return self.resolver.resolve(target, request)
        if isinstance(value, Mapping) or any_ref:
            resolved = request.resolve(value, what)
            if resolved is value:
                refuse_readable_plaintext(what, request)
            if not isinstance(resolved, str | bytes):
                raise SourceError(self.name, f"{what} must resolve to a string")
            return resolved
        # do not echo the value: a secret pasted here by mistake must not reach a log
        raise SourceError(
            self.name,
            f"{what} is not a Key Vault reference ({SHAPE}); a vault off Azure (an emulator, "
            f"a private endpoint) must be listed in hosts = [...] or PPAUTH_KEYVAULT_HOSTS",
        )


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value
