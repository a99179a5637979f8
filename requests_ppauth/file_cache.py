"""The built-in token cache, on disk: a snapshot in msal's ``SerializableTokenCache`` schema and a
write-ahead log of the changes made since.

Why not msal-extensions' ``PersistedTokenCache`` (see PITFALLS): it locks only
file I/O (no single-flight), reads without capturing what it read (a torn read
wipes the cache), truncates in place, polls a lock every 0.25 s, leaves stale
lock files, and throws away a fetched token when its lock times out.

Why a log and not one file rewritten per write: a rewrite costs a parse, a dump
and an fsync of the *whole* cache, so with 16 processes writing at once the p99
write took 76-81 ms on a 2-core machine (a 500 kB cache). Appending a record and
``fdatasync`` costs the same whatever the cache holds. Here:

- **A write** is one ``O_APPEND`` write of a checksummed line to
  ``tokens.json.log`` (see :mod:`requests_ppauth._wal`), then ``fdatasync``.
  Writers share a lock (``flock(LOCK_SH)``) that only a log swap excludes: they do
  not wait for each other. One write per token response, all its changes in it.
- **The snapshot** ``tokens.json`` holds msal's sections and ours, and names the
  log and the offset it has folded in. Once the log is longer than both
  :data:`LOG_MAX` and the snapshot (so folding costs O(1) per byte logged), one
  writer *compacts*: the new snapshot goes to a temp file (0600), fsync,
  ``os.replace``; then, holding the lock exclusively for a few milliseconds, the
  records after what it folded are carried over into a new log. Readers never see
  a torn snapshot, and they take no lock.
- **A reader** keeps the parsed snapshot and applies only the log lines it has not
  seen; it re-reads the snapshot only when its (mtime_ns, size, inode) changed.
- **Ordering**: every change is a record at one place in one log, and readers
  apply records in log order, so concurrent writers of different keys never lose
  each other's entries, and a conditional delete sees exactly the writes before it.
- **Locks** are kernel ``flock`` locks on files never deleted: they die with their
  process, so there are no stale locks. A killed writer leaves at worst a torn
  line, which fails its checksum and is skipped.
- **An unparsable snapshot** is moved aside (kept for inspection), reported once,
  and treated as empty; a log that does not belong to the snapshot is moved aside
  by the next write, reported the same way. Neither is merged into the good state.
- **Safety**: the directory is 0700 and files 0600 from creation; a cache owned by
  another user, group/other-accessible, or a symlink is refused with a clear error.

``tokens.json`` alone is the state as of the last compaction; :meth:`FileCache.read`
(and ``ppauth cache list``) add the log.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import json
import logging
import os
import re
import stat
import threading
import time
import uuid
import warnings
import weakref
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from requests_ppauth import _wal
from requests_ppauth.cache import OUR_SECTION, CacheWarning, Op, apply_ops, default_cache_dir, prune
from requests_ppauth.errors import CacheError

log = logging.getLogger("requests_ppauth.cache")

CACHE_FILE = "tokens.json"
LOG_SECTION = "PPAuthLog"  # in the snapshot: {"log": id, "offset": folded up to}
LEGACY_SECTIONS = ("PPAuthCommits", "PPAuthJournal")  # bookkeeping of the 0.x journal
LEGACY_FILES = (CACHE_FILE + ".journal", CACHE_FILE + ".committed")  # its tokens: removed
FILE_LOCK_TIMEOUT = 10.0  # the log lock is held exclusively for milliseconds
KEY_LOCK_POLL = 0.005
LOG_MAX = 256 * 1024  # compact once the log is this long (and longer than the snapshot)
MISMATCH_RETRIES = 5  # a log that is not the snapshot's may be a swap under way
_POINTER = re.compile(rb'\{"%s":\{"log":"([0-9a-f]{32})","offset":(\d+)\}' % LOG_SECTION.encode())


def _signature(st: os.stat_result) -> tuple[int, int, int]:
    return (st.st_mtime_ns, st.st_size, st.st_ino)


def _check_owner_and_mode(path: Path, st: os.stat_result, what: str, fix: str) -> None:
    if hasattr(os, "geteuid") and st.st_uid != os.geteuid():
        raise CacheError(
            f"{what} {path} belongs to another user (uid {st.st_uid}); refusing to use it. "
            "Set PPAUTH_CACHE_DIR to a directory of your own."
        )
    if stat.S_IMODE(st.st_mode) & 0o077:
        raise CacheError(
            f"{what} {path} is accessible to other users (mode {stat.S_IMODE(st.st_mode):o}); "
            f"refusing to keep tokens there: run `{fix}`"
        )


def _peek(path: Path) -> tuple[int, int, int] | None:
    try:
        return _signature(os.lstat(path))
    except FileNotFoundError:
        return None


def _parse_snapshot(raw: bytes) -> dict[str, Any] | None:
    """The snapshot's sections, or None if it is not a JSON object of objects."""
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return None
    if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
        return None
    return data


