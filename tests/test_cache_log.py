"""The file cache's write-ahead log: torn lines, compaction, a compactor killed between
its two renames, logs that do not belong to the snapshot, and caches left by the
previous (journal) format. Real files and real processes; nothing is mocked.
"""

from __future__ import annotations

import json
import os
import select
import signal
import threading
import time
import warnings
from pathlib import Path
from typing import Any

import pytest

from requests_ppauth.cache import CacheWarning, Op
from requests_ppauth.file_cache import CACHE_FILE, LOG_MAX, FileCache
from tests._cache_state import load, on_disk

LOG = CACHE_FILE + ".log"


def snapshot(directory: Path) -> dict[str, Any]:
    data = json.loads((directory / CACHE_FILE).read_bytes())
    assert isinstance(data, dict)
    return data


def fill(cache: FileCache, prefix: str, count: int, pad: int = 0) -> dict[str, Any]:
    """``count`` writes of one key each; the entries written."""
    written = {}
    for i in range(count):
        value = {"i": i, "pad": "x" * pad}
        cache.apply([Op("W", f"{prefix}-{i}", value)])
        written[f"{prefix}-{i}"] = value
    return written


def append_raw(directory: Path, data: bytes) -> None:
    fd = os.open(directory / LOG, os.O_WRONLY | os.O_APPEND)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


def test_a_torn_line_is_skipped_and_the_record_after_it_kept(tmp_path):
    directory = tmp_path / "cache"
    cache = FileCache(directory)
    cache.apply([Op("W", "before", 1)])
    # a writer killed mid-write: half a record, no newline
    append_raw(directory, b'\n1234abcd {"ops":[["W","torn",{"half')
    assert FileCache(directory).read()["W"] == {"before": 1}  # not consumed yet
    cache.apply([Op("W", "after", 2)])

    assert FileCache(directory).read()["W"] == {"before": 1, "after": 2}
    assert cache.read()["W"] == {"before": 1, "after": 2}
    assert load(directory)["W"] == {"before": 1, "after": 2}


def test_a_line_with_a_wrong_checksum_is_skipped(tmp_path):
    directory = tmp_path / "cache"
    cache = FileCache(directory)
    cache.prepare()  # starts an empty cache
    body = json.dumps({"ops": [["W", "forged", 1, None]]}).encode()
    append_raw(directory, b"\n00000000 " + body + b"\n")
    cache.apply([Op("W", "real", 2)])
    assert FileCache(directory).read()["W"] == {"real": 2}


def test_a_long_log_is_folded_into_the_snapshot_and_nothing_is_lost(tmp_path):
    directory = tmp_path / "cache"
    writer, reader = FileCache(directory), FileCache(directory)
    expected: dict[str, Any] = {}
    seen_sizes = []
    for round_no in range(4):
        expected |= fill(writer, f"r{round_no}", 40, pad=2000)  # ~80 kB a round
        assert dict(reader.read()["W"]) == expected  # a reader that follows along
        seen_sizes.append((directory / LOG).stat().st_size)

    assert max(seen_sizes) <= LOG_MAX + 4096  # folded once past LOG_MAX
    folded = snapshot(directory).get("W", {})
    assert len(folded) >= 100  # the snapshot holds what was folded...
    assert len(folded) < len(expected)  # ...and the log what came after
    assert load(directory)["W"] == expected
    assert dict(FileCache(directory).read()["W"]) == expected


def test_a_reader_gets_a_new_state_object_only_when_something_changed(tmp_path):
    cache = FileCache(tmp_path / "cache")
    cache.apply([Op("W", "a", 1)])
    first = cache.read()
    assert cache.read() is first  # nothing changed: no re-read, same object
    FileCache(tmp_path / "cache").apply([Op("W", "b", 2)])
    second = cache.read()
    assert second is not first and second["W"] == {"a": 1, "b": 2}
    assert first["W"] == {"a": 1}  # states handed out are never changed afterwards


