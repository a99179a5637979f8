"""32 processes, each building Microsoft's ``DataverseClient`` and making one call: token
requests with our ``PowerPlatformCredential`` next to azure-identity's
``ClientSecretCredential``, against the built-in emulator.

Each process (``python bench_sdk_fleet.py worker <side>``) imports the SDK and builds
its client before the start (``DataverseClient(emu.api_url, credential)`` makes no
request; ours also imports msal and settles its settings, sources and cache backend,
``provider.key``, as azure-identity's constructor does its own; ``--cold`` leaves that
to the first call), then, released by the verified barrier of bench_cache.py (every process
reports the moment it reached the start line; a run with a late process is void and
run again, up to ``ATTEMPTS`` times), makes one call, ``client.tables.get("account")``,
which needs a token. The emulator's token endpoint is slowed by ``TOKEN_LATENCY``
seconds (its fault injection), so every process is in flight while the first token
request is still being answered; its exact counter gives the token requests made.

- ``ours``: ``PowerPlatformCredential()`` (credentials from ``PPAUTH_*``, the env
  source), all processes on one file cache (``PPAUTH_CACHE_DIR``, new for every run).
  Target: exactly 1 token request and no failed call, in every run.
- ``azure-identity``: ``ClientSecretCredential`` with the emulator's settings
  (``emu.client_settings("azure-identity")``). Reported: its cache is per credential
  object (azure-sdk-for-python #26177), so one request per process is expected.

Sides are interleaved A B A B (the order swaps every run); ``--runs`` (default 3);
medians over the runs; the load average is printed with the figures; exit 1 naming
every target missed. Run: ``python benchmarks/bench_sdk_fleet.py [--runs N]`` (needs
``pip install -e ".[bench,azure]" PowerPlatform-Dataverse-Client``).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
PROCESSES = 32
TOKEN_LATENCY = 0.5
SIDES = ("ours", "azure-identity")
ATTEMPTS = 3


# -- the worker process -------------------------------------------------------------------
def worker(side: str) -> int:
    """JSON lines in, JSON lines out: ``prepare`` (imports, credential, client), ``go``
    (the barrier, then one call), ``quit``. Tokens are never printed: a digest."""
    from _cache_worker import digest, wait_until
    from PowerPlatform.Dataverse.client import DataverseClient

    client: Any = None
    credential: Any = None
    base_url = ""
    for line in sys.stdin:
        msg = json.loads(line)
        if msg["cmd"] == "prepare":
            if side == "ours":
                from requests_ppauth import PowerPlatformCredential

                credential = PowerPlatformCredential()
                if msg.get("settle"):
                    # what azure-identity's constructor does before its first token: its
                    # imports (msal) and settings; ours does them lazily, at the first token
                    import msal  # noqa: F401

                    credential.auth.provider.key(f"{msg['base_url']}/.default")
            else:
                from azure.identity import ClientSecretCredential

                credential = ClientSecretCredential(
                    os.environ["PPAUTH_TENANT_ID"],
                    os.environ["PPAUTH_CLIENT_ID"],
                    os.environ["PPAUTH_CLIENT_SECRET"],
                    **msg["settings"],
                )
            base_url = msg["base_url"]
            client = DataverseClient(base_url, credential)
            answer: dict[str, Any] = {"ready": time.time()}
        elif msg["cmd"] == "go":
            reached = time.time()
            wait_until(msg["start"])
            t = time.perf_counter()
            answer = {"reached": reached}
            try:
                info = client.tables.get("account")
                answer["ok"] = info is not None
                scope = f"{base_url}/.default"
                answer["token"] = digest(credential.get_token(scope).token)  # its cache's
            except Exception as exc:  # reported, counted as failed
                answer["error"] = f"{type(exc).__name__}: {exc}"[:300]
            answer["ms"] = (time.perf_counter() - t) * 1000
            answer["end"] = time.time()
        else:
            return 0
        print(json.dumps(answer), flush=True)
    return 0


# -- the driver ---------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--processes", type=int, default=PROCESSES)
    parser.add_argument(
        "--cold",
        action="store_true",
        help="ours builds nothing before its first token (imports msal, reads the settings, "
        "loads the sources then, in the timed call); default: before the start, as "
        "azure-identity's constructor does",
    )
    args = parser.parse_args(argv)
    sys.path.insert(0, str(HERE))
    import bench_cache as bc

    from requests_ppauth.testing import Emulator, Fault

    began = time.perf_counter()
    bc.compile_sources()
    import azure.identity
    import PowerPlatform.Dataverse

    print(
        f"bench_sdk_fleet: {args.runs} run(s), {args.processes} processes per side, token "
        f"endpoint +{TOKEN_LATENCY} s; powerplatform-dataverse-client "
        f"{getattr(PowerPlatform.Dataverse, '__version__', '?')}, azure-identity "
        f"{azure.identity.__version__}, ours {'cold' if args.cold else 'settled'}, Python "
        f"{sys.version.split()[0]}, {os.cpu_count()} CPUs; {bc.load()}"
    )
    print(f"requests_ppauth sources sha256 {sources_digest(HERE.parent)}")
    fig: dict[tuple[str, str], list[float]] = defaultdict(list)
    void: list[str] = []

    class SdkWorker(bc.Worker):
        def __init__(self, side: str, env: dict[str, str]) -> None:
            self.side = side
            self.proc = subprocess.Popen(
                [sys.executable, __file__, "worker", side],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                env=env,
                text=True,
            )

    with Emulator() as emu, tempfile.TemporaryDirectory() as tmp:
        s = emu.sample
        assert s is not None
        base_env = dict(
            os.environ,
            PPAUTH_TENANT_ID=s.tenant_id,
            PPAUTH_CLIENT_ID=s.client_id,
            PPAUTH_CLIENT_SECRET=s.client_secret,
            PPAUTH_AUTHORITY_HOST=emu.authority_host,
            PPAUTH_CA_BUNDLE=emu.ca_bundle,
            PPAUTH_CONFIG=str(Path(tmp) / "none.toml"),
            REQUESTS_CA_BUNDLE=emu.ca_bundle,  # the Dataverse SDK's requests, no verify=
            PYTHONPATH=os.pathsep.join(filter(None, (str(HERE), os.environ.get("PYTHONPATH")))),
        )
        settings = emu.client_settings("azure-identity")
        prepare = {
            "cmd": "prepare",
            "base_url": emu.api_url,
            "settings": settings,
            "settle": not args.cold,
        }

        def herd(side: str, run: int) -> None:
            for attempt in range(1, ATTEMPTS + 1):
                env = dict(base_env, PPAUTH_CACHE_DIR=str(Path(tmp) / f"{side}-{run}-{attempt}"))
                workers = [SdkWorker(side, env) for _ in range(args.processes)]
                slow = emu.faults.add(Fault(endpoint="token", latency=TOKEN_LATENCY, times=None))
                try:
                    for w in workers:
                        w.send(**prepare)
                    for w in workers:
                        w.recv()
                    before = emu.count("token")
                    start = time.time() + 0.3 + 0.01 * len(workers)
                    for w in workers:
                        w.send(cmd="go", start=start)
                    results = [w.recv() for w in workers]
                    made = emu.count("token") - before
                finally:
                    emu.clear_faults()
                    for w in workers:
                        w.close()
                late = sum(1 for r in results if r["reached"] > start)
                if late:
                    print(f"   {side}: {late} of {len(workers)} processes late: void, again")
                    continue
                failed = [r["error"] for r in results if "error" in r or not r.get("ok")]
                lat = sorted(r["ms"] for r in results)
                wall = max(r["end"] for r in results) - start
                distinct = len({r.get("token") for r in results if r.get("token")})
                for name, value in (
                    ("requests", made),
                    ("failed", len(failed)),
                    ("distinct", distinct),
                    ("wall", wall),
                    ("median_ms", bc.med(lat)),
                    ("max_ms", lat[-1]),
                ):
                    fig[(name, side)].append(value)
                print(
                    f"   {side:<15} token requests {made:>3}  distinct tokens {distinct:>3}  "
                    f"failed {len(failed)}  late 0  wall {wall:5.2f} s  (per process: median "
                    f"{bc.med(lat):.0f}, max {lat[-1]:.0f} ms; attempt {attempt}; slowed "
                    f"{slow.fired} token requests)"
                    + (f"\n      first failure: {failed[0]}" if failed else "")
                )
                return
            void.append(f"{side}, run {run + 1}: processes late in {ATTEMPTS} attempts")

        for run in range(args.runs):
            print(f"-- run {run + 1} ({bc.load()})")
            for side in SIDES if run % 2 == 0 else SIDES[::-1]:
                herd(side, run)

    def m(name: str, side: str) -> float:
        return bc.med(fig[(name, side)])

    def runs_of(name: str, side: str) -> str:
        return ", ".join(f"{v:.0f}" for v in fig[(name, side)]) or "none"

    print(f"\n== summary: {args.runs} run(s), {args.processes} processes; {bc.load()}")
    print(f"{'':<30} {'ours':>16} {'azure-identity':>16}")
    for name, label in (
        ("requests", "token requests, median"),
        ("distinct", "distinct tokens, median"),
        ("failed", "failed calls, median"),
    ):
        print(f"{label:<30} {m(name, 'ours'):>16.0f} {m(name, 'azure-identity'):>16.0f}")
    print(
        f"{'  per run':<30} {'[' + runs_of('requests', 'ours') + ']':>16} "
        f"{'[' + runs_of('requests', 'azure-identity') + ']':>16}"
    )
    walls = [f"{m('wall', side):.2f}" for side in SIDES]
    print(f"{'wall, median (s)':<30} {walls[0]:>16} {walls[1]:>16}")
    procs = [f"{m('median_ms', side):.0f} / {m('max_ms', side):.0f}" for side in SIDES]
    print(f"{'per process median / max (ms)':<30} {procs[0]:>16} {procs[1]:>16}")
    print("\n== targets")
    ours = fig[("requests", "ours")]
    ok = len(ours) == args.runs and all(v == 1 for v in ours) and not any(fig[("failed", "ours")])
    label = (
        f"{args.processes} processes with PowerPlatformCredential -> 1 token request, "
        "none failed (every run)"
    )
    print(f"   [{'met   ' if ok else 'MISSED'}] {label}: {runs_of('requests', 'ours')}")
    missed = [] if ok else [label]
    print(
        f"   [report] azure-identity ClientSecretCredential -> "
        f"{runs_of('requests', 'azure-identity')} token requests (expected {args.processes})"
    )
    for v in void:
        print(f"   [VOID  ] {v}")
        missed.append(v)
    return bc.finish(missed, began)


def sources_digest(root: Path) -> str:
    """Which library was measured (without asking git)."""
    digest = hashlib.sha256()
    for path in sorted((root / "requests_ppauth").rglob("*.py")):
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "worker":
        sys.exit(worker(sys.argv[2]))
    sys.exit(main())
