"""requests authentication for Microsoft Power Platform APIs.

``session.auth = PowerPlatformAuth()``: tokens from Entra ID through msal, for
credentials found by pluggable sources. Importing this package imports neither
msal nor filelock and reads no file: everything starts on the first request.
"""

from requests_ppauth.auth import PowerPlatformAuth
from requests_ppauth.credentials import (
    ClientCertificate,
    ClientSecret,
    Credential,
    DeviceCode,
    ManagedIdentity,
    UsernamePassword,
    WorkloadIdentity,
)
from requests_ppauth.errors import (
    CacheError,
    ConfigurationError,
    HostNotAllowedError,
    InsecureTransportError,
    NoCredentialError,
    PPAuthError,
    SecretReferenceError,
    SourceError,
    TokenAcquisitionError,
    UnsafeFileError,
)
from requests_ppauth.hookspecs import hookimpl
from requests_ppauth.source_api import (
    CredentialSource,
    RequestAwareResolver,
    SecretResolver,
    SecretStore,
    SourceRequest,
)
from requests_ppauth.tokens import AccessToken, ROPCWarning

__all__ = [
    "AccessToken",
    "CacheError",
    "ClientCertificate",
    "ClientSecret",
    "ConfigurationError",
    "Credential",
    "CredentialSource",
    "DeviceCode",
    "HostNotAllowedError",
    "InsecureTransportError",
    "ManagedIdentity",
    "NoCredentialError",
    "PPAuthError",
    "PowerPlatformAuth",
    "ROPCWarning",
    "RequestAwareResolver",
    "SecretReferenceError",
    "SecretResolver",
    "SecretStore",
    "SourceError",
    "SourceRequest",
    "TokenAcquisitionError",
    "UnsafeFileError",
    "UsernamePassword",
    "WorkloadIdentity",
    "hookimpl",
]