def _die_between_renames(directory: Path) -> None:
    """In a forked child: compact, and be SIGKILLed right after the snapshot's rename."""
    try:
        real_replace = os.replace

        def replace(src: Any, dst: Any) -> None:
            real_replace(src, dst)
            if Path(dst).name == CACHE_FILE:
                os.kill(os.getpid(), signal.SIGKILL)

        os.replace = replace  # type: ignore[assignment]  # the crash we inject
        FileCache(directory).apply([Op("W", "gone", None)])  # a removal: folds at once
    finally:
        os._exit(3)


def test_a_compactor_killed_between_its_two_renames_loses_nothing(tmp_path):
    directory = tmp_path / "cache"
    expected = fill(FileCache(directory), "k", 30, pad=100)
    FileCache(directory).apply([Op("W", "gone", 1)])

    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child never returns
        _die_between_renames(directory)
    _, status = os.waitpid(pid, 0)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL

    # the snapshot names the new log, which is still at .next: readers find it there
    assert (directory / (LOG + ".next")).exists()
    with warnings.catch_warnings():
        warnings.simplefilter("error", CacheWarning)
        assert dict(FileCache(directory).read()["W"]) == expected
        # the next write finishes the swap and lands
        FileCache(directory).apply([Op("W", "next", 2)])
    assert not (directory / (LOG + ".next")).exists()
    assert load(directory)["W"] == expected | {"next": 2}
    assert not list(directory.glob("*.corrupt-*"))


FOREIGN_LOGS = {
    "another-caches-log": None,  # made in the test: a valid log of another cache
    "garbage": b"\x00\x01 not a log at all \xff\n\n",
    "empty": b"",
    "header-only-torn": b'\n0badc0de {"log":"',
}


@pytest.mark.parametrize("kind", list(FOREIGN_LOGS))
def test_a_log_that_is_not_the_snapshots_is_moved_aside_by_the_next_write(tmp_path, kind):
    directory = tmp_path / "cache"
    FileCache(directory).apply([Op("W", "mine", 1)])
    other = tmp_path / "other"
    FileCache(other).apply([Op("W", "theirs", 1)])
    content = FOREIGN_LOGS[kind]
    if content is None:
        content = (other / LOG).read_bytes()
    log_path = directory / LOG
    log_path.write_bytes(content)  # replaces the log: "mine" was only in it

    with warnings.catch_warnings():
        warnings.simplefilter("error", CacheWarning)
        state = FileCache(directory).read()  # reading changes nothing on disk
    assert "theirs" not in state.get("W", {})
    assert log_path.read_bytes() == content

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        FileCache(directory).apply([Op("W", "after", 2)])
    state = FileCache(directory).read()
    assert state["W"] == {"after": 2}
    assert load(directory)["W"] == {"after": 2}
    aside = list(directory.glob(LOG + ".corrupt-*"))
    if content:
        assert [a.read_bytes() for a in aside] == [content]  # kept for inspection
        (warning,) = [w for w in caught if issubclass(w.category, CacheWarning)]
        assert "does not match" in str(warning.message) and str(aside[0]) in str(warning.message)
        assert os.stat(aside[0]).st_mode & 0o777 == 0o600
    else:
        assert aside == []  # nothing to keep


def test_a_log_cut_short_is_not_read_past_its_end(tmp_path):
    directory = tmp_path / "cache"
    cache = FileCache(directory)
    fill(cache, "k", 200, pad=1500)  # compacts: the snapshot points past the header
    offset = snapshot(directory)["PPAuthLog"]["offset"]
    with open(directory / LOG, "r+b") as fh:
        fh.truncate(offset - 10)

    with pytest.warns(CacheWarning, match="cut short"):
        FileCache(directory).apply([Op("W", "after", 1)])
    state = FileCache(directory).read()
    assert state["W"]["after"] == 1
    assert len(state["W"]) > 1  # what the snapshot folded is kept


