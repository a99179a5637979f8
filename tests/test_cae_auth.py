"""Claims challenges (continuous access evaluation) in the provider and the requests auth.

After ``emu.revoke(token, claims_challenge=True)`` the emulator's resources answer the
principal's tokens with a 401 carrying ``error="insufficient_claims"`` and base64
claims; only a token requested with those claims (msal's ``claims_challenge``, the
``claims`` form field) passes. Every point is proved on the emulator's counters.
"""

from __future__ import annotations

import base64
import json
import logging
import threading
from typing import Any

import pytest
import requests

from requests_ppauth import PowerPlatformAuth
from requests_ppauth.auth import claims_from_challenge
from requests_ppauth.credentials import ClientSecret, UsernamePassword
from requests_ppauth.testing import Emulator
from requests_ppauth.tokens import ROPCWarning

POWERAPPS_SCOPE = "https://service.powerapps.com//.default"
BAP_ENVIRONMENTS = "/providers/Microsoft.BusinessAppPlatform/scopes/admin/environments"


def secret(emu: Emulator) -> ClientSecret:
    s = emu.sample
    assert s is not None
    return ClientSecret(
        tenant_id=s.tenant_id,
        client_id=s.client_id,
        secret=s.client_secret,
        authority_host=emu.authority_host,
    )


def make_auth(emu: Emulator, credential: Any = None, **options: Any) -> PowerPlatformAuth:
    return PowerPlatformAuth(
        credential=credential or secret(emu),
        verify=emu.ca_bundle,
        hosts={emu.api_url.removeprefix("https://"): POWERAPPS_SCOPE},
        **options,
    )


def bap(emu: Emulator, auth: PowerPlatformAuth) -> requests.Response:
    return requests.get(
        f"{emu.api_url}{BAP_ENVIRONMENTS}",
        params={"api-version": "2020-10-01"},
        auth=auth,
        verify=emu.ca_bundle,
        timeout=10,
    )


def bap_statuses(emu: Emulator) -> list[int]:
    return [r.status for r in emu.requests() if r.path == BAP_ENVIRONMENTS]


def token_requests(emu: Emulator) -> list[Any]:
    return emu.requests("token")


# -- the header --------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("header", "expected"),
    [
        # padded, standard alphabet, the layout Microsoft documents
        (
            'Bearer realm="", authorization_uri="https://x/authorize", '
            'error="insufficient_claims", claims="eyJhIjoxfQ=="',
            '{"a":1}',
        ),
        # unpadded, parameters in another order, other case
        ('Bearer CLAIMS="eyJhIjoxfQ", Error="insufficient_claims"', '{"a":1}'),
        # url-safe alphabet: "~~~" is "fn5+" in the standard one, "fn5-" in it
        ('Bearer error="insufficient_claims", claims="fn5-"', "~~~"),
        ('Bearer error="invalid_token", claims="eyJhIjoxfQ=="', None),  # not a claims challenge
        ('Bearer error="insufficient_claims"', None),  # no claims to send
        ('Bearer error="insufficient_claims", claims="!!!"', None),  # not base64
        (None, None),
    ],
)
def test_claims_from_challenge(header: str | None, expected: str | None) -> None:
    assert claims_from_challenge(header) == expected


# -- the provider ------------------------------------------------------------------------
def test_get_with_claims_bypasses_both_caches_and_stores_the_answer(ppauth_emulator):
    emu = ppauth_emulator
    auth = make_auth(emu)
    assert bap(emu, auth).status_code == 200
    first = auth.provider.get(POWERAPPS_SCOPE)
    assert emu.count("token") == 1

    claims = '{"access_token":{"nbf":{"essential":true, "value":"1"}}}'
    fresh = auth.provider.get(POWERAPPS_SCOPE, claims=claims)
    assert fresh.token != first.token
    assert emu.count("token") == 2  # the fresh token in memory and on disk was not used
    rec = token_requests(emu)[-1]
    assert rec.grant_type == "client_credentials"
    assert "claims" in rec.form_fields

    # stored as usual: this process and a new one (same shared cache) reuse it
    assert auth.provider.get(POWERAPPS_SCOPE).token == fresh.token
    other = make_auth(emu)
    assert other.provider.get(POWERAPPS_SCOPE).token == fresh.token
    assert emu.count("token") == 2


def test_concurrent_challenges_make_one_request(ppauth_emulator):
    emu = ppauth_emulator
    auth = make_auth(emu)
    provider = auth.provider
    held = provider.get(POWERAPPS_SCOPE)
    claims = '{"access_token":{"nbf":{"essential":true, "value":"2"}}}'
    emu.inject("token", latency=0.5)  # every thread comes in while the first one waits
    barrier = threading.Barrier(8)
    got: list[str] = []

    def challenged() -> None:
        barrier.wait()
        got.append(provider.get(POWERAPPS_SCOPE, claims=claims).token)

    threads = [threading.Thread(target=challenged) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(got) == 8 and len(set(got)) == 1 and got[0] != held.token
    assert emu.count("token") == 2
    # a later challenge (the new token refused too) is a new request
    provider.get(POWERAPPS_SCOPE, claims=claims)
    assert emu.count("token") == 3


# -- the requests auth -------------------------------------------------------------------
def test_requests_auth_answers_the_claims_challenge_once(ppauth_emulator):
    emu = ppauth_emulator
    auth = make_auth(emu)
    assert bap(emu, auth).status_code == 200
    first = auth.provider.get(POWERAPPS_SCOPE).token
    event = emu.revoke(first, claims_challenge=True)
    emu.reset_counts()

    resp = bap(emu, auth)
    assert resp.status_code == 200, resp.text
    assert [h.status_code for h in resp.history] == [401]
    assert bap_statuses(emu) == [401, 200]
    (rec,) = token_requests(emu)
    assert rec.grant_type == "client_credentials"
    assert "claims" in rec.form_fields
    # the token carries what the challenge asked for
    token = auth.provider.tokens[POWERAPPS_SCOPE].token
    assert token != first
    segment = token.split(".")[1]
    assert json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))["nbf"] >= (
        event or 0
    )

    # later requests reuse it: no token request
    assert bap(emu, auth).status_code == 200
    assert emu.count("token") == 1


