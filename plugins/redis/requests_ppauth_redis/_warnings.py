"""Once-per-process warnings: a fleet of processes each printing "Redis is down" on
every request would bury the one line that matters.

Each kind of trouble (Redis unreachable, a value that does not open) is reported
once per process as a :class:`~requests_ppauth.cache.CacheWarning` and a log line
at WARNING; repeats go to the log at DEBUG only.
"""

from __future__ import annotations

import logging
import threading
import warnings

from requests_ppauth.cache import CacheWarning

log = logging.getLogger("requests_ppauth_redis")

_warned: set[str] = set()
_mutex = threading.Lock()


def warn_once(kind: str, message: str) -> bool:
    """Report ``message`` (no secret in it) once per process for ``kind``; returns
    whether this call reported it."""
    with _mutex:
        first = kind not in _warned
        _warned.add(kind)
    if first:
        log.warning(message)
        warnings.warn(message, CacheWarning, stacklevel=3)
    else:
        log.debug(message)
    return first


def reset() -> None:
    """Forget what was reported (tests start each with a clean slate)."""
    with _mutex:
        _warned.clear()
