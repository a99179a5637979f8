"""Proxies, against a real proxy on loopback (tests/_proxy.py) and the emulator.

A token over plain http reaches a loopback host only when no proxy can see it. Identity
traffic (Entra ID) goes through the proxy the environment or the settings name, inside a
CONNECT tunnel the proxy cannot read; managed identity endpoints and link-local hosts
never go through a proxy; a dead proxy is a typed network error that names the proxy and
never its password; ``ppauth doctor`` says which proxy identity traffic uses.

The emulator listens on 127.0.0.1. Loopback hosts follow NO_PROXY like any other host,
as in requests (a product rule "never proxy loopback" would make these tests impossible
and would differ from what requests does for the API traffic of the same program).
"""

from __future__ import annotations

import json
import logging
import os
import pickle
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests

from requests_ppauth import (
    ClientSecret,
    ConfigurationError,
    InsecureTransportError,
    PowerPlatformAuth,
    TokenAcquisitionError,
)
from requests_ppauth._http import IdentityHttpClient
from requests_ppauth.plugins import reset_plugins
from requests_ppauth.testing import Emulator
from tests._proxy import Proxy, dead_port

APPS_SCOPE = "https://service.powerapps.com//.default"
BAP_PATH = (
    "/providers/Microsoft.BusinessAppPlatform/scopes/admin/environments?api-version=2020-10-01"
)
ROOT = Path(__file__).resolve().parent.parent
PROXY_PASSWORD = "pr0xy-pa55word-never-shown"
PROXY_VARIABLES = (
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "NO_PROXY",
    "http_proxy",
    "https_proxy",
    "all_proxy",
    "no_proxy",
)


# -- fixtures ---------------------------------------------------------------------------
@pytest.fixture(autouse=True)
def _no_inherited_proxies(ppauth_env):
    """Whatever the machine running the tests has set, each test starts with none."""
    ppauth_env.set(**dict.fromkeys(PROXY_VARIABLES))


@pytest.fixture
def proxy() -> Iterator[Proxy]:
    with Proxy() as running:
        yield running


@pytest.fixture
def emu(ppauth_emulator, ppauth_env) -> Emulator:
    """The emulator, with the sample client secret in PPAUTH_* variables."""
    ppauth_env.use_emulator(ppauth_emulator)
    return ppauth_emulator


class Origin:
    """A plain-http server on loopback that keeps the Authorization headers it got."""

    def __init__(self) -> None:
        seen: list[str | None] = []
        self.seen = seen

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                seen.append(self.headers.get("Authorization"))
                body = b'{"ok": true}'
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.hostport = f"127.0.0.1:{self.server.server_address[1]}"
        self.url = f"http://{self.hostport}/data"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def origin() -> Iterator[Origin]:
    server = Origin()
    yield server
    server.close()


def with_password(url: str) -> str:
    """``http://127.0.0.1:PORT`` as ``http://user:PASSWORD@127.0.0.1:PORT``."""
    return url.replace("://", f"://proxyuser:{PROXY_PASSWORD}@", 1)


def api_auth(emu: Emulator, **options: Any) -> PowerPlatformAuth:
    options.setdefault("cache", False)
    return PowerPlatformAuth(hosts={emu.api_url.split("//")[1]: APPS_SCOPE}, **options)


def get_envs(emu: Emulator, auth: PowerPlatformAuth) -> requests.Response:
    return requests.get(emu.api_url + BAP_PATH, auth=auth, verify=emu.ca_bundle, timeout=30)


def identity_target(emu: Emulator) -> str:
    return f"127.0.0.1:{emu.ports['identity']}"


def chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo:
        item = todo.pop()
        if item is None or id(item) in seen:
            continue
        seen.add(id(item))
        yield item
        todo += [item.__cause__, item.__context__]


# -- (a) plain http and an environment proxy --------------------------------------------
@pytest.mark.parametrize("variable", ["HTTP_PROXY", "http_proxy", "ALL_PROXY"])
def test_plain_http_through_an_environment_proxy_is_refused_before_anything_is_sent(
    emu, ppauth_env, proxy, origin, variable
):
    ppauth_env.set(**{variable: with_password(proxy.url)})
    auth = PowerPlatformAuth(allowed_hosts=[origin.hostport], scope=APPS_SCOPE, cache=False)
    session = requests.Session()
    session.auth = auth

    with pytest.raises(InsecureTransportError) as caught:
        session.get(origin.url, timeout=10)

    message = str(caught.value)
    assert "NO_PROXY=localhost,127.0.0.1,::1" in message and "https" in message
    assert f"127.0.0.1:{proxy.port}" in message and variable in message
    assert PROXY_PASSWORD not in message
    assert proxy.connections == 0 and proxy.seen == b""  # not one byte reached the proxy
    assert origin.seen == [] and emu.count("token") == 0  # and no token was even asked for


