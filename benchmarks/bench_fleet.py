"""A fleet's token requests: 8 machines x 8 processes, on our Redis backend, on our file
cache alone and on msal-extensions; and Redis next to the file cache for a fresh
process's first lookup and for a store.

What is measured (against the built-in emulator, its token endpoint slowed by
``TOKEN_LATENCY`` seconds with its fault injection, so that every process is in flight
while the first token request is still being answered):

1. **Fleet herd**: ``MACHINES`` simulated machines x ``PER_MACHINE`` processes, no
   token anywhere, all released together by the verified barrier of bench_cache.py
   (every process reports the moment it reached the start line; a run with a late
   process is void and run again). A "machine" is its own local cache directory
   (``PPAUTH_CACHE_DIR``); every process asks for the same token. The emulator's exact
   counter gives the token requests made, on three sides, interleaved A B C in every
   run:

   - ``redis``: ``PowerPlatformAuth(cache="redis")``, all 64 processes on one Redis
     (``PPAUTH_REDIS_URL``, encrypted with ``PPAUTH_CACHE_KEY``), each machine's
     directory its fallback. Target: exactly 1 token request, in every run.
   - ``file``: our file cache alone, one per machine. Target: ``MACHINES`` (one per
     machine: a machine's processes share a lock, machines share nothing).
   - ``msal-extensions``: 1.3.1's ``PersistedTokenCache`` on a ``FilePersistence``, one
     file per machine. Reported: it has no single-flight, so up to 64.

   Redis is flushed before its side, and every side gets new directories.
2. **Fresh-process first lookup** of a token in the cache, at 100 and 10,000 entries,
   ours on Redis (on loopback) next to ours on the file cache: bench_cache.py's
   ``first_run`` (a new process, imports and one whole lookup against another cache
   first; timed: ``provider.get`` on a new ``PowerPlatformAuth``: for Redis connecting,
   authenticating, reading and decrypting one key; for the file cache opening the
   database and reading one row); it must make no identity request. Also shown with
   the provider's building added (``provider.key``: settings, credential, and the
   backend: the Redis one connects and PINGs there, the file cache opens lazily).
3. **Store** through the real acquisition path in a warm process (a scope not in the
   cache: one token request and one store; for Redis the lease, the write and the
   wake-up): bench_cache.py's ``store_run``, the calls going round sides and sizes.

The caches of (2) and (3) hold the same tokens on both sides, written through each
backend's own ``apply`` (``_cache_build.token_ops``). p50 and p99 are over every
sample of every run. Everything runs ``--runs`` times (default 3; 1 with ``--quick``,
which uses 100 and 1,000 entries and fewer samples); the load average is printed
with the figures; the summary gives medians, ratios, and exits 1 naming every target
missed (the Redis side not available is one). Redis comes from the plugin's
``requests_ppauth_redis.testing.RedisServer`` (a real ``redis-server`` on a free
loopback port, with a password, no persistence).
Run: ``python benchmarks/bench_fleet.py [--quick] [--runs N]`` (needs ``pip install -e
".[bench]" "plugins/redis[test]"`` and Debian's ``redis-server``).
"""

from __future__ import annotations

import base64
import dataclasses
import json
import os
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any, ClassVar

import _cache_build as build
import bench_cache as bc
from bench_cache import Bench, Worker, load, med, pct

from requests_ppauth.testing import Emulator, Fault

MACHINES = 8
PER_MACHINE = 8
TOKEN_LATENCY = 0.5  # seconds the emulator's token endpoint takes during the herd
SPREAD = "scopes"  # one service principal, many Dataverse orgs (_cache_build's spreads)
HERD_SIDES = ("redis", "file", "msalx")
HERD_NAMES = {"redis": "ours, Redis", "file": "ours, file cache", "msalx": "msal-extensions"}

FULL = dataclasses.replace(bc.FULL, sizes=(100, 10000), store_samples=40, first_procs=10)
QUICK = dataclasses.replace(bc.QUICK, sizes=(100, 1000), store_samples=10, first_procs=3)


