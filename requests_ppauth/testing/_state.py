"""What the emulated directory knows: tenants, apps, users, vault secrets, grants.

Plain dataclasses behind one lock. The emulator's HTTP handlers and its Python
API both go through :class:`Directory`, so a test that registers an app and a
client that uses it a microsecond later always agree.
"""

from __future__ import annotations

import re
import secrets
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from requests_ppauth.testing._certs import ClientCertificate


@dataclass
class Tenant:
    """A directory. ``domain`` works wherever the id does, as in Entra ID."""

    id: str
    domain: str


@dataclass
class Secret:
    """A client secret; ``expires_at`` in epoch seconds (``None``: never)."""

    value: str = field(repr=False)
    expires_at: float | None = None

    @property
    def expired(self) -> bool:
        """Past its end date."""
        return self.expires_at is not None and self.expires_at <= time.time()


@dataclass
class App:
    """An app registration.

    ``public_client`` is the portal's "Allow public client flows" switch, needed for
    username/password. ``roles`` become the ``roles`` claim of app-only tokens.
    ``trusted_issuers`` hold CA certificates (PEM) for subject-name/issuer auth: an
    assertion whose ``x5c`` leaf is issued by one of them and whose subject CN is in
    ``trusted_subjects`` is accepted without a registered thumbprint.
    """

    client_id: str
    tenant_id: str
    name: str
    secrets: list[Secret] = field(default_factory=list, repr=False)
    certificates: list[ClientCertificate] = field(default_factory=list, repr=False)
    trusted_issuers: list[bytes] = field(default_factory=list, repr=False)
    trusted_subjects: list[str] = field(default_factory=list)
    # workload identity federation: (subject, audience) pairs trusted from the emulator's
    # federation issuer
    federated: list[tuple[str, str]] = field(default_factory=list)
    public_client: bool = False
    roles: list[str] = field(default_factory=list)
    token_lifetime: int | None = None


@dataclass
class User:
    """A user account; flags drive the MFA and consent errors."""

    username: str
    password: str = field(repr=False)
    tenant_id: str
    oid: str
    mfa_required: bool = False
    consented: bool = True
    admin: bool = False
    display_name: str = ""


@dataclass(frozen=True)
class ResourceApp:
    """A resource (an API's service principal) the directory issues tokens for.

    ``version`` is the access token version the resource accepts, its app
    registration's ``accessTokenAcceptedVersion`` (``None`` or 1: v1.0 tokens, 2:
    v2.0); ``app_id`` is the resource app's id (it works as the resource in a scope).
    """

    uri: str
    version: int
    app_id: str
    name: str = ""


#: First-party resources every emulated tenant knows, with the token version each
#: accepts (see docs/emulator-tokens.md for the sources). Dataverse organisations are
#: matched by :data:`DATAVERSE_ORG` rather than listed.
KNOWN_RESOURCES: tuple[ResourceApp, ...] = (
    ResourceApp(
        "https://service.powerapps.com/", 1, "475226c6-020e-4fb2-8a90-7a972cbfc1d4", "PowerApps"
    ),
    ResourceApp(
        "https://service.flow.microsoft.com/",
        1,
        "7df0a125-d3be-4c96-aa54-591f83ff541c",
        "Microsoft Flow Service",
    ),
    ResourceApp(
        "https://api.powerplatform.com",
        2,
        "8578e004-a5c6-46e7-913e-12f58912df43",
        "Power Platform API",
    ),
    ResourceApp("https://vault.azure.net", 1, "cfa8b339-82a2-471a-a3c9-0fc0be7a4093", "Key Vault"),
    ResourceApp(
        "https://management.core.windows.net/",
        1,
        "797f4846-ba00-4fd7-ba43-dac1f8f63013",
        "Windows Azure Service Management API",
    ),
    ResourceApp(
        "https://management.azure.com/",
        1,
        "797f4846-ba00-4fd7-ba43-dac1f8f63013",
        "Windows Azure Service Management API",
    ),
    ResourceApp(
        "https://graph.microsoft.com", 1, "00000003-0000-0000-c000-000000000000", "Microsoft Graph"
    ),
)
DATAVERSE_APP_ID = "00000007-0000-0000-c000-000000000000"  # Dynamics CRM
DATAVERSE_ORG = re.compile(r"^https://[a-z0-9][a-z0-9-]*\.crm\d*\.dynamics\.com$")


def resource_key(uri: str) -> str:
    """How resources compare: case-insensitive, trailing slashes ignored."""
    return uri.strip().rstrip("/").lower()


@dataclass
class ClaimsChallenge:
    """A continuous access evaluation event for one principal (``oid``).

    Tokens issued before the event (``stale_uti``) and tokens issued afterwards from
    a request that did not carry the challenge's claims (``unanswered_uti``) get the
    claims challenge; tokens issued with the claims pass, and so does every token
    issued once the challenge has been answered.
    """

    oid: str
    not_before: int
    stale_uti: set[str] = field(default_factory=set)
    unanswered_uti: set[str] = field(default_factory=set)
    answered: bool = False

    @property
    def claims(self) -> str:
        """The claims request JSON resources put (base64) in their challenge."""
        # laid out as Microsoft's CAE documentation shows it (the space included)
        value = str(self.not_before)
        return '{"access_token":{"nbf":{"essential":true, "value":"' + value + '"}}}'


