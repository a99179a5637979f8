"""The built-in cache backends pass the contract a third-party backend must pass."""

from __future__ import annotations

import pytest

from requests_ppauth.cache.file import FileCache
from requests_ppauth.cache.memory import MemoryCache
from requests_ppauth.testing.cache_contract import CacheBackendContract


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