class RedisSide:
    """The Redis server and how caches on it are named, or why there is none."""

    def __init__(self) -> None:
        self.server: Any = None
        self.why_not = ""
        try:
            from requests_ppauth_redis.testing import RedisServer

            from requests_ppauth.cache.select import registered_backends

            if "redis" not in registered_backends():
                raise RuntimeError("no cache backend named 'redis' is registered")
            self.server = RedisServer()
        except Exception as exc:  # any reason at all: the side is reported missing
            self.why_not = f"{type(exc).__name__}: {exc}"

    @property
    def available(self) -> bool:
        return self.server is not None

    def env(self, key: str) -> dict[str, str]:
        return {"PPAUTH_REDIS_URL": self.server.url, "PPAUTH_CACHE_KEY": key}

    def flush(self) -> None:
        client = self.server.client()
        try:
            client.flushall()
        finally:
            client.close()

    def stored(self) -> tuple[int, int]:
        """(keys in Redis, values holding a token in clear): proof the herd's tokens
        were sealed. The emulator's tokens are JWTs, which start ``eyJ``."""
        client = self.server.client()
        try:
            keys = list(client.scan_iter(count=1000))
            values = [client.dump(k) or b"" for k in keys]
        finally:
            client.close()
        return len(keys), sum(1 for v in values if b"eyJ" in v)

    def setting(self, name: str) -> dict[str, Any]:
        """A cache of its own on the server: ``name``'s keys under a prefix of their
        own (the URL and key come from the environment)."""
        return {"backend": "redis", "prefix": f"bench-{name}:"}

    def close(self) -> None:
        if self.server is not None:
            self.server.close()


