"""The built-in cache backends pass the contract a third-party backend must pass; the
file cache also on the lock path of platforms without ``fcntl``."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from requests_ppauth.cache import locks
from requests_ppauth.cache.file import FileCache
from requests_ppauth.cache.memory import MemoryCache
from requests_ppauth.cache.protocol import CacheBackend
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
