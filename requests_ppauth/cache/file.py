"""The built-in token cache on disk: :class:`FileCache`, one SQLite database in a
private directory, shared by every process of the user.

Why SQLite, and not the snapshot-and-log file this project had before (measured,
see the README): the path to a token must cost the same whatever the cache holds.
A JSON snapshot must be parsed whole by every fresh process (197 ms at 10,000
tokens) and rewritten whole to fold its log; an indexed database reads one row
(about 0.4 ms for a fresh process, connection included, at any size) and a write
touches the pages of the rows it changes. SQLite is in the standard library, is
crash-safe by construction (a killed writer's transaction is rolled back), and
its write-ahead log lets readers go on while a writer commits.

- **Writes** are one transaction per batch of :class:`~requests_ppauth.cache.Op`
  (``BEGIN IMMEDIATE`` … ``COMMIT``): all or nothing, and batches of different
  processes never interleave. Writers queue on a kernel ``flock`` first
  (:mod:`requests_ppauth.cache.locks`), which wakes the next one the moment the
  lock is free; SQLite's own busy handler would poll with sleeps of up to 100 ms.
- **Durability**: ``synchronous=NORMAL`` in WAL mode. A committed batch survives
  any crash of the process (SIGKILL included); a power cut may undo the newest
  batches, never tear the database. A token cache loses at worst a token it can
  fetch again, and writers do not queue on one ``fsync`` each.
- **Reads** take no lock of ours: a ``SELECT`` on the primary key, in SQLite's
  snapshot isolation.
- **Removed secrets leave no trace**: ``secure_delete`` zeroes deleted rows, and a
  batch that deletes anything checkpoints and truncates the write-ahead log, so a
  token dropped by ``logout``, ``ppauth cache clear`` or a 401 is in no file.
- **Pruning**: rows whose ``expires_on`` is :data:`~requests_ppauth.cache.
  protocol.PRUNE_AFTER` seconds past are deleted by a writer at most every
  :data:`PRUNE_EVERY` seconds (an index on ``expires_on``: O(pruned rows)).
- **Safety**: the directory and its ``locks`` folder are 0700, files are created
  0600 (the database first, under a temporary name, linked into place; SQLite
  gives its ``-wal`` and ``-shm`` files the database's mode). A cache, lock folder
  or lock file owned by another user, open to others, or a symbolic link is
  refused (:class:`~requests_ppauth.UnsafeCacheError`), never repaired: the
  request fails. A file that is not this cache's database (garbage, another
  program's database) is moved aside, kept for inspection, and reported once; a
  new cache starts in its place.
- **Unavailable**: every other failure of the file system (a read-only one, a
  full disk, a missing permission) is a :class:`~requests_ppauth.CacheError`
  naming the path and the way out, which costs only sharing: the token provider
  warns and gets tokens without the cache.
- **Read-only**: a cache on a read-only file system (a container's, or a
  read-only mount of a cache written elsewhere) is still read, so the tokens
  there are shared; writes and key locks fail as unavailable. What a write would
  have changed is kept for this process, over what the file holds: a token a
  server rejected (which cannot be deleted from the file) is not read again, and
  the one fetched instead is. SQLite cannot open a WAL database there without
  its ``-shm`` file, which is gone once the last writer closed: the database is
  then opened ``immutable``, and because a writer elsewhere may still change it,
  a read that saw the file change is done again on a new connection. A
  read-only directory without a cache is simply unavailable.
- **Sealed** (``PPAUTH_CACHE_KEY``, or the ``key`` option: see
  :mod:`requests_ppauth.cache.seal`): each entry's JSON is stored AES-256-GCM sealed,
  bound to its key, so the file (a backup, a disk image) gives no token away. What
  pruning needs, ``expires_on``, stays readable in its own column; the keys are
  hashes already. A value that does not open (a wrong key, a changed file) is a
  miss, fetched again, with one warning per process. Entries written before the key
  was set are still read, and the first write of a sealing process seals them all
  (and those sealed under an older listed key) in its transaction, once: a meta
  row records the key the whole cache is sealed with, so later processes skip the
  scan, and a write without a key clears it. With a key set nothing is written in
  the clear.
- **Migration**: a cache written by requests-ppauth 0.1 (``tokens.json`` and its
  log) is converted on first use by :mod:`requests_ppauth.cache.legacy`, and its
  files, which held tokens, are removed.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import logging
import os
import sqlite3
import stat
import threading
import time
import uuid
import warnings
import weakref
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from requests_ppauth.cache.locks import LockTimeout, kernel_flock
from requests_ppauth.cache.paths import default_cache_dir
from requests_ppauth.cache.protocol import (
    PRUNE_AFTER,
    CacheWarning,
    Entry,
    Op,
    apply_ops,
    expires_on,
    patched,
)
from requests_ppauth.errors import CacheError, SealError, UnsafeCacheError

if TYPE_CHECKING:
    from requests_ppauth.cache.seal import Sealer

log = logging.getLogger("requests_ppauth.cache")

DB_FILE = "cache.db"
DB_SIDE_FILES = ("-wal", "-shm", "-journal")  # SQLite's own files beside the database
APPLICATION_ID = 0x50504154  # "PPAT" in the header: this database is a requests-ppauth cache
SCHEMA_VERSION = 1
WRITE_LOCK_TIMEOUT = 10.0  # a write holds the lock for a transaction: milliseconds
BUSY_TIMEOUT_MS = 10_000  # SQLite's own wait, for what our lock does not cover
PRUNE_EVERY = 300.0  # seconds between sweeps of long-expired tokens
KEY_LOCK_POLL = 0.005
LOCKS_DIR = "locks"
WAY_OUT = (
    "Set PPAUTH_CACHE_DIR to a writable directory of yours, or turn the shared cache off "
    "(cache=False, PPAUTH_CACHE=memory): each process then gets its own tokens"
)

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS entries ("
    " key TEXT PRIMARY KEY NOT NULL, value TEXT NOT NULL, expires_on REAL)",
    "CREATE INDEX IF NOT EXISTS entries_expiry ON entries(expires_on) WHERE expires_on IS NOT NULL",
    "CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY NOT NULL, value)",
)
SEALED_MARK = "sealed_with"  # meta: the key id every entry is sealed with, if one is
# a sealed value is a BLOB in the value column (a plaintext one is TEXT): the schema
# is the same, and a reader that knows nothing of sealing skips it as damaged
_SEAL_WARNED = False  # one warning per process for values that do not open


def _seal_warning(message: str) -> None:
    """Say once per process that entries were skipped because they do not open: a
    fleet with a wrong key would otherwise log on every request."""
    global _SEAL_WARNED
    if _SEAL_WARNED:
        log.debug(message)
        return
    _SEAL_WARNED = True
    log.warning(message)
    warnings.warn(message, CacheWarning, stacklevel=5)


def _check_owner_and_mode(path: Path, st: os.stat_result, what: str, fix: str) -> None:
    if hasattr(os, "geteuid") and st.st_uid != os.geteuid():
        raise UnsafeCacheError(
            f"{what} {path} belongs to another user (uid {st.st_uid}); refusing to use it. "
            "Set PPAUTH_CACHE_DIR to a directory of your own."
        )
    if stat.S_IMODE(st.st_mode) & 0o077:
        raise UnsafeCacheError(
            f"{what} {path} is accessible to other users (mode {stat.S_IMODE(st.st_mode):o}); "
            f"refusing to use it for tokens: run `{fix}`"
        )


def _not_a_link(path: Path, st: os.stat_result, what: str) -> None:
    """Refuse a symbolic link where this cache keeps its own files: following one would
    let whoever made it choose the file we open (and filelock truncates lock files)."""
    if stat.S_ISLNK(st.st_mode):
        raise UnsafeCacheError(
            f"{what} {path} is a symbolic link; requests-ppauth does not follow links in its "
            f"cache directory. Remove it (rm {path}): it is made again when needed."
        )


def _check_lock_file(path: Path) -> None:
    """A lock file, if there is one, is a regular file of ours, open to nobody else:
    it holds nothing, but another user who can write it can hold our lock forever, and
    a symlink would have filelock truncate its target (it opens with ``O_TRUNC``)."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    _not_a_link(path, st, "token cache lock file")
    if not stat.S_ISREG(st.st_mode):
        raise CacheError(
            f"token cache lock file {path} is not a regular file. Remove it (rm -r {path}): "
            "it is made again when needed."
        )
    _check_owner_and_mode(path, st, "token cache lock file", f"chmod 600 {path}")