class Fleet(Bench):
    names: ClassVar[dict[str, str]] = {"file": "file cache", "redis": "Redis"}

    def __init__(self, emu: Emulator, tmp: Path, plan: bc.Plan, redis: RedisSide) -> None:
        super().__init__(emu, tmp, plan)
        self.redis = redis
        self.sides = ("file", "redis") if redis.available else ("file",)
        if redis.available:
            key = base64.b64encode(os.urandom(32)).decode()
            self.env.update(redis.env(key))
            # the driver fills Redis through the backend itself: same settings
            os.environ.update(redis.env(key))

    def worker(self, side: str, cache: Path | str) -> Worker:
        return Worker("ours", cache, self.env)  # both sides are ours: the cache differs

    # -- the fleet herd ---------------------------------------------------------------
    def herd(self, side: str) -> None:
        if side == "redis" and not self.redis.available:
            print(f"   {HERD_NAMES[side]:<17} not available ({self.redis.why_not})")
            return
        if side == "redis":
            self.redis.flush()

        def make() -> list[Worker]:
            root = self.fresh(f"fleet-{side}")
            workers = []
            for m in range(MACHINES):
                machine = root / f"machine{m}"
                machine.mkdir(mode=0o700)
                env = dict(self.env, PPAUTH_CACHE_DIR=str(machine / "cache"))
                for _ in range(PER_MACHINE):
                    if side == "msalx":
                        workers.append(Worker("theirs", machine / "cache.json", env))
                    else:  # the file cache: that directory; Redis: its fallback
                        cache = "redis" if side == "redis" else str(machine / "cache")
                        workers.append(Worker("ours", cache, env))
            return workers

        slow = self.emu.faults.add(Fault(endpoint="token", latency=TOKEN_LATENCY, times=None))
        try:
            res = self.barrier(
                f"fleet {side}", make, lambda i: {"scopes": [bc.SCOPE]}, warm=lambda i: None
            )
        finally:
            self.emu.clear_faults()
        per_machine = Counter()
        for i, r in enumerate(res.results):
            for c in r["results"]:
                per_machine[i // PER_MACHINE, c.get("token")] += 1
        tokens_per_machine = [
            len({t for (m, t) in per_machine if m == machine and t}) for machine in range(MACHINES)
        ]
        distinct = len({c["token"] for c in res.calls if "token" in c})
        sealed = ""
        if side == "redis":
            keys, clear = self.redis.stored()
            self.fig[("herd_clear", side)].append(clear)
            sealed = f"  Redis keys {keys}, holding a token in clear {clear}"
        self.fig[("herd_requests", side)].append(res.token_requests)
        self.fig[("herd_failed", side)].append(res.failed)
        self.fig[("herd_distinct", side)].append(distinct)
        self.fig[("herd_wall", side)].append(res.wall)
        each = sorted(res.latencies) or [float("nan")]
        self.fig[("herd_proc_median", side)].append(med(each))
        self.fig[("herd_proc_max", side)].append(each[-1])
        print(
            f"   {MACHINES}x{PER_MACHINE} {HERD_NAMES[side]:<17} token requests "
            f"{res.token_requests:>3}  distinct tokens {distinct:>3} (per machine "
            f"{'/'.join(map(str, tokens_per_machine))})  failed {res.failed}  late "
            f"{res.late}  wall {res.wall:5.2f} s (per process: min {each[0]:.0f}, median "
            f"{med(each):.0f}, max {each[-1]:.0f} ms)  (attempts {res.attempts}; "
            f"slowed {slow.fired} token requests by {TOKEN_LATENCY} s){sealed}"
        )

    # -- first lookup and store: Redis next to the file cache -------------------------
    def caches(self, spread: str, n: int, seed: int) -> bc.Caches:
        """The same ``n`` tokens in a new file cache and (under a new prefix) in Redis,
        and a tiny pair holding only the lookup token (the first lookup warms up on
        it)."""
        root = self.fresh(f"{spread}-{n}")
        items = build.entries(self.tenant, spread, n, self.token_bytes, seed)
        lookup = [
            x
            for x in items
            if x[0] == self.tenant.client_id and x[1] == build.lookup_scope(spread, n)
        ]
        now = time.time()
        build.build_ours(root / "file", self.tenant, items, now)
        build.build_ours(root / "warm-file", self.tenant, lookup, now)
        out: bc.Caches = {
            "file": root / "file",
            "warm_file": root / "warm-file",
            "secret": lookup[0][2],
        }
        if self.redis.available:
            from requests_ppauth.cache.select import resolve

            for label, what in (("redis", items), ("warm_redis", lookup)):
                setting = self.redis.setting(f"{root.name}-{label}")
                build.fill(resolve(setting), build.token_ops(self.tenant, what, now))
                out[label] = json.dumps(setting)
        return out

    def run(self, r: int) -> None:
        sizes = self.plan.sizes if r % 2 == 0 else self.plan.sizes[::-1]
        print(f"-- run {r + 1}")
        t = time.perf_counter()
        print(f" 1. fleet herd, {MACHINES} machines x {PER_MACHINE} processes ({load()})")
        for side in HERD_SIDES:
            self.herd(side)
        print(
            f" 2/3. store and fresh-process first lookup, {' and '.join(self.sides)} "
            f"({load()}; previous section {time.perf_counter() - t:.0f} s)"
        )
        caches = {n: self.caches(SPREAD, n, seed=r) for n in sizes}
        self.store_run(SPREAD, sizes, caches)
        self.first_run(SPREAD, sizes, caches)
        if not self.redis.available:
            print("   Redis: not available")


def ratio(a: float, b: float) -> str:
    """bench_cache's ratio, "n/a" where a side has no figure."""
    return bc.ratio(a, b) if a == a and b == b else "n/a"


def summary(fleet: Fleet, runs: int) -> list[str]:
    """Print the table of medians and ratios; return the targets missed."""
    fig, plan, sides = fleet.fig, fleet.plan, fleet.sides

    def runs_of(*key: Any) -> str:
        return ", ".join(f"{v:.0f}" for v in fig[key]) or "not available"

    def m(*key: Any) -> float:
        return med(fig[key])

    print(f"\n== summary: {runs} run(s); {load()}")
    print(f"fleet herd, {MACHINES} machines x {PER_MACHINE} processes, token endpoint slowed")
    print(
        f"{'':<28} {'ours, Redis':>16} {'ours, file cache':>17} {'msal-extensions':>16} "
        f"{'msal-ext/Redis':>15} {'file/Redis':>11}"
    )
    for metric, label in (
        ("herd_requests", "token requests, median"),
        ("herd_distinct", "distinct tokens, median"),
        ("herd_failed", "failed, median"),
    ):
        v = {side: m(metric, side) for side in HERD_SIDES}
        cells = [f"{v[s]:.0f}" if v[s] == v[s] else "n/a" for s in HERD_SIDES]
        print(
            f"{label:<28} {cells[0]:>16} {cells[1]:>17} {cells[2]:>16} "
            f"{ratio(v['msalx'], v['redis']):>15} {ratio(v['file'], v['redis']):>11}"
        )
    print(
        f"{'  per run':<28} {'[' + runs_of('herd_requests', 'redis') + ']':>16} "
        f"{'[' + runs_of('herd_requests', 'file') + ']':>17} "
        f"{'[' + runs_of('herd_requests', 'msalx') + ']':>16}"
    )
    walls = [f"{m('herd_wall', s):.2f} s" if fig[("herd_wall", s)] else "n/a" for s in HERD_SIDES]
    print(f"{'wall time, median':<28} {walls[0]:>16} {walls[1]:>17} {walls[2]:>16}")
    procs = [
        f"{m('herd_proc_median', s):.0f} / {m('herd_proc_max', s):.0f} ms"
        if fig[("herd_proc_max", s)]
        else "n/a"
        for s in HERD_SIDES
    ]
    print(f"{'per process: median / max':<28} {procs[0]:>16} {procs[1]:>17} {procs[2]:>16}")

    print(f"\nRedis (loopback) next to the file cache, {SPREAD} spread; p50 / p99 over all samples")
    print(f"{'':<50} {'file cache':>18} {'Redis':>18} {'Redis/file':>15}")
    for metric, label in (
        ("first", "first lookup, provider.get"),
        ("first_total", "  + building the backend"),
        ("store", "store (a token request + store)"),
    ):
        for n in plan.sizes:
            got = {s: fleet.samples[(metric, s, SPREAD, n)] for s in sides}
            cells = {
                s: f"{med(got[s]):.2f} / {pct(got[s], 0.99):.2f} ms" if got.get(s) else "n/a"
                for s in ("file", "redis")
            }
            ratios = (
                f"{ratio(med(got['redis']), med(got['file']))} / "
                f"{ratio(pct(got['redis'], 0.99), pct(got['file'], 0.99))}"
                if "redis" in got
                else "n/a"
            )
            count = len(got["file"])
            print(
                f"{f'{label}, {n:,} ({count} samples)':<50} {cells['file']:>18} "
                f"{cells['redis']:>18} {ratios:>15}"
            )

    print("\n== targets")
    missed: list[str] = []
    redis = fig[("herd_requests", "redis")]
    checks = [
        (
            f"{MACHINES * PER_MACHINE} processes on {MACHINES} machines, Redis -> 1 token "
            "request, none failed, no token in clear in Redis (every run)",
            bool(redis)
            and all(v == 1 for v in redis)
            and not any(fig[("herd_failed", "redis")])
            and not any(fig[("herd_clear", "redis")]),
            runs_of("herd_requests", "redis")
            + ("" if fleet.redis.available else f" ({fleet.redis.why_not})"),
        ),
        (
            f"file cache alone -> {MACHINES} token requests (one per machine), none failed "
            "(every run)",
            all(v == MACHINES for v in fig[("herd_requests", "file")])
            and not any(fig[("herd_failed", "file")]),
            runs_of("herd_requests", "file"),
        ),
    ]
    for side in sides:
        for n in plan.sizes:
            req = max(fig[("first_requests", side, SPREAD, n)])
            checks.append(
                (
                    f"fresh-process first lookup, {fleet.names[side]}, {n:,}: 0 requests",
                    req == 0,
                    f"{req:.0f}",
                )
            )
    for label, ok, value in checks:
        print(f"   [{'met   ' if ok else 'MISSED'}] {label}: {value}")
        if not ok:
            missed.append(label)
    print(
        f"   [report] msal-extensions -> up to {MACHINES * PER_MACHINE} token requests: "
        + runs_of("herd_requests", "msalx")
    )
    for v in fleet.void:
        print(f"   [VOID  ] {v}")
        missed.append(v)
    return missed


def main(argv: list[str] | None = None) -> int:
    quick, plan, runs = bc.arguments(__doc__, argv, FULL, QUICK)
    began = time.perf_counter()
    bc.compile_sources()
    import msal
    import msal_extensions

    redis = RedisSide()
    try:
        import redis as redis_py

        versions = f"redis-py {redis_py.__version__}"
    except ImportError:
        versions = "redis-py not installed"
    print(
        f"bench_fleet: {'quick' if quick else 'full'}, {runs} run(s), "
        f"{MACHINES} machines x {PER_MACHINE} processes, token endpoint +{TOKEN_LATENCY} s, "
        f"sizes {', '.join(f'{n:,}' for n in plan.sizes)}; msal {msal.__version__}, "
        f"msal-extensions {msal_extensions.__version__}, {versions}, Python "
        f"{sys.version.split()[0]}, {os.cpu_count()} CPUs; {load()}"
    )
    print(bc.checkout())
    print(
        f"Redis: {redis.server!r}" if redis.available else f"Redis: NOT AVAILABLE ({redis.why_not})"
    )
    try:
        with Emulator() as emu, tempfile.TemporaryDirectory() as tmp:
            fleet = Fleet(emu, Path(tmp), plan, redis)
            for r in range(runs):
                t = time.perf_counter()
                fleet.run(r)
                print(f"   (run {r + 1}: {time.perf_counter() - t:.0f} s; {load()})")
            missed = summary(fleet, runs)
    finally:
        redis.close()
    return bc.finish(missed, began)


if __name__ == "__main__":
    sys.exit(main())
