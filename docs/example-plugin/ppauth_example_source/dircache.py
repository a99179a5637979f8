"""An example token cache backend: one JSON file per key in a directory.

``PowerPlatformAuth(cache="jsondir")``, ``PPAUTH_CACHE=jsondir`` or a profile's
``cache = { backend = "jsondir", directory = "~/tokens" }`` selects it. It shows
everything :class:`requests_ppauth.cache.CacheBackend` asks of a backend, using
only the public API of requests-ppauth:

- **get** reads one file per key asked (``<sha256 of the key>.json``): its cost does
  not depend on how many entries the directory holds.
- **apply** holds an exclusive ``flock`` on ``.lock`` for the batch, works out the new
  entries of the keys it touches with the reference :func:`~requests_ppauth.cache.
  apply_ops`, and replaces each file atomically (a 0600 temporary file, then
  ``os.replace``). A batch of several keys is first written whole to ``.journal``:
  a writer killed halfway leaves the journal, which the next writer (or reader)
  finishes before anything else, so no one ever sees half a batch.
- Readers hold the shared ``flock``: they never see a batch in progress. Both wait in
  the kernel, which wakes them the moment the lock is free; it is held for one batch
  (milliseconds), and a process that dies releases it.
- **Durability**: like the built-in file cache, no ``fsync``. A batch survives any
  crash of the process that wrote it; a power cut may lose the newest batches.
- **Pruning**: at most every :data:`SWEEP_EVERY` seconds, a writer drops the entries
  :func:`~requests_ppauth.cache.prunable` allows (an ``expires_on`` more than
  ``PRUNE_AFTER`` seconds past) and the temporary files of killed writers.
- **Key locks**: one ``filelock`` file per key in ``locks/``.
- Every failure of the store is raised as :class:`~requests_ppauth.CacheError`.

POSIX only (``fcntl``).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from requests_ppauth import CacheError
from requests_ppauth.cache import Entry, Op, apply_ops, default_cache_dir, prunable

SWEEP_EVERY = 300.0  # seconds between sweeps of long-expired entries
KEY_LOCK_POLL = 0.01


def _name(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


class JsonDirCache:
    """A :class:`~requests_ppauth.cache.CacheBackend` in ``directory``, shared by every
    process of the machine that uses the same directory."""

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory).expanduser()
        self._lock_file = self.directory / ".lock"
        self._journal = self.directory / ".journal"
        self._swept = self.directory / ".swept"
        self._locks = self.directory / "locks"

    @property
    def location(self) -> str:
        return str(self.directory)

    def __repr__(self) -> str:
        return f"JsonDirCache({str(self.directory)!r})"

    # pickling (worker processes get the backend this way) keeps only the directory
    def __getstate__(self) -> dict[str, Any]:
        return {"directory": str(self.directory)}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["directory"])  # type: ignore[misc]

    # -- reading -------------------------------------------------------------------
    def get(self, keys: Sequence[str]) -> dict[str, Entry]:
        """The entries at ``keys`` that exist: one file read per key."""
        if not keys:
            return {}
        with self._store(exclusive=False):
            found: dict[str, Entry] = {}
            for key in keys:
                entry = self._read(key)
                if entry is not None:
                    found[key] = entry
            return found

    def read_all(self) -> Mapping[str, Entry]:
        """Every entry (for listing and sign-out; never on the way to a token)."""
        with self._store(exclusive=False):
            found: dict[str, Entry] = {}
            for path in self.directory.glob("*.json"):
                record = self._load(path)
                if record is not None:
                    found[record[0]] = record[1]
            return found

    def _read(self, key: str) -> Entry | None:
        record = self._load(self.directory / (_name(key) + ".json"))
        return record[1] if record is not None and record[0] == key else None

    @staticmethod
    def _load(path: Path) -> tuple[str, Entry] | None:
        """``(key, entry)`` from one file; None when absent (or damaged: a cache can
        fetch a token again, it must not fail on a bad file)."""
        try:
            data = json.loads(path.read_bytes())
        except (FileNotFoundError, ValueError):
            return None
        if isinstance(data, dict) and isinstance(data.get("key"), str):
            entry = data.get("entry")
            if isinstance(entry, dict):
                return data["key"], entry
        return None

    # -- writing -------------------------------------------------------------------
    def apply(self, ops: Sequence[Op]) -> None:
        """``ops`` in order, atomically, under the directory's exclusive lock."""
        if not ops:
            return
        with self._store(exclusive=True):
            touched = list(dict.fromkeys(op.key for op in ops))
            state = {k: e for k in touched if (e := self._read(k)) is not None}
            apply_ops(state, ops)  # the reference semantics, on the touched keys only
            changes = {key: state.get(key) for key in touched}
            if len(changes) > 1:  # the commit point of a batch of several files
                self._write(self._journal, {"changes": changes})
            self._commit(changes)
            self._maybe_sweep()

    def _commit(self, changes: Mapping[str, Entry | None]) -> None:
        for key, entry in changes.items():
            path = self.directory / (_name(key) + ".json")
            if entry is None:
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
            else:
                self._write(path, {"key": key, "entry": entry})
        with contextlib.suppress(FileNotFoundError):
            self._journal.unlink()

    def _write(self, path: Path, data: Mapping[str, Any]) -> None:
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(json.dumps(data, separators=(",", ":")).encode())
        os.replace(tmp, path)

    def _recover(self) -> None:
        """Finish the batch of a writer killed after its journal (exclusive lock held)."""
        try:
            data = json.loads(self._journal.read_bytes())
        except FileNotFoundError:
            return
        except ValueError:
            data = None
        changes = data.get("changes") if isinstance(data, dict) else None
        if not isinstance(changes, dict):  # cannot happen (written atomically): drop it
            self._journal.unlink()
            return
        self._commit(changes)

    def _maybe_sweep(self) -> None:
        """Drop long-expired entries and dead writers' temporary files, at most every
        SWEEP_EVERY seconds (exclusive lock held, so no temporary file is in use)."""
        try:
            if time.time() - self._swept.stat().st_mtime < SWEEP_EVERY:
                return
        except FileNotFoundError:
            pass
        now = time.time()
        for path in self.directory.glob("*.json"):
            record = self._load(path)
            if record is not None and prunable(record[1], now):
                path.unlink()
        for path in self.directory.glob(".*.tmp"):
            path.unlink()
        self._swept.touch(mode=0o600)
        os.utime(self._swept, (now, now))

    # -- the directory's lock ------------------------------------------------------
    @contextlib.contextmanager
    def _store(self, *, exclusive: bool) -> Iterator[None]:
        """Hold the directory's lock (shared for readers); every OSError inside,
        reading and writing included, becomes a CacheError."""
        try:
            self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd = os.open(self._lock_file, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        except OSError as exc:
            raise CacheError(f"cannot use the token cache {self.directory}: {exc}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
            if self._journal.exists():  # a writer died mid-batch: finish it first
                if not exclusive:
                    fcntl.flock(fd, fcntl.LOCK_UN)
                    fcntl.flock(fd, fcntl.LOCK_EX)
                self._recover()
                if not exclusive:
                    fcntl.flock(fd, fcntl.LOCK_SH)  # flock converts the lock in place
            yield
        except CacheError:
            raise
        except OSError as exc:
            raise CacheError(f"token cache {self.directory}: {exc}") from None
        finally:
            os.close(fd)  # releases the flock

    # -- single-flight locks -------------------------------------------------------
    def key_lock(self, key: str, timeout: float) -> contextlib.AbstractContextManager[bool]:
        """Hold ``key``'s lock; yields False (holding nothing) once ``timeout`` passed."""
        return self._key_lock(key, max(timeout, 0.0))

    def try_key_lock(self, key: str) -> contextlib.AbstractContextManager[bool]:
        """Take ``key``'s lock only if it is free now."""
        return self._key_lock(key, None)

    @contextlib.contextmanager
    def _key_lock(self, key: str, timeout: float | None) -> Iterator[bool]:
        from filelock import FileLock, Timeout  # only processes that fetch need it

        try:
            self._locks.mkdir(mode=0o700, parents=True, exist_ok=True)
            lock = FileLock(self._locks / (_name(key) + ".lock"), mode=0o600)
            lock.acquire(
                timeout=timeout or 0, poll_interval=KEY_LOCK_POLL, blocking=timeout is not None
            )
        except Timeout:
            yield False
            return
        except OSError as exc:
            raise CacheError(f"cannot lock {key!r} in {self.directory}: {exc}") from None
        try:
            yield True
        finally:
            lock.release()


def make_jsondir_cache(options: Mapping[str, Any]) -> JsonDirCache:
    """The factory requests-ppauth calls with a profile's cache options:
    ``cache = { backend = "jsondir", directory = "..." }`` gives ``{"directory": "..."}``;
    a bare name (``cache = "jsondir"``, ``PPAUTH_CACHE=jsondir``) gives ``{}``."""
    unknown = sorted(set(options) - {"directory"})
    if unknown:
        raise ValueError(f"the jsondir cache takes only 'directory', not {unknown}")
    directory = options.get("directory")
    if directory is None:
        return JsonDirCache(default_cache_dir() / "jsondir")
    if not isinstance(directory, str) or not directory.strip():
        raise ValueError(f"directory must be a non-empty string, not {directory!r}")
    return JsonDirCache(directory)
