"""The emulated authorization code flow with PKCE, driven by the real msal and a scripted browser.

``acquire_token_interactive`` runs unchanged: the standard library's ``webbrowser``
starts ``BROWSER`` (the script ``write_browser_script`` writes), which signs in on the
emulator's pages and posts the response to msal's loopback listener. The raw-HTTP
tests walk the same pages with ``browser.sign_in`` and redeem codes themselves.

``webbrowser`` caches its browser list once per process, so every test uses the
one script path of ``browser_script``; what differs per test comes from the
``PPAUTH_TEST_BROWSER_*`` variables, read by the browser process.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
import stat
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import msal
import pytest
import requests

from requests_ppauth.testing import Emulator
from requests_ppauth.testing import browser as scripted
from requests_ppauth.testing._authorize import MFA_CODE

PP_SCOPE = "https://api.powerplatform.com/.default"
POWERAPPS_SCOPE = "https://service.powerapps.com//.default"
REDIRECT = "http://localhost:8400"
DECLINED = "AADSTS65004: User declined to consent to access the app."


# -- helpers -------------------------------------------------------------------------
def jwt_claims(token: str) -> dict[str, Any]:
    segment = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))


def pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode()).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def new_user(emu: Emulator, **flags: Any) -> tuple[str, str]:
    username = f"u{uuid.uuid4().hex[:10]}@contoso.onmicrosoft.com"
    password = "pw-" + secrets.token_urlsafe(12)
    emu.add_user(username, password, **flags)
    return username, password


def public_app(emu: Emulator) -> msal.PublicClientApplication:
    assert emu.sample is not None
    return msal.PublicClientApplication(
        emu.sample.public_client_id,
        authority=emu.authority(),
        instance_discovery=False,
        http_client=emu.http_client(),
    )


def session(emu: Emulator) -> requests.Session:
    """Trusts the emulator's CA whatever REQUESTS_CA_BUNDLE says (trust_env off)."""
    s = requests.Session()
    s.trust_env = False
    s.verify = emu.ca_bundle
    return s


def authorize_url(emu: Emulator, challenge: str | None = None, **params: str) -> str:
    assert emu.sample is not None
    query = {
        "client_id": emu.sample.public_client_id,
        "response_type": "code",
        "redirect_uri": REDIRECT,
        "response_mode": "form_post",
        "scope": f"{PP_SCOPE} openid profile offline_access",
        "state": "state-" + secrets.token_hex(4),
        "nonce": "nonce-" + secrets.token_hex(4),
    }
    if challenge is not None:
        query.update(code_challenge=challenge, code_challenge_method="S256")
    query.update(params)
    return f"{emu.authority()}/oauth2/v2.0/authorize?{urlencode(query)}"


def redeem(emu: Emulator, code: str, verifier: str | None, **extra: str) -> requests.Response:
    assert emu.sample is not None
    form = {
        "grant_type": "authorization_code",
        "client_id": emu.sample.public_client_id,
        "code": code,
        "redirect_uri": REDIRECT,
        "scope": f"{PP_SCOPE} openid profile offline_access",
    }
    if verifier is not None:
        form["code_verifier"] = verifier
    form.update(extra)
    with session(emu) as s:
        return s.post(f"{emu.authority()}/oauth2/v2.0/token", data=form)


def raw_sign_in(emu: Emulator, url: str, username: str, password: str, **kw: Any) -> Any:
    creds = scripted.Credentials(username, password, **kw)
    return scripted.sign_in(url, creds, verify=emu.ca_bundle, deliver=False)


class Browser:
    """Sets the scripted browser's variables for one test and reads its log back."""

    def __init__(self, mp: pytest.MonkeyPatch, script: str, log: Path, emu: Emulator) -> None:
        self.mp = mp
        self.log_path = log
        mp.setenv("BROWSER", script)
        mp.setenv(scripted.ENV_CA, emu.ca_bundle)
        mp.setenv(scripted.ENV_LOG, str(log))

    def as_user(
        self, username: str, password: str, *, mfa: str | None = None, consent: str | None = None
    ) -> None:
        self.mp.setenv(scripted.ENV_USERNAME, username)
        self.mp.setenv(scripted.ENV_PASSWORD, password)
        if mfa is not None:
            self.mp.setenv(scripted.ENV_MFA_CODE, mfa)
        if consent is not None:
            self.mp.setenv(scripted.ENV_CONSENT, consent)

    def events(self, name: str | None = None) -> list[dict[str, Any]]:
        lines = self.log_path.read_text().splitlines() if self.log_path.exists() else []
        events = [json.loads(line) for line in lines]
        return [e for e in events if name in (None, e["event"])]

    def steps(self) -> list[str]:
        return [e["step"] for e in self.events("submit")]


