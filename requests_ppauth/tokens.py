"""Token acquisition through msal: lazily built apps, single-flight, proactive refresh.

The provider keeps, per scope, the last token and the moment to refresh it. The
auth object reads that dictionary on its hot path; only when a token is stale does
it call :meth:`TokenProvider.get`, which takes the scope's lock, checks again, and
asks msal (whose own cache answers first).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import sys
import threading
import time
import warnings
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from requests_ppauth._http import DEFAULT_TIMEOUT, IdentityHttpClient
from requests_ppauth._redacted import HiddenText
from requests_ppauth.backoff import BACKOFF_BASE, BACKOFF_CAP, backs_off, held_error, next_record
from requests_ppauth.cache.keys import (
    ACCESS_TOKEN_PREFIX,
    access_token_key,
    is_backoff,
    partition_key,
    token_key,
)
from requests_ppauth.cache.partitions import SharedTokens
from requests_ppauth.cache.protocol import CacheBackend, Entry, Op
from requests_ppauth.certificates import parse_certificate
from requests_ppauth.credentials import (
    AzureCoreCredential,
    ClientCertificate,
    ClientSecret,
    Credential,
    DeviceCode,
    InteractiveBrowser,
    ManagedIdentity,
    UsernamePassword,
    WorkloadIdentity,
)
from requests_ppauth.errors import (
    CacheError,
    ConfigurationError,
    PPAuthError,
    TokenAcquisitionError,
    UnsafeCacheError,
)
from requests_ppauth.federation import assertion_source
from requests_ppauth.flows import (
    device_code_flow,
    managed_identity_client,
    scope_to_resource,
)
from requests_ppauth.signin import browser_flow, signed_in

log = logging.getLogger("requests_ppauth")

# msal treats tokens with under 300 s left as expired; refreshing a little before
# that keeps the hot path from serving a token msal would refuse, and avoids the
# 401-refresh-retry loop google-auth's REFRESH_THRESHOLD is there for.
REFRESH_MARGIN = 300.0
# After a failed refresh while the old token is still valid, wait this long
# (unless the server said Retry-After).
RETRY_BACKOFF = 30.0
# Never hand out a token with less than this left: it could expire in flight.
SAFETY = 5.0
# While another process refreshes a stale-but-valid token, look again after this long.
PEER_WAIT = 1.0
# How long a process waits for another's token request before making its own.
LOCK_TIMEOUT = 30.0
# msal's section a sign-out looks for refresh tokens in
REFRESH_TOKENS = "RefreshToken"
RETRYABLE_ERRORS = frozenset({"temporarily_unavailable", "server_error", "network_error"})
# A refresh while a valid token is in hand uses at most these (connect, read)
# timeouts: the token keeps the caller working, so a slow identity provider must not
# hold it for the whole read timeout (30 s by default). 3.05 s lets one lost SYN be
# resent (at 3 s); Entra ID answers a token request in well under 5 s when healthy.
# On a timeout the valid token is served and the refresh tried again RETRY_BACKOFF
# later; only once no valid token is left does a request wait the full timeout.
REFRESH_TIMEOUT = (3.05, 5.0)


def _caller_level() -> int:
    """``stacklevel`` of the first frame outside this package, requests and urllib3,
    so the ROPC warning points at the caller's code (and can be filtered by module)."""
    frame = sys._getframe(2)  # the caller of the function that calls warnings.warn
    level = 2
    while frame.f_back is not None and str(frame.f_globals.get("__name__", "")).split(".")[0] in (
        "requests_ppauth",
        "requests",
        "urllib3",
    ):
        frame = frame.f_back
        level += 1
    return level


class ROPCWarning(UserWarning):
    """Username/password sign-in is in use; it cannot pass MFA."""


ROPC_MESSAGE = (
    "requests-ppauth is signing in with a username and password (ROPC). ROPC cannot pass "
    "multi-factor authentication and Microsoft is retiring it for public clients: use a "
    "service principal (client secret or certificate) for unattended jobs."
)


