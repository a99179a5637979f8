"""PowerPlatformAuth's behaviour on the wire: allow-list, redirects, 401 retry,
threads, pickling and fork, all against the emulator over HTTPS."""

from __future__ import annotations

import io
import multiprocessing
import pickle
import threading
from concurrent.futures import ProcessPoolExecutor

import pytest
import requests

from requests_ppauth import (
    ClientSecret,
    HostNotAllowedError,
    InsecureTransportError,
    PowerPlatformAuth,
)

ENVS = "/providers/Microsoft.BusinessAppPlatform/scopes/admin/environments?api-version=2020-10-01"
APPS_SCOPE = "https://service.powerapps.com//.default"


def make_auth(emu, **kwargs):
    s = emu.sample
    cred = ClientSecret(
        tenant_id=s.tenant_id,
        client_id=s.client_id,
        secret=s.client_secret,
        authority_host=emu.authority_host,
    )
    kwargs.setdefault("hosts", {emu.api_url.split("//")[1]: APPS_SCOPE})
    return PowerPlatformAuth(credential=cred, verify=emu.ca_bundle, **kwargs)


def session(emu, **kwargs):
    s = requests.Session()
    s.auth = make_auth(emu, **kwargs)
    return s


# -- allow-list -----------------------------------------------------------------------


def test_host_outside_the_allow_list_raises_before_anything_is_sent(ppauth_emulator):
    s = session(ppauth_emulator)
    with pytest.raises(HostNotAllowedError, match="evil.example.com.*allowed_hosts"):
        s.get("https://evil.example.com/steal")
    assert ppauth_emulator.counts() == {}


def test_allowed_hosts_narrows_the_table(ppauth_emulator):
    s = session(ppauth_emulator, allowed_hosts=["api.powerplatform.com"])
    with pytest.raises(HostNotAllowedError):
        s.get("https://api.bap.microsoft.com/providers")
    assert ppauth_emulator.counts() == {}


def test_allowed_hosts_widens_with_a_scope(ppauth_emulator):
    hostport = ppauth_emulator.api_url.split("//")[1]
    s = session(ppauth_emulator, hosts={}, allowed_hosts=[hostport], scope=APPS_SCOPE)
    r = s.get(ppauth_emulator.api_url + ENVS, verify=ppauth_emulator.ca_bundle)
    assert r.status_code == 200


def test_allowed_host_without_a_known_scope_says_what_to_pass(ppauth_emulator):
    hostport = ppauth_emulator.api_url.split("//")[1]
    s = session(ppauth_emulator, hosts={}, allowed_hosts=[hostport])
    with pytest.raises(ValueError, match="no scope is known"):
        s.get(ppauth_emulator.api_url + ENVS, verify=ppauth_emulator.ca_bundle)


def test_allow_list_entry_with_port_does_not_allow_other_ports(ppauth_emulator):
    auth = make_auth(ppauth_emulator, hosts={}, allowed_hosts=["127.0.0.1:1"], scope=APPS_SCOPE)
    assert auth.scope_for_url("https://127.0.0.1:1/x") == APPS_SCOPE
    with pytest.raises(HostNotAllowedError):
        auth.scope_for_url("https://127.0.0.1:2/x")


def test_plain_http_is_refused_except_to_loopback(ppauth_emulator):
    auth = make_auth(
        ppauth_emulator, allowed_hosts=["api.powerplatform.com", "127.0.0.1"], scope=APPS_SCOPE
    )
    with pytest.raises(InsecureTransportError, match="plain http"):
        requests.get("http://api.powerplatform.com/x", auth=auth)
    assert auth.scope_for_url("http://127.0.0.1:8080/x") == APPS_SCOPE
    assert ppauth_emulator.counts() == {}


def test_scope_follows_the_host_by_default(ppauth_emulator):
    auth = PowerPlatformAuth()
    assert auth.scope_for_url("https://api.bap.microsoft.com/x") == APPS_SCOPE
    assert auth.scope_for_url("https://api.powerplatform.com/x?y=1") == (
        "https://api.powerplatform.com/.default"
    )
    assert auth.scope_for_url("https://org.crm4.dynamics.com/api/data/v9.2/WhoAmI") == (
        "https://org.crm4.dynamics.com/.default"
    )
    assert ppauth_emulator.counts() == {}


def test_cloud_setting_switches_the_table():
    auth = PowerPlatformAuth(cloud="gcchigh")
    assert auth.scope_for_url("https://high.api.bap.microsoft.us/x") == (
        "https://high.service.powerapps.us//.default"
    )
    with pytest.raises(HostNotAllowedError, match="gcchigh"):
        auth.scope_for_url("https://api.bap.microsoft.com/x")


def test_unknown_cloud_fails_at_construction():
    with pytest.raises(ValueError, match="unknown cloud"):
        PowerPlatformAuth(cloud="atlantis")


def test_no_token_follows_a_redirect_to_another_host(ppauth_emulator):
    emu = ppauth_emulator
    s = session(emu)
    r = s.get(emu.api_url + "/redirect", verify=emu.ca_bundle)
    assert r.status_code == 200
    assert r.history and r.history[0].status_code == 302
    (landing,) = emu.requests("foreign")
    assert landing.authorization is None
    (redirect,) = emu.requests("redirect")
    assert redirect.authorization and redirect.authorization.startswith("Bearer ")


# -- 401 retry --------------------------------------------------------------------------


