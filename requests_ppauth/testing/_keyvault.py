"""Key Vault's secrets API (``/secrets/...``, behind its bearer challenge), as
azure-keyvault-secrets' ``SecretClient`` and the Key Vault plugin call it."""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote

from requests_ppauth.testing._resources import VAULT_RESOURCE, TokenRejectedError
from requests_ppauth.testing._service import Service
from requests_ppauth.testing._state import VaultSecret
from requests_ppauth.testing._wire import Request, Response


class KeyVault(Service):
    """See the module docstring."""

    listeners = ("vault",)

    def route(self, req: Request) -> Response:
        """``GET /secrets/{name}[/{version}]`` behind Key Vault's bearer challenge."""
        parts = [unquote(p) for p in req.path.split("/") if p]
        req.endpoint = "vault"
        try:
            claims = self.resources.validate(req, (VAULT_RESOURCE,))
        except TokenRejectedError as exc:
            where = f"{self.resources.authority_origin}/{self.resources.default_tenant}"
            challenge = f'Bearer authorization="{where}", resource="{VAULT_RESOURCE}"'
            message = (
                "AKV10000: Request is missing a Bearer or PoP token."
                if req.bearer() is None
                else f"AKV10022: {exc}"
            )
            return Response.json(
                401,
                {"error": {"code": "Unauthorized", "message": message}},
                [("WWW-Authenticate", challenge)],
            )
        if req.method != "GET" or len(parts) not in (2, 3) or parts[0] != "secrets":
            return Response.json(
                400, {"error": {"code": "BadParameter", "message": "Unsupported operation."}}
            )
        principal = {str(claims.get("appid")).lower(), str(claims.get("oid")).lower()}
        with self.resources.directory.lock:
            denied = bool(principal & self.resources.directory.vault_denied)
            versions = list(self.resources.directory.vault.get(parts[1], []))
        if denied:
            return Response.json(
                403,
                {
                    "error": {
                        "code": "Forbidden",
                        "message": f"The user, group or application 'appid={claims.get('appid')};"
                        f"oid={claims.get('oid')}' does not have secrets get permission "
                        "on key vault. For help resolving this issue, please see "
                        "https://go.microsoft.com/fwlink/?linkid=2125287",
                        "innererror": {"code": "AccessDenied"},
                    }
                },
            )
        found: VaultSecret | None = None
        if len(parts) == 3 and parts[2]:
            found = next((v for v in versions if v.version == parts[2]), None)
        else:
            found = next((v for v in reversed(versions) if v.enabled), None)
        if found is None:
            return Response.json(
                404,
                {
                    "error": {
                        "code": "SecretNotFound",
                        "message": f"A secret with (name/id) {'/'.join(parts[1:])} was not "
                        "found in this key vault. If you recently deleted this secret you may be "
                        "able to recover it using the correct recovery command.",
                    }
                },
            )
        body: dict[str, Any] = {
            "value": found.value,
            "id": f"{req.origin}/secrets/{found.name}/{found.version}",
            "attributes": {
                "enabled": found.enabled,
                "created": found.created,
                "updated": found.created,
                "recoveryLevel": "Recoverable+Purgeable",
                "recoverableDays": 90,
            },
            "tags": {},
        }
        if found.content_type:
            body["contentType"] = found.content_type
        return Response.json(200, body)
