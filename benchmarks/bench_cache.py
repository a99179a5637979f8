"""The on-disk token cache next to msal-extensions' ``PersistedTokenCache``, one run each
side, interleaved A B A B, against the built-in emulator.

What is measured, on each side (ours = requests-ppauth's ``FileCache``, SQLite; theirs
= msal-extensions 1.3.1's ``PersistedTokenCache`` on a ``FilePersistence``):

1. **Store through the real acquisition path**, in a warm process (client built and
   one token fetched already, so discovery and imports are not timed), for a scope
   *not* in the cache: one token request to the emulator and one store. Ours:
   ``PowerPlatformAuth(cache=dir).provider.get(scope)``; theirs: msal's
   ``app.acquire_token_for_client([scope])``. The whole call is timed (and, apart, the
   part spent in the cache's own calls), p50 over the samples. One warm process per
   side and size; the calls go round them (ours at 100, theirs at 100, ours at 1,000,
   ...), so sizes as well as sides are compared under the same conditions. The caches
   hold 100, 1,000 and 10,000 tokens beforehand, built the same way on both sides
   (``_cache_build.py``),
   in two spreads: ``clients`` (N client ids, one scope each) and ``scopes`` (one
   client, N scopes ``https://org{i}.crm.dynamics.com/.default``).
2. **The same with 16 processes storing at once**, at the smallest and the largest
   size: p99 of every store. 16 kept processes on each of the two caches; rounds, each
   released by the barrier (below), alternate between the sizes, so both are measured
   under the same load; then the rows missing from each cache (lost stores).
   msal-extensions rewrites its whole file twice per store, under a lock that gives up
   after 5 s, so it does fewer rounds, and at the largest size its processes store one
   token each (printed as processes x rounds x stores).
3. **Fresh-process first lookup** of a token that is in the cache, at every size
   (fresh processes one at a time, going round sides and sizes): in a new process,
   after its imports and a whole lookup against another cache (so neither imports nor
   one-time setup are timed). Ours: a new ``PowerPlatformAuth``,
   its provider built and credential resolved first (``provider.key``: settings and
   environment variables, timed apart, not cache work), then ``provider.get(scope)``
   timed: opening the database and reading one row. Theirs: the app is built first
   (its constructor fetches OIDC discovery, which is network, not cache work); timed:
   a new ``PersistedTokenCache`` on the file and ``acquire_token_for_client`` answered
   from it (loading and searching the file). The emulator's counts are read around the
   timed part: it must make no request. ``os.sync()`` first: the caches were just
   written, and their writeback would otherwise land in the timed part. (Ours' first
   read creates SQLite's ``-wal`` and ``-shm`` files; how long that takes depends on
   the file system: 0.1 to 1.5 ms per file here.)
4. **Snapshot size**: bytes on disk for the N tokens of (1): ours ``cache.db`` plus
   ``cache.db-wal`` after a checkpoint, theirs the cache file.
5. **Cold herd**: 32 fresh processes, no token anywhere, released together: token
   requests made, distinct tokens, failures, the herd's wall time (start to the last
   process's token). At the start line ours holds a ``PowerPlatformAuth`` with its
   provider built (msal is imported by the one process that asks for a token), theirs
   its msal app (discovery done before the line).
6. **Warm start**: a fresh process, a valid token on disk: identity requests and time to
   the first token, imports included.
7. **Lost writes**: 16 processes x 200 tokens written straight into our cache at once
   (16 x 10 for msal-extensions: its whole-file rewrite would take many minutes at
   16 x 200): rows missing afterwards, and writes that failed.
8. **Import time**: ``python -c "import requests_ppauth"`` against ``python -c "import
   requests"``, fresh interpreters alternating, outside the checkout, medians and their
   ratio per run (the checkout byte-compiled first, as pip does on install).

The barrier: every process builds its client, then reports ready; the driver then sets a
start time shortly ahead and sends it to all. Each process reports the moment it reached
the start line; one that reached it after the start time is late, and a run with a late
process is void and run again (up to three times; then the benchmark fails).

Everything runs ``--runs`` times (default 3; 1 with ``--quick``, which uses 100 and
1,000 entries and fewer samples, and checks the 10,000-entry targets at 1,000); odd
runs reverse the order of the sizes (and of the sides, where they take turns by
round). The summary gives medians over the runs, ratios, and exits 1 naming every
target missed. Load averages are printed with the figures. Workers never print a
token, only a hash of it.
Run: ``python benchmarks/bench_cache.py [--quick] [--runs N]`` (needs ``pip install -e
".[bench]"``).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import _cache_build as build

from requests_ppauth.testing import Emulator

HERE = Path(__file__).resolve().parent
WORKER = str(HERE / "_cache_worker.py")
SCOPE = "https://service.powerapps.com//.default"
SIDES = ("ours", "theirs")
NAMES = {"ours": "requests-ppauth", "theirs": "msal-extensions"}
SPREADS = ("clients", "scopes")
ATTEMPTS = 3  # a barrier run with a late worker is void and run again, this many times


@dataclass(frozen=True)
class Plan:
    sizes: tuple[int, ...]
    store_samples: int  # per side, per size and spread
    writers: int
    # (rounds, stores per writer per round) with 16 writers
    rounds_ours: tuple[int, int]
    rounds_theirs_small: tuple[int, int]
    rounds_theirs_big: tuple[int, int]
    first_procs: int  # fresh processes per side, size and spread
    herd: int
    warm_procs: int
    lost_procs: int
    lost_ours: int
    lost_theirs: int
    import_reps: int


FULL = Plan((100, 1000, 10000), 25, 16, (5, 5), (1, 5), (1, 1), 3, 32, 3, 16, 200, 10, 30)
QUICK = Plan((100, 1000), 8, 16, (2, 4), (1, 3), (1, 2), 1, 32, 2, 16, 200, 10, 12)

# targets
STORE_SCALE = 1.5  # p50 (and p99 with 16 writers) at the largest size <= 1.5 x at 100
FIRST_LOOKUP_MS = 5.0
IMPORT_RATIO = 1.15


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * q))]


def med(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} {five:.2f} {fifteen:.2f}"


def compile_sources() -> None:
    """Byte-compile this checkout, as pip does for a package it installs.

    An editable install never gets compiled, and with PYTHONDONTWRITEBYTECODE=1 (set
    on the project's machines) every fresh process would compile our modules from
    source while msal's come compiled from its wheel. That would measure the
    checkout, not the library.
    """
    import compileall

    root = HERE.parent
    for folder in ("requests_ppauth", "plugins", "docs/example-plugin", "benchmarks"):
        if (root / folder).exists():
            compileall.compile_dir(str(root / folder), quiet=1)


class Worker:
    """One ``_cache_worker.py serve`` process: JSON lines in and out."""

    def __init__(self, side: str, cache: Path, env: dict[str, str]) -> None:
        self.side = side
        self.proc = subprocess.Popen(
            [sys.executable, WORKER, "serve", side, str(cache)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
            text=True,
        )

    def send(self, **msg: Any) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(msg) + "\n")
        self.proc.stdin.flush()

    def recv(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            self.proc.wait()
            raise SystemExit(f"a {self.side} worker died (exit {self.proc.returncode})")
        return json.loads(line)

    def ask(self, **msg: Any) -> dict[str, Any]:
        self.send(**msg)
        return self.recv()

    def close(self) -> None:
        with contextlib.suppress(BrokenPipeError, OSError):
            self.send(cmd="quit")
        self.proc.wait(timeout=60)


Caches = dict[str, Any]  # "ours", "theirs", "warm_ours", "warm_theirs": paths; "secret"


@dataclass
class Barrier:
    results: list[dict[str, Any]]  # one per worker
    late: int
    wall: float  # start to the last worker's end, seconds
    token_requests: int
    attempts: int

    @property
    def calls(self) -> list[dict[str, Any]]:
        return [c for r in self.results for c in r["results"]]

    @property
    def latencies(self) -> list[float]:
        return [c["ms"] for c in self.calls if "error" not in c]

    @property
    def failed(self) -> int:
        return sum(1 for c in self.calls if "error" in c)


class Bench:
    # the two sides that store_run and first_run compare, and their printed names; a
    # subclass (bench_fleet.py) compares others by overriding these and :meth:`worker`
    sides: tuple[str, ...] = SIDES
    names: dict[str, str] = NAMES

    def __init__(self, emu: Emulator, tmp: Path, plan: Plan) -> None:
        self.emu = emu
        self.tmp = tmp
        self.plan = plan
        s = emu.sample
        assert s is not None
        self.tenant = build.Tenant(emu.authority_host, s.tenant_id, s.client_id)
        self.env = dict(
            os.environ,
            PPAUTH_TENANT_ID=s.tenant_id,
            PPAUTH_CLIENT_ID=s.client_id,
            PPAUTH_CLIENT_SECRET=s.client_secret,
            PPAUTH_AUTHORITY_HOST=emu.authority_host,
            PPAUTH_CA_BUNDLE=emu.ca_bundle,
            PPAUTH_CONFIG=str(tmp / "none.toml"),
            PPAUTH_CACHE_DIR=str(tmp / "unused-default-cache"),
        )
        self.token_bytes = self._real_token_bytes()
        self.fig: dict[tuple[Any, ...], list[float]] = defaultdict(list)
        # every sample of store_run and first_run, all runs: for percentiles over them
        self.samples: dict[tuple[Any, ...], list[float]] = defaultdict(list)
        self.void: list[str] = []
        self._seq = 0

    def _real_token_bytes(self) -> int:
        """The size of the emulator's access tokens, for the synthetic ones."""
        import sqlite3

        probe = self.tmp / "probe"
        w = Worker("ours", probe, self.env)
        w.ask(cmd="prepare", warm=SCOPE)
        w.close()
        conn = sqlite3.connect(probe / "cache.db")
        (raw,) = conn.execute("SELECT value FROM entries").fetchone()
        conn.close()
        shutil.rmtree(probe)
        return len(json.loads(raw)["secret"])

    def scope(self, tag: str) -> str:
        """A scope no cache holds yet."""
        self._seq += 1
        return f"https://{tag}{self._seq}.crm.dynamics.com/.default"

    def fresh(self, name: str) -> Path:
        path = self.tmp / f"{name}-{self._seq}-{time.time_ns()}"
        self._seq += 1
        path.mkdir()
        return path

    def tokens(self) -> int:
        return self.emu.count("token")

    def worker(self, side: str, cache: Path | str) -> Worker:
        """A worker process for one of :attr:`sides` on ``cache``."""
        return Worker(side, cache, self.env)

    # -- the barrier -------------------------------------------------------------------
    @staticmethod
    def prepare(
        workers: list[Worker],
        warm: Callable[[int], str | None],
        side: str | None = None,
        cache: Path | None = None,
    ) -> int:
        """Build every worker's client (on ``side`` and ``cache`` if given: a kept
        process changes cache), all at once; wait until all are ready. Returns how many
        warm-up acquisitions failed (msal-extensions' lock gives up after 5 s)."""
        for i, w in enumerate(workers):
            if side is not None:
                w.side = side
                w.send(cmd="prepare", warm=warm(i), side=side, cache=str(cache))
            else:
                w.send(cmd="prepare", warm=warm(i))
        return sum(1 for w in workers if w.recv().get("warm_error"))

    def release(self, workers: list[Worker], work: Callable[[int], dict[str, Any]]) -> Barrier:
        """One round: every (prepared) worker gets the same start time, shortly ahead,
        and reports when it reached the start line."""
        os.sync()  # the previous run's writeback must not land in this one
        before = self.tokens()
        start = time.time() + 0.3 + 0.01 * len(workers)
        for i, w in enumerate(workers):
            w.send(cmd="go", start=start, **work(i))
        results = [w.recv() for w in workers]
        late = sum(1 for r in results if r["reached"] > start)
        wall = max(r["end"] for r in results) - start
        return Barrier(results, late, wall, self.tokens() - before, 1)

    def barrier(
        self,
        what: str,
        make: Callable[[], list[Worker]],
        work: Callable[[int], dict[str, Any]],
        warm: Callable[[int], str | None] = lambda i: None,
    ) -> Barrier:
        """Fresh workers from ``make()``, prepared, released together; a round with a
        late worker is void and run again with new workers."""
        for attempt in range(1, ATTEMPTS + 1):
            workers = make()
            try:
                self.prepare(workers, warm)
                res = self.release(workers, work)
            finally:
                for w in workers:
                    w.close()
            res.attempts = attempt
            if not res.late:
                return res
            print(f"      {what}: {res.late} of {len(workers)} workers late: void, again")
        self.void.append(f"{what}: workers late in {ATTEMPTS} attempts")
        return res

    # -- 1. stores through the real path, one process per side -------------------------
    def caches(self, spread: str, n: int, seed: int) -> Caches:
        """Both caches with the same ``n`` tokens, and a tiny pair holding only the
        lookup token (the fresh-process lookup warms up on it)."""
        root = self.fresh(f"{spread}-{n}")
        ours, theirs = build.build_both(root, self.tenant, spread, n, self.token_bytes, seed)
        items = [
            x
            for x in build.entries(self.tenant, spread, n, self.token_bytes, seed)
            if x[0] == self.tenant.client_id and x[1] == build.lookup_scope(spread, n)
        ]
        small = root / "warm"
        now = time.time()
        build.build_ours(small / "ours", self.tenant, items, now)
        build.build_theirs(small / "theirs" / "cache.json", self.tenant, items, now)
        return {
            "ours": ours,
            "theirs": theirs,
            "warm_ours": small / "ours",
            "warm_theirs": small / "theirs" / "cache.json",
            "secret": items[0][2],
        }

    def store_run(self, spread: str, sizes: tuple[int, ...], caches: dict[int, Caches]) -> None:
        """One warm process per side and size; the stores go round all of them (ours
        at 100, theirs at 100, ours at 1,000, ...), so that the sizes, not only the
        sides, are compared under the same conditions."""
        workers = {
            (n, side): self.worker(side, caches[n][side]) for n in sizes for side in self.sides
        }
        lat: dict[tuple[int, str], list[float]] = defaultdict(list)
        inside: dict[tuple[int, str], list[float]] = defaultdict(list)
        try:
            self.prepare(list(workers.values()), lambda i: self.scope("warm"))
            os.sync()
            before = self.tokens()
            for _ in range(self.plan.store_samples):
                for key, w in workers.items():
                    res = w.ask(cmd="store", scope=self.scope(f"s{key[1][0]}"))
                    if "error" in res:
                        raise SystemExit(f"{key} store failed: {res['error']}")
                    lat[key].append(res["ms"])
                    inside[key].append(res["cache_ms"])
            made = self.tokens() - before
        finally:
            for w in workers.values():
                w.close()
        if made != len(workers) * self.plan.store_samples:
            raise SystemExit(f"store run: {made} token requests, not one per store")
        for n in sorted(sizes):
            for side in self.sides:
                self.fig[("store_p50", side, spread, n)].append(med(lat[(n, side)]))
                self.fig[("store_cache_p50", side, spread, n)].append(med(inside[(n, side)]))
                self.samples[("store", side, spread, n)] += lat[(n, side)]
            print(
                f"   {spread:<7} {n:>6}  store p50 / p90, in the cache's calls p50: "
                + "; ".join(
                    f"{self.names[side]} {med(lat[(n, side)]):6.1f} / "
                    f"{pct(lat[(n, side)], 0.9):6.1f}, {med(inside[(n, side)]):5.2f} ms"
                    for side in self.sides
                )
            )

    # -- 3. fresh-process first lookup ------------------------------------------------
    def first_run(self, spread: str, sizes: tuple[int, ...], caches: dict[int, Caches]) -> None:
        """Fresh processes, one at a time, going round the sides and sizes."""
        got: dict[tuple[int, str], list[dict[str, Any]]] = defaultdict(list)
        for _ in range(self.plan.first_procs):
            for n in sizes:
                want = hashlib.sha256(caches[n]["secret"].encode()).hexdigest()[:16]
                for side in self.sides:
                    w = self.worker(side, caches[n][side])
                    try:
                        w.send(
                            cmd="first",
                            warm_cache=str(caches[n]["warm_" + side]),
                            scope=build.lookup_scope(spread, n),
                        )
                        w.recv()  # ready: imported, warmed up
                        os.sync()  # no writeback of the just-built caches in the timed part
                        before = sum(self.emu.counts().values())
                        w.send(cmd="go")
                        res = w.recv()
                        res["requests"] = sum(self.emu.counts().values()) - before
                    finally:
                        w.close()
                    if res["token"] != want:
                        raise SystemExit(f"{side} first lookup returned another token")
                    got[(n, side)].append(res)
        for n in sorted(sizes):
            for side in self.sides:
                each = [x["cache_ms"] for x in got[(n, side)]]
                self.fig[("first_ms", side, spread, n)].append(med(each))
                self.samples[("first", side, spread, n)] += each
                self.samples[("first_total", side, spread, n)] += [
                    x["credential_ms"] + x["cache_ms"] for x in got[(n, side)]
                ]
                self.fig[("first_requests", side, spread, n)].append(
                    max(x["requests"] for x in got[(n, side)])
                )
                cred = med([x["credential_ms"] for x in got[(n, side)]])
                self.fig[("first_credential_ms", side, spread, n)].append(cred)

            def side_text(side: str, n: int = n) -> str:
                each = ", ".join(f"{x['cache_ms']:.2f}" for x in got[(n, side)])
                cred = self.fig[("first_credential_ms", side, spread, n)][-1]
                return (
                    f"{self.names[side]} {self.fig[('first_ms', side, spread, n)][-1]:5.2f} ms "
                    f"(each: {each}; + provider and credential {cred:5.2f} ms)"
                )

            requests_made = " / ".join(
                str(max(x["requests"] for x in got[(n, side)])) for side in self.sides
            )
            print(
                f"   {spread:<7} {n:>6}  first lookup: "
                + "; ".join(side_text(side) for side in self.sides)
                + f"  identity requests during it {requests_made}"
            )

    # -- 2. concurrent stores -----------------------------------------------------------
    def writers_run(self, spread: str, r: int, pool: list[Worker]) -> None:
        """16 processes on the smallest cache and 16 on the largest (``pool``, kept
        alive); rounds alternate between the two (each released by the barrier), so
        both sizes are measured under the same load. Then: rows missing (lost)."""
        plan = self.plan
        small, big = plan.sizes[0], plan.sizes[-1]
        for side in SIDES if r % 2 == 0 else SIDES[::-1]:
            shape = {
                small: plan.rounds_ours if side == "ours" else plan.rounds_theirs_small,
                big: plan.rounds_ours if side == "ours" else plan.rounds_theirs_big,
            }  # (rounds, stores per writer per round)
            paths = {
                n: build.build_side(
                    side,
                    self.fresh(f"w-{spread}-{n}"),
                    self.tenant,
                    spread,
                    n,
                    self.token_bytes,
                    r,
                )
                for n in (small, big)
            }
            pools = {small: pool[: plan.writers], big: pool[plan.writers :]}
            warm_failed = {
                n: self.prepare(pools[n], lambda i: self.scope("warm"), side, paths[n])
                for n in (small, big)
            }
            tag = f"w{side[0]}"
            got: dict[int, list[Barrier]] = {small: [], big: []}
            for k in range(max(x[0] for x in shape.values())):
                for n in (small, big) if (k + r) % 2 == 0 else (big, small):
                    rounds, each = shape[n]
                    if k >= rounds:
                        continue
                    for _attempt in range(ATTEMPTS):
                        res = self.release(
                            pools[n],
                            lambda i, each=each, tag=tag: {
                                "scopes": [self.scope(tag) for _ in range(each)]
                            },
                        )
                        if not res.late:
                            break
                        print(f"      {side} {spread} {n} round {k}: {res.late} late: void")
                    else:
                        self.void.append(f"{plan.writers} writers {side} {spread} {n}: late")
                    got[n].append(res)
            for n in (small, big):
                rounds, each = shape[n]
                lat = [x for res in got[n] for x in res.latencies]
                calls = sorted(
                    (c for res in got[n] for c in res.calls if "error" not in c),
                    key=lambda c: c["ms"],
                )
                slow = calls[int(len(calls) * 0.99) :]  # the stores at and above p99
                failed = sum(res.failed for res in got[n])
                requests_made = sum(res.token_requests for res in got[n])
                stored = (
                    build.count_ours(paths[n]) if side == "ours" else build.count_theirs(paths[n])
                )
                # + one warm-up token each, unless it failed
                expected = n + plan.writers * (1 + rounds * each) - warm_failed[n]
                lost = expected - failed - stored
                key = (side, spread, n)
                p99 = pct(lat, 0.99) if lat else float("nan")
                self.fig[("writers_p99", *key)].append(p99)
                self.fig[("writers_p50", *key)].append(med(lat))
                self.fig[("writers_failed", *key)].append(failed)
                self.fig[("writers_lost", *key)].append(lost)
                print(
                    f"   {spread:<7} {n:>6}  {plan.writers}x{rounds}x{each:<2} {NAMES[side]:<16}"
                    f" p50 {med(lat):7.1f}  p99 {p99:7.1f}  max "
                    f"{max(lat) if lat else float('nan'):7.1f} ms  failed {failed}  lost {lost}"
                    f"  token requests {requests_made}  warm-ups failed {warm_failed[n]}"
                    "  round walls "
                    + "/".join(f"{res.wall:.1f}" for res in got[n])
                    + " s; the slowest 1%: "
                    + ", ".join(f"{c['ms']:.0f} ({c['cache_ms']:.0f} in the cache)" for c in slow)
                    + " ms"
                )
                shutil.rmtree(paths[n].parent)

    # -- 5, 6. the cold herd, then warm starts on what it left ---------------------------
    def herd_run(self, r: int) -> dict[str, Path]:
        left: dict[str, Path] = {}
        for side in SIDES if r % 2 == 0 else SIDES[::-1]:

            def make(side: str = side) -> list[Worker]:
                d = self.fresh(f"herd-{side}")
                left[side] = d / "cache" if side == "ours" else d / "cache.json"
                return [Worker(side, left[side], self.env) for _ in range(self.plan.herd)]

            res = self.barrier(
                f"herd of {self.plan.herd} {side}", make, lambda i: {"scopes": [SCOPE]}
            )
            distinct = len({c["token"] for c in res.calls if "token" in c})
            aside = len(list(left[side].parent.rglob("*corrupt*")))
            self.fig[("herd_requests", side)].append(res.token_requests)
            self.fig[("herd_failed", side)].append(res.failed)
            self.fig[("herd_wall", side)].append(res.wall)
            self.fig[("herd_late", side)].append(res.late)
            each = sorted(res.latencies)
            print(
                f"   {self.plan.herd} cold {NAMES[side]:<16} token requests "
                f"{res.token_requests:>3}  distinct tokens {distinct:>3}  failed {res.failed}  "
                f"late {res.late}  wall {res.wall * 1000:7.1f} ms (per process: min "
                f"{each[0]:.0f}, median {med(each):.0f}, max {each[-1]:.0f} ms)  "
                f"files set aside {aside}  (attempts {res.attempts})"
            )
        return left

    def warm_run(self, left: dict[str, Path]) -> None:
        got: dict[str, list[tuple[float, int]]] = {"ours": [], "theirs": []}
        for _ in range(self.plan.warm_procs):
            for side in SIDES:
                before = sum(self.emu.counts().values())
                out = subprocess.run(
                    [sys.executable, WORKER, "warm", side, str(left[side]), SCOPE],
                    env=self.env,
                    capture_output=True,
                    text=True,
                    check=True,
                )
                json.loads(out.stdout)
                seconds = json.loads(out.stdout)["seconds"]
                got[side].append((seconds, sum(self.emu.counts().values()) - before))
        for side in SIDES:
            self.fig[("warm_requests", side)].append(max(x[1] for x in got[side]))
            self.fig[("warm_ms", side)].append(med([x[0] * 1000 for x in got[side]]))
        print(
            "   warm start: identity requests per process ours "
            f"{max(x[1] for x in got['ours'])}, theirs {max(x[1] for x in got['theirs'])}; "
            f"first token (imports included) ours {med([x[0] * 1000 for x in got['ours']]):6.1f}"
            f" ms, theirs {med([x[0] * 1000 for x in got['theirs']]):6.1f} ms"
        )

    # -- 7. lost writes ---------------------------------------------------------------
    def lost_run(self, r: int, pool: list[Worker]) -> None:
        """``lost_procs`` kept processes write into a new cache at once (so they also
        race to create it); a void round is run again on another new cache."""
        workers = pool[: self.plan.lost_procs]
        for side in SIDES if r % 2 == 0 else SIDES[::-1]:
            each = self.plan.lost_ours if side == "ours" else self.plan.lost_theirs
            paths: dict[str, Path] = {}
            for attempt in range(1, ATTEMPTS + 1):
                d = self.fresh(f"lost-{side}")
                paths["c"] = d / "cache" if side == "ours" else d / "cache.json"
                self.prepare(workers, lambda i: None, side, paths["c"])
                res = self.release(
                    workers,
                    lambda i, each=each: {
                        "puts": each,
                        "prefix": f"p{i}",
                        "token_bytes": self.token_bytes,
                    },
                )
                res.attempts = attempt
                if not res.late:
                    break
                print(f"      lost writes {side}: {res.late} late: void, again")
            else:
                self.void.append(f"lost writes {side}: workers late in {ATTEMPTS} attempts")
            stored = (
                build.count_ours(paths["c"]) if side == "ours" else build.count_theirs(paths["c"])
            )
            lost = self.plan.lost_procs * each - res.failed - stored
            aside = len(list(paths["c"].parent.rglob("*corrupt*")))
            lat = res.latencies
            self.fig[("lost", side)].append(lost)
            self.fig[("lost_failed", side)].append(res.failed)
            self.fig[("lost_each", side)].append(each)
            print(
                f"   {self.plan.lost_procs}x{each:<3} writes {NAMES[side]:<16} lost {lost}  "
                f"failed {res.failed}  late {res.late}  files set aside {aside}  "
                f"p50 {med(lat):6.1f}  p99 {pct(lat, 0.99):7.1f} ms  wall {res.wall:5.2f} s"
            )

    # -- 8. import time ---------------------------------------------------------------
    def import_run(self) -> None:
        cwd = self.fresh("imports")  # not the checkout: the import goes through the install
        times: dict[str, list[float]] = {"requests_ppauth": [], "requests": []}
        for _ in range(self.plan.import_reps):
            for mod in times:
                t = time.perf_counter()
                subprocess.run(
                    [sys.executable, "-c", f"import {mod}"], cwd=cwd, env=self.env, check=True
                )
                times[mod].append((time.perf_counter() - t) * 1000)
        ours, theirs = med(times["requests_ppauth"]), med(times["requests"])
        self.fig[("import_ms", "ours")].append(ours)
        self.fig[("import_ms", "requests")].append(theirs)
        self.fig[("import_ratio", "ours")].append(ours / theirs)
        print(
            f"   python -c 'import requests_ppauth' {ours:6.1f} ms, 'import requests' "
            f"{theirs:6.1f} ms: {ours / theirs:.3f}x (medians of {self.plan.import_reps} each)"
        )

    # -- one run -----------------------------------------------------------------------
    def run(self, r: int) -> None:
        plan = self.plan
        sizes = plan.sizes if r % 2 == 0 else plan.sizes[::-1]
        t = time.perf_counter()

        def section(title: str) -> None:
            nonlocal t
            now = time.perf_counter()
            print(f" {title} ({load()}; previous section {now - t:.0f} s)")
            t = now

        print(f"-- run {r + 1}")
        section("1/3/4. stores in one process (alternating), fresh-process lookups, sizes")
        for spread in SPREADS:
            caches = {n: self.caches(spread, n, seed=r) for n in sizes}
            for n in sorted(sizes):
                ours = caches[n]["ours"]
                so, st = build.size_ours(ours), build.size_theirs(caches[n]["theirs"])
                self.fig[("size", "ours", spread, n)].append(so)
                self.fig[("size", "theirs", spread, n)].append(st)
                print(
                    f"   {spread:<7} {n:>6}  on disk: ours {so / 1e3:9.1f} kB, theirs "
                    f"{st / 1e3:9.1f} kB ({so / st:.3f}x)  ours: {build.breakdown(ours)}"
                )
            self.store_run(spread, sizes, caches)
            self.first_run(spread, sizes, caches)
            for c in caches.values():
                shutil.rmtree(c["ours"].parent)
        section(f"2. {plan.writers} processes storing at once, rounds alternating sizes")
        # kept processes, given a side and a cache for each measurement (the herd's are new)
        pool = [Worker("ours", self.tmp / "none", self.env) for _ in range(2 * plan.writers)]
        try:
            for spread in SPREADS:
                self.writers_run(spread, r, pool)
            section("7. lost writes")
            self.lost_run(r, pool)
        finally:
            for w in pool:
                w.close()
        section("5/6. cold herd, warm start")
        left = self.herd_run(r)
        self.warm_run(left)
        section("8. import time")
        self.import_run()
        section(f"-- end of run {r + 1}")


def ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}x" if b else "n/a"


