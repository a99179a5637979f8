"""Child processes for the cache tests: ``python tests/_cache_worker.py MODE ARGS...``.

With ``--wait`` a worker prints ``ready`` once it has imported and built everything,
then blocks until the parent writes a line to its stdin: a barrier that starts all
children at the same moment. Results are one JSON line on stdout.
Tokens never leave the child: only a short hash of them.

:class:`Child` is the parent's side: it starts a worker and reads its lines.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from pathlib import Path

from requests_ppauth.cache.locks import kernel_flock
from requests_ppauth.testing._child import LineChild

WORKER = str(Path(__file__).resolve())
PACKAGE_ROOT = str(Path(__file__).resolve().parent.parent)

BAP_PATH = (
    "/providers/Microsoft.BusinessAppPlatform/scopes/admin/environments?api-version=2020-10-01"
)
SCOPE = "https://service.powerapps.com//.default"


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()[:16]


def barrier(wait: bool) -> None:
    """With ``--wait``: say ``ready``, then block until the parent's start signal."""
    if not wait:
        return
    print("ready", flush=True)
    if not sys.stdin.readline():
        raise SystemExit("the parent went away before the start signal")


def park() -> None:
    """Hold whatever we hold until the parent kills us (or closes our stdin)."""
    sys.stdin.readline()


# -- parent side ------------------------------------------------------------------------
class Child(LineChild):
    """A worker process seen from the test (the shipped line protocol)."""

    def __init__(self, *args: str, umask: int = -1) -> None:
        env = dict(os.environ)  # the test's PPAUTH_* (set through monkeypatch)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (PACKAGE_ROOT, env.get("PYTHONPATH")) if p)
        super().__init__(
            [sys.executable, WORKER, *args], f"worker {list(args)}", env=env, umask=umask
        )


# -- child side ---------------------------------------------------------------------------
def get(args: argparse.Namespace) -> dict[str, object]:
    """One real API call through PowerPlatformAuth configured by the environment."""
    import requests

    from requests_ppauth import PowerPlatformAuth

    auth = PowerPlatformAuth(hosts={args.api_url.split("//")[1]: SCOPE})
    if args.lock_timeout is not None:
        auth.provider.lock_timeout = args.lock_timeout
    barrier(args.wait)
    started = time.monotonic()
    r = requests.get(args.api_url + BAP_PATH, auth=auth, verify=args.ca, timeout=60)
    sent = str(r.request.headers.get("Authorization", "")).removeprefix("Bearer ")
    return {
        "status": r.status_code,
        "token": digest(sent),
        "retried": len(r.history),
        "seconds": time.monotonic() - started,
        "msal_imported": "msal" in sys.modules,
        "kernel_flock": kernel_flock(),  # which lock path this process took
    }


def get_many(args: argparse.Namespace) -> dict[str, object]:
    """``n`` API calls ``pause`` s apart, each one's outcome: the status, or the
    TokenAcquisitionError's error, retry_after and message (which hold no secret)."""
    import requests

    from requests_ppauth import PowerPlatformAuth, TokenAcquisitionError

    auth = PowerPlatformAuth(hosts={args.api_url.split("//")[1]: SCOPE})
    if args.backoff_base is not None:
        auth.provider.backoff_base = args.backoff_base
    barrier(args.wait)
    calls: list[dict[str, object]] = []
    for _ in range(args.n):
        started = time.monotonic()
        outcome: dict[str, object]
        try:
            r = requests.get(args.api_url + BAP_PATH, auth=auth, verify=args.ca, timeout=60)
            outcome = {"status": r.status_code}
        except TokenAcquisitionError as exc:
            outcome = {
                "error": exc.error,
                "retryable": exc.retryable,
                "retry_after": exc.retry_after,
                "message": str(exc),
            }
        outcome["seconds"] = time.monotonic() - started
        calls.append(outcome)
        time.sleep(args.pause)
    return {"calls": calls}


def hold_key_lock(args: argparse.Namespace) -> None:
    from requests_ppauth.cache.file import FileCache

    with FileCache(args.dir).key_lock(args.key, timeout=10) as held:
        print("held" if held else "not-held", flush=True)
        park()


def hold_file_lock(args: argparse.Namespace) -> None:
    from requests_ppauth.cache.file import FileCache
    from requests_ppauth.cache.locks import exclusive

    cache = FileCache(args.dir)
    cache.prepare()
    with exclusive(cache._lock_path, 10):
        print("held", flush=True)
        park()


def write(args: argparse.Namespace) -> dict[str, object]:
    from requests_ppauth.cache import Op
    from requests_ppauth.cache.file import FileCache

    cache = FileCache(args.dir)
    cache.prepare()
    barrier(args.wait)
    started = time.monotonic()
    written = 0
    for i in range(args.n):
        if (
            args.seconds is not None
            and time.monotonic() - started > args.seconds
            and written >= args.min_writes  # on a loaded machine, keep going until then
        ):
            break
        key, value = f"{args.prefix}-{i}", {"v": i}
        ops = [Op(f"{args.section}:{key}", value)]
        if args.pad:  # bulk, in 8 slots: pages rewritten, the log grows and is checkpointed
            ops.append(Op(f"Pad:{args.prefix}-{i % 8}", {"pad": "x" * args.pad}))
        if args.twin:  # a second key with the same value, in the same batch
            ops.append(Op(f"{args.section}-twin:{key}", value))
        cache.apply(ops)
        written += 1
    return {
        "written": written,
        "seconds": time.monotonic() - started,
        "kernel_flock": kernel_flock(),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="mode", required=True)
    p = sub.add_parser("get")
    p.add_argument("api_url")
    p.add_argument("ca")
    p.add_argument("--wait", action="store_true")
    p.add_argument("--lock-timeout", type=float)
    p = sub.add_parser("get-many")
    p.add_argument("api_url")
    p.add_argument("ca")
    p.add_argument("n", type=int)
    p.add_argument("--pause", type=float, default=0.0)
    p.add_argument("--backoff-base", type=float)
    p.add_argument("--wait", action="store_true")
    p = sub.add_parser("hold-key-lock")
    p.add_argument("dir")
    p.add_argument("key")
    p = sub.add_parser("hold-file-lock")
    p.add_argument("dir")
    p = sub.add_parser("write")
    p.add_argument("dir")
    p.add_argument("section")
    p.add_argument("prefix")
    p.add_argument("n", type=int)
    p.add_argument("--wait", action="store_true")
    p.add_argument("--twin", action="store_true")
    p.add_argument("--pad", type=int, default=0)
    p.add_argument("--seconds", type=float)
    p.add_argument("--min-writes", type=int, default=0)
    args = parser.parse_args()

    if args.mode == "get":
        print(json.dumps(get(args)), flush=True)
    elif args.mode == "get-many":
        print(json.dumps(get_many(args)), flush=True)
    elif args.mode == "hold-key-lock":
        hold_key_lock(args)
    elif args.mode == "hold-file-lock":
        hold_file_lock(args)
    else:
        print(json.dumps(write(args)), flush=True)


if __name__ == "__main__":
    main()
