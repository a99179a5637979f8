"""The authorization code flow with PKCE: ``/{tenant}/oauth2/v2.0/authorize`` and its pages.

Entra ID's interactive sign-in, small enough for a scripted browser
(:mod:`requests_ppauth.testing.browser`) and faithful where msal looks: the
``form_post`` response msal's loopback listener demands (or a 302 for
``response_mode=query``), ``state`` echoed, ``client_info`` beside the code, and the
request's ``nonce`` in the id_token the code is redeemed for.

The pages are plain HTML forms, each carrying the hidden fields ``flow`` (the pending
sign-in) and ``step``:

* ``password``: ``username`` and ``password``; a wrong password shows the page again
  with AADSTS50126, an unknown account with AADSTS50034.
* ``mfa``: for users with ``mfa_required``, a one-time code in ``otc``; the expected
  code is :data:`MFA_CODE` (``123456``) unless :attr:`Authorizations.mfa_code` is
  changed. A wrong code shows the page again with AADSTS500121.
* ``consent``: for users not yet consented (or ``prompt=consent``), a button named
  ``consent`` valued ``accept`` or ``cancel``. Accept records the consent; cancel
  returns ``error=access_denied``, ``error_subcode=cancel`` and AADSTS65004 to the app,
  as Entra ID does.

Every page marks an error in ``<div id="error" data-aadsts="NNNN">``. Errors that
Entra ID will not send to an unverified address (unknown app AADSTS700016, a
redirect URI not allowed AADSTS50011, a missing ``client_id``) are shown on a page
with status 400 and no form; all later errors go to the redirect URI with
``error``, ``error_description`` and ``state``.

Redirect URIs: the emulator's apps register none, so it accepts what a "Mobile and
desktop applications" platform accepts for loopback: ``http://localhost`` and
``http://127.0.0.1`` with any port and path (RFC 8252 section 7.3), plus
``https://login.microsoftonline.com/common/oauth2/nativeclient``.

Codes are single-use and live ten minutes (:attr:`Authorizations.lifetime`), bound
to the client, tenant, redirect URI, scopes, user, nonce and PKCE challenge.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import urlencode, urlsplit

from requests_ppauth.testing._aadsts import EntraError
from requests_ppauth.testing._state import Directory, Tenant, User
from requests_ppauth.testing._wire import Request, Response

#: the one-time code the MFA step expects (a real authenticator app's would change)
MFA_CODE = "123456"
CODE_LIFETIME = 600  # Entra ID's authorization codes live about ten minutes
SIGN_IN_LIFETIME = 1800  # how long a sign-in page stays usable
NATIVE_CLIENT_URI = "https://login.microsoftonline.com/common/oauth2/nativeclient"
RESPONSE_MODES = ("query", "fragment", "form_post")
PKCE_METHODS = ("S256", "plain")

TenantFor = Callable[[str, str, dict[str, str]], Tenant]


@dataclass(frozen=True)
class AuthorizeParams:
    """The validated parameters of one authorization request."""

    client_id: str
    redirect_uri: str
    response_mode: str
    scope: str
    state: str | None
    nonce: str | None
    code_challenge: str | None
    code_challenge_method: str
    login_hint: str
    prompt: str


@dataclass
class SignIn:
    """A sign-in in progress between the pages (the real service keeps it in cookies)."""

    flow_id: str = field(repr=False)
    tenant_id: str
    app_name: str
    params: AuthorizeParams
    expires_at: float
    stage: str = "password"
    user_oid: str | None = None
    mfa_done: bool = False
    consent_done: bool = False


@dataclass
class AuthorizationCode:
    """What a code stands for; redeemed once, by the client it was issued to."""

    client_id: str
    tenant_id: str
    redirect_uri: str
    scope: str
    user_oid: str
    nonce: str | None
    challenge: str | None = field(repr=False)
    challenge_method: str
    expires_at: float
    auth_time: int
    mfa: bool
    redeemed: bool = False


def pkce_challenge(verifier: str, method: str = "S256") -> str:
    """The ``code_challenge`` for ``verifier`` (RFC 7636 section 4.2)."""
    if method == "plain":
        return verifier
    digest = hashlib.sha256(verifier.encode("ascii", "replace")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def redirect_allowed(redirect_uri: str) -> bool:
    """Loopback ``http`` on any port and path, or the native client URI (see the module)."""
    if redirect_uri == NATIVE_CLIENT_URI:
        return True
    try:
        parts = urlsplit(redirect_uri)
        parts.port  # noqa: B018 -- raises ValueError for a malformed port
    except ValueError:
        return False
    return (
        parts.scheme == "http"
        and parts.hostname in ("localhost", "127.0.0.1")
        and not parts.fragment
        and not parts.username
    )


def client_info(user: User) -> str:
    """``client_info`` as Entra ID returns it: base64url JSON of the user's ids."""
    raw = json.dumps({"uid": user.oid, "utid": user.tenant_id}).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


