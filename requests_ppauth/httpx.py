"""``requests_ppauth.httpx.PowerPlatformAuth``: the same tokens for httpx clients.

``httpx.Client(auth=PowerPlatformAuth())`` or ``httpx.AsyncClient(auth=...)``. Needs
the ``httpx`` extra (``pip install requests-ppauth[httpx]``); ``import requests_ppauth``
never imports this module, so it never imports httpx.

It wraps a :class:`requests_ppauth.PowerPlatformAuth` built from the same options, so
both share everything that matters: the host to scope table and allow-list
(:meth:`~requests_ppauth.PowerPlatformAuth.scope_for_url`), the token provider and its
in-memory, shared-cache and single-flight logic. A token fetched through one is a
cache hit for the other.

Redirects: httpx follows them inside one auth flow (``_send_handling_redirects`` runs
between the flow's ``yield`` and its resumption), not by calling the flow again, and it
drops ``Authorization`` itself when a redirect leaves the origin (bar an http to https
upgrade of the same host). So a token never follows a redirect to another host. This
flow adds to that: a 401 from a request that a redirect moved to another origin is
handed back as is, never answered with a token for the first host.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Generator
from typing import TYPE_CHECKING, Any

import httpx

from requests_ppauth.auth import PowerPlatformAuth as _RequestsAuth
from requests_ppauth.auth import claims_from_challenge
from requests_ppauth.errors import ConfigurationError, HostNotAllowedError

if TYPE_CHECKING:
    from requests_ppauth.tokens import AccessToken, TokenProvider

__all__ = ["PowerPlatformAuth"]


def _origin(url: httpx.URL) -> tuple[str, str, int | None]:
    return (url.scheme, url.host, url.port)


def _replayable(request: httpx.Request) -> bool:
    """A body sent once can be sent again: none, or bytes in memory (httpx keeps a
    ``ByteStream`` for ``content=bytes``, ``data=``, ``json=``, ``files=`` once read)."""
    return isinstance(request.stream, httpx.ByteStream)


class PowerPlatformAuth(httpx.Auth):
    """Bearer tokens from Entra ID for Power Platform hosts, for httpx.

    Takes the options of :class:`requests_ppauth.PowerPlatformAuth` (profile,
    credential, scope, hosts, allowed_hosts, cloud, authority_host, sources, verify,
    timeout, cache, proxies); ``verify``, ``timeout`` and ``proxies`` are for identity
    traffic only (httpx ignores ``REQUESTS_CA_BUNDLE``: give the client its own
    ``verify=``).

    A host outside the allow-list raises :class:`~requests_ppauth.HostNotAllowedError`
    before anything is sent. A 401 gets one new token and one resend (a claims
    challenge, ``error="insufficient_claims"``, a token requested with its claims);
    a 401 to the resend goes back to the caller. A request whose body is a stream
    (an iterator) is not resent: the caller sees the 401.

    ``async_auth_flow`` never blocks the event loop: the hot path (a fresh token in
    memory) is a dictionary lookup, and anything that may do I/O (reading the
    configuration, the shared cache, asking Entra ID) runs in a worker thread
    (``anyio.to_thread``, so asyncio and trio both work).
    """

    def __init__(self, profile: str | None = None, **options: Any) -> None:
        self._auth = _RequestsAuth(profile, **options)

    @classmethod
    def wrapping(cls, auth: _RequestsAuth) -> PowerPlatformAuth:
        """An httpx auth over an existing requests auth: the same provider and tokens."""
        self = cls.__new__(cls)
        self._auth = auth
        return self

    @property
    def provider(self) -> TokenProvider:
        """The token provider (shared with :attr:`requests_auth`)."""
        return self._auth.provider

    @property
    def requests_auth(self) -> _RequestsAuth:
        """The requests auth this one wraps."""
        return self._auth

    def scope_for_url(self, url: str) -> str:
        """The scope a request to ``url`` gets; raises if the host may not have a token."""
        return self._auth.scope_for_url(url)

    def __repr__(self) -> str:
        return f"requests_ppauth.httpx.{self._auth!r}"

    # -- tokens ------------------------------------------------------------------------
    def _fresh(self, url: str) -> AccessToken | None:
        """The hot path, with no I/O: a known route and a fresh token in memory."""
        import time

        auth = self._auth
        cut = url.find("/", 8)
        scope = auth._routes.get(url if cut < 0 else url[:cut])
        provider = auth._provider
        if scope is None or provider is None:
            return None
        token = provider.tokens.get(scope)
        if token is None or time.time() >= token.refresh_on:
            return None
        return token

    def _token(self, url: str) -> tuple[str, AccessToken]:
        scope = self._auth._route(url)
        return scope, self.provider.get(scope)

    def _retry_token(
        self, request: httpx.Request, response: httpx.Response
    ) -> tuple[str, str | None] | None:
        """(scope, claims) to resend ``request`` with after ``response``, else None."""
        if response.status_code != 401 or not _replayable(request):
            return None
        if _origin(response.request.url) != _origin(request.url):
            return None  # a redirect took it elsewhere: that host's 401 is not ours to answer
        try:
            scope = self._auth._route(str(request.url))
        except (HostNotAllowedError, ConfigurationError):
            return None
        return scope, claims_from_challenge(response.headers.get("WWW-Authenticate"))

    def _renew(self, scope: str, claims: str | None, sent: str) -> AccessToken:
        provider = self.provider
        if claims is not None:
            return provider.get(scope, claims=claims)
        provider.forget(scope, sent.removeprefix("Bearer "))
        return provider.get(scope)

    # -- httpx.Auth ----------------------------------------------------------------------
    def sync_auth_flow(
        self, request: httpx.Request
    ) -> Generator[httpx.Request, httpx.Response, None]:
        fresh = self._fresh(str(request.url))
        if fresh is not None:
            token = fresh
        else:
            _, token = self._token(str(request.url))
        request.headers["Authorization"] = token.header
        response = yield request
        retry = self._retry_token(request, response)
        if retry is None:
            return
        token = self._renew(*retry, token.header)
        request.headers["Authorization"] = token.header
        yield request

    async def async_auth_flow(
        self, request: httpx.Request
    ) -> AsyncGenerator[httpx.Request, httpx.Response]:
        import anyio.to_thread

        url = str(request.url)
        fresh = self._fresh(url)
        if fresh is not None:
            token = fresh
        else:
            _, token = await anyio.to_thread.run_sync(self._token, url)
        request.headers["Authorization"] = token.header
        response = yield request
        retry = self._retry_token(request, response)
        if retry is None:
            return
        token = await anyio.to_thread.run_sync(self._renew, *retry, token.header)
        request.headers["Authorization"] = token.header
        yield request

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        """The sync flow (httpx calls :meth:`sync_auth_flow` or :meth:`async_auth_flow`;
        this is for code that drives ``auth_flow`` itself)."""
        return self.sync_auth_flow(request)