@pytest.fixture(scope="session")
def browser_script(tmp_path_factory: pytest.TempPathFactory) -> str:
    return scripted.write_browser_script(tmp_path_factory.mktemp("browser"))


@pytest.fixture
def browser(monkeypatch, browser_script, tmp_path, emu) -> Browser:
    for name in list(os.environ):
        if name.startswith("PPAUTH_TEST_BROWSER_"):
            monkeypatch.delenv(name)
    return Browser(monkeypatch, browser_script, tmp_path / "browser.jsonl", emu)


def interactive(emu: Emulator, scopes: list[str], **kw: Any) -> dict[str, Any]:
    return public_app(emu).acquire_token_interactive(scopes, timeout=60, **kw)


# -- through msal's acquire_token_interactive ----------------------------------------
def test_a_user_signs_in_through_the_browser_and_gets_their_token(emu, browser):
    username, password = new_user(emu)
    browser.as_user(username, password)
    result = interactive(emu, [PP_SCOPE])
    assert "access_token" in result, result
    claims = jwt_claims(result["access_token"])
    assert claims["preferred_username"] == username
    assert claims["aud"] == "https://api.powerplatform.com"
    assert claims["idtyp"] == "user"
    assert result["id_token_claims"]["preferred_username"] == username
    assert result["id_token_claims"]["oid"] == claims["oid"]
    # the path msal took: the authorize page, one form, then the code grant with PKCE
    authorize = emu.requests("authorize")
    assert [(r.method, r.status) for r in authorize] == [("GET", 200), ("POST", 200)]
    (token,) = emu.requests("token")
    assert token.grant_type == "authorization_code"
    assert token.status == 200
    assert {"code", "code_verifier", "redirect_uri"} <= set(token.form_fields)
    assert browser.steps() == ["password"]
    (delivered,) = browser.events("delivered")
    assert delivered["status"] == 200  # msal's listener accepted the response


def test_state_and_nonce_travel_back_as_msal_requires(emu, browser):
    username, password = new_user(emu)
    browser.as_user(username, password)
    result = interactive(emu, [PP_SCOPE])
    assert "access_token" in result, result
    (request,) = browser.events("authorize")
    params = request["params"]
    assert params["response_mode"] == "form_post"
    assert params["code_challenge_method"] == "S256"
    assert request["pkce"] is True
    (response,) = browser.events("response")
    assert response["state"] == params["state"]
    assert {"code", "client_info", "state"} <= set(response["fields"])
    # msal sends sha256(nonce) and compares it with the id_token's claim
    assert result["id_token_claims"]["nonce"] == params["nonce"]
    assert len(params["nonce"]) == 64
    assert "auth_time" in result["id_token_claims"]
    # the same request as the emulator logged it
    (get,) = [r for r in emu.requests("authorize") if r.method == "GET"]
    assert get.client_id == params["client_id"]
    assert get.scope == params["scope"]


def test_the_browser_log_holds_no_password_or_code(emu, browser):
    username, password = new_user(emu, mfa_required=True)
    browser.as_user(username, password, mfa=MFA_CODE)
    result = interactive(emu, [PP_SCOPE])
    assert "access_token" in result, result
    text = browser.log_path.read_text()
    assert password not in text
    assert MFA_CODE not in text
    assert '"code"' in text  # the field is named, never shown


