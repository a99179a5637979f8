"""The cross-process token cache with real processes: single-flight, warm start, many
writers, writers killed mid-write, killed lock holders, bounded lock waits and
proactive refresh by exactly one process. Single-flight and the many writers run on
both lock paths (``lock_mechanism``: the kernel ``flock``, and filelock's, the path of
platforms without ``fcntl``).

Children are ``tests/_cache_worker.py`` processes started from the test, configured
by the environment ``ppauth_env.use_emulator`` sets (the emulator runs in the test
process) and started together through a stdin barrier. Nothing is mocked.
"""

from __future__ import annotations

import logging
import os
import random
import select
import signal
import sqlite3
import threading
import time
import warnings
from pathlib import Path

import pytest
import requests

from requests_ppauth import PowerPlatformAuth
from requests_ppauth.cache import CacheWarning, Op
from requests_ppauth.cache.file import FileCache
from requests_ppauth.cache.locks import exclusive, try_exclusive
from requests_ppauth.tokens import RETRY_BACKOFF, TokenProvider
from tests._cache_state import entries, group, token_entry_key
from tests._cache_worker import SCOPE, Child, digest
from tests.cache._calls import api_get, auth_for, sent_token

pytestmark = pytest.mark.slow


def disk_entry(cache_dir: Path, auth: PowerPlatformAuth) -> dict:
    """Our entry for the auth's scope, read by a fresh FileCache (no shared state)."""
    entry = FileCache(cache_dir).get([token_entry_key(auth.provider.key(SCOPE))])[
        token_entry_key(auth.provider.key(SCOPE))
    ]
    assert isinstance(entry, dict)
    return entry


def start_together(children, count: int, *args: str) -> list[Child]:
    """``count`` workers, all imported and built, released at once."""
    kids = [children(*args, "--wait") for _ in range(count)]
    for kid in kids:
        kid.ready()
    for kid in kids:
        kid.go()
    return kids


def counts_delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    return {k: after.get(k, 0) - before.get(k, 0) for k in after if after[k] != before.get(k, 0)}


def sleep_until(moment: float) -> None:
    time.sleep(max(0.0, moment - time.time()))


# -- single-flight and warm start ----------------------------------------------------------


def test_32_cold_processes_started_together_make_one_token_request(
    ppauth_emulator, ppauth_env, children, lock_mechanism
):
    emu = ppauth_emulator
    ppauth_env.use_emulator(emu, "secret")
    kids = [children("get", emu.api_url, emu.ca_bundle, "--wait") for _ in range(32)]
    for kid in kids:
        kid.ready()
    assert emu.counts() == {}  # nothing was fetched before the start signal
    for kid in kids:
        kid.go()
    results = [kid.result() for kid in kids]

    assert [r["status"] for r in results] == [200] * 32
    assert {r["kernel_flock"] for r in results} == {lock_mechanism == "flock"}
    assert emu.count("token") == 1
    assert emu.count("discovery") == 1  # only the one process that fetched built an msal app
    assert sum(r["msal_imported"] for r in results) == 1
    tokens = {r["token"] for r in results}
    assert len(tokens) == 1
    # ...and it is the token the emulator issued and the cache holds
    (issued,) = [r for r in emu.requests("token") if r.status == 200]
    assert {
        digest(str(r.authorization).removeprefix("Bearer ")) for r in emu.requests("environments")
    } == tokens
    stored = entries(ppauth_env.cache_dir)
    assert [digest(e["secret"]) for e in stored.values()] == list(tokens)  # once, ours
    assert issued.client_id == emu.sample.client_id


def test_a_fresh_process_with_a_warm_cache_sends_nothing_to_the_identity_provider(
    ppauth_emulator, ppauth_env, children
):
    emu = ppauth_emulator
    ppauth_env.use_emulator(emu, "secret")
    first = api_get(emu, auth_for(emu))  # fills the cache
    assert emu.count("token") == 1

    before = emu.counts()
    result = children("get", emu.api_url, emu.ca_bundle).result()
    after = emu.counts()

    assert result["status"] == 200
    assert result["token"] == digest(sent_token(first))
    assert counts_delta(before, after) == {"environments": 1}  # no discovery, no token
    assert result["msal_imported"] is False  # the token came from the file, not from msal


# -- many writers, killed writers ------------------------------------------------------------


def test_16_processes_writing_200_distinct_keys_each_lose_nothing(
    tmp_path, children, lock_mechanism
):
    directory = tmp_path / "cache"
    # 3200 batches of ~400 bytes: SQLite's log is checkpointed while they run
    kids = [
        children("write", str(directory), "W", f"p{n}", "200", "--wait", "--pad", "300")
        for n in range(16)
    ]
    for kid in kids:
        kid.ready()
    for kid in kids:
        kid.go()
    results = [kid.result(timeout=120) for kid in kids]

    assert [r["written"] for r in results] == [200] * 16
    assert {r["kernel_flock"] for r in results} == {lock_mechanism == "flock"}
    section = group(directory, "W")
    expected = {f"p{n}-{i}": i for n in range(16) for i in range(200)}
    missing = sorted(set(expected) - set(section))
    assert not missing, f"{len(missing)} of 3200 entries lost, e.g. {missing[:5]}"
    assert {k: section[k] for k in expected} == expected
    assert len(section) == 3200


