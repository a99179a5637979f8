"""``ppauth demo``: the main job in one command, against the built-in emulator.

Starts the emulator in this process, writes an isolated profile into a temp directory
(``PPAUTH_CONFIG`` and ``PPAUTH_CACHE_DIR`` point there, so the user's files are never
touched), then runs N worker processes (``spawn``) that each make M API calls through a
``requests.Session`` with ``PowerPlatformAuth``, sharing the on-disk cache. Reports the
calls made, the token requests the identity provider received (one is the point), the
cache location and the per-request cost of the auth with a valid token in memory.
Exit status 0 only when every call succeeded and exactly one token was requested.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import queue as queues
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from requests_ppauth.cli import common, config_file
from requests_ppauth.cli.failures import CLIError
from requests_ppauth.cli.progress import Progress

PROFILE = "demo"
SCOPE = "https://api.powerplatform.com/.default"
PATH = "/environmentmanagement/environments?api-version=2024-10-01"
READY_TIMEOUT = 60.0
OVERHEAD_CALLS = 5000
OVERHEAD_REPEATS = 7


@dataclass
class Result:
    """What the demo measured."""

    workers: int
    calls_per_worker: int
    calls: int = 0
    succeeded: int = 0
    failed: int = 0
    first_error: str | None = None
    startup_seconds: float = 0.0
    seconds: float = 0.0
    token_requests: int = 0
    discovery_requests: int = 0
    cache: str = ""
    kept: bool = False
    auth_overhead_us: float = 0.0
    emulator: dict[str, str] = field(default_factory=dict)
    config: str = ""

    @property
    def ok(self) -> bool:
        """Every call succeeded with exactly one token request."""
        return self.failed == 0 and self.succeeded == self.calls and self.token_requests == 1


def _count(text: str) -> int:
    n = int(text)
    if not 1 <= n <= 10_000:
        raise argparse.ArgumentTypeError(f"{text} is not between 1 and 10000")
    return n


def add(subparsers: Any, parents: list[argparse.ArgumentParser]) -> None:
    """Register ``demo``."""
    p = subparsers.add_parser(
        "demo",
        parents=parents,
        help="see it work: N processes x M calls against the built-in emulator, 1 token",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--workers", type=_count, default=8, help="worker processes (default 8)")
    p.add_argument("--calls", type=_count, default=50, help="API calls per worker (default 50)")
    p.add_argument("--progress", action="store_true", help="live progress even without a TTY")
    p.add_argument("--keep", action="store_true", help="keep the temp directory (config, cache)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=run)


@contextlib.contextmanager
def isolated_environment(root: Path) -> Iterator[None]:
    """``PPAUTH_*`` pointing into ``root``, no other credential variables; restored after."""
    saved = dict(os.environ)
    for name in list(os.environ):
        if name.startswith(("PPAUTH_", "AZURE_")):
            del os.environ[name]
    os.environ.update(
        PPAUTH_CONFIG=str(root / "config.toml"),
        PPAUTH_CACHE_DIR=str(root / "cache"),
        PPAUTH_PROFILE=PROFILE,
    )
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def write_profile(emu: Any, root: Path) -> Path:
    """The demo profile: the emulator's sample app, its authority and CA."""
    sample = emu.sample
    settings = {
        "tenant_id": sample.tenant_id,
        "client_id": sample.client_id,
        # the emulator's made-up secret, in a 0600 file in a 0700 temp directory
        "client_secret": sample.client_secret,
        "authority_host": emu.authority_host,
        "ca_bundle": emu.ca_bundle,
        "sources": ["file"],
    }
    path = root / "config.toml"
    config_file.write_atomic(path, config_file.profile_text(PROFILE, settings))
    return path


def run(args: argparse.Namespace) -> int:
    """Run the demo, print the report; exit status 0 only if it all worked."""
    started = time.perf_counter()
    root = Path(tempfile.mkdtemp(prefix="ppauth-demo-"))
    result = Result(workers=args.workers, calls_per_worker=args.calls, kept=args.keep)
    try:
        with isolated_environment(root), Workers(args.workers) as workers:
            from requests_ppauth.testing import Emulator  # while the workers import

            with Emulator() as emu:
                result.config = str(write_profile(emu, root))
                result.emulator = {"identity": emu.authority_host, "api": emu.api_url}
                url = emu.api_url + PATH
                hosts = {common.netloc(emu.api_url): SCOPE}
                workers.run((url, hosts, emu.ca_bundle, args.calls), args, result)
                result.auth_overhead_us = measure_overhead(url, hosts)
                result.token_requests = emu.count("token")
                result.discovery_requests = emu.count("discovery")
                result.cache = str(root / "cache" / "cache.db")
        result.startup_seconds = workers.startup_seconds
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    report(result, time.perf_counter() - started, args.json)
    if result.failed or result.succeeded != result.calls:
        raise CLIError(
            f"{result.failed} of {result.calls} calls failed (first: {result.first_error})",
            "rerun with --verbose; `ppauth doctor` checks a setup",
        )
    if result.token_requests != 1:
        raise CLIError(
            f"the identity provider received {result.token_requests} token requests, expected 1",
            "the processes did not share the token through the on-disk cache; rerun with "
            "--keep and inspect it with `ppauth cache list`",
        )
    return 0


