"""Contract tests every token cache backend must pass.

A backend's whole test file can be a subclass (the pattern of keyring's
``BackendBasicTests``, and of :class:`~requests_ppauth.testing.contract.SourceContract`)::

    from requests_ppauth.testing.cache_contract import CacheBackendContract

    class TestMyBackend(CacheBackendContract):
        shared_across_processes = True        # False for a store of one process

        @pytest.fixture
        def backend(self, tmp_path):          # a fresh, empty backend
            return MyBackend(tmp_path / "cache")

        def broken_backend(self, tmp_path):   # optional: a backend whose store fails
            return MyBackend(tmp_path / "a-file" / "cache")

The contract checks what :class:`~requests_ppauth.cache.CacheBackend` promises, against
the reference semantics of :func:`~requests_ppauth.cache.apply_ops`: puts, deletes,
``if_secret`` deletes and field patches, batches applied in order and seen whole,
``read_all``, pruning that spares what it must, key locks (exclusive, bounded waits,
independent keys), ``location``, and :class:`~requests_ppauth.CacheError` from a
failing store. With ``shared_across_processes`` it also runs real processes, each
given the backend by pickle (so the class must be importable in a fresh
interpreter): batches seen whole from another process, concurrent writers that lose
nothing, a key lock that excludes another process, and cold processes started
together that make exactly one token request at the ``ppauth_emulator``.

Every wait is bounded; the whole contract takes a few seconds. Tune with the class
attributes :attr:`~CacheBackendContract.processes` and
:attr:`~CacheBackendContract.many_writes`.
"""

from __future__ import annotations

import pickle
import random
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import pytest

from requests_ppauth.cache.protocol import PRUNE_AFTER, CacheBackend, Entry, Op, apply_ops
from requests_ppauth.errors import CacheError
from requests_ppauth.testing._cache_contract_worker import Worker, digest
from requests_ppauth.testing.emulator import Emulator
from requests_ppauth.testing.pytest_plugin import PPAuthEnv

SCOPE = "https://service.powerapps.com//.default"
LOCK_WAIT = 0.2  # the short key_lock timeout the contract tries
SLACK = 3.0  # what a loaded machine may add to any bounded wait

StartWorker = Callable[[str, CacheBackend, dict[str, Any]], Worker]


# -- helpers -----------------------------------------------------------------------------
def _typed(value: Any) -> Any:
    """``value`` with every scalar tagged by its type: ``1``, ``1.0`` and ``True`` are
    equal in Python, not in JSON."""
    if isinstance(value, Mapping):
        return ("object", sorted((str(k), _typed(v)) for k, v in value.items()))
    if isinstance(value, list | tuple):
        return ("array", [_typed(v) for v in value])
    return (type(value).__name__, value)


def _same(got: Any, want: Any, what: str) -> None:
    assert _typed(got) == _typed(want), f"{what}: expected {want!r}, got {got!r}"


def _get(backend: CacheBackend, keys: Sequence[str]) -> dict[str, Entry]:
    found = backend.get(list(keys))
    assert isinstance(found, Mapping), (
        f"get({list(keys)[:3]}...) must return a dict of the entries found, got "
        f"{type(found).__name__}"
    )
    extra = sorted(set(found) - set(keys))
    assert not extra, f"get must return only keys asked for: asked {list(keys)}, got {extra} too"
    return dict(found)


def _all(backend: CacheBackend) -> dict[str, Entry]:
    found = backend.read_all()
    assert isinstance(found, Mapping), f"read_all must return a mapping, got {type(found)}"
    return dict(found)


def _in_thread(call: Callable[[], Any], timeout: float, what: str) -> Any:
    """``call()`` in another thread (another holder of locks); its result, or its
    exception, within ``timeout`` seconds."""
    box: list[tuple[bool, Any]] = []

    def run() -> None:
        try:
            box.append((True, call()))
        except BaseException as exc:  # re-raised in the test's thread
            box.append((False, exc))

    thread = threading.Thread(target=run, name="cache-contract", daemon=True)
    thread.start()
    thread.join(timeout)
    assert box, f"{what}: expected it to return within {timeout:.1f} s, it was still waiting"
    ok, value = box[0]
    if not ok:
        raise value
    return value


