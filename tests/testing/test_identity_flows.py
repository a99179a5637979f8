"""The emulated Entra ID v2.0 driven by the real msal: every grant it supports, and
the tokens it mints (claims, signature against the published JWKS, lifetimes).

Nothing is mocked: msal talks HTTPS to the emulator through ``emu.http_client()``;
``Recorder`` only wraps that client to keep what msal sent (the client assertion
is opaque to the emulator's log, which records form field names only).
"""

from __future__ import annotations

import base64
import datetime as dt
import functools
import hashlib
import json
import time
import uuid
from typing import Any
from urllib.parse import urlsplit

import msal
import pytest
import requests
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

from requests_ppauth.testing import ClientCertificate, Emulator, make_client_certificate

PP_SCOPE = "https://api.powerplatform.com/.default"
PP_AUD = "https://api.powerplatform.com"
POWERAPPS_SCOPE = "https://service.powerapps.com//.default"
POWERAPPS_AUD = "https://service.powerapps.com/"
GLOBAL_ADMIN = "62e90394-69f5-4237-9190-012177145e10"
SNI_SUBJECT = "ppauth-sni.contoso.example"


# -- helpers -------------------------------------------------------------------------
def unb64url(text: str) -> bytes:
    text = text.rstrip("=")  # msal pads its x5t; JOSE does not
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def b64url_json(segment: str) -> dict[str, Any]:
    return json.loads(unb64url(segment))


def jwt_header(token: str) -> dict[str, Any]:
    return b64url_json(token.split(".")[0])


def jwt_claims(token: str) -> dict[str, Any]:
    return b64url_json(token.split(".")[1])


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class Recorder:
    """Wraps ``emu.http_client()`` and keeps every POST msal makes (url, data, headers)."""

    def __init__(self, emu: Emulator) -> None:
        self.inner = emu.http_client()
        self.posts: list[dict[str, Any]] = []

    def get(self, url: str, **kwargs: Any) -> requests.Response:
        return self.inner.get(url, **kwargs)

    def post(self, url: str, **kwargs: Any) -> requests.Response:
        self.posts.append({"url": url, "data": dict(kwargs.get("data") or {})})
        return self.inner.post(url, **kwargs)

    def close(self) -> None:
        self.inner.close()

    def assertion(self) -> str:
        (post,) = self.posts
        value = post["data"]["client_assertion"]
        return value.decode() if isinstance(value, bytes) else value


def confidential(
    emu: Emulator,
    client_id: str,
    credential: Any,
    *,
    authority: str | None = None,
    http_client: Any = None,
) -> msal.ConfidentialClientApplication:
    return msal.ConfidentialClientApplication(
        client_id,
        client_credential=credential,
        authority=authority or emu.authority(),
        instance_discovery=False,
        http_client=http_client or emu.http_client(),
    )


def public(emu: Emulator, client_id: str | None = None) -> msal.PublicClientApplication:
    assert emu.sample is not None
    return msal.PublicClientApplication(
        client_id or emu.sample.public_client_id,
        authority=emu.authority(),
        instance_discovery=False,
        http_client=emu.http_client(),
    )


def ropc(
    app: msal.PublicClientApplication, username: str, password: str, scopes: list[str]
) -> dict[str, Any]:
    with pytest.warns(DeprecationWarning, match="deprecated"):
        return app.acquire_token_by_username_password(username, password, scopes=scopes)


def ok(result: dict[str, Any]) -> dict[str, Any]:
    assert "access_token" in result, result
    return result


def thumbprint_credential(cert: ClientCertificate) -> dict[str, str]:
    return {"private_key": cert.key_pem.decode(), "thumbprint": cert.thumbprint}


def certificate_credential(cert: ClientCertificate) -> dict[str, str]:
    return {"private_key": cert.key_pem.decode(), "public_certificate": cert.cert_pem.decode()}


def discovery(emu: Emulator, tenant: str | None = None) -> dict[str, Any]:
    resp = requests.get(
        f"{emu.authority(tenant)}/v2.0/.well-known/openid-configuration",
        verify=emu.ca_bundle,
        timeout=10,
    )
    assert resp.status_code == 200, resp.text
    return resp.json()


