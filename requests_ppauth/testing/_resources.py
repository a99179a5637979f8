"""The emulated resource servers: a Power Platform API, Dataverse,
a Key Vault, and a "foreign" host that records what reaches it. Each real service's
API lives in a module of its own (:mod:`._management`, :mod:`.dataverse`,
:mod:`._keyvault`, :mod:`._arm`, each a :class:`~._service.Service`); this module
validates tokens for all of them and routes the listeners to them.

Every resource validates the bearer token as the real one does: signature,
audience against what that route serves, lifetime, revocation; it answers 401
with a ``WWW-Authenticate`` challenge otherwise.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlencode

from cryptography.hazmat.primitives.asymmetric import rsa

from requests_ppauth.testing import _jwt
from requests_ppauth.testing._service import Service
from requests_ppauth.testing._state import Directory
from requests_ppauth.testing._wire import Request, Response

POWER_PLATFORM_API = "https://api.powerplatform.com"
POWER_APPS_SERVICE = "https://service.powerapps.com/"
VAULT_RESOURCE = "https://vault.azure.net"
BAP_PREFIX = "/providers/Microsoft.BusinessAppPlatform"


class TokenRejectedError(Exception):
    """Why a bearer token was refused; the text goes into the challenge."""


class ClaimsChallengeError(TokenRejectedError):
    """A continuous access evaluation event: the 401 carries a claims challenge.

    ``claims`` is the claims request JSON (``emu.revoke(..., claims_challenge=True)``).
    """

    def __init__(self, message: str, claims: str) -> None:
        super().__init__(message)
        self.claims = claims


class Resources:
    """Handlers for the Power Platform, Key Vault and foreign listeners."""

    def __init__(
        self,
        directory: Directory,
        key: rsa.RSAPublicKey,
        authority_origin: str,
        default_tenant: str,
        environments: int = 7,
    ) -> None:
        self.directory = directory
        self.key = key
        self.authority_origin = authority_origin
        self.default_tenant = default_tenant
        self.environments = [
            {
                "id": f"{BAP_PREFIX}/environments/env-{i:04d}",
                "name": f"env-{i:04d}",
                "type": "Microsoft.BusinessAppPlatform/environments",
                "location": "unitedstates",
                "properties": {"displayName": f"Environment {i}", "environmentSku": "Sandbox"},
            }
            for i in range(environments)
        ]
        self.admin_applications: dict[str, dict[str, Any]] = {}
        from requests_ppauth.testing._arm import Arm
        from requests_ppauth.testing._keyvault import KeyVault
        from requests_ppauth.testing._management import Management
        from requests_ppauth.testing.dataverse import Dataverse

        self.arm = Arm(self)
        self.management = Management(self)
        self.dataverse = Dataverse(self)
        self.keyvault = KeyVault(self)
        #: the api listener's services, asked in turn before the routes below
        self.api_services: tuple[Service, ...] = (self.arm, self.management, self.dataverse)
        self.services: tuple[Service, ...] = (*self.api_services, self.keyvault)

    # -- token validation ----------------------------------------------------
    def validate(self, req: Request, audiences: Iterable[str]) -> dict[str, Any]:
        """The claims of ``req``'s bearer token, or :class:`TokenRejectedError`."""
        token = req.bearer()
        if token is None:
            raise TokenRejectedError("The access token is missing.")
        try:
            claims = _jwt.verify(token, self.key)
        except _jwt.JWTError as exc:
            raise TokenRejectedError(f"The access token is invalid: {exc}.") from None
        # a resource takes its identifier URI or, as v2.0 tokens carry it, its app id
        allowed: set[str] = set()
        for audience in audiences:
            allowed.add(audience.rstrip("/").lower())
            known = self.directory.resource(audience)
            if known is not None:
                allowed.add(known.app_id.lower())
        if str(claims.get("aud", "")).rstrip("/").lower() not in allowed:
            raise TokenRejectedError("The access token has an invalid audience.")
        now = time.time()
        if float(claims.get("exp", 0)) <= now:
            raise TokenRejectedError("The access token has expired.")
        if float(claims.get("nbf", 0)) > now + 1:
            raise TokenRejectedError("The access token is not yet valid.")
        uti = claims.get("uti")
        with self.directory.lock:
            revoked = uti in self.directory.revoked_uti
            challenge = self.directory.challenges.get(str(claims.get("oid")))
            challenged = challenge is not None and (
                uti in challenge.stale_uti or uti in challenge.unanswered_uti
            )
        if revoked:
            raise TokenRejectedError("The access token has been revoked.")
        if challenged:
            assert challenge is not None
            raise ClaimsChallengeError(
                "Continuous access evaluation resulted in challenge with result: "
                "InteractionRequired and code: TokenIssuedBeforeRevocationTimestamp",
                challenge.claims,
            )
        req.notes["client_id"] = claims.get("appid") or claims.get("azp")
        return claims

    def _challenge(self, exc: TokenRejectedError) -> Response:
        authorize = f"{self.authority_origin}/common/oauth2/authorize"
        if isinstance(exc, ClaimsChallengeError):
            # the claims challenge header Microsoft documents for CAE-enabled resources
            claims = base64.b64encode(exc.claims.encode()).decode("ascii")
            header = (
                f'Bearer realm="", authorization_uri="{authorize}", '
                f'error="insufficient_claims", claims="{claims}"'
            )
            return Response.json(
                401,
                {"error": {"code": "InvalidAuthenticationToken", "message": str(exc)}},
                [("WWW-Authenticate", header)],
            )
        header = (
            f'Bearer authorization_uri="{authorize}", '
            f'error="invalid_token", error_description="{exc}"'
        )
        return Response.json(
            401,
            {"error": {"code": "InvalidAuthenticationToken", "message": str(exc)}},
            [("WWW-Authenticate", header)],
        )

    # -- Power Platform ------------------------------------------------------
    def power_platform(self, req: Request) -> Response:
        """Its services in turn (the environment lists, BAP's and the Power Platform
        API's, are :mod:`._management`'s), then BAP adminApplications and a redirect."""
        for service in self.api_services:
            answer = service.route(req)
            if answer is not None:
                return answer
        path = req.path.rstrip("/")
        if path == "/redirect":
            req.endpoint = "redirect"
            target = req.query.get("to") or f"{req.notes['foreign_origin']}/landing"
            return Response(302, b"", [("Location", target), ("Content-Length", "0")])
        prefix = f"{BAP_PREFIX}/adminApplications"
        if path == prefix or path.startswith(prefix + "/"):
            req.endpoint = "adminApplications"
            try:
                claims = self.validate(req, (POWER_APPS_SERVICE,))
            except TokenRejectedError as exc:
                return self._challenge(exc)
            return self._admin_applications(req, claims, path[len(prefix) + 1 :])
        req.endpoint = "api-unknown"
        return Response.json(404, {"error": {"code": "NotFound", "message": "No such route."}})

    def _environments(self, req: Request, prefix: str) -> Response:
        """A page of a BAP environment list (``prefix``), once :mod:`._management` has
        checked the token and the api-version: ``$top`` (3 unless given) and
        ``$skiptoken``; a page that stops before the end carries ``nextLink`` with the
        request's own query (its api-version too) and the next ``$skiptoken``."""
        try:
            top = max(1, int(req.query.get("$top", "3")))
            skip = max(0, int(req.query.get("$skiptoken", "0")))
        except ValueError:
            return Response.json(400, {"error": {"code": "BadRequest", "message": "bad paging"}})
        page = self.environments[skip : skip + top]
        body: dict[str, Any] = {"value": page}
        if skip + top < len(self.environments):
            query = {k: v for k, v in req.query.items() if k != "$skiptoken"}
            query.update({"$top": str(top), "$skiptoken": str(skip + top)})
            link = f"{req.origin}{prefix}?{urlencode(query)}"
            body["nextLink"] = link
        return Response.json(200, body)

    def _admin_applications(self, req: Request, claims: dict[str, Any], client_id: str) -> Response:
        """Register a service principal with Power Platform (needs an admin user)."""
        if claims.get("idtyp") != "user" or not claims.get("wids"):
            return Response.json(
                403,
                {
                    "error": {
                        "code": "Forbidden",
                        "message": "The caller must be a tenant administrator (a user token).",
                    }
                },
            )
        if req.method == "GET" and not client_id:
            with self.directory.lock:
                return Response.json(200, {"value": list(self.admin_applications.values())})
        if not client_id:
            return Response.json(400, {"error": {"code": "BadRequest", "message": "client id"}})
        with self.directory.lock:
            if req.method == "PUT":
                entry = {"applicationId": client_id, "tenantId": claims.get("tid")}
                self.admin_applications[client_id.lower()] = entry
                return Response.json(200, entry)
            if req.method == "DELETE":
                self.admin_applications.pop(client_id.lower(), None)
                return Response(204)
            entry_or_none = self.admin_applications.get(client_id.lower())
        if entry_or_none is None:
            return Response.json(404, {"error": {"code": "NotFound", "message": client_id}})
        return Response.json(200, entry_or_none)

    # -- Key Vault -----------------------------------------------------------
    def vault(self, req: Request) -> Response:
        """The Key Vault listener: :mod:`requests_ppauth.testing._keyvault`."""
        resp = self.keyvault.route(req)
        assert resp is not None  # the vault answers every path on its listener
        return resp

    # -- foreign -------------------------------------------------------------
    def foreign(self, req: Request) -> Response:
        """Another host: answers anything and records whether a token arrived."""
        req.endpoint = "foreign"
        return Response.json(
            200, {"host": "foreign", "authorization_received": "authorization" in req.headers}
        )