def summary(bench: Bench, runs: int) -> list[str]:
    """Print the table of medians and ratios; return the targets missed."""
    fig, plan = bench.fig, bench.plan
    small, big = plan.sizes[0], plan.sizes[-1]
    missed: list[str] = []

    def m(*key: Any) -> float:
        return med(fig[key])

    def runs_of(*key: Any, fmt: str = "{:.1f}") -> str:
        return ", ".join(fmt.format(v) for v in fig[key])

    rows: list[tuple[str, str, str, str]] = []
    print(f"\n== summary: medians of {runs} run(s); per run in brackets; {load()}")
    head = f"{'':<52} {'requests-ppauth':>22} {'msal-extensions':>22} {'theirs/ours':>11}"
    print(head)
    print("-" * len(head))

    def row(
        label: str, ours: float, theirs: float, unit: str, o_runs: str = "", t_runs: str = ""
    ) -> None:
        o = f"{ours:.2f} {unit}" if ours == ours else "-"
        t = f"{theirs:.2f} {unit}" if theirs == theirs else "-"
        rows.append((label, o, t, ratio(theirs, ours) if theirs == theirs else ""))
        print(f"{label:<52} {o:>22} {t:>22} {rows[-1][3]:>11}")
        if o_runs or t_runs:
            print(f"{'':<52} {'[' + o_runs + ']':>22} {'[' + t_runs + ']':>22}")

    for spread in SPREADS:
        for n in plan.sizes:
            row(
                f"store p50, {spread}, {n:,} entries",
                m("store_p50", "ours", spread, n),
                m("store_p50", "theirs", spread, n),
                "ms",
                runs_of("store_p50", "ours", spread, n),
                runs_of("store_p50", "theirs", spread, n),
            )
    for spread in SPREADS:
        for n in plan.sizes:
            row(
                f"  of which in the cache's calls (p50), {spread}, {n:,}",
                m("store_cache_p50", "ours", spread, n),
                m("store_cache_p50", "theirs", spread, n),
                "ms",
            )
    for spread in SPREADS:
        for n in (small, big):
            row(
                f"store p99, {plan.writers} writers, {spread}, {n:,}",
                m("writers_p99", "ours", spread, n),
                m("writers_p99", "theirs", spread, n),
                "ms",
                runs_of("writers_p99", "ours", spread, n),
                runs_of("writers_p99", "theirs", spread, n),
            )
    for spread in SPREADS:
        for n in (small, big):
            row(
                f"  failed / lost of those stores, {spread}, {n:,}",
                m("writers_failed", "ours", spread, n) + m("writers_lost", "ours", spread, n),
                m("writers_failed", "theirs", spread, n) + m("writers_lost", "theirs", spread, n),
                "",
                runs_of("writers_failed", "ours", spread, n, fmt="{:.0f}")
                + " / "
                + runs_of("writers_lost", "ours", spread, n, fmt="{:.0f}"),
                runs_of("writers_failed", "theirs", spread, n, fmt="{:.0f}")
                + " / "
                + runs_of("writers_lost", "theirs", spread, n, fmt="{:.0f}"),
            )
    for spread in SPREADS:
        for n in plan.sizes:
            row(
                f"fresh-process first lookup, {spread}, {n:,}",
                m("first_ms", "ours", spread, n),
                m("first_ms", "theirs", spread, n),
                "ms",
                runs_of("first_ms", "ours", spread, n, fmt="{:.2f}"),
                runs_of("first_ms", "theirs", spread, n, fmt="{:.2f}"),
            )
    for spread in SPREADS:
        for n in plan.sizes:
            row(
                f"snapshot size, {spread}, {n:,}",
                m("size", "ours", spread, n) / 1e3,
                m("size", "theirs", spread, n) / 1e3,
                "kB",
            )
    row(
        f"cold herd of {plan.herd}: token requests",
        m("herd_requests", "ours"),
        m("herd_requests", "theirs"),
        "",
        runs_of("herd_requests", "ours", fmt="{:.0f}"),
        runs_of("herd_requests", "theirs", fmt="{:.0f}"),
    )
    row(
        f"cold herd of {plan.herd}: wall time",
        m("herd_wall", "ours") * 1000,
        m("herd_wall", "theirs") * 1000,
        "ms",
        runs_of("herd_wall", "ours", fmt="{:.3f}"),
        runs_of("herd_wall", "theirs", fmt="{:.3f}"),
    )
    row(
        "warm start: identity requests",
        m("warm_requests", "ours"),
        m("warm_requests", "theirs"),
        "",
    )
    row(
        "warm start: first token, imports included",
        m("warm_ms", "ours"),
        m("warm_ms", "theirs"),
        "ms",
    )
    row(
        f"lost writes ({plan.lost_procs}x{plan.lost_ours} ours, "
        f"{plan.lost_procs}x{plan.lost_theirs} theirs)",
        m("lost", "ours"),
        m("lost", "theirs"),
        "",
    )
    row("failed writes (same runs)", m("lost_failed", "ours"), m("lost_failed", "theirs"), "")
    print(
        f"{'python -c import requests_ppauth | requests':<52} "
        f"{m('import_ms', 'ours'):>19.1f} ms {m('import_ms', 'requests'):>19.1f} ms "
        f"{m('import_ratio', 'ours'):>10.3f}x"
    )
    print(
        f"{'':<52} {'[' + runs_of('import_ms', 'ours') + ']':>22} "
        f"{'[' + runs_of('import_ms', 'requests') + ']':>22}  (the last column: ours/requests;"
        f" per run {runs_of('import_ratio', 'ours', fmt='{:.3f}')})"
    )
    print(
        "\nfirst lookup, timed: ours provider.get() after the provider is built and the "
        "credential resolved (those took "
        + ", ".join(
            f"{spread} {m('first_credential_ms', 'ours', spread, big):.2f} ms" for spread in SPREADS
        )
        + f" at {big:,}); theirs a new PersistedTokenCache + acquire_token_for_client from it"
    )

    print(f"\n== scale: the largest size ({big:,}) over {small:,}")
    for spread in SPREADS:
        for metric, label in (
            ("store_p50", "store p50"),
            ("writers_p99", f"store p99, {plan.writers} writers"),
        ):
            o = m(metric, "ours", spread, big) / m(metric, "ours", spread, small)
            t = m(metric, "theirs", spread, big) / m(metric, "theirs", spread, small)
            print(
                f"   {label:<28} {spread:<7}  requests-ppauth {o:5.2f}x   msal-extensions {t:6.2f}x"
            )

    print("\n== targets")
    checks: list[tuple[str, bool, str]] = []
    for spread in SPREADS:
        for metric, label in (
            ("store_p50", "store p50"),
            ("writers_p99", f"store p99 with {plan.writers} writers"),
        ):
            o = m(metric, "ours", spread, big) / m(metric, "ours", spread, small)
            checks.append(
                (
                    f"{label}, {spread}: {big:,} <= {STORE_SCALE}x {small:,}",
                    o <= STORE_SCALE,
                    f"{o:.2f}x",
                )
            )
    for spread in SPREADS:
        v = m("first_ms", "ours", spread, big)
        req = max(fig[("first_requests", "ours", spread, big)])
        checks.append(
            (
                f"fresh-process first lookup, {spread}, {big:,}: cache work "
                f"<= {FIRST_LOOKUP_MS} ms, 0 requests",
                v <= FIRST_LOOKUP_MS and req == 0,
                f"{v:.2f} ms, {req:.0f} requests",
            )
        )
    imp = m("import_ratio", "ours")  # the median of the runs' ratios
    checks.append(
        (
            f"import requests_ppauth <= {IMPORT_RATIO}x import requests",
            imp <= IMPORT_RATIO,
            f"{imp:.3f}x",
        )
    )
    herd = fig[("herd_requests", "ours")]
    checks.append(
        (
            f"{plan.herd} cold processes -> 1 token request, none failed (every run)",
            all(v == 1 for v in herd) and not any(fig[("herd_failed", "ours")]),
            runs_of("herd_requests", "ours", fmt="{:.0f}"),
        )
    )
    checks.append(
        (
            "warm start -> 0 identity requests (every run)",
            not any(fig[("warm_requests", "ours")]),
            runs_of("warm_requests", "ours", fmt="{:.0f}"),
        )
    )
    checks.append(
        (
            f"{plan.lost_procs}x{plan.lost_ours} writers -> 0 lost, 0 failed (every run)",
            not any(fig[("lost", "ours")]) and not any(fig[("lost_failed", "ours")]),
            runs_of("lost", "ours", fmt="{:.0f}"),
        )
    )
    lost_real = [
        v
        for k, vs in fig.items()
        if k[0] in ("writers_lost", "writers_failed") and k[1] == "ours"
        for v in vs
    ]
    checks.append(
        (
            "concurrent real stores -> 0 lost, 0 failed (ours, every run)",
            not any(lost_real),
            f"{sum(lost_real):.0f}",
        )
    )
    for spread in SPREADS:
        for n in plan.sizes:
            o, t = m("size", "ours", spread, n), m("size", "theirs", spread, n)
            checks.append(
                (f"snapshot size, {spread}, {n:,}: ours <= theirs", o <= t, f"{o / t:.3f}x")
            )
    for label, ok, value in checks:
        print(f"   [{'met   ' if ok else 'MISSED'}] {label}: {value}")
        if not ok:
            missed.append(label)
    for v in bench.void:
        print(f"   [VOID  ] {v}")
        missed.append(v)
    return missed


