"""``PowerPlatformAuth``: the object that goes on ``session.auth``.

The hot path (a fresh token in memory for a host seen before) is two dictionary
lookups, a clock read and a header assignment: no I/O, no msal, no lock.
Everything else (config, plugins, msal, the network) happens lazily, on the
first request that needs it.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
import threading
import time
import weakref
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from requests.auth import AuthBase
from requests.cookies import extract_cookies_to_jar
from requests.models import PreparedRequest, Response

from requests_ppauth.clouds import Cloud, get_cloud, is_loopback, scope_for_host
from requests_ppauth.errors import ConfigurationError, HostNotAllowedError, InsecureTransportError

if TYPE_CHECKING:  # loaded with the first token: `import requests_ppauth` stays light
    from requests_ppauth.cache import CacheBackend
    from requests_ppauth.credentials import Credential, SupportsGetToken
    from requests_ppauth.tokens import TokenProvider

_OPTIONS = (
    "profile",
    "credential",
    "scope",
    "hosts",
    "allowed_hosts",
    "cloud",
    "authority_host",
    "sources",
    "verify",
    "timeout",
    "cache",
    "proxies",
)
_instances: weakref.WeakSet[PowerPlatformAuth] = weakref.WeakSet()
ROUTE_MEMO = 1024  # distinct origins remembered per auth object
# a continuous access evaluation challenge: ``error="insufficient_claims"`` and the
# claims the token must carry, base64 encoded (https://learn.microsoft.com/entra/
# identity-platform/claims-challenge); parameters in any order, any case for the names
_INSUFFICIENT_CLAIMS = re.compile(r'\berror\s*=\s*"?insufficient_claims\b', re.IGNORECASE)
_CLAIMS = re.compile(r'\bclaims\s*=\s*"([^"]*)"', re.IGNORECASE)


def claims_from_challenge(header: str | None) -> str | None:
    """The decoded claims of a ``WWW-Authenticate`` claims challenge, else None.

    Padding-tolerant and accepting both base64 alphabets: resources differ in what
    they send. A challenge whose claims do not decode to text is treated as a plain
    401 (None): passing garbage to Entra ID would only get an ``invalid_request``.
    """
    if not header or not _INSUFFICIENT_CLAIMS.search(header):
        return None
    match = _CLAIMS.search(header)
    if match is None:
        return None
    data = match.group(1).strip().replace("-", "+").replace("_", "/")
    try:
        decoded = base64.b64decode(data + "=" * (-len(data) % 4), validate=True).decode()
    except (binascii.Error, ValueError):
        return None
    return decoded or None


def _after_fork() -> None:
    for auth in list(_instances):
        auth._lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork)


class PowerPlatformAuth(AuthBase):
    """Bearer tokens from Entra ID for Power Platform hosts.

    :param profile: config profile; default ``PPAUTH_PROFILE``, else the config file's
        ``active_profile`` (``ppauth profile use``), else ``"default"``.
    :param credential: use this credential instead of asking the sources.
    :param scope: one scope for every host (overrides the host table).
    :param hosts: extra ``{"host[:port]": scope}`` entries; these hosts are allowed.
    :param allowed_hosts: the hosts (``host`` or ``host:port``) that may receive a
        token, replacing the default (every Power Platform host of the cloud plus
        ``hosts``). A host outside it raises :class:`HostNotAllowedError` before
        anything is sent.
    :param cloud: ``public`` (default), ``gcc``, ``gcchigh``, ``dod``, ``china``.
    :param authority_host: Entra ID host, when not the cloud's.
    :param sources: credential sources to ask, in this order.
    :param verify: CA bundle for identity traffic (default ``PPAUTH_CA_BUNDLE``);
        ``REQUESTS_CA_BUNDLE`` cannot override it.
    :param timeout: (connect, read) seconds for identity traffic.
    :param cache: ``True`` (default): ``PPAUTH_CACHE``, else the profile's ``cache``,
        else the file cache in ``PPAUTH_CACHE_DIR`` or the platform cache directory;
        a backend name (``"file"``, ``"memory"``, a plugin's); a directory (a path,
        or a string with a ``/``); ``{"backend": name, **options}``; a
        :class:`~requests_ppauth.cache.CacheBackend`; ``False``: this process only.
        A name nobody registered is a :class:`ConfigurationError`.
    :param proxies: proxies for identity traffic (Entra ID), a requests-style mapping
        such as ``{"https": "http://proxy:3128"}``; default: the profile's ``proxy``,
        else ``HTTPS_PROXY`` / ``NO_PROXY`` as requests reads them. ``NO_PROXY``
        still exempts hosts; managed identity endpoints and link-local hosts are never
        proxied. The CA bundle and netrc of the environment never apply to identity
        traffic.

    Plain http (loopback hosts only) gets a token only when the request goes direct:
    if a proxy from the environment (``HTTP_PROXY``, ``ALL_PROXY``, not exempted by
    ``NO_PROXY``) would carry it, :class:`InsecureTransportError` is raised and nothing
    is sent. requests calls an auth object before it merges proxies and never shows it
    the Session, so a ``proxies=`` given to a Session or a call (and ``trust_env =
    False``) is invisible here: sending a token over http through such a proxy is the
    caller's choice.
    """

    def __init__(
        self,
        profile: str | None = None,
        *,
        credential: Credential | SupportsGetToken | None = None,
        scope: str | None = None,
        hosts: Mapping[str, str] | None = None,
        allowed_hosts: Iterable[str] | None = None,
        cloud: str | None = None,
        authority_host: str | None = None,
        sources: Sequence[str] | None = None,
        verify: str | bool | None = None,
        timeout: float | tuple[float, float] | None = None,
        cache: bool | str | os.PathLike[str] | Mapping[str, Any] | CacheBackend = True,
        proxies: Mapping[str, str] | None = None,
    ) -> None:
        self.profile = profile
        self.credential = credential
        self.scope = scope
        self.hosts = {k.lower(): v for k, v in (hosts or {}).items()}
        self.allowed_hosts = (
            frozenset(h.lower() for h in allowed_hosts) if allowed_hosts is not None else None
        )
        self.cloud = get_cloud(cloud) if cloud else None  # validates now: a typo fails early
        self.authority_host = authority_host
        self.sources = list(sources) if sources is not None else None
        self.verify = verify
        self.timeout = timeout
        self.cache = cache
        # checked now, like cloud: a malformed proxy URL fails here, not at the first token
        self.proxies: dict[str, str] | None = None
        if proxies is not None:
            from requests_ppauth.proxies import check_proxies

            self.proxies = check_proxies(proxies)
        self._init_runtime()

    def _init_runtime(self) -> None:
        self._lock = threading.Lock()
        self._provider: TokenProvider | None = None
        self._routes: dict[str, str] = {}
        self._settled: dict[str, Any] | None = None
        self._on_response = self._handle_401  # one bound method, not one per request
        _instances.add(self)

    # -- pickling: options travel, runtime state is rebuilt -------------------------
    def __getstate__(self) -> dict[str, Any]:
        state = {name: getattr(self, name) for name in _OPTIONS}
        state["cloud"] = self.cloud.name if self.cloud else None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(**state)  # type: ignore[misc]

    def __repr__(self) -> str:
        return (
            f"PowerPlatformAuth(profile={self.profile!r}, cloud="
            f"{self.cloud.name if self.cloud else None!r}, scope={self.scope!r})"
        )

    # -- lazily settled configuration ----------------------------------------------
    def _settle(self) -> dict[str, Any]:
        """Profile, cloud, authority host and CA bundle, read once on first need."""
        if self._settled is not None:
            return self._settled
        from requests_ppauth._redacted import EnvironView
        from requests_ppauth.config import choose_profile, load_profile

        env = EnvironView()  # os.environ, whose repr would list every variable in a traceback
        choice = choose_profile(self.profile, env)  # profile= > PPAUTH_PROFILE > active
        name, explicit = choice.name, choice.explicit
        profile = load_profile(name, env)
        cloud = self.cloud or get_cloud(profile.get("cloud") or "public")
        authority = (
            self.authority_host
            or profile.get("authority_host")
            or env.get("PPAUTH_AUTHORITY_HOST")
            or env.get("AZURE_AUTHORITY_HOST")
            or cloud.authority_host
        )
        verify: str | bool = (
            self.verify
            if self.verify is not None
            else profile.get("ca_bundle") or env.get("PPAUTH_CA_BUNDLE") or True
        )
        self._settled = {
            "profile": profile,
            "explicit": explicit,
            "cloud": cloud,
            "authority_host": authority,
            "verify": verify,
            "scope": self.scope or profile.get("scope"),
        }
        return self._settled

    @property
    def provider(self) -> TokenProvider:
        """The token provider, built on first use."""
        provider = self._provider
        if provider is None:
            with self._lock:
                if self._provider is None:
                    from requests_ppauth.tokens import TokenProvider

                    settled = self._settle()
                    proxies = self.proxies
                    if proxies is None and settled["profile"].get("proxy") is not None:
                        from requests_ppauth.proxies import check_proxy_url

                        url = settled["profile"].get("proxy")
                        proxies = {"https": check_proxy_url(url, "the profile's 'proxy'")}
                    self._provider = TokenProvider(
                        self._find_credential,
                        authority_host=settled["authority_host"],
                        force_authority=self.authority_host is not None,
                        verify=settled["verify"],
                        timeout=self.timeout,
                        cache=self._cache_backend(),
                        proxies=proxies,
                    )
                provider = self._provider
        return provider

    def _cache_backend(self) -> CacheBackend:
        from requests_ppauth.cache.select import resolve

        profile = self._settle()["profile"]
        from requests_ppauth._redacted import EnvironView

        return resolve(
            self.cache,
            profile_setting=profile.get("cache"),
            environ=EnvironView(),
            profile_tables=profile,
            origin=profile,
        )

    def _find_credential(self) -> Credential:
        if self.credential is not None:
            from requests_ppauth.credentials import as_credential

            return as_credential(self.credential)  # an azure-core credential is wrapped
        from requests_ppauth._redacted import EnvironView
        from requests_ppauth.plugins import get_plugins

        settled = self._settle()
        return get_plugins().find_credential(
            settled["profile"],
            EnvironView(),  # sources can raise: their frames show no os.environ
            order=self.sources,
            explicit_profile=settled["explicit"],
        )

    # -- host -> scope ---------------------------------------------------------------
    def scope_for_url(self, url: str) -> str:
        """The scope a request to ``url`` gets; raises if the host may not have a token."""
        parts = urlsplit(url)
        scheme, host = parts.scheme.lower(), (parts.hostname or "").lower()
        try:
            port = parts.port
        except ValueError:
            raise HostNotAllowedError(f"malformed URL {url!r}: bad port") from None
        if not host or scheme not in ("https", "http"):
            raise HostNotAllowedError(f"refusing to authenticate {url!r}: not an http(s) URL")
        hostport = f"{host}:{port}" if port else host
        if scheme == "http" and not is_loopback(host):
            raise InsecureTransportError(
                f"refusing to send a token over plain http to {hostport}: use https "
                "(only loopback hosts may use http)"
            )
        settled = self._settle()
        cloud: Cloud = settled["cloud"]
        mapped = self.hosts.get(hostport) or self.hosts.get(host)
        table = scope_for_host(host, cloud)
        if self.allowed_hosts is not None:
            allowed = hostport in self.allowed_hosts or host in self.allowed_hosts
        else:
            allowed = mapped is not None or table is not None
        if not allowed:
            raise HostNotAllowedError(
                f"refusing to send a Power Platform token to {hostport}: it is not a Power "
                f"Platform host of the {cloud.name} cloud. If it should get one, pass "
                f"allowed_hosts=[{hostport!r}] (with scope= or hosts={{{hostport!r}: scope}})."
            )
        if scheme == "http":
            self._refuse_proxied_http(url, host, hostport)
        scope = settled["scope"] or mapped or table
        if scope is None:
            raise ConfigurationError(
                f"{hostport} is allowed but no scope is known for it: pass scope= or "
                f"hosts={{{hostport!r}: 'https://.../.default'}}"
            )
        return str(scope)

    @staticmethod
    def _refuse_proxied_http(url: str, host: str, hostport: str) -> None:
        """Plain http carries the token in clear: only when no proxy can see it."""
        from requests_ppauth.proxies import proxy_route, redact

        route = proxy_route(url)
        if route.proxy is None:
            return
        current = os.environ.get("no_proxy") or os.environ.get("NO_PROXY") or ""
        entries = [e for e in current.replace(" ", "").split(",") if e]
        for name in ("localhost", "127.0.0.1", "::1"):
            if name not in entries:
                entries.append(name)
        if host not in entries and not host.endswith(".localhost"):
            entries.append(host)
        raise InsecureTransportError(
            f"refusing to send a token over plain http to {hostport}: the proxy "
            f"{redact(route.proxy)} (from {route.reason}) would see it in clear. Set "
            f"NO_PROXY={','.join(entries)} so the request goes direct, or use https"
        )

    def _route(self, url: str) -> str:
        # "https://user@host:port/path" -> "https://user@host:port" by one find: prepared
        # URLs always have a path, and the scheme takes 7 or 8 characters. The key keeps
        # any userinfo, so "https://api.powerplatform.com@evil.com" is a key of its own.
        cut = url.find("/", 8)
        key = url if cut < 0 else url[:cut]
        scope = self._routes.get(key)
        if scope is None:
            scope = self.scope_for_url(url)
            # plain http is never remembered: whether a proxy would see it depends on
            # the environment at each request (the https hot path is not taxed for it)
            if len(self._routes) < ROUTE_MEMO and key[:6].lower() == "https:":
                self._routes[key] = scope
        return scope

    # -- requests' AuthBase ----------------------------------------------------------------
    def __call__(self, r: PreparedRequest) -> PreparedRequest:
        """Add the bearer token for ``r``'s host (hot path)."""
        scope = self._route(r.url or "")
        provider = self._provider or self.provider
        token = provider.tokens.get(scope)
        if token is None or time.time() >= token.refresh_on:
            token = provider.get(scope)
        r.headers["Authorization"] = token.header
        body = r.body
        if body is not None and hasattr(body, "tell"):
            try:
                r._ppauth_body_pos = body.tell()  # type: ignore[attr-defined]
            except OSError:
                r._ppauth_body_pos = None  # type: ignore[attr-defined]
        # register_hook's isinstance(hook, Callable) costs more than the rest of this method
        r.hooks["response"].append(self._on_response)
        return r

    def _handle_401(self, r: Response, **kwargs: Any) -> Response:
        """On a 401: forget the token, get another, resend once if the body can be replayed.

        A claims challenge (continuous access evaluation: ``error="insufficient_claims"``
        with ``claims``) gets a token requested with those claims instead, past every
        cache (:meth:`TokenProvider.get` ``claims=``). Either way there is one resend:
        a 401 to the resent request goes back to the caller.

        Modelled on ``requests.auth.HTTPDigestAuth.handle_401``.
        """
        if r.status_code != 401:
            return r
        request = r.request
        if getattr(request, "_ppauth_retried", False) or request.url is None:
            return r
        try:
            scope = self._route(request.url)
        except (HostNotAllowedError, ConfigurationError):
            return r  # e.g. a redirect landed on another host: never send it a token
        body = request.body
        pos = getattr(request, "_ppauth_body_pos", None)
        if body is not None and not isinstance(body, bytes | str):
            if pos is None or not hasattr(body, "seek"):
                return r  # a stream we cannot rewind: the caller sees the 401
            body.seek(pos)
        provider = self.provider
        claims = claims_from_challenge(r.headers.get("WWW-Authenticate"))
        if claims is not None:
            # the new token replaces the refused one in both caches when it is stored
            token = provider.get(scope, claims=claims)
        else:
            sent = str(request.headers.get("Authorization", ""))
            provider.forget(scope, sent.removeprefix("Bearer "))
            token = provider.get(scope)
        r.content  # noqa: B018 - drain, so the connection can be released
        r.close()
        prep = request.copy()
        prep._ppauth_retried = True  # type: ignore[attr-defined]
        cookies = getattr(prep, "_cookies", None)
        if cookies is not None:
            extract_cookies_to_jar(cookies, request, r.raw)  # type: ignore[no-untyped-call]
            prep.prepare_cookies(cookies)
        prep.headers["Authorization"] = token.header
        retry = r.connection.send(prep, **kwargs)
        retry.history.append(r)
        retry.request = prep
        return retry
