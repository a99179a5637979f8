"""Does the async credential keep the event loop running? A coroutine ticking every 1 ms,
while 100 concurrent ``await cred.get_token(...)`` wait for a slow identity provider,
against the built-in emulator (its token endpoint slowed by ``TOKEN_LATENCY`` seconds).

Each run, on a new event loop and a new file cache, per side:

1. the ticker starts (``await asyncio.sleep(0.001)`` in a loop, recording each gap);
2. 100 coroutines are started; each says it reached the start line and waits on an
   ``asyncio.Event``; once all 100 have (a run where one has not is void), the event is
   set and all call ``get_token`` for one Dataverse scope at once;
3. when all have a token, the ticker stops. Measured: the largest and the p99 gap
   between ticks while the calls were in flight, the token requests the emulator
   counted, the distinct tokens, the wall time.

Sides (interleaved A B A B, the order swapping every run):

- ``ours``: ``requests_ppauth.aio.PowerPlatformCredential()`` (credentials from
  ``PPAUTH_*``). Targets, every run: max gap < ``MAX_GAP_MS`` (well under the 500 ms
  latency: the loop was never held while the token was fetched), exactly 1 token
  request, all 100 callers given the same token.
- ``azure-identity``: ``azure.identity.aio.ClientSecretCredential`` (aiohttp),
  reported.

Imports (msal, aiohttp, azure-identity) are done before anything is timed. The
emulator runs in this process (its threads share the GIL: a conservative setting for
the gaps). ``--runs`` (default 3); medians over runs; the load average is printed with
the figures; exit 1 naming every target missed.
Run: ``python benchmarks/bench_event_loop.py [--runs N]`` (needs ``pip install -e
".[bench,azure]" aiohttp``).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import bench_cache as bc  # noqa: E402 - the house helpers, beside this file

CALLERS = 100
TOKEN_LATENCY = 0.5
MAX_GAP_MS = 50.0
TICK = 0.001
SIDES = ("ours", "azure-identity")
SCOPE = "https://org.crm.dynamics.com/.default"


async def one_run(make: Any) -> dict[str, Any]:
    """The ticker, the barrier, the 100 calls; figures in milliseconds."""
    gaps: list[float] = []
    measuring = False
    stop = asyncio.Event()

    async def ticker() -> None:
        last = time.perf_counter()
        while not stop.is_set():
            await asyncio.sleep(TICK)
            now = time.perf_counter()
            if measuring:
                gaps.append((now - last) * 1000)
            last = now

    tick = asyncio.get_running_loop().create_task(ticker())
    await asyncio.sleep(0.05)  # the ticker is running
    cred = make()
    reached = 0
    go = asyncio.Event()

    async def caller() -> str:
        nonlocal reached
        reached += 1
        await go.wait()
        token = await cred.get_token(SCOPE)
        return str(token.token)

    tasks = [asyncio.ensure_future(caller()) for _ in range(CALLERS)]
    for _ in range(100):  # every caller at the start line, or the run is void
        if reached == CALLERS:
            break
        await asyncio.sleep(0)
    late = CALLERS - reached
    measuring = True
    start = time.perf_counter()
    go.set()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    wall = time.perf_counter() - start
    measuring = False
    stop.set()
    await tick
    await cred.close()
    errors = [r for r in results if isinstance(r, BaseException)]
    tokens = {r for r in results if isinstance(r, str)}
    gaps.sort()
    return {
        "late": late,
        "failed": len(errors),
        "first_error": f"{type(errors[0]).__name__}: {errors[0]}"[:300] if errors else "",
        "distinct": len(tokens),
        "wall": wall,
        "ticks": len(gaps),
        "max_gap": gaps[-1] if gaps else float("nan"),
        "p99_gap": bc.pct(gaps, 0.99) if gaps else float("nan"),
        "flights": getattr(cred, "flights_started", None),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args(argv)
    began = time.perf_counter()
    bc.compile_sources()
    import aiohttp
    import azure.identity
    import msal
    from azure.identity.aio import ClientSecretCredential

    from requests_ppauth.aio import PowerPlatformCredential
    from requests_ppauth.testing import Emulator, Fault

    print(
        f"bench_event_loop: {args.runs} run(s), {CALLERS} concurrent get_token, ticker every "
        f"{TICK * 1000:.0f} ms, token endpoint +{TOKEN_LATENCY} s; msal {msal.__version__}, "
        f"azure-identity {azure.identity.__version__}, aiohttp {aiohttp.__version__}, Python "
        f"{sys.version.split()[0]}, {os.cpu_count()} CPUs; {bc.load()}"
    )
    fig: dict[tuple[str, str], list[float]] = defaultdict(list)
    void: list[str] = []
    with Emulator() as emu, tempfile.TemporaryDirectory() as tmp:
        s = emu.sample
        assert s is not None
        os.environ.update(
            PPAUTH_TENANT_ID=s.tenant_id,
            PPAUTH_CLIENT_ID=s.client_id,
            PPAUTH_CLIENT_SECRET=s.client_secret,
            PPAUTH_AUTHORITY_HOST=emu.authority_host,
            PPAUTH_CA_BUNDLE=emu.ca_bundle,
            PPAUTH_CONFIG=str(Path(tmp) / "none.toml"),
        )
        settings = emu.client_settings("azure-identity")
        makers = {
            "ours": PowerPlatformCredential,
            "azure-identity": lambda: ClientSecretCredential(
                s.tenant_id, s.client_id, s.client_secret, **settings
            ),
        }
        for run in range(args.runs):
            print(f"-- run {run + 1} ({bc.load()})")
            for side in SIDES if run % 2 == 0 else SIDES[::-1]:
                os.environ["PPAUTH_CACHE_DIR"] = str(Path(tmp) / f"cache-{run}-{side}")
                emu.faults.add(Fault(endpoint="token", latency=TOKEN_LATENCY, times=None))
                before = emu.count("token")
                try:
                    res = asyncio.run(one_run(makers[side]))
                finally:
                    emu.clear_faults()
                made = emu.count("token") - before
                if res["late"]:
                    void.append(f"{side}, run {run + 1}: {res['late']} callers late")
                    print(f"   {side}: {res['late']} callers not at the start line: void")
                    continue
                for name in ("max_gap", "p99_gap", "wall", "distinct", "failed", "ticks"):
                    fig[(name, side)].append(res[name])
                fig[("requests", side)].append(made)
                flights = f", thread calls {res['flights']}" if res["flights"] is not None else ""
                print(
                    f"   {side:<15} max gap {res['max_gap']:6.1f} ms  p99 gap "
                    f"{res['p99_gap']:5.1f} ms  ticks {res['ticks']:>4}  token requests "
                    f"{made:>3}  distinct tokens {res['distinct']:>3}  failed {res['failed']}  "
                    f"wall {res['wall']:.2f} s{flights}"
                    + (f"\n      first failure: {res['first_error']}" if res["failed"] else "")
                )

    def m(name: str, side: str) -> float:
        return bc.med(fig[(name, side)])

    def runs_of(name: str, side: str, fmt: str = ".0f") -> str:
        return ", ".join(format(v, fmt) for v in fig[(name, side)]) or "none"

    print(f"\n== summary: {args.runs} run(s); {bc.load()}")
    print(f"{'':<28} {'ours':>14} {'azure-identity':>16}")
    for name, label, fmt in (
        ("max_gap", "max tick gap (ms), median", ".1f"),
        ("p99_gap", "p99 tick gap (ms), median", ".1f"),
        ("requests", "token requests, median", ".0f"),
        ("distinct", "distinct tokens, median", ".0f"),
        ("wall", "wall (s), median", ".2f"),
    ):
        cells = [format(m(name, side), fmt) for side in SIDES]
        print(f"{label:<28} {cells[0]:>14} {cells[1]:>16}")
    print("\n== targets")
    missed: list[str] = []
    complete = len(fig[("requests", "ours")]) == args.runs
    checks = (
        (
            f"ours: max tick gap < {MAX_GAP_MS:.0f} ms while {CALLERS} get_token wait "
            f"{TOKEN_LATENCY * 1000:.0f} ms (every run)",
            complete and all(v < MAX_GAP_MS for v in fig[("max_gap", "ours")]),
            runs_of("max_gap", "ours", ".1f") + " ms",
        ),
        (
            f"ours: exactly 1 token request for {CALLERS} callers, one token, none failed "
            "(every run)",
            complete
            and all(v == 1 for v in fig[("requests", "ours")])
            and all(v == 1 for v in fig[("distinct", "ours")])
            and not any(fig[("failed", "ours")]),
            runs_of("requests", "ours"),
        ),
    )
    for label, ok, value in checks:
        print(f"   [{'met   ' if ok else 'MISSED'}] {label}: {value}")
        if not ok:
            missed.append(label)
    print(
        f"   [report] azure-identity aio: max gap {runs_of('max_gap', 'azure-identity', '.1f')} "
        f"ms, p99 {runs_of('p99_gap', 'azure-identity', '.1f')} ms, token requests "
        f"{runs_of('requests', 'azure-identity')}"
    )
    for v in void:
        print(f"   [VOID  ] {v}")
        missed.append(v)
    return bc.finish(missed, began)


if __name__ == "__main__":
    sys.exit(main())
