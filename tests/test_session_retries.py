"""``requests_ppauth.session()``: Retry-After on 429 and 503, bounded, composed with the
401 retry; and ``ppauth request`` saying when it waited. Against the emulator's
Dataverse service protection 429s and injected 503s, with real waits (1 s)."""

from __future__ import annotations

import logging
import time
from typing import Any

import pytest
import requests

import requests_ppauth
from requests_ppauth.credentials import ClientSecret
from requests_ppauth.retries import DEFAULT_TIMEOUT, RetryAdapter, Wait, retry_after
from requests_ppauth.testing import Emulator
from tests.test_cli import hostport, ok, ppauth

API = "/api/data/v9.2"


def make_session(emu: Emulator, **options: Any) -> requests.Session:
    s = emu.sample
    assert s is not None
    return requests_ppauth.session(
        credential=ClientSecret(
            tenant_id=s.tenant_id,
            client_id=s.client_id,
            secret=s.client_secret,
            authority_host=emu.authority_host,
        ),
        verify=emu.ca_bundle,
        hosts={hostport(emu.api_url): f"{emu.api_url}/.default"},
        **options,
    )


def statuses(emu: Emulator) -> list[int]:
    return [r.status for r in emu.requests("dataverse")]


@pytest.fixture
def emu(ppauth_emulator: Emulator) -> Emulator:
    ppauth_emulator.dataverse.add_rows("account", [{"name": "One"}])
    return ppauth_emulator


def accounts(emu: Emulator) -> str:
    return f"{emu.api_url}{API}/accounts"


def test_the_session_is_set_up(emu):
    s = make_session(emu)
    assert isinstance(s.auth, requests_ppauth.PowerPlatformAuth)
    adapter = s.get_adapter("https://example.org")
    assert isinstance(adapter, RetryAdapter)
    assert adapter.default_timeout == DEFAULT_TIMEOUT == (10.0, 120.0)
    with pytest.raises(TypeError):
        requests_ppauth.session("p", auth=s.auth)  # type: ignore[arg-type]


def test_a_service_protection_429_is_waited_out(emu, caplog):
    s = make_session(emu)
    waits: list[Wait] = []
    adapter = s.get_adapter(emu.api_url)
    assert isinstance(adapter, RetryAdapter)
    adapter.on_wait = waits.append
    assert s.get(accounts(emu), verify=emu.ca_bundle).status_code == 200
    token = s.auth.provider.tokens[f"{emu.api_url}/.default"].token  # type: ignore[union-attr]
    emu.reset_counts()
    emu.dataverse.throttle(times=1, retry_after=1, code="0x80072322")

    start = time.monotonic()
    with caplog.at_level(logging.INFO, logger="requests_ppauth"):
        resp = s.get(accounts(emu), verify=emu.ca_bundle)
    took = time.monotonic() - start
    assert resp.status_code == 200, resp.text
    assert statuses(emu) == [429, 200]
    assert 1.0 <= took < 5
    assert emu.count("token") == 0
    assert waits == [Wait("GET", hostport(emu.api_url), 429, 1.0, 1, True)]
    logged = [r.getMessage() for r in caplog.records if r.name == "requests_ppauth.session"]
    assert len(logged) == 1 and "HTTP 429, waiting 1.0 s (Retry-After)" in logged[0]
    assert token not in caplog.text


def test_a_503_with_retry_after_is_waited_out(emu):
    s = make_session(emu)
    assert s.get(accounts(emu), verify=emu.ca_bundle).status_code == 200
    emu.reset_counts()
    emu.inject("dataverse", status=503, retry_after=1)
    start = time.monotonic()
    resp = s.delete(f"{accounts(emu)}(00000000-0000-0000-0000-000000000000)", verify=emu.ca_bundle)
    assert time.monotonic() - start >= 1.0
    assert statuses(emu)[0] == 503 and len(statuses(emu)) == 2
    assert resp.status_code == 404  # the resend reached Dataverse (no such row)


def test_post_is_not_retried(emu):
    s = make_session(emu)
    assert s.get(accounts(emu), verify=emu.ca_bundle).status_code == 200
    emu.reset_counts()
    emu.dataverse.throttle(times=1, retry_after=1)
    start = time.monotonic()
    resp = s.post(accounts(emu), json={"name": "Two"}, verify=emu.ca_bundle)
    assert resp.status_code == 429
    assert time.monotonic() - start < 1.0
    assert statuses(emu) == [429]
    assert [r["name"] for r in emu.dataverse.rows("account")] == ["One"]


def test_a_retry_after_beyond_the_bound_returns_the_429_at_once(emu):
    s = make_session(emu, max_wait=2)
    assert s.get(accounts(emu), verify=emu.ca_bundle).status_code == 200
    emu.reset_counts()
    emu.dataverse.throttle(times=1, retry_after=5)
    start = time.monotonic()
    resp = s.get(accounts(emu), verify=emu.ca_bundle)
    assert resp.status_code == 429 and resp.headers["Retry-After"] == "5"
    assert time.monotonic() - start < 1.0
    assert statuses(emu) == [429]