def test_a_second_challenge_goes_back_to_the_caller(ppauth_emulator):
    emu = ppauth_emulator
    auth = make_auth(emu)
    assert bap(emu, auth).status_code == 200
    first = auth.provider.get(POWERAPPS_SCOPE).token
    emu.revoke(first, claims_challenge=True)
    emu.reset_counts()

    class RevokeAgain(logging.Handler):
        """A new event right after the answering token is issued: it is stale at once."""

        def emit(self, record: logging.LogRecord) -> None:
            if record.getMessage().startswith("token for"):
                emu.revoke(first, claims_challenge=True)

    handler = RevokeAgain(logging.DEBUG)
    logger = logging.getLogger("requests_ppauth")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        resp = bap(emu, auth)
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    assert resp.status_code == 401
    assert claims_from_challenge(resp.headers["WWW-Authenticate"]) is not None
    assert [h.status_code for h in resp.history] == [401]
    assert bap_statuses(emu) == [401, 401]  # one resend, no loop
    assert emu.count("token") == 1


def test_plain_401_still_forgets_and_refetches(ppauth_emulator):
    emu = ppauth_emulator
    auth = make_auth(emu)
    assert bap(emu, auth).status_code == 200
    emu.revoke()  # no claims challenge: the plain rule
    emu.reset_counts()
    resp = bap(emu, auth)
    assert resp.status_code == 200 and [h.status_code for h in resp.history] == [401]
    (rec,) = token_requests(emu)
    assert "claims" not in rec.form_fields


def test_ropc_answers_the_challenge_through_the_refresh_token(ppauth_emulator):
    emu = ppauth_emulator
    s = emu.sample
    assert s is not None
    cred = UsernamePassword(
        tenant_id=s.tenant_id,
        client_id=s.public_client_id,
        username=s.username,
        password=s.password,
        authority_host=emu.authority_host,
    )
    auth = make_auth(emu, cred)
    with pytest.warns(ROPCWarning):
        assert bap(emu, auth).status_code == 200
    first = auth.provider.get(POWERAPPS_SCOPE).token
    emu.revoke(first, claims_challenge=True)
    emu.reset_counts()

    resp = bap(emu, auth)
    assert resp.status_code == 200, resp.text
    assert bap_statuses(emu) == [401, 200]
    (rec,) = token_requests(emu)
    assert rec.grant_type == "refresh_token"  # no password sent again
    assert "claims" in rec.form_fields


def test_device_code_answers_the_challenge_without_a_new_sign_in(ppauth_emulator):
    from tests.test_new_flows_auth import Person, device

    emu = ppauth_emulator
    auth = make_auth(emu, device(emu, Person(emu)))
    assert bap(emu, auth).status_code == 200
    assert emu.count("devicecode") == 1
    first = auth.provider.get(POWERAPPS_SCOPE).token
    emu.revoke(first, claims_challenge=True)
    emu.reset_counts()

    resp = bap(emu, auth)
    assert resp.status_code == 200, resp.text
    assert bap_statuses(emu) == [401, 200]
    (rec,) = token_requests(emu)
    assert rec.grant_type == "refresh_token" and "claims" in rec.form_fields
    assert emu.count("devicecode") == 0  # the person was not asked again


def test_a_first_device_sign_in_under_a_challenge_carries_the_claims(ppauth_emulator):
    """No account signed in yet and a claims challenge: the device sign-in itself asks
    for the claims, so its token satisfies the challenge."""
    from tests.test_new_flows_auth import Person, device

    emu = ppauth_emulator
    auth = make_auth(emu, device(emu, Person(emu)))
    claims = '{"access_token":{"nbf":{"essential":true,"value":"1700000000"}}}'
    assert auth.provider.get(POWERAPPS_SCOPE, claims=claims).token
    assert emu.count("devicecode") == 1
    (poll,) = [r for r in token_requests(emu) if r.grant_type and "device_code" in r.grant_type]
    assert "claims" in poll.form_fields, poll.form_fields


def test_managed_identity_asks_the_endpoint_again(ppauth_emulator, ppauth_env):
    from requests_ppauth.plugins import reset_plugins

    emu = ppauth_emulator
    ppauth_env.set(
        PPAUTH_DISABLE_PLUGINS="*",
        **emu.managed_identity_env("imds"),
        PPAUTH_MANAGED_IDENTITY="system",
    )
    reset_plugins()
    auth = PowerPlatformAuth(hosts={emu.api_url.removeprefix("https://"): POWERAPPS_SCOPE})
    assert bap(emu, auth).status_code == 200
    first = auth.provider.get(POWERAPPS_SCOPE).token
    emu.revoke(first, claims_challenge=True)
    emu.reset_counts()

    bap(emu, auth)
    # msal's managed identity client skips its cache for a claims challenge: the endpoint
    # is asked again, once, and the request resent once
    assert emu.count("imds") == 1
    assert len(bap_statuses(emu)) == 2 and bap_statuses(emu)[0] == 401
    assert auth.provider.tokens[POWERAPPS_SCOPE].token != first