class Authorizations:
    """Pending sign-ins and issued codes. Callers hold the directory's lock."""

    def __init__(self) -> None:
        self.sign_ins: dict[str, SignIn] = {}
        self.codes: dict[str, AuthorizationCode] = {}
        self.lifetime = CODE_LIFETIME
        self.mfa_code = MFA_CODE

    def begin(self, tenant_id: str, app_name: str, params: AuthorizeParams) -> SignIn:
        """A new sign-in for an authorization request that passed validation."""
        now = time.time()
        for key in [k for k, s in self.sign_ins.items() if s.expires_at <= now]:
            del self.sign_ins[key]
        sign_in = SignIn(
            flow_id=secrets.token_urlsafe(24),
            tenant_id=tenant_id,
            app_name=app_name,
            params=params,
            expires_at=now + SIGN_IN_LIFETIME,
        )
        self.sign_ins[sign_in.flow_id] = sign_in
        return sign_in

    def pending(self, flow_id: str) -> SignIn | None:
        """The sign-in a page's form belongs to, unless unknown or expired."""
        sign_in = self.sign_ins.get(flow_id)
        if sign_in is None or sign_in.expires_at <= time.time():
            return None
        return sign_in

    def issue(self, sign_in: SignIn, user: User) -> str:
        """End ``sign_in`` with a code for ``user``."""
        now = time.time()
        for key in [k for k, c in self.codes.items() if c.expires_at + 3600 <= now]:
            del self.codes[key]
        self.sign_ins.pop(sign_in.flow_id, None)
        params = sign_in.params
        value = "1.A" + secrets.token_urlsafe(96)
        self.codes[value] = AuthorizationCode(
            client_id=params.client_id,
            tenant_id=sign_in.tenant_id,
            redirect_uri=params.redirect_uri,
            scope=params.scope,
            user_oid=user.oid,
            nonce=params.nonce,
            challenge=params.code_challenge,
            challenge_method=params.code_challenge_method,
            expires_at=now + self.lifetime,
            auth_time=int(now),
            mfa=sign_in.mfa_done,
        )
        return value

    def redeem(
        self,
        value: str,
        client_id: str,
        tenant_id: str,
        redirect_uri: str | None,
        verifier: str | None,
    ) -> AuthorizationCode:
        """The code's grant, or the Entra error its redemption gets now."""
        code = self.codes.get(value)
        if code is None or code.client_id.lower() != client_id.lower():
            raise EntraError(70008)
        if code.tenant_id != tenant_id:
            raise EntraError(70008)
        if code.redeemed:
            raise EntraError(54005)
        if time.time() >= code.expires_at:
            raise EntraError(70008)
        if not redirect_uri:
            raise EntraError(900144, parameter="redirect_uri")
        if redirect_uri != code.redirect_uri:
            raise EntraError(70002, redirect_uri=redirect_uri, expected=code.redirect_uri)
        if code.challenge is not None:
            expected = code.challenge.encode()
            given = pkce_challenge(verifier or "", code.challenge_method).encode()
            if not verifier or not secrets.compare_digest(expected, given):
                raise EntraError(501481)
        code.redeemed = True
        return code


