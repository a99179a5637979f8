"""A kernel-blocking ``flock`` with a timeout: the file cache's write lock.

filelock waits by polling (``LOCK_NB`` and sleep). Measured here with 16 processes
committing to one cache file: p99 2.1 s, max 3.3 s, because pollers sleep through
releases and burn the two cores. A blocking ``flock`` is woken by the kernel the
moment the holder releases. The wait runs in a helper thread so it can be
bounded: on timeout the caller leaves, and the helper, should it still get the
lock, releases it at once. Lock files are never deleted (see ``cache``), and a
kernel lock dies with its process, so a killed holder never blocks anyone.

On platforms without ``fcntl`` (Windows) every lock is filelock's instead: it
polls, and it has no shared mode, so :func:`shared` is exclusive there. A polled
lock is not fair, and 16 processes writing in a loop left some waiting past the
10 s timeout (on a loaded machine): a process that releases it and asks again at
once takes it back before any waiter's next poll, and among waiters the first to
poll after a release wins, however long the others waited. So the write lock's
waiters poll faster the longer they have waited (from every 20 ms to every 2 ms:
the longest waiter is the likeliest to be first), and a process waits
:data:`HOLD_OFF` before taking again a lock it has just released. (The file
cache's key locks are filelock's everywhere: :func:`polled`.)

``PPAUTH_CACHE_LOCKS`` is a testing and diagnostic switch. ``filelock`` makes this
platform take that fallback path, as if ``fcntl`` were missing, so the test suite
runs the code Windows runs; ``flock`` or unset is the default (the kernel lock
where there is one); anything else is a ConfigurationError. On Linux filelock's
lock is itself an ``flock``, taken by polling, so processes with and without the
switch still exclude each other. What Windows adds beyond that path (filelock's
``LockFileEx`` lock, which unlinks its file on release; no ``O_NOFOLLOW``, no
owner check) is not covered by it. :func:`kernel_flock` says which path is taken.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Iterator, Mapping

LOCKS_ENV = "PPAUTH_CACHE_LOCKS"
_LOCKS_CHOICES = ("flock", "filelock")
# where filelock's lock is used: a waiter's pause between tries, from POLL_FIRST down
# to POLL_LAST as it waits (halved after POLL_AGE), and a releaser's before it tries again
POLL_FIRST, POLL_LAST, POLL_AGE = 0.020, 0.002, 0.050
HOLD_OFF = 0.005
_released: dict[str, float] = {}  # fallback lock path -> when this process released it


class LockTimeout(TimeoutError):  # noqa: N818 - reads like the builtin it extends
    """The lock was not acquired within the timeout."""


try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]


def kernel_flock(environ: Mapping[str, str] | None = None) -> bool:
    """Whether locks are this module's blocking ``flock`` (False: filelock's, as on a
    platform without ``fcntl``; see :data:`LOCKS_ENV` in the module docstring).
    Read on every lock, so a test's environment reaches the processes it starts."""
    env = os.environ if environ is None else environ
    choice = env.get(LOCKS_ENV, "").strip().lower()
    if choice not in ("", *_LOCKS_CHOICES):
        from requests_ppauth.errors import ConfigurationError

        raise ConfigurationError(
            f"{LOCKS_ENV}={env[LOCKS_ENV]!r} is not a lock mechanism: set it to 'filelock' "
            "(the fallback of platforms without fcntl, for tests) or 'flock', or unset it"
        )
    return fcntl is not None and choice != "filelock"


def _wait_blocking(fd: int, timeout: float, op: int) -> bool:
    """Block in the kernel for the lock on ``fd``'s open file description."""
    helper_fd = os.dup(fd)  # same open file description: the lock is shared with fd
    got = threading.Event()
    state = {"abandoned": False}
    guard = threading.Lock()

    def wait() -> None:
        try:
            fcntl.flock(helper_fd, op)
            with guard:
                if state["abandoned"]:
                    fcntl.flock(helper_fd, fcntl.LOCK_UN)
                else:
                    got.set()
        finally:
            os.close(helper_fd)

    threading.Thread(target=wait, name="ppauth-flock", daemon=True).start()
    if got.wait(timeout):
        return True
    with guard:
        if got.is_set():
            return True
        state["abandoned"] = True
    return False


