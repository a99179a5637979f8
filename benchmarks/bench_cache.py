"""The on-disk cache next to msal-extensions' PersistedTokenCache, in one run.

1. Token requests made by N simultaneous cold processes (N = 8, 32).
2. Write latency p50/p99/max with 8 and 16 processes writing at once.
   Then 16 of ours into a cache that already holds 2,000 tokens: a write must not
   cost more because the cache is big.
3. A fresh process with a warm cache: time to first token, requests to the
   identity provider.

Run: ``python benchmarks/bench_cache.py`` (needs msal-extensions: ``pip install -e
.[bench]``); ``BENCH_TOKEN_BYTES=200`` for small entries in the write test (default
1200, the size of a real access token). Everything runs against the built-in emulator.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from requests_ppauth.testing import Emulator

HERE = Path(__file__).resolve().parent
WORKER = str(HERE / "_cache_worker.py")
SCOPE = "https://service.powerapps.com//.default"
WRITES_EACH = 25


def run_workers(argvs: list[list[str]], env: dict[str, str]) -> list[dict[str, object]]:
    procs = [
        subprocess.Popen([sys.executable, WORKER, *a], stdout=subprocess.PIPE, env=env, text=True)
        for a in argvs
    ]
    out = []
    for p in procs:
        stdout, _ = p.communicate(timeout=300)
        if p.returncode != 0:
            raise SystemExit(f"worker failed: {p.args}")
        out.append(json.loads(stdout))
    return out


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * q))]


def compile_sources() -> None:
    """Byte-compile this checkout, as pip does for a package it installs.

    An editable install never gets compiled, and with PYTHONDONTWRITEBYTECODE=1 (set
    on the project's machines) every fresh process would compile our modules from
    source - ~150 ms of a ~330 ms warm start - while msal's come compiled from its
    wheel. That would measure the checkout, not the library.
    """
    import compileall

    root = HERE.parent
    for folder in ("requests_ppauth", "plugins", "docs/example-plugin"):
        compileall.compile_dir(str(root / folder), quiet=1)


def write_run(mode: str, target: str, n: int, env: dict[str, str]) -> list[dict[str, object]]:
    """``n`` processes of ``mode`` writing ``WRITES_EACH`` tokens each to ``target``, at once."""
    # the previous run's dirty pages (msal-extensions rewrites its whole file per write:
    # ~50 MB in the 8-writer run) would otherwise be written back during this one, and
    # its fsyncs would wait for them
    os.sync()
    start = time.time() + 1.5 + n * 0.1
    argvs = [[mode, f"{start:.3f}", target, str(i), str(WRITES_EACH)] for i in range(n)]
    return run_workers(argvs, env)


def latencies(results: list[dict[str, object]]) -> list[float]:
    return [x * 1000 for r in results for x in r["latencies"]]  # type: ignore[attr-defined]


def latency_text(lat: list[float]) -> str:
    return (
        f"p50 {statistics.median(lat):7.1f} ms  p99 {pct(lat, 0.99):7.1f} ms  "
        f"max {max(lat):7.1f} ms"
    )


def big_cache_run(tmp: str, env: dict[str, str]) -> None:
    """16 writers into a cache that already holds 2,000 tokens (~2.7 MB): a write must
    cost the same as into an empty one. Ours only: msal-extensions rewrites the whole
    file per write and already times out at 500 kB."""
    from requests_ppauth.cache import Op
    from requests_ppauth.file_cache import FileCache

    run_dir = Path(tempfile.mkdtemp(dir=tmp))
    entry = {"secret": "x" * 1200, "expires_on": 2e9, "refresh_on": 2e9}
    FileCache(run_dir).apply([Op("PPAuthToken", f"old-{i}", entry) for i in range(2000)])
    size = sum(p.stat().st_size for p in run_dir.glob("tokens.json*"))
    lat = latencies(write_run("writes_ours", str(run_dir), 16, env))
    print(
        f"   16 writers requests-ppauth  {latency_text(lat)}  "
        f"(the cache held 2000 tokens, {size / 1e6:.1f} MB, before)"
    )


def main() -> int:
    compile_sources()
    with Emulator() as emu, tempfile.TemporaryDirectory() as tmp:
        s = emu.sample
        env = dict(
            os.environ,
            PPAUTH_TENANT_ID=s.tenant_id,
            PPAUTH_CLIENT_ID=s.client_id,
            PPAUTH_CLIENT_SECRET=s.client_secret,
            PPAUTH_AUTHORITY_HOST=emu.authority_host,
            PPAUTH_CA_BUNDLE=emu.ca_bundle,
            PPAUTH_CONFIG=str(Path(tmp, "none.toml")),
        )
        rows: list[tuple[str, str, str]] = []
        p99s: dict[tuple[int, str], float] = {}

        print("1. token requests by N simultaneous cold processes (target: 1)")
        for n in (8, 32):
            for name in ("requests-ppauth", "msal-extensions"):
                run_dir = Path(tempfile.mkdtemp(dir=tmp))
                run_env = dict(env, PPAUTH_CACHE_DIR=str(run_dir / "cache"))
                emu.reset_counts()
                start = time.time() + 2.0 + n * 0.15  # time for every interpreter to import
                if name == "requests-ppauth":
                    argvs = [["cold_ours", f"{start:.3f}", SCOPE] for _ in range(n)]
                else:
                    argvs = [
                        ["cold_msal_ext", f"{start:.3f}", SCOPE, str(run_dir / "m.json")]
                        for _ in range(n)
                    ]
                results = run_workers(argvs, run_env)
                tokens = {r["token"] for r in results if r["token"]}
                failed = sum(1 for r in results if not r["token"])
                line = (
                    f"   N={n:<3} {name:<16} token requests {emu.count('token'):>3}, "
                    f"distinct tokens {len(tokens):>3}, processes that failed {failed}"
                )
                print(line)
                rows.append((f"cold N={n}", name, f"{emu.count('token')} token requests"))

        print(
            "2. write latency, processes writing at once "
            f"({WRITES_EACH} writes each; target p99 <= 50 ms)"
        )
        for n in (8, 16):
            for name in ("requests-ppauth", "msal-extensions"):
                run_dir = Path(tempfile.mkdtemp(dir=tmp))
                if name == "requests-ppauth":
                    results = write_run("writes_ours", str(run_dir), n, env)
                else:
                    results = write_run("writes_msal_ext", str(run_dir / "m.json"), n, env)
                lat = latencies(results)
                errors = sum(len(r["errors"]) for r in results)  # type: ignore[arg-type]
                text = f"{latency_text(lat)}  failed writes {errors}"
                print(f"   {n:>2} writers {name:<16} {text}")
                p99s[(n, name)] = pct(lat, 0.99)
                rows.append((f"write {n} procs", name, text))

        for n in (8, 16):
            ratio = p99s[(n, "msal-extensions")] / p99s[(n, "requests-ppauth")]
            print(f"   {n:>2} writers: msal-extensions' p99 is {ratio:.0f}x ours")
        big_cache_run(tmp, env)
        print("3. fresh process, warm cache")
        for name in ("requests-ppauth", "msal-extensions"):
            run_dir = Path(tempfile.mkdtemp(dir=tmp))
            run_env = dict(env, PPAUTH_CACHE_DIR=str(run_dir / "cache"))
            mode = "cold_ours" if name == "requests-ppauth" else "cold_msal_ext"
            extra = [] if name == "requests-ppauth" else [str(run_dir / "m.json")]
            run_workers([[mode, "0", SCOPE, *extra]], run_env)  # fill the cache
            emu.reset_counts()
            warm = "warm_ours" if name == "requests-ppauth" else "warm_msal_ext"
            secs = [run_workers([[warm, SCOPE, *extra]], run_env)[0]["seconds"] for _ in range(5)]
            requests_made = sum(emu.counts().values()) / 5
            text = (
                f"time to first token {statistics.median(secs) * 1000:6.1f} ms (median of 5, "
                f"imports included), identity requests per process {requests_made:.0f}"
            )
            print(f"   {name:<16} {text}")
            rows.append(("warm start", name, text))
    return 0


if __name__ == "__main__":
    sys.exit(main())
