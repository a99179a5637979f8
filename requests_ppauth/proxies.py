"""Which proxy (or none) a request goes through, decided as requests decides it.

Why not requests' own resolution: identity traffic keeps ``trust_env = False`` so the
environment's CA bundle and netrc never apply to secrets, which also turns off its
proxies; and plain-http tokens must be refused when a proxy would see them, which an
auth object can only know by asking the same rules itself.

So the proxy of each request is resolved here, by :func:`proxy_route`, the way
requests resolves it: ``HTTPS_PROXY`` /
``https_proxy`` / ``ALL_PROXY`` (lowercase wins), ``NO_PROXY`` and the platform's
proxy settings, after an explicit ``proxies`` mapping. Managed identity endpoints
(this machine's IMDS or App Service agent) and link-local hosts (169.254.169.254)
never go through a proxy: a proxy cannot reach them, and their answers are tokens.
A token request through a proxy travels in a CONNECT tunnel: the proxy sees the
host name, never the secret or the token.
"""

from __future__ import annotations

import importlib.util
import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit
from urllib.request import getproxies, getproxies_environment

from requests.utils import should_bypass_proxies

from requests_ppauth.errors import ConfigurationError, TokenAcquisitionError

PROXY_SCHEMES = ("http", "https")
SOCKS_SCHEMES = ("socks4", "socks4a", "socks5", "socks5h")  # with PySocks (requests[socks])


def redact(url: str) -> str:
    """``url`` with its ``user:password@`` shown as ``***@``: proxy URLs carry
    credentials, and they reach messages, ``ppauth doctor`` and logs."""
    start = url.find("://")
    start = 0 if start < 0 else start + 3
    end = len(url)
    for stop in "/?#":
        at = url.find(stop, start)
        if at >= 0:
            end = min(end, at)
    userinfo = url.rfind("@", start, end)
    return url if userinfo < 0 else f"{url[:start]}***{url[userinfo:]}"


def check_proxy_url(value: object, setting: str) -> str:
    """A proxy URL, checked: ``http://``, ``https://`` (or ``socks5://`` with PySocks),
    a host, a valid port. A bare ``host:port`` gets ``http://``, as requests does."""
    example = "'http://proxy.example.com:3128'"
    if not isinstance(value, str) or not value.strip():
        raise ConfigurationError(f"{setting} must be a proxy URL such as {example}")
    url = value.strip()
    if "://" not in url:
        url = "http://" + url
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    try:
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError:
        raise ConfigurationError(
            f"{setting}: the proxy URL {redact(url)} has a bad port: use {example}"
        ) from None
    if not parts.hostname:
        raise ConfigurationError(
            f"{setting}: the proxy URL {redact(url)} has no host: use {example}"
        )
    if scheme in SOCKS_SCHEMES:
        if importlib.util.find_spec("socks") is None:
            raise ConfigurationError(
                f"{setting}: a {scheme}:// proxy needs PySocks: pip install 'requests[socks]'"
            )
    elif scheme not in PROXY_SCHEMES:
        raise ConfigurationError(
            f"{setting}: the proxy URL {redact(url)} must start with http:// or https://"
        )
    return url


def check_proxies(value: object, setting: str = "proxies") -> dict[str, str]:
    """A requests-style proxies mapping (``{"https": "http://proxy:3128"}``; keys
    ``http``, ``https``, ``all``, ``scheme://host``, and ``no_proxy``), checked."""
    if not isinstance(value, Mapping):
        raise ConfigurationError(
            f"{setting} must be a mapping such as {{'https': 'http://proxy.example.com:3128'}}, "
            f"not {type(value).__name__}"
        )
    checked: dict[str, str] = {}
    for key, url in value.items():
        if not isinstance(key, str) or not key:
            raise ConfigurationError(f"{setting}: keys are schemes such as 'https', not {key!r}")
        name = key.lower()
        if name == "no_proxy":
            if not isinstance(url, str):
                raise ConfigurationError(
                    f"{setting}['no_proxy'] must be a string of hosts, like NO_PROXY"
                )
            checked[name] = url
        else:
            checked[name] = check_proxy_url(url, f"{setting}[{key!r}]")
    return checked


@dataclass(frozen=True, slots=True)
class Route:
    """How a request reaches its host: ``proxy`` (a URL) or direct (``None``), and why."""

    proxy: str | None
    reason: str

    def describe(self) -> str:
        """One line, credentials redacted: for ``ppauth doctor`` and messages."""
        if self.proxy is None:
            return f"direct ({self.reason})"
        return f"through the proxy {redact(self.proxy)} (from {self.reason})"


def _is_link_local(host: str) -> bool:
    try:
        return ipaddress.ip_address(host.strip("[]")).is_link_local
    except ValueError:
        return False


def _pick(url_scheme: str, host: str, proxies: Mapping[str, str]) -> tuple[str, str] | None:
    # the keys requests.utils.select_proxy tries, in its order
    for key in (f"{url_scheme}://{host}", url_scheme, f"all://{host}", "all"):
        value = proxies.get(key)
        if value:
            return key, value
    return None


