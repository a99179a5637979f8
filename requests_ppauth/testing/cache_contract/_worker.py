"""Child processes for :class:`~requests_ppauth.testing.cache_contract.CacheBackendContract`.

``python -m requests_ppauth.testing.cache_contract._worker MODE``. The parent writes
one JSON line to the child's stdin: the backend under test, pickled and base64
encoded (so the child holds its own unpickled copy, as a worker of a
``multiprocessing`` pool would), the parent's ``sys.path`` (so a backend class
defined beside the tests can be imported) and the mode's parameters. The child
builds everything, prints ``ready``, and blocks until the parent writes ``go``: a
barrier that releases every child at the same moment. It ends with one JSON line
on stdout and exit status 0; a failure is a traceback on stderr and status 1.
Tokens never leave a child: only a short hash of them.

:class:`Worker` is the parent's side.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import pickle
import queue
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from typing import IO, Any

from requests_ppauth.cache.protocol import CacheBackend, Op

MODULE = "requests_ppauth.testing.cache_contract._worker"


def digest(token: str) -> str:
    """A short hash of ``token``: enough to compare tokens, useless to anyone else."""
    return hashlib.sha256(token.encode()).hexdigest()[:16]


# -- parent side -------------------------------------------------------------------------
class Worker:
    """A child process seen from the test: its stdout as a queue of lines, its stderr
    kept for the failure message. Every wait is bounded."""

    def __init__(self, mode: str, backend: CacheBackend, params: dict[str, Any]) -> None:
        setup = {
            "backend": base64.b64encode(pickle.dumps(backend)).decode("ascii"),
            "path": [p for p in sys.path if p],
            "params": params,
        }
        self.mode = mode
        self._stderr: IO[bytes] = tempfile.TemporaryFile()  # noqa: SIM115 - closed by close()
        self.proc = subprocess.Popen(  # noqa: S603 - this interpreter, our own module
            [sys.executable, "-m", MODULE, mode],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
        )
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._pump_thread = threading.Thread(target=self._pump, daemon=True)
        self._pump_thread.start()
        try:
            self.send(json.dumps(setup))
        except BaseException:
            self.close()
            raise

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._lines.put(line.rstrip("\n"))
        self._lines.put(None)

    def stderr(self) -> str:
        self._stderr.seek(0)
        return self._stderr.read().decode(errors="replace")[-4000:]

    def line(self, timeout: float = 60) -> str:
        """The next stdout line; AssertionError (with the child's stderr) if none comes."""
        try:
            item = self._lines.get(timeout=timeout)
        except queue.Empty:
            item = None
        if item is None:
            self.kill()
            raise AssertionError(
                f"contract worker {self.mode!r}: expected a line within {timeout} s, got "
                f"{'none' if self.proc.returncode is None else 'exit ' + str(self.proc.returncode)}"
                f"; its stderr:\n{self.stderr()}"
            )
        return item

    def expect(self, want: str, timeout: float = 60) -> None:
        got = self.line(timeout)
        assert got == want, (
            f"contract worker {self.mode!r}: expected {want!r}, got {got!r}; "
            f"its stderr:\n{self.stderr()}"
        )

    def send(self, text: str) -> None:
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(text + "\n")
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError) as exc:
            raise AssertionError(
                f"contract worker {self.mode!r} went away ({exc}); its stderr:\n{self.stderr()}"
            ) from None

    def ready(self, timeout: float = 60) -> None:
        self.expect("ready", timeout)

    def go(self) -> None:
        self.send("go")

    def result(self, timeout: float = 60) -> dict[str, Any]:
        """The JSON line the child ends with; it must then exit 0."""
        line = self.line(timeout)
        try:
            data: dict[str, Any] = json.loads(line)
        except ValueError:
            raise AssertionError(
                f"contract worker {self.mode!r}: expected a JSON result, got {line!r}; "
                f"its stderr:\n{self.stderr()}"
            ) from None
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            code = None
        assert code == 0, (
            f"contract worker {self.mode!r}: expected exit 0, got {code}; "
            f"its stderr:\n{self.stderr()}"
        )
        return data

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(30)

    def close(self) -> None:
        self.kill()
        self._pump_thread.join(10)  # it ends at EOF, so stdout can be closed under it
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()
        self._stderr.close()


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
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
