"""Azure Key Vault for requests-ppauth: secret references and a credential source.

Installed, it registers (entry point ``keyvault`` in the ``requests_ppauth`` group):

- a **resolver** for ``https://<vault>.vault.azure.net/secrets/<name>[/<version>]``
  (and the sovereign clouds' vault suffixes), usable in any profile setting or
  ``PPAUTH_*`` variable that takes a secret;
- the **keyvault source** (priority 40), for ``[profiles.<name>.keyvault]``
  ``client_secret = "<reference>"`` or ``certificate = "<reference>"``.

Importing this package imports no Azure library: the core loads plugins on the
first credential lookup, and that must stay cheap for profiles that never touch a
vault. azure-identity and azure-keyvault-secrets load on the first vault read.
"""

from __future__ import annotations

from collections.abc import Callable

from requests_ppauth.hookspecs import hookimpl
from requests_ppauth.source_api import CredentialSource, SecretResolver

from requests_ppauth_keyvault._cache import SECRETS, SecretCache
from requests_ppauth_keyvault._references import HOSTS_VAR
from requests_ppauth_keyvault._resolver import KeyVaultResolver
from requests_ppauth_keyvault._settings import TTL_VAR
from requests_ppauth_keyvault._source import KeyVaultSource
from requests_ppauth_keyvault._vault import CLIENTS, KeyVaultError

__all__ = [
    "HOSTS_VAR",
    "TTL_VAR",
    "KeyVaultError",
    "KeyVaultResolver",
    "KeyVaultSource",
    "SecretCache",
    "clear_cache",
    "ppauth_register_secret_resolvers",
    "ppauth_register_sources",
]


def clear_cache() -> None:
    """Forget every secret and vault client this process holds (say, after a rotation)."""
    SECRETS.clear()
    CLIENTS.clear()


@hookimpl
def ppauth_register_sources(register: Callable[[CredentialSource], None]) -> None:
    """Register the ``keyvault`` source."""
    register(KeyVaultSource())


@hookimpl
def ppauth_register_secret_resolvers(register: Callable[[SecretResolver], None]) -> None:
    """Register the Key Vault reference resolver."""
    register(KeyVaultResolver())
