"""The emulated Entra ID v2.0 endpoints: discovery, JWKS, user realm and token.

Faithful where msal and azure-identity look: the discovery document's endpoints,
the token response's fields (scope echoed, ``client_info`` for user flows), and
error bodies laid out as Entra ID lays them out (see ``_aadsts``).
"""

from __future__ import annotations

import base64
import binascii
import datetime as _dt
import json
import secrets
import time
import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from requests_ppauth.testing import _jwt
from requests_ppauth.testing._aadsts import EntraError
from requests_ppauth.testing._authorize import Authorizations, AuthorizeEndpoint, client_info
from requests_ppauth.testing._certs import ClientCertificate
from requests_ppauth.testing._device import DeviceFlows
from requests_ppauth.testing._state import (
    App,
    ClaimsChallenge,
    Directory,
    ResourceApp,
    Tenant,
    User,
)
from requests_ppauth.testing._wire import Request, Response

RESERVED_SCOPES = frozenset({"openid", "profile", "offline_access", "email"})
GRAPH_RESOURCE = "00000003-0000-0000-c000-000000000000"
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
AUTHORIZE_PATH = ["oauth2", "v2.0", "authorize"]
CLOCK_SKEW = 300  # Entra ID tolerates five minutes of clock skew on assertions
#: ``appidacr``/``azpacr``: how the client authenticated (0 public, 1 secret, 2 certificate)
CLIENT_ACR = {"secret": "1", "assertion": "2", "federated": "2"}
_SIGNING_CERTS: dict[int, bytes] = {}


def signing_certificate(key: rsa.RSAPrivateKey) -> bytes:
    """A self-signed certificate (DER) for the token signing key, as JWKS ``x5c`` carries.

    Entra ID's signing certificates are self-signed too, subject
    ``CN=accounts.accesscontrol.windows.net``; the ``kid`` is their SHA-1 thumbprint.
    """
    numbers = key.public_key().public_numbers().n
    if numbers not in _SIGNING_CERTS:
        name = x509.Name(
            [x509.NameAttribute(NameOID.COMMON_NAME, "accounts.accesscontrol.windows.net")]
        )
        start = _dt.datetime.now(_dt.UTC) - _dt.timedelta(days=1)
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(start + _dt.timedelta(days=365))
            .sign(key, hashes.SHA256())
        )
        _SIGNING_CERTS[numbers] = cert.public_bytes(serialization.Encoding.DER)
    return _SIGNING_CERTS[numbers]


def parse_claims_request(raw: str | None) -> dict[str, Any]:
    """The ``claims`` form parameter (a JSON claims request), ``{}`` when absent.

    msal sends it for a claims challenge (``claims_challenge=``) merged with the
    client's capabilities (``{"access_token": {"xms_cc": {"values": ["CP1"]}}}``).
    """
    if not raw:
        return {}
    try:
        parsed = json.loads(raw)
    except ValueError:
        return {}  # the emulator ignores a malformed claims request
    return parsed if isinstance(parsed, dict) else {}


def answers(claims_request: dict[str, Any], challenge: ClaimsChallenge) -> bool:
    """Whether a claims request carries what ``challenge`` asked for (``nbf`` essential)."""
    access = claims_request.get("access_token")
    nbf = access.get("nbf") if isinstance(access, dict) else None
    if not isinstance(nbf, dict) or not nbf.get("essential"):
        return False
    try:
        return int(str(nbf.get("value"))) >= challenge.not_before
    except ValueError:
        return False


def client_capabilities(claims_request: dict[str, Any]) -> list[str]:
    """``xms_cc`` values of a claims request (``CP1``: the client handles claims challenges)."""
    access = claims_request.get("access_token")
    xms_cc = access.get("xms_cc") if isinstance(access, dict) else None
    values = xms_cc.get("values") if isinstance(xms_cc, dict) else None
    return [str(v) for v in values] if isinstance(values, list) else []


def _opaque(size: int) -> str:
    return base64.b64encode(secrets.token_bytes(size)).decode("ascii")


@dataclass
class TokenPolicy:
    """Lifetimes the tests can change while the emulator runs."""

    lifetime: int = 3600
    refresh_in: int | None = None


