"""Talking to Key Vault: azure-identity credentials, ``SecretClient``s, and their errors.

The only module that imports Azure, and only inside functions: the core loads
plugins on the first credential lookup of every process, and azure-identity plus
azure-keyvault-secrets take longer to import than a whole cached token lookup.

Every Azure error becomes a :class:`~requests_ppauth.SecretReferenceError` whose
message names the reference, the vault and the principal, and says what to do;
raised ``from None``, so no response body rides along in a traceback.
"""

from __future__ import annotations

import os
import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit

from requests_ppauth.errors import SecretReferenceError

from requests_ppauth_keyvault._references import VaultReference
from requests_ppauth_keyvault._settings import CredentialSpec

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential
    from azure.core.exceptions import AzureError, HttpResponseError
    from azure.keyvault.secrets import SecretClient

# Entra ID hosts that answer instance discovery; any other authority (an emulator, a
# private cloud) must switch it off or msal asks login.microsoftonline.com about it.
MICROSOFT_AUTHORITIES = frozenset(
    {
        "login.microsoftonline.com",
        "login.microsoft.com",
        "login.windows.net",
        "sts.windows.net",
        "login.microsoftonline.us",
        "login.usgovcloudapi.net",
        "login.chinacloudapi.cn",
        "login.partner.microsoftonline.cn",
        "login.microsoftonline.de",
    }
)
T = TypeVar("T")
BACKOFF_FACTOR = 0.5  # seconds; the first retry is immediate, then 1 s, 2 s, ...
BACKOFF_MAX = 8.0
MAX_CLIENTS = 32
_PRINCIPAL = re.compile(r"appid=([^;'\s]+);oid=([^;'\s]+)")


@dataclass(frozen=True)
class Fetched:
    """One secret as Key Vault returned it."""

    value: str = field(repr=False)
    content_type: str | None
    version: str | None


def is_microsoft_authority(authority: str) -> bool:
    """Whether ``authority`` is a Microsoft Entra ID host (instance discovery works)."""
    text = authority if "//" in authority else "https://" + authority
    return (urlsplit(text).hostname or "").lower() in MICROSOFT_AUTHORITIES


def describe(spec: CredentialSpec, tenant_id: str | None) -> str:
    """The principal that reads the vault, in words, for error messages (no secret)."""
    if spec.type == "client_secret":
        return f"the app {spec.client_id} (client_secret credential, tenant {tenant_id})"
    if spec.type == "managed_identity":
        return (
            f"the user-assigned managed identity {spec.client_id}"
            if spec.client_id
            else "this machine's system-assigned managed identity"
        )
    if spec.type == "azure_cli":
        return "the account signed in to the Azure CLI (az login)"
    env_id = os.environ.get("AZURE_CLIENT_ID")
    if spec.type == "environment":
        return f"the app {env_id} (EnvironmentCredential: AZURE_* variables)"
    return "the identity DefaultAzureCredential found" + (
        f" (AZURE_CLIENT_ID {env_id})" if env_id else ""
    )


def build_credential(
    spec: CredentialSpec,
    *,
    authority: str | None,
    tenant_id: str | None,
    secret: str | None,
    ca_bundle: str | bool,
    timeout: float,
    where: str,
) -> TokenCredential:
    """An azure-identity credential for ``spec``; ``authority=None`` keeps Azure's default."""
    from azure import identity

    common: dict[str, Any] = {
        "connection_verify": ca_bundle,
        "connection_timeout": timeout,
        "read_timeout": timeout,
    }
    if authority:
        common["authority"] = authority
        if not is_microsoft_authority(authority):
            common["disable_instance_discovery"] = True
    try:
        if spec.type == "client_secret":
            if not tenant_id:
                raise SecretReferenceError(
                    f'{where}: type "client_secret" needs a tenant_id (here or in the profile)'
                )
            # both checked by _settings.read
            assert spec.client_id is not None
            assert secret is not None
            return identity.ClientSecretCredential(tenant_id, spec.client_id, secret, **common)
        if spec.type == "environment":
            return identity.EnvironmentCredential(**common)
        if spec.type == "managed_identity":
            return identity.ManagedIdentityCredential(
                client_id=spec.client_id,
                connection_verify=ca_bundle,
                connection_timeout=timeout,
                read_timeout=timeout,
            )
        if spec.type == "azure_cli":
            return identity.AzureCliCredential(
                tenant_id=spec.tenant_id or "", process_timeout=max(1, int(timeout))
            )
        return identity.DefaultAzureCredential(managed_identity_client_id=spec.client_id, **common)
    except ValueError as exc:  # azure-identity validates ids and authorities up front
        raise SecretReferenceError(f"{where}: {exc}") from None