def _os_failure(doing: str, exc: OSError, path: Path) -> CacheError:
    """``exc`` (raised while doing ``doing`` at ``path``) as the error that says where,
    why and what to do: unsafe for a symbolic link met by ``O_NOFOLLOW``, unavailable
    otherwise."""
    where = os.fsdecode(exc.filename) if exc.filename else str(path)
    if exc.errno == errno.ELOOP:
        return UnsafeCacheError(
            f"cannot {doing} {where}: it is a symbolic link, which requests-ppauth does not "
            f"follow in its cache directory. Remove it (rm {where}): it is made again when needed."
        )
    reason = (
        "it is on a read-only file system"
        if exc.errno == errno.EROFS
        else (exc.strerror or str(exc) or type(exc).__name__)
    )
    return CacheError(f"cannot {doing} {where}: {reason}. {WAY_OUT}")


def _dumps(value: Mapping[str, Any]) -> str:
    return json.dumps(value, separators=(",", ":"))


class _UnusableError(Exception):
    """The database file is not a usable cache (corrupt, foreign): move it aside."""


# SQLite must not be open across a fork(): the child would inherit the library's
# bookkeeping of the parent's file locks without the locks themselves, and could later
# believe it holds a lock on the log index that nobody holds. So, the pthread_atfork
# way: before a fork, wait for each cache's operation in progress (its mutex) and close
# its connection; both sides reopen on their next operation.
_caches: weakref.WeakSet[FileCache] = weakref.WeakSet()
_forking: list[FileCache] = []