def checkout() -> str:
    """Which library was measured: the commit, and whether its files differ from it."""
    root = HERE.parent

    def git(*args: str) -> str:
        out = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True)
        return out.stdout.strip() if out.returncode == 0 else "?"

    changed = git("status", "--porcelain", "--", "requests_ppauth")
    digest = hashlib.sha256()
    for path in sorted((root / "requests_ppauth").rglob("*.py")):
        digest.update(path.read_bytes())
    return (
        f"requests_ppauth at {git('rev-parse', '--short', 'HEAD')}"
        f"{' with uncommitted changes' if changed else ''} (sources sha256 "
        f"{digest.hexdigest()[:12]})"
    )


def arguments(
    doc: str | None, argv: list[str] | None, full: Plan, quick: Plan
) -> tuple[bool, Plan, int]:
    """``--quick`` and ``--runs``: whether quick, the plan, and how many runs."""
    parser = argparse.ArgumentParser(description=(doc or "").split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="100 and 1,000 entries, fewer samples")
    parser.add_argument("--runs", type=int, default=None, help="default 3 (1 with --quick)")
    args = parser.parse_args(argv)
    runs = args.runs if args.runs is not None else (1 if args.quick else 3)
    return args.quick, quick if args.quick else full, runs


def finish(missed: list[str], began: float) -> int:
    """The closing lines, and the exit status: 1 naming every target missed."""
    print(f"\nwall time {time.perf_counter() - began:.0f} s; {load()}")
    if missed:
        print(f"{len(missed)} target(s) missed: " + "; ".join(missed))
        return 1
    print("every target met")
    return 0


def main(argv: list[str] | None = None) -> int:
    quick, plan, runs = arguments(__doc__, argv, FULL, QUICK)
    began = time.perf_counter()
    compile_sources()
    import msal
    import msal_extensions

    print(
        f"bench_cache: {'quick' if quick else 'full'}, {runs} run(s), sizes "
        f"{', '.join(f'{n:,}' for n in plan.sizes)}; msal {msal.__version__}, "
        f"msal-extensions {msal_extensions.__version__}, Python {sys.version.split()[0]}, "
        f"{os.cpu_count()} CPUs; {load()}"
    )
    print(checkout())
    with Emulator() as emu, tempfile.TemporaryDirectory() as tmp:
        bench = Bench(emu, Path(tmp), plan)
        print(f"token size {bench.token_bytes} bytes (the emulator's)")
        for r in range(runs):
            t = time.perf_counter()
            bench.run(r)
            print(f"   (run {r + 1}: {time.perf_counter() - t:.0f} s)")
        missed = summary(bench, runs)
    return finish(missed, began)


if __name__ == "__main__":
    sys.exit(main())