def _pem_key(slot: str) -> rsa.RSAPrivateKey:
    key = serialization.load_pem_private_key(make_client_certificate(slot=slot).key_pem, None)
    assert isinstance(key, rsa.RSAPrivateKey)
    return key


def _cert(
    subject: str, key: rsa.RSAPrivateKey, issuer: x509.Name, signer: rsa.RSAPrivateKey, ca: bool
) -> x509.Certificate:
    start = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
    return (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + dt.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .sign(signer, hashes.SHA256())
    )


@functools.cache
def sni_material() -> dict[str, bytes]:
    """A CA, a leaf it issued for SNI_SUBJECT, and two near misses (PEM)."""
    pem = serialization.Encoding.PEM
    ca_key, leaf_key = _pem_key("sni-ca"), _pem_key("sni-leaf")
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ppauth test issuing CA")])
    ca = _cert("ppauth test issuing CA", ca_key, ca_name, ca_key, ca=True)
    leaf = _cert(SNI_SUBJECT, leaf_key, ca_name, ca_key, ca=False)
    other_cn = _cert("someone-else.contoso.example", leaf_key, ca_name, ca_key, ca=False)
    self_signed = _cert(SNI_SUBJECT, leaf_key, leaf.subject, leaf_key, ca=False)
    return {
        "ca": ca.public_bytes(pem),
        "leaf": leaf.public_bytes(pem),
        "leaf_der": leaf.public_bytes(serialization.Encoding.DER),
        "other_cn": other_cn.public_bytes(pem),
        "self_signed": self_signed.public_bytes(pem),
        "key": leaf_key.private_bytes(
            pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ),
    }


def verify_with_jwks(emu: Emulator, token: str) -> None:
    """Raise InvalidSignature unless ``token`` verifies against the published JWKS."""
    jwks_uri = discovery(emu)["jwks_uri"]
    resp = requests.get(jwks_uri, verify=emu.ca_bundle, timeout=10)
    assert resp.status_code == 200
    header = jwt_header(token)
    assert header["alg"] == "RS256"
    (jwk,) = [k for k in resp.json()["keys"] if k["kid"] == header["kid"]]
    assert jwk["kty"] == "RSA"

    def num(value: str) -> int:
        return int.from_bytes(unb64url(value), "big")

    key = rsa.RSAPublicNumbers(num(jwk["e"]), num(jwk["n"])).public_key()
    signing_input, _, signature = token.rpartition(".")
    key.verify(
        unb64url(signature),
        signing_input.encode(),
        padding.PKCS1v15(),
        hashes.SHA256(),
    )


# -- client credentials: secret -----------------------------------------------------------
def test_client_secret_grant(emu):
    s = emu.sample
    result = ok(
        confidential(emu, s.client_id, s.client_secret).acquire_token_for_client([PP_SCOPE])
    )

    assert result["token_type"] == "Bearer"
    assert "refresh_token" not in result  # app-only flows get no refresh token
    (rec,) = emu.requests("token")
    assert (rec.grant_type, rec.client_id, rec.status) == ("client_credentials", s.client_id, 200)
    assert rec.extra["client_auth"] == "secret"
    assert "client_secret" in rec.form_fields
    assert "client_assertion" not in rec.form_fields
    assert rec.extra["issued_uti"] == jwt_claims(result["access_token"])["uti"]


def test_second_call_is_served_from_msal_cache(emu):
    app = confidential(emu, emu.sample.client_id, emu.sample.client_secret)
    first = ok(app.acquire_token_for_client([PP_SCOPE]))
    second = ok(app.acquire_token_for_client([PP_SCOPE]))
    assert second["access_token"] == first["access_token"]
    assert second["token_source"] == "cache"
    assert emu.count("token") == 1