def _try_lock(backend: CacheBackend, key: str) -> bool:
    with backend.try_key_lock(key) as held:
        assert isinstance(held, bool), f"try_key_lock must yield a bool, got {held!r}"
        return held


def _timed_lock(backend: CacheBackend, key: str, timeout: float) -> tuple[bool, float]:
    started = time.monotonic()
    with backend.key_lock(key, timeout) as held:
        assert isinstance(held, bool), f"key_lock must yield a bool, got {held!r}"
        return held, time.monotonic() - started


def _expect_lock_refused(backend: CacheBackend, key: str, holder: str) -> None:
    """While ``holder`` holds ``key``: try_key_lock refuses, key_lock gives up in time."""
    got = _in_thread(lambda: _try_lock(backend, key), SLACK, "try_key_lock on a held key")
    assert got is False, f"try_key_lock while {holder} holds the key: expected False, got {got}"
    held, waited = _in_thread(
        lambda: _timed_lock(backend, key, LOCK_WAIT), LOCK_WAIT + SLACK, "key_lock(key, 0.2)"
    )
    assert held is False, f"key_lock(key, {LOCK_WAIT}) while {holder} holds it: expected False"
    assert LOCK_WAIT / 2 <= waited <= LOCK_WAIT + SLACK, (
        f"key_lock(key, {LOCK_WAIT}) while {holder} holds it: expected to give up after about "
        f"{LOCK_WAIT} s, gave up after {waited:.3f} s"
    )


def _random_batch(rng: random.Random, keys: Sequence[str], n: int) -> list[Op]:
    ops: list[Op] = []
    for _ in range(rng.randint(1, 4)):
        key = rng.choice(keys)
        kind = rng.randrange(5)
        if kind == 0:
            ops.append(Op(key, {"secret": rng.choice(["s1", "s2"]), "n": n, "f": n / 4}))
        elif kind == 1:
            ops.append(Op(key))
        elif kind == 2:
            ops.append(Op(key, if_secret=rng.choice(["s1", "s2", "S1", "s"])))
        else:
            fields = {
                name: (None if rng.random() < 0.4 else rng.choice([n, str(n), [n], {"n": n}]))
                for name in rng.sample(["secret", "a", "b", "c"], rng.randint(1, 3))
            }
            ops.append(Op(key, fields=fields))
    return ops