def _env_name(key: str, value: str) -> str:
    for name in (f"{key}_proxy", f"{key.upper()}_PROXY"):
        if os.environ.get(name) == value:
            return name
    for name, seen in os.environ.items():
        if name.lower() == f"{key}_proxy" and seen == value:
            return name
    return "the system proxy settings"


def environment_proxies() -> dict[str, str]:
    """``urllib.request.getproxies()`` (what requests reads), several times faster
    where it only reads the environment (plain http pays it on every request): one pass
    over the names, values read only for ``*_proxy`` ones. Same rules: any case,
    lowercase wins, no ``HTTP_PROXY`` under CGI."""
    if getproxies is not getproxies_environment:  # macOS, Windows: system settings too
        return getproxies()
    env = os.environ
    names = [name for name in env if name[-6:].lower() == "_proxy"]
    proxies: dict[str, str] = {}
    for name in names:
        value = env.get(name)
        if value:
            proxies[name[:-6].lower()] = value
    if "REQUEST_METHOD" in env:
        proxies.pop("http", None)
    for name in names:
        if name[-6:] == "_proxy":
            value = env.get(name)
            if value:
                proxies[name[:-6].lower()] = value
            else:
                proxies.pop(name[:-6].lower(), None)
    return proxies


def proxy_route(
    url: str, proxies: Mapping[str, str] | None = None, *, use_proxy: bool = True
) -> Route:
    """The proxy a request to ``url`` goes through, decided as a requests Session with
    ``trust_env`` would: the explicit ``proxies``, else ``*_PROXY`` and the platform's
    settings, unless ``NO_PROXY`` exempts the host. Differences, all towards "direct":
    ``use_proxy=False`` (managed identity endpoints) and link-local hosts are always
    direct, and ``NO_PROXY`` (or a ``no_proxy`` key of ``proxies``) also exempts hosts
    from an explicit proxy (requests would still use it).

    Loopback hosts follow ``NO_PROXY`` like any other, as in requests: set
    ``NO_PROXY=localhost,127.0.0.1,::1`` where a proxy must not see local traffic.
    """
    if not use_proxy:
        return Route(None, "managed identity endpoints are never proxied")
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    if not host:
        return Route(None, "no host")
    if _is_link_local(host):
        return Route(None, f"{host} is link-local (instance metadata): never proxied")
    explicit = dict(proxies or {})
    no_proxy = explicit.pop("no_proxy", None)
    scheme = parts.scheme.lower()
    picked = _pick(scheme, host, explicit)
    if picked is not None:
        route = Route(
            check_proxy_url(picked[1], "proxies"), "the proxies= option or the profile's 'proxy'"
        )
    else:
        picked = _pick(scheme, host, environment_proxies())
        if picked is None:
            return Route(None, f"no {scheme} proxy is set")
        name = _env_name(*picked)
        route = Route(check_proxy_url(picked[1], name), name)
    # NO_PROXY last: it costs more than finding no proxy at all (plain http pays it)
    if should_bypass_proxies(url, no_proxy=no_proxy):
        if no_proxy is not None:
            why = "the no_proxy entry of proxies"
        else:
            why = next((n for n in ("no_proxy", "NO_PROXY") if os.environ.get(n)), "")
            why = why or "the system proxy settings"
        return Route(None, f"{why} matches {host}")
    return route


def check_environment_proxies(explicit: Mapping[str, str] | None = None) -> None:
    """Raise :class:`ConfigurationError` now for a malformed ``HTTPS_PROXY`` /
    ``ALL_PROXY`` that identity traffic would use: raised from inside msal's first
    request (the authority's discovery), msal would swallow it (it is a ValueError)."""
    if explicit and ("https" in explicit or "all" in explicit):
        return
    found = environment_proxies()
    for key in ("https", "all"):
        if found.get(key):
            check_proxy_url(found[key], _env_name(key, found[key]))


def proxy_failure(url: str, route: Route, exc: BaseException) -> TokenAcquisitionError:
    """The typed network error for a proxy that cannot be reached or refused the
    tunnel; it names the proxy (redacted) and where its setting comes from."""
    parts = urlsplit(url)
    hostport = parts.netloc.rpartition("@")[2]
    detail = type(exc).__name__
    reason = getattr(exc.args[0], "reason", None) if exc.args else None
    original = getattr(reason, "original_error", None)
    text = getattr(original, "_message", None) or (str(original) if original else "")
    if text:
        detail = text.partition(": ")[2] if text.startswith("<") else text
    shown = redact(route.proxy or "")
    proxy_host = urlsplit(route.proxy or "").netloc.rpartition("@")[2]
    return TokenAcquisitionError(
        f"cannot reach {hostport} through the proxy {shown} (from {route.reason}): {detail}",
        error="network_error",
        hint=f"check that the proxy {proxy_host} is running and reachable from this machine "
        f"(and its credentials); if {parts.hostname} is reachable directly, add it to "
        "NO_PROXY",
    )
