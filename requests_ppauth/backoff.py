"""The back-off after a failed token request with no valid token in hand.

Why: msal throttles answered 429/5xx responses in its own process only, and has no
throttle at all for a dropped connection, so with an identity provider down every
API call was a token request (60 calls, 60 requests). The back-off record is shared
through the token cache, in the token's own slot (see :mod:`requests_ppauth.cache.keys`):
one process asks per step, every other one raises the same error without asking.
Pure functions here; :class:`~requests_ppauth.tokens.TokenProvider` reads and writes
the records.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from requests_ppauth.cache.protocol import Entry
from requests_ppauth.cache.protocol import expires_on as entry_expires_on
from requests_ppauth.errors import TokenAcquisitionError

# With no valid token in hand, after the identity provider could not be reached, no
# process sharing the cache asks again for BACKOFF_BASE s, doubling with each failure
# in a row up to BACKOFF_CAP s. msal has no throttle for a dropped connection (it has
# one for answered 429/5xx), so without this every API call is a token request. 1 s
# first: a blip (a proxy restarting, one reset connection) costs a caller no more
# than an immediate retry would have told it; 60 s at most: an outage costs one
# request a minute whatever the number of processes, and whoever waits learns within
# a minute that it is over. No jitter: one process retries per step (under the key's
# lock), the others read its outcome. TokenProvider.backoff_base/backoff_cap override.
BACKOFF_BASE = 1.0
BACKOFF_CAP = 60.0
# The longest Retry-After honoured (msal caps it at an hour too).
RETRY_AFTER_CAP = 3600.0


def backs_off(exc: TokenAcquisitionError) -> bool:
    """Whether ``exc``, with no valid token in hand, starts or extends the shared
    back-off: the identity provider was not reached (but not a TLS failure: a wrong
    CA bundle is a setting to fix, and its fix must work at once), or it answered a
    passing failure with Retry-After. A 429/5xx without Retry-After is left to
    msal's own throttle (per process, 5 s), and is reported as it comes."""
    if exc.retryable and exc.retry_after:
        return True
    if exc.error != "network_error":
        return False
    import requests

    # raised ``from None`` in _acquire_unlocked: the transport's exception is its context
    return not isinstance(exc.__context__, requests.exceptions.SSLError)


def held_error(scope: str, record: Entry | None, now: float) -> TokenAcquisitionError | None:
    """The error every caller gets while ``record`` holds (``None`` once it ran out):
    retryable, ``retry_after`` the time left, saying when the next request is."""
    until = entry_expires_on(record) if record is not None else None
    if record is None or until is None or now >= until:
        return None
    failures = int(record.get("failures") or 1)
    wait = until - now
    return TokenAcquisitionError(
        f"{record.get('message') or 'the last token request failed'} "
        f"({failures} failure{'s' if failures != 1 else ''} in a row); the next token "
        f"request for {scope} is at {time.strftime('%H:%M:%S', time.localtime(until))} "
        f"(in {wait:.1f} s): until then every process sharing the token cache gets "
        "this error without asking",
        error=str(record.get("error") or "network_error"),
        codes=[c for c in record.get("codes") or () if isinstance(c, int)],
        hint=str(record["hint"]) if record.get("hint") else None,
        retryable=True,
        retry_after=wait,
    )


def next_record(
    exc: TokenAcquisitionError,
    record: Entry | None,
    now: float,
    base: float,
    cap: float,
    about: Mapping[str, Any],
) -> Entry:
    """The record after ``exc`` (``record`` the one it extends): ``base`` doubling per
    failure in a row up to ``cap``, or the server's Retry-After. ``about`` says whose
    token it stands for (scope, client, authority, user), as a token entry does, so
    listing and sign-out find it. Holds what failed, never a secret."""
    failures = int(record.get("failures") or 0) + 1 if record is not None else 1
    if exc.retry_after:  # the server said when: every process hears it
        wait = min(float(exc.retry_after), RETRY_AFTER_CAP)
    else:
        wait = min(base * 2 ** min(failures - 1, 32), cap)
    return {
        "expires_on": round(now + wait, 3),  # the end; also lets a backend prune it
        "failures": failures,
        "error": exc.error or "network_error",
        "codes": list(exc.codes),
        # the first line: what failed (no hint, no correlation id; never a secret)
        "message": str(exc).split("\n", 1)[0],
        "hint": exc.hint,
        **about,
    }
