"""Key locks, threads writing and reading at once, and a failing store."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import pytest

from requests_ppauth.cache.protocol import CacheBackend, Entry, Op
from requests_ppauth.errors import CacheError
from requests_ppauth.testing.cache_contract._helpers import (
    SLACK,
    _all,
    _expect_lock_refused,
    _in_thread,
    _same,
    _timed_lock,
    _try_lock,
)


class LockAndThreadTests:
    """Key locks, threads writing and reading at once, and a failing store."""

    def broken_backend(self, tmp_path: Path) -> CacheBackend:
        """A backend whose store fails (unreachable, unwritable). Skip if not overridden."""
        pytest.skip("override broken_backend(tmp_path) to check that failures raise CacheError")

    # -- key locks ---------------------------------------------------------------------
    def test_a_held_key_lock_refuses_others(self, backend: CacheBackend) -> None:
        with backend.key_lock("at:lock", 5.0) as held:
            assert held is True, f"key_lock of a free key: expected True, got {held!r}"
            _expect_lock_refused(backend, "at:lock", "another thread")
        got = _in_thread(lambda: _try_lock(backend, "at:lock"), SLACK, "try_key_lock")
        assert got is True, f"try_key_lock once released: expected True, got {got}"
        held, _ = _in_thread(lambda: _timed_lock(backend, "at:lock", 1.0), 1 + SLACK, "key_lock")
        assert held is True, f"key_lock once released: expected True, got {held}"

    def test_try_key_lock_holds_the_lock(self, backend: CacheBackend) -> None:
        with backend.try_key_lock("at:lock") as held:
            assert held is True, f"try_key_lock of a free key: expected True, got {held!r}"
            _expect_lock_refused(backend, "at:lock", "try_key_lock in another thread")
        got = _in_thread(lambda: _try_lock(backend, "at:lock"), SLACK, "try_key_lock")
        assert got is True, f"try_key_lock once released: expected True, got {got}"

    def test_a_waiter_gets_the_key_lock_when_it_is_released(self, backend: CacheBackend) -> None:
        results: list[tuple[bool, float]] = []
        released = 0.0
        with backend.key_lock("at:lock", 5.0) as held:
            assert held is True, f"key_lock of a free key: expected True, got {held!r}"
            waiter = threading.Thread(
                target=lambda: results.append(_timed_lock(backend, "at:lock", 5 + SLACK)),
                daemon=True,
            )
            started = time.monotonic()
            waiter.start()
            time.sleep(0.3)
            released = time.monotonic() - started
        waiter.join(5 + SLACK)
        assert results, (
            "a waiter in key_lock(key, 8): expected it to return, got it still waiting "
            "(or raising: see the thread's traceback)"
        )
        (held, waited) = results[0]
        assert held is True, (
            f"a waiter in key_lock(key, 8) when the holder released after {released:.2f} s: "
            f"expected True, got {held} after {waited:.2f} s"
        )
        assert waited <= released + SLACK, (
            f"a waiter in key_lock: expected the lock soon after its release at "
            f"{released:.2f} s, got it at {waited:.2f} s"
        )

    def test_different_keys_do_not_block_each_other(self, backend: CacheBackend) -> None:
        with backend.key_lock("at:one", 5.0) as one:
            assert one is True, f"key_lock of a free key: expected True, got {one!r}"
            got = _in_thread(lambda: _try_lock(backend, "at:two"), SLACK, "try_key_lock")
            assert got is True, f"try_key_lock of another key: expected True, got {got}"
            held, waited = _in_thread(
                lambda: _timed_lock(backend, "msal:three", 5.0), 5 + SLACK, "key_lock"
            )
            assert held is True, f"key_lock of another key: expected True, got {held}"
            assert waited < SLACK, f"key_lock of another key: expected it at once, {waited:.2f} s"

    # -- threads -----------------------------------------------------------------------
    def test_threads_writing_together_lose_nothing(self, backend: CacheBackend) -> None:
        threads, count = 4, 40

        failed: list[BaseException] = []

        def write(t: str) -> None:
            try:
                for i in range(count):
                    ops = [Op(f"at:t{t}-{i}", {"t": t, "i": i}), Op("msal:s", fields={t: i})]
                    backend.apply(ops)
            except BaseException as exc:  # reported below
                failed.append(exc)

        workers = [
            threading.Thread(target=write, args=(str(t),), daemon=True) for t in range(threads)
        ]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(60)
        assert not any(w.is_alive() for w in workers), (
            "writer threads: expected them done within 60 s, got some still running"
        )
        assert not failed, f"a writer thread's apply: expected None, got {failed[0]!r}"
        want: dict[str, Entry] = {
            f"at:t{t}-{i}": {"t": str(t), "i": i} for t in range(threads) for i in range(count)
        }
        want["msal:s"] = {str(t): count - 1 for t in range(threads)}
        got = _all(backend)
        missing = sorted(set(want) - set(got))
        assert not missing, f"{threads} threads' writes: expected {len(want)} keys, {missing} lost"
        _same(got, want, f"read_all after {threads} threads wrote {count} batches each")

    def test_a_batch_is_seen_whole_by_other_threads(self, backend: CacheBackend) -> None:
        keys = [f"at:pair-{i}" for i in range(20)]
        stop, reading = threading.Event(), threading.Barrier(3)
        torn: list[dict[str, Any]] = []

        failed: list[BaseException] = []

        def read() -> None:
            reading.wait(SLACK)
            try:
                while not stop.is_set() and not torn:
                    got = backend.get(keys)
                    values = {e.get("n") for e in got.values()}
                    if len(got) not in (0, len(keys)) or len(values) > 1:
                        torn.append({k: e.get("n") for k, e in got.items()})
            except BaseException as exc:  # reported below
                failed.append(exc)

        switch = sys.getswitchinterval()
        sys.setswitchinterval(1e-5)  # switch threads often: mid-batch, if a batch has a middle
        readers = [threading.Thread(target=read, daemon=True) for _ in range(2)]
        try:
            for reader in readers:
                reader.start()
            reading.wait(SLACK)
            deadline, n = time.monotonic() + 0.5, 0
            while not torn and (n < 20 or time.monotonic() < deadline):
                backend.apply([Op(k, {"n": n}) for k in keys])
                n += 1
        finally:
            stop.set()
            for reader in readers:
                reader.join(10)
            sys.setswitchinterval(switch)
        assert not failed, f"a reader thread's get: expected entries, got {failed[0]!r}"
        assert not torn, (
            f"a reader during batches putting the same counter at {len(keys)} keys: expected "
            f"all of a batch or none of it, got {torn[0]}"
        )

    # -- failures ----------------------------------------------------------------------
    def test_a_failing_store_raises_cache_error(self, tmp_path: Path) -> None:
        broken = self.broken_backend(tmp_path)
        calls: list[tuple[str, Callable[[], Any]]] = [
            ("get", lambda: broken.get(["at:k"])),
            ("apply", lambda: broken.apply([Op("at:k", {"secret": "s"})])),
            ("read_all", lambda: broken.read_all()),
        ]
        for name, call in calls:
            try:
                got = call()
            except CacheError as exc:
                message = str(exc).strip()
            except Exception as exc:
                pytest.fail(
                    f"{name} on a failing store: expected CacheError, got {type(exc).__name__}: "
                    f"{exc} (the core reports anything but CacheError as a bug in the backend)"
                )
            else:
                pytest.fail(f"{name} on a failing store: expected CacheError, got {got!r}")
            assert message, (
                f"{name} on a failing store: expected a message, got an empty CacheError"
            )
        # a lock may live elsewhere than the data: it may work, but fails only as CacheError
        locks: list[tuple[str, Callable[[], AbstractContextManager[bool]]]] = [
            ("key_lock", lambda: broken.key_lock("at:k", 0.1)),
            ("try_key_lock", lambda: broken.try_key_lock("at:k")),
        ]
        for name, lock in locks:
            try:
                with lock() as held:
                    assert isinstance(held, bool), f"{name}: expected a bool, got {held!r}"
            except CacheError:
                pass
            except Exception as exc:
                pytest.fail(
                    f"{name} on a failing store: expected CacheError or a bool, got "
                    f"{type(exc).__name__}: {exc}"
                )
