"""Entries: the protocol, puts, gets, deletes, patches, batches and pruning."""

from __future__ import annotations

import random
import time
import uuid

from requests_ppauth.cache.protocol import PRUNE_AFTER, CacheBackend, Entry, Op, apply_ops
from requests_ppauth.testing.cache_contract._helpers import (
    _all,
    _get,
    _random_batch,
    _same,
)


class EntryTests:
    """Entries: the protocol, puts, gets, deletes, patches, batches and pruning."""

    many_writes: int  # set by CacheBackendContract (and its subclasses)

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
            assert secret not in shown, (
                f"{what}: expected no secret, got one in {shown.replace(secret, '***')!r}"
            )

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