def test_the_bound_is_the_total_wait(emu):
    s = make_session(emu, max_wait=2.5)
    assert s.get(accounts(emu), verify=emu.ca_bundle).status_code == 200
    emu.reset_counts()
    emu.dataverse.throttle(times=3, retry_after=1)
    resp = s.get(accounts(emu), verify=emu.ca_bundle)
    assert resp.status_code == 429  # waited 1 + 1; a third second would pass 2.5
    assert statuses(emu) == [429, 429, 429]


def test_retries_zero_turns_it_off(emu):
    s = make_session(emu, retries=0)
    assert s.get(accounts(emu), verify=emu.ca_bundle).status_code == 200
    emu.reset_counts()
    emu.dataverse.throttle(times=1, retry_after=1)
    assert s.get(accounts(emu), verify=emu.ca_bundle).status_code == 429
    assert statuses(emu) == [429]


def test_401_then_429_then_200(emu):
    s = make_session(emu)
    assert s.get(accounts(emu), verify=emu.ca_bundle).status_code == 200
    emu.revoke()
    # the throttle counts only authenticated requests: the revoked token's 401 comes first
    emu.dataverse.throttle(times=1, retry_after=1)
    emu.reset_counts()
    resp = s.get(accounts(emu), verify=emu.ca_bundle)
    assert resp.status_code == 200, resp.text
    assert statuses(emu) == [401, 429, 200]
    assert [h.status_code for h in resp.history] == [401]
    assert emu.count("token") == 1


def test_429_then_401_then_200(emu):
    s = make_session(emu)
    assert s.get(accounts(emu), verify=emu.ca_bundle).status_code == 200
    emu.inject("dataverse", status=429, retry_after=1)
    emu.inject("dataverse", status=401)
    emu.reset_counts()
    resp = s.get(accounts(emu), verify=emu.ca_bundle)
    assert resp.status_code == 200, resp.text
    assert statuses(emu) == [429, 401, 200]
    assert emu.count("token") == 1


def test_a_put_with_a_seekable_body_is_resent_whole(emu, tmp_path):
    # an unrewound file would be resent as 0 of its Content-Length bytes: the server
    # would wait for the rest and the short read timeout would fail the test
    s = make_session(emu, default_timeout=(5, 3))
    url = f"{accounts(emu)}(00000000-0000-0000-0000-000000000000)"
    body = tmp_path / "body.json"
    body.write_text('{"name": "Put"}')
    emu.inject("dataverse", status=503, retry_after=1)
    with body.open("rb") as f:
        resp = s.put(
            url, data=f, headers={"Content-Type": "application/json"}, verify=emu.ca_bundle
        )
    assert statuses(emu)[0] == 503 and len(statuses(emu)) == 2
    assert resp.status_code not in (400, 503), resp.text

    emu.reset_counts()
    emu.inject("dataverse", status=503, retry_after=1)
    stream = iter([b'{"name": ', b'"Put"}'])  # a stream: not replayable
    resp = s.put(url, data=stream, verify=emu.ca_bundle)
    assert resp.status_code == 503
    assert statuses(emu) == [503]


def test_the_default_timeout_applies(emu):
    s = make_session(emu, default_timeout=(5, 0.5))
    assert s.get(accounts(emu), verify=emu.ca_bundle).status_code == 200
    emu.inject("dataverse", latency=1.5)
    with pytest.raises(requests.exceptions.ReadTimeout):
        s.get(accounts(emu), verify=emu.ca_bundle)
    emu.inject("dataverse", latency=1.0)
    assert s.get(accounts(emu), verify=emu.ca_bundle, timeout=5).status_code == 200


@pytest.mark.parametrize(
    ("header", "seconds"),
    [("3", 3.0), (" 0 ", 0.0), ("-4", 0.0), ("soon", None), (None, None)],
)
def test_retry_after_values(header, seconds):
    assert retry_after(header) == seconds


def test_retry_after_as_an_http_date():
    from email.utils import formatdate

    now = time.time()
    assert retry_after(formatdate(now + 30, usegmt=True), now) == pytest.approx(30, abs=1)


# -- ppauth request ----------------------------------------------------------------------
def test_ppauth_request_says_when_it_waited(emu, ppauth_env):
    ppauth_env.use_emulator(emu)
    emu.dataverse.throttle(times=1, retry_after=1)
    proc = ppauth(
        "request",
        "GET",
        accounts(emu),
        "--host-scope",
        f"{hostport(emu.api_url)}={emu.api_url}/.default",
    )
    out = ok(proc)
    assert '"One"' in out
    assert f"GET {hostport(emu.api_url)} answered HTTP 429; waiting 1.0 s (Retry-After)" in (
        proc.stderr
    )
    assert statuses(emu) == [429, 200]

    emu.dataverse.throttle(times=1, retry_after=1)
    proc = ppauth(
        "request",
        "GET",
        accounts(emu),
        "--host-scope",
        f"{hostport(emu.api_url)}={emu.api_url}/.default",
        "--retries",
        "0",
    )
    assert proc.returncode == 1 and "HTTP 429" in proc.stderr and "waiting" not in proc.stderr
