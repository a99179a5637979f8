"""A fleet: processes on several "machines" (each its own PPAUTH_CACHE_DIR, so the
file cache cannot be what they share) on one Redis, released together, counted at
the emulator. One token request for all; and when Redis dies, freezes or a lease
holder is SIGKILLed, every process still gets a token within a bounded time."""

from __future__ import annotations

import os
import signal
import time

import pytest

pytestmark = pytest.mark.slow


def _herd(processes):
    for process in processes:
        process.ready()
    for process in processes:
        process.go()


@pytest.fixture
def fleet_env(redis_env, ppauth_env, ppauth_emulator):
    """The emulator's credentials and PPAUTH_CACHE=redis for every fleet process."""
    ppauth_env.use_emulator(ppauth_emulator)
    ppauth_env.set(PPAUTH_CACHE="redis")
    return redis_env


def test_two_machines_on_one_redis_make_one_token_request(fleet_env, fleet, ppauth_emulator):
    emu = ppauth_emulator
    emu.inject("token", latency=0.3, times=None)  # the herd is all waiting when it ends
    processes = [fleet(machine) for machine in ("m1", "m2") for _ in range(4)]
    _herd(processes)
    results = [p.result() for p in processes]
    assert emu.count("token") == 1, (
        f"8 processes on 2 machines sharing one Redis: expected 1 token request, got "
        f"{emu.count('token')}"
    )
    assert len({r["token"] for r in results}) == 1
    assert not any(r["warnings"] for r in results), [r["warnings"] for r in results]


def test_redis_killed_mid_herd_then_restarted(fleet_env, fleet, ppauth_emulator):
    emu, server = ppauth_emulator, fleet_env
    emu.inject("token", latency=1.0, times=None)  # Redis dies while the holder fetches
    processes = [fleet(machine) for machine in ("m1", "m2") for _ in range(3)]
    _herd(processes)
    time.sleep(0.5)
    server.kill()
    results = [p.result(timeout=60) for p in processes]
    made = emu.count("token")
    # the holder's request, and at most one per machine after they fell back to their
    # own file caches (each machine's processes still single-flight there)
    assert 1 <= made <= 3, f"expected 1 to 3 token requests, got {made}"
    assert all(r["token"] for r in results)
    assert all(len(r["warnings"]) <= 1 for r in results), [r["warnings"] for r in results]
    # Redis back (empty: no persistence): a new herd on two new machines shares again
    server.start()
    emu.clear_faults()
    emu.inject("token", latency=0.3, times=None)
    again = [fleet(machine) for machine in ("m3", "m4") for _ in range(3)]
    _herd(again)
    tokens = {p.result()["token"] for p in again}
    assert emu.count("token") == made + 1, (
        f"after Redis restarted: expected one more token request for 6 processes, got "
        f"{emu.count('token') - made}"
    )
    assert len(tokens) == 1


def test_a_paused_redis_holds_nobody_beyond_the_socket_timeout(fleet_env, fleet, ppauth_emulator):
    emu, server = ppauth_emulator, fleet_env
    processes = [fleet(machine) for machine in ("m1", "m2") for _ in range(3)]
    for process in processes:
        process.ready()
    server.pause()
    try:
        started = time.monotonic()
        for process in processes:
            process.go()
        results = [p.result(timeout=30) for p in processes]
        elapsed = time.monotonic() - started
    finally:
        server.resume()
    # each process: one call that times out (1 s), then this machine's file cache
    assert elapsed < 8, f"a paused Redis held the processes for {elapsed:.1f} s"
    assert max(r["seconds"] for r in results) < 5, [round(r["seconds"], 2) for r in results]
    assert emu.count("token") == 2, (
        f"Redis paused: expected one token request per machine (2) from their file "
        f"caches, got {emu.count('token')}"
    )
    assert all(any("did not answer" in w for w in r["warnings"]) for r in results)
    # resumed: sharing across machines again
    late = [fleet("m3"), fleet("m4")]
    _herd(late[:1])
    late[0].result()
    _herd(late[1:])
    late[1].result()
    assert emu.count("token") == 3, (
        f"after Redis resumed: expected one token request for two new machines, got "
        f"{emu.count('token') - 2}"
    )


def test_a_sigkilled_lease_holder_costs_the_others_one_lease(
    fleet_env, fleet, ppauth_emulator, ppauth_env
):
    emu = ppauth_emulator
    lease = 2.0
    ppauth_env.write_config(f"[profiles.default.redis]\nlease_ttl = {lease}\n")
    holder = fleet("m1", mode="hold")
    _herd([holder])
    assert holder.line() == "held"
    waiters = [fleet(machine) for machine in ("m1", "m2") for _ in range(2)]
    _herd(waiters)
    time.sleep(0.3)
    killed = time.monotonic()
    os.kill(holder.process.pid, signal.SIGKILL)
    results = [w.result(timeout=30) for w in waiters]
    after = time.monotonic() - killed
    assert after < lease + 2, f"the others proceeded {after:.1f} s after the kill (lease {lease} s)"
    assert emu.count("token") == 1, (
        f"the lease of a killed holder expired: expected one token request for the 4 "
        f"waiters, got {emu.count('token')}"
    )
    assert len({r["token"] for r in results}) == 1
