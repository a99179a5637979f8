"""requests authentication for Microsoft Power Platform APIs.

``session.auth = PowerPlatformAuth()``: tokens from Entra ID through msal, for
credentials found by pluggable sources. Importing this package imports neither
msal, pluggy nor filelock and reads no file: everything starts on the first
request. Names other than :class:`PowerPlatformAuth` and the errors are loaded on
first access (PEP 562), so ``from requests_ppauth import hookimpl`` loads pluggy
only for the plugin that asks for it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from requests_ppauth.auth import PowerPlatformAuth
from requests_ppauth.errors import (
    AzurePipelinesTokenError,
    CacheError,
    ConfigurationError,
    GitHubActionsTokenError,
    HostNotAllowedError,
    InsecureTransportError,
    InvalidCredentialError,
    NoCredentialError,
    OidcTokenError,
    PluginError,
    PPAuthError,
    SecretReferenceError,
    SourceError,
    TokenAcquisitionError,
    UnsafeCacheError,
    UnsafeFileError,
)

if TYPE_CHECKING:
    from requests_ppauth.azure import PowerPlatformCredential
    from requests_ppauth.credentials import (
        ClientCertificate,
        ClientSecret,
        Credential,
        DeviceCode,
        InteractiveBrowser,
        ManagedIdentity,
        UsernamePassword,
        WorkloadIdentity,
    )
    from requests_ppauth.hookspecs import hookimpl
    from requests_ppauth.source_api import (
        CredentialSource,
        RequestAwareResolver,
        SecretResolver,
        SecretStore,
        SourceOutcome,
        SourceReport,
        SourceRequest,
        explain_sources,
        source_report,
    )
    from requests_ppauth.tokens import AccessToken, ROPCWarning

_LAZY = {
    **dict.fromkeys(
        (
            "ClientCertificate",
            "ClientSecret",
            "Credential",
            "DeviceCode",
            "InteractiveBrowser",
            "ManagedIdentity",
            "UsernamePassword",
            "WorkloadIdentity",
        ),
        "requests_ppauth.credentials",
    ),
    "hookimpl": "requests_ppauth.hookspecs",
    "PowerPlatformCredential": "requests_ppauth.azure",  # imports azure-core: only when asked
    **dict.fromkeys(
        (
            "CredentialSource",
            "RequestAwareResolver",
            "SecretResolver",
            "SecretStore",
            "SourceOutcome",
            "SourceReport",
            "SourceRequest",
            "explain_sources",
            "source_report",
        ),
        "requests_ppauth.source_api",
    ),
    "AccessToken": "requests_ppauth.tokens",
    "ROPCWarning": "requests_ppauth.tokens",
    "session": "requests_ppauth.retries",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # once: later lookups are plain
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


__all__ = [
    "AccessToken",
    "AzurePipelinesTokenError",
    "CacheError",
    "ClientCertificate",
    "ClientSecret",
    "ConfigurationError",
    "Credential",
    "CredentialSource",
    "DeviceCode",
    "GitHubActionsTokenError",
    "HostNotAllowedError",
    "InsecureTransportError",
    "InteractiveBrowser",
    "InvalidCredentialError",
    "ManagedIdentity",
    "NoCredentialError",
    "OidcTokenError",
    "PPAuthError",
    "PluginError",
    "PowerPlatformAuth",
    "PowerPlatformCredential",
    "ROPCWarning",
    "RequestAwareResolver",
    "SecretReferenceError",
    "SecretResolver",
    "SecretStore",
    "SourceError",
    "SourceOutcome",
    "SourceReport",
    "SourceRequest",
    "TokenAcquisitionError",
    "UnsafeCacheError",
    "UnsafeFileError",
    "UsernamePassword",
    "WorkloadIdentity",
    "explain_sources",
    "hookimpl",
    "session",
    "source_report",
]