def build_client(
    ref: VaultReference,
    credential: TokenCredential,
    *,
    ca_bundle: str | bool,
    retries: int,
    timeout: float,
) -> SecretClient:
    """A ``SecretClient`` for ``ref``'s vault.

    The SDK checks that the 401 challenge's resource is the vault's own domain; a
    host off Azure (allow-listed on purpose) cannot pass that check, so only there
    is it off.
    """
    from azure.keyvault.secrets import SecretClient

    return SecretClient(
        ref.vault_url,
        credential,
        verify_challenge_resource=ref.azure,
        connection_verify=ca_bundle,
        connection_timeout=timeout,
        read_timeout=timeout,
        retry_total=retries,
        retry_backoff_factor=BACKOFF_FACTOR,
        retry_backoff_max=BACKOFF_MAX,
    )


def read(client: SecretClient, ref: VaultReference, principal: str, retries: int) -> Fetched:
    """Read ``ref``; every failure is a :class:`SecretReferenceError` saying what to do."""
    from azure.core.exceptions import AzureError

    try:
        secret = client.get_secret(ref.name, version=ref.version)
    except AzureError as exc:
        raise translate(exc, ref, principal, retries) from None
    if secret.value is None:
        raise SecretReferenceError(f"Key Vault secret {ref} has no value")
    return Fetched(secret.value, secret.properties.content_type, secret.properties.version)


def translate(
    exc: AzureError, ref: VaultReference, principal: str, retries: int
) -> SecretReferenceError:
    """The error a user can act on, for an Azure SDK exception."""
    from azure.core.exceptions import (
        ClientAuthenticationError,
        HttpResponseError,
        ResourceNotFoundError,
        ServiceRequestError,
    )

    secret = f"secret {ref.name!r}" + (f" version {ref.version}" if ref.version else "")
    status = getattr(exc, "status_code", None)
    if isinstance(exc, ResourceNotFoundError):
        return KeyVaultError(
            f"Key Vault reference {ref} names no secret: vault {ref.vault_url} has no {secret} "
            "(or it is disabled or deleted). Check the name and version in the reference.",
            ref,
            status,
        )
    if isinstance(exc, ClientAuthenticationError):
        if exc.response is not None and status == 401:
            return KeyVaultError(
                f"Key Vault {ref.vault_url} rejected the token of {principal} while reading "
                f"{ref}: {_service_message(exc)}. Is the vault in the tenant this identity "
                "signs in to?",
                ref,
                status,
            )
        return KeyVaultError(
            f"cannot authenticate to Key Vault {ref.vault_url} (reading {ref}) as {principal}: "
            f"{_first_lines(exc.message)}",
            ref,
            status,
        )
    if isinstance(exc, HttpResponseError) and status == 403:
        return _forbidden(exc, ref, principal, secret)
    if isinstance(exc, HttpResponseError) and status == 429:
        retry_after = _retry_after(exc)
        wait = (
            f"Key Vault asks to retry after {retry_after:g} seconds"
            if retry_after is not None
            else "retry later"
        )
        return KeyVaultError(
            f"Key Vault {ref.vault_url} is throttling requests (HTTP 429): reading {ref} "
            f"failed after {retries} retr{'y' if retries == 1 else 'ies'}; {wait}. Fewer "
            "reads help: raise cache_ttl, or share one process's credential.",
            ref,
            status,
            retry_after=retry_after,
        )
    if isinstance(exc, HttpResponseError) and exc.response is not None:
        return KeyVaultError(
            f"Key Vault {ref.vault_url} answered HTTP {status} reading {ref}: "
            f"{_service_message(exc)}",
            ref,
            status,
        )
    if isinstance(exc, ServiceRequestError):
        hint = (
            " If the vault's certificate comes from a private CA, set ca_bundle in the "
            "profile or PPAUTH_CA_BUNDLE."
            if "CERTIFICATE_VERIFY_FAILED" in str(exc) or "SSL" in str(exc)
            else " Check the vault name, DNS and any proxy or private endpoint."
        )
        return KeyVaultError(
            f"cannot reach Key Vault {ref.vault_url} (reading {ref}): "
            f"{_first_lines(exc.message)}.{hint}",
            ref,
            None,
        )
    return KeyVaultError(
        f"reading {ref} from Key Vault failed: {type(exc).__name__}: {_first_lines(exc.message)}",
        ref,
        status,
    )