def _killable_writer(directory: Path, report_fd: int, round_no: int) -> None:
    """Runs in a forked child: commit keys one by one, reporting each after apply returns."""
    try:
        cache = FileCache(directory)
        cache.prepare()
        os.write(report_fd, b"started\n")
        i = 0
        while True:
            key = f"r{round_no}-{i}"
            # the padding (kept in 4 slots, so the cache stays small) grows SQLite's log
            # past its checkpoint size every few dozen batches: kills land in checkpoints
            # as well as in transactions
            pad = Op(f"Pad:slot{i % 4}", {"pad": "x" * 16_000})
            ops = [Op(f"K:{key}", {"v": i, "round": round_no, "secret": key}), pad]
            gone = f"r{round_no}-{i - 1}" if i % 3 == 2 else None
            if gone:  # a deleting batch also truncates the log: kills land there too
                ops.append(Op(f"K:{gone}", if_secret=gone))
            cache.apply(ops)
            os.write(report_fd, (key + (f" -{gone}" if gone else "")).encode() + b"\n")
            i += 1
    finally:
        os._exit(3)


def test_writer_sigkilled_200_times_never_corrupts_or_loses_committed_keys(tmp_path):
    directory = tmp_path / "cache"
    FileCache(directory).prepare()
    rng = random.Random(20240607)  # noqa: S311 - kill timing, not cryptography
    committed: set[str] = set()
    deleted: set[str] = set()
    rounds_with_a_log = 0
    kills_after_commits = 0
    for round_no in range(200):
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child never returns
            os.close(read_end)
            _killable_writer(directory, write_end, round_no)
        os.close(write_end)
        # the 0-30 ms count from when the writer runs, not from the fork (on a loaded
        # machine a forked child may wait longer than that for its first time slice)
        assert select.select([read_end], [], [], 30)[0], "the writer never started"
        time.sleep(rng.uniform(0, 0.030))
        os.kill(pid, signal.SIGKILL)
        _, status = os.waitpid(pid, 0)
        assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL, status
        with os.fdopen(read_end, "rb") as pipe:
            lines = pipe.read().split(b"\n")[:-1]  # a torn last report is not a commit
        assert lines[0] == b"started"
        reported = lines[1:]
        for report in reported:
            key, _, gone = report.decode().partition(" -")
            committed.add(key)
            if gone:
                committed.discard(gone)
                deleted.add(gone)
        # the batch after the last reported one may have committed unreported (killed
        # before its report): when it was a deleting one, its victim may be gone
        last = len(reported) - 1
        unsure = f"r{round_no}-{last}" if reported and (last + 1) % 3 == 2 else None
        kills_after_commits += bool(reported)
        # a killed writer's transaction is in SQLite's log (-wal) until a recovery
        rounds_with_a_log += (directory / "cache.db-wal").exists()

        with warnings.catch_warnings():
            warnings.simplefilter("error", CacheWarning)
            state = FileCache(directory).read_all()
        assert not list(directory.glob("cache.db.corrupt-*")), f"round {round_no}"
        present = {k[2:] for k in state if k.startswith("K:")}
        if unsure is not None and unsure not in present:
            committed.discard(unsure)
        lost = committed - present
        assert not lost, f"round {round_no}: committed keys lost: {sorted(lost)[:5]}"
        back = deleted & present
        assert not back, f"round {round_no}: deleted keys came back: {sorted(back)[:5]}"

    # the kills landed everywhere: before the first commit, between commits, in a log
    # (how many commits fit in 30 ms depends on the machine's load: only a floor here)
    print(f"SIGKILLs: 200, after at least one commit: {kills_after_commits}")
    assert 10 <= kills_after_commits < 200, kills_after_commits
    assert rounds_with_a_log >= 1, "no kill left a log behind: recovery went untested"
    assert deleted, "no deleting batch committed: truncation went untested"
    conn = sqlite3.connect(directory / "cache.db")
    assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    conn.close()
    assert set(group(directory, "K")) >= committed


# -- killed lock holders -------------------------------------------------------------------