@contextlib.contextmanager
def exclusive(path: str | os.PathLike[str], timeout: float) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (created 0600, never deleted)."""
    with _hold(path, timeout) as held:
        if not held:
            raise LockTimeout(f"timed out after {timeout} s waiting for {path}")
        yield


@contextlib.contextmanager
def shared(path: str | os.PathLike[str], timeout: float) -> Iterator[None]:
    """Hold a shared lock on ``path``: any number of holders, none while an exclusive
    one is held. Appenders to the cache's log share it; swapping the log excludes them."""
    with _hold(path, timeout, share=True) as held:
        if not held:
            raise LockTimeout(f"timed out after {timeout} s waiting for {path}")
        yield


def try_exclusive(path: str | os.PathLike[str]) -> contextlib.AbstractContextManager[bool]:
    """Take the lock on ``path`` only if it is free now; yields whether it was taken."""
    return _hold(path, None)


@contextlib.contextmanager
def _hold(
    path: str | os.PathLike[str], timeout: float | None, *, share: bool = False
) -> Iterator[bool]:
    """Yield whether the lock was taken; ``timeout=None`` does not wait at all."""
    if not kernel_flock():  # Windows, or the switch: filelock has no shared mode
        with _polled_fairly(path, timeout) as held:
            yield held
        return
    fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o600)
    op = fcntl.LOCK_SH if share else fcntl.LOCK_EX
    try:
        try:
            fcntl.flock(fd, op | fcntl.LOCK_NB)
        except BlockingIOError:
            if timeout is None or not _wait_blocking(fd, timeout, op):
                yield False
                return
        try:
            yield True
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _pause(waited: float) -> float:
    """A waiter's pause before its next try, shorter the longer it has waited."""
    return max(POLL_LAST, POLL_FIRST / (1 + waited / POLL_AGE))


@contextlib.contextmanager
def _polled_fairly(path: str | os.PathLike[str], timeout: float | None) -> Iterator[bool]:
    """filelock's lock on ``path`` (created 0600), taken by polling with the fairness
    of the module docstring; yields whether it was taken (``timeout=None``: one try)."""
    from filelock import FileLock, Timeout  # lazy: importing requests_ppauth must not

    name = os.fspath(path)
    lock = FileLock(name, timeout=0, mode=0o600)
    started = time.monotonic()
    if timeout is not None and (pause := _released.get(name, 0.0) + HOLD_OFF - started) > 0:
        time.sleep(pause)  # let the processes waiting for it try first
    while True:
        try:
            lock.acquire(blocking=False)
            break
        except Timeout:
            waited = time.monotonic() - started
            if timeout is None or waited >= timeout:
                yield False
                return
            time.sleep(min(_pause(waited), timeout - waited))
    try:
        yield True
    finally:
        lock.release()
        _released[name] = time.monotonic()


@contextlib.contextmanager
def polled(
    path: str | os.PathLike[str], timeout: float | None, poll: float = 0.05
) -> Iterator[bool]:
    """filelock's lock on ``path`` (created 0600); yields whether it was taken within
    ``timeout`` (None or 0: without waiting). It polls: fine for the cache's key
    locks, whose waits are for a token request (tens of milliseconds)."""
    from filelock import FileLock, Timeout  # lazy: importing requests_ppauth must not

    lock = FileLock(str(path), timeout=timeout or 0, mode=0o600, poll_interval=poll)
    try:
        lock.acquire(blocking=bool(timeout))
    except Timeout:
        yield False
        return
    try:
        yield True
    finally:
        lock.release()