@dataclass(frozen=True)
class AccessToken:
    """A bearer token; ``refresh_on`` is when to stop using it on the hot path."""

    token: str = field(repr=False)
    expires_on: float
    refresh_on: float
    scope: str
    header: str = field(default="", repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.header:  # built once, so the hot path only assigns it
            object.__setattr__(self, "header", "Bearer " + self.token)

    @classmethod
    def from_msal(cls, result: dict[str, Any], scope: str, now: float) -> AccessToken:
        """From msal's result dict (``expires_in`` is what is left, ``refresh_in`` optional)."""
        expires_on = now + float(result.get("expires_in", 0))
        margin = min(REFRESH_MARGIN, float(result.get("expires_in", 0)) / 2)
        refresh_on = expires_on - margin
        if result.get("refresh_in"):
            refresh_on = min(refresh_on, now + float(result["refresh_in"]))
        elif isinstance(result.get("refresh_on"), int | float) and result["refresh_on"] > now:
            # msal hands the server's refresh_in over as an absolute refresh_on (one in
            # the past means msal's own refresh failed and it fell back to this token)
            refresh_on = min(refresh_on, float(result["refresh_on"]))
        return cls(str(result["access_token"]), expires_on, refresh_on, scope)


def normalise_authority_host(host: str) -> str:
    """``https://host[:port]`` from what a user may write (``login.microsoftonline.us/``)."""
    host = host.strip().rstrip("/")
    if "://" not in host:
        host = "https://" + host
    parts = urlsplit(host)
    if parts.scheme != "https" or not parts.hostname or parts.path not in ("", "/"):
        raise ConfigurationError(
            f"authority host {host!r} must be https://host[:port] with no path "
            "(e.g. https://login.microsoftonline.com)"
        )
    return f"https://{parts.netloc}"


_providers: weakref.WeakSet[TokenProvider] = weakref.WeakSet()


def _after_fork() -> None:
    for provider in list(_providers):
        provider._reset_runtime()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork)