def test_revoked_token_is_replaced_and_the_request_resent_once(ppauth_emulator):
    emu = ppauth_emulator
    s = session(emu)
    assert s.get(emu.api_url + ENVS, verify=emu.ca_bundle).status_code == 200
    emu.revoke()
    r = s.get(emu.api_url + ENVS, verify=emu.ca_bundle)
    assert r.status_code == 200
    assert [h.status_code for h in r.history] == [401]
    assert emu.count("token") == 2
    first, second = emu.requests("environments")[1:]
    assert first.status == 401 and second.status == 200
    assert first.authorization != second.authorization
    # the new token stays in use: no further token request
    assert s.get(emu.api_url + ENVS, verify=emu.ca_bundle).status_code == 200
    assert emu.count("token") == 2


def test_a_second_401_goes_back_to_the_caller(ppauth_emulator):
    emu = ppauth_emulator
    # a token for the wrong audience: every attempt is refused
    s = session(emu, hosts={emu.api_url.split("//")[1]: "https://api.powerplatform.com/.default"})
    r = s.get(emu.api_url + ENVS, verify=emu.ca_bundle)
    assert r.status_code == 401
    assert "invalid_token" in r.headers["WWW-Authenticate"]
    assert len(r.history) == 1
    assert emu.count("environments") == 2
    assert emu.count("token") == 2


def test_bytes_and_file_bodies_are_replayed(ppauth_emulator, tmp_path):
    emu = ppauth_emulator
    s = session(emu)
    s.get(emu.api_url + ENVS, verify=emu.ca_bundle)
    emu.revoke()
    r = s.post(emu.api_url + ENVS, data=b'{"a": 1}', verify=emu.ca_bundle)
    assert r.status_code == 200 and len(r.history) == 1
    emu.revoke()
    path = tmp_path / "body.json"
    path.write_bytes(b'{"b": 2}')
    with path.open("rb") as fh:
        fh.read(0)
        r = s.post(emu.api_url + ENVS, data=fh, verify=emu.ca_bundle)
    assert r.status_code == 200 and len(r.history) == 1
    assert emu.count("token") == 3


def test_a_stream_that_cannot_be_rewound_is_not_resent(ppauth_emulator):
    emu = ppauth_emulator
    s = session(emu)
    s.get(emu.api_url + ENVS, verify=emu.ca_bundle)
    emu.revoke()
    r = s.post(emu.api_url + ENVS, data=(c for c in [b"x", b"y"]), verify=emu.ca_bundle)
    assert r.status_code == 401 and r.history == []
    assert emu.count("environments") == 2


def test_file_body_is_rewound_to_where_it_started(ppauth_emulator):
    emu = ppauth_emulator
    s = session(emu)
    s.get(emu.api_url + ENVS, verify=emu.ca_bundle)
    emu.revoke()
    body = io.BytesIO(b"HEADER-payload")
    body.seek(7)
    r = s.post(emu.api_url + ENVS, data=body, verify=emu.ca_bundle)
    assert r.status_code == 200 and len(r.history) == 1


# -- concurrency, pickling, fork ---------------------------------------------------------------


def test_32_threads_with_nothing_cached_make_one_token_request(ppauth_emulator):
    emu = ppauth_emulator
    auth = make_auth(emu)
    barrier = threading.Barrier(32)
    statuses: list[int] = []

    def work():
        barrier.wait()
        statuses.append(
            requests.get(emu.api_url + ENVS, auth=auth, verify=emu.ca_bundle).status_code
        )

    threads = [threading.Thread(target=work) for _ in range(32)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert statuses == [200] * 32
    assert emu.count("token") == 1
    assert emu.count("discovery") == 1


def _worker_get(sess: requests.Session, url: str, ca: str) -> int:
    return sess.get(url, verify=ca).status_code


def test_a_session_with_the_auth_goes_to_spawned_workers(ppauth_emulator):
    emu = ppauth_emulator
    s = session(emu)
    assert s.get(emu.api_url + ENVS, verify=emu.ca_bundle).status_code == 200
    blob = pickle.dumps(s.auth)
    assert emu.sample.client_secret.encode() in blob  # the worker needs it...
    assert b"access_token" not in blob and b"eyJ" not in blob  # ...but no token travels
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(2, mp_context=ctx) as pool:
        results = list(
            pool.map(_worker_get, [s] * 4, [emu.api_url + ENVS] * 4, [emu.ca_bundle] * 4)
        )
    assert results == [200] * 4


def _child_get(auth: PowerPlatformAuth, url: str, ca: str, out) -> None:
    out.put(requests.get(url, auth=auth, verify=ca).status_code)


def test_fork_while_a_lock_is_held_does_not_deadlock_the_child(ppauth_emulator):
    emu = ppauth_emulator
    auth = make_auth(emu)
    assert requests.get(emu.api_url + ENVS, auth=auth, verify=emu.ca_bundle).status_code == 200
    provider = auth.provider
    lock = provider._lock_for(APPS_SCOPE)
    provider.forget(APPS_SCOPE)  # the child will need a new token, so it takes the lock
    ctx = multiprocessing.get_context("fork")
    out = ctx.Queue()
    with lock:  # held by the parent at fork time
        child = ctx.Process(target=_child_get, args=(auth, emu.api_url + ENVS, emu.ca_bundle, out))
        child.start()
        child.join(30)
    assert child.exitcode == 0
    assert out.get(timeout=5) == 200


def test_repr_shows_settings_not_secrets(ppauth_emulator):
    auth = make_auth(ppauth_emulator)
    text = repr(auth)
    assert "PowerPlatformAuth(" in text
    assert ppauth_emulator.sample.client_secret not in text
