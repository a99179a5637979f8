"""Azure Resource Manager as far as azure-cli needs to sign in to a custom cloud and call
``az rest``: ``GET /metadata/endpoints`` (anonymous), ``GET /subscriptions``,
``GET /subscriptions/{id}``, ``GET /subscriptions/{id}/resourcegroups`` (always empty),
``GET /tenants``, on the emulator's api listener.

azure-cli reaches it with its config isolated (``AZURE_CONFIG_DIR``), the emulator's CA
in ``REQUESTS_CA_BUNDLE`` (``SSL_CERT_FILE`` too for ``ARM_CLOUD_METADATA_URL``, which
az reads with urllib), and ``AZURE_CORE_INSTANCE_DISCOVERY=false`` (``az config set
core.instance_discovery=false``): otherwise msal asks login.microsoftonline.com about
the emulator's authority. User sign-ins use az's own first-party client id
(``04b07795-8ddb-461a-bbee-02f9e1bf7b46``), which the emulator must be given.

What the real service does, and where that comes from:

- ``/metadata/endpoints``: ``az cloud register --endpoint-resource-manager`` reads
  ``?api-version=2022-09-01``, one cloud object that ``_arm_to_cli_mapper`` maps
  (azure-cli ``command_modules/cloud/custom.py`` and ``core/cloud.py``; the body of
  management.azure.com's answer is quoted in Azure/azure-cli#29283). ``2019-05-01``
  answers the list of clouds (what ``ARM_CLOUD_METADATA_URL`` is read as: a list), and
  ``2015-01-01`` the old shape (``galleryEndpoint``, ``graphEndpoint``, ``portalEndpoint``,
  ``authentication``). The emulator's cloud: ``loginEndpoint`` is its authority host,
  ``resourceManager`` its api origin, ``audiences`` ARM's two
  (``https://management.core.windows.net/`` first: az asks for
  ``{audiences[0]}/.default``); endpoints and suffixes it does not serve are left out,
  but for ``keyVaultDns`` (a name that never resolves: az needs one for its keyvault
  commands, which then reach the emulated vault by ``--id``).
- ``/subscriptions`` and ``/tenants`` (Subscriptions - List, Tenants - List, Resources
  REST API, api-version 2022-12-01 as azure-cli 2.91 sends it): ``value`` and ``count``;
  a subscription is ``id``, ``subscriptionId``, ``tenantId``, ``displayName``, ``state``,
  ``subscriptionPolicies``, ``authorizationSource``, ``managedByTenants``, ``tags``.
  A principal sees the subscriptions of its token's tenant (or those it was given).
- Errors (ARM's ``{"error": {"code", "message"}}``): a missing ``api-version`` is 400
  ``MissingApiVersionParameter`` "The api-version query parameter (?api-version=) is
  required for all requests." (Azure/azure-cli#26405); an unknown one is 400
  ``InvalidApiVersionParameter`` "The api-version 'x' is invalid. The supported versions
  are '...'." (Azure/azure-cli#27156); no token is 401 ``AuthenticationFailed``, a bad
  one ``InvalidAuthenticationToken``, an expired one ``ExpiredAuthenticationToken``, a
  token for another resource ``InvalidAuthenticationTokenAudience``, each with a
  ``WWW-Authenticate: Bearer authorization_uri=..., error="invalid_token"`` challenge;
  an unknown subscription is 404 ``SubscriptionNotFound``.

Tokens: ARM takes v1 tokens for either audience, with or without the trailing slash.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from requests_ppauth.testing._resources import ClaimsChallengeError, TokenRejectedError
from requests_ppauth.testing._service import Service
from requests_ppauth.testing._wire import Request, Response

if TYPE_CHECKING:
    from requests_ppauth.testing._resources import Resources

#: the audiences ARM accepts; az asks for the first (``active_directory_resource_id``)
ARM_AUDIENCES = ("https://management.core.windows.net/", "https://management.azure.com/")
#: Microsoft.Resources api-versions (ARM's list in its InvalidApiVersionParameter answers)
RESOURCES_API_VERSIONS = (
    "2024-11-01,2024-07-01,2024-03-01,2023-07-01,2022-12-01,2022-09-01,2022-06-01,2022-05-01,"
    "2022-03-01-preview,2022-01-01,2021-04-01,2021-01-01,2020-10-01,2020-09-01,2020-08-01,"
    "2020-07-01,2020-06-01,2020-05-01,2020-01-01,2019-11-01,2019-10-01,2019-09-01,2019-08-01,"
    "2019-07-01,2019-06-01,2019-05-10,2019-05-01,2019-03-01,2018-11-01,2018-09-01,2018-08-01,"
    "2018-07-01,2018-06-01,2018-05-01,2018-02-01,2018-01-01,2017-12-01,2017-08-01,2017-06-01,"
    "2017-05-10,2017-05-01,2017-03-01,2016-09-01,2016-07-01,2016-06-01,2016-02-01,2015-11-01,"
    "2015-01-01,2014-04-01-preview,2014-04-01,2014-01-01,2013-03-01,2014-02-26,2014-04"
)
METADATA_API_VERSIONS = ("2022-09-01", "2019-05-01", "2015-01-01")
CLOUD_NAME = "PpauthEmulator"
KEYVAULT_DNS_SUFFIX = "vault.ppauth-emulator.invalid"


@dataclass
class Subscription:
    """A subscription as Subscriptions - List shows it."""

    subscription_id: str
    display_name: str
    tenant_id: str
    state: str = "Enabled"
    #: client ids / object ids that see it; empty: every principal of the tenant
    principals: list[str] = field(default_factory=list)

    def body(self) -> dict[str, Any]:
        """The list item."""
        return {
            "id": f"/subscriptions/{self.subscription_id}",
            "authorizationSource": "RoleBased",
            "managedByTenants": [],
            "subscriptionId": self.subscription_id,
            "tenantId": self.tenant_id,
            "displayName": self.display_name,
            "state": self.state,
            "subscriptionPolicies": {
                "locationPlacementId": "Public_2014-09-01",
                "quotaId": "PayAsYouGo_2014-09-01",
                "spendingLimit": "Off",
            },
            "tags": {},
        }


def _error(
    status: int, code: str, message: str, headers: list[tuple[str, str]] | None = None
) -> Response:
    return Response.json(status, {"error": {"code": code, "message": message}}, headers)


class Arm(Service):
    """See the module docstring. ``subscriptions`` is empty until a test adds one."""

    def __init__(self, resources: Resources) -> None:
        super().__init__(resources)
        self.subscriptions: dict[str, Subscription] = {}

    # -- Python API (tests) and admin verbs -------------------------------------------
    def add_subscription(
        self,
        display_name: str = "Emulated subscription",
        subscription_id: str | None = None,
        tenant_id: str | None = None,
        state: str = "Enabled",
        principals: list[str] | None = None,
    ) -> str:
        """Add a subscription to a tenant (the sample tenant by default); returns its id."""
        sub = Subscription(
            subscription_id or str(uuid.uuid4()),
            display_name,
            tenant_id or self.resources.default_tenant,
            state,
            [p.lower() for p in principals or []],
        )
        with self.resources.directory.lock:
            self.subscriptions[sub.subscription_id.lower()] = sub
        return sub.subscription_id

    def list_subscriptions(self) -> list[dict[str, Any]]:
        """Every subscription, as ARM lists them."""
        with self.resources.directory.lock:
            return [s.body() for s in self.subscriptions.values()]

    def admin_verbs(self) -> Mapping[str, Callable[..., Any]]:
        """``add_subscription`` and ``subscriptions``."""
        return {"add_subscription": self.add_subscription, "subscriptions": self.list_subscriptions}

    # -- routing -------------------------------------------------------------------------
    def route(self, req: Request) -> Response | None:
        """ARM's paths; None for the rest of the api listener (BAP's ``/providers``...)."""
        parts = [p for p in req.path.split("/") if p]
        if not parts:
            return None
        head = parts[0].lower()
        if head == "metadata" and len(parts) == 2 and parts[1].lower() == "endpoints":
            req.endpoint = "arm-metadata"
            return self._metadata(req)
        if head not in ("subscriptions", "tenants"):
            return None
        req.endpoint = "arm"
        version = req.query.get("api-version")
        if not version:
            return _error(
                400,
                "MissingApiVersionParameter",
                "The api-version query parameter (?api-version=) is required for all requests.",
            )
        if version not in RESOURCES_API_VERSIONS.split(","):
            return _error(
                400,
                "InvalidApiVersionParameter",
                f"The api-version '{version}' is invalid. The supported versions are "
                f"'{RESOURCES_API_VERSIONS}'.",
            )
        try:
            claims = self.resources.validate(req, ARM_AUDIENCES)
        except ClaimsChallengeError as exc:  # continuous access evaluation: the claims
            return self.resources._challenge(exc)
        except TokenRejectedError as exc:
            return self._unauthorized(req, exc)
        if req.method != "GET":
            return _error(
                405,
                "MethodNotAllowed",
                f"The requested resource does not support http method '{req.method}'.",
            )
        if head == "tenants" and len(parts) == 1:
            return self._tenants(claims)
        if head == "subscriptions" and len(parts) == 1:
            return self._subscriptions(claims)
        if head == "subscriptions":
            return self._subscription(req, claims, parts)
        return _error(404, "NotFound", f"The resource '{req.path}' was not found.")

    def _unauthorized(self, req: Request, exc: TokenRejectedError) -> Response:
        text = str(exc)
        if req.bearer() is None:
            code, message = "AuthenticationFailed", "Authentication failed."
            detail = "The authentication failed because of missing 'Authorization' header."
            message += " The 'Authorization' header is missing."
        elif "audience" in text:
            code = "InvalidAuthenticationTokenAudience"
            message = (
                "The access token has been obtained for wrong audience or resource. It should "
                "exactly match with one of the allowed audiences "
                + ",".join(f"'{a}','{a.rstrip('/')}'" for a in ARM_AUDIENCES)
                + "."
            )
            detail = "The access token has been obtained for wrong audience or resource."
        elif "expired" in text:
            code = "ExpiredAuthenticationToken"
            message = "The access token expiry UTC time is earlier than current UTC time."
            detail = "The access token is expired."
        else:
            code, message = "InvalidAuthenticationToken", "The access token is invalid."
            detail = "The access token is invalid."
        header = (
            f'Bearer authorization_uri="{self.resources.authority_origin}/", '
            f'error="invalid_token", error_description="{detail}"'
        )
        return _error(401, code, message, [("WWW-Authenticate", header)])

    # -- metadata ------------------------------------------------------------------------
    def _metadata(self, req: Request) -> Response:
        version = req.query.get("api-version")
        if not version:
            return _error(
                400,
                "MissingApiVersionParameter",
                "The api-version query parameter (?api-version=) is required for all requests.",
            )
        if version not in METADATA_API_VERSIONS:
            return _error(
                400,
                "InvalidApiVersionParameter",
                f"The api-version '{version}' is invalid. The supported versions are "
                f"'{','.join(METADATA_API_VERSIONS)}'.",
            )
        cloud = self.cloud(req.origin)
        if version == "2015-01-01":
            return Response.json(
                200,
                {
                    "galleryEndpoint": "",
                    "graphEndpoint": "",
                    "portalEndpoint": "",
                    "authentication": {
                        "loginEndpoint": f"{self.resources.authority_origin}/",
                        "audiences": list(ARM_AUDIENCES),
                    },
                },
            )
        if version == "2019-05-01":
            return Response.json(200, [cloud])
        return Response.json(200, cloud)

    def cloud(self, api_origin: str) -> dict[str, Any]:
        """The emulator's cloud as ``/metadata/endpoints?api-version=2022-09-01`` has it."""
        return {
            "name": CLOUD_NAME,
            "authentication": {
                "loginEndpoint": self.resources.authority_origin,
                "audiences": list(ARM_AUDIENCES),
                "tenant": "common",
                "identityProvider": "AAD",
            },
            "resourceManager": f"{api_origin}/",
            # az refuses every keyvault command without this suffix; ``.invalid`` never
            # resolves (RFC 2606), so ``--vault-name`` cannot reach a real host, while
            # ``--id https://127.0.0.1:.../secrets/x`` reaches the emulated vault
            "suffixes": {"keyVaultDns": KEYVAULT_DNS_SUFFIX},
        }

    # -- subscriptions and tenants ---------------------------------------------------------
    def _visible(self, claims: dict[str, Any]) -> list[Subscription]:
        tid = str(claims.get("tid", "")).lower()
        who = {str(claims.get("appid", "")).lower(), str(claims.get("oid", "")).lower()}
        with self.resources.directory.lock:
            return [
                s
                for s in self.subscriptions.values()
                if s.tenant_id.lower() == tid and (not s.principals or who & set(s.principals))
            ]

    def _subscriptions(self, claims: dict[str, Any]) -> Response:
        items = [s.body() for s in self._visible(claims)]
        return Response.json(200, {"value": items, "count": {"type": "Total", "value": len(items)}})

    def _subscription(self, req: Request, claims: dict[str, Any], parts: list[str]) -> Response:
        wanted = parts[1].lower()
        found = next(
            (s for s in self._visible(claims) if s.subscription_id.lower() == wanted), None
        )
        if found is None:
            return _error(
                404, "SubscriptionNotFound", f"The subscription '{parts[1]}' could not be found."
            )
        if len(parts) == 2:
            return Response.json(200, found.body())
        if len(parts) == 3 and parts[2].lower() == "resourcegroups":
            return Response.json(200, {"value": []})
        return _error(404, "NotFound", f"The resource '{req.path}' was not found.")

    def _tenants(self, claims: dict[str, Any]) -> Response:
        tid = str(claims.get("tid", ""))
        tenant = self.resources.directory.tenant(tid)
        items = []
        if tenant is not None:
            items.append(
                {
                    "id": f"/tenants/{tenant.id}",
                    "tenantId": tenant.id,
                    "countryCode": "US",
                    "displayName": tenant.domain.partition(".")[0],
                    "domains": [tenant.domain],
                    "tenantCategory": "Home",
                    "defaultDomain": tenant.domain,
                    "tenantType": "AAD",
                }
            )
        return Response.json(200, {"value": items, "count": {"type": "Total", "value": len(items)}})
