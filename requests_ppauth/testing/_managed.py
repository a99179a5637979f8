"""Managed identity endpoints: IMDS (``/metadata/identity/oauth2/token``, VMs and AKS)
and App Service (``IDENTITY_ENDPOINT`` + ``X-IDENTITY-HEADER``).

Served over plain http on 127.0.0.1, as the real ones are link-local/loopback http.
Point msal at them with ``AZURE_POD_IDENTITY_AUTHORITY_HOST`` (IMDS) or
``IDENTITY_ENDPOINT``/``IDENTITY_HEADER`` (App Service): ``Emulator.managed_identity_env``.
"""

from __future__ import annotations

import secrets
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from requests_ppauth.testing._aadsts import EntraError
from requests_ppauth.testing._wire import Request, Response


@dataclass
class ManagedIdentity:
    """A system- or user-assigned identity."""

    client_id: str
    object_id: str
    resource_id: str
    system_assigned: bool = False


@dataclass
class ManagedIdentities:
    """The identities this "machine" has, and App Service's shared header secret."""

    identities: list[ManagedIdentity] = field(default_factory=list)
    header_secret: str = field(default_factory=lambda: secrets.token_urlsafe(24), repr=False)

    def add(self, name: str, *, system_assigned: bool = False) -> ManagedIdentity:
        """Register an identity (the first system-assigned one is the default)."""
        identity = ManagedIdentity(
            client_id=str(uuid.uuid4()),
            object_id=str(uuid.uuid4()),
            resource_id=(
                f"/subscriptions/{uuid.UUID(int=0)}/resourcegroups/emulator/providers/"
                f"Microsoft.ManagedIdentity/userAssignedIdentities/{name}"
            ),
            system_assigned=system_assigned,
        )
        self.identities.append(identity)
        return identity

    def pick(self, query: dict[str, str], res_id_param: str) -> ManagedIdentity | None:
        """The identity a request names (client_id, object_id, resource id) or the default."""
        for param, attr in (
            ("client_id", "client_id"),
            ("object_id", "object_id"),
            (res_id_param, "resource_id"),
        ):
            if query.get(param):
                return next(
                    (
                        i
                        for i in self.identities
                        if getattr(i, attr).lower() == query[param].lower()
                    ),
                    None,
                )
        return next((i for i in self.identities if i.system_assigned), None)


Mint = Callable[[ManagedIdentity, str], tuple[str, dict[str, Any]]]


def handle(req: Request, ids: ManagedIdentities, mint: Mint) -> Response:
    """Route a request on the managed identity listener."""
    path = req.path.rstrip("/")
    if path == "/metadata/identity/oauth2/token":
        req.endpoint = "imds"
        if req.headers.get("metadata", "").lower() != "true":
            return Response.json(
                400,
                {
                    "error": "invalid_request",
                    "error_description": "Required metadata header not specified",
                },
            )
        return _token(req, ids, mint, "msi_res_id", app_service=False)
    if path == "/msi/token":
        req.endpoint = "appservice-msi"
        if not secrets.compare_digest(req.headers.get("x-identity-header", ""), ids.header_secret):
            return Response.json(
                401, {"statusCode": 401, "message": "X-IDENTITY-HEADER is missing or wrong"}
            )
        return _token(req, ids, mint, "mi_res_id", app_service=True)
    req.endpoint = "msi-unknown"
    return Response.json(404, {"error": "not_found"})


def _token(
    req: Request, ids: ManagedIdentities, mint: Mint, res_param: str, *, app_service: bool
) -> Response:
    resource = req.query.get("resource", "")
    if not resource:
        if app_service:
            return Response.json(400, {"statusCode": 400, "message": "resource is required"})
        return Response.json(
            400, {"error": "invalid_request", "error_description": "resource is required"}
        )
    identity = ids.pick(req.query, res_param)
    if identity is None:
        if app_service:
            return Response.json(400, {"statusCode": 400, "message": "Identity not found"})
        return Response.json(
            400, {"error": "invalid_request", "error_description": "Identity not found"}
        )
    try:
        token, claims = mint(identity, resource)
    except EntraError as exc:  # a resource the tenant does not know: AADSTS500011
        req.notes["aadsts"] = exc.code
        status, entra = exc.body(
            req.headers.get("x-ms-client-request-id"), "https://login.microsoftonline.com"
        )
        if app_service:
            return Response.json(
                status, {"statusCode": status, "message": entra["error_description"]}
            )
        return Response.json(
            status, {"error": entra["error"], "error_description": entra["error_description"]}
        )
    req.notes["client_id"] = identity.client_id
    body: dict[str, Any] = {
        "access_token": token,
        "expires_on": str(claims["exp"]),
        "resource": resource,
        "token_type": "Bearer",
        "client_id": identity.client_id,
    }
    if not app_service:
        lifetime = int(claims["exp"]) - int(time.time())
        body.update(
            expires_in=str(lifetime), ext_expires_in=str(lifetime), not_before=str(claims["nbf"])
        )
    return Response.json(200, body)