# -- client credentials: certificate -----------------------------------------------------
def test_certificate_with_thumbprint_signs_rs256_with_x5t(emu):
    s = emu.sample
    rec_client = Recorder(emu)
    app = confidential(
        emu, s.cert_client_id, thumbprint_credential(s.certificate), http_client=rec_client
    )
    ok(app.acquire_token_for_client([PP_SCOPE]))

    (rec,) = emu.requests("token")
    assert rec.status == 200
    assert rec.extra["client_auth"] == "assertion"
    assert "client_assertion" in rec.form_fields
    assert "client_secret" not in rec.form_fields
    assertion = rec_client.assertion()
    header, claims = jwt_header(assertion), jwt_claims(assertion)
    assert header["alg"] == "RS256"
    assert unb64url(header["x5t"]) == bytes.fromhex(s.certificate.thumbprint)
    assert "x5t#S256" not in header
    assert "x5c" not in header
    assert claims["aud"] == discovery(emu)["token_endpoint"]
    assert claims["iss"] == claims["sub"] == s.cert_client_id


def test_certificate_with_public_certificate_signs_ps256_with_x5t_s256(emu):
    s = emu.sample
    rec_client = Recorder(emu)
    app = confidential(
        emu, s.cert_client_id, certificate_credential(s.certificate), http_client=rec_client
    )
    ok(app.acquire_token_for_client([PP_SCOPE]))

    (rec,) = emu.requests("token")
    assert (rec.status, rec.extra["client_auth"]) == (200, "assertion")
    header = jwt_header(rec_client.assertion())
    assert header["alg"] == "PS256"
    assert unb64url(header["x5t#S256"]) == bytes.fromhex(s.certificate.thumbprint_sha256)
    assert "x5t" not in header
    der = x509.load_pem_x509_certificate(s.certificate.cert_pem).public_bytes(
        serialization.Encoding.DER
    )
    assert [base64.b64decode(c) for c in header["x5c"]] == [der]


def test_certificate_from_encrypted_pfx(emu, tmp_path):
    s = emu.sample
    path = tmp_path / "client.pfx"
    path.write_bytes(s.certificate.pfx("pfx-pass"))
    credential = {"private_key_pfx_path": str(path), "passphrase": "pfx-pass"}
    ok(confidential(emu, s.cert_client_id, credential).acquire_token_for_client([PP_SCOPE]))
    (rec,) = emu.requests("token")
    assert (rec.status, rec.extra["client_auth"]) == (200, "assertion")


@pytest.mark.parametrize(
    ("make_credential", "thumbprint_attr"),
    [(thumbprint_credential, "thumbprint"), (certificate_credential, "thumbprint_sha256")],
    ids=["thumbprint-rs256", "public-certificate-ps256"],
)
def test_app_registered_with_another_certificate_rejects_it(emu, make_credential, thumbprint_attr):
    s = emu.sample
    other = make_client_certificate("another app's certificate", slot="other-app")
    app = emu.add_app(certificate=other, name="other-cert-app")

    # the app works with its own certificate...
    ok(
        confidential(emu, app.client_id, make_credential(other)).acquire_token_for_client(
            [PP_SCOPE]
        )
    )
    # ...and refuses the sample app's certificate
    result = confidential(
        emu, app.client_id, make_credential(s.certificate)
    ).acquire_token_for_client([PP_SCOPE])

    assert result["error"] == "invalid_client"
    assert result["error_codes"] == [700027]
    assert getattr(s.certificate, thumbprint_attr) in result["error_description"]
    assert app.client_id in result["error_description"]
    assert [r.status for r in emu.requests("token")] == [200, 401]


# -- subject name / issuer -------------------------------------------------------------
def sni_app(emu: Emulator) -> str:
    material = sni_material()
    return emu.add_app(
        trusted_issuer=material["ca"], trusted_subject=SNI_SUBJECT, name="sni-app"
    ).client_id


