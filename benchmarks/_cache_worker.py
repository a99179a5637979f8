"""Worker processes for bench_cache.py (one mode per measurement, JSON on stdout)."""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time


def wait_until(start: float) -> None:
    while time.time() < start:
        time.sleep(0.0005)


def cold_ours(start: float, scope: str) -> dict[str, object]:
    from requests_ppauth import PowerPlatformAuth

    auth = PowerPlatformAuth()
    wait_until(start)
    token = auth.provider.get(scope).token
    return {"token": hashlib.sha256(token.encode()).hexdigest()[:16]}


def _msal_app(cache_path: str) -> object:
    import msal
    from msal_extensions import FilePersistence, PersistedTokenCache

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
        token_cache=PersistedTokenCache(FilePersistence(cache_path)),
    )


def cold_msal_ext(start: float, scope: str, cache_path: str) -> dict[str, object]:
    app = _msal_app(cache_path)  # the constructor fetches OIDC discovery
    wait_until(start)
    try:
        result = app.acquire_token_for_client([scope])  # type: ignore[attr-defined]
    except Exception as exc:  # a lock timeout throws the token away
        return {"token": None, "error": type(exc).__name__}
    return {"token": hashlib.sha256(result["access_token"].encode()).hexdigest()[:16]}


def writes_ours(start: float, cache_dir: str, me: int, n: int) -> dict[str, object]:
    from requests_ppauth.cache import Op
    from requests_ppauth.file_cache import FileCache

    cache = FileCache(cache_dir)
    cache.prepare()
    wait_until(start)
    lat = []
    for i in range(n):
        t = time.perf_counter()
        cache.apply(
            [
                Op(
                    "PPAuthToken",
                    f"{me}-{i}",
                    {
                        "secret": "x" * int(os.environ.get("BENCH_TOKEN_BYTES", "1200")),
                        "expires_on": 2e9,
                        "refresh_on": 2e9,
                    },
                )
            ]
        )
        lat.append(time.perf_counter() - t)
    return {"latencies": lat, "errors": []}


def writes_msal_ext(start: float, cache_path: str, me: int, n: int) -> dict[str, object]:
    from msal_extensions import FilePersistence, PersistedTokenCache

    cache = PersistedTokenCache(FilePersistence(cache_path))
    wait_until(start)
    lat = []
    errors: list[str] = []
    for i in range(n):
        event = {
            "client_id": f"client-{me}",
            "scope": [f"https://r{i}/.default"],
            "token_endpoint": "https://login.example/tenant/oauth2/v2.0/token",
            "response": {
                "access_token": "x" * int(os.environ.get("BENCH_TOKEN_BYTES", "1200")),
                "expires_in": 3600,
                "token_type": "Bearer",
            },
            "params": {},
            "data": {},
        }
        t = time.perf_counter()
        try:
            cache.add(event)
        except Exception as exc:  # the failure is what we measure
            errors.append(type(exc).__name__)
        lat.append(time.perf_counter() - t)
    return {"latencies": lat, "errors": errors}


def warm_ours(scope: str) -> dict[str, object]:
    t = time.perf_counter()
    from requests_ppauth import PowerPlatformAuth

    PowerPlatformAuth().provider.get(scope)
    return {"seconds": time.perf_counter() - t}


def warm_msal_ext(scope: str, cache_path: str) -> dict[str, object]:
    t = time.perf_counter()
    app = _msal_app(cache_path)
    result = app.acquire_token_for_client([scope])  # type: ignore[attr-defined]
    assert result.get("token_source") == "cache", result.get("token_source")
    return {"seconds": time.perf_counter() - t}


if __name__ == "__main__":
    mode, *args = sys.argv[1:]
    fn = globals()[mode]
    parsed = [
        float(a) if a.replace(".", "", 1).isdigit() and "." in a else int(a) if a.isdigit() else a
        for a in args
    ]
    print(json.dumps(fn(*parsed)))