def test_an_mfa_user_passes_the_second_step(emu, browser):
    username, password = new_user(emu, mfa_required=True)
    browser.as_user(username, password, mfa=MFA_CODE)
    app = public_app(emu)
    result = app.acquire_token_interactive([POWERAPPS_SCOPE], timeout=60)
    assert "access_token" in result, result
    claims = jwt_claims(result["access_token"])
    assert claims["upn"] == username
    assert "mfa" in claims["amr"]
    assert browser.steps() == ["password", "mfa"]
    # the refresh token remembers the MFA sign-in: no AADSTS50076 on refresh
    (account,) = app.get_accounts(username=username)
    refreshed = app.acquire_token_silent([POWERAPPS_SCOPE], account=account, force_refresh=True)
    assert refreshed is not None
    assert "access_token" in refreshed, refreshed


def test_the_password_grant_still_demands_mfa_of_that_user(emu):
    username, password = new_user(emu, mfa_required=True)
    with session(emu) as s:
        resp = s.post(
            f"{emu.authority()}/oauth2/v2.0/token",
            data={
                "grant_type": "password",
                "client_id": emu.sample.public_client_id,
                "username": username,
                "password": password,
                "scope": PP_SCOPE,
            },
        )
    assert resp.json()["error_codes"] == [50076]


def test_a_user_who_accepts_consent_gets_a_token_and_the_consent_is_kept(emu, browser):
    username, password = new_user(emu, consented=False)
    browser.as_user(username, password, consent="accept")
    result = interactive(emu, [PP_SCOPE])
    assert "access_token" in result, result
    assert browser.steps() == ["password", "consent"]
    assert emu.directory.user(username).consented is True
    # the next sign-in skips the consent page
    browser.log_path.unlink()
    again = interactive(emu, [PP_SCOPE])
    assert "access_token" in again, again
    assert browser.steps() == ["password"]


def test_a_user_who_cancels_consent_gets_access_denied_65004(emu, browser):
    username, password = new_user(emu, consented=False)
    browser.as_user(username, password, consent="cancel")
    result = interactive(emu, [PP_SCOPE])
    assert result["error"] == "access_denied"
    assert result["error_description"].startswith(DECLINED)
    assert "access_token" not in result
    assert emu.count("token") == 0  # msal never redeemed anything
    (response,) = browser.events("response")
    assert response["error_subcode"] == "cancel"
    assert emu.directory.user(username).consented is False


def test_prompt_consent_asks_even_a_consented_user(emu, browser):
    username, password = new_user(emu)
    browser.as_user(username, password)
    result = interactive(emu, [PP_SCOPE], prompt="consent")
    assert "access_token" in result, result
    assert browser.steps() == ["password", "consent"]


def test_the_script_runs_this_module_and_rejects_missing_settings(emu, browser, browser_script):
    text = Path(browser_script).read_text()
    assert text.startswith("#!/bin/sh\nexec ")
    assert '-m requests_ppauth.testing.browser "$@"' in text
    assert stat.S_IMODE(Path(browser_script).stat().st_mode) == 0o700
    # no credentials: a usage error webbrowser sees, not a silent detached failure
    assert scripted.main(["https://127.0.0.1/x"]) == 2
    assert scripted.main([]) == 2


def test_credentials_keep_secrets_out_of_their_repr():
    creds = scripted.Credentials("a@b.example", "hunter2-secret", mfa_code="987654")
    assert "hunter2-secret" not in repr(creds)
    assert "987654" not in repr(creds)
    with pytest.raises(scripted.BrowserError, match="accept"):
        scripted.Credentials("a@b.example", "x", consent="maybe")
    with pytest.raises(scripted.BrowserError, match=scripted.ENV_PASSWORD):
        scripted.Credentials.from_env({scripted.ENV_USERNAME: "a@b.example"})


# -- raw HTTP: the pages and the code grant ---------------------------------------------
def test_a_wrong_code_verifier_is_refused_501481(emu):
    username, password = new_user(emu)
    verifier, challenge = pkce()
    outcome = raw_sign_in(emu, authorize_url(emu, challenge), username, password)
    assert outcome.code
    wrong = redeem(emu, outcome.code, pkce()[0])
    assert wrong.status_code == 400
    body = wrong.json()
    assert body["error"] == "invalid_grant"
    assert body["error_codes"] == [501481]
    assert body["error_description"].startswith(
        "AADSTS501481: The Code_Verifier does not match the code_challenge supplied in the "
        "authorization request."
    )
    missing = redeem(emu, outcome.code, None)
    assert missing.json()["error_codes"] == [501481]
    # the right verifier still works: a failed check does not burn the code
    ok = redeem(emu, outcome.code, verifier)
    assert ok.status_code == 200, ok.text
    assert jwt_claims(ok.json()["id_token"])["preferred_username"] == username