def _before_fork() -> None:
    for cache in list(_caches):
        cache._mutex.acquire()
        _forking.append(cache)
        if cache._conn is not None:
            with contextlib.suppress(sqlite3.Error):
                cache._conn.close()
            cache._conn = None


def _after_fork_in_parent() -> None:
    while _forking:
        _forking.pop()._mutex.release()


def _after_fork_in_child() -> None:
    while _forking:
        _forking.pop()._mutex = threading.RLock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(
        before=_before_fork,
        after_in_parent=_after_fork_in_parent,
        after_in_child=_after_fork_in_child,
    )


class FileCache:
    """:class:`~requests_ppauth.cache.CacheBackend` in a directory of this machine
    (see the module docstring). ``options`` are a profile's cache settings: the
    file cache takes ``directory`` and ``key`` (the cache key, or a reference to it:
    see :func:`~requests_ppauth.cache.seal.sealer_from_environment`; default
    ``PPAUTH_CACHE_KEY``). ``sealer`` gives the sealer itself (a plugin falling back
    to this cache with its own key), overriding both."""

    def __init__(
        self,
        directory: str | os.PathLike[str] | None = None,
        options: Mapping[str, Any] | None = None,
        *,
        sealer: Sealer | None = None,
    ) -> None:
        options = dict(options or {})
        if directory is None and "directory" in options:
            directory = str(options.pop("directory"))
        key_option = options.pop("key", None)
        if options:
            raise ValueError(
                f"the file cache takes only 'directory' and 'key', not {sorted(options)}"
            )
        if key_option is not None and not isinstance(key_option, str):
            raise ValueError(
                "the file cache's key option is text: the keys (`ppauth cache keygen`), "
                "keyring:<name>, a Key Vault secret URL or file:<path>"
            )
        self._key_option = key_option
        self._given_sealer = sealer
        self.sealer = sealer if sealer is not None else _configured_sealer(key_option)
        self.directory = (
            Path(directory).expanduser() if directory is not None else default_cache_dir()
        )
        self.path = self.directory / DB_FILE
        self._lock_path = self.directory / (DB_FILE + ".lock")
        self._mutex = threading.RLock()
        self._conn: sqlite3.Connection | None = None
        self._ino = 0  # of the database file the connection is on
        self._write_owner: int | None = None  # the thread holding the write lock
        self._prepared = False
        self._read_only: str | None = None  # why nothing can be written here, if so
        self._stamp: tuple[Any, ...] | None = None  # of the files a read-only connection saw
        self._kept: dict[str, Entry | None] = {}  # read-only: this process's writes (None: gone)
        self._warned = False
        self._pruned_at = 0.0
        kernel_flock()  # a bad PPAUTH_CACHE_LOCKS is a ConfigurationError now, not at a write
        _caches.add(self)

    @property
    def location(self) -> str:
        return str(self.path)

    def __repr__(self) -> str:
        return f"FileCache({str(self.directory)!r})"

    # the key's setting travels, not the key: a worker resolves it as the parent did
    # (PPAUTH_CACHE_KEY from its environment); only a sealer given as one travels whole
    def __getstate__(self) -> dict[str, Any]:
        return {
            "directory": self.directory,
            "key": self._key_option,
            "sealer": self._given_sealer,
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        options = {"key": state["key"]} if state.get("key") is not None else None
        self.__init__(state["directory"], options, sealer=state.get("sealer"))  # type: ignore[misc]

    # -- setup ---------------------------------------------------------------------
    def prepare(self) -> None:
        """Create the directory 0700 (and its lock folder) or check an existing one;
        create the database if there is none, converting a 0.1 cache found there.
        Unsafe: :class:`UnsafeCacheError`; unavailable: :class:`CacheError`."""
        if self._prepared:
            return
        with self._failures("use the token cache directory"):
            try:
                self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            except OSError as exc:
                raise _os_failure("create the token cache directory", exc, self.directory) from None
            st = os.lstat(self.directory)
            if stat.S_ISLNK(st.st_mode):  # the directory itself may be a link: it is named
                st = os.stat(self.directory)  # by the user (PPAUTH_CACHE_DIR), not found
            _check_owner_and_mode(
                self.directory, st, "token cache directory", f"chmod 700 {self.directory}"
            )
            self._read_only = self._why_read_only()
            self._check_locks_dir()
            if self._read_only is None:
                self._sweep_temp_files()
            with self._mutex:
                self._connection()
        self._prepared = True

    def _why_read_only(self) -> str | None:
        """Why nothing can be created in the directory (None: it is writable)."""
        statvfs = getattr(os, "statvfs", None)  # not on Windows
        if statvfs is not None and statvfs(self.directory).f_flag & os.ST_RDONLY:
            return "is on a read-only file system"
        if not os.access(self.directory, os.W_OK | os.X_OK):
            return "is not writable by this user"
        return None

    def _check_locks_dir(self) -> None:
        """The key locks' folder gets the directory's checks: ours, 0700, and not a
        link (a link would put lock files wherever it points). Made if missing."""
        locks = self.directory / LOCKS_DIR
        if self._read_only is None:
            with contextlib.suppress(FileExistsError):
                os.mkdir(locks, 0o700)
        try:
            st = os.lstat(locks)
        except FileNotFoundError:
            if self._read_only is not None:
                return  # no key lock can be taken here: _held says so
            raise
        _not_a_link(locks, st, "token cache lock folder")
        if not stat.S_ISDIR(st.st_mode):
            raise CacheError(
                f"token cache lock folder {locks} is not a directory. Remove it (rm {locks}): "
                "it is made again when needed."
            )
        _check_owner_and_mode(locks, st, "token cache lock folder", f"chmod 700 {locks}")

    @contextlib.contextmanager
    def _failures(self, doing: str, path: Path | None = None) -> Iterator[None]:
        """Turn a failure of the file system (the body's own code only) into a
        :class:`CacheError` naming the path: no OSError leaves this cache raw."""
        try:
            yield
        except CacheError:
            raise
        except LockTimeout as exc:
            raise CacheError(
                f"cannot {doing} {path or self.directory}: {exc}: another process holds the "
                "cache's write lock (a stuck process? `fuser` on the lock file names it)"
            ) from None
        except OSError as exc:
            raise _os_failure(doing, exc, path or self.directory) from None

    def _sweep_temp_files(self) -> None:
        """Remove temp files left by processes killed while creating the database."""
        for tmp in self.directory.glob(f".{DB_FILE}.*.tmp*"):
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

    def _check_files(self) -> bool:
        """Refuse unsafe files; whether the database exists."""
        exists = False
        for suffix in ("", *DB_SIDE_FILES):
            path = Path(str(self.path) + suffix)
            try:
                st = os.lstat(path)
            except FileNotFoundError:
                continue
            if stat.S_ISLNK(st.st_mode):
                raise UnsafeCacheError(
                    f"token cache file {path} is a symbolic link; requests-ppauth does not "
                    "follow links for token files. Remove it, or point PPAUTH_CACHE_DIR at "
                    "the real directory."
                )
            _check_owner_and_mode(path, st, "token cache file", f"chmod 600 {path}")
            exists = exists or suffix == ""
        return exists

    def _create_database(self) -> None:
        """Build a complete cache under a temporary name (0600; the 0.1 cache's entries
        converted into it) and hard-link it into place, under the write lock.

        No process ever opens a database that is not initialised yet (switching one to
        WAL while others have it open can fail), and no descriptor on the live
        database is ever closed by us: closing one would drop SQLite's POSIX locks in
        this process."""
        with self._write_lock():
            if os.path.lexists(self.path):
                return  # another process made it while we waited
            tmp = self.directory / f".{DB_FILE}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp"
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
            os.close(os.open(tmp, flags, 0o600))
            try:
                conn = sqlite3.connect(tmp, isolation_level=None)
                try:
                    # 8 kB pages: a token entry (~1.5 kB) fits five to a page, not two
                    conn.execute("PRAGMA page_size=8192")
                    conn.execute("PRAGMA journal_mode=WAL")  # in the file's header: for good
                    conn.execute("PRAGMA secure_delete=ON")
                    from requests_ppauth.cache import legacy

                    with legacy.held(self.directory) as old:  # 0.1 writers wait meanwhile
                        self._fill(conn, old.ops if old is not None else ())
                        conn.close()  # folds its log into the file: one file to link
                        try:
                            os.link(tmp, self.path)
                        except OSError as exc:  # a file system without hard links: we
                            if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP):
                                raise  # hold the write lock, so a rename is as safe
                            os.rename(tmp, self.path)
                        if old is not None:
                            old.remove()  # its files held tokens: gone only once linked
                finally:
                    conn.close()
            except sqlite3.Error as exc:
                raise CacheError(f"cannot create the token cache {self.path}: {exc}") from None
            except OSError as exc:
                raise CacheError(
                    f"cannot create the token cache {self.path}: {exc.strerror}"
                ) from None
            finally:
                for suffix in ("", *DB_SIDE_FILES):
                    with contextlib.suppress(OSError):
                        os.unlink(str(tmp) + suffix)
        if old is not None:
            log.info(
                "converted the 0.1 token cache in %s (%d entries)", self.directory, len(old.ops)
            )
            for message in old.problems:
                self._report(message)

    def _fill(self, conn: sqlite3.Connection, ops: Sequence[Op]) -> None:
        """The schema, ``ops`` and this cache's marks, in one transaction."""
        conn.execute("BEGIN IMMEDIATE")
        try:
            for statement in _SCHEMA:
                conn.execute(statement)
            for op in ops:
                self._apply_one(conn, op)
            conn.execute(f"PRAGMA application_id={APPLICATION_ID}")
            conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            conn.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            raise

    def _connection(self) -> sqlite3.Connection:
        """This process's connection (caller holds ``_mutex``), opened and checked on
        first use; a file that is not a usable cache is moved aside once."""
        if self._conn is not None:
            try:
                if self._read_only is not None:
                    same = self._files_stamp() == self._stamp
                else:
                    same = os.lstat(self.path).st_ino == self._ino
            except FileNotFoundError:
                same = False
            if same:
                return self._conn
            # the file was removed, replaced or set aside by another process: what this
            # connection writes would reach nobody. Open the cache that is there now.
            with contextlib.suppress(sqlite3.Error):
                self._conn.close()
            self._conn = None
        for attempt in range(2):
            if not self._check_files():
                if self._read_only is not None:
                    raise CacheError(
                        f"the token cache directory {self.directory} {self._read_only} and "
                        f"holds no cache: there is nothing to read, and none can be made. "
                        f"{WAY_OUT}"
                    )
                self._create_database()
                self._check_files()
            if self._read_only is not None:
                self._conn = self._open_read_only()
                return self._conn
            try:
                conn = self._open()
            except _UnusableError as exc:
                if attempt:
                    raise CacheError(f"cannot use the token cache {self.path}: {exc}") from None
                self._set_aside(str(exc))
                continue
            self._conn = conn
            self._ino = os.lstat(self.path).st_ino
            return conn
        raise AssertionError("unreachable")  # pragma: no cover

    def _open(self) -> sqlite3.Connection:
        uri = f"{self.path.as_uri()}?nofollow=1"
        try:
            conn = sqlite3.connect(
                uri, uri=True, isolation_level=None, check_same_thread=False, timeout=10.0
            )
        except sqlite3.Error as exc:
            raise CacheError(f"cannot open the token cache {self.path}: {exc}") from None
        try:
            conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            app_id = conn.execute("PRAGMA application_id").fetchone()[0]
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if app_id == APPLICATION_ID and version == SCHEMA_VERSION:
                self._tune(conn)
                return conn
            if app_id not in (0, APPLICATION_ID) or version not in (0, SCHEMA_VERSION):
                raise _UnusableError(f"it is another program's database (id {app_id}, v{version})")
            if app_id == 0 and conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]:
                raise _UnusableError("it is another program's database")
            with self._write_lock():
                self._initialise(conn)
            self._tune(conn)
            return conn
        except sqlite3.DatabaseError as exc:
            conn.close()
            if isinstance(exc, sqlite3.OperationalError) and "locked" in str(exc):
                raise CacheError(f"the token cache {self.path} is locked: {exc}") from None
            raise _UnusableError(str(exc)) from None
        except BaseException:
            conn.close()
            raise

    def _files_stamp(self) -> tuple[Any, ...]:
        """What identifies the database's content on a read-only file system: the
        file's identity, size and times, and whether it has a write-ahead log."""
        st = os.lstat(self.path)
        try:
            wal = os.lstat(str(self.path) + "-wal")
            log_stamp: tuple[int, ...] | None = (wal.st_ino, wal.st_size, wal.st_mtime_ns)
        except FileNotFoundError:
            log_stamp = None
        return (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns, log_stamp)

    def _open_read_only(self) -> sqlite3.Connection:
        """A read-only connection, for a directory where nothing can be written.

        With a write-ahead log beside it (a writer elsewhere has the cache open, or
        was killed), SQLite reads the database and the log through their ``-shm``.
        Without one, SQLite cannot open a WAL database read-only unless told it is
        ``immutable``: the file then is the whole cache, and :meth:`_query` checks
        that it did not change during a read (a read-only mount of a cache written
        elsewhere can). A file that is not a usable cache cannot be moved aside
        here: that is unavailable, not repaired."""
        stamp = self._files_stamp()
        mode = "mode=ro" if stamp[-1] is not None else "mode=ro&immutable=1"
        try:
            conn = sqlite3.connect(
                f"{self.path.as_uri()}?{mode}&nofollow=1",
                uri=True,
                isolation_level=None,
                check_same_thread=False,
                timeout=10.0,
            )
        except sqlite3.Error as exc:
            raise CacheError(
                f"cannot open the token cache {self.path} (the directory {self._read_only}): "
                f"{exc}. {WAY_OUT}"
            ) from None
        try:
            app_id = conn.execute("PRAGMA application_id").fetchone()[0]
            version = conn.execute("PRAGMA user_version").fetchone()[0]
        except sqlite3.Error as exc:
            conn.close()
            raise CacheError(
                f"cannot read the token cache {self.path} (the directory {self._read_only}): "
                f"{exc}. {WAY_OUT}"
            ) from None
        if (app_id, version) != (APPLICATION_ID, SCHEMA_VERSION):
            conn.close()
            raise CacheError(
                f"cannot use {self.path}: it is not a requests-ppauth token cache (id {app_id}, "
                f"v{version}), and the directory {self._read_only}, so it cannot be replaced. "
                f"{WAY_OUT}"
            )
        self._stamp = stamp
        return conn

    @staticmethod
    def _tune(conn: sqlite3.Connection) -> None:
        conn.execute("PRAGMA synchronous=NORMAL")  # see the module docstring
        conn.execute("PRAGMA secure_delete=ON")  # a deleted token's bytes are zeroed

    def _initialise(self, conn: sqlite3.Connection) -> None:
        """Under the write lock: make an empty database file found in place a cache."""
        if conn.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID:
            return  # another process initialised it while we waited
        conn.execute("PRAGMA page_size=8192")
        if conn.execute("PRAGMA journal_mode=WAL").fetchone()[0] != "wal":
            log.warning("token cache %s: could not switch to WAL mode", self.path)
        self._fill(conn, ())

    def _set_aside(self, why: str) -> None:
        """Move an unusable database (and its side files) aside, under the write lock."""
        with self._write_lock():
            aside = self.path.with_name(
                f"{DB_FILE}.corrupt-{int(time.time())}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
            )
            try:
                os.replace(self.path, aside)
            except FileNotFoundError:
                return  # someone else moved it already
            for suffix in DB_SIDE_FILES:
                with contextlib.suppress(FileNotFoundError):
                    os.replace(str(self.path) + suffix, str(aside) + suffix)
        self._report(f"token cache {self.path} is not usable ({why}); moved it to {aside}")

    def _report(self, message: str) -> None:
        log.warning(message)
        if not self._warned:
            warnings.warn(message, CacheWarning, stacklevel=4)
            self._warned = True

    @contextlib.contextmanager
    def _write_lock(self) -> Iterator[None]:
        """The writers' lock, re-entrant for the thread holding it (a write that finds
        the database gone recreates it, under the lock it already holds)."""
        me = threading.get_ident()
        if self._write_owner == me:
            yield
            return
        from requests_ppauth.cache.locks import exclusive

        _check_lock_file(self._lock_path)
        with exclusive(self._lock_path, WRITE_LOCK_TIMEOUT):
            self._write_owner = me
            try:
                yield
            finally:
                self._write_owner = None

    # -- reading -------------------------------------------------------------------
    def get(self, keys: Sequence[str]) -> dict[str, Entry]:
        """The entries at ``keys``: one indexed ``SELECT``, no lock of ours."""
        if not keys:
            return {}
        self.prepare()
        marks = ",".join("?" * len(keys))
        rows = self._query(f"SELECT key, value FROM entries WHERE key IN ({marks})", keys)  # noqa: S608 - placeholders only
        return self._over_kept(self._decode(rows), keys)

    def read_all(self) -> Mapping[str, Entry]:
        """Every entry (listing and sign-out only)."""
        self.prepare()
        found = self._decode(self._query("SELECT key, value FROM entries", ()))
        return self._over_kept(found, list(self._kept))

    def _over_kept(self, found: dict[str, Entry], keys: Sequence[str]) -> dict[str, Entry]:
        """``found`` with what this process wrote to a read-only cache laid over it."""
        if not self._kept:
            return found
        for key in keys:
            if key in self._kept:
                entry = self._kept[key]
                if entry is None:
                    found.pop(key, None)
                else:
                    found[key] = entry
        return found

    def _query(self, sql: str, params: Sequence[Any]) -> list[tuple[str, Any]]:
        try:
            with self._failures("read the token cache", self.path), self._mutex:
                for _ in range(3):
                    rows = list(self._connection().execute(sql, tuple(params)))
                    if self._read_only is None or self._files_stamp() == self._stamp:
                        return rows
                    # read-only here, written elsewhere during the read: it may be torn
                    self._drop_connection()
                raise CacheError(
                    f"cannot read the token cache {self.path}: it kept changing during reads "
                    f"(written elsewhere, while the directory {self._read_only}). {WAY_OUT}"
                )
        except sqlite3.Error as exc:
            raise CacheError(f"cannot read the token cache {self.path}: {exc}") from None

    def _drop_connection(self) -> None:
        """Close this process's connection (caller holds ``_mutex``)."""
        if self._conn is not None:
            with contextlib.suppress(sqlite3.Error):
                self._conn.close()
            self._conn = None

    def _decode(self, rows: Sequence[tuple[str, Any]]) -> dict[str, Entry]:
        found: dict[str, Entry] = {}
        for key, raw in rows:
            value = self._load(key, raw)
            if value is not None:
                found[key] = value
        return found

    def _load(self, key: str, raw: Any) -> Entry | None:
        """The entry stored at ``key``, or None (and a log line) if it is not a JSON
        object or, sealed, does not open (one warning per process: a miss)."""
        if isinstance(raw, bytes):
            raw = self._open_sealed(key, raw)
            if raw is None:
                return None
        try:
            value = json.loads(raw)
        except (TypeError, ValueError):
            value = None
        if isinstance(value, dict):
            return value
        log.warning("token cache %s: skipped a damaged entry", self.path)
        return None

    def _open_sealed(self, key: str, raw: bytes) -> bytes | None:
        """The plaintext of a sealed value, or None (warned once per process)."""
        from requests_ppauth.cache.seal import KEY_VAR, is_sealed

        if self.sealer is None:
            if is_sealed(raw):
                _seal_warning(
                    f"token cache {self.path} holds sealed entries, and no key is set to open "
                    f"them: they are treated as missing (and fetched again). Set {KEY_VAR} "
                    "(or the cache's key option) to the key the other processes use"
                )
            else:
                log.warning("token cache %s: skipped a damaged entry", self.path)
            return None
        try:
            return self.sealer.open(key, raw)
        except SealError as exc:
            _seal_warning(
                f"token cache {self.path}: an entry does not open with {self._key_setting} "
                f"({exc}); such entries are treated as missing and fetched again (this is "
                "said once per process)"
            )
            return None

    @property
    def _key_setting(self) -> str:
        if self._given_sealer is not None:
            return "the cache's key"
        return "the cache's key option" if self._key_option is not None else "PPAUTH_CACHE_KEY"

    def _current(self, conn: sqlite3.Connection, key: str) -> Entry:
        row = conn.execute("SELECT value FROM entries WHERE key=?", (key,)).fetchone()
        return (self._load(key, row[0]) or {}) if row else {}

    # -- writing -------------------------------------------------------------------
    def apply(self, ops: Sequence[Op]) -> None:
        """One transaction for ``ops``; a batch that deletes anything also wipes the
        write-ahead log, so what it removed is gone from every file."""
        if not ops:
            return
        self.prepare()
        if self._read_only is not None:
            with self._mutex:  # a thread's batch is laid over the file whole
                state = self.get(list({op.key: None for op in ops}))
                apply_ops(state, ops)
                self._kept.update({op.key: state.get(op.key) for op in ops})
            raise CacheError(
                f"cannot write to the token cache {self.path}: the directory {self._read_only} "
                f"(tokens already there are still read; this change is kept in this process "
                f"only). {WAY_OUT}"
            )
        # a removed entry, or a removed field (a sign-out's refresh token), must not
        # stay readable in SQLite's log: such a batch truncates it
        purge = any(
            (op.value is None and op.fields is None)
            or (op.fields is not None and None in op.fields.values())
            for op in ops
        )
        try:
            with self._failures("write to the token cache"), self._write_lock(), self._mutex:
                conn = self._connection()
                conn.execute("BEGIN IMMEDIATE")
                try:
                    for op in ops:
                        self._apply_one(conn, op)
                    # entries written in the clear (or under an old key) are sealed
                    # anew, and their old bytes wiped from the log like a deletion's
                    purge = self._seal_all(conn) or purge
                    self._maybe_prune(conn)
                    conn.execute("COMMIT")
                except BaseException:
                    with contextlib.suppress(sqlite3.Error):
                        conn.execute("ROLLBACK")
                    raise
                if purge:
                    busy = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]
                    if busy:  # a reader kept the log; the next deleting batch retries
                        log.debug("token cache %s: log not truncated (busy)", self.path)
        except sqlite3.Error as exc:
            raise CacheError(f"cannot write to the token cache {self.path}: {exc}") from None

    def _apply_one(self, conn: sqlite3.Connection, op: Op) -> None:
        if op.fields is not None:
            entry = patched(self._current(conn, op.key), op.fields)
            if entry:
                self._put(conn, op.key, entry)
            else:
                conn.execute("DELETE FROM entries WHERE key=?", (op.key,))
        elif op.value is not None:
            self._put(conn, op.key, op.value)
        elif op.if_secret is None:
            conn.execute("DELETE FROM entries WHERE key=?", (op.key,))
        else:
            if self._current(conn, op.key).get("secret") == op.if_secret:
                conn.execute("DELETE FROM entries WHERE key=?", (op.key,))

    def _put(self, conn: sqlite3.Connection, key: str, value: Mapping[str, Any]) -> None:
        text = _dumps(value)
        stored: str | bytes = text if self.sealer is None else self.sealer.seal(key, text.encode())
        conn.execute(
            "INSERT OR REPLACE INTO entries (key, value, expires_on) VALUES (?, ?, ?)",
            (key, stored, expires_on(value)),
        )

    def _seal_all(self, conn: sqlite3.Connection) -> bool:
        """In a write's transaction: make every entry sealed with the current key, once
        per cache (the meta row says it is done); a write without a key undoes the mark.
        Whether anything was rewritten (its clear bytes must leave the log)."""
        if self.sealer is None:
            conn.execute("DELETE FROM meta WHERE name=?", (SEALED_MARK,))
            return False
        current = self.sealer.key_ids_raw[0]
        mark = conn.execute("SELECT value FROM meta WHERE name=?", (SEALED_MARK,)).fetchone()
        if mark is not None and mark[0] == current.hex():
            return False
        from requests_ppauth.cache.seal import is_sealed

        rewritten = False
        # the 8 bytes after the 4-byte header are the key id (see the seal module)
        for key, raw in conn.execute(
            "SELECT key, value FROM entries WHERE typeof(value) != 'blob' "
            "OR substr(value, 5, 8) != ?",
            (current,),
        ).fetchall():
            if (
                isinstance(raw, bytes)
                and is_sealed(raw)
                and raw[4:12] not in self.sealer.key_ids_raw
            ):
                continue  # another key's: nothing here can open it (a miss when read)
            entry = self._load(key, raw)
            if entry is not None:
                self._put(conn, key, entry)
                rewritten = True
        conn.execute(
            "INSERT OR REPLACE INTO meta (name, value) VALUES (?, ?)", (SEALED_MARK, current.hex())
        )
        return rewritten

    def _maybe_prune(self, conn: sqlite3.Connection) -> None:
        """Drop long-expired tokens, at most every PRUNE_EVERY seconds per cache."""
        now = time.time()
        if now - self._pruned_at < PRUNE_EVERY:
            return
        row = conn.execute("SELECT value FROM meta WHERE name='pruned_at'").fetchone()
        if row and isinstance(row[0], int | float) and now - float(row[0]) < PRUNE_EVERY:
            self._pruned_at = float(row[0])
            return
        conn.execute("DELETE FROM entries WHERE expires_on < ?", (now - PRUNE_AFTER,))
        conn.execute("INSERT OR REPLACE INTO meta (name, value) VALUES ('pruned_at', ?)", (now,))
        self._pruned_at = now

    # -- single-flight locks -------------------------------------------------------
    def _key_path(self, key: str) -> Path:
        name = hashlib.sha256(key.encode()).hexdigest()[:32] + ".lock"
        return self.directory / LOCKS_DIR / name

    def key_lock(self, key: str, timeout: float) -> contextlib.AbstractContextManager[bool]:
        """Hold ``key``'s lock; yields False (holding nothing) when ``timeout`` passed."""
        return self._held(key, timeout)

    def try_key_lock(self, key: str) -> contextlib.AbstractContextManager[bool]:
        """Take ``key``'s lock only if free right now."""
        return self._held(key, 0)

    @contextlib.contextmanager
    def _held(self, key: str, timeout: float) -> Iterator[bool]:
        """filelock's lock on the key's file in ``locks/`` (created 0600; a link there
        is refused). Only taking it is this cache's to fail: what the caller does
        while holding it raises as it raises."""
        from requests_ppauth.cache.locks import polled

        self.prepare()
        path = self._key_path(key)
        if self._read_only is not None:
            raise CacheError(
                f"cannot take a token lock in {path.parent}: the directory {self._read_only}, "
                f"so a token fetched here cannot be shared. {WAY_OUT}"
            )
        with contextlib.ExitStack() as stack:
            with self._failures("take a token lock in", path.parent):
                _check_lock_file(path)
                held = stack.enter_context(polled(path, timeout, KEY_LOCK_POLL))
            yield held


def _configured_sealer(key_option: str | None) -> Sealer | None:
    """The sealer of the ``key`` option, else of ``PPAUTH_CACHE_KEY``; None (and the
    seal module left unloaded) when neither is set."""
    if key_option is None and not os.environ.get("PPAUTH_CACHE_KEY", "").strip():
        return None
    from requests_ppauth.cache.seal import sealer_from_environment

    if key_option is None:
        return sealer_from_environment()
    return sealer_from_environment(value=key_option, setting="the file cache's key option")
