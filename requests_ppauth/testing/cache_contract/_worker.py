"""Child processes for :class:`~requests_ppauth.testing.cache_contract.CacheBackendContract`.

``python -m requests_ppauth.testing.cache_contract._worker MODE``. The parent writes
one JSON line to the child's stdin: the backend under test, pickled and base64
encoded (so the child holds its own unpickled copy, as a worker of a
``multiprocessing`` pool would), the parent's ``sys.path`` (so a backend class
defined beside the tests can be imported) and the mode's parameters. The child
builds everything, prints ``ready``, and blocks until the parent writes ``go``: a
barrier that releases every child at the same moment. It ends with one JSON line
on stdout (with ``kernel_flock``: whether requests-ppauth's own locks took the
kernel ``flock`` path here) and exit status 0; a failure is a traceback on stderr
and status 1.
Tokens never leave a child: only a short hash of them.

:class:`Worker` is the parent's side.
"""

from __future__ import annotations

import base64
import hashlib
import json
import pickle
import sys
import time
from collections.abc import Callable
from typing import Any

from requests_ppauth.cache.locks import kernel_flock
from requests_ppauth.cache.protocol import CacheBackend, Op
from requests_ppauth.testing._child import LineChild

MODULE = "requests_ppauth.testing.cache_contract._worker"


def digest(token: str) -> str:
    """A short hash of ``token``: enough to compare tokens, useless to anyone else."""
    return hashlib.sha256(token.encode()).hexdigest()[:16]


# -- parent side -------------------------------------------------------------------------
class Worker(LineChild):
    """A contract worker seen from the test; its setup goes to it on stdin."""

    def __init__(self, mode: str, backend: CacheBackend, params: dict[str, Any]) -> None:
        setup = {
            "backend": base64.b64encode(pickle.dumps(backend)).decode("ascii"),
            "path": [p for p in sys.path if p],
            "params": params,
        }
        self.mode = mode
        super().__init__([sys.executable, "-m", MODULE, mode], f"contract worker {mode!r}")
        try:
            self.send(json.dumps(setup))
        except BaseException:
            self.close()
            raise


# -- child side --------------------------------------------------------------------------
def _barrier() -> None:
    print("ready", flush=True)
    if sys.stdin.readline().strip() != "go":
        raise SystemExit("the parent went away before the start signal")


def write_pairs(backend: CacheBackend, params: dict[str, Any]) -> dict[str, Any]:
    """``batches`` batches, each putting the same counter at two keys (with padding,
    so that a batch is more than one small write)."""
    first, second, pad = params["keys"][0], params["keys"][1], "x" * params.get("pad", 0)
    _barrier()
    started = time.monotonic()
    for n in range(params["batches"]):
        backend.apply([Op(first, {"n": n, "pad": pad}), Op(second, {"n": n, "pad": pad})])
    return {"written": params["batches"], "seconds": time.monotonic() - started}


def write_keys(backend: CacheBackend, params: dict[str, Any]) -> dict[str, Any]:
    """``count`` batches, each putting one key of ours and patching our own field of
    the entry every writer shares."""
    prefix, shared = params["prefix"], params["shared"]
    _barrier()
    started = time.monotonic()
    for i in range(params["count"]):
        backend.apply(
            [
                Op(f"{prefix}-{i}", {"writer": prefix, "i": i}),
                Op(shared, fields={prefix: i}),
            ]
        )
    return {"written": params["count"], "seconds": time.monotonic() - started}


def hold_lock(backend: CacheBackend, params: dict[str, Any]) -> dict[str, Any]:
    """Take the key lock, say ``held``, keep it until the parent says ``release``."""
    _barrier()
    with backend.key_lock(params["key"], 10.0) as held:
        print("held" if held else "not-held", flush=True)
        sys.stdin.readline()
    print("released", flush=True)
    return {"held": held}


def token(backend: CacheBackend, params: dict[str, Any]) -> dict[str, Any]:
    """One token through :class:`PowerPlatformAuth` sharing ``backend``."""
    from requests_ppauth import ClientSecret, PowerPlatformAuth

    auth = PowerPlatformAuth(
        credential=ClientSecret(
            tenant_id=params["tenant_id"],
            client_id=params["client_id"],
            secret=params["client_secret"],
        ),
        authority_host=params["authority_host"],
        verify=params["ca_bundle"],
        cache=backend,
    )
    provider = auth.provider  # built now: the start signal finds every child ready
    _barrier()
    started = time.monotonic()
    got = provider.get(params["scope"])
    return {"token": digest(got.token), "seconds": time.monotonic() - started}


MODES: dict[str, Callable[[CacheBackend, dict[str, Any]], dict[str, Any]]] = {
    "write-pairs": write_pairs,
    "write-keys": write_keys,
    "hold-lock": hold_lock,
    "token": token,
}


def main() -> None:
    if len(sys.argv) != 2 or sys.argv[1] not in MODES:
        raise SystemExit(f"usage: python -m {MODULE} {{{','.join(MODES)}}}")
    setup = json.loads(sys.stdin.readline())
    sys.path.extend(p for p in setup["path"] if p not in sys.path)
    backend = pickle.loads(base64.b64decode(setup["backend"]))  # noqa: S301 - our parent's
    result = MODES[sys.argv[1]](backend, setup["params"])
    # which path requests_ppauth's own locks took here (PPAUTH_CACHE_LOCKS reaches
    # children through the environment): the file cache's tests check it
    result["kernel_flock"] = kernel_flock()
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