def test_subject_name_issuer_auth_accepts_x5c_leaf_of_trusted_ca(emu):
    material = sni_material()
    client_id = sni_app(emu)
    rec_client = Recorder(emu)
    # msal sends x5c whenever public_certificate is given as PEM text
    # (azure-identity calls the same thing send_certificate_chain=True).
    credential = {
        "private_key": material["key"].decode(),
        "public_certificate": material["leaf"].decode(),
    }
    result = ok(
        confidential(emu, client_id, credential, http_client=rec_client).acquire_token_for_client(
            [PP_SCOPE]
        )
    )

    header = jwt_header(rec_client.assertion())
    assert [base64.b64decode(c) for c in header["x5c"]] == [material["leaf_der"]]
    (rec,) = emu.requests("token")
    assert (rec.status, rec.extra["client_auth"]) == (200, "assertion")
    assert jwt_claims(result["access_token"])["azp"] == client_id  # a v2.0 token


@pytest.mark.parametrize("case", ["self-signed-same-subject", "trusted-ca-other-subject", "no-x5c"])
def test_subject_name_issuer_auth_rejects_near_misses(emu, case):
    material = sni_material()
    client_id = sni_app(emu)
    key = material["key"].decode()
    if case == "no-x5c":
        leaf = x509.load_pem_x509_certificate(material["leaf"])
        sha1 = leaf.fingerprint(hashes.SHA1()).hex()  # noqa: S303 - x5t is SHA-1 by definition
        credential = {"private_key": key, "thumbprint": sha1}
    else:
        pem = material["self_signed" if case.startswith("self") else "other_cn"]
        credential = {"private_key": key, "public_certificate": pem.decode()}

    result = confidential(emu, client_id, credential).acquire_token_for_client([PP_SCOPE])

    assert result.get("error_codes") == [700027], result
    assert result["error"] == "invalid_client"


# -- username/password (ROPC) -----------------------------------------------------------------
def test_ropc_goes_through_user_realm_then_password_grant(emu):
    s = emu.sample
    result = ok(ropc(public(emu), s.username, s.password, [PP_SCOPE]))

    (realm,) = emu.requests("userrealm")
    assert realm.status == 200
    assert realm.path == f"/common/userrealm/{s.username}"
    assert realm.host == urlsplit(emu.authority_host).netloc  # the port msal dropped is back
    (rec,) = emu.requests("token")
    assert (rec.grant_type, rec.client_id, rec.status) == ("password", s.public_client_id, 200)
    assert "client_auth" not in rec.extra  # a public client sends no credential
    assert {"username", "password"} <= set(rec.form_fields)
    for key in ("refresh_token", "id_token", "client_info"):
        assert result.get(key), key


def test_ropc_user_flow_returns_refresh_id_token_and_client_info(emu):
    user = emu.add_user("dana@contoso.onmicrosoft.com", "dana-pw-1")
    result = ok(ropc(public(emu), user.username, "dana-pw-1", [PP_SCOPE]))

    assert b64url_json(result["client_info"]) == {"uid": user.oid, "utid": emu.sample.tenant_id}
    id_claims = jwt_claims(result["id_token"])
    assert id_claims["aud"] == emu.sample.public_client_id
    assert id_claims["oid"] == id_claims["sub"] == user.oid
    assert id_claims["preferred_username"] == user.username
    assert id_claims["tid"] == emu.sample.tenant_id
    assert id_claims["iss"] == discovery(emu)["issuer"]
    verify_with_jwks(emu, result["id_token"])
    assert result["id_token_claims"] == id_claims  # msal accepted and decoded it


def test_confidential_client_may_use_password_grant_with_its_secret(emu):
    s = emu.sample
    app = confidential(emu, s.client_id, s.client_secret)
    ok(app.acquire_token_by_username_password(s.username, s.password, scopes=[PP_SCOPE]))
    (rec,) = emu.requests("token")
    assert (rec.grant_type, rec.status, rec.extra["client_auth"]) == ("password", 200, "secret")