class AuthorizeEndpoint:
    """``GET`` (the authorization request) and ``POST`` (the pages' forms) handlers."""

    def __init__(self, directory: Directory, flows: Authorizations, tenant_for: TenantFor) -> None:
        self.directory = directory
        self.flows = flows
        self.tenant_for = tenant_for

    # -- the authorization request ------------------------------------------------
    def get(self, req: Request, tenant_ref: str) -> Response:
        """Validate the request, then show the sign-in page (or send an error back)."""
        query = req.query
        req.notes.update(
            client_id=query.get("client_id"),
            scope=query.get("scope"),
            response_mode=query.get("response_mode"),
            state=query.get("state"),
            nonce=query.get("nonce"),
            authorize_step="request",
        )
        client_id = query.get("client_id", "")
        redirect_uri = query.get("redirect_uri", "")
        try:
            if not client_id:
                raise EntraError(900144, parameter="client_id")
            tenant = self.tenant_for(tenant_ref, "authorization_code", {"client_id": client_id})
            app = self.directory.app(tenant.id, client_id)
            if app is None:
                raise EntraError(700016, client_id=client_id, tenant=tenant.domain)
            if not redirect_uri:
                raise EntraError(900144, parameter="redirect_uri")
            if not redirect_allowed(redirect_uri):
                raise EntraError(50011, redirect_uri=redirect_uri, client_id=app.client_id)
        except EntraError as exc:
            return self._error_page(req, exc)
        mode = query.get("response_mode") or "query"
        state = query.get("state")
        try:
            if mode not in RESPONSE_MODES:
                mode = "query"
                raise EntraError(9002313)
            params = self._params(query, app.client_id, redirect_uri, mode)
            if params.prompt == "none":
                # the emulator keeps no browser session, so nobody is ever signed in
                raise EntraError(50058)
        except EntraError as exc:
            return self._send_error(req, redirect_uri, mode, state, exc)
        with self.directory.lock:
            sign_in = self.flows.begin(tenant.id, app.name, params)
        return self._password_page(req, sign_in, params.login_hint)

    @staticmethod
    def _params(
        query: dict[str, str], client_id: str, redirect_uri: str, mode: str
    ) -> AuthorizeParams:
        response_type = query.get("response_type", "")
        if not response_type:
            raise EntraError(900144, parameter="response_type")
        if response_type != "code":
            raise EntraError(700054, response_type=response_type)
        scope = query.get("scope", "").strip()
        if not scope:
            raise EntraError(900144, parameter="scope")
        challenge = query.get("code_challenge") or None
        method = query.get("code_challenge_method") or "plain"
        if challenge is not None:
            if method not in PKCE_METHODS:
                raise EntraError(9002313)
            if not 43 <= len(challenge) <= 128:
                raise EntraError(501491)
        return AuthorizeParams(
            client_id=client_id,
            redirect_uri=redirect_uri,
            response_mode=mode,
            scope=scope,
            state=query.get("state"),
            nonce=query.get("nonce"),
            code_challenge=challenge,
            code_challenge_method=method,
            login_hint=query.get("login_hint", ""),
            prompt=query.get("prompt", ""),
        )

    # -- the pages' forms ---------------------------------------------------------------
    def post(self, req: Request, tenant_ref: str) -> Response:
        """One step of the sign-in: password, one-time code or consent."""
        del tenant_ref  # the pending sign-in already knows its tenant
        form = req.form
        step = form.get("step", "")
        req.notes["authorize_step"] = step
        with self.directory.lock:
            sign_in = self.flows.pending(form.get("flow", ""))
        if sign_in is None or step != sign_in.stage:
            return self._error_page(req, EntraError(9002313))
        params = sign_in.params
        req.notes.update(client_id=params.client_id, scope=params.scope)
        if step == "password":
            user = self.directory.user(form.get("username", ""), sign_in.tenant_id)
            if user is None:
                tenant = self.directory.tenants.get(sign_in.tenant_id)
                error = EntraError(
                    50034,
                    user=form.get("username", ""),
                    tenant=tenant.domain if tenant else sign_in.tenant_id,
                )
                return self._password_page(req, sign_in, form.get("username", ""), error)
            if not secrets.compare_digest(
                user.password.encode(), form.get("password", "").encode()
            ):
                return self._password_page(
                    req, sign_in, form.get("username", ""), EntraError(50126)
                )
            sign_in.user_oid = user.oid
        else:
            found = self.directory.user_by_oid(sign_in.user_oid or "")
            if found is None:
                return self._error_page(req, EntraError(9002313))
            user = found
        if step == "mfa":
            expected = self.flows.mfa_code.encode()
            if not secrets.compare_digest(expected, form.get("otc", "").encode()):
                return self._mfa_page(req, sign_in, EntraError(500121))
            sign_in.mfa_done = True
        if step == "consent":
            choice = form.get("consent", "")
            if choice == "cancel":
                with self.directory.lock:
                    self.flows.sign_ins.pop(sign_in.flow_id, None)
                return self._send_error(
                    req,
                    params.redirect_uri,
                    params.response_mode,
                    params.state,
                    EntraError(65004),
                    subcode="cancel",
                )
            if choice != "accept":
                return self._consent_page(req, sign_in)
            with self.directory.lock:
                user.consented = True
            sign_in.consent_done = True
        return self._next(req, sign_in, user)

    def _next(self, req: Request, sign_in: SignIn, user: User) -> Response:
        if user.mfa_required and not sign_in.mfa_done:
            sign_in.stage = "mfa"
            return self._mfa_page(req, sign_in)
        wants_consent = not user.consented or sign_in.params.prompt == "consent"
        if wants_consent and not sign_in.consent_done:
            sign_in.stage = "consent"
            return self._consent_page(req, sign_in)
        with self.directory.lock:
            code = self.flows.issue(sign_in, user)
        req.notes["authorize_step"] = "code"
        params = sign_in.params
        fields = {"code": code, "client_info": client_info(user)}
        if params.state is not None:
            fields["state"] = params.state
        fields["session_state"] = secrets.token_hex(16)
        return self._deliver(params.redirect_uri, params.response_mode, fields)

    # -- responses --------------------------------------------------------------------
    def _send_error(
        self,
        req: Request,
        redirect_uri: str,
        mode: str,
        state: str | None,
        exc: EntraError,
        subcode: str | None = None,
    ) -> Response:
        """An error the app hears about: through its (validated) redirect URI."""
        _status, body = exc.body(req.headers.get("client-request-id"), req.origin)
        req.notes["aadsts"] = exc.code
        fields = {"error": str(body["error"]), "error_description": body["error_description"]}
        if subcode:
            fields["error_subcode"] = subcode
        fields["error_uri"] = str(body["error_uri"])
        if state is not None:
            fields["state"] = state
        return self._deliver(redirect_uri, mode, fields)

    @staticmethod
    def _deliver(redirect_uri: str, mode: str, fields: dict[str, str]) -> Response:
        if mode == "form_post":
            inputs = "".join(
                f'<input type="hidden" name="{html.escape(k)}" value="{html.escape(v)}"/>'
                for k, v in fields.items()
            )
            page = (
                "<html><head><title>Working...</title></head>"
                '<body onload="javascript:document.forms[0].submit()">'
                f'<form method="POST" name="hiddenform" action="{html.escape(redirect_uri)}">'
                f"{inputs}<noscript><p>Script is disabled. Click Submit to continue.</p>"
                '<input type="submit" value="Submit" /></noscript></form></body></html>'
            )
            return _html(200, page)
        if mode == "fragment":
            location = f"{redirect_uri}#{urlencode(fields)}"
        else:
            sep = "&" if "?" in redirect_uri else "?"
            location = f"{redirect_uri}{sep}{urlencode(fields)}"
        return Response(302, b"", [("Location", location), ("Cache-Control", "no-store")])

    def _error_page(self, req: Request, exc: EntraError) -> Response:
        """An error Entra ID shows rather than sends: the redirect URI is not trusted."""
        _status, body = exc.body(req.headers.get("client-request-id"), req.origin)
        req.notes["aadsts"] = exc.code
        content = "<h1>Sorry, but we're having trouble signing you in.</h1>" + _error_div(
            exc.code, str(body["error_description"])
        )
        return _html(400, _page("Sign in to your account", content))

    def _form(self, req: Request, sign_in: SignIn, step: str, fields: str) -> str:
        return (
            f'<form method="post" action="{html.escape(req.path)}" name="{step}">'
            f'<input type="hidden" name="flow" value="{html.escape(sign_in.flow_id)}"/>'
            f'<input type="hidden" name="step" value="{step}"/>{fields}</form>'
        )

    def _password_page(
        self, req: Request, sign_in: SignIn, username: str, error: EntraError | None = None
    ) -> Response:
        sign_in.stage = "password"
        fields = (
            '<label>Email, phone, or Skype <input type="email" name="username" '
            f'value="{html.escape(username)}"/></label>'
            '<label>Password <input type="password" name="password" value=""/></label>'
            '<input type="submit" value="Sign in"/>'
        )
        content = (
            f"<h1>Sign in</h1><p>to continue to {html.escape(sign_in.app_name)}</p>"
            + self._inline_error(req, error)
            + self._form(req, sign_in, "password", fields)
        )
        return _html(200, _page("Sign in to your account", content))

    def _mfa_page(self, req: Request, sign_in: SignIn, error: EntraError | None = None) -> Response:
        fields = (
            '<label>Code <input type="text" name="otc" inputmode="numeric" value=""/></label>'
            '<input type="submit" value="Verify"/>'
        )
        content = (
            "<h1>Enter code</h1><p>Enter the code displayed in the authenticator app on "
            "your mobile device.</p>"
            + self._inline_error(req, error)
            + self._form(req, sign_in, "mfa", fields)
        )
        return _html(200, _page("Sign in to your account", content))

    def _consent_page(self, req: Request, sign_in: SignIn) -> Response:
        fields = (
            '<button type="submit" name="consent" value="cancel">Cancel</button>'
            '<button type="submit" name="consent" value="accept">Accept</button>'
        )
        scopes = "".join(f"<li>{html.escape(s)}</li>" for s in sign_in.params.scope.split())
        content = (
            f"<h1>Permissions requested</h1><p>{html.escape(sign_in.app_name)} would like "
            f"to:</p><ul>{scopes}</ul>" + self._form(req, sign_in, "consent", fields)
        )
        return _html(200, _page("Permissions requested", content))

    @staticmethod
    def _inline_error(req: Request, error: EntraError | None) -> str:
        if error is None:
            return ""
        req.notes["aadsts"] = error.code
        _status, body = error.body(req.headers.get("client-request-id"), req.origin)
        return _error_div(error.code, str(body["error_description"]))


def _error_div(code: int, description: str) -> str:
    return f'<div id="error" data-aadsts="{code}">{html.escape(description)}</div>'


def _page(title: str, content: str) -> str:
    return (
        '<!DOCTYPE html><html><head><meta charset="utf-8"/>'
        f"<title>{html.escape(title)}</title></head><body>{content}</body></html>"
    )


def _html(status: int, page: str) -> Response:
    return Response(
        status,
        page.encode("utf-8"),
        [
            ("Content-Type", "text/html; charset=utf-8"),
            ("Cache-Control", "no-store, no-cache"),
            ("X-Frame-Options", "DENY"),
        ],
    )
