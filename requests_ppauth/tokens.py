"""Token acquisition through msal: lazily built apps, single-flight, proactive refresh.

The provider keeps, per scope, the last token and the moment to refresh it. The
auth object reads that dictionary on its hot path; only when a token is stale does
it call :meth:`TokenProvider.get`, which takes the scope's lock, checks again, and
asks msal (whose own cache answers first).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
import time
import warnings
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from requests_ppauth._http import IdentityHttpClient
from requests_ppauth.certificates import parse_certificate
from requests_ppauth.credentials import (
    ClientCertificate,
    ClientSecret,
    Credential,
    UsernamePassword,
)
from requests_ppauth.errors import ConfigurationError, PPAuthError, TokenAcquisitionError

log = logging.getLogger("requests_ppauth")

# msal treats tokens with under 300 s left as expired; refreshing a little before
# that keeps the hot path from serving a token msal would refuse, and avoids the
# 401-refresh-retry loop google-auth's REFRESH_THRESHOLD is there for.
REFRESH_MARGIN = 300.0
# After a failed refresh while the old token is still valid, wait this long.
RETRY_BACKOFF = 30.0
RETRYABLE_ERRORS = frozenset({"temporarily_unavailable", "server_error", "network_error"})


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
    """Gets tokens for one credential. Thread-safe; one request per scope at a time."""

    def __init__(
        self,
        credential: Callable[[], Credential],
        *,
        authority_host: str,
        verify: str | bool = True,
        timeout: float | tuple[float, float] | None = None,
    ) -> None:
        self._credential_factory = credential
        self.authority_host = normalise_authority_host(authority_host)
        self.verify = verify
        self.timeout = timeout
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

    # -- credential and msal app -------------------------------------------------
    @property
    def credential(self) -> Credential:
        """Resolved on first need, then kept."""
        if self._credential is None:
            self._credential = self._credential_factory()
        return self._credential

    def _authority(self, cred: Credential) -> str:
        host = normalise_authority_host(cred.authority_host or self.authority_host)
        return f"{host}/{cred.tenant_id}"

    def _msal_app(self) -> Any:
        if self._app is not None:
            return self._app
        import msal  # lazy: importing requests_ppauth must not import msal

        cred = self.credential
        authority = self._authority(cred)
        self._http = IdentityHttpClient(
            verify=self.verify,
            authority_netlocs=(urlsplit(authority).netloc,),
            **({"timeout": self.timeout} if self.timeout is not None else {}),
        )
        common: dict[str, Any] = {
            "authority": authority,
            "http_client": self._http,
            "instance_discovery": False,  # no call to login.microsoftonline.com for other hosts
        }
        if isinstance(cred, ClientSecret):
            app = msal.ConfidentialClientApplication(
                cred.client_id, client_credential=cred.secret, **common
            )
        elif isinstance(cred, ClientCertificate):
            where = cred.path or f"the certificate from source {cred.source!r}"
            parsed = parse_certificate(cred.certificate, cred.password, where)
            client_credential: dict[str, str] = {"private_key": parsed.key_pem}
            if cred.send_certificate_chain:
                client_credential["public_certificate"] = parsed.chain_pem
            else:
                client_credential["thumbprint"] = parsed.thumbprint
            app = msal.ConfidentialClientApplication(
                cred.client_id, client_credential=client_credential, **common
            )
        elif isinstance(cred, UsernamePassword):
            app = msal.PublicClientApplication(cred.client_id, **common)
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

    def get(self, scope: str) -> AccessToken:
        """A token for ``scope``: the cached one while fresh, else a new one."""
        current = self.tokens.get(scope)
        if current is not None and time.time() < current.refresh_on:
            return current
        with self._lock_for(scope):
            current = self.tokens.get(scope)
            now = time.time()
            if current is not None and now < current.refresh_on:
                return current  # another thread refreshed while we waited
            try:
                token = self._acquire(scope)
            except TokenAcquisitionError as exc:
                if current is not None and exc.retryable and now < current.expires_on - 5:
                    log.warning(
                        "token refresh for %s failed (%s); still using the current token "
                        "for %.0f s more",
                        scope,
                        exc.error,
                        current.expires_on - now,
                    )
                    self.tokens[scope] = dataclasses.replace(
                        current, refresh_on=min(now + RETRY_BACKOFF, current.expires_on - 5)
                    )
                    return self.tokens[scope]
                raise
            self.tokens[scope] = token
            return token

    def forget(self, scope: str, token: str | None = None) -> None:
        """Stop using the token for ``scope`` (only if it is still ``token``)."""
        current = self.tokens.get(scope)
        if current is not None and (token is None or current.token == token):
            self.tokens.pop(scope, None)
            self._forget_in_msal(current.token)

    def _forget_in_msal(self, token: str) -> None:
        app = self._app
        if app is None:
            return
        cache = app.token_cache
        for item in list(cache.search(cache.CredentialType.ACCESS_TOKEN)):
            if item.get("secret") == token:
                cache.remove_at(item)

    def _acquire(self, scope: str) -> AccessToken:
        import requests

        cred = self.credential
        try:
            app = self._msal_app()
            now = time.time()
            if isinstance(cred, UsernamePassword):
                result = self._ropc(app, cred, scope)
            else:
                result = app.acquire_token_for_client([scope])
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
                raise TokenAcquisitionError(
                    f"Entra ID failed while refreshing a token: {exc.error}",
                    error="server_error",
                ) from None
            raise
        if not result or "access_token" not in result:
            raise TokenAcquisitionError.from_msal(
                result or {},
                f"Entra ID refused a token for {scope} (client {cred.client_id}, "
                f"source {cred.source})",
            )
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

    def _ropc(self, app: Any, cred: UsernamePassword, scope: str) -> dict[str, Any] | None:
        accounts = app.get_accounts(username=cred.username)
        if accounts:
            result = app.acquire_token_silent_with_error([scope], account=accounts[0])
            if result and "access_token" in result:
                return dict(result)
        if not self._warned_ropc:
            warnings.warn(ROPC_MESSAGE, ROPCWarning, stacklevel=6)
            self._warned_ropc = True
        with warnings.catch_warnings():
            # msal's DeprecationWarning says less than ours; ours was shown once above
            warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"msal\b.*")
            warnings.filterwarnings(
                "ignore", category=DeprecationWarning, message=".*deprecated for public client.*"
            )
            result = app.acquire_token_by_username_password(
                cred.username, cred.password, scopes=[scope]
            )
        return dict(result) if result else None
