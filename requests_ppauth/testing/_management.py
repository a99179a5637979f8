"""The Power Platform API's environment management (``/environmentmanagement/...``)
and BAP's single-environment reads, as Microsoft's Power Platform Management SDK
(``pip install powerplatform-management``, package ``mspp_management``, Kiota) and
plain ``requests`` code call them.

Why these route groups: every script against a tenant starts by finding an
environment, so the SDK's ``environmentmanagement.environments`` (list, get one) is
what a test suite reaches first; the next thing admin automation touches is
``environmentmanagement.environmentGroups`` (list, create, get, replace, delete,
``addEnvironment`` / ``removeEnvironment``), the one group under the same namespace
that is plain CRUD on state the emulator can own, and that shows up in the
environments' own ``environmentGroupId`` (and in ``$filter=environmentGroupId eq``).
The SDK's other groups (``appmanagement``, ``licensing``, ``governance``, ...) need
models of products the emulator has no state for, and answer 404 here.

Wire shapes, and where they come from:

- Paths and query parameters: the SDK's request builders
  (``mspp_management/environmentmanagement/**/_request_builder.py``: ``{+baseurl}/
  environmentmanagement/environments?api-version=...{&$filter,$orderby,$select,$skip,
  $top,ids}``, ``.../environments/{id}?api-version=...{&$select}``,
  ``.../environmentGroups[/{groupId}[/addEnvironment|removeEnvironment/{id}]]``) and
  learn.microsoft.com "Environments - List Environments For User" / "Get Environment
  By Id For User" (api-version ``2022-03-01-preview`` and ``2024-10-01``) and
  "Environment Groups - Create Environment Group" (200 with the group).
- Items: the SDK's ``EnvironmentResponse`` (``id``, ``tenantId``, ``type``,
  ``displayName``, ``geo``, ``azureRegion``, ``state``, ``createdDateTime``,
  ``environmentGroupId``, ``url`` / ``domainName`` / ``dataverseId`` / ``version`` of
  the linked Dataverse, ...) and ``EnvironmentGroup`` (``id`` a UUID, ``displayName``,
  ``description``, ``createdTime``, ``createdBy``, ...). They are derived on every
  request from ``Resources.environments`` (BAP-shaped dicts: the one source of
  truth, so BAP and the Power Platform API never disagree).
- Paging: ``$top`` / ``$skip`` as documented; a page that stops before the end carries
  ``@odata.nextLink`` (OData JSON format) with the next ``$skip``. With no ``$top`` the
  server pages by :attr:`Management.page_size`. Note that the SDK's ``EnvironmentList``
  model spells the key ``@odata.nextlink`` (lower-case l), so with the SDK the link
  is read from ``additional_data["@odata.nextLink"]``; the other SDK lists
  (``EnvironmentGroupResponseWithOdataContinuation``) spell it ``@odata.nextLink``.
- ``api-version``: required. The Power Platform API is an ASP.NET service (the SDK's
  error models are ASP.NET ``ProblemDetails``), so a missing or unsupported version
  is answered as ASP.NET API Versioning does: 400 ``{"error": {"code":
  "ApiVersionUnspecified" | "UnsupportedApiVersion", "message": ..., "innerError":
  null}}``. BAP is an ARM-style resource provider and answers as ARM's front door
  does: ``MissingApiVersionParameter`` ("The api-version query parameter
  (?api-version=) is required for all requests.") and ``InvalidApiVersionParameter``.
  These bodies follow those frameworks' documented wording; they were not captured
  from the live services.
- A missing environment: 404 ``{"error": {"code": "EnvironmentNotFound", ...}}``, the
  body Microsoft's terraform-provider-power-platform uses in its BAP fixtures.
- Tokens: audience ``https://api.powerplatform.com`` for ``/environmentmanagement``,
  ``https://service.powerapps.com/`` for BAP; the token is checked before the
  api-version (the gateway authenticates first), so no token → 401 either way.

BAP's environment lists keep their ``$top``/``$skiptoken`` paging with ``nextLink``
(:meth:`Resources._environments`). Like the single-environment GET they require the
api-version, as the real BAP does: a client that forgets it fails here as it would
against the tenant, not only in production. Every environment route counts as
``environments`` (``emu.count("environments")``,
``emu.inject("environments", ...)``); the group routes as ``environmentGroups``.
BAP items keep their shape; ``id`` now ends with ``name``
(``/providers/Microsoft.BusinessAppPlatform/environments/env-0000``), as in the
documented BAP list response.

Sources:

- powerplatform-management 2.0.3578.333 (site-packages ``mspp_management``): request
  builders and the models ``EnvironmentList``, ``EnvironmentResponse``,
  ``EnvironmentGroup``, ``EnvironmentGroupResponseWithOdataContinuation``,
  ``ProblemDetails``.
- https://learn.microsoft.com/rest/api/power-platform/environmentmanagement/environments/list-environments-for-user
- https://learn.microsoft.com/rest/api/power-platform/environmentmanagement/environments/get-environment-by-id-for-user
- https://learn.microsoft.com/rest/api/power-platform/environmentmanagement/environment-groups/create-environment-group
- https://learn.microsoft.com/power-platform/admin/list-environments (BAP list: ``id`` is
  ``.../environments/<name>``, ``name`` its last segment)
- microsoft/terraform-provider-power-platform unit-test fixtures (BAP 404
  ``EnvironmentNotFound``); dotnet/aspnet-api-versioning (``ApiVersionUnspecified``,
  ``UnsupportedApiVersion``); ARM's ``MissingApiVersionParameter`` as quoted in
  Azure/azure-rest-api-specs#3978.
"""