@dataclass(frozen=True)
class _View:
    """What one process knows of the cache: the snapshot it parsed, how far into which
    log it has applied records, and the resulting state (never mutated once built)."""

    state: dict[str, Any]
    base: dict[str, Any]  # the snapshot's state alone
    snap_sig: tuple[int, int, int] | None  # of the snapshot parsed (None: there was none)
    pointer: tuple[str, int] | None  # the snapshot's log id and offset folded in
    log_path: Path | None = None  # the log followed: the log, or a swap's ``.next``
    log_ino: int | None = None
    log_pos: int = 0  # records applied up to here
    log_sig: tuple[int, int, int] | None = None  # of the log path when last looked at
    live: bool = False  # whether writes to the log path reach readers of the snapshot


def _with_records(state: dict[str, Any], payloads: Sequence[Any]) -> dict[str, Any]:
    """``state`` with the log records ``payloads`` applied: a new dict when anything
    changed (callers compare states by identity), sharing untouched sections."""
    batches = []
    for payload in payloads:
        if not isinstance(payload, dict) or not isinstance(payload.get("ops"), list):
            continue  # a header, or a record of some other writer version
        try:
            batches.append([Op.from_json(o) for o in payload["ops"]])
        except ValueError:
            continue
    if not batches:
        return state
    new = dict(state)
    for name in {op.section for ops in batches for op in ops}:
        new[name] = dict(state.get(name, {}))
    for ops in batches:
        apply_ops(new, ops)
    return new


_caches: weakref.WeakSet[FileCache] = weakref.WeakSet()


def _after_fork() -> None:
    # a thread of the parent may have held a cache's mutex at the fork: in the child
    # nobody would ever release it
    for cache in list(_caches):
        cache._mutex = threading.RLock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork)


