"""The async ``PowerPlatformCredential``: azure-core's ``AsyncTokenCredential`` and
``AsyncSupportsTokenInfo`` over the same token provider as the sync one.

The provider is blocking (msal, the file or Redis cache, the key locks other
processes hold), so the event loop never runs it: a token in memory and still fresh
is answered on the loop (a dictionary lookup and a clock read); anything else goes to
a small thread pool of this credential's own. Coroutines asking for the same token
share one flight (one thread call however many await it); threads and processes are
made to share one token request by the provider and its shared cache, as for the
requests auth.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import threading
import time
import weakref
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from azure.core.credentials import AccessToken, AccessTokenInfo, TokenRequestOptions

from requests_ppauth.azure import _Core, _options, scope_for, to_info

if TYPE_CHECKING:
    from types import TracebackType
    from typing import Self

    from requests_ppauth.auth import PowerPlatformAuth
    from requests_ppauth.cache import CacheBackend
    from requests_ppauth.credentials import Credential
    from requests_ppauth.tokens import AccessToken as PPToken

# Threads for token requests: one flight per distinct token at a time, so this bounds
# how many different tokens are fetched at once, not how many coroutines wait.
MAX_WORKERS = 4

_Key = tuple[str, str, str]  # scope, claims, tenant


class PowerPlatformCredential:
    """An azure-core ``AsyncTokenCredential`` with this package's tokens.

    Same options as :class:`requests_ppauth.PowerPlatformCredential` (and so as
    ``PowerPlatformAuth``), or ``auth=`` an existing requests auth to share its
    provider. Use it with ``async with`` or ``await cred.close()``: closing waits for
    the token requests in flight and stops the credential's threads (a later call
    starts new ones: a closed credential still works, as azure-identity's do).
    """

    def __init__(
        self,
        profile: str | None = None,
        *,
        credential: Credential | Any | None = None,
        cloud: str | None = None,
        authority_host: str | None = None,
        sources: Sequence[str] | None = None,
        verify: str | bool | None = None,
        timeout: float | tuple[float, float] | None = None,
        cache: bool | str | os.PathLike[str] | Mapping[str, Any] | CacheBackend = True,
        proxies: Mapping[str, str] | None = None,
        auth: PowerPlatformAuth | None = None,
        max_workers: int = MAX_WORKERS,
    ) -> None:
        composed = _options(
            profile,
            credential,
            cloud,
            authority_host,
            sources,
            verify,
            timeout,
            cache,
            proxies,
            auth,
        )
        self._core = _Core(composed)
        self._max_workers = max_workers
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._executor_lock = threading.Lock()
        # per event loop: a task belongs to one loop, and a credential may outlive a loop
        self._flights: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, dict[_Key, asyncio.Task[PPToken]]
        ] = weakref.WeakKeyDictionary()
        #: thread calls made (flights started), for tests and benchmarks
        self.flights_started = 0

    @property
    def auth(self) -> PowerPlatformAuth:
        """The composed requests auth (its provider is this credential's)."""
        return self._core.auth

    def __repr__(self) -> str:
        auth = self._core.auth
        cloud = auth.cloud.name if auth.cloud else None
        return f"aio.PowerPlatformCredential(profile={auth.profile!r}, cloud={cloud!r})"

    # -- azure-core's protocols ---------------------------------------------------------
    async def get_token(
        self,
        *scopes: str,
        claims: str | None = None,
        tenant_id: str | None = None,
        enable_cae: bool = False,
        **kwargs: Any,
    ) -> AccessToken:
        """``AsyncTokenCredential.get_token``; never blocks the event loop."""
        token = await self._token(scope_for(scopes), claims, tenant_id)
        return AccessToken(token.token, int(token.expires_on))

    async def get_token_info(
        self, *scopes: str, options: TokenRequestOptions | None = None
    ) -> AccessTokenInfo:
        """``AsyncSupportsTokenInfo.get_token_info``, with ``refresh_on``."""
        opts = options or {}
        token = await self._token(scope_for(scopes), opts.get("claims"), opts.get("tenant_id"))
        return to_info(token)

    async def close(self) -> None:
        """Wait for this loop's token requests in flight, then stop the threads."""
        loop = asyncio.get_running_loop()
        pending = list(self._flights.get(loop, {}).values())
        if pending:
            await asyncio.wait(pending)
        with self._executor_lock:
            executor, self._executor = self._executor, None
        if executor is not None:
            # the flights of other loops (if any) finish first: shutdown waits for them,
            # in a thread, so this loop keeps running meanwhile
            await loop.run_in_executor(None, executor.shutdown)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None = None,
        exc: BaseException | None = None,
        tb: TracebackType | None = None,
    ) -> None:
        await self.close()

    # -- one flight per token ---------------------------------------------------------
    async def _token(self, scope: str, claims: str | None, tenant_id: str | None) -> PPToken:
        provider = self._core.built()
        if provider is not None and not claims and not tenant_id:
            current = provider.tokens.get(scope)  # the requests auth's hot path, on the loop
            if current is not None and time.time() < current.refresh_on:
                return current
        loop = asyncio.get_running_loop()
        flights = self._flights.get(loop)
        if flights is None:
            flights = self._flights[loop] = {}
        key = (scope, claims or "", tenant_id or "")
        task = flights.get(key)
        if task is None:
            task = loop.create_task(self._fly(loop, scope, claims, tenant_id))
            flights[key] = task
            task.add_done_callback(lambda done: _landed(flights, key, done))
        # a caller cancelled (a timeout) leaves the flight to the others
        return await asyncio.shield(task)

    async def _fly(
        self,
        loop: asyncio.AbstractEventLoop,
        scope: str,
        claims: str | None,
        tenant_id: str | None,
    ) -> PPToken:
        self.flights_started += 1
        return await loop.run_in_executor(self._pool(), self._core.fetch, scope, claims, tenant_id)

    def _pool(self) -> concurrent.futures.ThreadPoolExecutor:
        with self._executor_lock:
            if self._executor is None:
                self._executor = concurrent.futures.ThreadPoolExecutor(
                    max_workers=self._max_workers, thread_name_prefix="ppauth-token"
                )
            return self._executor


def _landed(flights: dict[_Key, asyncio.Task[PPToken]], key: _Key, done: asyncio.Task[Any]) -> None:
    """A flight ended: later callers start a new one (the provider's memory answers
    them at once while the token is fresh). Its error is retrieved here, so a flight
    whose every waiter was cancelled logs no "exception was never retrieved"."""
    if flights.get(key) is done:
        del flights[key]
    if not done.cancelled():
        done.exception()


__all__ = ["PowerPlatformCredential"]