@dataclass
class RefreshGrant:
    """What a refresh token stands for.

    ``mfa``: the sign-in behind it passed multi-factor authentication (an interactive
    sign-in's second step), so tokens refreshed from it satisfy an MFA requirement as
    Entra ID's refresh tokens carry the session's authentication methods.
    """

    user_oid: str
    client_id: str
    tenant_id: str
    revoked: bool = False
    mfa: bool = False


@dataclass
class VaultSecret:
    """One version of a Key Vault secret."""

    name: str
    version: str
    value: str = field(repr=False)
    content_type: str | None = None
    enabled: bool = True
    created: int = field(default_factory=lambda: int(time.time()))


@dataclass(frozen=True)
class RequestRecord:
    """One request the emulator received, as tests read it back.

    ``authorization`` holds the raw header the emulator saw (tests use it to prove
    a token did or did not reach a host); form fields are recorded by name only,
    and ``grant_type`` / ``client_id`` / ``scope`` by value because tests branch
    on them.
    """

    time: float
    listener: str
    endpoint: str
    method: str
    path: str
    host: str
    status: int
    grant_type: str | None = None
    client_id: str | None = None
    scope: str | None = None
    form_fields: tuple[str, ...] = ()
    authorization: str | None = field(default=None, repr=False)
    fault: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class Directory:
    """All emulator state, guarded by one re-entrant lock."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.tenants: dict[str, Tenant] = {}
        self.apps: dict[tuple[str, str], App] = {}
        self.users: dict[tuple[str, str], User] = {}
        self.refresh_grants: dict[str, RefreshGrant] = {}
        self.vault: dict[str, list[VaultSecret]] = {}
        self.vault_denied: set[str] = set()
        self.revoked_uti: set[str] = set()
        self.issued_uti: list[str] = []
        self.issued_oid: dict[str, str] = {}  # uti -> the principal's object id
        self.resources: dict[str, ResourceApp] = {resource_key(r.uri): r for r in KNOWN_RESOURCES}
        self.challenges: dict[str, ClaimsChallenge] = {}
        self.counts: Counter[str] = Counter()
        self.log: list[RequestRecord] = []

    # -- lookups -------------------------------------------------------------
    def tenant(self, ref: str) -> Tenant | None:
        """By id or domain, case-insensitively."""
        ref = ref.lower()
        with self.lock:
            for tenant in self.tenants.values():
                if ref in (tenant.id.lower(), tenant.domain.lower()):
                    return tenant
        return None

    def app(self, tenant_id: str, client_id: str) -> App | None:
        """An app registered in ``tenant_id``."""
        with self.lock:
            return self.apps.get((tenant_id, client_id.lower()))

    def user(self, username: str, tenant_id: str | None = None) -> User | None:
        """By UPN; ``tenant_id=None`` looks in every tenant (``/common``)."""
        with self.lock:
            for (tid, name), user in self.users.items():
                if name == username.lower() and tenant_id in (None, tid):
                    return user
        return None

    def user_by_oid(self, oid: str) -> User | None:
        """By object id (refresh grants keep the oid)."""
        with self.lock:
            for user in self.users.values():
                if user.oid == oid:
                    return user
        return None

    def resource(self, uri: str) -> ResourceApp | None:
        """The resource ``uri`` names (its identifier URI or app id), if the tenant knows it."""
        key = resource_key(uri)
        with self.lock:
            found = self.resources.get(key)
            if found is None:
                found = next((r for r in self.resources.values() if r.app_id == key), None)
        if found is None and DATAVERSE_ORG.match(key):
            found = ResourceApp(uri, 1, DATAVERSE_APP_ID, "Dataverse")
        return found

    # -- mutations -----------------------------------------------------------
    def add_resource(self, uri: str, version: int = 1, app_id: str | None = None) -> ResourceApp:
        """Make ``uri`` a resource the tenant knows, accepting v1.0 or v2.0 tokens."""
        if version not in (1, 2):
            raise ValueError("version must be 1 or 2")
        resource = ResourceApp(
            uri, version, (app_id or str(uuid.uuid5(uuid.NAMESPACE_URL, uri))).lower()
        )
        with self.lock:
            self.resources[resource_key(uri)] = resource
        return resource

    def add_tenant(self, domain: str, tenant_id: str | None = None) -> Tenant:
        """Register a tenant; its id and domain must both be new."""
        tenant = Tenant(id=tenant_id or str(uuid.uuid4()), domain=domain)
        with self.lock:
            for ref in (tenant.id, tenant.domain):
                if self.tenant(ref) is not None:
                    raise ValueError(f"a tenant {ref!r} is already registered")
            self.tenants[tenant.id] = tenant
        return tenant

    def add_app(self, app: App) -> App:
        """Register (or replace) an app."""
        with self.lock:
            self.apps[(app.tenant_id, app.client_id.lower())] = app
        return app

    def add_user(self, user: User) -> User:
        """Register (or replace) a user."""
        with self.lock:
            self.users[(user.tenant_id, user.username.lower())] = user
        return user

    def new_refresh_token(self, user: User, client_id: str, *, mfa: bool = False) -> str:
        """Mint an opaque refresh token for ``user`` and ``client_id``."""
        token = "0.RT." + secrets.token_urlsafe(48)
        with self.lock:
            self.refresh_grants[token] = RefreshGrant(user.oid, client_id, user.tenant_id, mfa=mfa)
        return token

    def record(self, rec: RequestRecord) -> None:
        """Count and log one request (counts are exact: one lock)."""
        with self.lock:
            self.counts[rec.endpoint] += 1
            self.log.append(rec)