def test_plain_http_with_no_proxy_goes_direct_and_the_check_follows_the_environment(
    emu, ppauth_env, proxy, origin
):
    ppauth_env.set(HTTP_PROXY=proxy.url, NO_PROXY="localhost,127.0.0.1,::1")
    auth = PowerPlatformAuth(allowed_hosts=[origin.hostport], scope=APPS_SCOPE, cache=False)
    session = requests.Session()
    session.auth = auth

    assert session.get(origin.url, timeout=10).status_code == 200
    assert origin.seen == [auth.provider.tokens[APPS_SCOPE].header]
    assert proxy.connections == 0

    # not remembered with the route: the next request is checked against the environment
    # as it is then
    ppauth_env.set(NO_PROXY=None)
    with pytest.raises(InsecureTransportError, match="NO_PROXY="):
        session.get(origin.url, timeout=10)
    ppauth_env.set(no_proxy="127.0.0.1")
    assert session.get(origin.url, timeout=10).status_code == 200
    assert len(origin.seen) == 2 and proxy.connections == 0


@pytest.mark.parametrize(
    "variables",
    [
        {},
        {"HTTP_PROXY": "http://upper:1"},
        {"HTTP_PROXY": "http://upper:1", "http_proxy": "http://lower:2"},
        {"Http_Proxy": "http://mixed:3"},
        {"HTTPS_PROXY": "http://set:4", "https_proxy": ""},
        {"REQUEST_METHOD": "GET", "HTTP_PROXY": "http://cgi:5"},
        {"REQUEST_METHOD": "GET", "http_proxy": "http://cgi-lower:6"},
        {"ALL_PROXY": "http://all:7", "no_proxy": "x", "FTP_PROXY": "http://ftp:8"},
    ],
)
def test_the_fast_environment_reader_agrees_with_urllib(ppauth_env, variables):
    """The per-request check reads proxies its own (faster) way: exactly as requests does."""
    from urllib.request import getproxies

    from requests_ppauth.proxies import environment_proxies

    ppauth_env.set(**variables)
    assert environment_proxies() == getproxies()


# -- (b) identity traffic through a proxy -----------------------------------------------
@pytest.mark.filterwarnings("ignore::requests_ppauth.ROPCWarning")
@pytest.mark.parametrize("flow", ["secret", "certificate", "password"])
def test_identity_traffic_goes_through_https_proxy_in_a_tunnel_the_proxy_cannot_read(
    ppauth_emulator, ppauth_env, proxy, flow
):
    emu = ppauth_emulator
    ppauth_env.use_emulator(emu, flow)
    ppauth_env.set(HTTPS_PROXY=proxy.url)

    r = get_envs(emu, api_auth(emu))

    assert r.status_code == 200
    assert proxy.tunnels[identity_target(emu)] >= 1  # the token request went through it
    assert proxy.forwarded == []  # as a tunnel, never as plain HTTP
    (token_request, *_) = emu.requests("token")
    field = {"secret": "client_secret", "certificate": "client_assertion", "password": "password"}
    assert field[flow] in token_request.form_fields  # the secret was in that request...
    seen = proxy.seen
    assert seen.count(b"CONNECT ") >= 1
    secret = {
        "secret": os.environ.get("PPAUTH_CLIENT_SECRET", ""),
        "password": os.environ.get("PPAUTH_PASSWORD", ""),
        "certificate": "client_assertion",
    }[flow]
    token = str(emu.requests("environments")[-1].authorization).removeprefix("Bearer ")
    for plaintext in (secret, token, "client_secret", "client_assertion", "grant_type"):
        assert plaintext and plaintext.encode() not in seen  # ...and the proxy never saw it


def test_no_proxy_matching_the_identity_host_means_no_tunnel(emu, ppauth_env, proxy):
    ppauth_env.set(HTTPS_PROXY=proxy.url, NO_PROXY="127.0.0.1")
    assert get_envs(emu, api_auth(emu)).status_code == 200
    assert proxy.tunnels == {} and proxy.connections == 0


def test_proxies_option_routes_identity_traffic_only(emu, proxy):
    auth = api_auth(emu, proxies={"https": proxy.url})
    assert get_envs(emu, auth).status_code == 200
    # the token request went through the proxy; the API request (a plain session with
    # no proxy in its environment) did not: the option is for identity traffic
    assert set(proxy.tunnels) == {identity_target(emu)}

    again = pickle.loads(pickle.dumps(auth))  # noqa: S301 - the option travels with it
    assert again.proxies == {"https": proxy.url}