# -- the contract ------------------------------------------------------------------------
class CacheBackendContract:
    """Subclass and provide the ``backend`` fixture (a fresh, empty backend)."""

    #: whether the store is shared by every process using it (the file cache) or held
    #: by one process (the memory cache); False skips the tests with real processes
    shared_across_processes: bool = True
    #: how many processes the cross-process tests start together
    processes: int = 8
    #: writes after which entries that must survive pruning are checked (enough to
    #: reach a backend that sweeps every N writes)
    many_writes: int = 1000

    @pytest.fixture
    def backend(self) -> CacheBackend:
        raise NotImplementedError("provide a `backend` fixture returning a fresh, empty backend")

    def broken_backend(self, tmp_path: Path) -> CacheBackend:
        """A backend whose store fails (unreachable, unwritable). Skip if not overridden."""
        pytest.skip("override broken_backend(tmp_path) to check that failures raise CacheError")

    @pytest.fixture
    def cache_contract_workers(self) -> Iterator[StartWorker]:
        """``start(mode, backend, params)``: a child process (see the worker module);
        every one still running is killed at the end."""
        started: list[Worker] = []

        def start(mode: str, backend: CacheBackend, params: dict[str, Any]) -> Worker:
            worker = Worker(mode, backend, params)
            started.append(worker)
            return worker

        yield start
        for worker in started:
            worker.close()

    # -- the protocol --------------------------------------------------------------
    def test_satisfies_the_protocol(self, backend: CacheBackend) -> None:
        assert isinstance(backend, CacheBackend), (
            f"expected a CacheBackend (get, apply, read_all, key_lock, try_key_lock, "
            f"location), got {type(backend).__name__} without "
            f"{[m for m in dir(CacheBackend) if not m.startswith('_') and not hasattr(backend, m)]}"
        )
        location = backend.location
        assert isinstance(location, str), f"location: expected a str, got {location!r}"
        assert location.strip(), f"location: expected a non-empty str, got {location!r}"

    def test_location_and_repr_show_no_secret(self, backend: CacheBackend) -> None:
        secret = f"s3cr3t-{uuid.uuid4().hex}"
        backend.apply([Op("at:contract", {"secret": secret, "expires_on": time.time() + 3600})])
        for what, shown in (("location", backend.location), ("repr", repr(backend))):
            assert secret not in shown, f"{what}: expected no secret, got one in {shown!r}"

    def test_an_empty_backend_holds_nothing(self, backend: CacheBackend) -> None:
        _same(_get(backend, ["at:absent", "msal:absent"]), {}, "get on an empty backend")
        _same(_get(backend, []), {}, "get([])")
        _same(_all(backend), {}, "read_all on an empty backend")

    # -- put, get, delete ----------------------------------------------------------
    def test_put_then_get_round_trips_json_types(self, backend: CacheBackend) -> None:
        value: Entry = {
            "secret": "eyJ0eXAi.payload.signature",
            "expires_on": 1_900_000_000,
            "refresh_on": 1_899_999_000.5,
            "one": 1,
            "one_float": 1.0,
            "yes": True,
            "no": False,
            "nothing": None,
            "zero": 0,
            "negative": -7,
            "big": 2**62,
            "text": 'Grüße, 東京 \u2603 "quoted" \\ / \n\t',
            "empty": "",
            "list": [1, "two", 3.5, None, False, [], {}],
            "nested": {"a": {"b": [{"c": 1}]}, "empty": {}},
        }
        backend.apply([Op("at:round-trip", value)])
        _same(_get(backend, ["at:round-trip"]), {"at:round-trip": value}, "get after a put")
        _same(_all(backend), {"at:round-trip": value}, "read_all after a put")

    def test_get_returns_only_the_keys_asked_for_that_exist(self, backend: CacheBackend) -> None:
        backend.apply([Op(k, {"k": k}) for k in ("at:a", "at:b", "msal:c")])
        _same(
            _get(backend, ["at:a", "at:absent"]),
            {"at:a": {"k": "at:a"}},
            "get of one present and one absent key",
        )
        _same(_get(backend, ["msal:c"]), {"msal:c": {"k": "msal:c"}}, "get of one key")
        _same(_get(backend, ["at:absent"]), {}, "get of an absent key")
        _same(
            _get(backend, ["at:b", "at:b"]), {"at:b": {"k": "at:b"}}, "get of one key asked twice"
        )

    def test_get_many_keys(self, backend: CacheBackend) -> None:
        keys = [f"at:{i:04d}" for i in range(300)]
        backend.apply([Op(k, {"i": i}) for i, k in enumerate(keys)])
        asked = keys[::2] + [f"at:absent-{i}" for i in range(100)]
        want = {k: {"i": i} for i, k in enumerate(keys) if i % 2 == 0}
        _same(_get(backend, asked), want, f"get of {len(asked)} keys ({len(want)} present)")

    def test_keys_of_any_shape(self, backend: CacheBackend) -> None:
        keys = [
            "at:" + "0123456789abcdef" * 5,
            "msal:" + "f" * 40,
            "with spaces/and/slashes\\and:colons",
            "ключ-鍵-🔑",
            "x",
            "k" * 500,
            "..",
            "-",
            "NUL-free but 'quotes' and \"double\" and %s",
        ]
        backend.apply([Op(k, {"key": k}) for k in keys])
        _same(_get(backend, keys), {k: {"key": k} for k in keys}, "get of unusual keys")
        _same(_all(backend), {k: {"key": k} for k in keys}, "read_all of unusual keys")

    def test_put_replaces_the_whole_entry(self, backend: CacheBackend) -> None:
        backend.apply([Op("at:k", {"secret": "old", "a": 1, "b": 2})])
        backend.apply([Op("at:k", {"secret": "new", "c": 3})])
        _same(
            _get(backend, ["at:k"]),
            {"at:k": {"secret": "new", "c": 3}},
            "get after a second put (a put replaces, it does not merge)",
        )

    def test_delete(self, backend: CacheBackend) -> None:
        backend.apply([Op("at:k", {"secret": "s"}), Op("at:other", {"secret": "o"})])
        backend.apply([Op("at:k")])
        _same(_get(backend, ["at:k", "at:other"]), {"at:other": {"secret": "o"}}, "after delete")
        backend.apply([Op("at:k"), Op("at:never-there")])  # deleting what is absent: no-op
        _same(_all(backend), {"at:other": {"secret": "o"}}, "read_all after deleting absent keys")

    def test_if_secret_delete_removes_only_on_an_exact_match(self, backend: CacheBackend) -> None:
        backend.apply(
            [
                Op("at:k", {"secret": "token-1", "expires_on": 1_900_000_000}),
                Op("at:nosecret", {"value": "token-1"}),
                Op("msal:p", {"RefreshToken/x": {"secret": "token-1"}}),
            ]
        )
        for wrong in ("token-2", "TOKEN-1", "token-", "token-1 ", ""):
            backend.apply([Op("at:k", if_secret=wrong)])
            got = _get(backend, ["at:k"])
            assert "at:k" in got, (
                f"delete if_secret={wrong!r} of an entry whose secret is 'token-1': expected it "
                f"kept (exact string equality), got it deleted"
            )
        # only the entry's top-level "secret" field counts
        backend.apply([Op("at:nosecret", if_secret="token-1"), Op("msal:p", if_secret="token-1")])
        _same(
            sorted(_get(backend, ["at:nosecret", "msal:p"])),
            ["at:nosecret", "msal:p"],
            "keys left after if_secret deletes of entries without a top-level secret",
        )
        backend.apply([Op("at:absent", if_secret="token-1")])  # absent: no-op
        backend.apply([Op("at:k", if_secret="token-1")])
        _same(_get(backend, ["at:k", "at:absent"]), {}, "get after the matching if_secret delete")

    # -- patches -------------------------------------------------------------------
    def test_patch_sets_removes_and_creates_fields(self, backend: CacheBackend) -> None:
        backend.apply([Op("msal:p", fields={"a": 1, "b": {"x": 1}})])  # created if absent
        _same(_get(backend, ["msal:p"]), {"msal:p": {"a": 1, "b": {"x": 1}}}, "patch creating")
        backend.apply([Op("msal:p", fields={"b": {"y": 2}, "c": [3]})])
        _same(
            _get(backend, ["msal:p"]),
            {"msal:p": {"a": 1, "b": {"y": 2}, "c": [3]}},
            "patch setting fields (a field's value is replaced whole, not merged)",
        )
        backend.apply([Op("msal:p", fields={"a": None, "never-there": None})])
        _same(
            _get(backend, ["msal:p"]),
            {"msal:p": {"b": {"y": 2}, "c": [3]}},
            "patch removing a field (None) and an absent one",
        )
        backend.apply([Op("at:t", {"secret": "s", "expires_on": 1_900_000_000})])
        backend.apply([Op("at:t", fields={"refresh_on": 1_899_000_000})])
        _same(
            _get(backend, ["at:t"]),
            {"at:t": {"secret": "s", "expires_on": 1_900_000_000, "refresh_on": 1_899_000_000}},
            "patch of an entry that was put (its other fields stay)",
        )

    def test_a_patch_that_empties_an_entry_deletes_it(self, backend: CacheBackend) -> None:
        backend.apply([Op("msal:p", fields={"a": 1, "b": 2})])
        backend.apply([Op("msal:p", fields={"a": None, "b": None})])
        _same(_get(backend, ["msal:p"]), {}, "get after a patch removing every field")
        _same(_all(backend), {}, "read_all after a patch removing every field")
        backend.apply([Op("msal:q", fields={"a": None})])  # removing from nothing
        _same(_all(backend), {}, "read_all after a patch removing a field of an absent entry")

    def test_patches_of_different_fields_are_both_kept(self, backend: CacheBackend) -> None:
        backend.apply([Op("msal:p", fields={"RefreshToken/one": {"secret": "r1"}})])
        backend.apply([Op("msal:p", fields={"Account/two": {"home": "h2"}})])
        _same(
            _get(backend, ["msal:p"]),
            {"msal:p": {"RefreshToken/one": {"secret": "r1"}, "Account/two": {"home": "h2"}}},
            "get after two patches of different fields",
        )

    # -- batches ---------------------------------------------------------------------
    def test_a_batch_applies_in_order(self, backend: CacheBackend) -> None:
        backend.apply([Op("at:a", {"v": 1}), Op("at:a", {"v": 2})])
        backend.apply([Op("at:b", {"v": 1}), Op("at:b")])
        backend.apply([Op("at:c"), Op("at:c", {"v": 1})])
        backend.apply(
            [
                Op("msal:d", fields={"x": 1}),
                Op("msal:d", fields={"y": 2}),
                Op("msal:d", fields={"x": None}),
            ]
        )
        backend.apply([Op("at:e", {"secret": "s"}), Op("at:e", if_secret="s")])
        backend.apply([Op("at:f", {"secret": "s"}), Op("at:f", fields={"secret": "t"})])
        backend.apply([Op("at:f", if_secret="s")])  # its secret is t by now
        _same(
            _all(backend),
            {"at:a": {"v": 2}, "at:c": {"v": 1}, "msal:d": {"y": 2}, "at:f": {"secret": "t"}},
            "read_all after batches whose ops must apply in order",
        )

    def test_an_empty_batch_changes_nothing(self, backend: CacheBackend) -> None:
        backend.apply([Op("at:a", {"v": 1})])
        backend.apply([])
        _same(_all(backend), {"at:a": {"v": 1}}, "read_all after an empty batch")

    def test_random_batches_match_the_reference_semantics(self, backend: CacheBackend) -> None:
        rng = random.Random(20240611)  # reproducible op sequences
        keys = ["at:a", "at:b", "msal:c", "msal:d", "at:e"]
        model: dict[str, Entry] = {}
        for n in range(80):
            ops = _random_batch(rng, keys, n)
            backend.apply(ops)
            apply_ops(model, ops)
            _same(
                _get(backend, keys),
                model,
                f"get after batch {n} {[op.to_json() for op in ops]} (reference: apply_ops)",
            )
        _same(_all(backend), model, "read_all after 80 random batches (reference: apply_ops)")

    def test_read_all_sees_everything(self, backend: CacheBackend) -> None:
        model: dict[str, Entry] = {}
        for b in range(10):
            ops = [Op(f"at:{b}-{i}", {"b": b, "i": i}) for i in range(6)]
            ops += [Op(f"msal:{b}", fields={f"f{i}": i for i in range(3)})]
            if b:
                ops += [Op(f"at:{b - 1}-0"), Op(f"msal:{b - 1}", fields={"f0": None})]
            backend.apply(ops)
            apply_ops(model, ops)
        _same(_all(backend), model, "read_all after 10 batches of puts, deletes and patches")

    def test_an_entry_got_earlier_is_not_changed_by_later_writes(
        self, backend: CacheBackend
    ) -> None:
        backend.apply([Op("msal:p", fields={"a": 1}), Op("at:t", {"secret": "s"})])
        got = _get(backend, ["msal:p", "at:t"])
        backend.apply([Op("msal:p", fields={"a": None, "b": 2}), Op("at:t", {"secret": "u"})])
        _same(
            got,
            {"msal:p": {"a": 1}, "at:t": {"secret": "s"}},
            "entries got before a write (the caller's copies must not change under it)",
        )

    def test_entries_without_a_long_past_expiry_are_never_pruned(
        self, backend: CacheBackend
    ) -> None:
        now = time.time()
        keep: dict[str, Entry] = {
            "msal:partition": {"RefreshToken/x": {"secret": "r"}, "Account/y": {"h": 1}},
            "at:no-expiry": {"secret": "a"},
            "at:future": {"secret": "b", "expires_on": now + 3600},
            "at:recently-expired": {"secret": "c", "expires_on": now - PRUNE_AFTER / 2},
            "at:text-expiry": {"secret": "d", "expires_on": "0"},
            "at:bool-expiry": {"secret": "e", "expires_on": True},
            "at:null-expiry": {"secret": "f", "expires_on": None},
        }
        old: Entry = {"secret": "g", "expires_on": now - 10 * PRUNE_AFTER}
        backend.apply([*(Op(k, v) for k, v in keep.items()), Op("at:long-expired", old)])
        for n in range(self.many_writes):
            backend.apply([Op("at:churn", {"secret": str(n), "expires_on": now + 3600})])
        found = _get(backend, [*keep, "at:long-expired"])
        pruned = old if "at:long-expired" not in found else found.pop("at:long-expired")
        _same(pruned, old, "the long-expired entry (may be pruned, never changed)")
        _same(found, keep, f"entries that must survive pruning, after {self.many_writes} writes")

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
        assert not any(w.is_alive() for w in workers), "writer threads: still running after 60 s"
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

    # -- processes ---------------------------------------------------------------------
    def _need_processes(self, backend: CacheBackend) -> None:
        if not self.shared_across_processes:
            pytest.skip("the backend is process-local (shared_across_processes = False)")
        try:
            pickle.dumps(backend)
        except Exception as exc:
            pytest.fail(
                f"a shared backend must pickle (processes get it that way): expected bytes, got "
                f"{type(exc).__name__}: {exc}"
            )

    def test_a_pickled_copy_shares_the_store(self, backend: CacheBackend) -> None:
        self._need_processes(backend)
        copy = pickle.loads(pickle.dumps(backend))  # noqa: S301 - our own bytes
        assert isinstance(copy, CacheBackend), f"unpickled: expected a CacheBackend, got {copy!r}"
        _same(copy.location, backend.location, "the location of a pickled copy")
        backend.apply([Op("at:k", {"v": 1})])
        _same(_get(copy, ["at:k"]), {"at:k": {"v": 1}}, "the copy's get after the original's put")
        copy.apply([Op("at:k", {"v": 2}), Op("msal:p", fields={"a": 1})])
        _same(
            _get(backend, ["at:k", "msal:p"]),
            {"at:k": {"v": 2}, "msal:p": {"a": 1}},
            "the original's get after the copy's batch (visible when apply returns)",
        )
        with copy.key_lock("at:k", 5.0) as held:
            assert held is True, f"key_lock of a free key: expected True, got {held!r}"
            _expect_lock_refused(backend, "at:k", "a pickled copy")

    def test_a_batch_is_seen_whole_by_another_process(
        self, backend: CacheBackend, cache_contract_workers: StartWorker
    ) -> None:
        self._need_processes(backend)
        keys, batches = ["at:pair-a", "msal:pair-b"], 300
        writer = cache_contract_workers(
            "write-pairs", backend, {"keys": keys, "batches": batches, "pad": 500}
        )
        writer.ready()
        stop = threading.Event()
        torn: list[dict[str, Any]] = []
        seen: set[Any] = set()

        failed: list[BaseException] = []

        def read(listing: bool) -> None:
            try:
                while not stop.is_set() and not torn:
                    got = (
                        {k: v for k, v in backend.read_all().items() if k in keys}
                        if listing
                        else backend.get(keys)
                    )
                    values = {e.get("n") for e in got.values()}
                    seen.update(values)
                    if len(got) not in (0, 2) or len(values) > 1:
                        torn.append({k: e.get("n") for k, e in got.items()})
                    time.sleep(0.0002)
            except BaseException as exc:  # reported below
                failed.append(exc)

        readers = [threading.Thread(target=read, args=(n == 0,), daemon=True) for n in range(3)]
        for reader in readers:
            reader.start()
        try:
            writer.go()
            writer.result()
        finally:
            stop.set()
            for reader in readers:
                reader.join(10)
        assert not failed, f"a reader thread here: expected entries, got {failed[0]!r}"
        assert not torn, (
            f"readers here while another process applied batches putting the same counter at "
            f"{keys}: expected both or neither, always equal; got {torn[0]}"
        )
        _same(
            {k: v["n"] for k, v in _get(backend, keys).items()},
            dict.fromkeys(keys, batches - 1),
            "the counters after the writer process ended",
        )
        assert seen - {batches - 1}, (
            f"the readers were to overlap the writer: expected to see counters before "
            f"{batches - 1}, saw only {sorted(seen)}"
        )

    def test_processes_writing_together_lose_nothing(
        self, backend: CacheBackend, cache_contract_workers: StartWorker
    ) -> None:
        self._need_processes(backend)
        count, shared = 50, "msal:shared"
        writers = [
            cache_contract_workers(
                "write-keys", backend, {"prefix": f"at:w{n}", "count": count, "shared": shared}
            )
            for n in range(self.processes)
        ]
        for writer in writers:
            writer.ready()
        for writer in writers:
            writer.go()
        for writer in writers:
            writer.result(timeout=120)
        want: dict[str, Entry] = {
            f"at:w{n}-{i}": {"writer": f"at:w{n}", "i": i}
            for n in range(self.processes)
            for i in range(count)
        }
        want[shared] = {f"at:w{n}": count - 1 for n in range(self.processes)}
        got = _get(backend, list(want))
        missing = sorted(set(want) - set(got))
        assert not missing, (
            f"{self.processes} processes x {count} batches: expected {len(want)} keys, "
            f"{len(missing)} lost, e.g. {missing[:5]}"
        )
        _same(
            got[shared],
            want[shared],
            f"the entry whose own field each of {self.processes} processes patched",
        )
        _same(got, want, f"get after {self.processes} processes wrote {count} batches each")
        _same(_all(backend), want, "read_all after the writer processes")

    def test_a_key_lock_held_by_another_process_refuses_this_one(
        self, backend: CacheBackend, cache_contract_workers: StartWorker
    ) -> None:
        self._need_processes(backend)
        holder = cache_contract_workers("hold-lock", backend, {"key": "at:lock"})
        holder.ready()
        holder.go()
        holder.expect("held")
        try:
            _expect_lock_refused(backend, "at:lock", "another process")
            got = _in_thread(lambda: _try_lock(backend, "at:other"), SLACK, "try_key_lock")
            assert got is True, f"try_key_lock of another key: expected True, got {got}"
        finally:
            holder.send("release")
        holder.expect("released")
        holder.result()
        held, _ = _in_thread(lambda: _timed_lock(backend, "at:lock", 5.0), 5 + SLACK, "key_lock")
        assert held is True, f"key_lock once the other process released: expected True, got {held}"

    def test_cold_processes_started_together_make_one_token_request(
        self,
        backend: CacheBackend,
        cache_contract_workers: StartWorker,
        ppauth_emulator: Emulator,
        ppauth_env: PPAuthEnv,
    ) -> None:
        self._need_processes(backend)
        from requests_ppauth import ClientSecret, PowerPlatformAuth

        emu, sample = ppauth_emulator, ppauth_emulator.sample
        assert sample is not None
        params = {
            "tenant_id": sample.tenant_id,
            "client_id": sample.client_id,
            "client_secret": sample.client_secret,
            "authority_host": emu.authority_host,
            "ca_bundle": emu.ca_bundle,
            "scope": SCOPE,
        }
        children = [cache_contract_workers("token", backend, params) for _ in range(self.processes)]
        for child in children:
            child.ready()
        assert emu.count("token") == 0, "token requests before the start signal"
        for child in children:
            child.go()
        results = [child.result(timeout=120) for child in children]
        requests_made = emu.count("token")
        assert requests_made == 1, (
            f"{self.processes} cold processes sharing the backend, started together: expected "
            f"1 token request (single-flight through key_lock and get), got {requests_made}"
        )
        tokens = {r["token"] for r in results}
        assert len(tokens) == 1, f"expected one token for all processes, got {len(tokens)}"
        # and the backend holds it: a fresh auth here finds it without asking again
        auth = PowerPlatformAuth(
            credential=ClientSecret(
                tenant_id=sample.tenant_id, client_id=sample.client_id, secret=sample.client_secret
            ),
            authority_host=emu.authority_host,
            verify=emu.ca_bundle,
            cache=backend,
        )
        got = digest(auth.provider.get(SCOPE).token)
        assert {got} == tokens, "a fresh auth on the backend: expected the processes' token"
        assert emu.count("token") == 1, (
            f"a fresh auth on the backend: expected no token request, got {emu.count('token') - 1}"
        )