class TokenProvider:
    """Gets tokens for one credential. Thread-safe; with a shared cache, also
    single-flight across processes: one token request per key, not one each.
    ``cache=None`` keeps tokens in a :class:`~requests_ppauth.cache.MemoryCache`
    of this provider's own, so there is one code path whatever the backend.

    ``backoff_base`` and ``backoff_cap`` (seconds; class defaults
    :data:`BACKOFF_BASE`, :data:`BACKOFF_CAP`) set the back-off after the identity
    provider could not be reached; set them on an instance (tests use short ones)."""

    backoff_base: float = BACKOFF_BASE
    backoff_cap: float = BACKOFF_CAP

    def __init__(
        self,
        credential: Callable[[], Credential],
        *,
        authority_host: str,
        force_authority: bool = False,
        verify: str | bool = True,
        timeout: float | tuple[float, float] | None = None,
        cache: CacheBackend | None = None,
        lock_timeout: float = LOCK_TIMEOUT,
        proxies: Mapping[str, str] | None = None,
    ) -> None:
        self._credential_factory = credential
        self.authority_host = normalise_authority_host(authority_host)
        self.force_authority = force_authority
        self.verify = verify
        self.timeout = timeout
        self.cache = cache
        self.lock_timeout = lock_timeout
        self.proxies = dict(proxies) if proxies is not None else None
        self.tokens: dict[str, AccessToken] = {}
        self._reset_runtime()
        _providers.add(self)

    def _reset_runtime(self) -> None:
        """Drop everything a fork or a pickle cannot carry: locks, msal app, sockets."""
        self._guard = threading.Lock()
        self._locks: dict[str, threading.Lock] = {}
        self._app: Any = None
        self._http: IdentityHttpClient | None = None
        self._credential: Credential | None = None
        self._warned_ropc = False
        # token key -> the last back-off record written or read: used only while
        # the shared cache is unusable (the shared record is the truth otherwise)
        self._backoffs: dict[str, Entry] = {}
        # scope -> (claims, token) of the last claims challenge answered, so threads
        # challenged together make one request (see _get_claimed)
        self._claimed: dict[str, tuple[str, str]] = {}
        if self.cache is None:
            from requests_ppauth.cache.memory import MemoryCache

            self._shared = SharedTokens(MemoryCache())
        else:
            self._shared = SharedTokens(self.cache)
        self._cache_warned = False

    # -- credential and msal app -------------------------------------------------
    @property
    def credential(self) -> Credential:
        """Resolved on first need, then kept."""
        if self._credential is None:
            self._credential = self._credential_factory()
        return self._credential

    def _authority(self, cred: Credential) -> str:
        host = self.authority_host
        if cred.authority_host and not self.force_authority:
            host = normalise_authority_host(cred.authority_host)
        return f"{host}/{cred.tenant_id}"

    def key(self, scope: str) -> str:
        """The cache and single-flight key of ``scope`` for this credential."""
        cred = self.credential
        return token_key(self._authority(cred), cred.tenant_id, cred.client_id, cred.user, scope)

    def partition(self) -> str | None:
        """The msal partition this credential's flow needs: a person's (username and
        password, device code) sign-ins for this client on this authority host; None
        for an app-only flow, which needs no msal state."""
        cred = self.credential
        if not isinstance(cred, UsernamePassword | DeviceCode | InteractiveBrowser):
            return None
        host = urlsplit(self._authority(cred)).hostname or ""
        return partition_key(host.lower(), cred.client_id)

    def _http_client(self) -> IdentityHttpClient:
        """The client msal's traffic goes through, built once. Apart from the msal app
        because a refresh sets its short timeout before the app exists: building an
        app already asks the authority (its OpenID configuration)."""
        if self._http is None:
            cred = self.credential
            self._http = IdentityHttpClient(
                verify=self.verify,
                authority_netlocs=(urlsplit(self._authority(cred)).netloc,),
                proxies=self.proxies,
                use_proxy=not isinstance(cred, ManagedIdentity),  # IMDS is on this machine
                **({"timeout": self.timeout} if self.timeout is not None else {}),
            )
        return self._http

    def _msal_app(self) -> Any:
        if self._app is not None:
            return self._app
        import msal  # lazy: importing requests_ppauth must not import msal

        cred = self.credential
        authority = self._authority(cred)
        self._http_client()
        common: dict[str, Any] = {
            "authority": authority,
            "http_client": self._http,
            "instance_discovery": False,  # no call to login.microsoftonline.com for other hosts
            # given only its partition before each acquisition (see cache.partitions)
            "token_cache": msal.SerializableTokenCache(),
        }
        if isinstance(cred, ClientSecret):
            app = msal.ConfidentialClientApplication(
                # a str msal takes whose repr hides it: msal's constructor holds it as a
                # local while it talks to the network (authority discovery can fail)
                cred.client_id,
                client_credential=HiddenText(cred.secret),
                **common,
            )
        elif isinstance(cred, ClientCertificate):
            from requests_ppauth.certificates import msal_credential

            where = cred.path or f"the certificate from source {cred.source!r}"
            parsed = parse_certificate(cred.certificate, cred.password, where)
            # msal's constructor fetches the OpenID configuration and can raise: the
            # key is in its frame's locals and ours, so in a dict that hides it
            client_credential = msal_credential(parsed, send_chain=cred.send_certificate_chain)
            app = msal.ConfidentialClientApplication(
                cred.client_id, client_credential=client_credential, **common
            )
        elif isinstance(cred, UsernamePassword | DeviceCode | InteractiveBrowser):
            app = msal.PublicClientApplication(cred.client_id, **common)
        elif isinstance(cred, WorkloadIdentity):
            app = msal.ConfidentialClientApplication(
                cred.client_id,
                client_credential={"client_assertion": assertion_source(cred, self._http_client())},
                **common,
            )
        elif isinstance(cred, ManagedIdentity):
            app = managed_identity_client(cred, self._http, common["token_cache"])
        else:
            raise ConfigurationError(f"unsupported credential type {type(cred).__name__}")
        self._app = app
        return app

    # -- tokens ------------------------------------------------------------------
    def _lock_for(self, scope: str) -> threading.Lock:
        with self._guard:
            lock = self._locks.get(scope)
            if lock is None:
                lock = self._locks[scope] = threading.Lock()
            return lock

    def get(self, scope: str, *, claims: str | None = None) -> AccessToken:
        """A token for ``scope``: the cached one while fresh, else a new one.

        ``claims`` (the decoded JSON of a resource's ``insufficient_claims``
        challenge, continuous access evaluation) skips both caches for this call: the
        token in hand is the one the resource refused, so msal is asked for a new one
        with ``claims_challenge`` (see :meth:`_get_claimed`).

        With a shared cache: a fresh token on disk is used as is (no msal, no
        network); a stale but valid one is refreshed by whichever process takes
        the key's lock without waiting, while the others keep using it; with no
        usable token, processes queue on the key's lock and all but the first find
        the token the first one stored, or the back-off it recorded (then each
        raises the back-off's error at once, without a request).
        """
        if claims is not None:
            return self._get_claimed(scope, claims)
        current = self.tokens.get(scope)
        if current is not None and time.time() < current.refresh_on:
            return current
        with self._lock_for(scope):
            current = self.tokens.get(scope)
            now = time.time()
            if current is not None and now < current.refresh_on:
                return current  # another thread refreshed while we waited
            key = self.key(scope)
            try:
                return self._get_shared(scope, key, current, now)
            except UnsafeCacheError:
                raise  # a cache someone else can touch is refused, never worked around
            except CacheError as exc:
                # the cache is down or unusable: a token without it beats no token
                self._warn_cache(exc)
                if current is not None and now < current.expires_on - SAFETY:
                    return self._refresh(scope, current, key)
                # nothing to keep: the back-off is this process's alone
                return self._fetch(scope, key, self._backoffs.get(key), shared=False)

    def _get_claimed(self, scope: str, claims: str) -> AccessToken:
        """:meth:`get` with a claims challenge: no cache read, one request per challenge.

        Threads challenged together (each holding the refused token) queue on the
        scope's lock; the first asks Entra ID, the others find the token it got for the
        same ``claims`` (one that is not the token they held when they came in) and use
        it. The new token is stored as usual (memory and shared cache), so later calls,
        in this process and the others, reuse it. No back-off record is consulted:
        the identity provider issued the refused token, so it was reachable lately.
        """
        held = self.tokens.get(scope)
        held_token = held.token if held is not None else None
        with self._lock_for(scope):
            last = self._claimed.get(scope)
            current = self.tokens.get(scope)
            if (
                last is not None
                and last[0] == claims
                and current is not None
                and current.token == last[1]
                and current.token != held_token
                and time.time() < current.expires_on - SAFETY
            ):
                return current  # another thread answered this challenge while we waited
            key = self.key(scope)
            try:
                token = self._acquire(scope, key, claims=claims)
            except UnsafeCacheError:
                raise
            except CacheError as exc:
                self._warn_cache(exc)
                token = self._acquire_unlocked(scope, claims=claims)
            self.tokens[scope] = token
            self._claimed[scope] = (claims, token.token)
            self._backoffs.pop(key, None)
            return token

    def _warn_cache(self, exc: CacheError) -> None:
        log.log(
            logging.DEBUG if self._cache_warned else logging.WARNING,
            "token cache %s failed (%s); getting tokens without it",
            self._shared.backend.location,
            exc,
        )
        self._cache_warned = True

    def _get_shared(
        self, scope: str, key: str, current: AccessToken | None, now: float
    ) -> AccessToken:
        """:meth:`get` past the in-memory token: the shared cache and its key locks."""
        disk, record = self._disk(key, scope)
        if disk is not None and now < disk.refresh_on:
            self.tokens[scope] = disk
            return disk
        usable = max(
            (t for t in (disk, current) if t is not None and now < t.expires_on - SAFETY),
            key=lambda t: t.expires_on,
            default=None,
        )
        backend = self._shared.backend
        if usable is not None:
            with backend.try_key_lock(key) as mine:
                if mine:
                    # whoever held the lock since we looked may have refreshed or
                    # backed off: what it stored answers, as in the waiting path
                    disk, _ = self._disk(key, scope)
                    if disk is not None and time.time() < disk.refresh_on:
                        self.tokens[scope] = disk
                        return disk
                    return self._refresh(scope, usable, key)
            # another process is refreshing: keep using this one, look again soon
            kept = dataclasses.replace(
                usable, refresh_on=min(now + PEER_WAIT, usable.expires_on - SAFETY)
            )
            self.tokens[scope] = kept
            return kept
        self._wait_out(scope, record, now)  # a back-off holds: no need to queue
        with backend.key_lock(key, self.lock_timeout) as mine:
            if not mine:
                log.warning(
                    "waited %.0f s for another process to fetch a token for %s; "
                    "fetching one here instead",
                    self.lock_timeout,
                    scope,
                )
            # whoever held the lock may have stored a token, or failed and backed off
            disk, record = self._disk(key, scope)
            if disk is not None and time.time() < disk.refresh_on:
                self.tokens[scope] = disk
                return disk
            return self._fetch(scope, key, record, shared=True)

    # -- back-off with no token in hand ---------------------------------------------
    def _fetch(self, scope: str, key: str, record: Entry | None, *, shared: bool) -> AccessToken:
        """A token when none is in hand, unless ``record`` (the key's back-off) holds.
        A failure that backs off (:func:`~requests_ppauth.backoff.backs_off`) writes
        the next record, for every process when ``shared``, in the token's place (see
        :mod:`requests_ppauth.cache.keys`); any other outcome ends the back-off: a token
        (stored over it, in the same batch), or an answer that is not a passing
        failure (a user fixing ``invalid_client`` or a password must not wait)."""
        self._wait_out(scope, record, time.time())
        try:
            token = self._refresh(scope, None, key)
        except TokenAcquisitionError as exc:
            if not backs_off(exc):
                if record is not None:
                    self._end_backoff(key, shared=shared)
                raise
            raise self._back_off(scope, key, exc, record, shared=shared) from None
        self._backoffs.pop(key, None)  # the shared record: the token replaced it
        return token

    @staticmethod
    def _wait_out(scope: str, record: Entry | None, now: float) -> None:
        """Raise the back-off's error while ``record`` holds."""
        error = held_error(scope, record, now)
        if error is not None:
            raise error

    def _back_off(
        self,
        scope: str,
        key: str,
        exc: TokenAcquisitionError,
        record: Entry | None,
        *,
        shared: bool,
    ) -> TokenAcquisitionError:
        """Record the back-off after ``exc`` and return the error to raise: ``exc``'s,
        saying when the next attempt is."""
        now = time.time()
        cred = self.credential
        about = {"scope": scope, "client_id": cred.client_id, "authority": self._authority(cred)}
        if cred.user:
            about["user"] = cred.user
        entry = next_record(exc, record, now, self.backoff_base, self.backoff_cap, about)
        failures, wait = int(entry["failures"]), float(entry["expires_on"]) - now
        self._backoffs[key] = entry
        if shared:
            try:
                self._shared.apply([Op(access_token_key(key), entry)])
            except (CacheError, OSError) as exc_store:
                log.warning(
                    "could not share the back-off in %s (%s); backing off in this process only",
                    self._shared.backend.location,
                    exc_store,
                )
        log.info(  # the error raised says as much: a warning would say it twice
            "no token for %s: %s (%s, %d failure%s in a row); no new request for %.1f s",
            scope,
            exc.error,
            entry["message"],
            failures,
            "s" if failures != 1 else "",
            wait,
        )
        held = held_error(scope, entry, now)
        return held if held is not None else exc  # a back-off of 0 s holds nothing

    def _end_backoff(self, key: str, *, shared: bool) -> None:
        """Drop ``key``'s back-off: the identity provider answered."""
        self._backoffs.pop(key, None)
        if not shared:
            return
        try:  # under the key's lock: no token was stored since we read the record
            self._shared.apply([Op(access_token_key(key))])
        except (CacheError, OSError) as exc:
            log.warning(
                "could not drop a back-off from %s (%s); it ends on its own",
                self._shared.backend.location,
                exc,
            )

    def _disk(self, key: str, scope: str) -> tuple[AccessToken | None, Entry | None]:
        """What the cache holds in ``key``'s slot, in one read: its token, or its
        back-off record (held or run out), or neither."""
        at = access_token_key(key)
        entry = self._shared.get([at]).get(at)
        if not isinstance(entry, dict):
            return None, None
        if is_backoff(entry):
            self._backoffs[key] = entry
            return None, entry
        if not isinstance(entry.get("secret"), str) or not all(
            isinstance(entry.get(f), int | float) for f in ("expires_on", "refresh_on")
        ):
            return None, None
        self._backoffs.pop(key, None)  # a token there: whatever back-off we saw is over
        token = AccessToken(entry["secret"], entry["expires_on"], entry["refresh_on"], scope)
        return token, None

    def _refresh(self, scope: str, usable: AccessToken | None, key: str | None) -> AccessToken:
        """Ask Entra ID (through msal); on a passing failure keep ``usable`` and back off."""
        now = time.time()
        try:
            # with a valid token in hand, a slow identity provider is not waited for
            token = self._acquire(
                scope, key, timeout=None if usable is None else self._refresh_timeout()
            )
        except TokenAcquisitionError as exc:
            if usable is None or not exc.retryable or now >= usable.expires_on - SAFETY:
                raise
            wait = exc.retry_after if exc.retry_after else RETRY_BACKOFF
            kept = dataclasses.replace(
                usable, refresh_on=min(now + wait, usable.expires_on - SAFETY)
            )
            log.warning(
                "token refresh for %s failed (%s); still using the current token for "
                "%.0f s more, next try in %.0f s",
                scope,
                exc.error,
                usable.expires_on - now,
                kept.refresh_on - now,
            )
            self.tokens[scope] = kept
            if key is not None:  # share the back-off: the other processes wait too
                self._store(key, kept, with_msal=False)
            return kept
        self.tokens[scope] = token
        return token

    def _refresh_timeout(self) -> tuple[float, float]:
        """:data:`REFRESH_TIMEOUT`, or the configured timeouts where they are shorter."""
        configured = self.timeout if self.timeout is not None else DEFAULT_TIMEOUT
        connect, read = configured if isinstance(configured, tuple) else (configured, configured)
        return (min(connect, REFRESH_TIMEOUT[0]), min(read, REFRESH_TIMEOUT[1]))

    def _entry(self, token: AccessToken) -> dict[str, Any]:
        """What the cache keeps of ``token``: the token, its times (to the millisecond),
        and what it is for. The tenant is the authority's last segment and a missing
        ``user`` means an app's token: neither is stored twice (a cache of 10,000
        tokens is ~5% smaller for it)."""
        cred = self.credential
        entry = {
            "secret": token.token,
            "expires_on": round(token.expires_on, 3),
            "refresh_on": round(token.refresh_on, 3),
            "scope": token.scope,
            "client_id": cred.client_id,
            "authority": self._authority(cred),
        }
        if cred.user:
            entry["user"] = cred.user
        return entry

    def _store(self, key: str, token: AccessToken, *, with_msal: bool) -> None:
        """Share ``token`` (and what msal changed in its partition); a failure to store
        never costs the caller the token."""
        msal_cache = self._app.token_cache if (with_msal and self._app is not None) else None
        try:
            self._shared.store(key, self._entry(token), msal_cache, self.partition())
        except (CacheError, OSError) as exc:
            log.warning(
                "could not store the token in %s (%s); using it without sharing it",
                self._shared.backend.location,
                exc,
            )

    def forget(self, scope: str, token: str | None = None) -> None:
        """Stop using the token for ``scope`` (only if it is still ``token``), everywhere."""
        current = self.tokens.get(scope)
        if current is None or (token is not None and current.token != token):
            return
        self.tokens.pop(scope, None)
        try:
            self._shared.forget(self.key(scope), current.token)
        except (CacheError, OSError) as exc:
            log.warning(
                "could not drop a rejected token from %s: %s", self._shared.backend.location, exc
            )

    # -- people signing in and out -------------------------------------------------
    def sign_in(self, scope: str) -> AccessToken:
        """Run a sign-in now, even when an account is signed in already (``ppauth
        login``), and share its result like any token: the account and its refresh
        token go to the shared cache, for later processes.

        The credential must be a :class:`DeviceCode` (its ``prompt`` shows the code) or
        an :class:`InteractiveBrowser` (the browser opens; where none can, a device code).
        """
        cred = self.credential
        if not isinstance(cred, DeviceCode | InteractiveBrowser):
            raise ConfigurationError(
                f"a sign-in needs a DeviceCode or InteractiveBrowser credential, not "
                f"{cred.kind} (source {cred.source})"
            )
        with self._lock_for(scope):
            token = self._acquire(scope, self.key(scope), interactive=True)
            self.tokens[scope] = token
            return token

    def sign_out(self) -> list[str]:
        """Forget this credential's sign-ins, here and in the shared cache.

        Removes its accounts with their refresh and access tokens (msal's
        ``remove_account``; with a ``username``, only that account, otherwise every
        account holding a refresh token of this client; an account another app is
        signed in with too keeps its record, losing only this app's tokens), this
        client's app-only tokens in msal's cache, and our cached tokens for this
        client, authority and user. Returns the usernames of the accounts removed.
        The next token needs a new sign-in (for a person) or a new request (for an app).
        """
        cred = self.credential
        self.tokens.clear()
        self._backoffs.clear()
        shared = self._shared
        partition = self.partition()
        removed: list[str] = []
        with shared.lock:
            if partition is not None and self._holds_refresh_tokens(
                shared.partition(partition), cred
            ):
                app = self._msal_app()  # only now: building it asks the authority (discovery)
                shared.load_into(app.token_cache, partition)
                removed = self._remove_accounts(app, cred)
                shared.store_partition(app.token_cache, partition)
            # a sign-out is rare and must find every token of this credential, whatever
            # its scope: the one place (with listing) that reads the whole cache
            shared.apply(self._sign_out_ops(shared.backend.read_all(), cred))
        return removed

    @staticmethod
    def _holds_refresh_tokens(fields: Mapping[str, Any], cred: Credential) -> bool:
        prefix = REFRESH_TOKENS + "/"
        return any(
            name.startswith(prefix)
            and isinstance(v, dict)
            and str(v.get("client_id", "")).lower() == cred.client_id.lower()
            for name, v in fields.items()
        )

    @staticmethod
    def _remove_accounts(app: Any, cred: Credential) -> list[str]:
        if not hasattr(app, "get_accounts"):  # a managed identity has no accounts
            return []
        cache = app.token_cache
        kinds = cache.CredentialType
        client = cred.client_id.lower()
        removed = []
        for account in app.get_accounts(username=cred.user) if cred.user else app.get_accounts():
            owned = {"home_account_id": account["home_account_id"]}
            rts = list(cache.search(kinds.REFRESH_TOKEN, query=owned))
            if not any(str(rt.get("client_id", "")).lower() == client for rt in rts):
                continue
            app.remove_account(account)  # the partition is this client's alone
            removed.append(str(account.get("username") or account["home_account_id"]))
        return removed

    def _sign_out_ops(self, state: Mapping[str, Any], cred: Credential) -> list[Op]:
        """Deletions of our cached tokens (and back-offs in their place) for this credential."""
        authority = self._authority(cred).lower()
        client = cred.client_id.lower()
        user = (cred.user or "").lower()
        return [
            Op(k)
            for k, v in state.items()
            if k.startswith(ACCESS_TOKEN_PREFIX)
            and isinstance(v, dict)
            and str(v.get("client_id") or "").lower() == client
            and str(v.get("authority") or "").lower() == authority
            and (not user or str(v.get("user") or "").lower() == user)
        ]

    def _acquire(
        self,
        scope: str,
        key: str | None = None,
        *,
        interactive: bool = False,
        timeout: tuple[float, float] | None = None,
        claims: str | None = None,
    ) -> AccessToken:
        shared = self._shared
        partition = self.partition()
        with shared.lock:  # msal's cache object is swapped under this lock
            token = self._acquire_unlocked(
                scope,
                lambda app: shared.load_into(app.token_cache, partition),
                interactive=interactive,
                timeout=timeout,
                claims=claims,
            )
            if key is not None:
                self._store(key, token, with_msal=True)
            return token

    def _acquire_unlocked(
        self,
        scope: str,
        prepare: Callable[[Any], None] | None = None,
        *,
        interactive: bool = False,
        timeout: tuple[float, float] | None = None,
        claims: str | None = None,
    ) -> AccessToken:
        """One acquisition through msal; with ``timeout``, every request it makes
        (building the app included) uses it instead of the configured timeouts. With
        ``claims``, every flow passes msal's ``claims_challenge``, which makes msal skip
        its own access token cache (a refresh token is still used, with the claims)."""
        import requests

        cred = self.credential
        if isinstance(cred, AzureCoreCredential):  # another library's credential: no msal
            now = time.time()
            return AccessToken.from_msal(cred.acquire(scope, claims), scope, now)
        try:
            http = self._http_client()
            with http.thread_timeout(timeout) if timeout is not None else contextlib.nullcontext():
                app = self._msal_app()
                if prepare is not None:
                    prepare(app)
                now = time.time()
                if isinstance(cred, UsernamePassword):
                    result = self._ropc(app, cred, scope, claims)
                elif isinstance(cred, DeviceCode):
                    result = self._device_code(app, cred, scope, claims, interactive)
                elif isinstance(cred, InteractiveBrowser):
                    result = browser_flow(
                        app,
                        cred,
                        scope,
                        silent=not interactive,
                        claims=claims,
                        device_code=lambda dc: self._device_code(app, dc, scope, claims, True),
                    )
                elif isinstance(cred, ManagedIdentity):
                    result = app.acquire_token_for_client(
                        resource=scope_to_resource(scope), claims_challenge=claims
                    )
                else:
                    result = app.acquire_token_for_client([scope], claims_challenge=claims)
        except (requests.exceptions.ConnectionError, requests.exceptions.Timeout) as exc:
            raise TokenAcquisitionError(
                f"cannot reach the authority host {urlsplit(self._authority(cred)).netloc}: "
                f"{type(exc).__name__}",
                error="network_error",
                hint="check the network, the authority host / cloud setting, and "
                "PPAUTH_CA_BUNDLE if the host uses a private CA",
            ) from None
        except PPAuthError:
            raise  # ours already says what to do (and ConfigurationError is a ValueError)
        except ValueError as exc:
            raise self._discovery_error(cred, exc) from None
        except Exception as exc:
            import msal

            if isinstance(exc, msal.exceptions.MsalServiceError):
                # msal raises this on an HTTP 5xx with error=None and no ``.error``
                # attribute: the Entra body (if any) is the one our client kept.
                body = dict(self._http.last_error or {}) if self._http is not None else {}
                body.setdefault("error", "server_error")
                error = TokenAcquisitionError.from_msal(
                    body, f"Entra ID failed to issue a token for {scope} ({exc})"
                )
                error.retryable = True  # the service failed, not the request
                error.retry_after = self._http.last_retry_after if self._http else None
                raise error from None
            raise
        if not result or "access_token" not in result:
            error = TokenAcquisitionError.from_msal(
                result or {},
                f"Entra ID refused a token for {scope} (client {cred.client_id}, "
                f"source {cred.source})",
            )
            error.retry_after = self._http.last_retry_after if self._http else None
            raise error
        log.debug(
            "token for %s from %s (source %s, expires in %ss)",
            scope,
            result.get("token_source", "identity_provider"),
            cred.source,
            result.get("expires_in"),
        )
        return AccessToken.from_msal(result, scope, now)

    def _discovery_error(self, cred: Credential, exc: ValueError) -> TokenAcquisitionError:
        body = self._http.last_error if self._http is not None else None
        if body:
            return TokenAcquisitionError.from_msal(
                body, f"Entra ID rejected the authority {self._authority(cred)}"
            )
        return TokenAcquisitionError(
            f"cannot use the authority {self._authority(cred)}: {exc}",
            error="invalid_authority",
            hint="check the tenant id and the authority host / cloud",
        )

    @staticmethod
    def _device_code(
        app: Any, cred: DeviceCode, scope: str, claims: str | None, interactive: bool
    ) -> dict[str, Any]:
        """The device code flow; with ``claims``, the signed-in accounts' refresh tokens
        are tried with them first (msal's ``acquire_token_silent_with_error``)."""
        if claims is not None and not interactive:
            result = signed_in(app, cred.username, scope, claims)
            if result is not None:
                return dict(result)
            # a new sign-in satisfies the challenge: a person authenticates afresh
            return device_code_flow(app, cred, scope, silent=False, claims=claims)
        return device_code_flow(app, cred, scope, silent=not interactive, claims=claims)

    def _ropc(
        self, app: Any, cred: UsernamePassword, scope: str, claims: str | None = None
    ) -> dict[str, Any] | None:
        accounts = app.get_accounts(username=cred.username)
        if accounts:
            result = app.acquire_token_silent_with_error(
                [scope], account=accounts[0], claims_challenge=claims
            )
            if result and "access_token" in result:
                return dict(result)
        if not self._warned_ropc:
            warnings.warn(ROPC_MESSAGE, ROPCWarning, stacklevel=_caller_level())
            self._warned_ropc = True
        with warnings.catch_warnings():
            # msal's DeprecationWarning says less than ours; ours was shown once above
            warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"msal\b.*")
            warnings.filterwarnings(
                "ignore", category=DeprecationWarning, message=".*deprecated for public client.*"
            )
            result = app.acquire_token_by_username_password(
                cred.username, HiddenText(cred.password), scopes=[scope], claims_challenge=claims
            )
        return dict(result) if result else None