class FileCache:
    """:class:`CacheBackend` on a directory of this machine (see the module docstring)."""

    def __init__(self, directory: str | os.PathLike[str] | None = None) -> None:
        self.directory = Path(directory) if directory is not None else default_cache_dir()
        self.path = self.directory / CACHE_FILE
        self.log_path = self.directory / (CACHE_FILE + ".log")
        self._next_path = self.directory / (CACHE_FILE + ".log.next")
        self._lock_path = self.directory / (CACHE_FILE + ".lock")
        self._compact_lock_path = self.directory / (CACHE_FILE + ".compact.lock")
        self._mutex = threading.RLock()
        self._view: _View | None = None
        self._prepared = False
        self._warned_corrupt = False
        _caches.add(self)

    @property
    def location(self) -> str:
        return str(self.path)

    def __repr__(self) -> str:
        return f"FileCache({str(self.directory)!r})"

    def __getstate__(self) -> dict[str, Any]:
        return {"directory": self.directory}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["directory"])  # type: ignore[misc]

    # -- setup ---------------------------------------------------------------------
    def prepare(self) -> None:
        """Create the directory 0700 (and its lock folder) or check an existing one;
        start an empty cache there if there is none, so that first writes are appends."""
        if self._prepared:
            return
        try:
            self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            st = os.lstat(self.directory)
        except OSError as exc:
            raise CacheError(
                f"cannot create the token cache directory {self.directory}: {exc.strerror}"
            ) from None
        if stat.S_ISLNK(st.st_mode):
            st = os.stat(self.directory)
        _check_owner_and_mode(
            self.directory, st, "token cache directory", f"chmod 700 {self.directory}"
        )
        (self.directory / "locks").mkdir(mode=0o700, exist_ok=True)
        self._sweep_temp_files()
        self._prepared = True
        if _peek(self.path) is None and _peek(self.log_path) is None:
            self._compact("repair")

    def _sweep_temp_files(self) -> None:
        """Remove temp files left by writers killed mid-write (their pid is gone)."""
        for tmp in self.directory.glob(f".{CACHE_FILE}.*.tmp"):
            try:
                pid = int(tmp.name.split(".")[3])
            except (IndexError, ValueError):
                continue
            if pid == os.getpid():
                continue
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                with contextlib.suppress(OSError):
                    tmp.unlink()
            except PermissionError:
                pass  # alive, someone else's

    def _lock(self, path: Path, timeout: float, poll: float) -> Any:
        from filelock import FileLock  # lazy: importing requests_ppauth must not

        return FileLock(str(path), timeout=timeout, mode=0o600, poll_interval=poll)

    def _file_lock(self) -> contextlib.AbstractContextManager[None]:
        """The log lock, exclusively: no write is under way while it is held."""
        from requests_ppauth._flock import exclusive

        return exclusive(self._lock_path, FILE_LOCK_TIMEOUT)

    def _shared_lock(self) -> contextlib.AbstractContextManager[None]:
        from requests_ppauth._flock import shared

        return shared(self._lock_path, FILE_LOCK_TIMEOUT)

    # -- opening files safely ----------------------------------------------------------
    def _open_checked(self, path: Path, what: str, flags: int = os.O_RDONLY) -> int | None:
        """A descriptor on ``path``, or None if there is none. Never follows links."""
        try:
            fd = os.open(path, flags | getattr(os, "O_NOFOLLOW", 0))
        except FileNotFoundError:
            return None
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise CacheError(
                    f"{what} {path} is a symbolic link; requests-ppauth does not follow "
                    "links for token files. Remove it, or point PPAUTH_CACHE_DIR at the "
                    "real directory."
                ) from None
            raise CacheError(f"cannot open {what} {path}: {exc.strerror}") from None
        try:
            _check_owner_and_mode(path, os.fstat(fd), what, f"chmod 600 {path}")
        except CacheError:
            os.close(fd)
            raise
        return fd

    # -- reading -------------------------------------------------------------------
    def read(self) -> Mapping[str, Any]:
        """The current state: snapshot plus log. Reads only what changed; no lock."""
        self.prepare()
        return self._refresh().state

    def _refresh(self) -> _View:
        """Bring this process's view up to date with the files."""
        with self._mutex:
            view = self._view
            for attempt in range(MISMATCH_RETRIES):
                snap_sig, log_sig = _peek(self.path), _peek(self.log_path)
                if view is not None and view.snap_sig == snap_sig and view.log_sig == log_sig:
                    break
                if view is None or view.snap_sig != snap_sig:
                    view = self._load_snapshot()
                followed = self._follow_log(view, log_sig)
                if followed is not None:
                    view = followed
                    break
                # the log is not the snapshot's: maybe a compaction between its two
                # renames, or the snapshot we parsed was replaced since; look again
                time.sleep(0.001 * (attempt + 1))
            else:
                # still not the snapshot's log: serve the snapshot, and let the next
                # write move that log aside (see _compact)
                assert view is not None
                view = dataclasses.replace(
                    view, log_sig=log_sig, live=False, log_path=None, log_ino=None
                )
            self._view = view
            return view

    def _load_snapshot(self) -> _View:
        fd = self._open_checked(self.path, "token cache file")
        if fd is None:
            return _View(state={}, base={}, snap_sig=None, pointer=None)
        with os.fdopen(fd, "rb") as fh:
            sig = _signature(os.fstat(fh.fileno()))
            raw = fh.read()
        data = _parse_snapshot(raw)
        if data is None:
            self._quarantine(sig)
            return _View(state={}, base={}, snap_sig=None, pointer=None)
        pointer = data.pop(LOG_SECTION, None)
        for legacy in LEGACY_SECTIONS:
            data.pop(legacy, None)
        if not (
            isinstance(pointer, dict)
            and isinstance(pointer.get("log"), str)
            and isinstance(pointer.get("offset"), int)
        ):
            return _View(state=data, base=data, snap_sig=sig, pointer=None)
        return _View(
            state=data, base=data, snap_sig=sig, pointer=(pointer["log"], pointer["offset"])
        )

    def _follow_log(self, view: _View, log_sig: tuple[int, int, int] | None) -> _View | None:
        """``view`` with the log's new records applied; None if the log on disk is not
        the one the snapshot names (and no swap's ``.next`` is either)."""
        if view.log_ino is not None and view.log_ino == (log_sig and log_sig[2]):
            # the log we follow, grown: only the new bytes
            fd = self._open_checked(self.log_path, "token cache log")
            if fd is not None:
                with os.fdopen(fd, "rb") as fh:
                    st = os.fstat(fh.fileno())
                    if st.st_ino == view.log_ino and st.st_size >= view.log_pos:
                        # (a .next followed during a swap is the log now: live)
                        grown = dataclasses.replace(view, live=True)
                        return self._consume(grown, fh, view.log_pos, log_sig, self.log_path)
        if log_sig is None:
            # no log at all: a fresh cache, or one written by an older version
            return dataclasses.replace(view, log_path=None, log_ino=None, log_sig=None, live=False)
        for path, live in ((self.log_path, True), (self._next_path, False)):
            fd = self._open_checked(path, "token cache log")
            if fd is None:
                continue
            with os.fdopen(fd, "rb") as fh:
                log_id, start = _wal.read_header(fh.fileno())
                if log_id is None:
                    continue
                if view.pointer is not None:
                    if log_id != view.pointer[0] or view.pointer[1] > os.fstat(fh.fileno()).st_size:
                        continue  # another log, or this one cut short
                    start = view.pointer[1]
                elif not live:
                    continue  # a .next is only ever read through a snapshot naming it
                base = dataclasses.replace(view, state=view.base, live=live)
                sig = log_sig if live else _signature(os.fstat(fh.fileno()))
                return self._consume(base, fh, start, sig, path)
        return None

    def _consume(
        self,
        view: _View,
        fh: Any,
        start: int,
        log_sig: tuple[int, int, int] | None,
        path: Path,
    ) -> _View:
        """Apply the log open on ``fh`` from ``start`` to its last whole line."""
        fh.seek(start)
        raw = fh.read()
        payloads, consumed, damaged = _wal.parse(raw)
        if damaged:
            log.debug("skipped %d damaged line(s) in %s (a writer killed mid-write)", damaged, path)
        return dataclasses.replace(
            view,
            state=_with_records(view.state, payloads),
            log_path=path,
            log_ino=os.fstat(fh.fileno()).st_ino,
            log_pos=start + consumed,
            log_sig=log_sig,
        )

    def _quarantine(self, sig: tuple[int, int, int]) -> None:
        """Move an unparsable file aside, once, under the lock (it may have been fixed)."""
        with self._file_lock():
            try:
                st = os.lstat(self.path)
            except FileNotFoundError:
                return
            if _signature(st) != sig:
                return  # replaced meanwhile by a good write
            aside = self._aside_path(self.path)
            os.replace(self.path, aside)
        self._report(f"token cache {self.path} could not be parsed; moved it to {aside}")

    def _report(self, message: str) -> None:
        log.warning(message)
        if not self._warned_corrupt:
            warnings.warn(message, CacheWarning, stacklevel=5)
            self._warned_corrupt = True

    def _aside_path(self, path: Path) -> Path:
        """A new name for an unusable file: unique, so an earlier one is never replaced."""
        return path.with_name(
            f"{path.name}.corrupt-{int(time.time())}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        )

    # -- writing -------------------------------------------------------------------
    def apply(self, ops: Sequence[Op]) -> None:
        """Append ``ops`` to the log as one record; compact the log when it is long."""
        self.prepare()
        line = _wal.frame({"ops": [op.to_json() for op in ops]})
        deadline = time.monotonic() + FILE_LOCK_TIMEOUT
        while True:
            with self._shared_lock():  # no swap of the log while we write to it
                fd = self._open_checked(self.log_path, "token cache log", os.O_RDWR | os.O_APPEND)
                if fd is not None:
                    try:
                        if self._is_current(fd):
                            written = os.write(fd, line)
                            size = os.fstat(fd).st_size
                            break
                    except BaseException:
                        os.close(fd)
                        raise
                    os.close(fd)
            # no log, or not the snapshot's: a cache new or left by an older version, or a
            # compactor killed mid-swap. Repair (one process does), then write again.
            if time.monotonic() > deadline:
                raise CacheError(
                    f"timed out after {FILE_LOCK_TIMEOUT} s writing to {self.log_path}"
                )
            self._compact("repair")
        try:
            if written != len(line):  # a full disk; the fragment fails its checksum
                raise CacheError(f"could not write to {self.log_path}: the disk may be full")
            os.fdatasync(fd) if hasattr(os, "fdatasync") else os.fsync(fd)
        finally:
            os.close(fd)
        if any(op.value is None for op in ops):
            # a removed token (logout, `ppauth cache clear`, a rejected token) must not
            # stay on disk in the log's older records: fold them away now
            self._compact("purge")
        elif self._too_long(size):
            self._compact("long")

    def _is_current(self, fd: int) -> bool:
        """Whether the log open on ``fd`` is the one the snapshot names.

        A writer needs only this, not the state: the snapshot starts with its log
        pointer, so two reads of a few bytes answer it, however big the cache is.
        (Parsing a 500 kB snapshot in all 16 writers after each compaction cost
        more than the writes.) The caller holds the shared lock, so no swap is
        half done unless a compactor died mid-swap, which then reads as "no".
        """
        log_id, _ = _wal.read_header(fd)
        if log_id is None:
            return False
        snap = self._open_checked(self.path, "token cache file")
        if snap is None:
            return False
        try:
            match = _POINTER.match(_wal.pread(snap, 128, 0))
        finally:
            os.close(snap)
        return (
            match is not None
            and match.group(1).decode() == log_id
            and int(match.group(2)) <= os.fstat(fd).st_size  # not a log cut short
        )

    def _log_is_current(self) -> bool:
        fd = self._open_checked(self.log_path, "token cache log")
        if fd is None:
            return False
        try:
            return self._is_current(fd)
        finally:
            os.close(fd)

    def _too_long(self, log_size: int) -> bool:
        if log_size <= LOG_MAX:
            return False
        snap = _peek(self.path)
        return snap is None or log_size > snap[1]

    def _compact(self, why: str) -> None:
        """Fold the log into a new snapshot and start a new log with what was not folded.

        ``why`` is ``"long"``: the log is merely long, so skip if someone is compacting
        already; ``"purge"``: fold whatever happens (a removal was just logged); or
        ``"repair"``: the log is missing or not the snapshot's, so wait for the
        compaction lock, then repair what is still broken.
        """
        from requests_ppauth._flock import exclusive, try_exclusive

        if why == "long":
            holder: contextlib.AbstractContextManager[Any] = try_exclusive(self._compact_lock_path)
        else:
            holder = exclusive(self._compact_lock_path, FILE_LOCK_TIMEOUT)
        with holder as held:
            if held is False:
                return  # another process is compacting
            view = self._refresh()  # what others did before we got the lock
            if why == "repair" and self._log_is_current():
                return  # repaired by someone else meanwhile
            if why == "long" and not (view.log_sig and self._too_long(view.log_sig[1])):
                return  # folded by someone else meanwhile
            if view.log_path == self._next_path:
                # a compactor died between its two renames: finish its swap
                with self._file_lock():
                    if _peek(self._next_path) == view.log_sig:
                        os.replace(self._next_path, self.log_path)
                if why != "purge":
                    return
                view = self._refresh()
            self._fold(view)

    def _fold(self, view: _View) -> None:
        """Under the compaction lock: write the new snapshot, then swap the log."""
        data = dict(view.state)
        for name in ("AccessToken", OUR_SECTION):
            if name in data:
                data[name] = dict(data[name])
        prune(data, time.time())
        log_id, header = _wal.new_header()
        pointer = {"log": log_id, "offset": len(header)}  # first: see _is_current
        payload = json.dumps({LOG_SECTION: pointer, **data}, separators=(",", ":")).encode()
        snapshot, snap_sig = self._write_temp(payload)
        try:
            with self._file_lock():  # writers wait (milliseconds); readers do not
                tail = b""
                if view.log_path is not None and view.log_ino is not None:
                    with contextlib.suppress(FileNotFoundError), open(view.log_path, "rb") as fh:
                        if os.fstat(fh.fileno()).st_ino == view.log_ino:
                            fh.seek(view.log_pos)
                            tail = fh.read()  # written after what we folded
                if not view.live:
                    self._set_aside_log()
                nxt, log_sig = self._write_temp(header + tail, self._next_path)
                os.replace(snapshot, self.path)  # readers now look for the log it names:
                os.replace(nxt, self.log_path)  # here, or at .next until this line
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(snapshot)
            raise
        if view.pointer is None:  # the first fold of a cache: no copies of tokens left over
            for name in LEGACY_FILES:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self.directory / name)
        with self._mutex:  # what we wrote is what we know; the tail is read next time
            self._view = _View(
                state=data,
                base=data,
                snap_sig=snap_sig,
                pointer=(log_id, len(header)),
                log_path=self.log_path,
                log_ino=log_sig[2],
                log_pos=len(header),
                live=True,
            )

    def _set_aside_log(self) -> None:
        """Move a log that is not the snapshot's aside (kept for inspection), and say so."""
        try:
            st = os.lstat(self.log_path)
        except FileNotFoundError:
            return
        if st.st_size == 0:
            os.unlink(self.log_path)
            return
        aside = self._aside_path(self.log_path)
        os.replace(self.log_path, aside)
        self._report(
            f"token cache log {self.log_path} does not match {self.path} (another "
            f"cache's log, damaged, or cut short); moved it to {aside}"
        )

    def _write_temp(
        self, payload: bytes, name: Path | None = None
    ) -> tuple[Path, tuple[int, int, int]]:
        """``payload`` in a new 0600 file, fsynced: ready to be renamed into place."""
        tmp = name or self.directory / f".{CACHE_FILE}.{os.getpid()}.{threading.get_ident()}.tmp"
        fd = os.open(
            tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0), 0o600
        )
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(payload)
                fh.flush()
                os.fsync(fh.fileno())
                sig = _signature(os.fstat(fh.fileno()))
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        # No directory fsync: after a power cut the rename may be undone, leaving the
        # previous complete file - a cache may lose its newest token, never its shape.
        return tmp, sig

    # -- single-flight locks -------------------------------------------------------
    def _key_path(self, key: str) -> Path:
        import hashlib

        return self.directory / "locks" / (hashlib.sha256(key.encode()).hexdigest()[:32] + ".lock")

    def key_lock(self, key: str, timeout: float) -> contextlib.AbstractContextManager[bool]:
        """Hold ``key``'s lock; yields False (holding nothing) when ``timeout`` passed."""
        return self._held(key, timeout)

    def try_key_lock(self, key: str) -> contextlib.AbstractContextManager[bool]:
        """Take ``key``'s lock only if free right now."""
        return self._held(key, 0)

    @contextlib.contextmanager
    def _held(self, key: str, timeout: float) -> Iterator[bool]:
        # filelock's polling is fine here: waits are for a token request, tens of ms
        from filelock import Timeout

        self.prepare()
        lock = self._lock(self._key_path(key), timeout, KEY_LOCK_POLL)
        try:
            lock.acquire(blocking=timeout > 0)
        except Timeout:
            yield False
            return
        try:
            yield True
        finally:
            lock.release()
