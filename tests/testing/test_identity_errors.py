"""Every AADSTS error the emulated Entra ID produces, as the real msal reports it and
as it goes over the wire (status, body keys, correlation id echo).

msal replays an identical HTTP 400 from memory for 60 s per application object,
so every case builds a fresh msal application.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import re
import time
import uuid
from collections.abc import Callable
from typing import Any

import jwt
import msal
import pytest
import requests

from requests_ppauth.testing import ClientCertificate, Emulator, make_client_certificate
from requests_ppauth.testing._state import Secret

SCOPE = "https://api.powerplatform.com/.default"
POWERAPPS_SCOPE = "https://service.powerapps.com//.default"
ENTRA_KEYS = {
    "error",
    "error_description",
    "error_codes",
    "timestamp",
    "trace_id",
    "correlation_id",
    "error_uri",
}
TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ$")
MFA_CLAIMS = {"access_token": {"capolids": {"essential": True, "values": ["mfa"]}}}


class Recorder:
    """Wraps ``emu.http_client()`` and keeps the headers of every POST msal makes."""

    def __init__(self, emu: Emulator) -> None:
        self.inner = emu.http_client()
        self.post_headers: list[dict[str, str]] = []

    def get(self, url: str, **kwargs: Any) -> requests.Response:
        return self.inner.get(url, **kwargs)

    def post(self, url: str, **kwargs: Any) -> requests.Response:
        self.post_headers.append(dict(kwargs.get("headers") or {}))
        return self.inner.post(url, **kwargs)

    def close(self) -> None:
        self.inner.close()


def confidential(emu: Emulator, client_id: str, credential: Any, http: Any) -> Any:
    return msal.ConfidentialClientApplication(
        client_id,
        client_credential=credential,
        authority=emu.authority(),
        instance_discovery=False,
        http_client=http,
    )


def public(emu: Emulator, client_id: str, http: Any) -> Any:
    return msal.PublicClientApplication(
        client_id, authority=emu.authority(), instance_discovery=False, http_client=http
    )


def ropc(app: Any, username: str, password: str) -> dict[str, Any]:
    with pytest.warns(DeprecationWarning, match="deprecated"):
        return app.acquire_token_by_username_password(username, password, scopes=[SCOPE])


@functools.cache
def unregistered_cert() -> ClientCertificate:
    """A certificate no app has (cached: each new certificate has a new thumbprint)."""
    return make_client_certificate("unregistered", slot="unregistered")


def token_url(emu: Emulator, tenant: str | None = None) -> str:
    return f"{emu.authority(tenant)}/oauth2/v2.0/token"


def signed_assertion(
    emu: Emulator,
    client_id: str,
    *,
    signer: Any = None,
    thumbprint: str | None = None,
    aud: str | None = None,
    iss: str | None = None,
    lifetime: int = 600,
) -> str:
    """A client assertion as msal builds one (RS256, x5t), with one thing changeable."""
    cert = emu.sample.certificate
    now = int(time.time())
    claims = {
        "aud": aud or token_url(emu, emu.sample.tenant_id),
        "iss": iss or client_id,
        "sub": iss or client_id,
        "iat": now - 1200 if lifetime < 0 else now,
        "nbf": now - 1200 if lifetime < 0 else now,
        "exp": now + lifetime,
        "jti": str(uuid.uuid4()),
    }
    x5t = jwt.utils.base64url_encode(bytes.fromhex(thumbprint or cert.thumbprint)).decode()
    return jwt.encode(claims, (signer or cert).key_pem, algorithm="RS256", headers={"x5t": x5t})


def assertion_form(client_id: str, assertion: str) -> dict[str, str]:
    return {
        "grant_type": "client_credentials",
        "client_id": client_id,
        "scope": SCOPE,
        "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        "client_assertion": assertion,
    }


def secret_form(client_id: str, secret: str) -> dict[str, str]:
    return {
        "grant_type": "client_credentials",
        "client_id": client_id,
        "client_secret": secret,
        "scope": SCOPE,
    }


def password_form(client_id: str, username: str, password: str) -> dict[str, str]:
    return {
        "grant_type": "password",
        "client_id": client_id,
        "username": username,
        "password": password,
        "scope": f"{SCOPE} openid profile offline_access",
    }


def assert_entra_error(result: dict[str, Any], error: str, code: int) -> None:
    """The fields every Entra ID error carries, as msal hands them back."""
    assert result.get("error") == error, result
    assert result["error_codes"] == [code]
    assert result["error_description"].startswith(f"AADSTS{code}: ")
    assert "access_token" not in result
    uuid.UUID(result["correlation_id"])
    uuid.UUID(result["trace_id"])


# -- through msal -------------------------------------------------------------------------
def unknown_app(emu: Emulator, http: Any) -> dict[str, Any]:
    app = confidential(emu, str(uuid.uuid4()), "whatever-secret", http)
    return app.acquire_token_for_client([SCOPE])


def wrong_secret(emu: Emulator, http: Any) -> dict[str, Any]:
    return confidential(emu, emu.sample.client_id, "not-the-secret", http).acquire_token_for_client(
        [SCOPE]
    )


def expired_secret(emu: Emulator, http: Any) -> dict[str, Any]:
    app = emu.add_app(secret="old-secret", secret_expires_at=time.time() - 10)
    return confidential(emu, app.client_id, "old-secret", http).acquire_token_for_client([SCOPE])


def wrong_password(emu: Emulator, http: Any) -> dict[str, Any]:
    return ropc(public(emu, emu.sample.public_client_id, http), emu.sample.username, "nope")


def mfa_required(emu: Emulator, http: Any) -> dict[str, Any]:
    emu.add_user("mfa@contoso.onmicrosoft.com", "mfa-pw-1", mfa_required=True)
    return ropc(
        public(emu, emu.sample.public_client_id, http), "mfa@contoso.onmicrosoft.com", "mfa-pw-1"
    )


def no_consent(emu: Emulator, http: Any) -> dict[str, Any]:
    emu.add_user("new@contoso.onmicrosoft.com", "new-pw-1", consented=False)
    return ropc(
        public(emu, emu.sample.public_client_id, http), "new@contoso.onmicrosoft.com", "new-pw-1"
    )


def certificate_mismatch(emu: Emulator, http: Any) -> dict[str, Any]:
    other = unregistered_cert()
    credential = {"private_key": other.key_pem.decode(), "thumbprint": other.thumbprint}
    return confidential(emu, emu.sample.cert_client_id, credential, http).acquire_token_for_client(
        [SCOPE]
    )


def public_flow_on_confidential_app(emu: Emulator, http: Any) -> dict[str, Any]:
    app = emu.add_app(name="confidential-no-secret")  # public client flows off, no secret
    return ropc(public(emu, app.client_id, http), emu.sample.username, emu.sample.password)


def unknown_user(emu: Emulator, http: Any) -> dict[str, Any]:
    app = public(emu, emu.sample.public_client_id, http)
    return ropc(app, "ghost@contoso.onmicrosoft.com", "pw")


def invalid_refresh_token(emu: Emulator, http: Any) -> dict[str, Any]:
    app = public(emu, emu.sample.public_client_id, http)
    return app.acquire_token_by_refresh_token("0.RT.not-a-real-one", [SCOPE])


def delegated_scope_for_app_token(emu: Emulator, http: Any) -> dict[str, Any]:
    app = confidential(emu, emu.sample.client_id, emu.sample.client_secret, http)
    return app.acquire_token_for_client(["https://api.powerplatform.com/Environments.Read"])


def two_resources(emu: Emulator, http: Any) -> dict[str, Any]:
    app = confidential(emu, emu.sample.client_id, emu.sample.client_secret, http)
    return app.acquire_token_for_client([SCOPE, POWERAPPS_SCOPE])


MSAL_CASES = [
    pytest.param(unknown_app, 400, "unauthorized_client", 700016, id="700016-unknown-app"),
    pytest.param(wrong_secret, 401, "invalid_client", 7000215, id="7000215-wrong-secret"),
    pytest.param(expired_secret, 401, "invalid_client", 7000222, id="7000222-expired-secret"),
    pytest.param(wrong_password, 400, "invalid_grant", 50126, id="50126-wrong-password"),
    pytest.param(mfa_required, 400, "invalid_grant", 50076, id="50076-mfa-required"),
    pytest.param(no_consent, 400, "invalid_grant", 65001, id="65001-no-consent"),
    pytest.param(certificate_mismatch, 401, "invalid_client", 700027, id="700027-cert-mismatch"),
    pytest.param(
        public_flow_on_confidential_app,
        401,
        "invalid_client",
        7000218,
        id="7000218-public-flows-off",
    ),
    pytest.param(unknown_user, 400, "invalid_grant", 50034, id="50034-unknown-user"),
    pytest.param(invalid_refresh_token, 400, "invalid_grant", 70000, id="70000-bad-refresh"),
    pytest.param(
        delegated_scope_for_app_token, 400, "invalid_scope", 1002012, id="1002012-not-default"
    ),
    pytest.param(two_resources, 400, "invalid_scope", 70011, id="70011-two-resources"),
]


@pytest.mark.parametrize(("scenario", "status", "error", "code"), MSAL_CASES)
def test_msal_reports_entra_error(
    emu,
    scenario: Callable[[Emulator, Any], dict[str, Any]],
    status: int,
    error: str,
    code: int,
):
    http = Recorder(emu)
    result = scenario(emu, http)

    assert_entra_error(result, error, code)
    # msal's client-request-id comes back as the correlation id
    (headers,) = http.post_headers
    assert result["correlation_id"] == headers["client-request-id"]
    assert f"Correlation ID: {result['correlation_id']}" in result["error_description"]
    (rec,) = emu.requests("token")
    assert (rec.status, rec.extra["aadsts"]) == (status, code)
    assert "issued_uti" not in rec.extra  # nothing was minted


def test_mfa_error_carries_suberror_and_claims_challenge(emu):
    result = mfa_required(emu, emu.http_client())
    assert result["suberror"] == "basic_action"
    assert json.loads(result["claims"]) == MFA_CLAIMS
    assert "'https://api.powerplatform.com'" in result["error_description"]


def test_consent_error_names_the_app(emu):
    result = no_consent(emu, emu.http_client())
    assert f"'{emu.sample.public_client_id}' named 'sample-public'" in result["error_description"]
    assert "suberror" not in result


def test_secret_errors_name_the_app(emu):
    wrong = wrong_secret(emu, emu.http_client())
    assert f"'{emu.sample.client_id}'" in wrong["error_description"]
    expired = expired_secret(emu, emu.http_client())
    assert "are expired" in expired["error_description"]


def test_expired_secret_next_to_a_valid_one_still_works(emu):
    app = emu.add_app(secret="current-secret")
    app.secrets.append(Secret("retired-secret", expires_at=time.time() - 10))
    ok = confidential(emu, app.client_id, "current-secret", emu.http_client())
    assert "access_token" in ok.acquire_token_for_client([SCOPE])
    old = confidential(emu, app.client_id, "retired-secret", emu.http_client())
    assert old.acquire_token_for_client([SCOPE])["error_codes"] == [7000222]


def test_certificate_mismatch_reports_the_thumbprint_sent(emu):
    result = certificate_mismatch(emu, emu.http_client())
    other = unregistered_cert()
    assert f"Thumbprint of key used by client: '{other.thumbprint}'" in result["error_description"]
    assert "The key was not found" in result["error_description"]


def test_app_of_another_tenant_is_unknown_here(ppauth_emulator):
    emu = ppauth_emulator
    emu.add_tenant("fabrikam.example")
    app = emu.add_app(tenant="fabrikam.example", secret="fab-secret")
    result = confidential(
        emu, app.client_id, "fab-secret", emu.http_client()
    ).acquire_token_for_client([SCOPE])
    assert_entra_error(result, "unauthorized_client", 700016)
    assert "'contoso.onmicrosoft.com'" in result["error_description"]


def test_msal_replays_a_400_but_not_a_401_for_the_same_app(emu):
    """Why every case above builds a fresh msal application."""
    s = emu.sample
    bad_scope = confidential(emu, s.client_id, s.client_secret, emu.http_client())
    for _ in range(2):
        result = bad_scope.acquire_token_for_client(["https://api.powerplatform.com/x.read"])
        assert result["error_codes"] == [1002012]
    assert emu.count("token") == 1  # the second 400 never left msal

    bad_secret = confidential(emu, s.client_id, "wrong", emu.http_client())
    for _ in range(2):
        assert bad_secret.acquire_token_for_client([SCOPE])["error_codes"] == [7000215]
    assert emu.count("token") == 3


# -- unknown tenant ------------------------------------------------------------------------
def test_unknown_tenant_fails_msal_app_construction(emu):
    with pytest.raises(ValueError, match="Unable to get authority configuration") as info:
        msal.ConfidentialClientApplication(
            emu.sample.client_id,
            client_credential=emu.sample.client_secret,
            authority=emu.authority("no-such-tenant.example"),
            instance_discovery=False,
            http_client=emu.http_client(),
        )
    # msal wraps the discovery failure; the original carries Entra's body
    assert "HTTP status: 400" in str(info.value.__context__)
    assert "AADSTS90002: Tenant 'no-such-tenant.example' not found" in str(info.value.__context__)
    (rec,) = emu.requests("discovery")
    assert (rec.status, rec.extra["aadsts"]) == (400, 90002)
    assert emu.count("token") == 0

    resp = requests.get(
        f"{emu.authority('no-such-tenant.example')}/v2.0/.well-known/openid-configuration",
        verify=emu.ca_bundle,
        timeout=10,
    )
    assert resp.status_code == 400
    body = resp.json()
    assert body["error"] == "invalid_tenant"
    assert body["error_codes"] == [90002]
    assert set(body) == ENTRA_KEYS


def test_unknown_tenant_token_endpoint_exact_body(emu):
    cid = str(uuid.uuid4())
    before = dt.datetime.now(dt.UTC).replace(microsecond=0)
    resp = requests.post(
        token_url(emu, "no-such-tenant.example"),
        data=secret_form(emu.sample.client_id, emu.sample.client_secret),
        headers={"client-request-id": cid},
        verify=emu.ca_bundle,
        timeout=10,
    )
    after = dt.datetime.now(dt.UTC)

    assert resp.status_code == 400
    assert resp.headers["Content-Type"].startswith("application/json")
    body = resp.json()
    assert set(body) == ENTRA_KEYS
    assert body["error"] == "invalid_request"
    assert body["error_codes"] == [90002]
    assert body["correlation_id"] == cid
    uuid.UUID(body["trace_id"])
    stamp = dt.datetime.strptime(body["timestamp"], "%Y-%m-%d %H:%M:%SZ").replace(tzinfo=dt.UTC)
    assert before <= stamp <= after
    assert body["error_description"] == (
        "AADSTS90002: Tenant 'no-such-tenant.example' not found. Check to make sure you have "
        "the correct tenant ID and are signing into the correct cloud. Check with your "
        "subscription administrator, this may happen if there are no active subscriptions "
        f"for the tenant. Trace ID: {body['trace_id']} Correlation ID: {cid} "
        f"Timestamp: {body['timestamp']}"
    )
    assert body["error_uri"] == f"{emu.authority_host}/error?code=90002"


# -- over the wire ------------------------------------------------------------------------
FormFactory = Callable[[Emulator], tuple[str | None, dict[str, str]]]


def _raw_mfa(emu: Emulator) -> tuple[str | None, dict[str, str]]:
    emu.add_user("mfa@contoso.onmicrosoft.com", "mfa-pw-1", mfa_required=True)
    return None, password_form(
        emu.sample.public_client_id, "mfa@contoso.onmicrosoft.com", "mfa-pw-1"
    )


def _raw_consent(emu: Emulator) -> tuple[str | None, dict[str, str]]:
    emu.add_user("new@contoso.onmicrosoft.com", "new-pw-1", consented=False)
    return None, password_form(
        emu.sample.public_client_id, "new@contoso.onmicrosoft.com", "new-pw-1"
    )


def _raw_expired(emu: Emulator) -> tuple[str | None, dict[str, str]]:
    app = emu.add_app(secret="old-secret", secret_expires_at=time.time() - 10)
    return None, secret_form(app.client_id, "old-secret")


def _raw_public_flows_off(emu: Emulator) -> tuple[str | None, dict[str, str]]:
    app = emu.add_app(name="confidential-no-secret")
    return None, password_form(app.client_id, emu.sample.username, emu.sample.password)


def _raw_assertion(*, foreign_key: bool = False, **change: Any) -> FormFactory:
    """An assertion for the sample certificate app; ``foreign_key``: signed by a key
    whose certificate is not registered (with ``x5t`` of either certificate)."""

    def build(emu: Emulator) -> tuple[str | None, dict[str, str]]:
        client_id = emu.sample.cert_client_id
        if foreign_key:
            change["signer"] = unregistered_cert()
            if change.pop("foreign_x5t", False):
                change["thumbprint"] = change["signer"].thumbprint
        return None, assertion_form(client_id, signed_assertion(emu, client_id, **change))

    return build


def _raw(form: Callable[[Emulator], dict[str, str]], tenant: str | None = None) -> FormFactory:
    return lambda emu: (tenant, form(emu))


def _without(form: dict[str, str], name: str) -> dict[str, str]:
    return {k: v for k, v in form.items() if k != name}


RAW_CASES = [
    pytest.param(
        _raw(lambda e: secret_form(e.sample.client_id, e.sample.client_secret), "nope.example"),
        400,
        "invalid_request",
        90002,
        id="90002-unknown-tenant",
    ),
    pytest.param(
        _raw(lambda e: secret_form(str(uuid.uuid4()), "x")),
        400,
        "unauthorized_client",
        700016,
        id="700016-unknown-app",
    ),
    pytest.param(
        _raw(lambda e: secret_form(e.sample.client_id, "wrong")),
        401,
        "invalid_client",
        7000215,
        id="7000215-wrong-secret",
    ),
    pytest.param(_raw_expired, 401, "invalid_client", 7000222, id="7000222-expired-secret"),
    pytest.param(
        _raw(lambda e: password_form(e.sample.public_client_id, e.sample.username, "wrong")),
        400,
        "invalid_grant",
        50126,
        id="50126-wrong-password",
    ),
    pytest.param(_raw_mfa, 400, "invalid_grant", 50076, id="50076-mfa"),
    pytest.param(_raw_consent, 400, "invalid_grant", 65001, id="65001-no-consent"),
    pytest.param(
        _raw_assertion(foreign_key=True, foreign_x5t=True),
        401,
        "invalid_client",
        700027,
        id="700027-unregistered-key",
    ),
    pytest.param(
        _raw_assertion(foreign_key=True),
        401,
        "invalid_client",
        700027,
        id="700027-bad-signature",
    ),
    pytest.param(_raw_public_flows_off, 401, "invalid_client", 7000218, id="7000218-no-credential"),
    pytest.param(
        _raw(lambda e: _without(secret_form(e.sample.client_id, "x"), "client_id")),
        400,
        "invalid_request",
        900144,
        id="900144-no-client_id",
    ),
    pytest.param(
        _raw(lambda e: _without(secret_form(e.sample.client_id, "x"), "grant_type")),
        400,
        "invalid_request",
        900144,
        id="900144-no-grant_type",
    ),
    pytest.param(
        _raw(
            lambda e: password_form(e.sample.public_client_id, "ghost@contoso.onmicrosoft.com", "x")
        ),
        400,
        "invalid_grant",
        50034,
        id="50034-unknown-user",
    ),
    pytest.param(
        _raw(
            lambda e: {
                "grant_type": "refresh_token",
                "client_id": e.sample.public_client_id,
                "refresh_token": "0.RT.bogus",
                "scope": SCOPE,
            }
        ),
        400,
        "invalid_grant",
        70000,
        id="70000-bad-refresh-token",
    ),
    pytest.param(
        _raw(
            lambda e: dict(
                secret_form(e.sample.client_id, e.sample.client_secret),
                scope=f"{SCOPE} {POWERAPPS_SCOPE}",
            )
        ),
        400,
        "invalid_scope",
        70011,
        id="70011-two-resources",
    ),
    pytest.param(
        _raw(
            lambda e: dict(
                secret_form(e.sample.client_id, e.sample.client_secret),
                scope="https://api.powerplatform.com/x.read",
            )
        ),
        400,
        "invalid_scope",
        1002012,
        id="1002012-not-default",
    ),
    pytest.param(
        _raw(
            lambda e: dict(
                secret_form(e.sample.client_id, e.sample.client_secret),
                grant_type="urn:example:magic",
            )
        ),
        400,
        "unsupported_grant_type",
        70003,
        id="70003-unsupported-grant",
    ),
    pytest.param(
        _raw_assertion(iss=str(uuid.UUID(int=7))),
        401,
        "invalid_client",
        700021,
        id="700021-assertion-issuer",
    ),
    pytest.param(
        _raw_assertion(aud="https://login.microsoftonline.com/common/oauth2/v2.0/token"),
        401,
        "invalid_client",
        700023,
        id="700023-assertion-audience",
    ),
    pytest.param(
        _raw_assertion(lifetime=-600),
        401,
        "invalid_client",
        700024,
        id="700024-assertion-expired",
    ),
]


@pytest.mark.parametrize(("factory", "status", "error", "code"), RAW_CASES)
def test_raw_error_response(emu, factory: FormFactory, status, error, code):
    tenant, form = factory(emu)
    cid = str(uuid.uuid4())
    resp = requests.post(
        token_url(emu, tenant),
        data=form,
        headers={"client-request-id": cid},
        verify=emu.ca_bundle,
        timeout=10,
    )

    assert resp.status_code == status, resp.text
    assert resp.headers["Content-Type"].startswith("application/json")
    body = resp.json()
    assert set(body) >= ENTRA_KEYS
    assert set(body) - ENTRA_KEYS == ({"suberror", "claims"} if code == 50076 else set())
    assert body["error"] == error
    assert body["error_codes"] == [code]
    assert body["correlation_id"] == cid
    assert TIMESTAMP.match(body["timestamp"])
    uuid.UUID(body["trace_id"])
    description = body["error_description"]
    assert description.startswith(f"AADSTS{code}: ")
    assert description.endswith(
        f" Trace ID: {body['trace_id']} Correlation ID: {cid} Timestamp: {body['timestamp']}"
    )
    assert "{" not in description.partition(" Trace ID:")[0]  # every placeholder filled
    (rec,) = emu.requests("token")
    assert (rec.status, rec.extra["aadsts"]) == (status, code)


@pytest.mark.parametrize(
    ("grant", "missing"),
    [
        ("client_credentials", "grant_type"),
        ("client_credentials", "client_id"),
        ("client_credentials", "scope"),
        ("password", "username"),
        ("password", "password"),
        ("refresh_token", "refresh_token"),
    ],
)
def test_missing_parameter_is_900144_naming_it(emu, grant, missing):
    s = emu.sample
    form = {
        "grant_type": grant,
        "client_id": s.public_client_id if grant != "client_credentials" else s.client_id,
        "client_secret": s.client_secret,
        "scope": SCOPE,
        "username": s.username,
        "password": s.password,
        "refresh_token": "0.RT.x",
    }
    if grant == "client_credentials":
        form = _without(_without(_without(form, "username"), "password"), "refresh_token")
    form = _without(form, missing)
    resp = requests.post(token_url(emu), data=form, verify=emu.ca_bundle, timeout=10)
    assert resp.status_code == 400
    body = resp.json()
    assert body["error"] == "invalid_request"
    assert body["error_codes"] == [900144]
    assert body["error_description"].startswith(
        f"AADSTS900144: The request body must contain the following parameter: '{missing}'."
    )


def test_correlation_id_is_generated_without_a_client_request_id(emu):
    form = secret_form(emu.sample.client_id, "wrong")
    bodies = [
        requests.post(token_url(emu), data=form, verify=emu.ca_bundle, timeout=10).json()
        for _ in range(2)
    ]
    ids = [uuid.UUID(b["correlation_id"]) for b in bodies]
    assert ids[0] != ids[1]
    assert bodies[0]["trace_id"] != bodies[1]["trace_id"]
    assert all(f"Correlation ID: {b['correlation_id']} " in b["error_description"] for b in bodies)
