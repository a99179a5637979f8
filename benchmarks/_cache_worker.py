"""A worker process for bench_cache.py: one side (ours or msal-extensions), one cache.

``python _cache_worker.py serve ours|theirs <cache>`` reads one JSON command per
line on stdin and answers each with one JSON line on stdout. ``<cache>`` is our
cache setting (see :func:`setting`: a directory, or a backend such as ``redis`` for
bench_fleet.py) or msal-extensions' cache file. Tokens are never printed: only the
first 16 hex digits of their SHA-256.

``python _cache_worker.py warm ours|theirs <cache> <scope>``: a whole warm start
(imports, client, first token), timed from the first import; one JSON line.

Commands (``{"cmd": ...}``):

- ``prepare``: build the client: ours a :class:`PowerPlatformAuth` on a ``FileCache``
  in ``<cache>`` (credentials from ``PPAUTH_*``); theirs msal's
  ``ConfidentialClientApplication`` with a ``PersistedTokenCache`` on ``<cache>``
  (its constructor fetches OIDC discovery). ``warm``: a scope to acquire once, untimed,
  so that a warm process has its msal app, its HTTPS connection and its imports.
  Without it the process is cold: ours holds no msal app yet, theirs only what its
  constructor needed.
- ``store``: acquire ``scope`` (not in the cache: a token request and a store) and
  time the whole call.
- ``go``: the barrier. Record when this process reached the start line, wait for
  ``start`` (epoch seconds), then acquire ``scopes`` one after the other, timing
  each, or (``puts``) write that many tokens straight into the cache (ours
  ``FileCache.apply``, theirs ``PersistedTokenCache.add``). The answer says when the
  start line was reached, so the driver can count late workers.
- ``first``: a fresh-process first lookup (see :func:`first_ours`, :func:`first_theirs`).
- ``quit``.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from typing import Any


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()[:16]


def wait_until(start: float) -> None:
    """Sleep to just before ``start``, then poll finely (32 pollers on 2 cores must
    not spin)."""
    left = start - time.time()
    if left > 0.004:
        time.sleep(left - 0.003)
    while time.time() < start:
        time.sleep(0.0002)


def setting(cache: str) -> Any:
    """Our ``cache=`` for ``<cache>``: a JSON table (``{"backend": "redis", ...}``,
    its options), else the text itself, which ``PowerPlatformAuth`` reads as a
    directory (it has a separator) or a backend name (``redis``)."""
    return json.loads(cache) if cache.startswith("{") else cache


def msal_app(token_cache: Any) -> Any:
    """msal's confidential client against the emulator, with our HTTP client (which
    takes the CA bundle explicitly: REQUESTS_CA_BUNDLE would override a Session's
    ``verify``)."""
    import msal

    from requests_ppauth._http import IdentityHttpClient

    authority = f"{os.environ['PPAUTH_AUTHORITY_HOST']}/{os.environ['PPAUTH_TENANT_ID']}"
    http = IdentityHttpClient(
        verify=os.environ["PPAUTH_CA_BUNDLE"], authority_netlocs=(authority.split("/")[2],)
    )
    return msal.ConfidentialClientApplication(
        os.environ["PPAUTH_CLIENT_ID"],
        client_credential=os.environ["PPAUTH_CLIENT_SECRET"],
        authority=authority,
        instance_discovery=False,
        http_client=http,
        token_cache=token_cache,
    )


def persisted(path: str) -> Any:
    from msal_extensions import FilePersistence, PersistedTokenCache

    return PersistedTokenCache(FilePersistence(path))


class Stopwatch:
    """Time spent inside the cache's own calls during one acquisition (a diagnostic:
    where a slow store's time went). Wraps methods of one object, nothing global."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.depth = 0  # a wrapped call inside another is counted once

    def wrap(self, obj: Any, name: str) -> None:
        inner = getattr(obj, name)

        def timed_call(*args: Any, **kwargs: Any) -> Any:
            t = time.perf_counter()
            self.depth += 1
            try:
                return inner(*args, **kwargs)
            finally:
                self.depth -= 1
                if not self.depth:
                    self.seconds += time.perf_counter() - t

        setattr(obj, name, timed_call)

    def wrap_lock(self, obj: Any, name: str) -> None:
        """A lock's context manager: only the wait to take it counts."""
        inner = getattr(obj, name)
        watch = self

        class Held:
            def __init__(self, cm: Any) -> None:
                self.cm = cm

            def __enter__(self) -> Any:
                t = time.perf_counter()
                watch.depth += 1
                try:
                    return self.cm.__enter__()
                finally:
                    watch.depth -= 1
                    if not watch.depth:
                        watch.seconds += time.perf_counter() - t

            def __exit__(self, *exc: Any) -> Any:
                return self.cm.__exit__(*exc)

        setattr(obj, name, lambda *args, **kwargs: Held(inner(*args, **kwargs)))


