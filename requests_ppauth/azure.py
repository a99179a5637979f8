"""``PowerPlatformCredential``: this package's tokens as an azure-core credential.

Microsoft's SDKs (``powerplatform-dataverse-client``, every ``azure-*`` client, Kiota
through ``AzureIdentityAuthenticationProvider``) take an azure-core ``TokenCredential``
and refuse anything else. This credential composes a :class:`PowerPlatformAuth` with
the same options and asks its token provider, so the sources, profiles, secret
references, shared cache and single-flight are the same ones: a token fetched through
the requests auth is a cache hit here, and the other way round, in this process and
in every other process on the same cache.

Importing this module imports azure-core (the ``requests-ppauth[azure]`` extra);
``import requests_ppauth`` does not, and neither does it import msal.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from azure.core.credentials import AccessToken, AccessTokenInfo, TokenRequestOptions

from requests_ppauth.auth import PowerPlatformAuth
from requests_ppauth.errors import ConfigurationError

if TYPE_CHECKING:
    from types import TracebackType
    from typing import Self

    from requests_ppauth.cache import CacheBackend
    from requests_ppauth.credentials import Credential
    from requests_ppauth.tokens import AccessToken as PPToken
    from requests_ppauth.tokens import TokenProvider

# Scopes msal adds to every request by itself and Entra ID answers for any resource:
# they name no resource, so they never make a request "two resources".
OIDC_SCOPES = frozenset({"openid", "profile", "offline_access"})


class MultipleResourcesError(ConfigurationError):
    """One ``get_token`` call named scopes of two resources: Entra ID issues an access
    token for one resource (its ``aud``), so no single token can answer it."""


class TenantMismatchError(ConfigurationError):
    """``tenant_id=`` named another tenant than the credential's: its tokens would be
    another tenant's, which this credential is not configured for."""


def resource_of(scope: str) -> str:
    """The resource a scope belongs to: what precedes its last ``/`` (``https://org.crm.
    dynamics.com`` for ``https://org.crm.dynamics.com/.default`` and for ``..//.default``),
    lower-cased; a bare permission name (``User.Read``) belongs to Microsoft Graph."""
    if "/" not in scope:
        return "https://graph.microsoft.com"
    return scope.rsplit("/", 1)[0].rstrip("/").lower()


def scope_for(scopes: Sequence[str]) -> str:
    """The one scope string the provider is asked for, from azure-core's ``*scopes``.

    Duplicates and the OpenID Connect scopes are dropped (msal adds those itself);
    several scopes of one resource are joined by spaces, as Entra ID takes them;
    scopes of several resources are refused, saying why.
    """
    if not scopes:
        raise ValueError(
            "get_token needs at least one scope, e.g. 'https://org.crm.dynamics.com/.default'"
        )
    wanted: list[str] = []
    for scope in scopes:
        if not isinstance(scope, str) or not scope.strip():
            raise ValueError(f"a scope must be a non-empty string, not {scope!r}")
        for part in scope.split():
            if part not in wanted and part.lower() not in OIDC_SCOPES:
                wanted.append(part)
    if not wanted:
        raise ValueError(
            "get_token was given only OpenID Connect scopes (openid, profile, offline_access): "
            "name the resource's scope, e.g. 'https://org.crm.dynamics.com/.default'"
        )
    resources = sorted({resource_of(s) for s in wanted})
    if len(resources) > 1:
        raise MultipleResourcesError(
            f"get_token was given scopes of {len(resources)} resources ({', '.join(resources)}): "
            "Entra ID issues an access token for one resource at a time, so ask for each "
            "resource's token in a call of its own"
        )
    return " ".join(wanted)


class _Core:
    """What the sync and the async credential share: the composed auth object, the
    scope and tenant checks, and one blocking token fetch."""

    def __init__(self, auth: PowerPlatformAuth) -> None:
        self.auth = auth

    @property
    def provider(self) -> TokenProvider:
        return self.auth.provider

    def built(self) -> TokenProvider | None:
        """The provider if it exists already (building it reads files: not on a loop)."""
        return self.auth._provider

    def check_tenant(self, tenant_id: str | None) -> None:
        """Refuse a ``tenant_id`` other than the credential's (reads the credential)."""
        if not tenant_id:
            return
        own = self.provider.credential.tenant_id
        if tenant_id.strip().lower() != own.lower():
            raise TenantMismatchError(
                f"get_token was asked for a token of tenant {tenant_id.strip()!r}, but this "
                f"credential signs in to tenant {own!r} (source "
                f"{self.provider.credential.source}): build a PowerPlatformCredential for "
                "that tenant (a profile or credential of its own)"
            )

    def fetch(self, scope: str, claims: str | None, tenant_id: str | None) -> PPToken:
        """A token for ``scope``: the provider's (memory, shared cache, single-flight),
        or with ``claims`` a new one asked for with those claims (blocking)."""
        self.check_tenant(tenant_id)
        return self.provider.get(scope, claims=claims or None)


