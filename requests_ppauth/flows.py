"""The flows past secrets and passwords: device code, managed identity, workload
identity federation. Each is a credential type the token provider hands to msal;
this module holds what is specific to each, so ``tokens`` stays about caching.

When to choose which:

- **Device code**: a person (an admin) signs in on another device, MFA included.
  Use it for interactive tools and one-off admin work; the refresh token then
  serves later processes silently.
- **Managed identity**: code running in Azure (VM, AKS, App Service, Functions).
  No secret exists to leak or rotate.
- **Workload identity federation**: code running elsewhere that has a token from
  another identity provider (Kubernetes service account, GitHub Actions or Azure
  Pipelines OIDC). No secret either; :mod:`requests_ppauth.federation` gets a fresh
  token for every token request.
"""

from __future__ import annotations

import sys
from typing import Any

from requests_ppauth._http import IdentityHttpClient
from requests_ppauth.credentials import DeviceCode, ManagedIdentity
from requests_ppauth.errors import TokenAcquisitionError
from requests_ppauth.federation import (
    EXCHANGE_AUDIENCE,
    AzurePipelinesTokenError,
    GitHubActionsTokenError,
    OidcTokenError,
    file_assertion,
    github_assertion,
    pipelines_assertion,
)

__all__ = [
    "GITHUB_AUDIENCE",
    "AzurePipelinesTokenError",
    "GitHubActionsTokenError",
    "OidcTokenError",
    "device_code_flow",
    "federated_assertion",
    "github_assertion",
    "managed_identity_client",
    "pipelines_assertion",
    "scope_to_resource",
]


def scope_to_resource(scope: str) -> str:
    """Managed identity endpoints take a v1 *resource*: the scope minus ``/.default``.

    ``https://service.powerapps.com//.default`` becomes ``https://service.powerapps.com/``
    (the resource id's own trailing slash survives, as Entra ID expects).
    """
    return scope[: -len("/.default")] if scope.endswith("/.default") else scope


# moved to requests_ppauth.federation; importable from here as before
GITHUB_AUDIENCE = EXCHANGE_AUDIENCE
federated_assertion = file_assertion


def managed_identity_client(
    cred: ManagedIdentity, http: IdentityHttpClient | None, token_cache: Any
) -> Any:
    """msal's ManagedIdentityClient for a system- or user-assigned identity."""
    import msal

    identity: Any
    if cred.client_id:
        identity = msal.UserAssignedManagedIdentity(client_id=cred.client_id)
    elif cred.object_id:
        identity = msal.UserAssignedManagedIdentity(object_id=cred.object_id)
    elif cred.resource_id:
        identity = msal.UserAssignedManagedIdentity(resource_id=cred.resource_id)
    else:
        identity = msal.SystemAssignedManagedIdentity()
    client = msal.ManagedIdentityClient(identity, http_client=http, token_cache=token_cache)
    # the provider reaches every msal app's cache as .token_cache (confidential and public
    # clients have it); this client keeps the object we passed under a private name
    client.token_cache = token_cache
    return client


def _stderr_prompt(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def device_code_flow(
    app: Any, cred: DeviceCode, scope: str, *, silent: bool = True, claims: str | None = None
) -> dict[str, Any]:
    """A signed-in account's token (silently), else a device sign-in if a person is there.

    ``silent=False`` skips the signed-in accounts: a new sign-in (``ppauth login``).
    ``claims`` (a CAE or Conditional Access challenge) goes with the device sign-in, so
    the token it gives satisfies the challenge.
    """
    if silent:
        from requests_ppauth.signin import signed_in

        result = signed_in(app, cred.username, scope)
        if result is not None:
            return dict(result)
    prompt = cred.prompt
    if prompt is None:
        if not sys.stderr.isatty():
            raise TokenAcquisitionError(
                f"no signed-in account for client {cred.client_id} in the token cache, and "
                "no terminal to run a device sign-in on",
                error="interaction_required",
                hint="sign in once with `ppauth login --device-code` (same profile and cache "
                "directory), or pass DeviceCode(prompt=...) to show the code yourself",
            )
        prompt = _stderr_prompt
    flow = app.initiate_device_flow(scopes=[scope], claims_challenge=claims)
    if "user_code" not in flow:
        raise TokenAcquisitionError.from_msal(flow, "Entra ID refused to start a device sign-in")
    prompt(str(flow["message"]))
    return dict(app.acquire_token_by_device_flow(flow, claims_challenge=claims))