class Ours:
    def __init__(self, cache: str) -> None:
        from requests_ppauth import PowerPlatformAuth

        self.auth = PowerPlatformAuth(cache=setting(cache))
        # built now, as msal's app is on the other side: settings, plugins, cache backend
        # (the credential, msal and the cache's files stay lazy, as for any user)
        backend = self.auth.provider.cache
        self.watch = Stopwatch()
        self.watch.wrap(backend, "get")
        self.watch.wrap(backend, "apply")
        self.watch.wrap_lock(backend, "key_lock")
        self.watch.wrap_lock(backend, "try_key_lock")

    def acquire(self, scope: str) -> tuple[str, str]:
        return digest(self.auth.provider.get(scope).token), "?"


class Theirs:
    def __init__(self, cache: str) -> None:
        token_cache = persisted(cache)
        self.watch = Stopwatch()
        self.watch.wrap(token_cache, "modify")  # lock, reload if changed, change, save
        self.watch.wrap(token_cache, "_reload_if_necessary")  # what a search reads first
        self.app = msal_app(token_cache)

    def acquire(self, scope: str) -> tuple[str, str]:
        result = self.app.acquire_token_for_client([scope])
        if "access_token" not in result:
            raise RuntimeError(f"no token: {result.get('error')}")
        return digest(result["access_token"]), str(result.get("token_source"))


def timed(client: Ours | Theirs, scope: str) -> dict[str, Any]:
    """One acquisition: its whole time, and how much of it the cache's calls took."""
    client.watch.seconds = 0.0
    t = time.perf_counter()
    try:
        token, source = client.acquire(scope)
    except Exception as exc:  # msal-extensions' lock timeouts throw the token away
        return {"ms": (time.perf_counter() - t) * 1000, "error": type(exc).__name__}
    return {
        "ms": (time.perf_counter() - t) * 1000,
        "cache_ms": client.watch.seconds * 1000,
        "token": token,
        "source": source,
    }


def first_ours(cache: str, warm_cache: str, scope: str, go: Any) -> dict[str, Any]:
    """Ours: everything imported, and one whole lookup done against another cache
    (``warm_cache``, which holds the same token), so that imports and one-time setup
    are not timed. Then a new :class:`PowerPlatformAuth` on ``cache``: its provider is
    built and its credential resolved first (``provider.key()``: settings and
    environment variables, not cache work; timed apart), then the timed
    ``provider.get(scope)``: opening the SQLite cache and reading one row."""
    import requests_ppauth.cache.file
    import requests_ppauth.cache.locks  # noqa: F401 - imported, not timed
    from requests_ppauth import PowerPlatformAuth

    PowerPlatformAuth(cache=setting(warm_cache)).provider.get(scope)
    auth = PowerPlatformAuth(cache=setting(cache))
    go()
    t0 = time.perf_counter()
    auth.provider.key(scope)
    t1 = time.perf_counter()
    token = auth.provider.get(scope)
    t2 = time.perf_counter()
    return {
        "credential_ms": (t1 - t0) * 1000,
        "cache_ms": (t2 - t1) * 1000,
        "token": digest(token.token),
    }


def first_theirs(cache: str, warm_cache: str, scope: str, go: Any) -> dict[str, Any]:
    """Theirs: the app is built first with an in-memory cache (its constructor fetches
    OIDC discovery: network, not cache work) and one lookup is answered from a
    ``PersistedTokenCache`` on ``warm_cache``. Timed: a ``PersistedTokenCache`` on
    ``cache`` put in the app (msal reads ``app.token_cache`` on every call) and
    ``acquire_token_for_client`` answered from it: loading the file and finding the
    token."""
    import msal

    app = msal_app(msal.SerializableTokenCache())
    app.token_cache = persisted(warm_cache)
    warm = app.acquire_token_for_client([scope])
    assert warm.get("token_source") == "cache", warm.get("token_source")
    go()
    t1 = time.perf_counter()
    app.token_cache = persisted(cache)
    result = app.acquire_token_for_client([scope])
    t2 = time.perf_counter()
    if result.get("token_source") != "cache":
        raise RuntimeError(f"not from the cache: {result.get('token_source')}")
    return {
        "credential_ms": 0.0,
        "cache_ms": (t2 - t1) * 1000,
        "token": digest(result["access_token"]),
    }