from __future__ import annotations

import datetime
import json
import re
import uuid
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode

from requests_ppauth.testing._resources import (
    BAP_PREFIX,
    POWER_APPS_SERVICE,
    POWER_PLATFORM_API,
    TokenRejectedError,
)
from requests_ppauth.testing._service import Service
from requests_ppauth.testing._wire import Request, Response

if TYPE_CHECKING:
    from requests_ppauth.testing._resources import Resources

#: api-versions the Power Platform API's environment management accepts (learn.microsoft.com)
PP_API_VERSIONS = ("2022-03-01-preview", "2024-10-01")
#: BAP api-versions seen in Microsoft's docs and tools (admin center, terraform provider)
BAP_API_VERSIONS = (
    "2016-11-01",
    "2018-01-01",
    "2019-05-01",
    "2019-10-01",
    "2020-05-01",
    "2020-06-01",
    "2020-08-01",
    "2020-09-01",
    "2020-10-01",
    "2021-03-01",
    "2021-04-01",
    "2023-06-01",
)
PP_ENVIRONMENTS = "/environmentmanagement/environments"
PP_GROUPS = "/environmentmanagement/environmentGroups"
BAP_ADMIN_ENVIRONMENTS = f"{BAP_PREFIX}/scopes/admin/environments"
BAP_ENVIRONMENTS = f"{BAP_PREFIX}/environments"
#: ``$filter`` properties the service documents for the environment list
FILTERABLE = ("dataverseId", "type", "geo", "state", "environmentGroupId", "domainName")
CREATED = "2024-01-15T08:30:00Z"
_FILTER_TERM = re.compile(r"^\s*(\w+)\s+eq\s+'([^']*)'\s*$")


def _error(status: int, code: str, message: str, inner: bool = False) -> Response:
    body: dict[str, Any] = {"code": code, "message": message}
    if inner:
        body["innerError"] = None
    return Response.json(status, {"error": body})


