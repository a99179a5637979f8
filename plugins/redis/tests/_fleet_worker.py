"""A process of the fleet, for the tests: ``python _fleet_worker.py <mode>``.

Its environment says everything (PPAUTH_CACHE=redis, PPAUTH_REDIS_URL,
PPAUTH_CACHE_KEY, PPAUTH_CACHE_DIR: its "machine", and the emulator's PPAUTH_*
credentials). It prints ``ready``, waits for a line on stdin (the start signal: all
processes of a herd are released together), then:

- ``token``: gets a token through PowerPlatformAuth and prints
  ``{"token": <sha256 of it>, "seconds": ..., "warnings": [...]}``;
- ``hold``: takes the token's key lock in the cache, prints ``held`` and sleeps (the
  test SIGKILLs it).
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
import warnings

SCOPE = "https://service.powerapps.com//.default"


def main() -> None:
    mode = sys.argv[1]
    from requests_ppauth import PowerPlatformAuth

    auth = PowerPlatformAuth()
    provider = auth.provider
    print("ready", flush=True)
    sys.stdin.readline()
    if mode == "hold":
        backend = provider.cache
        with backend.key_lock(provider.key(SCOPE), 5.0) as held:
            print("held" if held else "not held", flush=True)
            time.sleep(600)
        return
    started = time.monotonic()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        token = provider.get(SCOPE).token
    print(
        json.dumps(
            {
                "token": hashlib.sha256(token.encode()).hexdigest(),
                "seconds": time.monotonic() - started,
                "warnings": [str(w.message) for w in caught],
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    main()
