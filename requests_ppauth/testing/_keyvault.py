"""Key Vault's secrets API, as azure-keyvault-secrets' ``SecretClient`` and the Key Vault
plugin call it: get, list, list versions, set, update, delete with soft delete (get, list,
purge and recover deleted secrets), behind Key Vault's bearer challenge.

What the real service does, and where that comes from:

- Paths, bodies and paging (``value`` + ``nextLink`` carrying an opaque ``$skiptoken``
  and ``maxresults``, at most 25 a page): the Key Vault REST reference (learn.microsoft.com
  /rest/api/keyvault/secrets: Get Secrets, Get Secret Versions, Set Secret, Update Secret,
  Delete Secret, Get/Get Deleted Secrets, Purge, Recover) and the request builders of
  azure-keyvault-secrets 4.12 (``_generated/_operations/_operations.py``). A secret list
  item's ``id`` has no version; a version list item's has one; a deleted secret carries
  ``recoveryId``, ``deletedDate`` and ``scheduledPurgeDate`` and no value.
- Soft delete: every vault has it now (90 days, ``Recoverable+Purgeable`` unless purge
  protection is on). ``begin_delete_secret`` polls ``GET /deletedsecrets/{name}`` until
  it answers 2xx (``_shared/_polling.py``, ``DeleteRecoverPollingMethod``); the recover
  poller polls ``GET /secrets/{name}``. Setting a secret whose name is deleted but
  recoverable is 409 ``Conflict`` / ``ObjectIsDeletedButRecoverable``.
- Attributes: a disabled current (or named) version answers 403 ``Forbidden``,
  "Operation get is not allowed on a disabled secret.", inner error ``SecretDisabled``
  (seen in Azure/azure-sdk-for-js#24756, Azure/azure-powershell#15378,
  ansible-collections/azure#1989). There is no fall back to an older enabled version:
  the current version is the newest one. ``exp`` and ``nbf`` do not block ``get``:
  "A secret's get operation will work for not-yet-valid and expired secrets, outside the
  nbf / exp window" (learn.microsoft.com/azure/key-vault/secrets/about-secrets,
  Date-time controlled operations; observed in Azure/AzureKeyVault#19).
- ``api-version`` is required; an unknown one is 400 ``BadParameter``, "The specified
  version (x) is not recognized. Consider using the latest supported version (y)." (the
  service's wording, quoted in inspec-azure's api-version fallback code). The wording for
  a *missing* version and for a bad ``maxresults`` is the emulator's own (same code).
- Versions list in the order of their ids, not of creation (nagyesta/lowkey-vault#467,
  from observing the service); the versions of a name that does not exist are an empty
  list, not a 404 (Azure/azure-powershell#14823).
- Secret names are ``^[0-9a-zA-Z-]{1,127}$`` and case-insensitive; a bad one is 400
  ``BadParameter`` "The request URI contains an invalid name: x" (wording from memory of
  the service, not from a source at hand).
- Order of checks: the 401 challenge first (so a bare probe learns where to sign in),
  then ``api-version``, then access, then the operation.
- A principal without access (``emu.deny_vault``) gets 403 ``Forbidden`` naming the
  permission ("does not have secrets get permission on key vault"), inner error
  ``AccessDenied``.

Clients reach it with ``verify_challenge_resource=False``: the challenge names
``https://vault.azure.net`` and the SDK checks that the vault's host ends with that
domain, which ``127.0.0.1`` does not.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlencode

from requests_ppauth.testing._resources import (
    VAULT_RESOURCE,
    ClaimsChallengeError,
    TokenRejectedError,
)
from requests_ppauth.testing._service import Service
from requests_ppauth.testing._state import VaultSecret
from requests_ppauth.testing._wire import Request, Response

if TYPE_CHECKING:
    from requests_ppauth.testing._resources import Resources

#: api-versions the secrets API answers (the SDK's ``ApiVersion`` list and the service's)
API_VERSIONS = frozenset(
    {
        "2016-10-01",
        "7.0",
        "7.1",
        "7.2",
        "7.3",
        "7.4",
        "7.5",
        "7.6",
        "2025-07-01",
        "2026-04-01",
    }
)
LATEST_API_VERSION = "2026-04-01"
RECOVERY_LEVEL = "Recoverable+Purgeable"
RECOVERABLE_DAYS = 90
MAX_RESULTS = 25
_NAME = re.compile(r"^[0-9a-zA-Z-]{1,127}$")


@dataclass
class _Meta:
    """What Key Vault keeps on a version beyond :class:`VaultSecret`."""

    tags: dict[str, str] = field(default_factory=dict)
    exp: int | None = None
    nbf: int | None = None
    updated: int | None = None


@dataclass
class DeletedSecret:
    """A secret in the vault's deleted (recoverable) state: every version, kept."""

    name: str
    versions: list[VaultSecret] = field(repr=False)
    deleted_date: int
    scheduled_purge_date: int