def _time_to_acquire_after_kill(child: Child, take) -> float:
    """Start a thread blocked on ``take``; SIGKILL ``child``; seconds until the thread has it."""
    got = threading.Event()
    result: dict[str, float] = {}

    def waiter() -> None:
        take()
        result["at"] = time.monotonic()
        got.set()

    thread = threading.Thread(target=waiter, daemon=True)
    thread.start()
    assert not got.wait(0.3), "the lock was free while the child held it"
    killed_at = time.monotonic()
    os.kill(child.pid, signal.SIGKILL)
    assert got.wait(10), "nobody got the lock after its holder was killed"
    thread.join(5)
    return result["at"] - killed_at


def test_key_lock_of_a_killed_process_does_not_block_others(tmp_path, children):
    directory = tmp_path / "cache"
    key = "https://login.example/tenant|tenant|client||https://service.powerapps.com//.default"
    holder = children("hold-key-lock", str(directory), key)
    assert holder.line() == "held"
    cache = FileCache(directory)
    with cache.try_key_lock(key) as mine:
        assert mine is False  # really held by the child

    def take() -> None:
        with cache.key_lock(key, timeout=10) as held:
            assert held

    assert _time_to_acquire_after_kill(holder, take) < 1.0
    with cache.try_key_lock(key) as mine:
        assert mine is True


def test_file_lock_of_a_killed_process_does_not_block_writers(tmp_path, children):
    directory = tmp_path / "cache"
    holder = children("hold-file-lock", str(directory))
    assert holder.line() == "held"
    cache = FileCache(directory)
    cache.prepare()
    with try_exclusive(cache._lock_path) as mine:
        assert mine is False

    def take() -> None:
        with exclusive(cache._lock_path, 10):
            pass

    assert _time_to_acquire_after_kill(holder, take) < 1.0
    started = time.monotonic()
    cache.apply([Op("W:after-kill", {"ok": True})])
    assert time.monotonic() - started < 1.0
    assert FileCache(directory).get(["W:after-kill"]) == {"W:after-kill": {"ok": True}}


def test_waiting_for_a_stuck_key_lock_is_bounded_by_lock_timeout(
    ppauth_emulator, ppauth_env, children, caplog
):
    emu = ppauth_emulator
    ppauth_env.use_emulator(emu, "secret")
    auth = auth_for(emu)
    key = auth.provider.key(SCOPE)
    holder = children("hold-key-lock", str(ppauth_env.cache_dir), key)
    assert holder.line() == "held"  # and it keeps holding it for as long as the test runs
    auth.provider.lock_timeout = 0.5
    caplog.set_level(logging.WARNING, logger="requests_ppauth")

    started = time.monotonic()
    r = api_get(emu, auth)
    waited = time.monotonic() - started

    assert 0.5 <= waited < 3.0, waited
    assert holder.proc.poll() is None  # the lock was still held: we went around it
    assert emu.count("token") == 1
    warned = [
        rec
        for rec in caplog.records
        if rec.levelno == logging.WARNING and "waited" in rec.getMessage()
    ]
    assert len(warned) == 1, caplog.text
    assert SCOPE in warned[0].getMessage()
    # the token fetched around the lock is still shared
    assert disk_entry(ppauth_env.cache_dir, auth)["secret"] == sent_token(r)


def test_token_provider_lock_timeout_argument_bounds_the_wait(
    ppauth_emulator, ppauth_env, children, caplog
):
    from requests_ppauth import ClientSecret

    emu = ppauth_emulator
    s = emu.sample
    cred = ClientSecret(
        tenant_id=s.tenant_id,
        client_id=s.client_id,
        secret=s.client_secret,
        authority_host=emu.authority_host,
    )
    directory = ppauth_env.root / "provider-cache"
    provider = TokenProvider(
        lambda: cred,
        authority_host=emu.authority_host,
        verify=emu.ca_bundle,
        cache=FileCache(directory),
        lock_timeout=0.5,
    )
    holder = children("hold-key-lock", str(directory), provider.key(SCOPE))
    assert holder.line() == "held"
    caplog.set_level(logging.WARNING, logger="requests_ppauth")

    started = time.monotonic()
    token = provider.get(SCOPE)
    waited = time.monotonic() - started

    assert 0.5 <= waited < 3.0, waited
    assert token.expires_on > time.time() + 3000
    assert emu.count("token") == 1
    assert any("waited" in rec.getMessage() for rec in caplog.records), caplog.text


# -- proactive refresh ---------------------------------------------------------------------


def stale_cache(emu, ppauth_env) -> tuple[PowerPlatformAuth, str, dict]:
    """A cached token past its refresh time (1 s after issue) but valid for an hour."""
    emu.policy.refresh_in = 1
    auth = auth_for(emu)
    first = sent_token(api_get(emu, auth))
    entry = disk_entry(ppauth_env.cache_dir, auth)
    now = time.time()
    assert entry["secret"] == first
    assert entry["refresh_on"] <= now + 1.0, "the server's refresh_in was not honoured"
    assert entry["expires_on"] > now + 3000
    emu.policy.refresh_in = None  # the refreshed token is good for long
    sleep_until(entry["refresh_on"] + 0.05)
    return auth, first, entry


