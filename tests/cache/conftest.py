"""What the cache tests share: both paths of the cache's locks."""

from __future__ import annotations

import pytest

from requests_ppauth.cache import locks


@pytest.fixture(params=["flock", "filelock"])
def lock_mechanism(request, ppauth_env) -> str:
    """Run the test on each path of :mod:`requests_ppauth.cache.locks`: the kernel
    ``flock`` and filelock's lock, the path of platforms without ``fcntl``
    (``PPAUTH_CACHE_LOCKS=filelock``, set here and inherited by every child the test
    starts; children report the path they took as ``kernel_flock``)."""
    if request.param == "filelock":
        ppauth_env.set(PPAUTH_CACHE_LOCKS="filelock")
    assert locks.kernel_flock() is (request.param == "flock")
    return str(request.param)