def test_profile_proxy_key_routes_identity_traffic(emu, ppauth_env, proxy):
    ppauth_env.write_config(f'[profiles.default]\nproxy = "{proxy.url}"\n')
    assert get_envs(emu, api_auth(emu)).status_code == 200
    assert set(proxy.tunnels) == {identity_target(emu)}


def test_no_proxy_exempts_a_host_from_an_explicit_proxy_too(emu, ppauth_env, proxy):
    ppauth_env.set(NO_PROXY="127.0.0.1")
    assert get_envs(emu, api_auth(emu, proxies={"https": proxy.url})).status_code == 200
    assert proxy.connections == 0


def test_environment_ca_bundle_and_netrc_still_do_not_apply_to_identity_traffic(
    emu, ppauth_env, proxy
):
    ppauth_env.set(
        HTTPS_PROXY=proxy.url, REQUESTS_CA_BUNDLE=emu.ca_bundle, CURL_CA_BUNDLE=emu.ca_bundle
    )
    url = f"{emu.authority('organizations')}/v2.0/.well-known/openid-configuration"
    client = IdentityHttpClient(verify=True)  # the system CAs, which do not trust the emulator
    with pytest.raises(requests.exceptions.SSLError):
        client.get(url)  # REQUESTS_CA_BUNDLE (which would trust it) was not used...
    client.close()
    assert proxy.tunnels[identity_target(emu)] == 1  # ...although the proxy was

    netrc = Path(os.environ["HOME"]) / ".netrc"
    netrc.write_text("machine 127.0.0.1 login netrc-user password netrc-password\n")
    netrc.chmod(0o600)
    assert get_envs(emu, api_auth(emu)).status_code == 200
    identity = [r for r in emu.requests() if r.listener == "identity"]
    assert identity and all(r.authorization is None for r in identity)  # no netrc Basic
    assert b"netrc-password" not in proxy.seen


@pytest.mark.parametrize(
    ("setting", "value", "where"),
    [
        ("option", {"https": "ftp://proxy.example.com:21"}, "proxies['https']"),
        ("option", {"https": f"http://u:{PROXY_PASSWORD}@proxy:port"}, "bad port"),
        ("option", "http://proxy.example.com:3128", "must be a mapping"),
        ("profile", f"http://u:{PROXY_PASSWORD}@:3128", "the profile's 'proxy'"),
        ("env", f"http://u:{PROXY_PASSWORD}@proxy:99999", "HTTPS_PROXY"),
    ],
)
def test_a_malformed_proxy_setting_is_a_configuration_error(emu, ppauth_env, setting, value, where):
    def use() -> None:
        if setting == "option":
            api_auth(emu, proxies=value)
            return
        if setting == "profile":
            ppauth_env.write_config(f'[profiles.default]\nproxy = "{value}"\n')
        else:
            ppauth_env.set(HTTPS_PROXY=value)
        api_auth(emu).provider.get(APPS_SCOPE)

    with pytest.raises(ConfigurationError) as caught:
        use()
    assert where in str(caught.value)
    assert PROXY_PASSWORD not in str(caught.value)


# -- (c) managed identity -----------------------------------------------------------------
@pytest.fixture
def managed_on(ppauth_env):
    """The managed identity source, which the core's conftest turns off, back on."""
    ppauth_env.set(PPAUTH_DISABLE_PLUGINS="*")
    reset_plugins()
    return ppauth_env


@pytest.mark.parametrize("kind", ["imds", "appservice"])
@pytest.mark.parametrize("how", ["environment", "option"])
def test_managed_identity_never_goes_through_a_proxy(ppauth_emulator, managed_on, proxy, kind, how):
    emu = ppauth_emulator
    managed_on.set(**emu.managed_identity_env(kind), PPAUTH_MANAGED_IDENTITY="system")
    options: dict[str, Any] = {}
    if how == "environment":
        managed_on.set(HTTP_PROXY=proxy.url, HTTPS_PROXY=proxy.url, ALL_PROXY=proxy.url)
    else:
        options["proxies"] = {"http": proxy.url, "https": proxy.url, "all": proxy.url}

    token = api_auth(emu, **options).provider.get(APPS_SCOPE)

    assert token.token and emu.count("imds" if kind == "imds" else "appservice-msi") == 1
    assert proxy.connections == 0  # the endpoint is on this machine: no proxy ever