def puts(side: str, cache: str, prefix: str, count: int, token_bytes: int) -> list[dict[str, Any]]:
    """``count`` tokens written straight into the cache, each as its side stores one
    after a token request: ours one ``apply`` of the provider's entry, theirs msal's
    ``add`` of the token event (which ``PersistedTokenCache`` writes through)."""
    import base64

    from requests_ppauth.cache.keys import access_token_key, token_key

    authority = f"{os.environ['PPAUTH_AUTHORITY_HOST']}/{os.environ['PPAUTH_TENANT_ID']}"
    tenant, client = os.environ["PPAUTH_TENANT_ID"], os.environ["PPAUTH_CLIENT_ID"]
    if side == "ours":
        from requests_ppauth.cache import Op
        from requests_ppauth.cache.file import FileCache

        store: Any = FileCache(cache)
        store.prepare()
    else:
        store = persisted(cache)
    out = []
    for i in range(count):
        scope = f"https://{prefix}-{i}.crm.dynamics.com/.default"
        secret = (
            "eyJ" + base64.urlsafe_b64encode(os.urandom(token_bytes)).decode()[: token_bytes - 3]
        )
        now = time.time()
        t = time.perf_counter()
        try:
            if side == "ours":
                entry = {
                    "secret": secret,
                    "expires_on": now + 3600,
                    "refresh_on": now + 3300,
                    "scope": scope,
                    "client_id": client,
                    "tenant": tenant,
                    "authority": authority,
                    "user": None,
                }
                key = token_key(authority, tenant, client, None, scope)
                store.apply([Op(access_token_key(key), entry)])
            else:
                store.add(
                    {
                        "client_id": client,
                        "scope": [scope],
                        "token_endpoint": f"{authority}/oauth2/v2.0/token",
                        "grant_type": "client_credentials",
                        "response": {
                            "token_type": "Bearer",
                            "scope": scope,
                            "expires_in": 3600,
                            "ext_expires_in": 3600,
                            "access_token": secret,
                        },
                        "params": None,
                        "data": {"claims": None, "scope": [scope]},
                        "environment": authority.split("://")[1].split(":")[0],
                    }
                )
        except Exception as exc:  # msal-extensions' lock timeout: the write is lost
            out.append({"ms": (time.perf_counter() - t) * 1000, "error": type(exc).__name__})
            continue
        out.append({"ms": (time.perf_counter() - t) * 1000, "token": digest(secret)})
    return out


def warm_start(side: str, cache: str, scope: str) -> dict[str, Any]:
    """A fresh process's first token with a valid one on disk, imports included."""
    t = time.perf_counter()
    if side == "ours":
        token = Ours(cache).acquire(scope)[0]
        source = "?"
    else:
        token, source = Theirs(cache).acquire(scope)
    return {"seconds": time.perf_counter() - t, "token": token, "source": source}


def serve(side: str, cache: str) -> int:
    client: Ours | Theirs | None = None

    def say(obj: dict[str, Any]) -> None:
        sys.stdout.write(json.dumps(obj) + "\n")
        sys.stdout.flush()

    def read() -> dict[str, Any]:
        line = sys.stdin.readline()
        return json.loads(line) if line else {"cmd": "quit"}

    while True:
        msg = read()
        cmd = msg["cmd"]
        if cmd == "quit":
            return 0
        if cmd == "prepare":  # a kept process may be given another side and cache
            side, cache = msg.get("side", side), msg.get("cache", cache)
            client = None
            client = Ours(cache) if side == "ours" else Theirs(cache)
            warm = timed(client, msg["warm"]) if msg.get("warm") else {}
            say({"ready": time.time(), "warm_error": warm.get("error")})
        elif cmd == "store":
            assert client is not None
            say(timed(client, msg["scope"]))
        elif cmd == "go":
            reached = time.time()
            wait_until(msg["start"])
            began = time.time()
            if "puts" in msg:
                results = puts(side, cache, msg["prefix"], msg["puts"], msg["token_bytes"])
            else:
                assert client is not None
                results = [timed(client, scope) for scope in msg["scopes"]]
            say({"reached": reached, "began": began, "end": time.time(), "results": results})
        elif cmd == "first":
            fn = first_ours if side == "ours" else first_theirs

            def go() -> None:
                say({"ready": time.time()})
                read()  # the driver has read the emulator's counts

            say(fn(cache, msg["warm_cache"], msg["scope"], go))
        else:
            raise SystemExit(f"unknown command {cmd!r}")


if __name__ == "__main__":
    mode, *rest = sys.argv[1:]
    if mode == "warm":
        print(json.dumps(warm_start(*rest)))
        sys.exit(0)
    sys.exit(serve(*rest))