class Workers:
    """The worker processes (``spawn``): started first, given their job when all are ready."""

    def __init__(self, count: int) -> None:
        import multiprocessing

        self.count = count
        self.ctx = multiprocessing.get_context("spawn")
        self.jobs: Any = self.ctx.Queue()
        self.messages: Any = self.ctx.Queue()
        self.procs: list[Any] = []
        self.startup_seconds = 0.0
        self._spawned = 0.0

    def __enter__(self) -> Workers:
        from requests_ppauth.cli import demo_worker

        self._spawned = time.perf_counter()
        self.procs = [
            self.ctx.Process(
                target=demo_worker.work,
                args=(i, self.jobs, self.messages),
                name=f"ppauth-demo-{i}",
                daemon=True,
            )
            for i in range(self.count)
        ]
        for proc in self.procs:
            proc.start()
        return self

    def __exit__(self, *exc: object) -> None:
        for _ in self.procs:
            self.jobs.put(None)  # workers still waiting for a job leave
        for proc in self.procs:
            proc.join(timeout=10)
            if proc.is_alive():
                proc.kill()

    def run(self, job: tuple[Any, ...], args: argparse.Namespace, result: Result) -> None:
        """Hand every worker ``job`` at once; follow their calls; add up their summaries."""
        _wait_ready(self.procs, self.messages)
        self.startup_seconds = time.perf_counter() - self._spawned
        result.calls = self.count * args.calls
        progress = Progress(result.calls, "calls", live=True if args.progress else None)
        t0 = time.perf_counter()
        for _ in self.procs:
            self.jobs.put(job)
        finished = _follow(self.procs, self.messages, progress, args.calls)
        result.seconds = time.perf_counter() - t0
        progress.finish()
        for ok, failed, error in finished.values():
            result.succeeded += ok
            result.failed += failed
            result.first_error = result.first_error or error


def _wait_ready(procs: list[Any], messages: Any) -> None:
    ready = 0
    deadline = time.monotonic() + READY_TIMEOUT
    while ready < len(procs):
        try:
            kind, *_ = messages.get(timeout=0.2)
        except queues.Empty:
            if time.monotonic() > deadline or all(not p.is_alive() for p in procs):
                raise CLIError(
                    f"only {ready} of {len(procs)} worker processes started",
                    "rerun with --verbose and fewer --workers",
                ) from None
            continue
        ready += kind == "ready"


def _follow(
    procs: list[Any], messages: Any, progress: Progress, calls: int
) -> dict[int, tuple[int, int, str | None]]:
    finished: dict[int, tuple[int, int, str | None]] = {}
    done = 0
    while len(finished) < len(procs):
        try:
            message = messages.get(timeout=0.2)
        except queues.Empty:
            for i, proc in enumerate(procs):  # a worker that died without a summary
                if i not in finished and proc.exitcode is not None:
                    finished[i] = (0, calls, f"worker {i} exited with status {proc.exitcode}")
            continue
        if message[0] == "call":
            done += 1
            progress.update(done)
        elif message[0] == "done":
            _, index, ok, failed, error = message
            finished[index] = (ok, failed, error)
    return finished


def measure_overhead(url: str, hosts: dict[str, str]) -> float:
    """Median µs per ``PowerPlatformAuth.__call__`` on a prepared request, token in memory.

    CPU time of this thread, not wall time: other processes on a busy machine do not
    inflate it, and nothing here waits (no I/O, no lock held by anyone else).
    """
    import requests

    from requests_ppauth import PowerPlatformAuth

    auth = PowerPlatformAuth(hosts=hosts)
    prepared = requests.Request("GET", url).prepare()
    auth(prepared)  # reads the token the workers left in the on-disk cache
    samples = []
    for _ in range(OVERHEAD_REPEATS):
        prepared.hooks["response"].clear()  # each call registers its 401 hook
        start = time.thread_time_ns()
        for _ in range(OVERHEAD_CALLS):
            auth(prepared)
        samples.append((time.thread_time_ns() - start) / OVERHEAD_CALLS)
    return statistics.median(samples) / 1000


def report(result: Result, total: float, as_json: bool) -> None:
    """Print what was measured."""
    if as_json:
        common.print_json({**asdict(result), "ok": result.ok, "total_seconds": round(total, 3)})
        return
    cache_note = "kept (--keep)" if result.kept else "deleted on exit; --keep keeps it"
    rows = [
        (
            "calls made",
            f"{result.calls} ({result.succeeded} succeeded, {result.failed} failed) in "
            f"{result.seconds:.2f} s, after {result.startup_seconds:.2f} s starting the workers",
        ),
        ("token requests", f"{result.token_requests} to the identity provider (expected 1)"),
        ("cache", f"{result.cache} ({cache_note})"),
        (
            "auth overhead",
            f"{result.auth_overhead_us:.1f} µs per request "
            "(CPU time of PowerPlatformAuth.__call__, valid token in memory)",
        ),
    ]
    out = sys.stdout
    out.write(
        f"ppauth demo: {result.workers} processes x {result.calls_per_worker} API calls, each "
        "through a requests Session with PowerPlatformAuth\n"
    )
    out.write(
        f"  emulator        identity {result.emulator['identity']}, API {result.emulator['api']}\n"
    )
    out.write(
        f"  profile         {PROFILE} in {result.config} (isolated: your files are untouched)\n\n"
    )
    common.table(rows, indent="  ")
    out.write(
        f"\n{'OK' if result.ok else 'FAILED'}: {result.succeeded}/{result.calls} calls, "
        f"{result.token_requests} token request{'s' if result.token_requests != 1 else ''} "
        f"in {total:.1f} s.\n"
    )
