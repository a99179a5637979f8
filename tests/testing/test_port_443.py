"""``Emulator(identity_port=443)``: Entra ID on the default https port, so the URL msal
builds without the authority's port (the ROPC user realm lookup,
``https://127.0.0.1/common/userrealm/...``) reaches the emulator, with msal's default
http client and no ``emu.http_client()``.

Port 443 holds one listener at a time and pytest-xdist runs modules in parallel: the
module fixture :func:`emulator_on_443` takes a lock for as long as its emulator
runs (other modules using port 443 import it), and skips, saying why, when the port
cannot be bound. The lock is an abstract unix socket: like the port, it belongs to the
network namespace (so separate test runs on the machine wait for each other too), it
leaves nothing on disk, and it is released when its holder exits.
"""

from __future__ import annotations

import contextlib
import errno
import socket
import time
from collections.abc import Iterator

import msal
import pytest
import requests

from requests_ppauth.testing import Emulator

LOCK_NAME = "\0requests-ppauth-emulator-port-443"  # abstract: no file
LOCK_WAIT = 300  # seconds: another worker's module holds the port meanwhile


@contextlib.contextmanager
def port_443_lock() -> Iterator[None]:
    """Serialise port-443 emulators across processes (xdist workers)."""
    lock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        deadline = time.monotonic() + LOCK_WAIT
        while True:
            try:
                lock.bind(LOCK_NAME)  # bound: held, until closed or this process exits
                break
            except OSError as exc:
                if exc.errno != errno.EADDRINUSE:
                    raise
                if time.monotonic() > deadline:
                    pytest.skip(f"port 443: another test held its lock for {LOCK_WAIT}s")
                time.sleep(0.1)
        yield
    finally:
        lock.close()


@contextlib.contextmanager
def running_on_443() -> Iterator[Emulator]:
    """An emulator whose identity listener is on 127.0.0.1:443, or a skip saying why not."""
    with port_443_lock():
        emu = Emulator(identity_port=443)
        try:
            emu.start()
        except OSError as exc:
            why = {
                errno.EADDRINUSE: "another process is listening on it",
                errno.EACCES: "binding a port below 1024 needs root or CAP_NET_BIND_SERVICE",
            }.get(exc.errno or 0, str(exc))
            pytest.skip(f"cannot bind 127.0.0.1:443 for the emulator: {why}")
        try:
            yield emu
        finally:
            emu.stop()


@pytest.fixture(scope="module")
def emulator_on_443() -> Iterator[Emulator]:
    """One port-443 emulator for the module, holding the cross-process lock."""
    with running_on_443() as emu:
        yield emu


@pytest.fixture
def emu443(emulator_on_443: Emulator, monkeypatch: pytest.MonkeyPatch) -> Emulator:
    """The module's port-443 emulator, counters reset, its CA trusted by requests."""
    emulator_on_443.reset_counts()
    for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        monkeypatch.setenv(name, emulator_on_443.ca_bundle)
    monkeypatch.setenv("NO_PROXY", "localhost,127.0.0.1,::1")
    monkeypatch.setenv("no_proxy", "localhost,127.0.0.1,::1")
    return emulator_on_443


def test_addresses_drop_the_default_port(emu443):
    assert emu443.authority_host == "https://127.0.0.1"
    assert emu443.ports["identity"] == 443
    assert emu443.authority() == f"https://127.0.0.1/{emu443.sample.tenant_id}"
    assert emu443.api_url.startswith("https://127.0.0.1:")  # the others keep free ports
    assert emu443.ports["api"] != 443
    info = requests.post(f"{emu443.authority_host}/_emulator/info", json={}, timeout=10)
    assert info.json()["result"]["authority_host"] == "https://127.0.0.1"


def test_msal_ropc_unchanged_reaches_the_user_realm(emu443):
    s = emu443.sample
    # msal's own requests.Session: no emu.http_client(), REQUESTS_CA_BUNDLE does the trust
    app = msal.PublicClientApplication(
        s.public_client_id, authority=emu443.authority(), instance_discovery=False
    )
    result = app.acquire_token_by_username_password(
        s.username, s.password, ["https://service.powerapps.com//.default"]
    )
    assert "access_token" in result, result
    (realm,) = emu443.requests("userrealm")
    assert realm.host == "127.0.0.1"  # msal built the URL without a port
    assert realm.path == f"/common/userrealm/{s.username}"
    assert realm.status == 200
    assert emu443.count("token") == 1


def test_discovery_names_portless_endpoints(emu443):
    doc = requests.get(
        f"{emu443.authority()}/v2.0/.well-known/openid-configuration", timeout=10
    ).json()
    assert doc["token_endpoint"] == f"{emu443.authority()}/oauth2/v2.0/token"


def test_a_second_emulator_cannot_share_port_443(emu443):
    other = Emulator(identity_port=443)
    with pytest.raises(OSError, match="[Aa]ddress already in use") as caught:
        other.start()
    assert caught.value.errno == errno.EADDRINUSE
    assert other.ports == {}  # nothing left half-started
    with pytest.raises(RuntimeError):
        other.ca_bundle  # noqa: B018 - the property raises when not running
    # the running one is unaffected
    assert requests.post(f"{emu443.authority_host}/_emulator/counts", json={}, timeout=10).ok