def _options(
    profile: str | None,
    credential: Credential | Any | None,
    cloud: str | None,
    authority_host: str | None,
    sources: Sequence[str] | None,
    verify: str | bool | None,
    timeout: float | tuple[float, float] | None,
    cache: Any,
    proxies: Mapping[str, str] | None,
    auth: PowerPlatformAuth | None,
) -> PowerPlatformAuth:
    """The auth object a credential composes: ``auth`` itself (sharing its provider and
    in-memory tokens), or a new one with the same options as ``PowerPlatformAuth``."""
    if auth is not None:
        given = (credential, cloud, authority_host, sources, verify, timeout, proxies)
        if profile is not None or any(v is not None for v in given) or cache is not True:
            raise ValueError("pass either auth= or PowerPlatformAuth's options, not both")
        return auth
    return PowerPlatformAuth(
        profile,
        credential=credential,
        cloud=cloud,
        authority_host=authority_host,
        sources=sources,
        verify=verify,
        timeout=timeout,
        cache=cache,
        proxies=proxies,
    )


class PowerPlatformCredential:
    """An azure-core ``TokenCredential`` and ``SupportsTokenInfo`` with this package's
    tokens, for any Azure SDK client and Microsoft's Power Platform SDKs.

    Takes ``PowerPlatformAuth``'s options (profile, credential, sources, cache, cloud,
    authority host, verify, timeout, proxies) and composes one, or ``auth=`` an existing
    one to share its provider. The scope is the SDK's to choose (it names the
    resource it calls), so the host table and allow-list of the requests auth do not
    apply: a token only ever goes to the resource it is for.

    ``claims`` (a CAE claims challenge) asks for a new token with those claims,
    bypassing the caches for that call (the result is stored as usual).
    ``tenant_id`` other than the credential's raises :class:`TenantMismatchError`:
    one credential signs in to one tenant. ``enable_cae`` is accepted and changes
    nothing: the provider does not declare the ``cp1`` client capability, so Entra ID
    issues its ordinary tokens, and a claims challenge is still answered with
    ``claims=``.
    """

    def __init__(
        self,
        profile: str | None = None,
        *,
        credential: Credential | Any | None = None,
        cloud: str | None = None,
        authority_host: str | None = None,
        sources: Sequence[str] | None = None,
        verify: str | bool | None = None,
        timeout: float | tuple[float, float] | None = None,
        cache: bool | str | os.PathLike[str] | Mapping[str, Any] | CacheBackend = True,
        proxies: Mapping[str, str] | None = None,
        auth: PowerPlatformAuth | None = None,
    ) -> None:
        composed = _options(
            profile,
            credential,
            cloud,
            authority_host,
            sources,
            verify,
            timeout,
            cache,
            proxies,
            auth,
        )
        self._core = _Core(composed)

    @property
    def auth(self) -> PowerPlatformAuth:
        """The composed requests auth (``session.auth = cred.auth`` shares every token)."""
        return self._core.auth

    def __repr__(self) -> str:
        auth = self._core.auth
        cloud = auth.cloud.name if auth.cloud else None
        return f"PowerPlatformCredential(profile={auth.profile!r}, cloud={cloud!r})"

    def get_token(
        self,
        *scopes: str,
        claims: str | None = None,
        tenant_id: str | None = None,
        enable_cae: bool = False,
        **kwargs: Any,
    ) -> AccessToken:
        """azure-core's ``TokenCredential.get_token``: a token for one resource's scopes."""
        token = self._core.fetch(scope_for(scopes), claims, tenant_id)
        return AccessToken(token.token, int(token.expires_on))

    def get_token_info(
        self, *scopes: str, options: TokenRequestOptions | None = None
    ) -> AccessTokenInfo:
        """azure-core's ``SupportsTokenInfo.get_token_info``: also says ``refresh_on``, the
        moment the provider itself would stop using the token."""
        opts = options or {}
        token = self._core.fetch(scope_for(scopes), opts.get("claims"), opts.get("tenant_id"))
        return to_info(token)

    def close(self) -> None:
        """Nothing to release: the provider and its cache live as long as the auth object
        (``cred.auth``), which other code may still use."""

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None = None,
        exc: BaseException | None = None,
        tb: TracebackType | None = None,
    ) -> None:
        self.close()


def to_info(token: PPToken) -> AccessTokenInfo:
    """azure-core's ``AccessTokenInfo`` of one of our tokens."""
    return AccessTokenInfo(token.token, int(token.expires_on), refresh_on=int(token.refresh_on))


__all__ = [
    "MultipleResourcesError",
    "PowerPlatformCredential",
    "TenantMismatchError",
    "resource_of",
    "scope_for",
]
