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

from collections.abc import Iterator
from typing import Any

import pytest

from requests_ppauth.cache.protocol import CacheBackend
from requests_ppauth.testing.cache_contract._entries import EntryTests
from requests_ppauth.testing.cache_contract._helpers import StartWorker
from requests_ppauth.testing.cache_contract._locks import LockAndThreadTests
from requests_ppauth.testing.cache_contract._processes import ProcessTests
from requests_ppauth.testing.cache_contract._worker import Worker

__all__ = ["CacheBackendContract"]


# -- the contract ------------------------------------------------------------------------
class CacheBackendContract(EntryTests, LockAndThreadTests, ProcessTests):
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