# -- refresh -------------------------------------------------------------------------
def test_force_refresh_makes_a_refresh_token_grant(emu):
    s = emu.sample
    app = public(emu)
    first = ok(ropc(app, s.username, s.password, [PP_SCOPE]))
    (account,) = app.get_accounts(username=s.username)

    cached = ok(app.acquire_token_silent([PP_SCOPE], account=account))
    assert cached["access_token"] == first["access_token"]
    assert emu.count("token") == 1  # served from msal's cache

    refreshed = ok(app.acquire_token_silent([PP_SCOPE], account=account, force_refresh=True))
    assert refreshed["access_token"] != first["access_token"]
    assert [r.grant_type for r in emu.requests("token")] == ["password", "refresh_token"]
    rec = emu.requests("token")[-1]
    assert (rec.status, rec.client_id) == (200, s.public_client_id)
    assert "refresh_token" in rec.form_fields
    assert jwt_claims(refreshed["access_token"])["oid"] == jwt_claims(first["access_token"])["oid"]


def test_silent_call_for_a_new_resource_uses_the_refresh_token(emu):
    s = emu.sample
    app = public(emu)
    ok(ropc(app, s.username, s.password, [PP_SCOPE]))
    (account,) = app.get_accounts()

    other = ok(app.acquire_token_silent([POWERAPPS_SCOPE], account=account))

    rec = emu.requests("token")[-1]
    assert (rec.grant_type, rec.status) == ("refresh_token", 200)
    assert POWERAPPS_SCOPE in rec.scope.split()
    assert jwt_claims(other["access_token"])["aud"] == POWERAPPS_AUD
    assert other["scope"] == POWERAPPS_SCOPE


def test_refresh_token_of_another_client_is_refused(emu):
    s = emu.sample
    result = ok(ropc(public(emu), s.username, s.password, [PP_SCOPE]))
    other = emu.add_app(public_client=True, name="other-public")
    app = public(emu, other.client_id)
    refused = app.acquire_token_by_refresh_token(result["refresh_token"], [PP_SCOPE])
    assert refused["error"] == "invalid_grant"
    assert refused["error_codes"] == [70000]


# -- token claims ----------------------------------------------------------------------
@pytest.mark.parametrize(
    ("scope", "aud"),
    [
        (POWERAPPS_SCOPE, POWERAPPS_AUD),
        (PP_SCOPE, PP_AUD),
        ("https://org.crm.dynamics.com/.default", "https://org.crm.dynamics.com"),
    ],
)
def test_app_token_claims(emu, scope, aud):
    app = emu.add_app(secret="roles-secret", roles=("Environments.Read", "Admin.All"))
    before = int(time.time())
    result = ok(confidential(emu, app.client_id, "roles-secret").acquire_token_for_client([scope]))
    after = int(time.time())

    claims = jwt_claims(result["access_token"])
    v1 = aud != PP_AUD  # Power Apps and Dataverse take v1.0 tokens, the PP API v2.0
    assert claims["ver"] == ("1.0" if v1 else "2.0")
    assert claims["aud"] == aud
    assert claims["tid"] == emu.sample.tenant_id
    assert claims["appid" if v1 else "azp"] == app.client_id
    assert claims["roles"] == ["Environments.Read", "Admin.All"]
    assert "scp" not in claims
    assert claims["idtyp"] == "app"
    assert uuid.UUID(claims["oid"])
    assert claims["oid"] == claims["sub"] != app.client_id
    assert before <= claims["iat"] == claims["nbf"] <= after
    assert claims["exp"] - claims["iat"] == result["expires_in"] == 3600
    v1_issuer = f"https://sts.windows.net/{emu.sample.tenant_id}/"
    assert claims["iss"] == (v1_issuer if v1 else discovery(emu)["issuer"])
    assert result["scope"] == scope  # the requested scope is echoed


def test_app_token_oid_is_stable_per_app_and_has_no_roles_by_default(emu):
    s = emu.sample
    one = ok(confidential(emu, s.client_id, s.client_secret).acquire_token_for_client([PP_SCOPE]))
    two = ok(
        confidential(emu, s.client_id, s.client_secret).acquire_token_for_client([POWERAPPS_SCOPE])
    )
    c1, c2 = jwt_claims(one["access_token"]), jwt_claims(two["access_token"])
    assert c1["oid"] == c2["oid"]
    assert c1["uti"] != c2["uti"]
    assert "roles" not in c1