def test_a_code_is_single_use_54005(emu):
    username, password = new_user(emu)
    verifier, challenge = pkce()
    outcome = raw_sign_in(emu, authorize_url(emu, challenge), username, password)
    first = redeem(emu, outcome.code, verifier)
    assert first.status_code == 200, first.text
    second = redeem(emu, outcome.code, verifier)
    assert second.status_code == 400
    assert second.json()["error_codes"] == [54005]
    assert second.json()["error_description"].startswith(
        "AADSTS54005: OAuth2 Authorization code was already redeemed, please retry with a new "
        "valid code or use an existing refresh token."
    )


def test_an_unknown_code_is_refused_70008(emu):
    resp = redeem(emu, "1.A" + secrets.token_urlsafe(32), "x" * 43)
    assert resp.json()["error"] == "invalid_grant"
    assert resp.json()["error_codes"] == [70008]


def test_the_token_request_must_repeat_the_redirect_uri(emu):
    username, password = new_user(emu)
    verifier, challenge = pkce()
    outcome = raw_sign_in(emu, authorize_url(emu, challenge), username, password)
    resp = redeem(emu, outcome.code, verifier, redirect_uri="http://localhost:9999")
    body = resp.json()
    assert body["error_codes"] == [70002, 50011]
    assert "http://localhost:9999" in body["error_description"]
    assert REDIRECT in body["error_description"]


def test_the_response_carries_state_client_info_and_the_nonce_reaches_the_id_token(emu):
    username, password = new_user(emu)
    verifier, challenge = pkce()
    url = authorize_url(emu, challenge, state="s-123", nonce="n-456")
    outcome = raw_sign_in(emu, url, username, password)
    assert outcome.response["state"] == "s-123"
    info = json.loads(base64.urlsafe_b64decode(outcome.response["client_info"] + "=="))
    user = emu.directory.user(username)
    assert info == {"uid": user.oid, "utid": user.tenant_id}
    body = redeem(emu, outcome.code, verifier).json()
    assert jwt_claims(body["id_token"])["nonce"] == "n-456"


def test_response_mode_query_redirects_with_the_code(emu):
    username, password = new_user(emu)
    verifier, challenge = pkce()
    url = authorize_url(emu, challenge, response_mode="query", state="q-1")
    with session(emu) as s:
        page = s.get(url)
        form = scripted.parse_page(page.url, page.status_code, page.text).forms[0]
        resp = s.post(
            emu.authority_host + form.action,
            data=dict(form.fields, username=username, password=password),
            allow_redirects=False,
        )
    assert resp.status_code == 302
    location = urlsplit(resp.headers["Location"])
    assert f"{location.scheme}://{location.netloc}" == REDIRECT
    query = dict(parse_qsl(location.query))
    assert query["state"] == "q-1"
    assert redeem(emu, query["code"], verifier).status_code == 200


def test_a_wrong_password_shows_the_page_again_with_50126(emu):
    username, _ = new_user(emu)
    outcome = raw_sign_in(emu, authorize_url(emu, pkce()[1]), username, "not-the-password")
    assert outcome.error_code == 50126
    assert outcome.code is None
    assert "AADSTS50126" in outcome.error_text
    assert "not-the-password" not in outcome.error_text


def test_an_unknown_account_shows_50034(emu):
    outcome = raw_sign_in(emu, authorize_url(emu), "nobody@contoso.onmicrosoft.com", "x")
    assert outcome.error_code == 50034


def test_a_wrong_one_time_code_shows_500121(emu):
    username, password = new_user(emu, mfa_required=True)
    outcome = raw_sign_in(emu, authorize_url(emu), username, password, mfa_code="000000")
    assert outcome.error_code == 500121
    assert outcome.steps == ["password", "mfa"]
    assert outcome.code is None


