"""The HTTP client msal uses for identity traffic.

Why our own: ``REQUESTS_CA_BUNDLE``/``CURL_CA_BUNDLE`` silently override a Session's
``verify`` (requests #3829), so the CA is passed on every call; msal's ROPC user-realm
request is built from the authority's hostname without its port, so the port is put
back; identity traffic gets timeouts and never follows redirects (a token endpoint
that redirects would carry secrets elsewhere).


Proxies: the Session keeps ``trust_env = False`` (no CA bundle, no netrc
credentials from the environment); :mod:`requests_ppauth.proxies` picks each request's proxy.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator, Mapping
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import requests

from requests_ppauth.proxies import Route, check_environment_proxies, proxy_failure, proxy_route

DEFAULT_TIMEOUT = (5.0, 30.0)  # connect, read: fail fast on a dead authority host


class IdentityHttpClient:
    """A ``requests``-based client with the ``get``/``post``/``close`` msal expects."""

    def __init__(
        self,
        verify: str | bool = True,
        timeout: float | tuple[float, float] = DEFAULT_TIMEOUT,
        authority_netlocs: tuple[str, ...] = (),
        proxies: Mapping[str, str] | None = None,
        use_proxy: bool = True,
    ) -> None:
        self.verify = verify
        self.timeout = timeout
        self.proxies = dict(proxies) if proxies is not None else None
        self.use_proxy = use_proxy  # False for managed identity endpoints
        if use_proxy:
            check_environment_proxies(self.proxies)  # each request checks again: route()
        # hostname -> host:port, for authorities on a non-default port
        self._ports = {
            netloc.rpartition(":")[0].lower(): netloc
            for netloc in authority_netlocs
            if ":" in netloc and not netloc.endswith(":443")
        }
        self._session: requests.Session | None = None
        self._local = threading.local()

    @property
    def last_error(self) -> dict[str, Any] | None:
        """This thread's last Entra-shaped error body (msal turns some into bare ValueErrors)."""
        return getattr(self._local, "error", None)

    def _remember(self, resp: requests.Response) -> requests.Response:
        error = None
        if resp.status_code >= 400:
            try:
                body = resp.json()
            except ValueError:
                body = None
            if isinstance(body, dict) and "error" in body:
                error = body
        self._local.error = error
        retry_after = None
        if resp.status_code in (429, 503) and resp.headers.get("Retry-After", "").isdigit():
            retry_after = float(resp.headers["Retry-After"])
        self._local.retry_after = retry_after
        return resp

    @property
    def last_retry_after(self) -> float | None:
        """This thread's last Retry-After (seconds) from a 429 or 503, if any."""
        return getattr(self._local, "retry_after", None)

    @property
    def session(self) -> requests.Session:
        """Created on first use, so building the client costs nothing."""
        if self._session is None:
            self._session = requests.Session()
            # no netrc or CA bundle from the environment for secrets; proxies: see route()
            self._session.trust_env = False
        return self._session

    def _fix(self, url: str) -> str:
        parts = urlsplit(url)
        if parts.port is None and parts.hostname and parts.hostname.lower() in self._ports:
            return urlunsplit(parts._replace(netloc=self._ports[parts.hostname.lower()]))
        return url

    @contextlib.contextmanager
    def thread_timeout(self, timeout: float | tuple[float, float]) -> Iterator[None]:
        """This thread's requests use ``timeout`` inside the block, whatever msal asks:
        a refresh while a valid token is in hand must not hold the caller for the
        whole read timeout of a slow identity provider."""
        previous = getattr(self._local, "timeout", None)
        self._local.timeout = timeout
        try:
            yield
        finally:
            self._local.timeout = previous

    def _kwargs(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        override = getattr(self._local, "timeout", None)
        if override is not None:
            kwargs["timeout"] = override
        else:
            kwargs.setdefault("timeout", self.timeout)
        kwargs["verify"] = self.verify
        kwargs["allow_redirects"] = False
        return kwargs

    def route(self, url: str) -> Route:
        """The proxy (or none) a request to ``url`` goes through, resolved per request:
        the environment may change, and the Session must not read it (``trust_env``)."""
        return proxy_route(url, self.proxies, use_proxy=self.use_proxy)

    def _send(self, method: str, url: str, kwargs: dict[str, Any]) -> requests.Response:
        url = self._fix(url)
        route = self.route(url)
        kwargs = self._kwargs(kwargs)
        kwargs["proxies"] = {urlsplit(url).scheme: route.proxy} if route.proxy else {}
        try:
            resp = self.session.request(method, url, **kwargs)
        except requests.exceptions.ProxyError as exc:
            raise proxy_failure(url, route, exc) from None
        return self._remember(resp)

    def get(self, url: str, **kwargs: Any) -> requests.Response:
        """GET as msal calls it (``params``, ``headers``, ``timeout``...)."""
        return self._send("GET", url, kwargs)

    def post(self, url: str, **kwargs: Any) -> requests.Response:
        """POST as msal calls it (``data``, ``headers``...)."""
        return self._send("POST", url, kwargs)

    def close(self) -> None:
        """Close pooled connections."""
        if self._session is not None:
            self._session.close()
            self._session = None

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_session"] = None  # sessions hold sockets: rebuilt in the new process
        del state["_local"]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._local = threading.local()