class KeyVaultError(SecretReferenceError):
    """A Key Vault reference that could not be read.

    ``reference`` is the URL (never the value), ``status`` the HTTP status when the
    vault answered, ``retry_after`` the seconds Key Vault asked to wait (HTTP 429).
    """

    def __init__(
        self,
        message: str,
        ref: VaultReference,
        status: int | None,
        *,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.reference = ref.reference
        self.vault_url = ref.vault_url
        self.status = status
        self.retry_after = retry_after


def _forbidden(
    exc: HttpResponseError, ref: VaultReference, principal: str, secret: str
) -> KeyVaultError:
    inner = ""
    if exc.error is not None and isinstance(exc.error.innererror, dict):
        inner = str(exc.error.innererror.get("code") or "")
    if inner == "SecretDisabled":
        return KeyVaultError(
            f"Key Vault {secret} in {ref.vault_url} is disabled: enable it or reference "
            "another version",
            ref,
            403,
        )
    if inner == "ForbiddenByFirewall":
        return KeyVaultError(
            f"the firewall of Key Vault {ref.vault_url} refuses this machine's address "
            f"(reading {ref}): add it to the vault's networking rules or use a private "
            "endpoint",
            ref,
            403,
        )
    found = _PRINCIPAL.search((exc.error.message or "") if exc.error is not None else "")
    who = principal
    if found:  # what the vault saw: the object id is what a role assignment names
        appid, oid = found.groups()
        who += f" (object id {oid})" if appid in principal else f" (appid {appid}, object id {oid})"
    return KeyVaultError(
        f"access denied reading {ref}: {who} lacks 'get' permission on secrets in vault "
        f"{ref.vault_url}. Grant it the 'Key Vault Secrets User' role on the vault (Azure "
        "RBAC), or Get on secrets in the vault's access policies.",
        ref,
        403,
    )


def _service_message(exc: HttpResponseError) -> str:
    if exc.error is not None:
        return f"{exc.error.code}: {exc.error.message}"
    return f"HTTP {exc.status_code} {exc.reason or ''}".strip()


def _retry_after(exc: HttpResponseError) -> float | None:
    # every transport's response has headers; azure-core's shared base type does not say so
    headers: Mapping[str, str] = getattr(exc.response, "headers", None) or {}
    for name, scale in (("retry-after-ms", 1000.0), ("x-ms-retry-after-ms", 1000.0)):
        if headers.get(name):
            try:
                return float(headers[name]) / scale
            except ValueError:
                pass
    value = headers.get("Retry-After")
    if value:
        try:
            return float(value)
        except ValueError:
            from email.utils import parsedate_to_datetime

            try:
                import time

                return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
            except (TypeError, ValueError):
                return None
    return None


def _first_lines(message: str, limit: int = 1500) -> str:
    text = " ".join(line.strip() for line in str(message).splitlines() if line.strip())
    return text if len(text) <= limit else text[: limit - 3] + "..."


class Clients:
    """Credentials and ``SecretClient``s, built once per configuration and reused.

    Reuse is what keeps a vault read to one HTTP request: the credential holds its
    access token in memory and the client its connection pool. Bounded (least
    recently used go first) and emptied in a forked child, whose sockets and locks
    are not its own.
    """

    def __init__(self, max_entries: int = MAX_CLIENTS) -> None:
        self.max_entries = max_entries
        self._lock = threading.Lock()
        self._credentials: OrderedDict[Hashable, TokenCredential] = OrderedDict()
        self._clients: OrderedDict[Hashable, SecretClient] = OrderedDict()

    def __repr__(self) -> str:
        return f"<Clients: {len(self._credentials)} credentials, {len(self._clients)} clients>"

    def credential(self, key: Hashable, build: Callable[[], TokenCredential]) -> TokenCredential:
        """The credential for ``key``, built by ``build()`` the first time."""
        return self._get(self._credentials, key, build)

    def client(self, key: Hashable, build: Callable[[], SecretClient]) -> SecretClient:
        """The client for ``key``, built by ``build()`` the first time."""
        return self._get(self._clients, key, build)

    def forget(self, credential_key: Hashable) -> None:
        """Drop a credential and its clients (after it failed: its secret may have rotated).

        Keys are tuples whose first item is the ``credential_key`` they were built for.
        """
        with self._lock:
            for table in (self._credentials, self._clients):
                for key in [k for k in table if isinstance(k, tuple) and k[0] == credential_key]:
                    del table[key]

    def clear(self) -> None:
        """Drop everything."""
        with self._lock:
            self._credentials.clear()
            self._clients.clear()

    def after_fork(self) -> None:
        """Start empty in a forked child."""
        self._lock = threading.Lock()
        self._credentials = OrderedDict()
        self._clients = OrderedDict()

    def _get(self, table: OrderedDict[Hashable, T], key: Hashable, build: Callable[[], T]) -> T:
        with self._lock:
            if key in table:
                table.move_to_end(key)
                return table[key]
        made = build()  # outside the lock: building may run `az` or read a keyring
        with self._lock:
            existing = table.setdefault(key, made)
            table.move_to_end(key)
            while len(table) > self.max_entries:
                table.popitem(last=False)
            return existing


CLIENTS = Clients()
"""The per-process credentials and clients every resolver shares unless given its own."""

if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=CLIENTS.after_fork)