def test_a_cache_of_the_journal_format_is_read_and_then_migrated(tmp_path):
    directory = tmp_path / "cache"
    directory.mkdir(mode=0o700)
    old = {
        "AccessToken": {"at": {"secret": "s", "expires_on": "4000000000"}},
        "PPAuthToken": {"e": {"secret": "s", "expires_on": 4e9, "refresh_on": 4e9}},
        "PPAuthCommits": {"0123456789abcdef": 1.0},
        "PPAuthJournal": {"ino": 1, "offset": 10},
    }
    for name, content in (
        (CACHE_FILE, json.dumps(old).encode()),
        (CACHE_FILE + ".journal", b'{"id":"x","ops":[["W","k",1,null]]}\n'),
    ):
        fd = os.open(directory / name, os.O_WRONLY | os.O_CREAT, 0o600)
        os.write(fd, content)
        os.close(fd)

    state = FileCache(directory).read()
    assert set(state) == {"AccessToken", "PPAuthToken"}  # no old bookkeeping
    FileCache(directory).apply([Op("W", "new", 2)])
    migrated = FileCache(directory).read()
    assert migrated["AccessToken"] == old["AccessToken"]
    assert migrated["PPAuthToken"] == old["PPAuthToken"]
    assert migrated["W"] == {"new": 2}
    assert "PPAuthLog" in snapshot(directory)
    assert not (directory / (CACHE_FILE + ".journal")).exists()  # it held tokens too


def test_a_removed_secret_leaves_no_trace_in_any_file(tmp_path):
    directory = tmp_path / "cache"
    cache = FileCache(directory)
    secret = "eyJ-a-token-that-was-revoked"
    cache.apply([Op("PPAuthToken", "k", {"secret": secret, "expires_on": 4e9})])
    fill(cache, "other", 5)
    assert secret.encode() in on_disk(directory)

    FileCache(directory).apply([Op("PPAuthToken", "k", None, if_secret=secret)])
    assert secret.encode() not in on_disk(directory)
    assert "k" not in cache.read()["PPAuthToken"]
    assert len(cache.read()["W"]) == 5


def test_a_snapshot_rewritten_by_another_tool_is_read_and_then_normalised(tmp_path):
    directory = tmp_path / "cache"
    expected = fill(FileCache(directory), "k", 20)
    # e.g. loaded into msal's SerializableTokenCache and written back: same content,
    # other layout (the log pointer no longer first)
    data = snapshot(directory)
    (directory / CACHE_FILE).write_text(json.dumps(data, indent=4, sort_keys=True))

    assert dict(FileCache(directory).read()["W"]) == expected
    started = time.monotonic()
    FileCache(directory).apply([Op("W", "after", 1)])
    assert time.monotonic() - started < 5  # repaired at once, not a wait for a timeout
    assert load(directory)["W"] == expected | {"after": 1}
    assert (directory / CACHE_FILE).read_bytes().startswith(b'{"PPAuthLog":')


def test_a_child_forked_while_a_thread_reads_the_cache_can_use_it(tmp_path):
    directory = tmp_path / "cache"
    cache = FileCache(directory)
    cache.apply([Op("W", "before", 1)])
    held, release = threading.Event(), threading.Event()

    def reader_in_the_middle() -> None:
        with cache._mutex:  # a read under way in another thread at the moment of fork
            held.set()
            release.wait(30)

    thread = threading.Thread(target=reader_in_the_middle, daemon=True)
    thread.start()
    assert held.wait(10)
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through the pipe
        try:
            cache.apply([Op("W", "from-child", 2)])
            os.write(write_end, json.dumps(dict(cache.read()["W"])).encode())
        finally:
            os._exit(0)
    os.close(write_end)
    try:
        ready = select.select([read_end], [], [], 20)[0]
        if not ready:
            os.kill(pid, signal.SIGKILL)
        assert ready, "the child hung on a lock its parent's thread held at the fork"
        assert json.loads(os.read(read_end, 65536)) == {"before": 1, "from-child": 2}
    finally:
        os.waitpid(pid, 0)
        os.close(read_end)
        release.set()
        thread.join(10)
