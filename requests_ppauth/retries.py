"""``requests_ppauth.session()``: a :class:`requests.Session` ready for Power Platform APIs.

(This module is ``retries``, not ``session``: a submodule named ``session`` would
replace the package's ``session`` function with itself once imported.)

Dataverse answers bursts with 429 service protection errors (6,000 requests per 5
minutes per user, 52 concurrent, 20 minutes of execution time) carrying
``Retry-After``; the Power Platform API and Entra-fronted services answer 503 with it
when they shed load. Every batch job meets them, so the session waits and retries for
idempotent requests, within a bounded total wait.

Why an :class:`requests.adapters.HTTPAdapter` subclass and not urllib3's ``Retry``:
``Retry`` runs inside urllib3, below requests, and retries the same bytes: it cannot
see a 401 answered by the auth's response hook, and a 401 it does not retry is then
resent by the hook through ``response.connection.send``, which is the adapter. With
the retry loop in the adapter's :meth:`RetryAdapter.send`, both compose by
construction: the 401 resend goes through the adapter (so a 401, then a 429, then a
200 works), a 429 the adapter gave up on reaches the hook as a 429 (not its business),
and each layer retries at most its own budget, so nothing loops. A response hook
would run after every hook registered before it and would have to re-dispatch the
others' hooks; the adapter sees each wire response exactly once.
"""

from __future__ import annotations

import email.utils
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter

if TYPE_CHECKING:
    from requests_ppauth.auth import PowerPlatformAuth

__all__ = [
    "DEFAULT_MAX_WAIT",
    "DEFAULT_RETRIES",
    "DEFAULT_TIMEOUT",
    "RetryAdapter",
    "Wait",
    "session",
]

log = logging.getLogger("requests_ppauth.session")

# (connect, read) seconds for API requests that give no timeout. 10 s to connect covers
# a slow TLS handshake over a VPN; 120 s to read matches Dataverse's own limit (a
# request running longer is ended by the server with 0x80040216), so no request the
# service would still answer is cut short, and a dead connection does not hang forever.
DEFAULT_TIMEOUT = (10.0, 120.0)
# At most this many resends of one request after a 429 or 503...
DEFAULT_RETRIES = 5
# ...and at most this many seconds waited in all for one request. Dataverse's
# Retry-After is usually seconds, but the execution time limit can ask for minutes: a
# wait longer than what is left of this returns the response to the caller at once.
DEFAULT_MAX_WAIT = 60.0
# With no (or no usable) Retry-After: 1, 2, 4... seconds, capped.
BACKOFF_FIRST = 1.0
BACKOFF_CAP = 30.0
RETRY_STATUSES = frozenset({429, 503})
# RFC 9110's idempotent methods (PATCH and POST are not: a resent POST creates twice)
IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})


@dataclass(frozen=True)
class Wait:
    """One wait before a resend (what :attr:`RetryAdapter.on_wait` is given)."""

    method: str
    host: str
    status: int
    seconds: float
    attempt: int  # 1 for the first resend
    retry_after: bool  # the server said how long (else the back-off chose)


def retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or an HTTP-date), else None."""
    if value is None:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
    if seconds != seconds or seconds < 0:  # NaN or in the past
        return 0.0
    return seconds


class RetryAdapter(HTTPAdapter):
    """An adapter that resends idempotent requests answered 429 or 503, honouring
    ``Retry-After``, and gives requests without a timeout :data:`DEFAULT_TIMEOUT`.

    :param retries: resends per request at most (``0``: never resend).
    :param max_wait: seconds waited in all per request at most; a ``Retry-After``
        beyond what is left returns the response at once.
    :param default_timeout: used when a request gives ``timeout=None``.
    :param on_wait: called with a :class:`Wait` before each wait (the CLI prints it).
    :param sleep: how to wait (``time.sleep``).

    The budget is per call to :meth:`send`: the auth's 401 resend is a call of its own,
    so a request can wait at most twice ``max_wait`` in all. A body that cannot be
    replayed (a stream that cannot seek back) is never resent.
    """

    def __init__(
        self,
        *,
        retries: int = DEFAULT_RETRIES,
        max_wait: float = DEFAULT_MAX_WAIT,
        default_timeout: float | tuple[float, float] | None = DEFAULT_TIMEOUT,
        on_wait: Callable[[Wait], None] | None = None,
        sleep: Callable[[float], None] = time.sleep,
        **kwargs: Any,
    ) -> None:
        if retries < 0 or max_wait < 0:
            raise ValueError("retries and max_wait must not be negative")
        super().__init__(**kwargs)
        self.retries = retries
        self.max_wait = max_wait
        self.default_timeout = default_timeout
        self.on_wait = on_wait
        self.sleep = sleep

    def send(
        self,
        request: requests.PreparedRequest,
        stream: bool = False,
        timeout: Any = None,
        verify: bool | str = True,
        cert: Any = None,
        proxies: Mapping[str, str] | None = None,
    ) -> requests.Response:
        """Send ``request``; resend it after a 429 or 503 while the budget allows."""
        if timeout is None:
            timeout = self.default_timeout
        method = (request.method or "GET").upper()
        rewind = self._rewinder(request) if method in IDEMPOTENT and self.retries else None
        waited = 0.0
        attempt = 0
        while True:
            response = super().send(request, stream, timeout, verify, cert, proxies)
            if response.status_code not in RETRY_STATUSES or rewind is None:
                return response
            if attempt >= self.retries:
                return response
            said = retry_after(response.headers.get("Retry-After"))
            wait = said if said is not None else min(BACKOFF_CAP, BACKOFF_FIRST * 2**attempt)
            if waited + wait > self.max_wait:
                log.info(
                    "%s %s: HTTP %d asks to wait %.1f s, beyond what is left of the %.0f s "
                    "retry budget; returning it",
                    method,
                    _host(request.url),
                    response.status_code,
                    wait,
                    self.max_wait,
                )
                return response
            attempt += 1
            event = Wait(
                method, _host(request.url), response.status_code, wait, attempt, said is not None
            )
            log.info(
                "%s %s: HTTP %d, waiting %.1f s (%s) before retry %d of %d",
                method,
                event.host,
                event.status,
                wait,
                "Retry-After" if event.retry_after else "back-off",
                attempt,
                self.retries,
            )
            if self.on_wait is not None:
                self.on_wait(event)
            response.close()  # give the connection back before waiting
            self.sleep(wait)
            waited += wait
            rewind()

    @staticmethod
    def _rewinder(request: requests.PreparedRequest) -> Callable[[], None] | None:
        """What puts the body back before a resend; None if it cannot be put back."""
        body = request.body
        if body is None or isinstance(body, bytes | str):
            return lambda: None
        seek, tell = getattr(body, "seek", None), getattr(body, "tell", None)
        if seek is None or tell is None:
            return None
        try:
            pos = tell()
        except OSError:
            return None
        return lambda: seek(pos)


def _host(url: str | None) -> str:
    return urlsplit(url or "").netloc.rpartition("@")[2]


def session(
    profile: str | None = None,
    *,
    retries: int = DEFAULT_RETRIES,
    max_wait: float = DEFAULT_MAX_WAIT,
    default_timeout: float | tuple[float, float] | None = DEFAULT_TIMEOUT,
    on_wait: Callable[[Wait], None] | None = None,
    auth: PowerPlatformAuth | None = None,
    **options: Any,
) -> requests.Session:
    """A :class:`requests.Session` with :class:`PowerPlatformAuth` set, a default
    timeout, and retries for throttled idempotent requests.

    :param profile: and ``**options``: given to :class:`PowerPlatformAuth` (so
        ``timeout=`` there is for identity traffic, as on the auth).
    :param retries: resends after a 429 or 503 (GET, HEAD, OPTIONS, PUT, DELETE only),
        default :data:`DEFAULT_RETRIES`; ``0`` turns retrying off.
    :param max_wait: seconds waited in all per request, default :data:`DEFAULT_MAX_WAIT`
        (a ``Retry-After`` larger than what is left returns the 429 at once).
    :param default_timeout: (connect, read) seconds for API requests made without
        ``timeout=``; default :data:`DEFAULT_TIMEOUT`, ``(10, 120)``.
    :param on_wait: called with a :class:`Wait` before each wait (waits are also
        logged at INFO on ``requests_ppauth.session``, never with a token).
    :param auth: an auth object built already (then give no other auth options).
    """
    if auth is None:
        from requests_ppauth.auth import PowerPlatformAuth

        auth = PowerPlatformAuth(profile, **options)
    elif profile is not None or options:
        raise TypeError("session(auth=...) takes no other auth options")
    s = requests.Session()
    s.auth = auth
    adapter = RetryAdapter(
        retries=retries, max_wait=max_wait, default_timeout=default_timeout, on_wait=on_wait
    )
    s.mount("https://", adapter)
    s.mount("http://", adapter)
    return s