@pytest.mark.parametrize(
    ("scope", "aud", "scp"),
    [
        (PP_SCOPE, PP_AUD, "user_impersonation"),
        (POWERAPPS_SCOPE, POWERAPPS_AUD, "user_impersonation"),
        ("https://api.powerplatform.com/Environments.Read", PP_AUD, "Environments.Read"),
    ],
)
def test_user_token_claims(emu, scope, aud, scp):
    user = emu.add_user("erin@contoso.onmicrosoft.com", "erin-pw-1")
    result = ok(ropc(public(emu), user.username, "erin-pw-1", [scope]))

    claims = jwt_claims(result["access_token"])
    v1 = aud != PP_AUD  # Power Apps takes v1.0 tokens, the PP API v2.0
    assert claims["ver"] == ("1.0" if v1 else "2.0")
    assert claims["aud"] == aud
    assert claims["scp"] == scp
    assert claims["tid"] == emu.sample.tenant_id
    assert claims["oid"] == claims["sub"] == user.oid
    assert claims["appid" if v1 else "azp"] == emu.sample.public_client_id
    assert claims["upn" if v1 else "preferred_username"] == user.username
    assert claims["idtyp"] == "user"
    assert "roles" not in claims
    assert "wids" not in claims
    assert claims["iat"] == claims["nbf"]
    assert claims["exp"] - claims["iat"] == 3600
    # msal adds openid/profile/offline_access; the echoed scope is the resource scope alone
    assert result["scope"] == scope


def test_admin_user_token_carries_the_global_administrator_role(emu):
    s = emu.sample
    result = ok(ropc(public(emu), s.admin_username, s.admin_password, [PP_SCOPE]))
    assert jwt_claims(result["access_token"])["wids"] == [GLOBAL_ADMIN]


def test_access_token_signature_verifies_against_jwks(emu):
    s = emu.sample
    result = ok(
        confidential(emu, s.client_id, s.client_secret).acquire_token_for_client([PP_SCOPE])
    )
    token = result["access_token"]
    verify_with_jwks(emu, token)
    assert emu.count("jwks") == 1

    head, _, sig = token.split(".")
    forged = dict(jwt_claims(token), roles=["Admin.All"])
    tampered = ".".join((head, b64url(json.dumps(forged).encode()), sig))
    with pytest.raises(InvalidSignature):
        verify_with_jwks(emu, tampered)


# -- lifetimes ---------------------------------------------------------------------------
def test_token_lifetime_follows_policy(ppauth_emulator):
    emu = ppauth_emulator
    s = emu.sample
    emu.policy.lifetime = 120
    result = ok(
        confidential(emu, s.client_id, s.client_secret).acquire_token_for_client([PP_SCOPE])
    )
    assert result["expires_in"] == 120
    claims = jwt_claims(result["access_token"])
    assert claims["exp"] - claims["iat"] == 120
    assert "refresh_on" not in result


def test_app_token_lifetime_overrides_policy(ppauth_emulator):
    emu = ppauth_emulator
    emu.policy.lifetime = 120
    app = emu.add_app(secret="short-secret", token_lifetime=300)
    result = ok(
        confidential(emu, app.client_id, "short-secret").acquire_token_for_client([PP_SCOPE])
    )
    assert result["expires_in"] == 300


def test_refresh_in_appears_when_set(ppauth_emulator):
    emu = ppauth_emulator
    s = emu.sample
    token_url = discovery(emu)["token_endpoint"]
    form = {
        "grant_type": "client_credentials",
        "client_id": s.client_id,
        "client_secret": s.client_secret,
        "scope": PP_SCOPE,
    }
    plain = requests.post(token_url, data=form, verify=emu.ca_bundle, timeout=10).json()
    assert "refresh_in" not in plain

    emu.policy.refresh_in = 60
    raw = requests.post(token_url, data=form, verify=emu.ca_bundle, timeout=10).json()
    assert raw["refresh_in"] == 60
    assert raw["expires_in"] == 3600

    before = int(time.time())
    result = ok(
        confidential(emu, s.client_id, s.client_secret).acquire_token_for_client([PP_SCOPE])
    )
    # msal turns refresh_in into an absolute refresh_on
    assert before + 60 <= result["refresh_on"] <= int(time.time()) + 60