def test_stale_token_is_refreshed_by_exactly_one_of_several_processes(
    ppauth_emulator, ppauth_env, children
):
    emu = ppauth_emulator
    ppauth_env.use_emulator(emu, "secret")
    auth, first, _ = stale_cache(emu, ppauth_env)
    before = emu.counts()

    kids = start_together(children, 8, "get", emu.api_url, emu.ca_bundle)
    results = [kid.result() for kid in kids]

    assert [r["status"] for r in results] == [200] * 8
    assert counts_delta(before, emu.counts()).get("token") == 1
    refreshed = disk_entry(ppauth_env.cache_dir, auth)
    assert refreshed["secret"] != first
    assert refreshed["refresh_on"] > time.time() + 1000
    # each child used the old (still valid) token or the new one, nothing else
    assert {r["token"] for r in results} <= {digest(first), digest(refreshed["secret"])}
    assert digest(refreshed["secret"]) in {r["token"] for r in results}


def test_failed_refresh_keeps_the_valid_token_and_the_shared_back_off_stops_retries(
    ppauth_emulator, ppauth_env, children
):
    emu = ppauth_emulator
    ppauth_env.use_emulator(emu, "secret")
    auth, first, stale = stale_cache(emu, ppauth_env)
    emu.inject("token", status=503, times=None)  # every refresh attempt fails
    before = emu.counts()

    kids = start_together(children, 6, "get", emu.api_url, emu.ca_bundle)
    results = [kid.result() for kid in kids]

    assert [r["status"] for r in results] == [200] * 6
    assert {r["token"] for r in results} == {digest(first)}  # the still-valid token
    failed = [r for r in emu.requests("token") if r.status == 503]
    assert len(failed) == 1, f"{len(failed)} refresh attempts for one back-off"
    assert counts_delta(before, emu.counts()).get("token") == 1
    backed_off = disk_entry(ppauth_env.cache_dir, auth)
    assert backed_off["secret"] == first
    assert backed_off["expires_on"] == stale["expires_on"]
    assert backed_off["refresh_on"] > time.time() + RETRY_BACKOFF - 10
    warned = [k.stderr() for k in kids if "refresh" in k.stderr() and "failed" in k.stderr()]
    assert len(warned) == 1, [k.stderr() for k in kids]

    # later processes respect the back-off too, without a token request
    again = children("get", emu.api_url, emu.ca_bundle).result()
    assert again["status"] == 200 and again["token"] == digest(first)
    assert len([r for r in emu.requests("token") if r.status == 503]) == 1


class LateTryLock(FileCache):
    """A real file cache whose ``try_key_lock`` starts late: after the provider has read
    the stale entry but before it tries the lock, another process refreshes the token
    and releases the lock. (A process scheduled out at that moment does the same.)"""

    def __init__(self, directory: Path) -> None:
        super().__init__(directory)
        self.entered = threading.Event()
        self.proceed = threading.Event()

    def try_key_lock(self, key: str):
        self.entered.set()
        assert self.proceed.wait(30)
        return super().try_key_lock(key)


@pytest.mark.parametrize("outcome", ["refreshed", "backed-off"])
def test_a_refresh_that_lands_between_reading_and_locking_is_not_repeated(
    ppauth_emulator, ppauth_env, children, outcome
):
    emu = ppauth_emulator
    ppauth_env.use_emulator(emu, "secret")
    auth, first, _ = stale_cache(emu, ppauth_env)
    if outcome == "backed-off":
        emu.inject("token", status=503, times=None)
    late = PowerPlatformAuth(hosts=auth.hosts, cache=LateTryLock(ppauth_env.cache_dir))
    backend = late.provider.cache
    assert isinstance(backend, LateTryLock)
    seen: list[requests.Response] = []
    thread = threading.Thread(target=lambda: seen.append(api_get(emu, late)), daemon=True)
    thread.start()
    assert backend.entered.wait(30)  # it has read the stale entry and is about to lock
    before = emu.counts()

    other = children("get", emu.api_url, emu.ca_bundle).result()  # refreshes, releases
    assert counts_delta(before, emu.counts()) == {"discovery": 1, "token": 1, "environments": 1}
    backend.proceed.set()
    thread.join(30)

    assert len(seen) == 1
    # what the other process stored answers: no second attempt, not even an msal app
    assert counts_delta(before, emu.counts()) == {"discovery": 1, "token": 1, "environments": 2}
    assert digest(sent_token(seen[0])) == other["token"]
    if outcome == "refreshed":
        assert other["token"] != digest(first)
    else:
        assert other["token"] == digest(first)
        assert late.provider.tokens[SCOPE].refresh_on > time.time() + RETRY_BACKOFF - 10
