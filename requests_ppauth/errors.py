"""One error tree. Every message says what failed, where, and what to do next.

``PPAuthError`` is the base; subclasses also inherit the builtin a caller is
likely to catch already (``ValueError`` for bad configuration, ``LookupError``
for "nothing found", ``PermissionError`` for unsafe files). No message, repr or
attribute ever holds a secret or a token.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

# Usual causes of the Entra ID errors Power Platform users meet, by AADSTS code.
AADSTS_HINTS: dict[int, str] = {
    50076: "the account needs multi-factor authentication, which username/password (ROPC) "
    "cannot do: use a service principal (client secret or certificate) instead",
    50079: "the account must register for multi-factor authentication, which ROPC cannot "
    "do: use a service principal (client secret or certificate) instead",
    50126: "wrong username or password (check PPAUTH_USERNAME / PPAUTH_PASSWORD or the "
    "profile's username/password)",
    50196: "Entra ID is throttling repeated identical requests: reuse tokens (keep the "
    "on-disk cache on) instead of asking again",
    65001: "nobody has consented to this app for this API: an admin must grant consent "
    "(Azure portal > App registrations > API permissions > Grant admin consent)",
    70020: "the device code expired before anyone signed in with it: sign in again "
    "(`ppauth login --device-code`) and enter the code within its 15 minutes",
    70021: "no federated credential of the app matches the token's issuer, subject and "
    "audience: check the app's federated credentials (audience api://AzureADTokenExchange) "
    "and the token in AZURE_FEDERATED_TOKEN_FILE",
    700024: "the client assertion is expired or not yet valid: for a federated token, "
    "whatever writes AZURE_FEDERATED_TOKEN_FILE (the kubelet, the CI runner) is not "
    "refreshing it; for a certificate, check this machine's clock",
    90002: "the tenant does not exist in this cloud: check the tenant id and the cloud / "
    "authority host",
    700016: "the app is not registered in that tenant: wrong tenant or cloud? Check "
    "client_id and tenant_id",
    700027: "the certificate is not the one registered on the app: upload its public "
    "certificate in the app registration or use the matching key",
    7000215: "invalid client secret: use the secret's Value, not its Secret ID",
    7000218: "this app is confidential: provide a client secret or certificate, or turn on "
    "'Allow public client flows' for username/password",
    7000222: "the client secret has expired: create a new one in the app registration "
    "(Certificates & secrets)",
}

# The same, by OAuth error, for errors whose AADSTS code says less than the error.
ERROR_HINTS: dict[str, str] = {
    "authorization_declined": "the device sign-in was declined at the browser: sign in "
    "again (`ppauth login --device-code`) and approve it",
}


class PPAuthError(Exception):
    """Base class of every error this package raises."""


class ConfigurationError(PPAuthError, ValueError):
    """A setting is missing, malformed or contradictory."""


class SourceError(ConfigurationError):
    """A credential source recognised the request but cannot complete it.

    ``source`` names the source (``env``, ``file``, a plugin's name).
    """

    def __init__(self, source: str, message: str) -> None:
        super().__init__(f"[{source}] {message}")
        self.source = source


class InvalidCredentialError(ConfigurationError):
    """A :class:`~requests_ppauth.credentials.Credential` was given a value Entra ID would
    refuse or that would change the URL it goes into (a tenant id of ``../../x``, a blank
    secret), and refused it before anything was sent.

    A class of its own so the plugin manager can tell "the credential a source built is
    malformed" from errors a source raises knowingly, and add the source's name.
    """


class SecretReferenceError(ConfigurationError):
    """A secret reference (``keyring:…``, a Key Vault URL, any ``scheme:rest`` value)
    cannot be resolved: no installed resolver claims it, or the one that does failed."""


class OidcTokenError(ConfigurationError):
    """A CI system's OIDC endpoint (GitHub Actions, Azure Pipelines) gave no token for
    workload identity federation. Names the variable to check, never the request token
    (it is a secret)."""


class GitHubActionsTokenError(OidcTokenError):
    """The GitHub Actions OIDC endpoint (``ACTIONS_ID_TOKEN_REQUEST_URL``) gave no token."""


class AzurePipelinesTokenError(OidcTokenError):
    """The Azure Pipelines OIDC endpoint (``SYSTEM_OIDCREQUESTURI``) gave no token."""


class PluginError(PPAuthError):
    """A plugin broke its contract: it failed to import, implements an unknown hook,
    raised in a hook or in a source's ``credential()``, registered the wrong thing.

    The message names the plugin (its distribution and entry point), the hook or the
    source, what it did wrong, and how to go on without it; ``hint`` is that last part.
    ``plugin`` is the name ``PPAUTH_DISABLE_PLUGINS`` takes, ``hook`` and ``source``
    what it was doing (``None`` when not known). A fault of a third-party plugin is
    never worded as a bug of requests-ppauth.
    """

    def __init__(
        self,
        problem: str,
        *,
        plugin: str | None = None,
        hook: str | None = None,
        source: str | None = None,
        hint: str | None = None,
    ) -> None:
        if hint is None:
            hint = (
                f"its author can fix it; to go on without it, set PPAUTH_DISABLE_PLUGINS={plugin}"
                if plugin
                else "the plugin's author can fix it; PPAUTH_DISABLE_PLUGINS=<name> blocks it"
            )
        # not super(): PluginHookError is also pluggy's PluginValidationError, whose
        # __init__ takes other arguments
        PPAuthError.__init__(self, f"{problem}\nHint: {hint}")
        self.problem = problem
        self.hint = hint
        self.plugin_name = plugin
        self.hook = hook
        self.source = source


class UnsafeFileError(PPAuthError, PermissionError):
    """A file holding secrets or tokens is readable or writable by others."""


NO_CREDENTIAL_HINT = (
    "set PPAUTH_TENANT_ID, PPAUTH_CLIENT_ID and PPAUTH_CLIENT_SECRET, or add a profile "
    "with `ppauth profile add`; `ppauth sources` shows what each source saw"
)


class NoCredentialError(PPAuthError, LookupError):
    """No source had a credential; ``reasons`` maps each source asked to why it declined.

    The message is one line per source, then the same ``hint`` the ``ppauth`` command
    prints (with or without ``--verbose``), so the two never tell different stories.
    """

    def __init__(self, profile: str, reasons: Mapping[str, str]) -> None:
        self.profile = profile
        self.reasons = dict(reasons)
        self.hint = NO_CREDENTIAL_HINT
        super().__init__(f"{self.summary()}\nHint: {self.hint}")

    def summary(self) -> str:
        """What failed: the first line, then one line per source asked and its reason."""
        lines = [f"no credential found for profile {self.profile!r}. Sources asked, in order:"]
        lines += [f"  - {name}: {why}" for name, why in self.reasons.items()]
        if not self.reasons:
            lines.append("  (none: every source is blocked or excluded)")
        return "\n".join(lines)


class HostNotAllowedError(PPAuthError, ValueError):
    """A request to a host that must not receive a token; nothing was sent."""


class InsecureTransportError(HostNotAllowedError):
    """A token would travel over plain http to a non-loopback host; nothing was sent."""


class TokenAcquisitionError(PPAuthError):
    """Entra ID refused to issue a token, or could not be reached.

    ``error`` is the OAuth error (``invalid_client``...), ``code`` the first AADSTS
    code, ``hint`` what usually causes it.
    """

    def __init__(
        self,
        message: str,
        *,
        error: str | None = None,
        codes: Sequence[int] = (),
        correlation_id: str | None = None,
        hint: str | None = None,
        retryable: bool | None = None,
        retry_after: float | None = None,
    ) -> None:
        text = message
        if hint:
            text += f"\nHint: {hint}"
        if correlation_id:
            text += f"\n(correlation id {correlation_id})"
        super().__init__(text)
        self.error = error
        self.codes = tuple(codes)
        self.correlation_id = correlation_id
        self.hint = hint
        self.retry_after = retry_after
        self.retryable = (
            retryable
            if retryable is not None
            else error in ("temporarily_unavailable", "server_error", "network_error")
            or 50196 in self.codes
        )

    @property
    def code(self) -> int | None:
        """The first AADSTS code, if Entra ID sent one."""
        return self.codes[0] if self.codes else None

    @classmethod
    def from_msal(cls, result: Mapping[str, Any], what: str) -> TokenAcquisitionError:
        """Build from an msal result dict (``error``, ``error_description``, ``error_codes``)."""
        codes = [int(c) for c in result.get("error_codes") or () if str(c).isdigit()]
        hint = next((AADSTS_HINTS[c] for c in codes if c in AADSTS_HINTS), None)
        hint = hint or ERROR_HINTS.get(str(result.get("error")))
        description = str(result.get("error_description") or "").split(" Trace ID:")[0]
        message = f"{what}: {result.get('error', 'error')}"
        if description:
            message += f": {description}"
        return cls(
            message,
            error=result.get("error"),
            codes=codes,
            correlation_id=result.get("correlation_id"),
            hint=hint,
        )


class CacheError(PPAuthError, OSError):
    """The on-disk token cache cannot be used (permissions, ownership, I/O)."""


class SealError(CacheError):
    """A sealed cache value does not open: sealed under a key not given, changed or
    damaged, copied from another entry, or not sealed at all. ``key_id`` names the key
    it was sealed with (its id, never the key), when the value says.
    """

    def __init__(self, message: str, *, key_id: str | None = None) -> None:
        super().__init__(message)
        self.key_id = key_id


class UnsafeCacheError(CacheError, UnsafeFileError):
    """A token cache file or directory is unsafe: a symbolic link, another user's, or
    open to others. Never worked around: the request fails, where an unavailable
    cache only costs sharing."""