def test_a_redirect_uri_not_allowed_is_shown_not_followed_50011(emu):
    url = authorize_url(emu, redirect_uri="https://attacker.example/callback")
    with session(emu) as s:
        resp = s.get(url, allow_redirects=False)
    assert resp.status_code == 400
    assert "Location" not in resp.headers
    page = scripted.parse_page(resp.url, resp.status_code, resp.text)
    assert page.error_code == 50011
    assert page.forms == []
    assert "AADSTS50011" in page.error_text
    (record,) = emu.requests("authorize")
    assert record.extra["aadsts"] == 50011


@pytest.mark.parametrize(
    "redirect_uri",
    ["http://127.0.0.1:5000/cb", "http://localhost", "http://localhost:61234/a/b"],
)
def test_loopback_redirect_uris_are_accepted_on_any_port(emu, redirect_uri):
    with session(emu) as s:
        resp = s.get(authorize_url(emu, redirect_uri=redirect_uri))
    page = scripted.parse_page(resp.url, resp.status_code, resp.text)
    assert (resp.status_code, page.step) == (200, "password")


def test_an_unknown_client_is_refused_700016(emu):
    url = authorize_url(emu, client_id=str(uuid.uuid4()))
    outcome = raw_sign_in(emu, url, "user@contoso.onmicrosoft.com", "x")
    assert outcome.error_code == 700016
    assert outcome.response == {}


def test_request_errors_go_back_to_the_app(emu):
    with session(emu) as s:
        resp = s.get(authorize_url(emu, response_type="token"))
    form = scripted.parse_page(resp.url, resp.status_code, resp.text).forms[0]
    assert form.action == REDIRECT
    assert form.fields["error"] == "unsupported_response_type"
    assert form.fields["error_description"].startswith("AADSTS700054")
    assert form.fields["state"].startswith("state-")


def test_prompt_none_answers_login_required(emu):
    outcome = raw_sign_in(emu, authorize_url(emu, prompt="none"), "u@x", "x")
    assert outcome.response["error"] == "login_required"
    assert outcome.response["error_description"].startswith("AADSTS50058")


def test_a_web_app_redeems_with_its_secret_through_msal_auth_code_flow(emu):
    """msal's two-call API (a web app's): its own state and nonce checks pass."""
    assert emu.sample is not None
    username, password = new_user(emu)
    app = msal.ConfidentialClientApplication(
        emu.sample.client_id,
        client_credential=emu.sample.client_secret,
        authority=emu.authority(),
        instance_discovery=False,
        http_client=emu.http_client(),
    )
    flow = app.initiate_auth_code_flow(
        [PP_SCOPE], redirect_uri="http://localhost:5000/getAToken", response_mode="form_post"
    )
    outcome = raw_sign_in(emu, flow["auth_uri"], username, password)
    result = app.acquire_token_by_auth_code_flow(flow, outcome.response)
    assert "access_token" in result, result
    assert jwt_claims(result["access_token"])["azpacr"] == "1"  # the secret authenticated it
    assert result["id_token_claims"]["preferred_username"] == username
    (token,) = emu.requests("token")
    assert token.extra["client_auth"] == "secret"


def test_a_web_app_without_its_secret_is_refused(emu):
    assert emu.sample is not None
    username, password = new_user(emu)
    verifier, challenge = pkce()
    url = authorize_url(emu, challenge, client_id=emu.sample.client_id)
    outcome = raw_sign_in(emu, url, username, password)
    resp = redeem(emu, outcome.code, verifier, client_id=emu.sample.client_id)
    assert resp.json()["error_codes"] == [7000218]


def test_the_organizations_authority_signs_in_at_the_apps_home_tenant(emu, browser):
    assert emu.sample is not None
    username, password = new_user(emu)
    browser.as_user(username, password)
    app = msal.PublicClientApplication(
        emu.sample.public_client_id,
        authority=f"{emu.authority_host}/organizations",
        instance_discovery=False,
        http_client=emu.http_client(),
    )
    result = app.acquire_token_interactive([PP_SCOPE], timeout=60)
    assert "access_token" in result, result
    assert jwt_claims(result["access_token"])["tid"] == emu.sample.tenant_id
    assert all("/organizations/" in r.path for r in emu.requests("authorize"))