def test_link_local_hosts_are_never_proxied(ppauth_env, proxy):
    ppauth_env.set(HTTP_PROXY=proxy.url, HTTPS_PROXY=proxy.url)
    client = IdentityHttpClient(proxies={"all": proxy.url})
    for url in (
        "http://169.254.169.254/metadata/identity/oauth2/token",
        "http://[fe80::1]/token",
    ):
        route = client.route(url)
        assert route.proxy is None and "link-local" in route.reason
    # the same client does proxy an ordinary identity host
    assert client.route("https://login.microsoftonline.com/x").proxy == proxy.url
    assert IdentityHttpClient(use_proxy=False).route("https://example.com/").proxy is None


# -- (d) a dead proxy ---------------------------------------------------------------------
@pytest.mark.parametrize("setting", ["HTTPS_PROXY", "option", "profile"])
def test_a_dead_proxy_is_a_typed_network_error_naming_the_proxy_not_its_password(
    emu, ppauth_env, caplog, setting
):
    caplog.set_level(logging.DEBUG)
    port = dead_port()
    dead = with_password(f"http://127.0.0.1:{port}")
    options: dict[str, Any] = {}
    if setting == "HTTPS_PROXY":
        ppauth_env.set(HTTPS_PROXY=dead)
    elif setting == "option":
        options["proxies"] = {"https": dead}
    else:
        ppauth_env.write_config(f'[profiles.default]\nproxy = "{dead}"\n')

    with pytest.raises(TokenAcquisitionError) as caught:
        api_auth(emu, **options).provider.get(APPS_SCOPE)

    error = caught.value
    assert error.error == "network_error" and error.retryable
    assert f"127.0.0.1:{port}" in str(error) and "proxy" in str(error)
    assert "NO_PROXY" in str(error.hint)
    if setting == "HTTPS_PROXY":
        assert "HTTPS_PROXY" in str(error)
    for item in chain(error):
        assert PROXY_PASSWORD not in str(item) + repr(item)
    assert PROXY_PASSWORD not in caplog.text
    assert emu.count("token") == 0


# -- (e) ppauth doctor ----------------------------------------------------------------------
def doctor() -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, "-m", "requests_ppauth.cli", "doctor", "--json"],
        env=os.environ.copy(),
        capture_output=True,
        text=True,
        timeout=90,
        cwd=ROOT,
    )
    assert PROXY_PASSWORD not in proc.stdout + proc.stderr
    return dict(json.loads(proc.stdout))


def authority_detail(report: dict[str, Any]) -> str:
    check = next(c for c in report["checks"] if c["name"] == "authority")
    return f"{check['status']}: {check['detail']} {check.get('hint') or ''}"


def test_doctor_names_the_proxy_identity_traffic_uses_without_its_password(emu, ppauth_env, proxy):
    ppauth_env.set(HTTPS_PROXY=with_password(proxy.url))
    report = doctor()
    assert report["ok"] is True
    detail = authority_detail(report)
    assert f"through the proxy http://***@127.0.0.1:{proxy.port} (from HTTPS_PROXY)" in detail
    assert proxy.tunnels[identity_target(emu)] >= 2  # discovery and the token, through it

    ppauth_env.set(NO_PROXY="localhost,127.0.0.1")
    assert "direct (NO_PROXY matches 127.0.0.1)" in authority_detail(doctor())
    ppauth_env.set(HTTPS_PROXY=None, NO_PROXY=None)
    assert "direct (no https proxy is set)" in authority_detail(doctor())


def test_doctor_reports_a_dead_proxy_without_its_password(emu, ppauth_env):
    port = dead_port()
    ppauth_env.set(HTTPS_PROXY=with_password(f"http://127.0.0.1:{port}"))
    report = doctor()
    assert report["ok"] is False
    detail = authority_detail(report)
    assert detail.startswith("fail") and f"127.0.0.1:{port}" in detail and "proxy" in detail


def test_an_explicit_credential_with_the_proxies_option(ppauth_emulator, proxy):
    """The option works without any environment: credential, verify and proxies given."""
    emu = ppauth_emulator
    s = emu.sample
    assert s is not None
    cred = ClientSecret(
        tenant_id=s.tenant_id,
        client_id=s.client_id,
        secret=s.client_secret,
        authority_host=emu.authority_host,
    )
    auth = api_auth(emu, credential=cred, verify=emu.ca_bundle, proxies={"https": proxy.url})
    assert get_envs(emu, auth).status_code == 200
    assert s.client_secret.encode() not in proxy.seen
    assert proxy.tunnels[identity_target(emu)] >= 1