# -- discovery and authorities ----------------------------------------------------------------
@pytest.mark.parametrize("by", ["id", "domain"])
def test_discovery_document(emu, by):
    s = emu.sample
    doc = discovery(emu, s.tenant_id if by == "id" else s.tenant_domain)

    port = emu.ports["identity"]
    assert urlsplit(doc["token_endpoint"]).port == port
    assert doc["token_endpoint"] == f"{emu.authority_host}/{s.tenant_id}/oauth2/v2.0/token"
    assert doc["issuer"] == f"{emu.authority_host}/{s.tenant_id}/v2.0"
    assert doc["jwks_uri"] == f"{emu.authority_host}/{s.tenant_id}/discovery/v2.0/keys"
    assert doc["authorization_endpoint"].startswith(f"https://127.0.0.1:{port}/")
    assert "private_key_jwt" in doc["token_endpoint_auth_methods_supported"]
    (rec,) = emu.requests("discovery")
    assert rec.status == 200


def test_common_discovery_has_templated_issuer(emu):
    doc = discovery(emu, "common")
    assert doc["issuer"] == f"{emu.authority_host}/{{tenantid}}/v2.0"
    assert doc["token_endpoint"] == f"{emu.authority_host}/common/oauth2/v2.0/token"


@pytest.mark.parametrize("domain", ["contoso.onmicrosoft.com", "CONTOSO.onmicrosoft.com"])
def test_tenant_domain_works_as_authority(emu, domain):
    s = emu.sample
    app = confidential(emu, s.client_id, s.client_secret, authority=emu.authority(domain))
    result = ok(app.acquire_token_for_client([PP_SCOPE]))
    assert jwt_claims(result["access_token"])["tid"] == s.tenant_id
    (rec,) = emu.requests("token")
    assert rec.path == f"/{s.tenant_id}/oauth2/v2.0/token"  # msal posts where discovery said


def test_second_tenant_by_domain_with_certificate(ppauth_emulator):
    emu = ppauth_emulator
    tenant = emu.add_tenant("fabrikam.example")
    cert = make_client_certificate("fabrikam client", slot="fabrikam")
    app = emu.add_app(tenant="fabrikam.example", certificate=cert, roles=("Fabrikam.Read",))

    result = ok(
        confidential(
            emu, app.client_id, certificate_credential(cert), authority=emu.authority(tenant.domain)
        ).acquire_token_for_client([PP_SCOPE])
    )
    claims = jwt_claims(result["access_token"])
    assert claims["tid"] == tenant.id != emu.sample.tenant_id
    assert claims["iss"] == f"{emu.authority_host}/{tenant.id}/v2.0"
    assert claims["roles"] == ["Fabrikam.Read"]
    (rec,) = emu.requests("token")
    assert rec.extra["client_auth"] == "assertion"


def test_ropc_through_common_authority_finds_the_users_tenant(emu):
    s = emu.sample
    app = msal.PublicClientApplication(
        s.public_client_id,
        authority=emu.authority("organizations"),
        instance_discovery=False,
        http_client=emu.http_client(),
    )
    result = ok(ropc(app, s.username, s.password, [PP_SCOPE]))
    assert jwt_claims(result["access_token"])["tid"] == s.tenant_id
    (rec,) = emu.requests("token")
    assert rec.path == "/organizations/oauth2/v2.0/token"


def test_sample_certificate_fingerprints_match_its_pem(emu):
    cert = emu.sample.certificate
    der = x509.load_pem_x509_certificate(cert.cert_pem).public_bytes(serialization.Encoding.DER)
    assert cert.thumbprint == hashlib.sha1(der).hexdigest().upper()  # noqa: S324
    assert cert.thumbprint_sha256 == hashlib.sha256(der).hexdigest().upper()