def _error(status: int, code: str, message: str, inner: str | None = None) -> Response:
    error: dict[str, Any] = {"code": code, "message": message}
    if inner is not None:
        error["innererror"] = {"code": inner}
    return Response.json(status, {"error": error})


def _bad(message: str) -> Response:
    return _error(400, "BadParameter", message)


def _not_found(what: str) -> Response:
    return _error(
        404,
        "SecretNotFound",
        f"A secret with (name/id) {what} was not found in this key vault. If you recently "
        "deleted this secret you may be able to recover it using the correct recovery command. "
        "For help resolving this issue, please see https://go.microsoft.com/fwlink/?linkid=2125182",
    )


class KeyVault(Service):
    """See the module docstring. Live secrets stay in ``directory.vault`` (so
    ``emu.set_secret`` keeps working); tags, ``exp``/``nbf`` and deleted secrets live
    here."""

    listeners = ("vault",)

    def __init__(self, resources: Resources) -> None:
        super().__init__(resources)
        self._meta: dict[tuple[str, str], _Meta] = {}
        self.deleted: dict[str, DeletedSecret] = {}

    # -- Python API (tests) ---------------------------------------------------------
    def set_attributes(
        self,
        name: str,
        version: str,
        *,
        exp: int | None = None,
        nbf: int | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> None:
        """Give a version ``exp``/``nbf`` (epoch seconds) or tags, as the portal would."""
        with self.resources.directory.lock:
            found = self._find(name, version)
            if found is None:
                raise KeyError(f"no secret {name!r} version {version!r}")
            meta = self._meta_of(found)
            if exp is not None:
                meta.exp = int(exp)
            if nbf is not None:
                meta.nbf = int(nbf)
            if tags is not None:
                meta.tags = dict(tags)
            meta.updated = int(time.time())

    def tags(self, name: str, version: str) -> dict[str, str]:
        """The tags of one version (what a ``set_secret(tags=...)`` stored)."""
        with self.resources.directory.lock:
            found = self._find(name, version)
            if found is None:
                raise KeyError(f"no secret {name!r} version {version!r}")
            return dict(self._meta_of(found).tags)

    def admin_verbs(self) -> Mapping[str, Callable[..., Any]]:
        """``vault_deleted``: the names in the deleted state; ``vault_set_attributes``."""
        return {"vault_deleted": self.deleted_names, "vault_set_attributes": self.set_attributes}

    def deleted_names(self) -> list[str]:
        """The secrets in the deleted (recoverable) state, by name."""
        with self.resources.directory.lock:
            return sorted(d.name for d in self.deleted.values())

    # -- state helpers (call with the directory lock held) -----------------------------
    def _key(self, name: str) -> str | None:
        """The stored spelling of live secret ``name`` (names are case-insensitive)."""
        vault = self.resources.directory.vault
        if name in vault:
            return name
        lowered = name.lower()
        return next((k for k in vault if k.lower() == lowered), None)

    def _find(self, name: str, version: str) -> VaultSecret | None:
        key = self._key(name)
        versions = self.resources.directory.vault.get(key, []) if key else []
        return next((v for v in versions if v.version.lower() == version.lower()), None)

    def _meta_of(self, secret: VaultSecret) -> _Meta:
        return self._meta.setdefault((secret.name, secret.version), _Meta())

    def _attributes(self, secret: VaultSecret) -> dict[str, Any]:
        meta = self._meta_of(secret)
        attributes: dict[str, Any] = {"enabled": secret.enabled}
        if meta.nbf is not None:
            attributes["nbf"] = meta.nbf
        if meta.exp is not None:
            attributes["exp"] = meta.exp
        attributes.update(
            created=secret.created,
            updated=meta.updated or secret.created,
            recoveryLevel=RECOVERY_LEVEL,
            recoverableDays=RECOVERABLE_DAYS,
        )
        return attributes

    def _item(self, origin: str, secret: VaultSecret, *, versioned: bool) -> dict[str, Any]:
        """A list item: ``id`` without the version for the secret list, with it for versions."""
        ident = f"{origin}/secrets/{secret.name}"
        body: dict[str, Any] = {
            "id": f"{ident}/{secret.version}" if versioned else ident,
            "attributes": self._attributes(secret),
        }
        meta = self._meta_of(secret)
        if meta.tags:
            body["tags"] = dict(meta.tags)
        if secret.content_type:
            body["contentType"] = secret.content_type
        return body

    def _bundle(self, origin: str, secret: VaultSecret, *, value: bool = True) -> dict[str, Any]:
        body: dict[str, Any] = {}
        if value:
            body["value"] = secret.value
        body.update(self._item(origin, secret, versioned=True))
        return body

    def _deleted_bundle(self, origin: str, deleted: DeletedSecret) -> dict[str, Any]:
        body = self._bundle(origin, deleted.versions[-1], value=False)
        body.update(
            recoveryId=f"{origin}/deletedsecrets/{deleted.name}",
            deletedDate=deleted.deleted_date,
            scheduledPurgeDate=deleted.scheduled_purge_date,
        )
        return body

    # -- routing ---------------------------------------------------------------------
    def route(self, req: Request) -> Response:
        """Every request on the vault listener: challenge, api-version, access, operation.

        The challenge comes first so that a bare probe (no token, no api-version) gets
        the 401 that tells a client where to authenticate."""
        req.endpoint = "vault"
        parts = [unquote(p) for p in req.path.split("/") if p]
        try:
            claims = self.resources.validate(req, (VAULT_RESOURCE,))
        except ClaimsChallengeError as exc:  # continuous access evaluation: the claims
            return self.resources._challenge(exc)
        except TokenRejectedError as exc:
            return self._unauthorized(req, exc)
        version = req.query.get("api-version")
        if version is None:
            return _bad("api-version must be specified")
        if version not in API_VERSIONS:
            return _bad(
                f"The specified version ({version}) is not recognized. Consider using the "
                f"latest supported version ({LATEST_API_VERSION})."
            )
        operation = self._operation(req.method, parts)
        if operation is None:
            return _bad("Method or path not supported by the secrets API.")
        permission, handler = operation
        principal = {str(claims.get("appid")).lower(), str(claims.get("oid")).lower()}
        with self.resources.directory.lock:
            denied = bool(principal & self.resources.directory.vault_denied)
        if denied:
            return _error(
                403,
                "Forbidden",
                f"The user, group or application 'appid={claims.get('appid')};"
                f"oid={claims.get('oid')}' does not have secrets {permission} permission "
                "on key vault. For help resolving this issue, please see "
                "https://go.microsoft.com/fwlink/?linkid=2125287",
                "AccessDenied",
            )
        if len(parts) >= 2 and not _NAME.match(parts[1]):
            return _bad(f"The request URI contains an invalid name: {parts[1]}")
        with self.resources.directory.lock:
            return handler(req, parts)

    def _unauthorized(self, req: Request, exc: TokenRejectedError) -> Response:
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

    def _operation(
        self, method: str, parts: list[str]
    ) -> tuple[str, Callable[[Request, list[str]], Response]] | None:
        """(the permission it needs, its handler), or None for what the API lacks."""
        count = len(parts)
        if not parts or parts[0] not in ("secrets", "deletedsecrets"):
            return None
        if parts[0] == "secrets":
            if method == "GET" and count == 1:
                return "list", self._list
            if method == "GET" and count == 3 and parts[2] == "versions":
                return "list", self._list_versions
            if method == "GET" and count in (2, 3):
                return "get", self._get
            if method == "PUT" and count == 2:
                return "set", self._set
            if method == "PATCH" and count in (2, 3):
                return "set", self._update
            if method == "DELETE" and count == 2:
                return "delete", self._delete
            return None
        if method == "GET" and count == 1:
            return "list", self._list_deleted
        if method == "GET" and count == 2:
            return "get", self._get_deleted
        if method == "DELETE" and count == 2:
            return "purge", self._purge
        if method == "POST" and count == 3 and parts[2] == "recover":
            return "recover", self._recover
        return None

    # -- paging ----------------------------------------------------------------------
    def _page(self, req: Request, path: str, items: list[dict[str, Any]]) -> Response:
        """One page of ``items`` and a ``nextLink`` as Key Vault writes it."""
        raw = req.query.get("maxresults")
        try:
            size = MAX_RESULTS if raw is None else int(raw)
        except ValueError:
            return _bad(f"Invalid maxresults value: {raw}")
        if not 1 <= size <= MAX_RESULTS:
            return _bad(f"Invalid maxresults value: {raw}. It must be between 1 and {MAX_RESULTS}.")
        start = 0
        token = req.query.get("$skiptoken")
        if token is not None:
            try:
                decoded = json.loads(base64.b64decode(token.encode("ascii"), validate=True))
                start = int(decoded["NextMarker"])
            except (ValueError, KeyError, TypeError, binascii.Error):
                return _bad("The $skiptoken value is invalid.")
        body: dict[str, Any] = {"value": items[start : start + size], "nextLink": None}
        if start + size < len(items):
            marker = base64.b64encode(json.dumps({"NextMarker": str(start + size)}).encode())
            query = {
                "api-version": req.query["api-version"],
                "$skiptoken": marker.decode("ascii"),
                "maxresults": str(size),
            }
            body["nextLink"] = f"{req.origin}{path}?{urlencode(query)}"
        return Response.json(200, body)

    # -- secrets ---------------------------------------------------------------------
    def _list(self, req: Request, parts: list[str]) -> Response:
        vault = self.resources.directory.vault
        items = [
            self._item(req.origin, versions[-1], versioned=False)
            for _, versions in sorted(vault.items(), key=lambda kv: kv[0].lower())
            if versions
        ]
        return self._page(req, "/secrets", items)

    def _list_versions(self, req: Request, parts: list[str]) -> Response:
        key = self._key(parts[1])
        versions = self.resources.directory.vault.get(key, []) if key else []
        ordered = sorted(versions, key=lambda v: v.version.lower())
        items = [self._item(req.origin, v, versioned=True) for v in ordered]
        path = f"/secrets/{key or parts[1]}/versions"
        return self._page(req, path, items)

    def _get(self, req: Request, parts: list[str]) -> Response:
        key = self._key(parts[1])
        versions = self.resources.directory.vault.get(key, []) if key else []
        wanted = parts[2] if len(parts) == 3 else ""
        found: VaultSecret | None
        if wanted:
            found = next((v for v in versions if v.version.lower() == wanted.lower()), None)
        else:
            found = versions[-1] if versions else None
        if found is None:
            return _not_found("/".join(p for p in parts[1:] if p))
        if not found.enabled:
            return _error(
                403,
                "Forbidden",
                "Operation get is not allowed on a disabled secret.",
                "SecretDisabled",
            )
        return Response.json(200, self._bundle(req.origin, found))

    def _json_body(self, req: Request) -> dict[str, Any] | Response:
        try:
            body = json.loads(req.body or b"{}")
        except ValueError:
            return _bad("The request body is not valid JSON.")
        if not isinstance(body, dict):
            return _bad("The request body must be a JSON object.")
        return body

    def _apply(self, secret: VaultSecret, body: dict[str, Any]) -> Response | None:
        """Apply ``contentType``, ``tags`` and ``attributes`` from a PUT or PATCH body."""
        meta = self._meta_of(secret)
        attributes = body.get("attributes") or {}
        if not isinstance(attributes, dict):
            return _bad("attributes must be an object.")
        tags = body.get("tags")
        if tags is not None and not isinstance(tags, dict):
            return _bad("tags must be an object.")
        if "contentType" in body:
            secret.content_type = body["contentType"]
        if tags is not None:
            meta.tags = {str(k): str(v) for k, v in tags.items()}
        if "enabled" in attributes and attributes["enabled"] is not None:
            secret.enabled = bool(attributes["enabled"])
        for name in ("exp", "nbf"):
            if name in attributes:
                value = attributes[name]
                setattr(meta, name, None if value is None else int(value))
        meta.updated = int(time.time())
        return None

    def _set(self, req: Request, parts: list[str]) -> Response:
        body = self._json_body(req)
        if isinstance(body, Response):
            return body
        value = body.get("value")
        if not isinstance(value, str):
            return _bad("The secret value is required (a string).")
        name = parts[1]
        deleted = self.deleted.get(name.lower())
        if deleted is not None:
            return _error(
                409,
                "Conflict",
                f"Secret {deleted.name} is currently in a deleted but recoverable state, and "
                "its name cannot be reused; in this state, the secret can only be recovered "
                "or purged.",
                "ObjectIsDeletedButRecoverable",
            )
        key = self._key(name) or name
        secret = VaultSecret(key, uuid.uuid4().hex, value)
        self.resources.directory.vault.setdefault(key, []).append(secret)
        problem = self._apply(secret, body)
        if problem is not None:
            self.resources.directory.vault[key].remove(secret)
            return problem
        return Response.json(200, self._bundle(req.origin, secret))

    def _update(self, req: Request, parts: list[str]) -> Response:
        body = self._json_body(req)
        if isinstance(body, Response):
            return body
        key = self._key(parts[1])
        versions = self.resources.directory.vault.get(key, []) if key else []
        wanted = parts[2] if len(parts) == 3 else ""
        found = (
            next((v for v in versions if v.version.lower() == wanted.lower()), None)
            if wanted
            else (versions[-1] if versions else None)
        )
        if found is None:
            return _not_found("/".join(p for p in parts[1:] if p))
        problem = self._apply(found, body)
        if problem is not None:
            return problem
        return Response.json(200, self._bundle(req.origin, found, value=False))

    def _delete(self, req: Request, parts: list[str]) -> Response:
        key = self._key(parts[1])
        if key is None or not self.resources.directory.vault.get(key):
            return _not_found(parts[1])
        versions = self.resources.directory.vault.pop(key)
        now = int(time.time())
        deleted = DeletedSecret(key, versions, now, now + RECOVERABLE_DAYS * 86400)
        self.deleted[key.lower()] = deleted
        return Response.json(200, self._deleted_bundle(req.origin, deleted))

    # -- deleted secrets -----------------------------------------------------------
    def _list_deleted(self, req: Request, parts: list[str]) -> Response:
        items = []
        for deleted in sorted(self.deleted.values(), key=lambda d: d.name.lower()):
            item = self._item(req.origin, deleted.versions[-1], versioned=False)
            item.update(
                recoveryId=f"{req.origin}/deletedsecrets/{deleted.name}",
                deletedDate=deleted.deleted_date,
                scheduledPurgeDate=deleted.scheduled_purge_date,
            )
            items.append(item)
        return self._page(req, "/deletedsecrets", items)

    def _get_deleted(self, req: Request, parts: list[str]) -> Response:
        deleted = self.deleted.get(parts[1].lower())
        if deleted is None:
            return _error(404, "SecretNotFound", "Deleted Secret not found")
        return Response.json(200, self._deleted_bundle(req.origin, deleted))

    def _purge(self, req: Request, parts: list[str]) -> Response:
        deleted = self.deleted.pop(parts[1].lower(), None)
        if deleted is None:
            return _error(404, "SecretNotFound", "Deleted Secret not found")
        for secret in deleted.versions:
            self._meta.pop((secret.name, secret.version), None)
        return Response(204, b"", [("Content-Length", "0")])

    def _recover(self, req: Request, parts: list[str]) -> Response:
        deleted = self.deleted.pop(parts[1].lower(), None)
        if deleted is None:
            return _error(404, "SecretNotFound", "Deleted Secret not found")
        self.resources.directory.vault[deleted.name] = deleted.versions
        return Response.json(200, self._bundle(req.origin, deleted.versions[-1], value=False))
