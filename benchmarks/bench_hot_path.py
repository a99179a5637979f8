"""Per-request auth overhead with a valid token in memory, side by side in one run:

- requests-ppauth: ``PowerPlatformAuth.__call__`` on a prepared request
  (route lookup, freshness check, header assignment, 401 hook registration);
- msal: ``ConfidentialClientApplication.acquire_token_for_client`` cache hit;
- azure-identity: ``ClientSecretCredential.get_token`` cache hit.

All three first get a real token from the emulator; then only cache hits are timed.
Run: ``python benchmarks/bench_hot_path.py`` (prints a table and the ratios).
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable

import msal
import requests
from azure.identity import ClientSecretCredential

from requests_ppauth import ClientSecret, PowerPlatformAuth
from requests_ppauth.testing import Emulator

SCOPE = "https://service.powerapps.com//.default"


def per_call_ns(fn: Callable[[], object], calls: int, repeats: int = 7) -> float:
    """Median over ``repeats`` of the mean time per call, in nanoseconds."""
    fn()
    samples = []
    for _ in range(repeats):
        start = time.perf_counter_ns()
        for _ in range(calls):
            fn()
        samples.append((time.perf_counter_ns() - start) / calls)
    return statistics.median(samples)


def main() -> int:
    with Emulator() as emu:
        s = emu.sample
        hostport = emu.api_url.split("//")[1]
        auth = PowerPlatformAuth(
            credential=ClientSecret(
                tenant_id=s.tenant_id,
                client_id=s.client_id,
                secret=s.client_secret,
                authority_host=emu.authority_host,
            ),
            verify=emu.ca_bundle,
            hosts={hostport: SCOPE},
        )
        prepared = requests.Request("GET", emu.api_url + "/providers/x?api-version=1").prepare()
        auth(prepared)

        app = msal.ConfidentialClientApplication(
            s.client_id,
            client_credential=s.client_secret,
            authority=emu.authority(),
            instance_discovery=False,
            http_client=emu.http_client(),
        )
        assert "access_token" in app.acquire_token_for_client([SCOPE])

        cred = ClientSecretCredential(
            s.tenant_id,
            s.client_id,
            s.client_secret,
            authority=emu.authority_host,
            disable_instance_discovery=True,
            connection_verify=emu.ca_bundle,
        )
        cred.get_token(SCOPE)
        before = emu.count("token")

        ours = per_call_ns(lambda: auth(prepared), 20000)
        msal_hit = per_call_ns(lambda: app.acquire_token_for_client([SCOPE]), 2000)
        azure_hit = per_call_ns(lambda: cred.get_token(SCOPE), 2000)
        assert emu.count("token") == before, "a timed call went to the identity provider"

    rows = [
        ("requests-ppauth PowerPlatformAuth.__call__", ours),
        ("msal acquire_token_for_client (cache hit)", msal_hit),
        ("azure-identity get_token (cache hit)", azure_hit),
    ]
    print(f"{'what':<46} {'per call':>12}")
    for name, ns in rows:
        print(f"{name:<46} {ns / 1000:>9.2f} µs")
    print(f"\nmsal cache hit / requests-ppauth:           {msal_hit / ours:6.1f}x")
    print(f"azure-identity cache hit / requests-ppauth: {azure_hit / ours:6.1f}x")
    target = 10.0
    ok = msal_hit / ours >= target
    print(f"target: >= {target:.0f}x faster than msal's cache hit: {'met' if ok else 'MISSED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
