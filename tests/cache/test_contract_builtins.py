"""The built-in cache backends pass the contract a third-party backend must pass; the
file cache also on the lock path of platforms without ``fcntl``."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from typing import Any

import pytest

from requests_ppauth.cache import locks
from requests_ppauth.cache.file import FileCache
from requests_ppauth.cache.memory import MemoryCache
from requests_ppauth.cache.protocol import CacheBackend
from requests_ppauth.cache.seal import Sealer, generate_key, parse_keys
from requests_ppauth.testing.cache_contract import CacheBackendContract
from requests_ppauth.testing.cache_contract._worker import Worker


class TestFileCacheContract(CacheBackendContract):
    shared_across_processes = True

    @pytest.fixture
    def backend(self, tmp_path):
        return FileCache(tmp_path / "cache")

    def broken_backend(self, tmp_path):
        # permission bits do not stop root: a directory below a regular file stops anyone
        (tmp_path / "a-file").write_text("not a directory")
        return FileCache(tmp_path / "a-file" / "cache")


class TestSealedFileCacheContract(TestFileCacheContract):
    """The whole contract (its processes too) with ``PPAUTH_CACHE_KEY`` set: every
    entry sealed. The children get the key as they get the rest of their
    configuration, from the environment they inherit (a pickled FileCache carries
    the key's setting, not the key)."""

    @pytest.fixture(autouse=True)
    def _sealing(self, ppauth_env) -> str:
        key = generate_key()
        ppauth_env.set(PPAUTH_CACHE_KEY=key)
        return key

    @pytest.fixture
    def backend(self, tmp_path, _sealing):
        cache = FileCache(tmp_path / "cache")
        assert cache.sealer is not None
        yield cache
        # whatever the test (and its processes) wrote is sealed, under this key
        path = tmp_path / "cache" / "cache.db"
        if path.exists():
            conn = sqlite3.connect(path.as_uri() + "?mode=ro", uri=True)
            try:
                stored = [v for (v,) in conn.execute("SELECT value FROM entries")]
            finally:
                conn.close()
            key_id = bytes.fromhex(Sealer(parse_keys(_sealing, "key")).key_id)
            assert all(isinstance(v, bytes) and v[4:12] == key_id for v in stored)

    def test_a_worker_process_seals_with_the_key_it_inherits(
        self, backend, cache_contract_workers, tmp_path
    ):
        worker = cache_contract_workers(
            "write-pairs", backend, {"keys": ["p:a", "p:b"], "batches": 3}
        )
        worker.ready()
        worker.go()
        assert worker.result()["written"] == 3
        conn = sqlite3.connect((tmp_path / "cache" / "cache.db").as_uri() + "?mode=ro", uri=True)
        try:
            stored = dict(conn.execute("SELECT key, value FROM entries"))
        finally:
            conn.close()
        assert set(stored) == {"p:a", "p:b"}
        assert all(isinstance(v, bytes) and v[:4] == b"PPS\x01" for v in stored.values())
        assert backend.get(["p:a"]) == {"p:a": {"n": 2, "pad": ""}}


class TestMemoryCacheContract(CacheBackendContract):
    shared_across_processes = False

    @pytest.fixture
    def backend(self):
        return MemoryCache()


class FallbackWorker(Worker):
    """A contract worker that must have taken the filelock path."""

    def result(self, timeout: float = 60) -> dict[str, Any]:
        data = super().result(timeout)
        assert data["kernel_flock"] is False, (
            f"{self.name}: PPAUTH_CACHE_LOCKS=filelock did not reach the child: it took the "
            "kernel flock path"
        )
        return data


class TestFileCacheContractWithoutFcntl(TestFileCacheContract):
    """The whole contract (its processes too) with ``PPAUTH_CACHE_LOCKS=filelock``:
    the write lock and the key locks are filelock's, as where there is no ``fcntl``."""

    @pytest.fixture(autouse=True)
    def _filelock_locks(self, ppauth_env) -> None:
        ppauth_env.set(PPAUTH_CACHE_LOCKS="filelock")
        assert locks.kernel_flock() is False

    @pytest.fixture
    def cache_contract_workers(self) -> Iterator[Any]:
        started: list[Worker] = []

        def start(mode: str, backend: CacheBackend, params: dict[str, Any]) -> Worker:
            worker = FallbackWorker(mode, backend, params)
            started.append(worker)
            return worker

        yield start
        for worker in started:
            worker.close()
