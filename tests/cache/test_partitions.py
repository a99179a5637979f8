"""What the provider asks of a backend: only the keys an acquisition needs, each access
token stored once (ours, never msal's copy), msal given nothing for an app and one
partition for a person, and a backend's bug reported naming it, without costing the
caller the token. A recording backend filled with 10,000 other entries shows the
work does not depend on what else the cache holds."""

from __future__ import annotations

import contextlib
import json
import logging
import threading
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import pytest

from requests_ppauth import ClientSecret, PowerPlatformAuth, UsernamePassword
from requests_ppauth.cache import Op, apply_ops
from requests_ppauth.cache.keys import access_token_key, partition_key, token_key

PP_SCOPE = "https://api.powerplatform.com/.default"
APPS_SCOPE = "https://service.powerapps.com//.default"


class Recording:
    """A backend that records every key asked for and every batch applied."""

    def __init__(self) -> None:
        self.state: dict[str, Any] = {}
        self.asked: list[list[str]] = []
        self.batches: list[list[Op]] = []
        self.listed = 0
        self._lock = threading.Lock()

    location = "recording://test"

    def get(self, keys: Sequence[str]) -> dict[str, Any]:
        self.asked.append(list(keys))
        return {k: self.state[k] for k in keys if k in self.state}

    def apply(self, ops: Sequence[Op]) -> None:
        self.batches.append(list(ops))
        apply_ops(self.state, ops)

    def read_all(self) -> Mapping[str, Any]:
        self.listed += 1
        return dict(self.state)

    @contextlib.contextmanager
    def key_lock(self, key: str, timeout: float) -> Iterator[bool]:
        with self._lock:
            yield True

    @contextlib.contextmanager
    def try_key_lock(self, key: str) -> Iterator[bool]:
        yield True


def filled(count: int = 10_000) -> Recording:
    """10,000 other apps' tokens and 100 other apps' sign-ins."""
    backend = Recording()
    for i in range(count):
        key = token_key("https://login.example/t", "t", f"client-{i}", None, PP_SCOPE)
        backend.state[access_token_key(key)] = {"secret": f"tok-{i}", "expires_on": 2e9}
    for i in range(100):
        backend.state[partition_key("login.example", f"public-{i}")] = {
            f"RefreshToken/rt-{i}": {"secret": f"rt-{i}", "client_id": f"public-{i}"}
        }
    backend.asked.clear()
    return backend


def app(emu, backend) -> PowerPlatformAuth:
    cred = ClientSecret(
        tenant_id=emu.sample.tenant_id,
        client_id=emu.sample.client_id,
        secret=emu.sample.client_secret,
        authority_host=emu.authority_host,
    )
    return PowerPlatformAuth(credential=cred, verify=emu.ca_bundle, cache=backend)


def person(emu, backend) -> PowerPlatformAuth:
    cred = UsernamePassword(
        tenant_id=emu.sample.tenant_id,
        client_id=emu.sample.public_client_id,
        authority_host=emu.authority_host,
        username=emu.sample.username,
        password=emu.sample.password,
    )
    return PowerPlatformAuth(credential=cred, verify=emu.ca_bundle, cache=backend)


@pytest.fixture(autouse=True)
def _quiet_ropc():
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def test_an_app_only_acquisition_reads_its_key_and_writes_its_token_once(ppauth_emulator):
    emu = ppauth_emulator
    backend = filled()
    before = dict(backend.state)
    auth = app(emu, backend)

    token = auth.provider.get(PP_SCOPE).token

    at = access_token_key(auth.provider.key(PP_SCOPE))
    assert backend.asked == [[at], [at]]  # looked up, and again under the lock: nothing else
    assert backend.listed == 0
    (batch,) = backend.batches
    assert [op.key for op in batch] == [at]  # no msal state for an app
    assert backend.state[at]["secret"] == token
    assert {k: v for k, v in backend.state.items() if k != at} == before

    # a second scope: the same work, and msal is given nothing of the first
    auth.provider.get(APPS_SCOPE)
    assert [len(keys) for keys in backend.asked] == [1, 1, 1, 1]
    assert len(backend.batches) == 2
    assert emu.count("token") == 2


def test_a_persons_acquisition_gives_msal_one_partition_and_patches_it(ppauth_emulator):
    emu = ppauth_emulator
    backend = filled()
    auth = person(emu, backend)

    token = auth.provider.get(PP_SCOPE).token

    at = access_token_key(auth.provider.key(PP_SCOPE))
    host = emu.authority_host.split("//")[1].split(":")[0]
    part = partition_key(host, emu.sample.public_client_id)
    assert backend.asked == [[at], [at], [part]]
    (batch,) = backend.batches
    assert [op.key for op in batch] == [at, part]
    fields = backend.state[part]
    sections = sorted({name.split("/", 1)[0] for name in fields})
    assert sections == ["Account", "AppMetadata", "IdToken", "RefreshToken"]
    stored = json.dumps(backend.state)
    assert stored.count(token) == 1  # once: ours; msal's AccessToken is never stored

    # another scope: the refresh token answers, and only what changed is written
    emu.reset_counts()
    second = auth.provider.get(APPS_SCOPE).token
    assert emu.requests("token")[-1].grant_type == "refresh_token"
    assert backend.asked[3:] == [
        [access_token_key(auth.provider.key(APPS_SCOPE))],
        [access_token_key(auth.provider.key(APPS_SCOPE))],
        [part],
    ]
    patch = backend.batches[1][1]
    assert patch.key == part and patch.fields is not None
    assert set(patch.fields) < set(backend.state[part])  # not the whole partition again
    assert json.dumps(backend.state).count(second) == 1

    # a fresh process (a new auth) signs in silently from the partition
    emu.reset_counts()
    again = person(emu, backend)
    assert again.provider.get(PP_SCOPE).token == token  # warm: no request at all
    assert emu.counts() == {}


class Buggy(Recording):
    """A backend that breaks the contract: it raises something other than CacheError."""

    def get(self, keys: Sequence[str]) -> dict[str, Any]:
        raise KeyError("a bug in the backend")

    def apply(self, ops: Sequence[Op]) -> None:
        raise ValueError("another bug")


def test_a_backend_bug_is_reported_naming_the_backend_and_the_token_still_comes(
    ppauth_emulator, caplog
):
    emu = ppauth_emulator
    caplog.set_level(logging.DEBUG, logger="requests_ppauth")
    auth = app(emu, Buggy())

    token = auth.provider.get(PP_SCOPE).token

    assert token and emu.count("token") == 1
    warned = " ".join(r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING)
    assert "cache backend Buggy (recording://test) failed in get with KeyError" in warned
    assert "must raise CacheError" in warned
    assert token not in caplog.text
    assert auth.provider.get(PP_SCOPE).token == token  # kept in memory
