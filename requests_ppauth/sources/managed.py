"""The ``managed_identity`` source: Azure managed identities, chosen as azure-identity does.

Asked last (priority 90). It answers when:

- the profile says ``managed_identity = "system"`` (or a user-assigned identity's client
  id, object id as ``object_id:<id>``, or resource id ``/subscriptions/...``), or
  ``PPAUTH_MANAGED_IDENTITY`` says the same;
- the platform announces an identity endpoint: ``IDENTITY_ENDPOINT`` and
  ``IDENTITY_HEADER`` (App Service, Functions, Container Apps, Arc), or
  ``AZURE_POD_IDENTITY_AUTHORITY_HOST`` (an IMDS stand-in); ``AZURE_CLIENT_ID`` then
  picks a user-assigned identity, as in azure-identity.

IMDS itself (169.254.169.254) is used only when asked for explicitly: probing it from
a laptop would cost every credential lookup a network timeout.
"""

from __future__ import annotations

from collections.abc import Callable

from requests_ppauth.credentials import Credential, ManagedIdentity
from requests_ppauth.hookspecs import hookimpl
from requests_ppauth.source_api import CredentialSource, SourceRequest


def identity_from(selector: str) -> ManagedIdentity:
    """``system``, a client id, ``object_id:<id>`` or a resource id -> the credential."""
    selector = selector.strip()
    if selector.lower() in ("system", "true", "1", "yes"):
        return ManagedIdentity(tenant_id="", client_id="")
    if selector.lower().startswith("object_id:"):
        return ManagedIdentity(tenant_id="", client_id="", object_id=selector.split(":", 1)[1])
    if selector.startswith("/subscriptions/"):
        return ManagedIdentity(tenant_id="", client_id="", resource_id=selector)
    return ManagedIdentity(tenant_id="", client_id=selector)


class ManagedIdentitySource:
    """See the module docstring."""

    name = "managed_identity"
    priority = 90

    def credential(self, request: SourceRequest) -> Credential | None:
        """A managed identity when configured or announced by the platform."""
        env = request.environ
        chosen = request.settings.get("managed_identity") or env.get("PPAUTH_MANAGED_IDENTITY")
        if chosen:
            return identity_from(str(chosen))
        announced = (env.get("IDENTITY_ENDPOINT") and env.get("IDENTITY_HEADER")) or env.get(
            "AZURE_POD_IDENTITY_AUTHORITY_HOST"
        )
        if announced:
            return identity_from(env.get("AZURE_CLIENT_ID") or "system")
        request.note(
            "no managed identity: set managed_identity in the profile or "
            "PPAUTH_MANAGED_IDENTITY (IDENTITY_ENDPOINT/IDENTITY_HEADER are not set)"
        )
        return None


@hookimpl
def ppauth_register_sources(register: Callable[[CredentialSource], None]) -> None:
    """Register :class:`ManagedIdentitySource`."""
    register(ManagedIdentitySource())