def split_scopes(scope: str) -> tuple[str | None, list[str], list[str]]:
    """Resource, permission names and the reserved OIDC scopes of a scope string.

    Entra ID takes everything before the last ``/`` of a scope as the resource,
    which is why Power Apps' v1 scope is ``https://service.powerapps.com//.default``.
    """
    resources: list[str] = []
    perms: list[str] = []
    reserved: list[str] = []
    for item in scope.split():
        if item in RESERVED_SCOPES:
            reserved.append(item)
            continue
        resource, sep, perm = item.rpartition("/")
        if not sep:
            resource, perm = GRAPH_RESOURCE, item
        if resource not in resources:
            resources.append(resource)
        perms.append(perm)
    if len(resources) > 1:
        raise EntraError(70011, scope=scope)
    return (resources[0] if resources else None), perms, reserved


def _thumb(raw: Any) -> bytes | None:
    if not isinstance(raw, str):
        return None
    try:
        return _jwt.b64url_decode(raw)
    except _jwt.JWTError:
        return None


class Identity:
    """Handlers for the identity listener. Stateless apart from the directory."""

    def __init__(
        self,
        directory: Directory,
        key: rsa.RSAPrivateKey,
        kid: str,
        policy: TokenPolicy,
    ) -> None:
        self.directory = directory
        self.key = key
        del kid  # Entra's kid is the signing certificate's thumbprint, not the key's
        self.cert_der = signing_certificate(key)
        self.kid = _jwt.thumbprint(self.cert_der)
        self.policy = policy
        self.devices = DeviceFlows()
        self.authorizations = Authorizations()
        self.authorize = AuthorizeEndpoint(directory, self.authorizations, self._tenant_for)
        # the "external identity provider" (Kubernetes, GitHub Actions) whose tokens apps
        # can trust through federated credentials
        self.federation_key: rsa.RSAPrivateKey | None = None
        self.federation_kid = "federation"
        self.federation_issuer = ""

    # -- routing -------------------------------------------------------------
    def route(self, req: Request) -> Response | None:
        """Answer ``req`` if it is an identity endpoint, else ``None``."""
        parts = [p for p in req.path.split("/") if p]
        if req.method == "GET" and parts[-3:] == ["v2.0", ".well-known", "openid-configuration"]:
            req.endpoint = "discovery"
            return self.discovery(req, parts[0] if len(parts) == 4 else "common")
        if req.method == "GET" and len(parts) >= 2 and parts[-1] == "keys":
            req.endpoint = "jwks"
            return self.jwks(req, parts)
        if req.method == "GET" and len(parts) == 3 and parts[:2] == ["common", "userrealm"]:
            req.endpoint = "userrealm"
            return self.userrealm(req, unquote(parts[2]))
        if (
            req.method == "POST"
            and len(parts) == 4
            and parts[1:] == ["oauth2", "v2.0", "devicecode"]
        ):
            req.endpoint = "devicecode"
            return self.devicecode(req, parts[0])
        if req.method in ("GET", "POST") and len(parts) == 4 and parts[1:] == AUTHORIZE_PATH:
            req.endpoint = "authorize"
            if req.method == "GET":
                return self.authorize.get(req, parts[0])
            return self.authorize.post(req, parts[0])
        if req.method == "POST" and len(parts) == 4 and parts[1:] == ["oauth2", "v2.0", "token"]:
            req.endpoint = "token"
            return self.token(req, parts[0])
        return None

    def _error(self, req: Request, exc: EntraError) -> Response:
        status, body = exc.body(req.headers.get("client-request-id"), req.origin)
        req.notes["aadsts"] = exc.code
        return Response.json(status, body)

    # -- discovery -----------------------------------------------------------
    def jwks(self, req: Request, parts: list[str]) -> Response:
        """``/{tenant}/discovery/v2.0/keys``: the signing key with its certificate."""
        tenant = self.directory.tenant(parts[0]) if len(parts) > 1 else None
        issuer = None
        if "v2.0" in parts:
            issuer = f"{req.origin}/{tenant.id if tenant else '{tenantid}'}/v2.0"
        key = _jwt.jwk(self.key.public_key(), self.kid, self.cert_der, issuer)
        return Response.json(200, {"keys": [key]})

    def discovery(self, req: Request, tenant_ref: str) -> Response:
        """``/{tenant}/v2.0/.well-known/openid-configuration``."""
        if tenant_ref in ("common", "organizations", "consumers"):
            segment, issuer_tid = tenant_ref, "{tenantid}"
        else:
            tenant = self.directory.tenant(tenant_ref)
            if tenant is None:
                status, body = EntraError(90002, tenant=tenant_ref).body(
                    req.headers.get("client-request-id"), req.origin
                )
                body["error"] = "invalid_tenant"
                req.notes["aadsts"] = 90002
                return Response.json(status, body)
            segment = issuer_tid = tenant.id
        base = f"{req.origin}/{segment}"
        return Response.json(
            200,
            {
                "token_endpoint": f"{base}/oauth2/v2.0/token",
                "token_endpoint_auth_methods_supported": [
                    "client_secret_post",
                    "private_key_jwt",
                    "client_secret_basic",
                ],
                "jwks_uri": f"{base}/discovery/v2.0/keys",
                "response_modes_supported": ["query", "fragment", "form_post"],
                "subject_types_supported": ["pairwise"],
                "id_token_signing_alg_values_supported": ["RS256"],
                "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
                "scopes_supported": ["openid", "profile", "email", "offline_access"],
                "issuer": f"{req.origin}/{issuer_tid}/v2.0",
                "request_uri_parameter_supported": False,
                "userinfo_endpoint": f"{req.origin}/oidc/userinfo",
                "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
                "device_authorization_endpoint": f"{base}/oauth2/v2.0/devicecode",
                "http_logout_supported": True,
                "frontchannel_logout_supported": True,
                "end_session_endpoint": f"{base}/oauth2/v2.0/logout",
                "claims_supported": [
                    "sub",
                    "iss",
                    "aud",
                    "exp",
                    "iat",
                    "auth_time",
                    "nonce",
                    "preferred_username",
                    "name",
                    "tid",
                    "ver",
                    "oid",
                ],
                "tenant_region_scope": "NA",
                "cloud_instance_name": "microsoftonline.com",
                "cloud_graph_host_name": "graph.windows.net",
                "msgraph_host": "graph.microsoft.com",
            },
        )

    def userrealm(self, req: Request, username: str) -> Response:
        """``/common/userrealm/{username}``: every emulated account is cloud-only."""
        domain = username.rpartition("@")[2]
        return Response.json(
            200,
            {
                "ver": "1.0",
                "account_type": "Managed",
                "domain_name": domain,
                "cloud_instance_name": "microsoftonline.com",
                "cloud_audience_urn": "urn:federation:MicrosoftOnline",
            },
        )

    # -- token ---------------------------------------------------------------
    def token(self, req: Request, tenant_ref: str) -> Response:
        """``/{tenant}/oauth2/v2.0/token`` for the grants Power Platform documents."""
        form = req.form
        req.notes.update(
            grant_type=form.get("grant_type"),
            client_id=form.get("client_id"),
            scope=form.get("scope"),
            form_fields=tuple(sorted(form)),
        )
        try:
            grant = form.get("grant_type")
            if not grant:
                raise EntraError(900144, parameter="grant_type")
            if not form.get("client_id"):
                raise EntraError(900144, parameter="client_id")
            tenant = self._tenant_for(tenant_ref, grant, form)
            app = self.directory.app(tenant.id, form["client_id"])
            if app is None:
                raise EntraError(700016, client_id=form["client_id"], tenant=tenant.domain)
            if grant == "client_credentials":
                return self._client_credentials(req, tenant, app, form)
            if grant == "password":
                return self._password(req, tenant, app, form)
            if grant == "refresh_token":
                return self._refresh(req, tenant, app, form)
            if grant == DEVICE_GRANT:
                return self._device(req, tenant, app, form)
            if grant == "authorization_code":
                return self._authorization_code(req, tenant, app, form)
            raise EntraError(70003, grant=grant)
        except EntraError as exc:
            return self._error(req, exc)

    def _tenant_for(self, tenant_ref: str, grant: str, form: dict[str, str]) -> Tenant:
        if tenant_ref in ("common", "organizations") and grant == "password":
            user = self.directory.user(form.get("username", ""))
            if user is None:
                raise EntraError(50034, user=form.get("username", ""), tenant=tenant_ref)
            tenant = self.directory.tenants.get(user.tenant_id)
        elif tenant_ref in ("common", "organizations"):
            # device code and refresh grants: the app's home tenant (single-tenant apps)
            client_id = form.get("client_id", "").lower()
            with self.directory.lock:
                homes = [tid for tid, cid in self.directory.apps if cid == client_id]
            tenant = self.directory.tenants.get(homes[0]) if homes else None
            if tenant is None:
                raise EntraError(700016, client_id=form.get("client_id", ""), tenant=tenant_ref)
        else:
            tenant = self.directory.tenant(tenant_ref)
        if tenant is None:
            raise EntraError(90002, tenant=tenant_ref)
        return tenant

    def _authenticate_client(
        self, req: Request, tenant: Tenant, app: App, form: dict[str, str], required: bool
    ) -> None:
        if "client_assertion" in form:
            if form.get("client_assertion_type") != ASSERTION_TYPE:
                raise EntraError(900144, parameter="client_assertion_type")
            self._verify_assertion(req, tenant, app, form["client_assertion"])
            req.notes.setdefault("client_auth", "assertion")
        elif "client_secret" in form:
            matched = [
                s
                for s in app.secrets
                if secrets.compare_digest(s.value.encode(), form["client_secret"].encode())
            ]
            if not matched:
                raise EntraError(7000215, client_id=app.client_id)
            if all(s.expired for s in matched):
                raise EntraError(7000222, client_id=app.client_id)
            req.notes["client_auth"] = "secret"
        elif required:
            raise EntraError(7000218)

    def _verify_assertion(self, req: Request, tenant: Tenant, app: App, assertion: str) -> None:
        reason = "The key was not found."
        try:
            header, claims = _jwt.unverified(assertion)
        except _jwt.JWTError:
            raise EntraError(
                700027, reason="Malformed assertion", thumbprint="", client_id=app.client_id
            ) from None
        if self.federation_key is not None and (
            header.get("kid") == self.federation_kid or claims.get("iss") == self.federation_issuer
        ):
            self._verify_federated(app, assertion, claims)
            req.notes["client_auth"] = "federated"
            return
        sha1, sha256 = _thumb(header.get("x5t")), _thumb(header.get("x5t#S256"))
        shown = (sha1 or sha256 or b"").hex().upper()
        public_key = self._registered_key(app, sha1, sha256)
        if public_key is None:
            public_key = self._trusted_chain_key(app, header.get("x5c"))
        if public_key is None:
            raise EntraError(700027, reason=reason, thumbprint=shown, client_id=app.client_id)
        try:
            _jwt.verify(assertion, public_key)
        except _jwt.JWTError:
            raise EntraError(
                700027,
                reason="Signature validation failed",
                thumbprint=shown,
                client_id=app.client_id,
            ) from None
        endpoints = {f"{req.origin}/{ref}/oauth2/v2.0/token" for ref in (tenant.id, tenant.domain)}
        endpoints |= {e.replace("/v2.0/", "/") for e in endpoints}
        if claims.get("aud") not in endpoints:
            raise EntraError(700023)
        if claims.get("iss") != app.client_id or claims.get("sub") != app.client_id:
            raise EntraError(700021)
        now = time.time()
        exp = claims.get("exp")
        if not isinstance(exp, int | float) or exp + CLOCK_SKEW < now:
            raise EntraError(700024)
        nbf = claims.get("nbf")
        if isinstance(nbf, int | float) and nbf - CLOCK_SKEW > now:
            raise EntraError(700024)

    def _verify_federated(self, app: App, assertion: str, claims: dict[str, Any]) -> None:
        """Workload identity federation: trust the external issuer's token for ``app``."""
        assert self.federation_key is not None
        try:
            _jwt.verify(assertion, self.federation_key.public_key())
        except _jwt.JWTError:
            raise EntraError(
                700027, reason="Signature validation failed", thumbprint="", client_id=app.client_id
            ) from None
        now = time.time()
        if not isinstance(claims.get("exp"), int | float) or claims["exp"] + CLOCK_SKEW < now:
            raise EntraError(700024)
        seen = (claims.get("iss"), claims.get("sub"), claims.get("aud"))
        if not any(
            seen == (self.federation_issuer, subject, audience)
            for subject, audience in app.federated
        ):
            raise EntraError(
                70021, issuer=str(seen[0]), subject=str(seen[1]), audience=str(seen[2])
            )

    @staticmethod
    def _registered_key(
        app: App, sha1: bytes | None, sha256: bytes | None
    ) -> rsa.RSAPublicKey | None:
        cert: ClientCertificate
        for cert in app.certificates:
            if (sha1 and sha1 == bytes.fromhex(cert.thumbprint)) or (
                sha256 and sha256 == bytes.fromhex(cert.thumbprint_sha256)
            ):
                key = x509.load_pem_x509_certificate(cert.cert_pem).public_key()
                return key if isinstance(key, rsa.RSAPublicKey) else None
        return None

    @staticmethod
    def _trusted_chain_key(app: App, x5c: Any) -> rsa.RSAPublicKey | None:
        """Subject name + issuer auth: the leaf in ``x5c`` must chain to a trusted CA."""
        if not app.trusted_issuers or not isinstance(x5c, list) or not x5c:
            return None
        try:
            leaf = x509.load_der_x509_certificate(base64.b64decode(x5c[0]))
        except (ValueError, binascii.Error, TypeError):
            return None
        names = leaf.subject.get_attributes_for_oid(x509.oid.NameOID.COMMON_NAME)
        if not names or names[0].value not in app.trusted_subjects:
            return None
        for pem in app.trusted_issuers:
            issuer = x509.load_pem_x509_certificate(pem)
            try:
                leaf.verify_directly_issued_by(issuer)
            except (ValueError, TypeError, InvalidSignature):
                continue  # not issued by this CA: try the next one
            key = leaf.public_key()
            return key if isinstance(key, rsa.RSAPublicKey) else None
        return None

    def devicecode(self, req: Request, tenant_ref: str) -> Response:
        """``/{tenant}/oauth2/v2.0/devicecode``: start a device sign-in."""
        form = req.form
        req.notes.update(client_id=form.get("client_id"), scope=form.get("scope"))
        try:
            if not form.get("client_id"):
                raise EntraError(900144, parameter="client_id")
            tenant = self._tenant_for(tenant_ref, "device", form)
            app = self.directory.app(tenant.id, form["client_id"])
            if app is None:
                raise EntraError(700016, client_id=form["client_id"], tenant=tenant.domain)
            with self.directory.lock:
                code = self.devices.start(app.client_id, tenant.id, form.get("scope", ""))
        except EntraError as exc:
            return self._error(req, exc)
        uri = f"{req.origin}/devicelogin"
        shown = f"{code.user_code[:4]}-{code.user_code[4:]}"
        return Response.json(
            200,
            {
                "user_code": shown,
                "device_code": code.device_code,
                "verification_uri": uri,
                "expires_in": int(code.expires_at - time.time()),
                "interval": code.interval,
                "message": f"To sign in, use a web browser to open the page {uri} and enter the "
                f"code {shown} to authenticate.",
            },
        )

    def _device(self, req: Request, tenant: Tenant, app: App, form: dict[str, str]) -> Response:
        if not form.get("device_code"):
            raise EntraError(900144, parameter="device_code")
        self._authenticate_client(req, tenant, app, form, required=not app.public_client)
        with self.directory.lock:
            code = self.devices.poll(form["device_code"], app.client_id)
        user = self.directory.user(code.approved_by or "", tenant.id)
        if user is None:
            raise EntraError(50034, user=code.approved_by or "", tenant=tenant.domain)
        return self._user_tokens(req, tenant, app, user, code.scope or form.get("scope", ""))

    def _authorization_code(
        self, req: Request, tenant: Tenant, app: App, form: dict[str, str]
    ) -> Response:
        """Redeem a code from ``/authorize`` (see ``_authorize``) for the signed-in user."""
        if not form.get("code"):
            raise EntraError(900144, parameter="code")
        self._authenticate_client(req, tenant, app, form, required=not app.public_client)
        with self.directory.lock:
            code = self.authorizations.redeem(
                form["code"],
                app.client_id,
                tenant.id,
                form.get("redirect_uri"),
                form.get("code_verifier"),
            )
        user = self.directory.user_by_oid(code.user_oid)
        if user is None:
            raise EntraError(70008)
        scope = form.get("scope") or code.scope
        granted = {s.lower() for s in code.scope.split()}
        if not {s.lower() for s in scope.split()} <= granted | RESERVED_SCOPES:
            raise EntraError(70011, scope=scope)
        return self._user_tokens(
            req, tenant, app, user, scope, nonce=code.nonce, mfa=code.mfa, auth_time=code.auth_time
        )

    def _client_credentials(
        self, req: Request, tenant: Tenant, app: App, form: dict[str, str]
    ) -> Response:
        scope = form.get("scope", "")
        if not scope:
            raise EntraError(900144, parameter="scope")
        self._authenticate_client(req, tenant, app, form, required=True)
        resource, perms, _ = split_scopes(scope)
        if resource is None or perms != [".default"]:
            raise EntraError(1002012, scope=scope)
        token, _claims = self.access_token(req, tenant, app, resource, user=None, perms=perms)
        return Response.json(200, self._token_body(token, scope, app))

    def _password(self, req: Request, tenant: Tenant, app: App, form: dict[str, str]) -> Response:
        for name in ("username", "password", "scope"):
            if not form.get(name):
                raise EntraError(900144, parameter=name)
        self._authenticate_client(req, tenant, app, form, required=not app.public_client)
        user = self.directory.user(form["username"], tenant.id)
        if user is None:
            raise EntraError(50034, user=form["username"], tenant=tenant.domain)
        if not secrets.compare_digest(user.password.encode(), form["password"].encode()):
            raise EntraError(50126)
        return self._user_tokens(req, tenant, app, user, form["scope"])

    def _refresh(self, req: Request, tenant: Tenant, app: App, form: dict[str, str]) -> Response:
        token = form.get("refresh_token", "")
        if not token:
            raise EntraError(900144, parameter="refresh_token")
        self._authenticate_client(req, tenant, app, form, required=not app.public_client)
        with self.directory.lock:
            grant = self.directory.refresh_grants.get(token)
        if grant is None or grant.revoked or grant.client_id.lower() != app.client_id.lower():
            raise EntraError(70000)
        user = self.directory.user_by_oid(grant.user_oid)
        if user is None:
            raise EntraError(70000)
        return self._user_tokens(req, tenant, app, user, form.get("scope", "openid"), mfa=grant.mfa)

    def _user_tokens(
        self,
        req: Request,
        tenant: Tenant,
        app: App,
        user: User,
        scope: str,
        *,
        nonce: str | None = None,
        mfa: bool = False,
        auth_time: int | None = None,
    ) -> Response:
        """Access, refresh and id tokens for ``user``; ``mfa``: the sign-in passed MFA.

        ``nonce`` (the authorization request's) and ``auth_time`` go into the id_token
        as OpenID Connect asks; msal compares the nonce with the one it sent.
        """
        resource, perms, reserved = split_scopes(scope)
        if resource is None:
            resource, perms = GRAPH_RESOURCE, ["User.Read"]
        if user.mfa_required and not mfa:
            raise EntraError(50076, resource=resource)
        if not user.consented:
            raise EntraError(65001, client_id=app.client_id, app_name=app.name)
        token, _claims = self.access_token(req, tenant, app, resource, user=user, perms=perms)
        echoed = " ".join(s for s in scope.split() if s not in RESERVED_SCOPES) or scope
        body = self._token_body(token, echoed, app)
        now = int(time.time())
        body["refresh_token"] = self.directory.new_refresh_token(user, app.client_id, mfa=mfa)
        id_claims: dict[str, Any] = {
            "aud": app.client_id,
            "iss": f"{req.origin}/{tenant.id}/v2.0",
            "iat": now,
            "nbf": now,
            "exp": now + 3600,
            "name": user.display_name or user.username,
            "oid": user.oid,
            "preferred_username": user.username,
            "sub": user.oid,
            "tid": tenant.id,
            "ver": "2.0",
        }
        if nonce is not None:
            id_claims["nonce"] = nonce
        if auth_time is not None:
            id_claims["auth_time"] = auth_time
        body["id_token"] = _jwt.encode(id_claims, self.key, {"kid": self.kid})
        body["client_info"] = client_info(user)
        del reserved
        return Response.json(200, body)

    def _token_body(self, token: str, scope: str, app: App) -> dict[str, Any]:
        lifetime = app.token_lifetime or self.policy.lifetime
        body: dict[str, Any] = {
            "token_type": "Bearer",
            "scope": scope,
            "expires_in": lifetime,
            "ext_expires_in": lifetime,
            "access_token": token,
        }
        if self.policy.refresh_in is not None:
            body["refresh_in"] = self.policy.refresh_in
        return body

    def resource_app(self, resource: str, tenant: Tenant) -> ResourceApp:
        """The resource a token is asked for, or AADSTS500011 when the tenant lacks it."""
        found = self.directory.resource(resource)
        if found is None:
            raise EntraError(500011, resource=resource, tenant=tenant.id)
        return found

    def access_token(
        self,
        req: Request,
        tenant: Tenant,
        app: App,
        resource: str,
        *,
        user: User | None,
        perms: list[str],
    ) -> tuple[str, dict[str, Any]]:
        """Mint a signed access token for ``resource``; app-only when ``user`` is None.

        The token's version follows the resource (v1.0 or v2.0, see
        docs/emulator-tokens.md); the ``claims`` request parameter answers a pending
        claims challenge and carries the client's capabilities into ``xms_cc``.
        """
        target = self.resource_app(resource, tenant)
        acr = "0" if app.public_client else CLIENT_ACR.get(req.notes.get("client_auth", ""), "0")
        claims = self._base_claims(req.origin, tenant, app.client_id, resource, target.version, acr)
        lifetime = app.token_lifetime or self.policy.lifetime
        claims["exp"] = claims["iat"] + lifetime
        if user is None:
            claims.update(idtyp="app", oid=app_oid(app), sub=app_oid(app))
            if app.roles:
                claims["roles"] = list(app.roles)
        else:
            scp = ["user_impersonation" if p == ".default" else p for p in perms]
            name = user.display_name or user.username
            claims.update(idtyp="user", name=name, oid=user.oid, sub=user.oid, scp=" ".join(scp))
            if target.version == 1:
                claims.update(
                    acr="1",
                    amr=["pwd", "mfa"] if user.mfa_required else ["pwd"],
                    unique_name=user.username,
                    upn=user.username,
                )
            else:
                claims["preferred_username"] = user.username
            if user.admin:
                claims["wids"] = ["62e90394-69f5-4237-9190-012177145e10"]  # Global Administrator
        req.notes["issued_uti"] = claims["uti"]
        return self.sign(claims, parse_claims_request(req.form.get("claims")))

    def _base_claims(
        self, origin: str, tenant: Tenant, client_id: str, aud: str, version: int, acr: str
    ) -> dict[str, Any]:
        now = int(time.time())
        claims: dict[str, Any] = {"aud": aud, "iat": now, "nbf": now, "exp": now + 3600}
        sts = f"https://sts.windows.net/{tenant.id}/"
        if version == 1:
            claims.update(iss=sts, aio=_opaque(60), appid=client_id, appidacr=acr, idp=sts)
        else:
            claims.update(
                iss=f"{origin}/{tenant.id}/v2.0", aio=_opaque(60), azp=client_id, azpacr=acr
            )
        claims.update(
            rh=f"0.A{_jwt.b64url_encode(secrets.token_bytes(48))}.",
            tid=tenant.id,
            uti=_jwt.b64url_encode(secrets.token_bytes(16)),
            ver=f"{version}.0",
        )
        return claims

    def sign(
        self, claims: dict[str, Any], claims_request: dict[str, Any]
    ) -> tuple[str, dict[str, Any]]:
        """Record, answer claims challenges for, and sign a finished set of claims."""
        capabilities = client_capabilities(claims_request)
        if capabilities:
            claims["xms_cc"] = capabilities
        uti, oid = str(claims["uti"]), str(claims["oid"])
        with self.directory.lock:
            self.directory.issued_uti.append(uti)
            self.directory.issued_oid[uti] = oid
            challenge = self.directory.challenges.get(oid)
            if challenge is not None and not challenge.answered:
                if answers(claims_request, challenge):
                    challenge.answered = True
                else:
                    challenge.unanswered_uti.add(uti)
        header: dict[str, Any] = {"kid": self.kid}
        if claims.get("ver") == "1.0":
            header["x5t"] = self.kid  # legacy, v1.0 tokens only
        return _jwt.encode(claims, self.key, header), claims

    def managed_token(
        self,
        origin: str,
        tenant: Tenant,
        client_id: str,
        object_id: str,
        resource_id: str,
        resource: str,
    ) -> tuple[str, dict[str, Any]]:
        """A managed identity's token: an app-only token of its service principal."""
        target = self.resource_app(resource, tenant)
        claims = self._base_claims(origin, tenant, client_id, resource, target.version, "2")
        claims["exp"] = claims["iat"] + self.policy.lifetime
        claims.update(idtyp="app", oid=object_id, sub=object_id, xms_mirid=resource_id)
        return self.sign(claims, {})


def app_oid(app: App) -> str:
    """The service principal's object id: stable per app and tenant."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"sp:{app.tenant_id}:{app.client_id}"))