def _problem(status: int, title: str, detail: str) -> Response:
    """ASP.NET ``ProblemDetails`` (RFC 9457), what the group routes declare for 400."""
    return Response(
        status,
        json.dumps(
            {
                "type": "https://tools.ietf.org/html/rfc9110#section-15.5.1",
                "title": title,
                "status": status,
                "detail": detail,
            }
        ).encode(),
        [("Content-Type", "application/problem+json; charset=utf-8")],
    )


class Management(Service):
    """See the module docstring. State: environment groups and memberships; the
    environments themselves stay in ``resources.environments``."""

    def __init__(self, resources: Resources) -> None:
        super().__init__(resources)
        #: items per Power Platform API page when the caller sends no ``$top``
        self.page_size = 100
        self.groups: dict[str, dict[str, Any]] = {}
        self.group_of: dict[str, str] = {}  # environment name -> group id
        for env in resources.environments:
            self._align(env)

    @staticmethod
    def _align(env: dict[str, Any]) -> None:
        """``name`` is the last segment of ``id``, as on the real BAP."""
        env["id"] = f"{BAP_ENVIRONMENTS}/{env['name']}"

    # -- admin verbs / Python API ------------------------------------------------
    def admin_verbs(self) -> Mapping[str, Callable[..., Any]]:
        return {
            "add_environment": self.add_environment,
            "remove_environment": self.remove_environment,
            "environment_groups": self.environment_groups,
            "set_page_size": self.set_page_size,
        }

    def add_environment(
        self,
        name: str,
        display_name: str | None = None,
        sku: str = "Sandbox",
        location: str = "unitedstates",
        azure_region: str = "westus",
        dataverse_url: str | None = None,
    ) -> dict[str, Any]:
        """Add one environment (BAP-shaped) to the tenant's list; returns it.

        ``dataverse_url`` links a Dataverse organisation (the Power Platform API then
        reports ``url``, ``domainName``, ``dataverseId``, ``version``)."""
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", name):
            raise ValueError(f"not an environment name: {name!r}")
        properties: dict[str, Any] = {
            "displayName": display_name or name,
            "environmentSku": sku,
            "azureRegion": azure_region,
        }
        if dataverse_url:
            host = dataverse_url.split("//", 1)[-1].split("/", 1)[0].split(":", 1)[0]
            label = host.split(".", 1)[0]
            properties["linkedEnvironmentMetadata"] = {
                "instanceUrl": dataverse_url.rstrip("/") + "/",
                # an IP address (the emulator's own Dataverse) has no org label
                "domainName": name.lower() if label.isdigit() else label,
                "resourceId": str(uuid.uuid5(uuid.NAMESPACE_URL, f"org:{name}")),
                "version": "9.2.24101.00000",
            }
        env = {
            "id": "",
            "name": name,
            "type": "Microsoft.BusinessAppPlatform/environments",
            "location": location,
            "properties": properties,
        }
        self._align(env)
        with self.resources.directory.lock:
            if any(str(e["name"]).lower() == name.lower() for e in self.resources.environments):
                raise ValueError(f"environment {name!r} exists")
            self.resources.environments.append(env)
        return env

    def remove_environment(self, name: str) -> bool:
        """Remove an environment (and its group membership); False when there was none."""
        with self.resources.directory.lock:
            envs = self.resources.environments
            keep = [e for e in envs if str(e["name"]).lower() != name.lower()]
            removed = len(keep) != len(envs)
            envs[:] = keep
            self.group_of.pop(name.lower(), None)
        return removed

    def environment_groups(self) -> list[dict[str, Any]]:
        """The environment groups (Power Platform API shape)."""
        with self.resources.directory.lock:
            return [dict(g) for g in self.groups.values()]

    def set_page_size(self, page_size: int) -> int:
        """Set :attr:`page_size` (the admin-API form of assigning it)."""
        if int(page_size) < 1:
            raise ValueError("page_size must be at least 1")
        self.page_size = int(page_size)
        return self.page_size

    # -- routing -------------------------------------------------------------------
    def route(self, req: Request) -> Response | None:
        path = req.path.rstrip("/") or "/"
        if path == PP_ENVIRONMENTS or path.startswith(PP_ENVIRONMENTS + "/"):
            req.endpoint = "environments"
            return self._guard(req, POWER_PLATFORM_API, self._pp_versions) or self._pp_env(
                req, path[len(PP_ENVIRONMENTS) + 1 :]
            )
        if path == PP_GROUPS or path.startswith(PP_GROUPS + "/"):
            req.endpoint = "environmentGroups"
            return self._guard(req, POWER_PLATFORM_API, self._pp_versions) or self._pp_groups(
                req, path[len(PP_GROUPS) + 1 :]
            )
        for prefix in (BAP_ADMIN_ENVIRONMENTS, BAP_ENVIRONMENTS):
            if path == prefix:
                req.endpoint = "environments"
                return self._guard(req, POWER_APPS_SERVICE, self._bap_versions) or (
                    self.resources._environments(req, prefix)
                )
            if path.startswith(prefix + "/") and "/" not in path[len(prefix) + 1 :]:
                req.endpoint = "environments"
                return self._guard(req, POWER_APPS_SERVICE, self._bap_versions) or self._bap_get(
                    req, prefix, path[len(prefix) + 1 :]
                )
        return None

    def _guard(
        self, req: Request, audience: str, versions: Callable[[Request], Response | None]
    ) -> Response | None:
        """401 for a bad token, then 400 for a bad api-version; None when both pass."""
        try:
            req.notes["claims"] = self.resources.validate(req, (audience,))
        except TokenRejectedError as exc:
            return self.resources._challenge(exc)
        return versions(req)

    @staticmethod
    def _pp_versions(req: Request) -> Response | None:
        version = req.query.get("api-version", "")
        if not version:
            return _error(
                400,
                "ApiVersionUnspecified",
                "An API version is required, but was not specified.",
                inner=True,
            )
        if version not in PP_API_VERSIONS:
            url = f"{req.origin}{req.path}"
            return _error(
                400,
                "UnsupportedApiVersion",
                f"The HTTP resource that matches the request URI '{url}' does not support "
                f"the API version '{version}'.",
                inner=True,
            )
        return None

    @staticmethod
    def _bap_versions(req: Request) -> Response | None:
        version = req.query.get("api-version", "")
        if not version:
            return _error(
                400,
                "MissingApiVersionParameter",
                "The api-version query parameter (?api-version=) is required for all requests.",
            )
        if version not in BAP_API_VERSIONS:
            return _error(
                400,
                "InvalidApiVersionParameter",
                f"The api-version '{version}' is invalid. The supported versions are "
                f"'{','.join(BAP_API_VERSIONS)}'.",
            )
        return None

    # -- BAP ---------------------------------------------------------------------
    def _bap_get(self, req: Request, prefix: str, name: str) -> Response:
        if req.method != "GET":
            return _error(405, "MethodNotAllowed", f"The method '{req.method}' is not allowed.")
        with self.resources.directory.lock:
            env = next(
                (e for e in self.resources.environments if str(e["name"]).lower() == name.lower()),
                None,
            )
            answer = json.loads(json.dumps(env)) if env is not None else None
        if answer is None:
            return _error(
                404, "EnvironmentNotFound", f"The environment '{name}' could not be found."
            )
        return Response.json(200, answer)

    # -- Power Platform API: environments ----------------------------------------
    def _pp_shape(self, env: Mapping[str, Any]) -> dict[str, Any]:
        """One BAP-shaped environment as the SDK's ``EnvironmentResponse``."""
        props: Mapping[str, Any] = env.get("properties") or {}
        name = str(env["name"])
        shaped: dict[str, Any] = {
            "id": name,
            "tenantId": self.resources.default_tenant,
            "type": props.get("environmentSku", "Sandbox"),
            "displayName": props.get("displayName", name),
            "geo": env.get("location", "unitedstates"),
            "azureRegion": props.get("azureRegion", "westus"),
            "state": props.get("state", "Ready"),
            "createdDateTime": props.get("createdTime", CREATED),
            "adminMode": "Disabled",
            "backgroundOperationsState": "Enabled",
            "protectionLevel": "Standard",
        }
        linked = props.get("linkedEnvironmentMetadata")
        if isinstance(linked, Mapping):
            shaped.update(
                url=linked.get("instanceUrl"),
                domainName=linked.get("domainName"),
                dataverseId=linked.get("resourceId"),
                version=linked.get("version"),
            )
        group = self.group_of.get(name.lower())
        if group is not None:
            shaped["environmentGroupId"] = group
        return shaped

    def _pp_env(self, req: Request, rest: str) -> Response:
        if req.method != "GET":
            return _error(405, "MethodNotAllowed", f"The method '{req.method}' is not allowed.")
        with self.resources.directory.lock:
            items = [self._pp_shape(e) for e in self.resources.environments]
        select = [s.strip() for s in req.query.get("$select", "").split(",") if s.strip()]
        if rest:
            if "/" in rest:
                return _error(404, "NotFound", f"No route matches '{req.path}'.")
            found = next((i for i in items if i["id"].lower() == rest.lower()), None)
            if found is None:
                return _error(
                    404, "EnvironmentNotFound", f"The environment '{rest}' could not be found."
                )
            return Response.json(200, _select(found, select))
        return self._pp_list(req, items, select)

    def _pp_list(self, req: Request, items: list[dict[str, Any]], select: list[str]) -> Response:
        ids = {i.strip().lower() for i in req.query.get("ids", "").split(",") if i.strip()}
        if ids:
            items = [i for i in items if i["id"].lower() in ids]
        filter_text = req.query.get("$filter", "").strip()
        if filter_text:
            terms = re.split(r"\s+and\s+", filter_text)
            for term in terms:
                match = _FILTER_TERM.match(term)
                if match is None or match.group(1) not in FILTERABLE:
                    return _error(
                        400,
                        "InvalidFilter",
                        f"The $filter '{filter_text}' is not supported: use "
                        f"<property> eq '<value>' joined by 'and', on {', '.join(FILTERABLE)}.",
                    )
                prop, value = match.group(1), match.group(2).lower()
                items = [i for i in items if str(i.get(prop, "")).lower() == value]
        orderby = req.query.get("$orderby", "").strip()
        if orderby:
            prop, _, direction = orderby.partition(" ")
            if direction.strip().lower() not in ("", "asc", "desc"):
                return _error(400, "InvalidOrderBy", f"The $orderby '{orderby}' is invalid.")
            items.sort(
                key=lambda i: str(i.get(prop, "")).lower(),
                reverse=direction.strip().lower() == "desc",
            )
        try:
            skip = int(req.query.get("$skip", "0"))
            top = int(req.query["$top"]) if "$top" in req.query else None
        except ValueError:
            return _error(400, "InvalidQuery", "$top and $skip must be integers.")
        if skip < 0 or (top is not None and top < 0):
            return _error(400, "InvalidQuery", "$top and $skip must be 0 or more.")
        size = self.page_size if top is None else min(top, self.page_size)
        page = items[skip : skip + size]
        body: dict[str, Any] = {"value": [_select(i, select) for i in page]}
        remaining = (len(items) if top is None else min(len(items), skip + top)) - (skip + size)
        if remaining > 0:
            query = {k: v for k, v in req.query.items() if k not in ("$skip", "$top")}
            query["$skip"] = str(skip + size)
            if top is not None:
                query["$top"] = str(top - size)
            body["@odata.nextLink"] = (
                f"{req.origin}{PP_ENVIRONMENTS}?{urlencode(query, quote_via=quote, safe='$,')}"
            )
        return Response.json(200, body)

    # -- Power Platform API: environment groups ----------------------------------
    def _pp_groups(self, req: Request, rest: str) -> Response:
        parts = rest.split("/") if rest else []
        claims: Mapping[str, Any] = req.notes.get("claims") or {}
        if not parts:
            if req.method == "GET":
                with self.resources.directory.lock:
                    groups = [dict(g) for g in self.groups.values()]
                return Response.json(200, {"value": groups})
            if req.method == "POST":
                return self._group_write(req, claims, None)
            return _error(405, "MethodNotAllowed", f"The method '{req.method}' is not allowed.")
        group_id = parts[0].lower()
        with self.resources.directory.lock:
            group = self.groups.get(group_id)
        if group is None:
            return _problem(404, "Not Found", f"Environment group '{parts[0]}' was not found.")
        if len(parts) == 1:
            if req.method == "GET":
                return Response.json(200, dict(group))
            if req.method == "PUT":
                return self._group_write(req, claims, group_id)
            if req.method == "DELETE":
                with self.resources.directory.lock:
                    if group_id in self.group_of.values():
                        return _problem(
                            400, "Bad Request", "The environment group still has environments."
                        )
                    self.groups.pop(group_id, None)
                return Response(204)
            return _error(405, "MethodNotAllowed", f"The method '{req.method}' is not allowed.")
        if len(parts) == 3 and parts[1] in ("addEnvironment", "removeEnvironment"):
            if req.method != "POST":
                return _error(405, "MethodNotAllowed", f"The method '{req.method}' is not allowed.")
            return self._membership(parts[1] == "addEnvironment", group_id, parts[2])
        return _error(404, "NotFound", f"No route matches '{req.path}'.")

    def _group_write(
        self, req: Request, claims: Mapping[str, Any], group_id: str | None
    ) -> Response:
        try:
            body = json.loads(req.body or b"{}")
        except ValueError:
            return _problem(400, "Bad Request", "The request body is not JSON.")
        if not isinstance(body, dict) or not str(body.get("displayName") or "").strip():
            return _problem(400, "Bad Request", "displayName is required.")
        now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        principal = {
            "id": claims.get("oid"),
            "type": "User" if claims.get("idtyp") == "user" else "ServicePrincipal",
            "tenantId": claims.get("tid"),
        }
        with self.resources.directory.lock:
            if group_id is None:
                new_id = str(uuid.uuid4())
                group: dict[str, Any] = {
                    "id": new_id,
                    "createdTime": now,
                    "createdBy": principal,
                    "childrenGroupIds": [],
                }
            else:
                group = dict(self.groups[group_id])
            group.update(
                displayName=str(body["displayName"]),
                description=str(body.get("description") or ""),
                lastModifiedTime=now,
                lastModifiedBy=principal,
            )
            self.groups[str(group["id"]).lower()] = group
            return Response.json(200, dict(group))

    def _membership(self, add: bool, group_id: str, name: str) -> Response:
        with self.resources.directory.lock:
            known = any(str(e["name"]).lower() == name.lower() for e in self.resources.environments)
            if not known:
                return _error(
                    404, "EnvironmentNotFound", f"The environment '{name}' could not be found."
                )
            current = self.group_of.get(name.lower())
            if add:
                if current is not None and current != group_id:
                    return _problem(
                        400, "Bad Request", f"Environment '{name}' is in another group."
                    )
                self.group_of[name.lower()] = group_id
            else:
                if current != group_id:
                    return _problem(
                        400, "Bad Request", f"Environment '{name}' is not in this group."
                    )
                del self.group_of[name.lower()]
        return Response(202, b"", [("Content-Length", "0")])


def _select(item: dict[str, Any], select: list[str]) -> dict[str, Any]:
    if not select:
        return item
    wanted = {s.lower() for s in select} | {"id"}
    return {k: v for k, v in item.items() if k.lower() in wanted}
