"""Real processes sharing the store: pickled copies, whole batches, no lost writes,
locks, one token request."""

from __future__ import annotations

import pickle
import threading
import time
from typing import Any

import pytest

from requests_ppauth.cache.protocol import CacheBackend, Entry, Op
from requests_ppauth.testing.cache_contract._helpers import (
    SCOPE,
    SLACK,
    StartWorker,
    _all,
    _expect_lock_refused,
    _get,
    _in_thread,
    _same,
    _timed_lock,
    _try_lock,
)
from requests_ppauth.testing.cache_contract._worker import digest
from requests_ppauth.testing.emulator import Emulator
from requests_ppauth.testing.pytest_plugin import PPAuthEnv


class ProcessTests:
    """Real processes sharing the store: pickled copies, whole batches, no lost writes,
    locks, one token request."""

    shared_across_processes: bool  # set by CacheBackendContract (and its subclasses)
    processes: int

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
        assert sample is not None, "ppauth_emulator: expected its sample app, got sample=None"
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
        early = emu.count("token")
        assert early == 0, f"token requests before the start signal: expected 0, got {early}"
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
        assert {got} == tokens, (
            "a fresh auth on the backend: expected the processes' token, got another one"
        )
        assert emu.count("token") == 1, (
            f"a fresh auth on the backend: expected no token request, got {emu.count('token') - 1}"
        )
