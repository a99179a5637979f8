"""ppauth demo: the main job in one command, against the built-in emulator.

Starts N worker processes and, while they import, the emulator of Entra ID and the
Power Platform API (in this process, on 127.0.0.1), with a profile of its own in a
temporary directory: your config file and token cache are never touched. When every
worker is ready, each makes M API calls through a requests Session with
PowerPlatformAuth; they share the token through the on-disk cache, so the identity
provider receives one token request for all of them.

The heading comes first; on a terminal (or with --progress) one line on stderr then
follows the work from the first worker's start: workers started, calls made, token
requests. The summary at the end gives the total time since the command started,
start-up included. The emulator, the profile and the cache are removed on exit
(--keep keeps the profile and the cache). --json prints the JSON report only.
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
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from requests_ppauth.cli import common, config_file
from requests_ppauth.cli.failures import CLIError

PROFILE = "demo"
SCOPE = "https://api.powerplatform.com/.default"
PATH = "/environmentmanagement/environments?api-version=2024-10-01"
READY_TIMEOUT = 60.0
OVERHEAD_CALLS = 5000
OVERHEAD_REPEATS = 7
REDRAW_INTERVAL = 0.1
TICK = 0.1  # how long a wait for a worker's message lasts before the line is redrawn


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
    calls_seconds: float = 0.0
    total_seconds: float = 0.0
    token_requests: int = 0
    discovery_requests: int = 0
    auth_overhead_us: float = 0.0
    kept: bool = False
    directory: str | None = None  # only when kept: otherwise it no longer exists
    config: str | None = None
    cache: str | None = None

    @property
    def ok(self) -> bool:
        """Every call succeeded with exactly one token request."""
        return self.failed == 0 and self.succeeded == self.calls and self.token_requests == 1

    def as_json(self) -> dict[str, Any]:
        """The JSON report (times rounded to the millisecond)."""
        data = {name: getattr(self, name) for name in self.__dataclass_fields__}
        for name in ("startup_seconds", "calls_seconds", "total_seconds"):
            data[name] = round(data[name], 3)
        data["auth_overhead_us"] = round(self.auth_overhead_us, 2)
        return {"ok": self.ok, **data}


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
        description=common.plain(__doc__),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--workers", type=_count, default=8, help="worker processes (default 8)")
    p.add_argument("--calls", type=_count, default=50, help="API calls per worker (default 50)")
    p.add_argument(
        "--progress", action="store_true", help="the live progress line even without a TTY"
    )
    p.add_argument("--keep", action="store_true", help="keep the temporary profile and token cache")
    p.add_argument("--json", action="store_true", help="print the report as JSON, and only that")
    p.set_defaults(func=run)


# -- time ---------------------------------------------------------------------------------


def _process_started() -> float:
    """``time.monotonic()`` when this ``ppauth`` process started (Linux: from /proc), so
    the total the demo reports includes the interpreter's start and the imports, as a
    stopwatch would; elsewhere, or when the demo runs inside another program, when this
    module was imported."""
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    if not (
        Path(sys.argv[0]).name == "ppauth"
        or (spec is not None and spec.name == "requests_ppauth.cli.__main__")
    ):
        return _IMPORTED
    try:
        with open("/proc/self/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
        with open("/proc/uptime") as fh:
            uptime = float(fh.read().split()[0])
        age = uptime - int(fields[19]) / os.sysconf("SC_CLK_TCK")  # field 22: starttime
    except (OSError, ValueError, IndexError):
        return _IMPORTED
    # /proc/uptime is CLOCK_BOOTTIME, monotonic() is not: use only the age, and only
    # when it is plausible (a suspended laptop makes the two clocks differ)
    return time.monotonic() - age if 0 <= age < 600 else _IMPORTED


_IMPORTED = time.monotonic()


# -- what the person watching sees -------------------------------------------------------


class Display:
    """The heading at once, then one live line on stderr: workers started, calls made,
    token requests, seconds since the command started.

    Live on a terminal or with ``--progress``; with ``--json`` (and no ``--progress``)
    or without a terminal, nothing but the report, so logs hold one summary.
    """

    def __init__(
        self, workers: int, calls: int, *, live: bool, started: float, out: TextIO | None
    ) -> None:
        self.workers = workers
        self.calls = calls
        self.live = live
        self.started = started
        self.out = out
        self.err = sys.stderr
        self.where = "with a temporary profile and token cache"
        self.workers_started = 0
        self.calls_made = 0
        self.token_requests: Callable[[], int] = lambda: 0
        self._drawn = 0.0
        self._width = 0

    def heading(self) -> None:
        """What the demo is and what it starts first: before anything is started."""
        if self.out is None:
            return
        plural = "es" if self.workers != 1 else ""
        self.out.write(
            f"ppauth demo: {self.workers} processes x {self.calls // self.workers} API calls, "
            "each through a requests Session with PowerPlatformAuth\n"
            f"starting {self.workers} worker process{plural} and the emulator (Entra ID and the "
            "Power Platform API, on 127.0.0.1)\n"
            f"{self.where}: your own files are not touched\n"
        )
        self.out.flush()

    def line(self) -> str:
        """``workers started 8/8, calls made 120/400, token requests 1, 3.4 s``."""
        return (
            f"workers started {self.workers_started}/{self.workers}, "
            f"calls made {self.calls_made}/{self.calls}, "
            f"token requests {self.token_requests()}, "
            f"{time.monotonic() - self.started:.1f} s"
        )

    def tick(self, *, force: bool = False) -> None:
        """Redraw the live line if it is due (at most ten times a second)."""
        now = time.monotonic()
        if not self.live or (not force and now - self._drawn < REDRAW_INTERVAL):
            return
        self._drawn = now
        text = self.line()
        self.err.write("\r" + text.ljust(self._width))
        self.err.flush()
        self._width = len(text)

    def clear(self) -> None:
        """Erase the live line: the summary that follows says it all, once."""
        if self.live and self._width:
            self.err.write("\r" + " " * self._width + "\r")
            self.err.flush()
            self._width = 0


# -- the run ------------------------------------------------------------------------------


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
    started = _process_started()
    common.reject_unused(
        args,
        "demo",
        uses=("verbose",),
        why="it runs against its own emulator, with a temporary profile and token cache",
    )
    live = bool(args.progress) or (not args.json and sys.stderr.isatty())
    calls = args.workers * args.calls
    display = Display(
        args.workers, calls, live=live, started=started, out=None if args.json else sys.stdout
    )
    if args.keep:
        display.where = "with a profile and token cache of its own, kept at the end (--keep)"
    display.heading()
    root = Path(tempfile.mkdtemp(prefix="ppauth-demo-"))
    result = Result(workers=args.workers, calls_per_worker=args.calls, calls=calls)
    try:
        with isolated_environment(root), Workers(args.workers, display) as workers:
            from requests_ppauth.testing import Emulator  # while the workers import

            with Emulator() as emu:
                display.token_requests = lambda: emu.count("token")
                write_profile(emu, root)
                url = emu.api_url + PATH
                hosts = {common.netloc(emu.api_url): SCOPE}
                workers.run((url, hosts, emu.ca_bundle, args.calls), result)
                display.tick(force=True)
                result.auth_overhead_us = measure_overhead(url, hosts)
                result.token_requests = emu.count("token")
                result.discovery_requests = emu.count("discovery")
                display.token_requests = lambda: result.token_requests
    finally:
        display.clear()
        if args.keep:
            result.kept = True
            result.directory = str(root)
            result.config = str(root / "config.toml")
            result.cache = str(root / "cache" / "cache.db")
        else:
            shutil.rmtree(root, ignore_errors=True)
    result.total_seconds = time.monotonic() - started
    report(result, args.json)
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

    def __init__(self, count: int, display: Display) -> None:
        import multiprocessing

        self.count = count
        self.display = display
        self.ctx = multiprocessing.get_context("spawn")
        self.jobs: Any = self.ctx.Queue()
        self.messages: Any = self.ctx.Queue()
        self.procs: list[Any] = []
        self._spawned = 0.0

    def __enter__(self) -> Workers:
        from requests_ppauth.cli import demo_worker

        self._spawned = time.monotonic()
        self.procs = [
            self.ctx.Process(
                target=demo_worker.work,
                args=(i, self.jobs, self.messages),
                name=f"ppauth-demo-{i}",
                daemon=True,
            )
            for i in range(self.count)
        ]
        try:
            for proc in self.procs:
                proc.start()
                self.display.tick()  # the line appears with the first worker
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        for _ in self.procs:
            self.jobs.put(None)  # workers still waiting for a job leave
        for proc in self.procs:
            if proc.pid is None:  # never started
                continue
            proc.join(timeout=10)
            if proc.is_alive():
                proc.kill()
                proc.join(timeout=10)

    def run(self, job: tuple[Any, ...], result: Result) -> None:
        """Hand every worker ``job`` at once; follow their calls; add up their summaries."""
        self._wait_ready()
        now = time.monotonic()
        result.startup_seconds = now - self.display.started
        for _ in self.procs:
            self.jobs.put(job)
        finished = self._follow(result.calls_per_worker)
        result.calls_seconds = time.monotonic() - now
        for ok, failed, error in finished.values():
            result.succeeded += ok
            result.failed += failed
            result.first_error = result.first_error or error

    def _wait_ready(self) -> None:
        display = self.display
        deadline = time.monotonic() + READY_TIMEOUT
        while display.workers_started < len(self.procs):
            display.tick()
            try:
                kind, *_ = self.messages.get(timeout=TICK)
            except queues.Empty:
                if time.monotonic() > deadline or all(not p.is_alive() for p in self.procs):
                    raise CLIError(
                        f"only {display.workers_started} of {len(self.procs)} worker "
                        "processes started",
                        "rerun with --verbose and fewer --workers",
                    ) from None
                continue
            display.workers_started += kind == "ready"
        display.tick(force=True)

    def _follow(self, calls: int) -> dict[int, tuple[int, int, str | None]]:
        display = self.display
        finished: dict[int, tuple[int, int, str | None]] = {}
        while len(finished) < len(self.procs):
            display.tick()
            try:
                message = self.messages.get(timeout=TICK)
            except queues.Empty:
                for i, proc in enumerate(self.procs):  # a worker that died without a summary
                    if i not in finished and proc.exitcode is not None:
                        finished[i] = (0, calls, f"worker {i} exited with status {proc.exitcode}")
                continue
            if message[0] == "call":
                display.calls_made += 1
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


def report(result: Result, as_json: bool) -> None:
    """The one summary, last: what was measured, and only what still exists."""
    if as_json:
        common.print_json(result.as_json())
        return
    rest = max(result.total_seconds - result.startup_seconds - result.calls_seconds, 0.0)
    if result.kept:
        left = (
            f"the profile and token cache in {result.directory} (--keep): "
            f"rm -r {result.directory} removes them"
        )
    else:
        left = "nothing: the emulator, profile and cache were temporary (--keep keeps them)"
    rows = [
        (
            "calls made",
            f"{result.calls} by {result.workers} processes: "
            f"{result.succeeded} succeeded, {result.failed} failed",
        ),
        (
            "token requests",
            f"{result.token_requests} to the identity provider (expected 1): "
            "shared through the on-disk cache",
        ),
        (
            "auth overhead",
            f"{result.auth_overhead_us:.1f} µs per request with a valid token in memory (CPU time)",
        ),
        (
            "time",
            f"{result.startup_seconds:.1f} s starting up, {result.calls_seconds:.1f} s of calls, "
            f"{rest:.1f} s measuring and cleaning up",
        ),
        ("left behind", left),
    ]
    out = sys.stdout
    out.write("\n")
    common.table(rows, indent="  ")
    calls = f"{result.succeeded}/{result.calls} calls"
    tokens = f"{result.token_requests} token request{'s' if result.token_requests != 1 else ''}"
    out.write(
        f"\n{'OK' if result.ok else 'FAILED'}: {calls}, {tokens}, "
        f"in {result.total_seconds:.1f} s (start-up included).\n"
    )
    out.flush()
