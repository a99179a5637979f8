"""The :class:`Emulator`: Entra ID, a Power Platform API and a Key Vault over real HTTPS.

Four listeners on 127.0.0.1, each its own host as far as a client can tell:

===========  =========================  =========================================
listener     URL attribute              serves
===========  =========================  =========================================
identity     ``authority_host``         Entra ID v2.0 (discovery, JWKS, token,
                                        user realm) and the admin API
api          ``api_url``                Power Platform / BAP / Dataverse routes
vault        ``vault_url``              Key Vault secrets
foreign      ``foreign_url``            "another host" (``localhost``) that only
                                        records what reaches it
===========  =========================  =========================================
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

from requests_ppauth._http import IdentityHttpClient
from requests_ppauth.testing._certs import (
    ClientCertificate,
    make_client_certificate,
    signing_key,
    tls_material,
)
from requests_ppauth.testing._certs import (
    federation_key as _federation_key,
)
from requests_ppauth.testing._faults import Fault, FaultPlan
from requests_ppauth.testing._federation import GITHUB_PATH, OidcProviders, pipelines_subject
from requests_ppauth.testing._identity import Identity, TokenPolicy
from requests_ppauth.testing._jwt import encode as _jwt_encode
from requests_ppauth.testing._jwt import unverified
from requests_ppauth.testing._managed import ManagedIdentities, ManagedIdentity
from requests_ppauth.testing._managed import handle as handle_managed
from requests_ppauth.testing._resources import Resources
from requests_ppauth.testing._server import TLSListener, server_context
from requests_ppauth.testing._state import (
    App,
    ClaimsChallenge,
    Directory,
    RequestRecord,
    ResourceApp,
    Secret,
    Tenant,
    User,
    VaultSecret,
)
from requests_ppauth.testing._wire import Request, Response

if TYPE_CHECKING:
    from requests_ppauth.testing._arm import Arm
    from requests_ppauth.testing._keyvault import KeyVault
    from requests_ppauth.testing._management import Management
    from requests_ppauth.testing.dataverse import Dataverse

ROLES = ("identity", "api", "vault", "foreign", "msi")
FEDERATION_AUDIENCE = "api://AzureADTokenExchange"
_NS = uuid.UUID("6f1b2c3d-0000-4000-8000-0000000c0de5")


def _sample_id(name: str) -> str:
    return str(uuid.uuid5(_NS, name))


@dataclass(frozen=True)
class Sample:
    """The credentials every emulator starts with (``sample=True``).

    ``client_id``/``client_secret``: a confidential app; ``cert_client_id`` with
    ``certificate``: one that signs assertions; ``public_client_id``: public client
    flows on, for ``username``/``password``; ``admin_username`` is a tenant admin.
    """

    tenant_id: str
    tenant_domain: str
    client_id: str
    client_secret: str = field(repr=False)
    cert_client_id: str
    certificate: ClientCertificate = field(repr=False)
    public_client_id: str
    username: str
    password: str = field(repr=False)
    admin_username: str
    admin_password: str = field(repr=False)

    def as_dict(self) -> dict[str, str]:
        """Everything but the certificate, for printing and JSON."""
        return {
            f.name: getattr(self, f.name)
            for f in dataclasses.fields(self)
            if f.name != "certificate"
        }


class Emulator:
    """Start with ``with Emulator() as emu:`` or ``emu.start()`` / ``emu.stop()``."""

    def __init__(
        self,
        *,
        token_lifetime: int = 3600,
        refresh_in: int | None = None,
        sample: bool = True,
        host: str = "127.0.0.1",
        identity_port: int = 0,
    ) -> None:
        """``identity_port=443`` serves Entra ID on the default https port, so URLs msal
        builds without the authority's port (the ROPC user realm lookup) reach it; the
        other listeners always take free ports."""
        self.host = host
        self.identity_port = identity_port
        self.directory = Directory()
        self.faults = FaultPlan()
        self.policy = TokenPolicy(lifetime=token_lifetime, refresh_in=refresh_in)
        key, kid = signing_key()
        self._identity = Identity(self.directory, key, kid, self.policy)
        self._key = key
        self._listeners: dict[str, TLSListener] = {}
        self._threads: list[threading.Thread] = []
        self._dir: str | None = None
        self._resources: Resources | None = None
        self._want_sample = sample
        self.sample: Sample | None = None
        self.managed = ManagedIdentities()
        # the GitHub Actions and Azure Pipelines OIDC endpoints and their jobs
        self._oidc = OidcProviders(self.directory.lock)

    # -- lifecycle -----------------------------------------------------------
    def start(self) -> Self:
        """Bind the listeners on free ports and serve them from daemon threads."""
        if self._listeners:
            return self
        material = tls_material()
        self._dir = tempfile.mkdtemp(prefix="ppauth-emulator-")
        os.chmod(self._dir, 0o700)
        paths = {}
        for name, data in (
            ("ca.pem", material.ca_pem),
            ("server.pem", material.server_cert_pem),
            ("server.key", material.server_key_pem),
        ):
            paths[name] = os.path.join(self._dir, name)
            fd = os.open(paths[name], os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
        context = server_context(paths["server.pem"], paths["server.key"])
        try:
            for role in ROLES:
                self._listeners[role] = TLSListener(
                    self.host,
                    role,
                    None if role == "msi" else context,
                    self._dispatch,
                    self.identity_port if role == "identity" else 0,
                )
        except OSError:
            for listener in self._listeners.values():
                listener.server_close()
            self._listeners.clear()
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None
            raise
        # the emulator's own api listener is a Dataverse organisation, its vault a Key Vault
        for role in ("api", "vault"):
            for hostname in ("127.0.0.1", "localhost"):
                self.directory.add_resource(self._origin(role, hostname), 1)
        tenant = self._sample_tenant()
        self._identity.federation_issuer = f"{self.authority_host}/federation"
        if not self.managed.identities:
            self.managed.add("system", system_assigned=True)
        self._resources = Resources(
            self.directory, self._key.public_key(), self.authority_host, tenant.id
        )
        if self._want_sample:
            self.sample = self._make_sample(tenant)
        for role, listener in self._listeners.items():
            thread = threading.Thread(
                target=listener.serve_forever,
                kwargs={"poll_interval": 0.05},
                name=f"ppauth-emulator-{role}",
                daemon=True,
            )
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self) -> None:
        """Stop serving, close open connections, delete the CA bundle's directory."""
        # shutdown() waits for a serve_forever poll; stop all four at once, not in turn
        stoppers = [threading.Thread(target=lst.shutdown) for lst in self._listeners.values()]
        for stopper in stoppers:
            stopper.start()
        for stopper in stoppers:
            stopper.join(timeout=5)
        for listener in self._listeners.values():
            listener.close_connections()
            listener.server_close()
        for thread in self._threads:
            thread.join(timeout=5)
        self._listeners.clear()
        self._threads.clear()
        if self._dir:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = self.authority_host if self._listeners else "stopped"
        return f"<Emulator {state}>"

    # -- addresses -------------------------------------------------------------
    def _origin(self, role: str, hostname: str = "127.0.0.1") -> str:
        if role not in self._listeners:
            raise RuntimeError("the emulator is not running: use 'with Emulator() as emu:'")
        port = self._listeners[role].port
        return f"https://{hostname}" if port == 443 else f"https://{hostname}:{port}"

    @property
    def authority_host(self) -> str:
        """``https://127.0.0.1:PORT``: pass as msal's authority host."""
        return self._origin("identity")

    def authority(self, tenant: str | None = None) -> str:
        """``{authority_host}/{tenant}``, the sample tenant by default."""
        if tenant is None:
            tenant = self._sample_tenant().id
        return f"{self.authority_host}/{tenant}"

    @property
    def api_url(self) -> str:
        """Origin of the Power Platform / BAP / Dataverse routes."""
        return self._origin("api")

    @property
    def vault_url(self) -> str:
        """Origin of the Key Vault (pass as ``vault_url`` to ``SecretClient``)."""
        return self._origin("vault")

    @property
    def foreign_url(self) -> str:
        """A different host (``localhost``) for token-leak tests."""
        return self._origin("foreign", "localhost")

    @property
    def ca_bundle(self) -> str:
        """Path of the PEM file to trust (``verify=``)."""
        if self._dir is None:
            raise RuntimeError("the emulator is not running")
        return os.path.join(self._dir, "ca.pem")

    @property
    def ports(self) -> dict[str, int]:
        """Listener name to port."""
        return {role: listener.port for role, listener in self._listeners.items()}

    # -- what Microsoft's clients need to reach it --------------------------------
    def client_settings(self, client: str, **options: Any) -> dict[str, Any]:
        """The settings Microsoft's ``client`` needs to talk to this emulator: ``msal``,
        ``azure-identity``, ``azure-identity-env``, ``keyvault``, ``management``,
        ``dataverse``, ``azure-cli`` (see :mod:`requests_ppauth.testing._clients`)."""
        from requests_ppauth.testing._clients import client_settings

        return client_settings(self, client, **options)

    # -- services --------------------------------------------------------------
    def _running(self) -> Resources:
        if self._resources is None:
            raise RuntimeError("the emulator is not running: use 'with Emulator() as emu:'")
        return self._resources

    @property
    def management(self) -> Management:
        """The Power Platform API's environment management and BAP (its state)."""
        return self._running().management

    @property
    def dataverse(self) -> Dataverse:
        """The Dataverse Web API: tables and rows (``emu.dataverse.add_table(...)``)."""
        return self._running().dataverse

    @property
    def keyvault(self) -> KeyVault:
        """The Key Vault's secrets API."""
        return self._running().keyvault

    @property
    def arm(self) -> Arm:
        """Azure Resource Manager: cloud metadata and subscriptions."""
        return self._running().arm

    # -- directory -------------------------------------------------------------
    def _sample_tenant(self) -> Tenant:
        tenant = self.directory.tenant("contoso.onmicrosoft.com")
        if tenant is None:
            tenant = self.directory.add_tenant("contoso.onmicrosoft.com", _sample_id("tenant"))
        return tenant

    def _make_sample(self, tenant: Tenant) -> Sample:
        cert = make_client_certificate("requests-ppauth sample client")
        secret = "sample~" + _sample_id("secret").replace("-", "")
        self.add_app(
            client_id=_sample_id("app"), secret=secret, name="sample-confidential", tenant=tenant.id
        )
        self.add_app(
            client_id=_sample_id("cert-app"), certificate=cert, name="sample-cert", tenant=tenant.id
        )
        self.add_app(
            client_id=_sample_id("public-app"),
            public_client=True,
            name="sample-public",
            tenant=tenant.id,
        )
        self.add_user("user@contoso.onmicrosoft.com", "sample-password-1", tenant=tenant.id)
        self.add_user(
            "admin@contoso.onmicrosoft.com", "sample-password-2", tenant=tenant.id, admin=True
        )
        return Sample(
            tenant_id=tenant.id,
            tenant_domain=tenant.domain,
            client_id=_sample_id("app"),
            client_secret=secret,
            cert_client_id=_sample_id("cert-app"),
            certificate=cert,
            public_client_id=_sample_id("public-app"),
            username="user@contoso.onmicrosoft.com",
            password="sample-password-1",
            admin_username="admin@contoso.onmicrosoft.com",
            admin_password="sample-password-2",
        )

    def add_tenant(self, domain: str, tenant_id: str | None = None) -> Tenant:
        """Register a tenant; its ``domain`` works in authorities like its id."""
        return self.directory.add_tenant(domain, tenant_id)

    def add_app(
        self,
        *,
        client_id: str | None = None,
        tenant: str | None = None,
        secret: str | None = None,
        secret_expires_at: float | None = None,
        certificate: ClientCertificate | None = None,
        trusted_issuer: bytes | None = None,
        trusted_subject: str | None = None,
        federated_subject: str | None = None,
        federated_audience: str = FEDERATION_AUDIENCE,
        public_client: bool = False,
        roles: tuple[str, ...] = (),
        name: str | None = None,
        token_lifetime: int | None = None,
    ) -> App:
        """Register an app. ``secret_expires_at`` in the past gives an expired secret."""
        tenant_obj = self.directory.tenant(tenant) if tenant else self._sample_tenant()
        if tenant_obj is None:
            raise KeyError(f"no tenant {tenant!r}")
        app = App(
            client_id=client_id or str(uuid.uuid4()),
            tenant_id=tenant_obj.id,
            name=name or "app",
            secrets=[Secret(secret, secret_expires_at)] if secret is not None else [],
            certificates=[certificate] if certificate else [],
            trusted_issuers=[trusted_issuer] if trusted_issuer else [],
            trusted_subjects=[trusted_subject] if trusted_subject else [],
            federated=[(federated_subject, federated_audience)] if federated_subject else [],
            public_client=public_client,
            roles=list(roles),
            token_lifetime=token_lifetime,
        )
        return self.directory.add_app(app)

    def add_user(
        self,
        username: str,
        password: str,
        *,
        tenant: str | None = None,
        mfa_required: bool = False,
        consented: bool = True,
        admin: bool = False,
    ) -> User:
        """Register a user. ``mfa_required`` gives AADSTS50076, ``consented=False`` 65001."""
        tenant_obj = self.directory.tenant(tenant) if tenant else self._sample_tenant()
        if tenant_obj is None:
            raise KeyError(f"no tenant {tenant!r}")
        return self.directory.add_user(
            User(
                username=username,
                password=password,
                tenant_id=tenant_obj.id,
                oid=str(uuid.uuid4()),
                mfa_required=mfa_required,
                consented=consented,
                admin=admin,
                display_name=username.partition("@")[0],
            )
        )

    # -- Key Vault -------------------------------------------------------------
    def set_secret(
        self, name: str, value: str, *, content_type: str | None = None, enabled: bool = True
    ) -> str:
        """Add a new version of vault secret ``name``; returns the version id."""
        version = uuid.uuid4().hex
        with self.directory.lock:
            self.directory.vault.setdefault(name, []).append(
                VaultSecret(name, version, value, content_type, enabled)
            )
        return version

    def deny_vault(self, principal: str) -> None:
        """Answer 403 to tokens of this client id or object id."""
        with self.directory.lock:
            self.directory.vault_denied.add(principal.lower())

    # -- tokens ------------------------------------------------------------------
    def add_resource(self, uri: str, version: int = 1, app_id: str | None = None) -> ResourceApp:
        """Make ``uri`` a resource the tenants know (others answer AADSTS500011).

        ``version`` is the access token version it accepts: 1 (``appid``,
        ``https://sts.windows.net/{tid}/``) or 2 (``azp``, ``{authority}/{tid}/v2.0``).
        """
        return self.directory.add_resource(uri, version, app_id)

    def revoke(self, token: str | None = None, *, claims_challenge: bool = False) -> int | None:
        """Make resources reject ``token`` (or every token issued so far) with a 401.

        ``claims_challenge=True`` plays a continuous access evaluation event for the
        token's principal (every principal given no token): resources answer its tokens
        with ``error="insufficient_claims"`` and a ``claims`` request, and only a token
        requested with those claims (msal's ``claims_challenge=``) passes, then any
        later one. Returns the event's time (the claims' ``nbf`` value).
        """
        with self.directory.lock:
            if not claims_challenge:
                if token is not None:
                    self.directory.revoked_uti.add(str(unverified(token)[1].get("uti")))
                else:
                    self.directory.revoked_uti.update(self.directory.issued_uti)
                return None
            issued = self.directory.issued_oid
            if token is not None:
                oids = {str(unverified(token)[1].get("oid"))}
            else:
                oids = set(issued.values())
            now = int(time.time())
            for oid in oids:
                self.directory.challenges[oid] = ClaimsChallenge(
                    oid, now, stale_uti={u for u, o in issued.items() if o == oid}
                )
            return now

    # -- device code flow ----------------------------------------------------------
    @property
    def device_interval(self) -> int:
        """Seconds clients are told to wait between polls (default 1: tests stay fast)."""
        return self._identity.devices.interval

    @device_interval.setter
    def device_interval(self, seconds: int) -> None:
        self._identity.devices.interval = seconds

    def device_codes(self) -> list[str]:
        """User codes of sign-ins nobody has approved, declined or redeemed yet."""
        with self.directory.lock:
            return [
                c.user_code
                for c in self._identity.devices.codes.values()
                if not (c.approved_by or c.declined or c.redeemed)
            ]

    def approve_device(self, user_code: str, username: str | None = None) -> None:
        """Play the person at the browser: sign in as ``username`` (the sample user)."""
        if username is None:
            if self.sample is None:
                raise ValueError("name the user: the emulator has no sample user")
            username = self.sample.username
        with self.directory.lock:
            self._identity.devices.by_user_code(user_code).approved_by = username

    def decline_device(self, user_code: str) -> None:
        """The person declined: polls get ``authorization_declined``."""
        with self.directory.lock:
            self._identity.devices.by_user_code(user_code).declined = True

    def expire_device(self, user_code: str) -> None:
        """The code's time ran out: polls get ``expired_token``."""
        with self.directory.lock:
            self._identity.devices.by_user_code(user_code).expires_at = 0

    def slow_down_device(self, user_code: str, times: int = 1) -> None:
        """Answer the next ``times`` polls with ``slow_down``."""
        with self.directory.lock:
            self._identity.devices.by_user_code(user_code).slow_downs = times

    # -- managed identity ------------------------------------------------------------
    @property
    def msi_url(self) -> str:
        """Plain-http origin of the IMDS and App Service managed identity endpoints."""
        if "msi" not in self._listeners:
            raise RuntimeError("the emulator is not running")
        return f"http://127.0.0.1:{self._listeners['msi'].port}"

    def add_managed_identity(self, name: str) -> ManagedIdentity:
        """A user-assigned identity (select it by client_id, object_id or resource id)."""
        return self.managed.add(name)

    @property
    def system_identity(self) -> ManagedIdentity:
        """The machine's system-assigned identity."""
        return next(i for i in self.managed.identities if i.system_assigned)

    def managed_identity_env(self, kind: str = "imds") -> dict[str, str]:
        """Environment variables that point msal / azure-identity at our endpoints.

        ``imds`` (VMs, AKS): ``AZURE_POD_IDENTITY_AUTHORITY_HOST``; ``appservice``:
        ``IDENTITY_ENDPOINT`` and ``IDENTITY_HEADER``.
        """
        if kind == "imds":
            return {"AZURE_POD_IDENTITY_AUTHORITY_HOST": self.msi_url}
        if kind == "appservice":
            return {
                "IDENTITY_ENDPOINT": f"{self.msi_url}/msi/token",
                "IDENTITY_HEADER": self.managed.header_secret,
            }
        raise ValueError(f"unknown managed identity kind {kind!r}: imds or appservice")

    def _mint_managed(self, identity: ManagedIdentity, resource: str) -> tuple[str, dict[str, Any]]:
        return self._identity.managed_token(
            self.authority_host,
            self._sample_tenant(),
            identity.client_id,
            identity.object_id,
            identity.resource_id,
            resource,
        )

    # -- workload identity federation ---------------------------------------------------
    @property
    def federation_issuer(self) -> str:
        """The issuer whose tokens apps trust through ``add_app(federated_subject=...)``."""
        return self._identity.federation_issuer

    def federated_token(
        self,
        subject: str,
        *,
        audience: str = FEDERATION_AUDIENCE,
        lifetime: int = 600,
        issuer: str | None = None,
    ) -> str:
        """A token from the external identity provider (what Kubernetes or GitHub Actions
        would write to ``AZURE_FEDERATED_TOKEN_FILE``)."""
        if self._identity.federation_key is None:
            self._identity.federation_key = _federation_key()
        now = int(time.time())
        claims = {
            "iss": issuer or self.federation_issuer,
            "sub": subject,
            "aud": audience,
            "iat": now,
            "nbf": now,
            "exp": now + lifetime,
            "jti": uuid.uuid4().hex,
        }
        return _jwt_encode(
            claims, self._identity.federation_key, {"kid": self._identity.federation_kid}
        )

    # -- authorization code flow -----------------------------------------------------
    @property
    def mfa_code(self) -> str:
        """The one-time code the interactive sign-in's MFA step expects (``123456``)."""
        return str(self._identity.authorizations.mfa_code)

    @mfa_code.setter
    def mfa_code(self, code: str) -> None:
        self._identity.authorizations.mfa_code = code

    # -- CI systems' OIDC endpoints ---------------------------------------------------
    GITHUB_OIDC_PATH = GITHUB_PATH

    def github_actions_env(
        self,
        repo: str = "contoso/power-app",
        *,
        ref: str = "refs/heads/main",
        lifetime: int = 600,
        request_token: str | None = None,
    ) -> dict[str, str]:
        """The variables a job with ``permissions: id-token: write`` has: its OIDC
        endpoint (on the identity listener) and the request token it demands. The
        token it issues has ``sub`` ``repo:<repo>:ref:<ref>``, the federation issuer,
        and the requested audience, so ``add_app(federated_subject=...)`` trusts it."""
        token = self._oidc.github_job(f"repo:{repo}:ref:{ref}", lifetime, request_token)
        return {
            "ACTIONS_ID_TOKEN_REQUEST_URL": f"{self.authority_host}{GITHUB_PATH}?api-version=2.0",
            "ACTIONS_ID_TOKEN_REQUEST_TOKEN": token,
        }

    def azure_pipelines_env(
        self,
        service_connection: str = "power-platform",
        *,
        org: str = "contoso",
        project: str = "power-app",
        app: App | None = None,
        audience: str = FEDERATION_AUDIENCE,
        lifetime: int = 600,
        access_token: str | None = None,
    ) -> dict[str, str]:
        """The variables an AzureCLI@2 task on a workload-identity service connection
        has, with ``SYSTEM_ACCESSTOKEN: $(System.AccessToken)`` mapped in: the job's
        ``SYSTEM_OIDCREQUESTURI``, its access token and the connection's id. The tokens
        the endpoint issues have ``sub`` ``sc://<org>/<project>/<service_connection>``
        (trust it with :meth:`pipelines_subject`). With ``app``, its ids come as
        ``AZURESUBSCRIPTION_CLIENT_ID`` / ``_TENANT_ID``, as the task sets them."""
        path, token, connection_id = self._oidc.pipelines_job(
            org,
            project,
            service_connection,
            audience=audience,
            lifetime=lifetime,
            access_token=access_token,
        )
        env = {
            "TF_BUILD": "True",
            "SYSTEM_OIDCREQUESTURI": f"{self.authority_host}{path}",
            "SYSTEM_ACCESSTOKEN": token,
            "AZURESUBSCRIPTION_SERVICE_CONNECTION_ID": connection_id,
        }
        if app is not None:
            env["AZURESUBSCRIPTION_CLIENT_ID"] = app.client_id
            env["AZURESUBSCRIPTION_TENANT_ID"] = app.tenant_id
        return env

    @staticmethod
    def pipelines_subject(
        service_connection: str = "power-platform",
        *,
        org: str = "contoso",
        project: str = "power-app",
    ) -> str:
        """The subject Azure DevOps puts in a service connection's OIDC tokens."""
        return pipelines_subject(org, project, service_connection)

    def issued_oidc_tokens(self) -> list[str]:
        """Every OIDC token the GitHub and Azure Pipelines endpoints handed out."""
        with self.directory.lock:
            return list(self._oidc.issued)

    def _mint_oidc(self, subject: str, audience: str, lifetime: int) -> str:
        return self.federated_token(subject, audience=audience, lifetime=lifetime)

    # -- observation ---------------------------------------------------------------
    def counts(self) -> dict[str, int]:
        """Requests received per endpoint (exact: counted under one lock)."""
        with self.directory.lock:
            return dict(self.directory.counts)

    def count(self, endpoint: str) -> int:
        """Requests received by one endpoint (``token``, ``discovery``, ``vault``, ...)."""
        with self.directory.lock:
            return self.directory.counts.get(endpoint, 0)

    def requests(self, endpoint: str | None = None) -> list[RequestRecord]:
        """The request log, optionally for one endpoint."""
        with self.directory.lock:
            return [r for r in self.directory.log if endpoint in (None, r.endpoint)]

    def reset_counts(self) -> None:
        """Forget the log and the counters (state stays)."""
        with self.directory.lock:
            self.directory.counts.clear()
            self.directory.log.clear()

    # -- faults --------------------------------------------------------------------
    def inject(
        self,
        endpoint: str = "token",
        *,
        status: int | None = None,
        retry_after: int | None = None,
        latency: float = 0.0,
        drop: bool = False,
        times: int | None = 1,
        fraction: float | None = None,
        seed: int | None = None,
    ) -> Fault:
        """Add a fault rule (see :class:`Fault`); ``times=None`` means until cleared."""
        return self.faults.add(
            Fault(
                endpoint=endpoint,
                status=status,
                retry_after=retry_after,
                latency=latency,
                drop=drop,
                times=times,
                fraction=fraction,
                seed=seed,
            )
        )

    def clear_faults(self) -> None:
        """Remove every fault rule."""
        self.faults.clear()

    # -- request handling ----------------------------------------------------------
    def _dispatch(self, req: Request) -> Response | None:
        resp: Response | None = self._route(req)
        fault = self.faults.pick(req) if req.endpoint != "admin" else None
        if fault is not None:
            if fault.latency:
                time.sleep(fault.latency)
            if fault.drop:
                resp = None
            elif fault.status:
                resp = fault.response(req)
        notes = req.notes
        extra: dict[str, Any] = {
            k: notes[k]
            for k in (
                "aadsts",
                "client_auth",
                "issued_uti",
                "response_mode",
                "state",
                "nonce",
                "authorize_step",
                "service_connection_id",
            )
            if k in notes
        }
        if req.endpoint != "admin":
            self.directory.record(
                RequestRecord(
                    time=time.time(),
                    listener=req.listener,
                    endpoint=req.endpoint,
                    method=req.method,
                    path=req.path,
                    host=req.origin[len("https://") :],
                    status=0 if resp is None else resp.status,
                    grant_type=notes.get("grant_type"),
                    client_id=notes.get("client_id"),
                    scope=notes.get("scope"),
                    form_fields=notes.get("form_fields", ()),
                    authorization=req.headers.get("authorization"),
                    fault=fault.describe() if fault else None,
                    extra=extra,
                )
            )
        return resp

    def _route(self, req: Request) -> Response:
        assert self._resources is not None
        if req.listener == "identity":
            oidc = self._oidc.endpoint(req.path)
            if oidc is not None:
                req.endpoint = oidc
                return self._oidc.handle(req, self._mint_oidc)
            if req.path.startswith("/_emulator/"):
                req.endpoint = "admin"
                return self._admin(req)
            resp = self._identity.route(req)
            if resp is not None:
                return resp
            req.endpoint = "identity-unknown"
            return Response.json(404, {"error": "not_found", "error_description": req.path})
        if req.listener == "api":
            req.notes["foreign_origin"] = self.foreign_url
            return self._resources.power_platform(req)
        if req.listener == "vault":
            return self._resources.vault(req)
        if req.listener == "msi":
            return handle_managed(req, self.managed, self._mint_managed)
        return self._resources.foreign(req)

    # -- admin API (for an emulator in another process) -----------------------------
    def _admin(self, req: Request) -> Response:
        """``POST /_emulator/<verb>`` with JSON params; loopback-only like the rest."""
        verb = req.path[len("/_emulator/") :].strip("/")
        try:
            params = json.loads(req.body or b"{}")
            result = self.admin_call(verb, params)
        except (KeyError, TypeError, ValueError) as exc:
            return Response.json(400, {"error": f"{type(exc).__name__}: {exc}"})
        return Response.json(200, {"result": result})

    def admin_call(self, verb: str, params: dict[str, Any]) -> Any:
        """The admin API: the same verbs as the Python methods, JSON in and out."""
        if verb == "counts":
            return self.counts()
        if verb == "requests":
            return [
                {k: v for k, v in dataclasses.asdict(r).items() if k != "authorization"}
                | {"had_authorization": r.authorization is not None}
                for r in self.requests(params.get("endpoint"))
            ]
        if verb == "reset_counts":
            return self.reset_counts()
        if verb == "inject":
            self.inject(**params)
            return None
        if verb == "clear_faults":
            return self.clear_faults()
        if verb == "add_tenant":
            return dataclasses.asdict(self.add_tenant(**params))
        if verb == "add_app":
            app = self.add_app(**params)
            return {"client_id": app.client_id, "tenant_id": app.tenant_id}
        if verb == "add_user":
            user = self.add_user(**params)
            return {"username": user.username, "oid": user.oid, "tenant_id": user.tenant_id}
        if verb == "set_secret":
            return self.set_secret(**params)
        if verb == "revoke":
            return self.revoke(**params)
        if verb == "add_resource":
            return dataclasses.asdict(self.add_resource(**params))
        if verb == "policy":
            for key, value in params.items():
                if key not in ("lifetime", "refresh_in"):
                    raise KeyError(key)
                setattr(self.policy, key, value)
            return dataclasses.asdict(self.policy)
        if verb == "info":
            return self.info()
        if verb == "github_actions_env":
            return self.github_actions_env(**params)
        if verb == "azure_pipelines_env":
            client_id = params.pop("client_id", None)
            found = None
            if client_id:
                with self.directory.lock:
                    found = next(
                        (a for a in self.directory.apps.values() if a.client_id == client_id), None
                    )
                if found is None:
                    raise KeyError(f"unknown app {client_id!r}")
            return self.azure_pipelines_env(app=found, **params)
        if verb == "device_codes":
            return self.device_codes()
        if verb in ("approve_device", "decline_device", "expire_device", "slow_down_device"):
            getattr(self, verb)(**params)
            return None
        if self._resources is not None:
            for service in self._resources.services:
                verbs = service.admin_verbs()
                if verb in verbs:
                    return verbs[verb](**params)
        raise KeyError(f"unknown admin verb {verb!r}")

    def http_client(self) -> IdentityHttpClient:
        """An msal ``http_client`` that trusts this emulator whatever the environment says.

        ``REQUESTS_CA_BUNDLE`` overrides a Session's ``verify``, and msal's ROPC
        user-realm request drops the authority's port; this client handles both.
        """
        netloc = self.authority_host.removeprefix("https://")
        return IdentityHttpClient(verify=self.ca_bundle, authority_netlocs=(netloc,))

    def info(self) -> dict[str, Any]:
        """URLs, CA bundle and sample credentials, as ``python -m`` prints them."""
        return {
            "authority_host": self.authority_host,
            "authority": self.authority(),
            "api_url": self.api_url,
            "vault_url": self.vault_url,
            "foreign_url": self.foreign_url,
            "msi_url": self.msi_url,
            "admin_url": f"{self.authority_host}/_emulator",
            "ca_bundle": self.ca_bundle,
            "sample": self.sample.as_dict() if self.sample else None,
        }
